//! `pons bench --scenario fan-in`: one receiving node, many sending nodes, in this process.
//!
//! S senders (`--senders`, default 200) and one receiver (`cuta`) are made as `pons init`
//! makes them, from one development CA: each sender is a node of its own, with its own
//! certificates, store, control socket and QUIC endpoint on 127.0.0.1, and runs
//! `pons_node::daemon::run` as `pons node run` would. The receiver's configuration lists the
//! S senders as `[[peer]]`s it receives minor-risk reports from. Every sender first delivers
//! one record (not measured: S QUIC connections, S stores' first writes); then C clients
//! (`--concurrency`) submit N records (`--records`), record k through sender k mod S, and the
//! run ends when every sender's outbox shows its records delivered (a receipt verified).
//!
//! Memory: the process's resident size is read once the receiver runs alone, once the S
//! senders run (idle), and once each has delivered its first record (connected); the
//! difference from the receiver alone to connected, over S, is the memory one sender costs.
//! Each sender's store is a sled database with sled's default cache (pons-store exposes no
//! cache setting), so that figure includes what sled keeps per database.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use pons_core::NodeId;
use pons_node::Config;
use pons_pki::KeyAlgorithm;
use serde::Serialize;
use tokio::sync::oneshot;

use super::measure::{self, current_rss, percentiles, Percentiles, Usage};
use super::nodes::{start_task, NodeTask};
use super::{delivered_times, ms, padded_report, submit, wait_delivered, Submitted};
use crate::flags::{BenchArgs, InitArgs};
use crate::pki::make_dev_federation;

const RECEIVER: &str = "cuta";
const CLASS: &str = "minor-risk-report";

/// `--scenario fan-in`'s figures (the `--json` output).
#[derive(Debug, Serialize)]
pub struct FanInReport {
    /// Sending nodes.
    pub senders: usize,
    /// Records measured (after one warm-up record per sender).
    pub records: usize,
    /// Concurrent submitting clients (record k goes through sender k mod `senders`).
    pub concurrency: usize,
    /// Requested record size, bytes.
    pub size: usize,
    /// Bytes of one submitted report.
    pub report_bytes: usize,
    /// Whether the nodes fdatasync after each flush (`[storage] sync`).
    pub sync: bool,
    /// Starting the senders, one after the other, seconds.
    pub start_senders_s: f64,
    /// From the first submit to the last receipt, seconds.
    pub elapsed_s: f64,
    /// Records per second over `elapsed_s`, all senders together.
    pub records_per_s: f64,
    /// Submit (id returned) to receipt (verified by the sender), milliseconds.
    pub latency_ms: Percentiles,
    /// Submit call duration, milliseconds.
    pub submit_ms: Percentiles,
    /// CPU seconds (every node and the clients) per record.
    pub cpu_s_per_record: f64,
    /// CPU used over the run as a share of every core.
    pub cpu_utilisation: f64,
    /// Resident size with the receiver running alone, bytes.
    pub rss_receiver_bytes: u64,
    /// Resident size with every sender started, before any record, bytes.
    pub rss_idle_bytes: u64,
    /// Resident size once every sender delivered its first record (connections up), bytes.
    pub rss_connected_bytes: u64,
    /// Resident size after the measured records, bytes.
    pub rss_after_bytes: u64,
    /// (`rss_connected_bytes` − `rss_receiver_bytes`) / `senders`.
    pub rss_per_sender_bytes: f64,
    /// Peak resident size of the process (every node and the clients), bytes.
    pub peak_rss_bytes: u64,
    /// A sender's data directory after the run, on average, bytes.
    pub sender_data_dir_bytes: f64,
    /// The receiver's data directory after the run, bytes.
    pub receiver_data_dir_bytes: u64,
    /// Senders whose status shows a delivery error since start (each was retried, after a
    /// backoff, until delivered).
    pub senders_with_errors: usize,
    /// One of those errors, as the sender's status reports it.
    pub sample_error: Option<String>,
}

struct Node {
    socket: PathBuf,
    data_dir: PathBuf,
}

