//! `pons node run`: the daemon.

use std::io::Write;

use anyhow::Context;
use pons_node::runtime::system_clock;
use pons_node::Config;
use tokio::signal::unix::{signal, SignalKind};

use crate::exit::{Failure, Outcome, ResultExt};
use crate::flags::{ConfigArg, NodeCommand};

pub fn run(cmd: NodeCommand) -> Outcome {
    match cmd {
        NodeCommand::Run(args) => run_node(&args),
    }
}

fn run_node(args: &ConfigArg) -> Outcome {
    let config = Config::load(&args.config).invalid()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        };
        let node = config.node_id.clone();
        let done = pons_node::daemon::run(
            config,
            system_clock(),
            |started| {
                // One line on stdout for supervisors and tests: the node serves from now on.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "ready node={node} quic={} control={} recovered={} resumed={}",
                    started.quic,
                    started.control.display(),
                    started.recovered,
                    started.resumed
                );
                let _ = out.flush();
            },
            shutdown,
        )
        .await;
        match done {
            // A journal or database that fails its integrity checks is exit 3, so that a
            // supervisor tells it from a runtime failure (the store says which file and rule).
            Err(e) if store_integrity(&e) => Err(Failure::integrity(
                anyhow::Error::new(e).context("node stopped with an error"),
            )),
            other => other
                .context("node stopped with an error")
                .map_err(Failure::from),
        }
    })?;
    Ok(())
}

/// Whether the node stopped because its store failed an integrity check.
fn store_integrity(e: &pons_node::daemon::NodeError) -> bool {
    matches!(e, pons_node::daemon::NodeError::Store { source, .. } if source.is_integrity())
}
