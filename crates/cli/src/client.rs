//! Commands that talk to a running node over its control socket.

use std::io::Write;

use anyhow::{anyhow, Context};
use pons_node::control::{self, Request, Response};
use pons_node::Config;
use serde_json::Value;

use crate::exit::{Failure, Outcome, ResultExt};
use crate::flags::{
    ConfigArg, ExportArgs, ExportFormat, InboxCommand, ListFormat, OutboxCommand, SubmitArgs,
};
use crate::record::read_report;

/// Sends one request to the node named by `config` and returns the body of its answer.
pub fn call(config: &ConfigArg, request: Request) -> Result<Value, Failure> {
    let config = Config::load(&config.config).invalid()?;
    call_socket(&config.control_socket(), request)
}

/// Sends one request to the control socket at `path`.
pub fn call_socket(path: &std::path::Path, request: Request) -> Result<Value, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let response = runtime
        .block_on(control::call(path, &request))
        .with_context(|| {
            format!(
                "cannot reach the node at {} (is it running?)",
                path.display()
            )
        })?;
    match response {
        Response::Ok { body } => Ok(body),
        Response::Err {
            code,
            message,
            details,
        } => {
            let mut text = message;
            for d in details {
                text.push_str("\n  ");
                text.push_str(&d);
            }
            Err(Failure {
                code,
                error: anyhow!(text),
            })
        }
    }
}

pub fn submit(args: &SubmitArgs) -> Outcome {
    let report = read_report(&args.file)?;
    let report = String::from_utf8(report)
        .map_err(|_| anyhow!("{}: report is not UTF-8 text", args.file.display()))
        .invalid()?;
    let body = call(
        &args.config,
        Request::Submit {
            to: args.to.clone(),
            class: args.class.clone(),
            report,
            purpose: args.purpose.clone(),
            justification: args.justification.clone(),
        },
    )?;
    let id = body["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the node answered without a record id"))?;
    println!(
        "record accepted: durable in the outbox, queued for {}",
        args.to
    );
    // The id alone on the last line, for scripts.
    println!("{id}");
    Ok(())
}

pub fn outbox(cmd: OutboxCommand) -> Outcome {
    match cmd {
        OutboxCommand::List(args) => {
            let body = call(&args.config, Request::OutboxList)?;
            print_list(
                &body,
                args.format,
                &["id", "to", "class", "state", "attempts", "created"],
            )
        }
        OutboxCommand::Show(args) => {
            let body = call(
                &args.config,
                Request::OutboxShow {
                    id: args.id.clone(),
                },
            )?;
            print_json(&body)
        }
    }
}

pub fn inbox(cmd: InboxCommand) -> Outcome {
    match cmd {
        InboxCommand::List(args) => {
            let body = call(&args.config, Request::InboxList)?;
            print_list(
                &body,
                args.format,
                &["arrival_seq", "id", "from", "class", "received_at"],
            )
        }
        InboxCommand::Show(args) => {
            let body = call(
                &args.config,
                Request::InboxShow {
                    id: args.id.clone(),
                    justification: args.justification.clone(),
                },
            )?;
            print_json(&body)
        }
    }
}

pub fn export(args: &ExportArgs) -> Outcome {
    let format = match args.format {
        ExportFormat::Cose => "cose",
        ExportFormat::Json => "json",
    };
    let body = call(
        &args.config,
        Request::RecordExport {
            id: args.id.clone(),
            format: format.into(),
            justification: args.justification.clone(),
        },
    )?;
    let bytes = match args.format {
        ExportFormat::Cose => {
            use base64::Engine;
            let b64 = body["cose_base64"]
                .as_str()
                .ok_or_else(|| anyhow!("no envelope in the answer"))?;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .context("envelope is not base64")?
        }
        ExportFormat::Json => {
            let mut v = serde_json::to_vec_pretty(&body)?;
            v.push(b'\n');
            v
        }
    };
    match &args.out {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}

pub fn status(args: &ConfigArg) -> Outcome {
    let body = call(args, Request::Status)?;
    println!(
        "node {}  listen {}  up {}s  journal seq {}  inbox {}{}",
        body["node"].as_str().unwrap_or("?"),
        body["listen"].as_str().unwrap_or("?"),
        body["up_secs"],
        body["journal_seq"],
        body["inbox"],
        if body["recovered"].as_bool() == Some(true) {
            "  (recovered after an unclean stop)"
        } else {
            ""
        }
    );
    let peers = body["peers"].as_array().cloned().unwrap_or_default();
    let mut rows = vec![vec![
        "peer".to_owned(),
        "address".to_owned(),
        "connected".to_owned(),
        "queue".to_owned(),
        "oldest".to_owned(),
        "delivered".to_owned(),
        "rejected".to_owned(),
        "last error".to_owned(),
    ]];
    for p in &peers {
        rows.push(vec![
            text(&p["peer"]),
            text(&p["address"]),
            match p["connected"].as_bool() {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "-".into(),
            },
            text(&p["queue"]),
            p["oldest_pending_secs"]
                .as_i64()
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "-".into()),
            text(&p["delivered"]),
            text(&p["rejected"]),
            if p["transport_error"].is_string() {
                text(&p["transport_error"])
            } else {
                text(&p["last_error"])
            },
        ]);
    }
    print_table(&rows);
    crate::feed::print_status(&body["feed"]);
    crate::retention::print_restricted(&body["restricted"]);
    Ok(())
}

fn print_json(body: &Value) -> Outcome {
    println!("{}", serde_json::to_string_pretty(body)?);
    Ok(())
}

pub(crate) fn print_list(body: &Value, format: ListFormat, columns: &[&str]) -> Outcome {
    let items = body.as_array().cloned().unwrap_or_default();
    match format {
        ListFormat::Jsonl => {
            let mut out = std::io::stdout().lock();
            for item in &items {
                writeln!(out, "{}", serde_json::to_string(item)?)?;
            }
        }
        ListFormat::Table => {
            let mut rows = vec![columns.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
            for item in &items {
                rows.push(columns.iter().map(|c| text(&item[*c])).collect());
            }
            print_table(&rows);
            println!("{} records", items.len());
        }
    }
    Ok(())
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn print_table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, |r| r.len()))
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