/// Runs the fan-in; returns its figures.
pub fn run(dir: &Path, args: &BenchArgs) -> anyhow::Result<FanInReport> {
    let senders = args.senders;
    anyhow::ensure!(senders >= 1, "--senders must be at least 1");
    let names: Vec<NodeId> = (1..=senders)
        .map(|i| NodeId::new(&format!("sender-{i:04}")))
        .collect::<Result<_, _>>()?;
    let receiver = NodeId::new(RECEIVER)?;
    let certs = dir.join("federation");
    let mut all = names.clone();
    all.push(receiver.clone());
    make_dev_federation(&certs, &all, "pons.example", KeyAlgorithm::Ed25519, true)?;

    // Every socket is held until all ports are known: ports picked one at a time and
    // released at once can repeat (with 201 of them, they often do).
    let held: Vec<UdpSocket> = (0..=senders)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("cannot pick the nodes' ports")?;
    let mut ports: Vec<u16> = held
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    drop(held);
    let receiver_port = ports.pop().expect("senders + 1 ports");
    let init = |id: &str, port: u16, peers: Vec<String>, send: Vec<String>, receive| {
        crate::init::make(&InitArgs {
            node_id: id.into(),
            dir: dir.join(id),
            certs: Some(certs.clone()),
            federation: "pons.example".into(),
            listen: format!("127.0.0.1:{port}"),
            peer: peers,
            send,
            receive,
            users: vec![],
            force: true,
        })
        .map_err(|f| f.error)
    };
    let load = |p: &Path| -> anyhow::Result<Config> {
        let mut c = Config::load(p)?;
        c.storage.sync = !args.no_sync;
        Ok(c)
    };
    let receiver_conf = load(&init(
        RECEIVER,
        receiver_port,
        names
            .iter()
            .zip(&ports)
            .map(|(n, p)| format!("{n}=127.0.0.1:{p}"))
            .collect(),
        vec![],
        names.iter().map(|n| format!("{n}:{CLASS}")).collect(),
    )?)?;
    let mut sender_confs = Vec::with_capacity(senders);
    for (name, port) in names.iter().zip(&ports) {
        sender_confs.push(load(&init(
            name.as_str(),
            *port,
            vec![format!("{RECEIVER}=127.0.0.1:{receiver_port}")],
            vec![format!("{RECEIVER}:{CLASS}")],
            vec![],
        )?)?);
    }
    let receiver_dir = receiver_conf.data_dir.clone();
    let nodes: Vec<Node> = sender_confs
        .iter()
        .map(|c| Node {
            socket: c.control_socket(),
            data_dir: c.data_dir.clone(),
        })
        .collect();

    let report = padded_report(args.size)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut m = runtime.block_on(async {
        let mut stops: Vec<(oneshot::Sender<()>, NodeTask)> = Vec::new();
        let result = async {
            stops.push(start_task(receiver_conf).await?);
            let rss_receiver = current_rss().unwrap_or(0);
            let clock = Instant::now();
            for c in sender_confs {
                stops.push(start_task(c).await?);
            }
            let start_senders = clock.elapsed();
            let rss_idle = current_rss().unwrap_or(0);
            drive(&nodes, &report, args, rss_receiver, rss_idle, start_senders).await
        }
        .await;
        let mut first_error = None;
        let (switches, tasks): (Vec<_>, Vec<_>) = stops.into_iter().unzip();
        for s in switches {
            let _ = s.send(());
        }
        for task in tasks {
            let stopped = task
                .await
                .context("node task failed")
                .and_then(|r| r.context("node stopped with an error"));
            if let (Err(e), None) = (stopped, &first_error) {
                first_error = Some(e);
            }
        }
        match (result, first_error) {
            (Err(e), _) | (Ok(_), Some(e)) => Err(e),
            (Ok(m), None) => Ok(m),
        }
    })?;
    drop(runtime);

    let n = m.latencies_ms.len().max(1) as f64;
    let secs = m.elapsed.as_secs_f64().max(1e-9);
    let cpu = m.after.cpu.saturating_sub(m.before.cpu).as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let sender_bytes: u64 = nodes.iter().map(|n| measure::dir_size(&n.data_dir)).sum();
    Ok(FanInReport {
        senders,
        records: m.latencies_ms.len(),
        concurrency: args.concurrency,
        size: args.size,
        report_bytes: report.len(),
        sync: !args.no_sync,
        start_senders_s: m.start_senders.as_secs_f64(),
        elapsed_s: secs,
        records_per_s: n / secs,
        latency_ms: percentiles(&mut m.latencies_ms),
        submit_ms: percentiles(&mut m.submit_ms),
        cpu_s_per_record: cpu / n,
        cpu_utilisation: cpu / secs / cores,
        rss_receiver_bytes: m.rss_receiver,
        rss_idle_bytes: m.rss_idle,
        rss_connected_bytes: m.rss_connected,
        rss_after_bytes: m.rss_after,
        rss_per_sender_bytes: m.rss_connected.saturating_sub(m.rss_receiver) as f64
            / senders as f64,
        // ru_maxrss and VmRSS are kept by different counters: the peak is never below a
        // resident size this run read.
        peak_rss_bytes: m.after.peak_rss.max(m.rss_after).max(m.rss_connected),
        sender_data_dir_bytes: sender_bytes as f64 / senders as f64,
        receiver_data_dir_bytes: measure::dir_size(&receiver_dir),
        senders_with_errors: m.errors.len(),
        sample_error: m.errors.into_iter().next(),
    })
}

