//! `pons pki …`: certificates for a federation.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use pons_core::NodeId;
use pons_pki::KeyAlgorithm;
use ring::rand::SecureRandom;
use time::OffsetDateTime;

use crate::exit::{Outcome, ResultExt};
use crate::flags::{self, DevCaArgs, PkiCommand};

/// The file, next to the CA, holding the federation's subject pseudonym key.
pub const PSEUDONYM_KEY_FILE: &str = "pseudonym.key";

pub fn run(cmd: PkiCommand) -> Outcome {
    match cmd {
        PkiCommand::DevCa(args) => dev_ca(&args),
    }
}

fn dev_ca(args: &DevCaArgs) -> Outcome {
    let nodes = args
        .nodes
        .iter()
        .map(|n| NodeId::new(n.trim()).with_context(|| "--nodes"))
        .collect::<Result<Vec<_>, _>>()
        .invalid()?;
    let algorithm = match args.algorithm {
        flags::KeyAlgorithm::Ed25519 => KeyAlgorithm::Ed25519,
        flags::KeyAlgorithm::P256 => KeyAlgorithm::EcdsaP256,
    };
    let files = make_dev_federation(&args.out, &nodes, &args.federation, algorithm, args.force)?;
    println!(
        "development federation {} (DEV ONLY) in {}",
        args.federation,
        args.out.display()
    );
    println!("  CA certificate   {}", files.ca_cert.display());
    println!("  CA key           {}", files.ca_key.display());
    println!("  CRL (empty)      {}", files.crl.display());
    println!(
        "  pseudonym key    {}",
        args.out.join(PSEUDONYM_KEY_FILE).display()
    );
    for (id, node) in &files.nodes {
        println!(
            "  {id}: {}/{{tls,sign}}.{{pem,key}}",
            node.tls_cert.parent().unwrap_or(&args.out).display()
        );
    }
    Ok(())
}

/// Makes a development CA, node certificates and a federation pseudonym key in `out`.
pub fn make_dev_federation(
    out: &Path,
    nodes: &[NodeId],
    federation: &str,
    algorithm: KeyAlgorithm,
    force: bool,
) -> anyhow::Result<pons_pki::DevCaFiles> {
    let files = pons_pki::dev_ca(
        out,
        nodes,
        federation,
        algorithm,
        OffsetDateTime::now_utc(),
        force,
    )
    .with_context(|| format!("cannot make a development federation in {}", out.display()))?;
    write_pseudonym_key(&out.join(PSEUDONYM_KEY_FILE), force)?;
    Ok(files)
}

/// Writes 32 random bytes, hex, mode 0600 from creation on.
fn write_pseudonym_key(path: &Path, force: bool) -> anyhow::Result<()> {
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{}", hex::encode(key))
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()?;
    Ok(())
}
