//! `pons bench`: the exchange end to end, against the machine's limits, in one run.
//!
//! Two nodes (adolescence → cuta) run each in a `pons node run` process of its own (or,
//! with `--in-process`, both in this one), on loopback, with fresh development
//! certificates in a temporary directory and durability as in production (`[storage]
//! sync = true`: every acknowledged write is flushed and fdatasync'ed). N minor-risk reports
//! padded to about SIZE bytes are submitted through the sender's control socket by C
//! concurrent clients, exactly as `pons submit` would; the run ends when the sender's outbox
//! shows every one delivered (a receipt verified). Then the same process measures what the
//! machine can do: signatures, verifications and fdatasyncs per second.
//!
//! Timing: a record's submit time is when the control socket returned its id (durable in
//! the outbox); its receipt time is the `delivered` time the sender's outbox records, read
//! from the system clock when the receipt has been verified, just before the sender's
//! durable write of that state. Both come from the same clock at its full resolution (ns
//! on Linux), so no polling interval limits the latencies; the poll that notices the end
//! (every 50 ms) bounds nothing but the CPU and disk figures' window.

mod fanin;
mod feed;
mod journal;
mod limits;
mod measure;
mod nodes;
mod sweep;

use std::collections::{BTreeMap, HashMap};
use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use pons_core::{NodeId, SigningAlgorithm};
use pons_node::control::{self, Request, Response};
use pons_node::Config;
use pons_pki::KeyAlgorithm;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::exit::{Outcome, ResultExt};
use crate::flags::{BenchArgs, InitArgs, Scenario};
use crate::pki::make_dev_federation;

use feed::FeedRates;
use journal::JournalRates;
use limits::Limits;
use measure::{percentiles, Percentiles, Usage};
use nodes::Nodes;

const SAMPLE_REPORT: &str = include_str!("../../../config/examples/minor-risk-report.json");

/// Give up when no record is delivered for this long.
pub(crate) const STALL: Duration = Duration::from_secs(60);

/// How often the end of the run is checked.
const POLL: Duration = Duration::from_millis(50);

/// Signatures made per record on the critical path, at best: the envelope (sender), and
/// its share of a batched receipt (receiver; one per sender and committed batch, at most
/// `pons_store::RECEIPT_BATCH` records).
const SIGNS_PER_RECORD: f64 = 1.0 + 1.0 / pons_store::RECEIPT_BATCH as f64;

/// Verifications per record on the critical path, in steady state, at best. The receiver
/// opens the envelope (one COSE signature); the sender verifies each distinct receipt once,
/// its share of a batched receipt, and reads its own envelope from memory. The signing
/// certificate's and the CRL's signatures are verified once per chain and then served from
/// `pons_core::Trust`'s cache (while the chain is within its validity).
const VERIFIES_PER_RECORD: f64 = 1.0 + 1.0 / pons_store::RECEIPT_BATCH as f64;

/// Durable writes per record on the critical path: submit (sender) and receive (receiver).
/// Each is a sled flush plus an fdatasync, shared with any concurrent writer of the same
/// store (group commit). The sender's delivered mark rides in a later write's flush.
const SYNCS_PER_RECORD: f64 = 2.0;