/// What the fan-in measured.
struct Measured {
    start_senders: Duration,
    elapsed: Duration,
    latencies_ms: Vec<f64>,
    submit_ms: Vec<f64>,
    before: Usage,
    after: Usage,
    rss_receiver: u64,
    rss_idle: u64,
    rss_connected: u64,
    rss_after: u64,
    errors: Vec<String>,
}

/// Warms every sender up, submits the records through the senders in turn, waits for every
/// receipt.
async fn drive(
    nodes: &[Node],
    report: &str,
    args: &BenchArgs,
    rss_receiver: u64,
    rss_idle: u64,
    start_senders: Duration,
) -> anyhow::Result<Measured> {
    // One record per sender first, not measured: S connections and S stores' first writes.
    // Submitted at once, as S independent agencies would.
    let mut warm = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let socket = node.socket.clone();
        let report = report.to_owned();
        warm.push(tokio::spawn(async move {
            let mut conn = pons_node::control::Connection::open(&socket).await?;
            submit(&mut conn, &report, usize::MAX - i).await?;
            wait_delivered(&socket, 1).await
        }));
    }
    for w in warm {
        w.await.context("warm-up task failed")??;
    }
    let rss_connected = current_rss().unwrap_or(0);

    let before = Usage::now()?;
    let clock = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let report: Arc<str> = report.into();
    let sockets: Arc<Vec<PathBuf>> = Arc::new(nodes.iter().map(|n| n.socket.clone()).collect());
    let mut clients = Vec::new();
    for _ in 0..args.concurrency.min(args.records) {
        let (next, report, sockets) = (next.clone(), report.clone(), sockets.clone());
        let n = args.records;
        clients.push(tokio::spawn(async move {
            let mut mine: Vec<(usize, Submitted)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(mine);
                }
                // Record k goes through sender k mod S: a connection for each.
                let s = i % sockets.len();
                let mut conn = pons_node::control::Connection::open(&sockets[s]).await?;
                mine.push((s, submit(&mut conn, &report, i).await?));
            }
        }));
    }
    let mut submitted: Vec<Vec<Submitted>> = (0..nodes.len()).map(|_| Vec::new()).collect();
    for c in clients {
        for (s, sub) in c.await.context("client task failed")?? {
            submitted[s].push(sub);
        }
    }
    for (node, mine) in nodes.iter().zip(&submitted) {
        wait_delivered(&node.socket, mine.len() + 1).await?;
    }
    let rss_after = current_rss().unwrap_or(0);
    let after = Usage::now()?;
    let wall = clock.elapsed();

    let mut first = None;
    let mut last = None;
    let mut latencies_ms = Vec::with_capacity(args.records);
    let mut submit_ms = Vec::with_capacity(args.records);
    for (node, mine) in nodes.iter().zip(&submitted) {
        if mine.is_empty() {
            continue;
        }
        let delivered = delivered_times(&node.socket).await?;
        for s in mine {
            let at = *delivered.get(&s.id).ok_or_else(|| {
                anyhow!(
                    "record {} of {} is not delivered",
                    s.id,
                    node.socket.display()
                )
            })?;
            first = Some(first.map_or(s.started, |f: time::OffsetDateTime| f.min(s.started)));
            last = Some(last.map_or(at, |l: time::OffsetDateTime| l.max(at)));
            latencies_ms.push(ms(at - s.returned).max(0.0));
            submit_ms.push(ms(s.returned - s.started).max(0.0));
        }
    }
    let mut errors = Vec::new();
    for node in nodes {
        let status = super::ok(
            pons_node::control::call(&node.socket, &pons_node::control::Request::Status).await?,
        )?;
        if let Some(e) = status["peers"][0]["last_error"].as_str() {
            errors.push(e.to_owned());
        }
    }
    let elapsed = match (first, last) {
        (Some(f), Some(l)) => Duration::try_from(l - f).unwrap_or(wall),
        _ => wall,
    };
    Ok(Measured {
        start_senders,
        elapsed,
        latencies_ms,
        submit_ms,
        before,
        after,
        rss_receiver,
        rss_idle,
        rss_connected,
        rss_after,
        errors,
    })
}

