//! `pons init`: a node's directory, ready to run.
//!
//! ```text
//! DIR/node.toml          the configuration (paths relative to DIR)
//! DIR/certs/             ca.pem, ca.crl.pem, tls.{pem,key}, sign.{pem,key}, pseudonym.key,
//!                        master.key (this node's own, never copied from --certs)
//! DIR/data/              the database and the control socket (mode 0750)
//! ```

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{anyhow, Context};
use pons_core::NodeId;

use crate::exit::{Outcome, ResultExt};
use crate::flags::InitArgs;
use crate::pki::PSEUDONYM_KEY_FILE;

/// The node's master key file in `certs/`: 32 random bytes, hex, mode 0600 from creation.
pub const MASTER_KEY_FILE: &str = "master.key";

pub fn run(args: &InitArgs) -> Outcome {
    let config_path = make(args)?;
    println!(
        "node {} initialised in {}",
        args.node_id,
        args.dir.display()
    );
    println!("  config  {}", config_path.display());
    println!("  run     pons node run --config {}", config_path.display());
    Ok(())
}

/// Makes the node directory; returns the configuration file's path.
pub fn make(args: &InitArgs) -> Result<std::path::PathBuf, crate::exit::Failure> {
    let node = NodeId::new(&args.node_id).context("--node-id").invalid()?;
    let toml = render(args, &node).invalid()?;
    // Check the whole configuration before writing anything.
    pons_node::Config::parse(&toml, &args.dir.join("node.toml")).invalid()?;

    let config_path = args.dir.join("node.toml");
    if config_path.exists() && !args.force {
        return Err(anyhow!(
            "{} exists: use --force to replace it",
            config_path.display()
        ))
        .invalid();
    }
    let certs = args.dir.join("certs");
    for dir in [&args.dir, &certs, &args.dir.join("data")] {
        pons_node::daemon::make_group_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let dev;
    let src = match &args.certs {
        Some(dir) => dir,
        None => {
            dev = args.dir.join("dev-federation");
            eprintln!(
                "pons: no --certs: making a DEVELOPMENT federation for {node} alone in {} \
                 (DEV ONLY; peers need certificates from one common CA)",
                dev.display()
            );
            crate::pki::make_dev_federation(
                &dev,
                std::slice::from_ref(&node),
                &args.federation,
                pons_pki::KeyAlgorithm::Ed25519,
                args.force,
            )?;
            &dev
        }
    };
    let node_src = src.join(node.as_str());
    let copies = [
        (src.join("ca.pem"), "ca.pem", false),
        (src.join("ca.crl.pem"), "ca.crl.pem", false),
        (src.join(PSEUDONYM_KEY_FILE), PSEUDONYM_KEY_FILE, true),
        (node_src.join("tls.pem"), "tls.pem", false),
        (node_src.join("tls.key"), "tls.key", true),
        (node_src.join("sign.pem"), "sign.pem", false),
        (node_src.join("sign.key"), "sign.key", true),
    ];
    for (from, _, _) in &copies {
        if !from.exists() {
            return Err(anyhow!("--certs: {} is missing", from.display())).invalid();
        }
    }
    for (from, name, secret) in &copies {
        copy(from, &certs.join(name), *secret)?;
    }
    // Never replaced, even with --force: a new master key would make every stored body
    // unreadable.
    let master = certs.join(MASTER_KEY_FILE);
    if !master.exists() {
        let key = pons_store::MasterKey::generate()?;
        write_new(&master, format!("{}\n", key.to_hex()).as_bytes(), true)?;
    }
    write_new(&config_path, toml.as_bytes(), false)?;
    Ok(config_path)
}

fn render(args: &InitArgs, node: &NodeId) -> anyhow::Result<String> {
    let users = if args.users.is_empty() {
        vec![current_user()?]
    } else {
        args.users.clone()
    };
    let users = users
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = String::new();
    writeln!(
        s,
        "# Pons node {node}: made by `pons init`. Paths are relative to this file."
    )?;
    writeln!(s, "node_id = {:?}", node.as_str())?;
    writeln!(s, "federation = {:?}", args.federation)?;
    writeln!(s, "listen = {:?}", args.listen)?;
    writeln!(s, "data_dir = \"data\"")?;
    writeln!(s, "pseudonym_key = \"certs/{PSEUDONYM_KEY_FILE}\"")?;
    writeln!(s, "master_key = \"certs/{MASTER_KEY_FILE}\"")?;
    writeln!(s)?;
    writeln!(s, "[tls]\nca = \"certs/ca.pem\"\ncrl = [\"certs/ca.crl.pem\"]\ncert = \"certs/tls.pem\"\nkey = \"certs/tls.key\"\n")?;
    writeln!(
        s,
        "[signing]\ncert = \"certs/sign.pem\"\nkey = \"certs/sign.key\"\n"
    )?;
    writeln!(
        s,
        "# Who may do what through the control socket (OS users or groups)."
    )?;
    writeln!(s, "[roles]")?;
    writeln!(s, "caseworker = {{ users = [{users}] }}")?;
    writeln!(s, "dpo = {{ users = [{users}] }}")?;
    writeln!(s, "operator = {{ users = [{users}] }}")?;
    for peer in &args.peer {
        let (id, addr) = peer
            .split_once('=')
            .ok_or_else(|| anyhow!("--peer {peer:?}: expected NODE=ADDRESS"))?;
        let id = NodeId::new(id).with_context(|| format!("--peer {peer:?}"))?;
        let classes = |list: &[String], flag: &str| -> anyhow::Result<Vec<String>> {
            let mut out = Vec::new();
            for item in list {
                let (n, class) = item
                    .split_once(':')
                    .ok_or_else(|| anyhow!("--{flag} {item:?}: expected NODE:CLASS"))?;
                if n == id.as_str() {
                    pons_core::ClassName::parse(class)
                        .map_err(|e| anyhow!("--{flag} {item:?}: {e}"))?;
                    out.push(format!("{class:?}"));
                }
            }
            Ok(out)
        };
        writeln!(s, "\n[[peer]]")?;
        writeln!(s, "node_id = {:?}", id.as_str())?;
        writeln!(s, "address = {addr:?}")?;
        writeln!(s, "send = [{}]", classes(&args.send, "send")?.join(", "))?;
        writeln!(
            s,
            "receive = [{}]",
            classes(&args.receive, "receive")?.join(", ")
        )?;
    }
    for item in args.send.iter().chain(&args.receive) {
        let known = item.split_once(':').is_some_and(|(n, _)| {
            args.peer
                .iter()
                .any(|p| p.split_once('=').is_some_and(|(id, _)| id == n))
        });
        if !known {
            return Err(anyhow!("--send/--receive {item:?}: names no --peer"));
        }
    }
    Ok(s)
}

fn current_user() -> anyhow::Result<String> {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| anyhow!("uid {uid} has no user name: pass --users"))
}

fn copy(from: &Path, to: &Path, secret: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    write_new(to, &bytes, secret)
}

/// Writes a file; secrets are created with mode 0600 (never widened, then narrowed), the
/// rest 0644 whatever the umask (the CLI's users read `node.toml` and the certificates).
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mode = if secret { 0o600 } else { 0o644 };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(mode);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()?;
    Ok(())
}