/// Everything `pons bench` reports (the `--json` output).
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Records measured.
    pub records: usize,
    /// Concurrent submitting clients.
    pub concurrency: usize,
    /// `--rate`: the offered load in records per second (open loop); null when the
    /// clients submit as fast as the node answers.
    pub offered_rate: Option<f64>,
    /// Requested record size, bytes.
    pub size: usize,
    /// Bytes of one submitted report (JSON, as the caseworker writes it).
    pub report_bytes: usize,
    /// The nodes' signing algorithm.
    pub algorithm: String,
    /// Whether the nodes fdatasync after each flush (`[storage] sync`).
    pub sync: bool,
    /// From the first submit to the last receipt, seconds.
    pub elapsed_s: f64,
    /// Records per second over `elapsed_s`.
    pub records_per_s: f64,
    /// Submit (id returned) to receipt (verified by the sender), milliseconds; with
    /// `--rate`, from the record's due time (the submit call included) to its receipt.
    pub latency_ms: Percentiles,
    /// Submit call duration (request sent to durable id returned), milliseconds.
    pub submit_ms: Percentiles,
    /// From the submit's start (with `--rate`, the record's due time) to its arrival at the
    /// receiver (cuta's `received_at`, read as it begins to check the envelope), ms: the
    /// submit, the sender's durable write, the QUIC hop.
    pub to_receiver_ms: Percentiles,
    /// From the record's arrival at the receiver to its receipt time at the sender, ms: the
    /// receiver's checks, durable write and receipt, the way back, the receipt's check.
    pub receiver_to_receipt_ms: Percentiles,
    /// CPU seconds (user + system, both nodes and the clients) per record; with
    /// the nodes' read from `/proc/PID/stat` (10 ms ticks here) unless `--in-process`.
    pub cpu_s_per_record: f64,
    /// CPU used over the run as a share of every core (1.0 = all cores busy).
    pub cpu_utilisation: f64,
    /// `cpu_s_per_record` split by process: each node by name and `clients` (this
    /// process: the clients that submit and wait for receipts); null with `--in-process`.
    pub cpu_s_per_record_by_process: Option<BTreeMap<String, f64>>,
    /// Bytes written to disk per record: the block device's count for the data
    /// directories' device (every process's writes to it) where there is one, else the
    /// process's `write_bytes`; see `disk_write_source` and [`measure::device_written`].
    pub disk_write_bytes_per_record: Option<f64>,
    /// Where `disk_write_bytes_per_record` comes from: "device", "process" or "none".
    pub disk_write_source: String,
    /// `/proc/self/io` `write_bytes` per record, if accounted (overcounts writes into large
    /// page-cache folios, see [`measure::device_written`]).
    pub process_write_bytes_per_record: Option<f64>,
    /// Both data directories' size after the run, per record.
    pub data_dir_bytes_per_record: f64,
    /// Whether each node ran in a process of its own (not `--in-process`).
    pub processes: bool,
    /// Peak RSS of this process, bytes: the clients, or with `--in-process` both nodes and
    /// the clients.
    pub peak_rss_bytes: u64,
    /// Each node's peak RSS (`VmHWM`), bytes, by node; null with `--in-process`.
    pub node_peak_rss_bytes: Option<BTreeMap<String, u64>>,
    /// The receiving node's feed: each sink's rate over the first (at most 500) records
    /// received, measured during the exchange; null with `--no-feed`.
    pub feed: Option<FeedRates>,
    /// The audit journal's append and verification rates, measured in the same run.
    pub journal: JournalRates,
    /// The machine's limits, measured in the same run.
    pub limits: Limits,
    /// The rate each limit would allow, and the ratio to the one that binds.
    pub bounds: Bounds,
}

/// The end-to-end rate each limit would allow, from the work per record.
#[derive(Debug, Serialize)]
pub struct Bounds {
    /// Every core doing nothing but the record's signatures and verifications.
    pub crypto_records_per_s: f64,
    /// One fdatasync per durable write, none shared.
    pub fdatasync_records_per_s: f64,
    /// 64 durable writes per fdatasync (what full group commit could reach).
    pub group_64_records_per_s: f64,
    /// The CPU this implementation spends per record, on every core: what the code, not
    /// the machine, allows.
    pub cpu_records_per_s: f64,
    /// The machine limit that binds: the lower of `crypto` and `group-64` (the store
    /// already shares fdatasyncs between concurrent writers, so one fdatasync per write is
    /// shown for reference only).
    pub binding: String,
    /// End-to-end records/s over the binding bound.
    pub ratio: f64,
    /// The disk's synced write bandwidth over the bytes this implementation writes per
    /// record (both nodes): what the disk allows at this code's write volume. Absent where
    /// the bytes written are not known (no `/proc/self/io`).
    pub disk_records_per_s: Option<f64>,
    /// What binds this implementation: the lower of `cpu` (its CPU per record) and `disk`
    /// (its bytes written per record).
    pub code_binding: String,
    /// End-to-end records/s over the bound that binds this implementation.
    pub code_ratio: f64,
}

/// One submitted record: when its submit started and returned.
struct Submitted {
    id: String,
    started: OffsetDateTime,
    returned: OffsetDateTime,
    /// With `--rate`: when the record was due to be submitted.
    due: Option<OffsetDateTime>,
}

pub fn run(args: &BenchArgs) -> Outcome {
    if args.records == 0 || args.concurrency == 0 {
        return Err(anyhow!("--records and --concurrency must be at least 1")).invalid();
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(anyhow!(
            "--rate: must be a number of records per second above 0"
        ))
        .invalid();
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix("pons-bench-");
    let temp = match &args.dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .context("cannot make the bench directory")?;
    match args.scenario {
        Scenario::TwoNodes => {
            let report = exchange(temp.path(), args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_table(&report, temp.path());
            }
        }
        Scenario::FanIn => {
            if args.senders == 0 {
                return Err(anyhow!("--senders must be at least 1")).invalid();
            }
            let report = fanin::run(temp.path(), args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                fanin::print_table(&report, temp.path());
            }
        }
        Scenario::Sweep => {
            if args.sweep_expiring == 0 || args.sweep_records.contains(&0) {
                return Err(anyhow!(
                    "--sweep-records and --sweep-expiring must be at least 1"
                ))
                .invalid();
            }
            let report = sweep::run(
                temp.path(),
                &args.sweep_records,
                args.sweep_expiring,
                args.sweep_scattered,
                !args.no_sync,
            )?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                sweep::print_table(&report);
            }
        }
    }
    Ok(())
}

