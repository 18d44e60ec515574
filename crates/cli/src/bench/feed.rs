//! The receiving node's feed during the exchange: one sink of each kind (spool, exec,
//! stream, and nats when a `nats-server` is on PATH: the bench starts one with JetStream on
//! 127.0.0.1 and a temporary store), all at once, and how fast each hands the records over.
//!
//! A sink's rate is the measured records over the time from the first measured record's
//! reception (its `received_at` at the receiver) to the moment the sink's cursor reached
//! the last one, as seen by polling the receiver's `Status` every [`POLL`]: the poll bounds
//! the end's resolution. The `stream` sink is read and acknowledged by a client of the
//! control socket here, as `pons feed --auto-ack` would, in batches of up to [`READ_LIMIT`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use pons_node::control::{self, Request};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::{ok, STALL};

/// The sinks configured on the receiving node that need no outside server: (name, kind).
pub const SINKS: [(&str, &str); 3] = [("spool", "spool"), ("exec", "exec"), ("stream", "stream")];

/// The most measured records the sinks are timed over (the first ones received): an exec
/// sink, one process per record, is slower than the exchange, and timing it over every
/// record would make the default run twice as long.
pub const FEED_RECORDS: u64 = 500;

/// How often the receiver's sink cursors are polled.
const POLL: Duration = Duration::from_millis(20);

/// The most records one read of the stream sink takes.
const READ_LIMIT: usize = 1000;

/// Records per second each sink handed over.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FeedRates {
    /// `spool`: one file per record, written, fsync'ed, renamed, directory fsync'ed.
    pub spool_records_per_s: f64,
    /// `exec`: one process per record (`/bin/sh -c 'exec cat > /dev/null'`).
    pub exec_records_per_s: f64,
    /// `stream`: read and acknowledged through the control socket.
    pub stream_records_per_s: f64,
    /// `nats`: published to a local JetStream stream, each acknowledged; `None` when no
    /// `nats-server` was found on PATH.
    pub nats_records_per_s: Option<f64>,
}

impl FeedRates {
    /// (sink, records/s), in [`SINKS`] order, then nats if measured.
    pub fn rates(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![
            ("spool", self.spool_records_per_s),
            ("exec", self.exec_records_per_s),
            ("stream", self.stream_records_per_s),
        ];
        if let Some(nats) = self.nats_records_per_s {
            out.push(("nats", nats));
        }
        out
    }
}

/// A `nats-server -js` on 127.0.0.1 with a temporary store, killed when dropped.
pub struct NatsServer {
    child: std::process::Child,
    /// Its client port.
    pub port: u16,
}

impl NatsServer {
    /// Starts `nats-server` from PATH, or returns `None` if there is none.
    pub fn start(dir: &Path) -> anyhow::Result<Option<NatsServer>> {
        let Some(binary) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("nats-server"))
                .find(|p| p.is_file())
        }) else {
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = dir.join("nats");
        std::fs::create_dir_all(&store)?;
        let child = std::process::Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let server = NatsServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(server))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds the bench's sinks to the node configuration at `config` (spool files under `dir`;
/// a nats sink when a server listens on `nats_port`).
pub fn configure(config: &Path, dir: &Path, nats_port: Option<u16>) -> anyhow::Result<()> {
    let spool = dir.join("feed-spool");
    let mut text = std::fs::read_to_string(config).context("cannot read the configuration")?;
    text.push_str(&format!(
        r#"
[[sink]]
name = "spool"
kind = "spool"
dir = {spool:?}

[[sink]]
name = "exec"
kind = "exec"
command = ["/bin/sh", "-c", "exec cat > /dev/null"]

[[sink]]
name = "stream"
kind = "stream"
"#,
        spool = spool.display().to_string(),
    ));
    if let Some(port) = nats_port {
        text.push_str(&format!(
            r#"
[[sink]]
name = "nats"
kind = "nats"
url = "nats://127.0.0.1:{port}"
stream = "PONSBENCH"
subject = "pons.bench"
"#
        ));
    }
    std::fs::write(config, text).context("cannot write the configuration")
}

/// The tasks watching the sinks and reading the stream sink.
pub struct Watch {
    last: u64,
    nats: bool,
    poller: JoinHandle<anyhow::Result<HashMap<String, OffsetDateTime>>>,
    reader: JoinHandle<anyhow::Result<()>>,
}

