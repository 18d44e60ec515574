//! `pons feed`: read a `stream` sink as JSON Lines, acknowledge, list and retry dead letters.
//!
//! Reading moves nothing: what is not acknowledged (`pons feed ack CURSOR`, or `--auto-ack`)
//! is read again by the next `pons feed`, after a restart of the node or of the reader.

use std::io::Write;

use anyhow::{anyhow, Context};
use pons_node::control::Request;
use pons_node::Config;
use serde_json::Value;

use crate::client::{call, call_socket, print_list, print_table, text};
use crate::exit::{Outcome, ResultExt};
use crate::flags::{FeedArgs, FeedCommand, FeedReadArgs};

/// How long one read waits for a record with `--follow`.
const FOLLOW_WAIT_MS: u64 = 30_000;

/// Runs `pons feed …`.
pub fn run(args: FeedArgs) -> Outcome {
    match args.command {
        None => read(&args.read),
        Some(FeedCommand::Ack(a)) => {
            let body = call(
                &a.config,
                Request::FeedAck {
                    sink: a.sink.clone(),
                    cursor: a.cursor,
                },
            )?;
            println!(
                "sink {}: acknowledged up to {} ({} newly journaled)",
                text(&body["sink"]),
                text(&body["acknowledged"]),
                text(&body["journaled"])
            );
            Ok(())
        }
        Some(FeedCommand::DeadLetters(a)) => {
            let body = call(
                &a.config,
                Request::FeedDeadLetters {
                    sink: a.sink.clone(),
                },
            )?;
            print_list(
                &body,
                a.format,
                &["sink", "cursor", "id", "attempts", "at", "last_error"],
            )
        }
        Some(FeedCommand::Retry(a)) => {
            let body = call(
                &a.config,
                Request::FeedRetry {
                    sink: a.sink.clone(),
                    id: a.id.clone(),
                },
            )?;
            println!(
                "record {} of sink {}: retry requested",
                text(&body["id"]),
                text(&body["sink"])
            );
            Ok(())
        }
    }
}

fn read(args: &FeedReadArgs) -> Outcome {
    if !(1..=1000).contains(&args.batch) {
        return Err(anyhow!("--batch: {} is outside 1..=1000", args.batch)).invalid();
    }
    let config = Config::load(&args.config.config).invalid()?;
    let socket = config.control_socket();
    let mut from = args.from;
    let mut stdout = std::io::stdout().lock();
    loop {
        let body = call_socket(
            &socket,
            Request::FeedRead {
                sink: args.sink.clone(),
                from,
                limit: Some(args.batch),
                wait_ms: args.follow.then_some(FOLLOW_WAIT_MS),
            },
        )?;
        let records = body["records"].as_array().cloned().unwrap_or_default();
        let next = body["next"]
            .as_u64()
            .ok_or_else(|| anyhow!("the node answered a read without `next`"))?;
        for record in &records {
            writeln!(stdout, "{}", serde_json::to_string(record)?)
                .context("cannot write to standard output; nothing more is acknowledged")?;
        }
        // Written and flushed into the pipe: only now may the batch be acknowledged.
        stdout
            .flush()
            .context("cannot flush standard output; nothing more is acknowledged")?;
        if args.auto_ack && !records.is_empty() {
            call_socket(
                &socket,
                Request::FeedAck {
                    sink: Some(text(&body["sink"])),
                    cursor: next,
                },
            )?;
        }
        from = Some(next);
        if !args.follow && records.len() < args.batch {
            return Ok(());
        }
    }
}

/// The feed's lines of `pons status`: one row per sink.
pub fn print_status(feed: &Value) {
    let Some(sinks) = feed.as_array().filter(|s| !s.is_empty()) else {
        return;
    };
    println!();
    let mut rows = vec![[
        "sink",
        "kind",
        "cursor",
        "behind",
        "dead letters",
        "handed over",
        "last error",
    ]
    .map(str::to_owned)
    .to_vec()];
    for s in sinks {
        rows.push(vec![
            text(&s["sink"]),
            text(&s["kind"]),
            text(&s["cursor"]),
            text(&s["behind"]),
            text(&s["dead_letters"]),
            text(&s["handed_over"]),
            text(&s["last_error"]),
        ]);
    }
    print_table(&rows);
}