/// Runs the two nodes, the submissions and the limits; returns the figures.
fn exchange(dir: &Path, args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let certs = dir.join("federation");
    let nodes = [NodeId::new("adolescence")?, NodeId::new("cuta")?];
    make_dev_federation(&certs, &nodes, "pons.example", KeyAlgorithm::Ed25519, true)?;
    let (pa, pc) = (free_port()?, free_port()?);
    let init = |id: &str, port: u16, peer: &str, peer_port: u16, send: &str, receive: &str| {
        crate::init::make(&InitArgs {
            node_id: id.into(),
            dir: dir.join(id),
            certs: Some(certs.clone()),
            federation: "pons.example".into(),
            listen: format!("127.0.0.1:{port}"),
            peer: vec![format!("{peer}=127.0.0.1:{peer_port}")],
            send: vec![format!("{peer}:{send}")],
            receive: vec![format!("{peer}:{receive}")],
            users: vec![],
            force: true,
        })
        .map_err(|f| f.error)
    };
    let a_path = init(
        "adolescence",
        pa,
        "cuta",
        pc,
        "minor-risk-report",
        "follow-up-request",
    )?;
    let c_path = init(
        "cuta",
        pc,
        "adolescence",
        pa,
        "follow-up-request",
        "minor-risk-report",
    )?;
    // As in production: nothing is acknowledged before it is fdatasync'ed (unless
    // --no-sync measures the cost of that). Written into the files, which a node process
    // reads as a node task does, and read back: a configuration that came with a
    // `[storage]` table of its own would refuse the second one, and the run must not go on
    // with another setting than the one it reports.
    for path in [&a_path, &c_path] {
        let mut text = std::fs::read_to_string(path).context("cannot read the configuration")?;
        text.push_str(&format!("\n[storage]\nsync = {}\n", !args.no_sync));
        std::fs::write(path, text).context("cannot write the configuration")?;
        let sync = Config::load(path)
            .with_context(|| format!("{}: [storage] sync", path.display()))?
            .storage
            .sync;
        if sync == args.no_sync {
            bail!(
                "{}: [storage] sync is {sync}, not {}",
                path.display(),
                !args.no_sync
            );
        }
    }
    // The receiving node hands every record to one sink of each kind that needs no
    // outside server; their rates are measured during the exchange.
    let nats = if args.no_feed {
        None
    } else {
        feed::NatsServer::start(dir)?
    };
    if !args.no_feed {
        feed::configure(&c_path, dir, nats.as_ref().map(|n| n.port))?;
    }
    let (a_conf, c_conf) = (Config::load(&a_path)?, Config::load(&c_path)?);
    let a_sock = a_conf.control_socket();
    let c_sock = c_conf.control_socket();
    let data_dirs = [a_conf.data_dir.clone(), c_conf.data_dir.clone()];

    let report = padded_report(args.size)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let measured = runtime.block_on(async {
        let nodes = Nodes::start(&[a_path.clone(), c_path.clone()], !args.in_process, dir).await?;
        let result = drive(
            &a_sock,
            &c_sock,
            &report,
            args,
            nats.is_some(),
            &nodes.processes(),
        )
        .await;
        nodes.stop().await?;
        result
    })?;
    drop(runtime);

    let journal = journal::measure(dir, args.journal_entries)?;
    let limits = limits::measure(dir, args.size)?;
    let data_bytes: u64 = data_dirs.iter().map(|d| measure::dir_size(d)).sum();
    Ok(summarise(
        args,
        report.len(),
        measured,
        journal,
        limits,
        data_bytes,
        SigningAlgorithm::Ed25519,
    ))
}

/// What the exchange itself measured.
struct Measured {
    elapsed: Duration,
    latencies_ms: Vec<f64>,
    submit_ms: Vec<f64>,
    to_receiver_ms: Vec<f64>,
    receiver_to_receipt_ms: Vec<f64>,
    before: Usage,
    after: Usage,
    /// [`measure::device_written`] at the start and end of the window.
    device_before: Option<u64>,
    device_after: Option<u64>,
    feed: Option<FeedRates>,
    /// Each node's peak RSS, by node, when they ran in processes of their own.
    node_peak_rss: Option<BTreeMap<String, u64>>,
}

