//! `pons demo`: the main job, shown step by step.
//!
//! Two nodes on loopback with development certificates: the Agency for Adolescence
//! submits minor-risk reports, CUTA receives them and answers signed receipts, and CUTA's
//! feed hands each verified record to its analysis system (a spool directory); CUTA is
//! stopped while a report waits in the outbox and restarted; a CUTA analyst consults a
//! record; a review erases one at the Agency, whose erasure notice makes CUTA erase its
//! copy too; both journals are verified and shown. The nodes are real `pons node run`
//! processes, as in production.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use pons_core::NodeId;
use pons_node::control::Request;
use pons_pki::KeyAlgorithm;
use pons_store::{Options, Store};
use serde_json::Value;

use crate::client::call_socket;
use crate::exit::Outcome;
use crate::flags::{DemoArgs, InitArgs};
use crate::pki::make_dev_federation;

const SAMPLE_REPORT: &str = include_str!("../../../config/examples/minor-risk-report.json");

/// How long the demo waits for any one thing (a node to start, a record to arrive).
const WAIT: Duration = Duration::from_secs(60);

pub fn run(args: &DemoArgs) -> Outcome {
    let temp;
    let dir: PathBuf = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let exe = std::env::current_exe().context("cannot find the pons executable")?;
    let n = args.reports.max(1);

    step(
        1,
        "make a development federation (DEV ONLY): a CA, and TLS and signing certificates per node",
    );
    let certs = dir.join("federation");
    let nodes = [NodeId::new("adolescence")?, NodeId::new("cuta")?];
    make_dev_federation(&certs, &nodes, "pons.example", KeyAlgorithm::Ed25519, true)?;
    detail(&format!("CA and node certificates in {}", certs.display()));

    step(
        2,
        "initialise the two nodes on loopback: adolescence may send minor-risk-report to cuta",
    );
    let (pa, pc) = (free_port()?, free_port()?);
    let a_conf = crate::init::make(&InitArgs {
        node_id: "adolescence".into(),
        dir: dir.join("adolescence"),
        certs: Some(certs.clone()),
        federation: "pons.example".into(),
        listen: format!("127.0.0.1:{pa}"),
        peer: vec![format!("cuta=127.0.0.1:{pc}")],
        send: vec!["cuta:minor-risk-report".into()],
        receive: vec!["cuta:follow-up-request".into()],
        users: vec![],
        force: true,
    })
    .map_err(|f| f.error)?;
    let c_conf = crate::init::make(&InitArgs {
        node_id: "cuta".into(),
        dir: dir.join("cuta"),
        certs: Some(certs.clone()),
        federation: "pons.example".into(),
        listen: format!("127.0.0.1:{pc}"),
        peer: vec![format!("adolescence=127.0.0.1:{pa}")],
        send: vec!["adolescence:follow-up-request".into()],
        receive: vec!["adolescence:minor-risk-report".into()],
        users: vec![],
        force: true,
    })
    .map_err(|f| f.error)?;
    let a_sock = dir.join("adolescence/data/control.sock");
    let c_sock = dir.join("cuta/data/control.sock");
    // CUTA's analysis system takes its feed from a spool directory: one JSON file per
    // verified record, written atomically (docs/integrating-a-feed.md).
    let spool = dir.join("cuta/feed/analysis");
    let mut c_text = std::fs::read_to_string(&c_conf)?;
    c_text.push_str("\n[[sink]]\nname = \"analysis\"\nkind = \"spool\"\ndir = \"feed/analysis\"\n");
    std::fs::write(&c_conf, c_text)?;

    step(
        3,
        "start both nodes (pons node run): QUIC with mutual TLS 1.3, ALPN pons/1",
    );
    let mut a = NodeProcess::start(&exe, &a_conf, &dir.join("adolescence.log"))?;
    let mut c = NodeProcess::start(&exe, &c_conf, &dir.join("cuta.log"))?;
    detail(&format!("adolescence {}", a.ready));
    detail(&format!("cuta        {}", c.ready));

    step(
        4,
        &format!("a caseworker submits {n} minor-risk reports; each id is given once durable"),
    );
    let mut ids = Vec::new();
    for i in 0..n {
        let id = submit(&a_sock, i)?;
        detail(&format!("record {id} accepted into the outbox"));
        ids.push(id);
    }

    step(
        5,
        "adolescence delivers them; CUTA verifies, stores, and answers signed receipts",
    );
    for id in &ids {
        let shown = wait_delivered(&a_sock, id)?;
        let r = &shown["receipt"];
        detail(&format!(
            "record {id} delivered: receipt signed by {}, verified {}, CUTA journal entry {}",
            r["signed_by"].as_str().unwrap_or("?"),
            r["verified"],
            r["journal_seq"]
        ));
    }
    let inbox = call_socket(&c_sock, Request::InboxList).map_err(|f| f.error)?;
    detail(&format!(
        "CUTA inbox holds {} records (metadata only is listed; content needs a justification)",
        inbox.as_array().map_or(0, |v| v.len())
    ));
    let files = wait_files(&spool, ids.len())?;
    let first: Value = serde_json::from_slice(&std::fs::read(&files[0])?)?;
    detail(&format!(
        "CUTA's feed ingested {} records into its analysis system ({}): each verified again \
         ({}), handed over once, journaled as a disclosure to sink:analysis",
        files.len(),
        spool.display(),
        first["verification"]["verified"]
    ));

    step(6, "stop CUTA; a new report waits in adolescence's outbox");
    c.stop()?;
    let waiting = submit(&a_sock, n)?;
    ids.push(waiting.clone());
    let status = call_socket(&a_sock, Request::Status).map_err(|f| f.error)?;
    let peer = &status["peers"][0];
    detail(&format!(
        "record {waiting} is {}; queue to cuta: {}",
        outbox_state(&a_sock, &waiting)?,
        peer["queue"]
    ));

    step(
        7,
        "restart CUTA: the waiting record is delivered without anyone resending it",
    );
    let mut c = NodeProcess::start(&exe, &c_conf, &dir.join("cuta.log"))?;
    detail(&format!("cuta {}", c.ready));
    let shown = wait_delivered(&a_sock, &waiting)?;
    detail(&format!(
        "record {waiting} delivered after {} attempts, receipt verified {}",
        shown["attempts"], shown["receipt"]["verified"]
    ));

    step(
        8,
        "a CUTA analyst consults one record, with a justification (journaled)",
    );
    let consulted = call_socket(
        &c_sock,
        Request::InboxShow {
            id: ids[0].clone(),
            justification: "threat assessment TA-2026-17: reported minor".into(),
        },
    )
    .map_err(|f| f.error)?;
    let body = &consulted["record"]["body"]["minor-risk-report"];
    detail(&format!(
        "record {} from {}: risk {} / {}, signature verified",
        ids[0],
        consulted["signer"].as_str().unwrap_or("?"),
        body["risk_category"].as_str().unwrap_or("?"),
        body["risk_level"].as_str().unwrap_or("?")
    ));

    step(
        9,
        "retention: a review at the Agency decides a record is no longer necessary; the sweep \
         erases it and tells CUTA, which erases its copy (LED art. 16(6))",
    );
    call_socket(
        &a_sock,
        Request::Review {
            id: ids[1].clone(),
            decision: "erase".into(),
            justification: "case closed: the minor is no longer at risk".into(),
        },
    )
    .map_err(|f| f.error)?;
    let swept = call_socket(&a_sock, Request::RetentionSweep).map_err(|f| f.error)?;
    let notice = swept["erased"][0]["notice"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the sweep made no erasure notice: {swept}"))?
        .to_owned();
    detail(&format!(
        "record {} erased at adolescence (data key and ciphertext, tombstone journaled); \
         erasure notice {notice} queued for cuta",
        ids[1]
    ));
    let shown = wait_delivered(&a_sock, &notice)?;
    detail(&format!(
        "cuta's signed receipt for the notice: {} ({})",
        shown["receipt"]["effect"]["effect"].as_str().unwrap_or("?"),
        shown["receipt"]["effect"]["meaning"]
            .as_str()
            .unwrap_or("?")
    ));
    let gone = call_socket(
        &c_sock,
        Request::InboxShow {
            id: ids[1].clone(),
            justification: "threat assessment TA-2026-17: check".into(),
        },
    );
    match gone {
        Err(f) => detail(&format!("at CUTA: {}", f.error)),
        Ok(_) => return Err(anyhow!("record {} is still readable at CUTA", ids[1]).into()),
    }

    step(10, "stop both nodes and verify both journals' hash chains");
    a.stop()?;
    c.stop()?;
    for node in ["adolescence", "cuta"] {
        let store = Store::open(dir.join(node).join("data/db"), Options::default())
            .with_context(|| format!("cannot open {node}'s database"))?;
        let head = store
            .verify_journal()
            .with_context(|| format!("{node}'s journal does not verify"))?;
        detail(&format!(
            "{node}: {} entries, chain verified, head {}",
            head.seq,
            hex::encode(&head.hash[..8])
        ));
        for entry in store.journal_iter(0) {
            let e = entry?;
            detail(&format!(
                "  #{:<3} {:<8} {:<11} actor {:<8} record {} {} {}",
                e.seq,
                e.operation.as_str(),
                e.outcome.as_str(),
                e.actor,
                e.record_id
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into()),
                match (node, e.operation.as_str()) {
                    ("adolescence", _) | (_, "disclose") => "to",
                    _ => "from",
                },
                // A feed hand-over has no peer: its sink is in the justification.
                e.counterpart.map(|c| c.to_string()).unwrap_or_else(|| e
                    .justification
                    .filter(|j| j.starts_with("sink:"))
                    .unwrap_or_else(|| "-".into())),
            ));
        }
    }

    println!();
    match &args.keep {
        Some(dir) => println!(
            "done; nodes stopped, their configs, certificates and data kept in {}",
            dir.display()
        ),
        None => println!("done"),
    }
    Ok(())
}