/// Starts watching the receiver's sinks until each cursor reaches `last`.
pub fn watch(receiver: &Path, last: u64, nats: bool) -> Watch {
    let socket = receiver.to_owned();
    let mut sinks: Vec<&'static str> = SINKS.iter().map(|(name, _)| *name).collect();
    if nats {
        sinks.push("nats");
    }
    let poller = tokio::spawn(poll(socket.clone(), last, sinks));
    let reader = tokio::spawn(read_stream(socket, last));
    Watch {
        last,
        nats,
        poller,
        reader,
    }
}

impl Watch {
    /// Waits for every sink to reach the last record; returns their rates.
    pub async fn finish(self, receiver: &Path) -> anyhow::Result<FeedRates> {
        self.reader.await.context("stream reader failed")??;
        let reached = self.poller.await.context("sink poller failed")??;
        let (first, count) = first_received(receiver, self.last).await?;
        let rate = |sink: &str| -> anyhow::Result<f64> {
            let at = reached
                .get(sink)
                .ok_or_else(|| anyhow!("sink {sink} never reached the last record"))?;
            let span = (*at - first).as_seconds_f64().max(1e-9);
            Ok(count as f64 / span)
        };
        Ok(FeedRates {
            spool_records_per_s: rate("spool")?,
            exec_records_per_s: rate("exec")?,
            stream_records_per_s: rate("stream")?,
            nats_records_per_s: if self.nats { Some(rate("nats")?) } else { None },
        })
    }
}

/// When the first measured record (arrival 2 on: arrival 1 is the warm-up) was received,
/// and how many measured records there are up to arrival `last`.
async fn first_received(receiver: &Path, last: u64) -> anyhow::Result<(OffsetDateTime, usize)> {
    let list = ok(control::call(receiver, &Request::InboxList).await?)?;
    let rows = list
        .as_array()
        .ok_or_else(|| anyhow!("inbox list is not a list"))?;
    let mut first: Option<OffsetDateTime> = None;
    let mut count = 0;
    for row in rows {
        if !(2..=last).contains(&row["arrival_seq"].as_u64().unwrap_or(0)) {
            continue;
        }
        let at = row["received_at"]
            .as_str()
            .ok_or_else(|| anyhow!("inbox row without received_at: {row}"))?;
        let at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("received_at {at:?}"))?;
        first = Some(first.map_or(at, |f| f.min(at)));
        count += 1;
    }
    let first = first.ok_or_else(|| anyhow!("the receiver has no measured record"))?;
    Ok((first, count))
}

/// Polls the receiver's status; returns when each sink's cursor first reached `last`.
async fn poll(
    socket: PathBuf,
    last: u64,
    wanted: Vec<&'static str>,
) -> anyhow::Result<HashMap<String, OffsetDateTime>> {
    let mut reached = HashMap::new();
    let mut seen = 0_u64;
    let mut progress = Instant::now();
    loop {
        let status = ok(control::call(&socket, &Request::Status).await?)?;
        let now = OffsetDateTime::now_utc();
        let sinks = status["feed"]
            .as_array()
            .ok_or_else(|| anyhow!("the receiver's status shows no feed: {status}"))?;
        let mut total = 0;
        for s in sinks {
            let name = s["sink"].as_str().unwrap_or("?");
            let cursor = s["cursor"].as_u64().unwrap_or(0);
            total += cursor;
            if s["dead_letters"].as_u64().unwrap_or(0) > 0 {
                bail!(
                    "sink {name} set records aside: {}",
                    s["last_error"].as_str().unwrap_or("?")
                );
            }
            if cursor >= last {
                reached.entry(name.to_owned()).or_insert(now);
            }
        }
        if wanted.iter().all(|name| reached.contains_key(*name)) {
            return Ok(reached);
        }
        if total > seen {
            seen = total;
            progress = Instant::now();
        } else if progress.elapsed() > STALL {
            bail!("the receiver's sinks made no progress for {STALL:?}: {status}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Reads the `stream` sink and acknowledges each batch, up to arrival `last`.
async fn read_stream(socket: PathBuf, last: u64) -> anyhow::Result<()> {
    loop {
        let read = Request::FeedRead {
            sink: Some("stream".into()),
            from: None,
            limit: Some(READ_LIMIT),
            wait_ms: Some(1000),
        };
        let body = ok(control::call(&socket, &read).await?)?;
        let next = body["next"]
            .as_u64()
            .ok_or_else(|| anyhow!("feed read answered without next: {body}"))?;
        let taken = body["records"].as_array().is_some_and(|r| !r.is_empty());
        if taken {
            let ack = Request::FeedAck {
                sink: Some("stream".into()),
                cursor: next,
            };
            ok(control::call(&socket, &ack).await?)?;
        }
        if next >= last {
            return Ok(());
        }
    }
}