/// Warms the connection up, submits every record, waits for every receipt.
async fn drive(
    socket: &Path,
    receiver: &Path,
    report: &str,
    args: &BenchArgs,
    nats: bool,
    node_processes: &[(String, u32)],
) -> anyhow::Result<Measured> {
    // One record first, not measured: the QUIC connection and the stores' first writes.
    let warm = submit(
        &mut control::Connection::open(socket).await?,
        report,
        usize::MAX,
    )
    .await?;
    wait_delivered(socket, 1).await?;
    drop(warm);
    // The receiver's sinks: the warm-up record is arrival 1, the measured ones 2..=N+1;
    // the sinks are timed over the first FEED_RECORDS of them.
    let feeds = (!args.no_feed).then(|| {
        feed::watch(
            receiver,
            (args.records as u64).min(feed::FEED_RECORDS) + 1,
            nats,
        )
    });

    let data = socket.parent().unwrap_or(socket);
    let device_before = measure::device_written(data);
    let before = Usage::with_nodes(node_processes)?;
    let clock = Instant::now();
    let wall = OffsetDateTime::now_utc();
    // The same moment on the clock `perf record -k CLOCK_MONOTONIC` stamps samples with.
    let monotonic = monotonic_ns();
    let report: Arc<str> = report.into();
    let clients = args.concurrency.min(args.records);
    let submitted = match args.rate {
        Some(rate) => {
            let (socket, report, n) = (socket.to_owned(), report.clone(), args.records);
            tokio::task::spawn_blocking(move || {
                open_loop(&socket, &report, n, clients, rate, (clock, wall))
            })
            .await
            .context("the open loop's clients failed")??
        }
        None => closed_loop(socket, &report, args.records, clients).await?,
    };
    wait_delivered(socket, args.records + 1).await?;
    let after = Usage::with_nodes(node_processes)?;
    // Read now: the lists read below to time each record make the nodes' own peaks.
    let node_peak_rss = (!node_processes.is_empty()).then(|| {
        node_processes
            .iter()
            .filter_map(|(name, pid)| Some((name.clone(), measure::node_peak_rss(*pid)?)))
            .collect()
    });
    let device_after = measure::device_written(data);
    let wall_start = wall;
    let wall = clock.elapsed();
    let feed = match feeds {
        Some(f) => Some(f.finish(receiver).await?),
        None => None,
    };

    let delivered = delivered_times(socket).await?;
    let received = received_times(receiver).await?;
    let first = submitted
        .iter()
        .map(|s| s.started)
        .min()
        .ok_or_else(|| anyhow!("nothing was submitted"))?;
    let mut last = first;
    let mut latencies_ms = Vec::with_capacity(submitted.len());
    let mut submit_ms = Vec::with_capacity(submitted.len());
    let mut to_receiver_ms = Vec::with_capacity(submitted.len());
    let mut receiver_to_receipt_ms = Vec::with_capacity(submitted.len());
    let mut trace = format!(
        "# ms from the first submit, at CLOCK_MONOTONIC {} ns\nid,due_ms,started_ms,returned_ms,received_ms,receipt_ms\n",
        monotonic.map_or(0, |m| m + (first - wall_start).whole_nanoseconds().max(0) as u64)
    );
    for s in &submitted {
        let at = *delivered
            .get(&s.id)
            .ok_or_else(|| anyhow!("record {} is not delivered", s.id))?;
        let arrived = *received
            .get(&s.id)
            .ok_or_else(|| anyhow!("record {} is not in the receiver's inbox", s.id))?;
        last = last.max(at);
        if args.trace.is_some() {
            let due = s
                .due
                .map(|d| format!("{:.3}", ms(d - first)))
                .unwrap_or_default();
            trace.push_str(&format!(
                "{},{due},{:.3},{:.3},{:.3},{:.3}\n",
                s.id,
                ms(s.started - first),
                ms(s.returned - first),
                ms(arrived - first),
                ms(at - first)
            ));
        }
        // A receipt can be verified before the submitting client has read its answer: the
        // record was on its way as soon as it was durable. Such a latency counts as zero.
        latencies_ms.push(match s.due {
            // Open loop: from the record's due time, the submit call included.
            Some(due) => ms(at - due).max(0.0),
            None => ms(at - s.returned).max(0.0),
        });
        submit_ms.push(ms(s.returned - s.started).max(0.0));
        to_receiver_ms.push(ms(arrived - s.due.unwrap_or(s.started)).max(0.0));
        receiver_to_receipt_ms.push(ms(at - arrived).max(0.0));
    }
    if let Some(path) = &args.trace {
        std::fs::write(path, trace).with_context(|| format!("writing {}", path.display()))?;
    }
    let elapsed = Duration::try_from(last - first).unwrap_or(wall);
    Ok(Measured {
        elapsed,
        latencies_ms,
        submit_ms,
        to_receiver_ms,
        receiver_to_receipt_ms,
        before,
        after,
        device_before,
        device_after,
        feed,
        node_peak_rss,
    })
}

