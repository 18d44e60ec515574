//! `pons`: the one binary of Pons. See `pons --help`.

/// jemalloc rather than glibc's allocator: a record's buffers of 1–4 KiB (bodies, envelopes,
/// sled's pages) are past glibc's thread cache and go to its shared bins; jemalloc's thread
/// caches take them, for ~10 % less of the nodes' CPU per record (docs/performance.md,
/// "jemalloc").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;

use clap::Parser;

mod bench;
mod client;
mod demo;
mod dpo;
mod exit;
mod feed;
mod flags;
mod init;
mod journal;
mod node;
mod pki;
mod record;
mod retention;

use flags::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Init(args) => init::run(&args),
        Command::Node(cmd) => node::run(cmd),
        Command::Submit(args) => client::submit(&args),
        Command::Outbox(cmd) => client::outbox(cmd),
        Command::Inbox(cmd) => client::inbox(cmd),
        Command::Status(args) => client::status(&args),
        Command::Feed(args) => feed::run(args),
        Command::Record(cmd) => record::run(cmd),
        Command::Pki(cmd) => pki::run(cmd),
        Command::Journal(cmd) => journal::run(cmd),
        Command::Dpo(cmd) => dpo::run(cmd),
        Command::Hold(cmd) => retention::hold(cmd),
        Command::Review(args) => retention::review(args),
        Command::Rectify(args) => retention::rectify(args),
        Command::Retention(cmd) => retention::run(cmd),
        Command::Bench(args) => bench::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("pons: {:#}", failure.error);
            failure.exit_code()
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