/// Prints the fan-in's figures as a table.
pub fn print_table(r: &FanInReport, dir: &Path) {
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "pons bench --scenario fan-in: {} senders -> 1 receiver, {} records of ~{} bytes ({} bytes of report JSON), {} clients, {}",
        r.senders,
        r.records,
        r.size,
        r.report_bytes,
        r.concurrency,
        if r.sync {
            "durable (flush + fdatasync)"
        } else {
            "flush only (--no-sync)"
        }
    );
    println!(
        "  {} nodes in this process on 127.0.0.1, data in {}",
        r.senders + 1,
        dir.display()
    );
    println!();
    println!("exchange (every sender -> {RECEIVER})");
    println!("  records/s sustained        {:>12.0}", r.records_per_s);
    println!("  elapsed                    {:>12.3} s", r.elapsed_s);
    let lat = |name: &str, p: &Percentiles| {
        println!(
            "  {name:<26} p50 {:>8.2}  p90 {:>8.2}  p99 {:>8.2}  max {:>8.2} ms",
            p.p50, p.p90, p.p99, p.max
        );
    };
    lat("submit -> receipt", &r.latency_ms);
    lat("submit call", &r.submit_ms);
    println!(
        "  CPU per record             {:>12.1} µs   ({:.0}% of the cores)",
        r.cpu_s_per_record * 1e6,
        r.cpu_utilisation * 100.0
    );
    if let Some(e) = &r.sample_error {
        println!(
            "  senders with a delivery error {:>9}   (retried until delivered), e.g. {e}",
            r.senders_with_errors
        );
    }
    println!();
    println!("memory (resident size of the whole process)");
    println!(
        "  receiver alone             {:>12.1} MiB",
        mib(r.rss_receiver_bytes as f64)
    );
    println!(
        "  {:<26} {:>12.1} MiB   (started in {:.2} s)",
        format!("+ {} senders, idle", r.senders),
        mib(r.rss_idle_bytes as f64),
        r.start_senders_s
    );
    println!(
        "  + one record each          {:>12.1} MiB",
        mib(r.rss_connected_bytes as f64)
    );
    println!(
        "  after the run              {:>12.1} MiB",
        mib(r.rss_after_bytes as f64)
    );
    println!(
        "  peak                       {:>12.1} MiB",
        mib(r.peak_rss_bytes as f64)
    );
    println!(
        "  per sender (connected)     {:>12.2} MiB",
        mib(r.rss_per_sender_bytes)
    );
    println!(
        "  data dir per sender        {:>12.2} MiB   (receiver {:.1} MiB)",
        mib(r.sender_data_dir_bytes),
        mib(r.receiver_data_dir_bytes as f64)
    );
}