/// Closed loop: `clients` tasks, each on a connection of its own (as an agency's system
/// would keep one), submit the next of `n` records as soon as the last one returned.
async fn closed_loop(
    socket: &Path,
    report: &Arc<str>,
    n: usize,
    clients: usize,
) -> anyhow::Result<Vec<Submitted>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (next, report, socket) = (next.clone(), report.clone(), socket.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut conn = control::Connection::open(&socket).await?;
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(mine);
                }
                mine.push(submit(&mut conn, &report, i).await?);
            }
        }));
    }
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.extend(task.await.context("client task failed")??);
    }
    Ok(out)
}

/// Open loop: record i is due at `start` + i/`rate`, whatever the answers. `clients`
/// threads, each with a blocking connection of its own, take the next record, sleep until
/// it is due and submit it: at most `clients` outstanding, and a record no thread was free
/// for starts late, its latency counted from its due time all the same.
///
/// Threads rather than tasks, because the wait until the due time is the client's, not the
/// system's: tokio's timer ticks in whole milliseconds, and a task woken by a pacing thread
/// started its submit 0.17 ms after the due time at the median, 0.7 ms at the 99th
/// percentile (traced at 1,000/s). A thread's own `nanosleep` wakes within tens of µs.
fn open_loop(
    socket: &Path,
    report: &str,
    n: usize,
    clients: usize,
    rate: f64,
    (clock, wall): (Instant, OffsetDateTime),
) -> anyhow::Result<Vec<Submitted>> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    // A sleeping thread is woken up to 50 µs late by default (timer slack).
                    let _ = nix::sys::prctl::set_timerslack(1_000);
                    let mut conn = control::BlockingConnection::open(socket)?;
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok::<_, anyhow::Error>(mine);
                        }
                        let due = Duration::from_secs_f64(i as f64 / rate);
                        if let Some(wait) = (clock + due).checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let request = submit_request(report, i);
                        let started = OffsetDateTime::now_utc();
                        let body = ok(conn.call(&request)?)?;
                        mine.push(submitted(&body, started, Some(wall + due))?);
                    }
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for thread in threads {
            let mine = thread
                .join()
                .map_err(|_| anyhow!("an open-loop client thread panicked"))??;
            out.extend(mine);
        }
        Ok(out)
    })
}

fn ms(d: time::Duration) -> f64 {
    d.as_seconds_f64() * 1e3
}

/// Submits report number `i` over `conn` and times it.
async fn submit(
    conn: &mut control::Connection,
    report: &str,
    i: usize,
) -> anyhow::Result<Submitted> {
    let request = submit_request(report, i);
    let started = OffsetDateTime::now_utc();
    let body = ok(conn.call(&request).await?)?;
    submitted(&body, started, None)
}

/// The submit request of report number `i`, its case reference made unique.
fn submit_request(report: &str, i: usize) -> Request {
    Request::Submit {
        to: "cuta".into(),
        class: "minor-risk-report".into(),
        report: report.replace("AGO-2026-000123", &format!("AGO-BENCH-{i:08}")),
        purpose: None,
        justification: None,
    }
}

/// A submit started at `started` and answered with `body` just now.
fn submitted(
    body: &Value,
    started: OffsetDateTime,
    due: Option<OffsetDateTime>,
) -> anyhow::Result<Submitted> {
    let returned = OffsetDateTime::now_utc();
    let id = body["id"]
        .as_str()
        .ok_or_else(|| anyhow!("submit answered without a record id"))?
        .to_owned();
    Ok(Submitted {
        id,
        started,
        returned,
        due,
    })
}

fn ok(response: Response) -> anyhow::Result<Value> {
    match response {
        Response::Ok { body } => Ok(body),
        Response::Err {
            message, details, ..
        } => Err(anyhow!("{message} {}", details.join("; "))),
    }
}