fn step(n: u32, what: &str) {
    println!("[{n}] {what}");
}

fn detail(what: &str) {
    println!("    {what}");
}

/// Waits until `dir` holds at least `n` JSON files (a spool sink's records); returns them.
fn wait_files(dir: &Path, n: usize) -> anyhow::Result<Vec<PathBuf>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= n {
            files.sort();
            return Ok(files);
        }
        if Instant::now() > deadline {
            bail!(
                "{} holds {} of {n} records after {WAIT:?}",
                dir.display(),
                files.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free UDP port on 127.0.0.1 (released before the node binds it).
fn free_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn submit(socket: &Path, i: usize) -> anyhow::Result<String> {
    let report = SAMPLE_REPORT.replace("AGO-2026-000123", &format!("AGO-2026-{:06}", 123 + i));
    let body = call_socket(
        socket,
        Request::Submit {
            to: "cuta".into(),
            class: "minor-risk-report".into(),
            report,
            purpose: Some("threat assessment of a reported minor".into()),
            justification: Some("cooperation agreement Agency for Adolescence - CUTA".into()),
        },
    )
    .map_err(|f| f.error)?;
    body["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no record id in the answer"))
}

fn outbox_state(socket: &Path, id: &str) -> anyhow::Result<String> {
    let shown = call_socket(socket, Request::OutboxShow { id: id.into() }).map_err(|f| f.error)?;
    Ok(shown["state"].as_str().unwrap_or("?").to_owned())
}

fn wait_delivered(socket: &Path, id: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let shown =
            call_socket(socket, Request::OutboxShow { id: id.into() }).map_err(|f| f.error)?;
        match shown["state"].as_str() {
            Some("delivered") => return Ok(shown),
            Some("rejected") => bail!("record {id} was rejected: {}", shown["detail"]),
            _ if Instant::now() > deadline => bail!("record {id} not delivered within {WAIT:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A `pons node run` child process, stopped (SIGTERM) when dropped.
struct NodeProcess {
    child: Option<Child>,
    ready: String,
}

impl NodeProcess {
    fn start(exe: &Path, config: &Path, log: &Path) -> anyhow::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut child = Command::new(exe)
            .args(["node", "run", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("cannot start pons node run")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut node = Self {
            child: Some(child),
            ready: String::new(),
        };
        match rx.recv_timeout(WAIT) {
            Ok(line) if line.starts_with("ready ") => {
                node.ready = line.trim_start_matches("ready ").to_owned();
                Ok(node)
            }
            _ => bail!("the node did not start: see {}", log.display()),
        }
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let status = child.wait()?;
            if !status.success() {
                bail!("node exited with {status}");
            }
        }
        Ok(())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
