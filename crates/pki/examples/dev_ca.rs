//! Writes a development CA: `cargo run -p pons-pki --example dev_ca -- DIR NODES FEDERATION [--force]`
//! (NODES comma-separated). The operator's command is `pons pki dev-ca`; this example is
//! for working on this crate alone.

use std::path::PathBuf;
use std::process::ExitCode;

use pons_core::NodeId;
use pons_pki::{dev_ca, KeyAlgorithm};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let force = args.iter().any(|a| a == "--force");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [out, nodes, federation] = positional[..] else {
        eprintln!("usage: dev_ca DIR NODE[,NODE...] FEDERATION [--force]");
        return ExitCode::from(2);
    };
    let nodes: Result<Vec<NodeId>, _> = nodes.split(',').map(NodeId::new).collect();
    let nodes = match nodes {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let now = time::OffsetDateTime::now_utc();
    match dev_ca(
        &PathBuf::from(out),
        &nodes,
        federation,
        KeyAlgorithm::Ed25519,
        now,
        force,
    ) {
        Ok(files) => {
            for (id, _) in &files.nodes {
                println!("{id}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