/// Now on `CLOCK_MONOTONIC`, ns (what `perf record -k CLOCK_MONOTONIC` stamps).
fn monotonic_ns() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// Waits until the sender counts `n` records delivered to cuta (or any rejected).
async fn wait_delivered(socket: &Path, n: usize) -> anyhow::Result<()> {
    let mut seen = 0;
    let mut progress = Instant::now();
    loop {
        let status = ok(control::call(socket, &Request::Status).await?)?;
        let peer = &status["peers"][0];
        let delivered = peer["delivered"].as_u64().unwrap_or(0) as usize;
        let rejected = peer["rejected"].as_u64().unwrap_or(0);
        if rejected > 0 {
            bail!(
                "{rejected} records were rejected: {}",
                peer["last_error"].as_str().unwrap_or("?")
            );
        }
        if delivered >= n {
            return Ok(());
        }
        if delivered > seen {
            seen = delivered;
            progress = Instant::now();
        } else if progress.elapsed() > STALL {
            bail!(
                "{delivered} of {n} records delivered and none for {STALL:?}; last error: {}",
                peer["last_error"].as_str().unwrap_or("none")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every received record's arrival time, by id, from the receiver's inbox.
async fn received_times(socket: &Path) -> anyhow::Result<HashMap<String, OffsetDateTime>> {
    listed_times(socket, &Request::InboxList, "received", |row| {
        row["received_at"].as_str()
    })
    .await
}

/// Every delivered record's receipt time, by id, from the sender's outbox.
async fn delivered_times(socket: &Path) -> anyhow::Result<HashMap<String, OffsetDateTime>> {
    listed_times(socket, &Request::OutboxList, "delivered", |row| {
        (row["state"] == "delivered")
            .then(|| row["detail"]["at"].as_str())
            .flatten()
    })
    .await
}

/// The time `at` gives each row of the list `request` answers (rows it gives none are
/// left out), by record id; `what` names the time in errors.
async fn listed_times(
    socket: &Path,
    request: &Request,
    what: &str,
    at: impl Fn(&Value) -> Option<&str>,
) -> anyhow::Result<HashMap<String, OffsetDateTime>> {
    let list = ok(control::call(socket, request).await?)?;
    let rows = list
        .as_array()
        .ok_or_else(|| anyhow!("{what}: the list is not a list"))?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let (Some(id), Some(stamp)) = (row["id"].as_str(), at(row)) else {
            continue;
        };
        let parsed = OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("record {id}: {what} time {stamp:?}"))?;
        out.insert(id.to_owned(), parsed);
    }
    Ok(out)
}

/// The sample report without its comments, its statements padded so that the report is
/// about `size` bytes (never less than the sample itself, about 1,300 bytes).
///
/// The padding goes into fact statements (8,000 characters at most each, 200 at most), the
/// free text a caseworker writes most of.
fn padded_report(size: usize) -> anyhow::Result<String> {
    let mut report: Value = serde_json::from_str(SAMPLE_REPORT)?;
    strip_comments(&mut report);
    let base = serde_json::to_string(&report)?.len();
    let statements = report["body"]["statements"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("sample report has no statements"))?;
    let mut missing = size.saturating_sub(base);
    const WORDS: &str = "Observed again during a follow-up visit. ";
    // Each added statement costs its JSON frame too (about 40 bytes).
    while missing > 60 && statements.len() < pons_core::validate::MAX_STATEMENTS {
        let chars = (missing - 40).min(pons_core::validate::MAX_TEXT_CHARS);
        let text: String = WORDS.chars().cycle().take(chars).collect();
        let text = text.trim_end().to_owned();
        missing = missing.saturating_sub(text.len() + 40);
        statements.push(serde_json::json!({ "kind": "fact", "text": text }));
    }
    Ok(serde_json::to_string(&report)?)
}

/// Removes the sample's `_` comment keys: the size asked for is the size of the record.
fn strip_comments(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('_'));
            map.values_mut().for_each(strip_comments);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_comments),
        _ => {}
    }
}

/// A free UDP port on 127.0.0.1 (released before the node binds it).
fn free_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The CPU per record of each node process and of this one (`clients`), when the nodes
/// ran in processes of their own.
fn cpu_by_process(m: &Measured, n: f64) -> Option<BTreeMap<String, f64>> {
    let (before, after) = (&m.before.node_cpu, &m.after.node_cpu);
    if after.is_empty() {
        return None;
    }
    let mut by = BTreeMap::new();
    let mut nodes = Duration::ZERO;
    for (name, a) in after {
        let used = a.saturating_sub(before.get(name).copied().unwrap_or_default());
        nodes += used;
        by.insert(name.clone(), used.as_secs_f64() / n);
    }
    let all = m.after.cpu.saturating_sub(m.before.cpu);
    by.insert(
        "clients".to_owned(),
        all.saturating_sub(nodes).as_secs_f64() / n,
    );
    Some(by)
}

