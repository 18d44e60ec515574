//! `pons hold`, `pons review`, `pons retention`: retention carried out by the running node.
//!
//! Every command goes through the control socket: the node checks the caller's role,
//! applies the rules of `pons_core::retention` with its own clock and journals the change.

use clap::{Args, Subcommand};
use pons_node::control::Request;
use serde_json::Value;

use crate::client::call;
use crate::exit::{Outcome, ResultExt};
use crate::flags::ConfigArg;

/// `pons hold`.
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Place a legal hold: the record is restricted (not shown, exported or sent) and never
    /// erased while held (journaled as `hold`).
    Add(HoldArgs),
    /// Lift the legal holds on a record (journaled as `hold`).
    Remove(HoldArgs),
}

/// `pons hold add|remove`.
#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The record id.
    pub id: String,
    /// Why (e.g. the court case or inquiry reference).
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `pons review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The record id.
    pub id: String,
    /// `keep` (until the next review, one review period from today) or `erase` (due for
    /// erasure today).
    #[arg(long, value_parser = ["keep", "erase"])]
    pub decision: String,
    /// Why the record is (no longer) necessary.
    #[arg(long)]
    pub justification: String,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `pons rectify`.
#[derive(Debug, Args)]
pub struct RectifyArgs {
    /// The record to correct: one this node sent.
    pub id: String,
    /// The full corrected report (JSON, of the original's class), as for `pons submit`.
    #[arg(long, short = 'f')]
    pub file: std::path::PathBuf,
    /// What was wrong in the original.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `pons retention`.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// What a sweep would erase and which records are restricted, and why; changes nothing.
    Plan(ConfigArg),
    /// Erase every record due for erasure now, each with a tombstone journal entry.
    Sweep(ConfigArg),
}

fn print(body: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string())
    );
}

pub fn hold(cmd: HoldCommand) -> Outcome {
    let (args, add) = match cmd {
        HoldCommand::Add(a) => (a, true),
        HoldCommand::Remove(a) => (a, false),
    };
    let body = call(
        &args.config,
        Request::Hold {
            id: args.id,
            reason: args.reason,
            add,
        },
    )?;
    print(&body);
    Ok(())
}

pub fn review(args: ReviewArgs) -> Outcome {
    let body = call(
        &args.config,
        Request::Review {
            id: args.id,
            decision: args.decision,
            justification: args.justification,
        },
    )?;
    print(&body);
    Ok(())
}

/// `pons rectify`: prints what was done, then the rectification's id alone on the last
/// line (as `pons submit` does).
pub fn rectify(args: RectifyArgs) -> Outcome {
    let report = crate::record::read_report(&args.file)?;
    let report = String::from_utf8(report)
        .map_err(|_| anyhow::anyhow!("{}: report is not UTF-8 text", args.file.display()))
        .invalid()?;
    let body = call(
        &args.config,
        Request::Rectify {
            id: args.id,
            report,
            reason: args.reason,
        },
    )?;
    let id = body["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the node answered without a record id"))?;
    println!(
        "rectification accepted: durable in the outbox, queued for {}; the original {} here",
        body["to"].as_str().unwrap_or("?"),
        match body["original_here"].as_str() {
            Some("erased") => "was erased".to_owned(),
            Some("held") => {
                "is kept restricted under a legal hold, erased when it is lifted".to_owned()
            }
            other => format!("was {}", other.unwrap_or("?")),
        }
    );
    println!("{id}");
    Ok(())
}

pub fn run(cmd: RetentionCommand) -> Outcome {
    let (config, request) = match cmd {
        RetentionCommand::Plan(c) => (c, Request::RetentionPlan),
        RetentionCommand::Sweep(c) => (c, Request::RetentionSweep),
    };
    print(&call(&config, request)?);
    Ok(())
}

/// The restricted records of `pons status`, if any.
pub fn print_restricted(restricted: &Value) {
    let Some(list) = restricted.as_array() else {
        return;
    };
    if list.is_empty() {
        return;
    }
    println!("restricted records ({}):", list.len());
    for r in list {
        println!(
            "  {} {} {}: {}",
            r["id"].as_str().unwrap_or("?"),
            r["place"].as_str().unwrap_or("?"),
            r["class"].as_str().unwrap_or("?"),
            r["rule"].as_str().unwrap_or("?")
        );
    }
}