fn summarise(
    args: &BenchArgs,
    report_bytes: usize,
    mut m: Measured,
    journal: JournalRates,
    limits: Limits,
    data_bytes: u64,
    algorithm: SigningAlgorithm,
) -> BenchReport {
    let n = m.latencies_ms.len().max(1) as f64;
    let secs = m.elapsed.as_secs_f64().max(1e-9);
    let records_per_s = n / secs;
    let cpu = m.after.cpu.saturating_sub(m.before.cpu).as_secs_f64();
    let window = secs.max(1e-9);
    let per_record = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / n),
        _ => None,
    };
    let process_disk = per_record(m.before.write_bytes, m.after.write_bytes);
    let device_disk = per_record(m.device_before, m.device_after);
    let (disk, disk_source) = match (device_disk, process_disk) {
        (Some(d), _) => (Some(d), "device"),
        (None, Some(p)) => (Some(p), "process"),
        (None, None) => (None, "none"),
    };
    let (sign, verify) = limits.of(algorithm);
    let cores = limits.cores as f64;
    let crypto = cores / (SIGNS_PER_RECORD / sign + VERIFIES_PER_RECORD / verify);
    let fsync = limits.fdatasync_per_s / SYNCS_PER_RECORD;
    let group = limits.appends_per_s_group_64 / SYNCS_PER_RECORD;
    let (binding, bound) = if crypto <= group {
        ("crypto", crypto)
    } else {
        ("group-64", group)
    };
    let cpu_bound = if cpu > 0.0 { cores * n / cpu } else { 0.0 };
    let disk_bound = disk
        .filter(|bytes| *bytes > 0.0)
        .map(|bytes| limits.synced_write_bytes_per_s / bytes);
    let (code_binding, code_bound) = match disk_bound {
        Some(d) if d < cpu_bound => ("disk-writes", d),
        _ => ("cpu", cpu_bound),
    };
    BenchReport {
        records: m.latencies_ms.len(),
        concurrency: args.concurrency,
        offered_rate: args.rate,
        size: args.size,
        report_bytes,
        algorithm: algorithm.to_string(),
        sync: !args.no_sync,
        elapsed_s: secs,
        records_per_s,
        latency_ms: percentiles(&mut m.latencies_ms),
        submit_ms: percentiles(&mut m.submit_ms),
        to_receiver_ms: percentiles(&mut m.to_receiver_ms),
        receiver_to_receipt_ms: percentiles(&mut m.receiver_to_receipt_ms),
        cpu_s_per_record: cpu / n,
        cpu_utilisation: cpu / window / cores,
        cpu_s_per_record_by_process: cpu_by_process(&m, n),
        disk_write_bytes_per_record: disk,
        disk_write_source: disk_source.to_owned(),
        process_write_bytes_per_record: process_disk,
        data_dir_bytes_per_record: data_bytes as f64 / n,
        processes: !args.in_process,
        peak_rss_bytes: m.after.peak_rss,
        node_peak_rss_bytes: m.node_peak_rss.take(),
        feed: m.feed,
        journal,
        limits,
        bounds: Bounds {
            crypto_records_per_s: crypto,
            fdatasync_records_per_s: fsync,
            group_64_records_per_s: group,
            cpu_records_per_s: cpu_bound,
            binding: binding.to_owned(),
            ratio: records_per_s / bound,
            disk_records_per_s: disk_bound,
            code_binding: code_binding.to_owned(),
            code_ratio: if code_bound > 0.0 {
                records_per_s / code_bound
            } else {
                0.0
            },
        },
    }
}

fn print_table(r: &BenchReport, dir: &Path) {
    let l = &r.limits;
    println!(
        "pons bench: {} records of ~{} bytes ({} bytes of report JSON), {} clients, {}, {}",
        r.records,
        r.size,
        r.report_bytes,
        r.concurrency,
        r.algorithm,
        if r.sync {
            "durable (flush + fdatasync)"
        } else {
            "flush only (--no-sync)"
        }
    );
    println!(
        "  two nodes {} on 127.0.0.1, data in {}",
        if r.processes {
            "in processes of their own"
        } else {
            "in this process"
        },
        dir.display()
    );
    println!();
    println!("exchange (adolescence -> cuta)");
    println!("  records/s sustained        {:>12.0}", r.records_per_s);
    println!("  elapsed                    {:>12.3} s", r.elapsed_s);
    let lat = |name: &str, p: &Percentiles| {
        println!(
            "  {name:<26} p50 {:>8.2}  p90 {:>8.2}  p99 {:>8.2}  max {:>8.2} ms",
            p.p50, p.p90, p.p99, p.max
        );
    };
    if let Some(rate) = r.offered_rate {
        println!("  offered load (open loop)   {rate:>12.0} records/s");
        lat("due -> receipt", &r.latency_ms);
        lat("due -> at cuta", &r.to_receiver_ms);
    } else {
        lat("submit -> receipt", &r.latency_ms);
        lat("submit start -> at cuta", &r.to_receiver_ms);
    }
    lat("at cuta -> receipt", &r.receiver_to_receipt_ms);
    lat("submit call", &r.submit_ms);
    println!(
        "  CPU per record             {:>12.1} µs   ({:.0}% of {} cores)",
        r.cpu_s_per_record * 1e6,
        r.cpu_utilisation * 100.0,
        l.cores
    );
    for (process, cpu) in r.cpu_s_per_record_by_process.iter().flatten() {
        println!("    of which {process:<17} {:>12.1} µs", cpu * 1e6);
    }
    match r.disk_write_bytes_per_record {
        Some(d) => println!(
            "  written to disk per record {:>12.0} bytes   ({})",
            d, r.disk_write_source
        ),
        None => println!("  written to disk per record          n/a (no /proc/self/io)"),
    }
    println!(
        "  data dirs per record       {:>12.0} bytes",
        r.data_dir_bytes_per_record
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    match &r.node_peak_rss_bytes {
        None => println!(
            "  peak RSS (both nodes)      {:>12.1} MiB",
            mib(r.peak_rss_bytes)
        ),
        Some(nodes) => {
            for (node, rss) in nodes {
                println!("  peak RSS, {node:<16} {:>12.1} MiB", mib(*rss));
            }
            println!(
                "  peak RSS, the clients      {:>12.1} MiB",
                mib(r.peak_rss_bytes)
            );
        }
    }
    if let Some(feed) = &r.feed {
        print_feed(r, feed);
    }
    print_journal(&r.journal);
    print_limits(r);
}

fn print_feed(r: &BenchReport, feed: &FeedRates) {
    println!();
    println!(
        "feed at the receiver (records/s over the first {} received, to the sink's cursor; {} sinks at once)",
        (r.records as u64).min(feed::FEED_RECORDS),
        feed.rates().len()
    );
    for (name, rate) in feed.rates() {
        println!(
            "  {name:<26} {:>12.0}   ({:.2} of the exchange)",
            rate,
            rate / r.records_per_s
        );
    }
    if feed.nats_records_per_s.is_none() {
        println!("  nats                       not measured: no nats-server on PATH");
    }
}

fn print_journal(j: &JournalRates) {
    println!();
    println!("journal (one store, fdatasync per durable call)");
    println!(
        "  append, one call per entry {:>12.0} entries/s",
        j.append_per_s
    );
    println!(
        "  append, {} per call      {:>12.0} entries/s",
        journal::BATCH,
        j.append_batch_1000_per_s
    );
    println!(
        "  verify, store ({} entries) {:>9.0} entries/s",
        j.verified_entries, j.verify_store_per_s
    );
    println!(
        "  verify_chain, in memory    {:>12.0} entries/s",
        j.verify_chain_memory_per_s
    );
}

fn print_limits(r: &BenchReport) {
    let l = &r.limits;
    let b = &r.bounds;
    println!();
    println!("machine limits (one core, one file)");
    println!(
        "  Ed25519  sign/s {:>10.0}   verify/s {:>10.0}",
        l.ed25519_sign_per_s, l.ed25519_verify_per_s
    );
    println!(
        "  P-256    sign/s {:>10.0}   verify/s {:>10.0}",
        l.p256_sign_per_s, l.p256_verify_per_s
    );
    println!("  fdatasync/s              {:>10.0}", l.fdatasync_per_s);
    println!(
        "  appends/s, 64 per fdatasync {:>7.0}",
        l.appends_per_s_group_64
    );
    println!(
        "  MB/s in 64 KiB writes, each fdatasync'ed {:>6.0}",
        l.synced_write_bytes_per_s / 1e6
    );
    println!();
    println!(
        "bounds on records/s (per record: {SIGNS_PER_RECORD:.2} signs, {VERIFIES_PER_RECORD:.2} verifies, {SYNCS_PER_RECORD} durable writes)"
    );
    let row = |name: &str, v: f64| {
        println!(
            "  {name:<34} {:>10.0}   end-to-end is {:>5.1}% of it",
            v,
            100.0 * r.records_per_s / v
        );
    };
    row("crypto on every core", b.crypto_records_per_s);
    row("one fdatasync per durable write", b.fdatasync_records_per_s);
    row("64 writes per fdatasync", b.group_64_records_per_s);
    row("this code's CPU per record", b.cpu_records_per_s);
    if let Some(d) = b.disk_records_per_s {
        row("synced MB/s / bytes written per record", d);
    }
    println!(
        "  binding: {}; ratio end-to-end / binding = {:.3}",
        b.binding, b.ratio
    );
    println!(
        "  binding this code: {}; ratio end-to-end / it = {:.3}",
        b.code_binding, b.code_ratio
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_report_is_about_the_size_asked_and_valid() {
        for size in [0, 2048, 20_000] {
            let report = padded_report(size).unwrap();
            assert!(!report.contains("\"_"), "comments left in the report");
            if size > 2000 {
                let off = report.len().abs_diff(size);
                assert!(off < 100, "asked {size}, got {}", report.len());
            }
            let draft =
                pons_core::validate::Draft::parse_json("minor-risk-report", report.as_bytes());
            assert!(draft.is_ok(), "size {size}: {:?}", draft.err());
        }
    }
}
