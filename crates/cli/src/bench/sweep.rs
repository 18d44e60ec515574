//! `pons bench --scenario sweep`: the retention sweep's time against the size of the store.
//!
//! For each store size S asked for (`--sweep-records`, default 10,000 and 1,000,000), a new
//! store is loaded with S inbox records (`Store::receive_retained`, as the receiving node
//! stores them: record, body encrypted under the master key, receipt, `receive` journal
//! entry, retention entry and its index keys, in one transaction each). E of them
//! (`--sweep-expiring`, default 1,000) are past their erasure date on the injected clock's
//! day; the others are kept for years. The due ones are the E oldest (received first, as
//! records of one class fall due in the order they arrived), or with `--sweep-scattered`
//! one in every S/E records across the whole store (the worst case for locality: every
//! erasure touches pages no other erasure touches).
//!
//! Then the store is reopened as a node opens it (`[storage] sync = true` unless
//! `--no-sync`), twice: once to time the index read alone (`Store::due` for erasure and
//! review dates up to today, what the sweep reads first), and once, with sled's cache cold
//! again, for the node's own sweep, `pons_node::runtime::Runtime::sweep`, which erases the E
//! due records, each in its own durable transaction with its tombstone journal entry.
//!
//! The sweep reads the deadline index up to today, not the store, so its time should depend
//! on E, not on S: the figures to read are the ratios of the largest store's index read and
//! sweep times to the smallest's.
//!
//! Loading is not what is measured, and it is made fast the ordinary way: the store is opened
//! with `Durability::Flush` (sled's flush, no fdatasync) and [`LOADERS`] tasks write at once,
//! so that one flush covers many records (the store's group commit). No bulk path bypasses
//! the store's transactions. The envelope stored for each record is [`ENVELOPE_BYTES`] of
//! opaque bytes: the sweep removes bodies without reading them, so their size changes the
//! store's size on disk, not the work of the sweep.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, ensure, Context};
use pons_core::journal::{JournalDraft, Operation, Outcome, SYSTEM_ACTOR};
use pons_core::retention::Deadlines;
use pons_core::{NodeId, Trust};
use pons_node::runtime::{Clock, Runtime};
use pons_pki::devca::DevCa;
use pons_pki::KeyAlgorithm;
use pons_store::{
    Due, Durability, MasterKey, NewInboxRecord, Options, ReceiptBatch, ReceiptSealer, Store,
};
use serde::Serialize;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::measure;

/// Bytes of the opaque envelope stored for each record.
pub const ENVELOPE_BYTES: usize = 512;

/// Concurrent writers while loading.
const LOADERS: usize = 256;

/// Records are loaded with their receive time spread over this many days before today.
const SPREAD_DAYS: i64 = 180;

const CLASS: &str = "minor-risk-report";

/// The sweep measured at one store size.
#[derive(Debug, Clone, Serialize)]
pub struct SweepCase {
    /// Inbox records in the store before the sweep.
    pub stored: usize,
    /// Of them, records past their erasure date.
    pub expiring: usize,
    /// Records the sweep erased (equal to `expiring`, or the run fails).
    pub erased: usize,
    /// Loading the store (not the measured figure), seconds.
    pub load_s: f64,
    /// Loading rate, records per second.
    pub load_records_per_s: f64,
    /// Reopening the loaded store as a node does, seconds.
    pub open_s: f64,
    /// `Store::due` for erasure and review dates up to today on a freshly opened store:
    /// the index read that starts a sweep, seconds.
    pub index_read_s: f64,
    /// `Runtime::sweep`, from the index read to the last erasure made durable, seconds.
    pub sweep_s: f64,
    /// Records erased per second of sweep.
    pub erased_per_s: f64,
    /// The store's size on disk after loading, bytes.
    pub store_bytes: u64,
    /// Peak RSS of the process after this case, bytes (sled caches what it loaded).
    pub peak_rss_bytes: u64,
}

/// `--scenario sweep`'s figures.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// Bytes of the opaque envelope stored with each record.
    pub envelope_bytes: usize,
    /// Whether the sweep's store fdatasyncs each erasure (`[storage] sync`).
    pub sync: bool,
    /// Whether the due records are spread over the whole store (`--sweep-scattered`)
    /// rather than the oldest.
    pub scattered: bool,
    /// One case per store size, smallest first.
    pub cases: Vec<SweepCase>,
    /// The largest store's sweep time over the smallest's (close to 1 when the sweep's cost
    /// is what is due, not what is stored).
    pub sweep_time_ratio: f64,
    /// The largest store's index read time over the smallest's.
    pub index_read_ratio: f64,
}

/// Runs one case per size in `sizes` (each with `expiring` records due), in stores under
/// `dir`; each store is removed after its case.
pub fn run(
    dir: &Path,
    sizes: &[usize],
    expiring: usize,
    scattered: bool,
    sync: bool,
) -> anyhow::Result<SweepReport> {
    ensure!(!sizes.is_empty(), "--sweep-records: give at least one size");
    ensure!(expiring > 0, "--sweep-expiring must be at least 1");
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    if let Some(small) = sizes.iter().find(|&&s| s < expiring) {
        return Err(anyhow!(
            "--sweep-records {small}: must be at least --sweep-expiring ({expiring})"
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut cases = Vec::new();
    for stored in sizes {
        let path = dir.join(format!("sweep-{stored}"));
        let case = runtime.block_on(one(&path, stored, expiring, scattered, sync));
        let _ = std::fs::remove_dir_all(&path);
        cases.push(case.with_context(|| format!("sweep with {stored} stored records"))?);
    }
    drop(runtime);
    let ratio = |f: fn(&SweepCase) -> f64| match (cases.first(), cases.last()) {
        (Some(a), Some(b)) if f(a) > 0.0 => f(b) / f(a),
        _ => 0.0,
    };
    Ok(SweepReport {
        envelope_bytes: ENVELOPE_BYTES,
        sync,
        scattered,
        sweep_time_ratio: ratio(|c| c.sweep_s),
        index_read_ratio: ratio(|c| c.index_read_s),
        cases,
    })
}

/// Opens the store at `path` again after it was dropped. sled releases its file lock only
/// when its background threads have finished writing what the dropped handle left (seconds
/// after a large load), so a lock held by this process is waited for, up to a minute.
async fn reopen(path: &Path, options: &pons_store::Options) -> anyhow::Result<Store> {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match Store::open(path, options.clone()) {
            Ok(store) => return Ok(store),
            Err(e)
                if Instant::now() < deadline
                    && e.to_string().contains("could not acquire lock") =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("cannot reopen the sweep store"),
        }
    }
}

/// Loads `stored` records into a new store at `path`, `expiring` of them due today, and
/// sweeps.
async fn one(
    path: &Path,
    stored: usize,
    expiring: usize,
    scattered: bool,
    sync: bool,
) -> anyhow::Result<SweepCase> {
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let master = MasterKey::generate()?;
    let sender = NodeId::new("adolescence")?;
    let node = NodeId::new("cuta")?;

    let mut options = Options::default();
    options.durability = Durability::Flush;
    options.master_key = Some(master.clone());
    let store = Arc::new(Store::open(path, options).context("cannot open the sweep store")?);
    let clock = Instant::now();
    let due = DueSet {
        stored,
        expiring,
        scattered,
    };
    load(&store, due, today, now, &sender, &node).await?;
    let load_s = clock.elapsed().as_secs_f64();
    drop(store);
    let store_bytes = measure::dir_size(path);

    let mut options = Options::default();
    options.durability = if sync {
        Durability::FlushAndSync
    } else {
        Durability::Flush
    };
    options.master_key = Some(master);
    let clock = Instant::now();
    let store = reopen(path, &options).await?;
    let open_s = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let mut found = store.due(Due::Erase, today)?;
    found.extend(store.due(Due::Review, today)?);
    let index_read_s = clock.elapsed().as_secs_f64();
    // Each due record is in both lists (its review date is before its erasure date).
    ensure!(
        found.len() == 2 * expiring,
        "the index lists {} due dates for {expiring} due records",
        found.len()
    );
    drop(store);
    // Opened again so that the sweep, too, starts with sled's cache empty.
    let store = reopen(path, &options).await?;
    let fixed = now;
    let rt = runtime(store, Arc::new(move || fixed))?;

    let clock = Instant::now();
    let swept = rt
        .sweep(SYSTEM_ACTOR, None)
        .await
        .context("the sweep failed")?;
    let sweep_s = clock.elapsed().as_secs_f64();
    let erased = swept["erased"].as_array().map_or(0, Vec::len);
    let skipped = swept["skipped"].as_array().map_or(0, Vec::len);
    ensure!(
        erased == expiring && skipped == 0,
        "the sweep erased {erased} and skipped {skipped} of {expiring} due records"
    );
    ensure!(
        rt.store.due(Due::Erase, today)?.is_empty(),
        "records are still due after the sweep"
    );
    Ok(SweepCase {
        stored,
        expiring,
        erased,
        load_s,
        load_records_per_s: stored as f64 / load_s.max(1e-9),
        open_s,
        index_read_s,
        sweep_s,
        erased_per_s: erased as f64 / sweep_s.max(1e-9),
        store_bytes,
        peak_rss_bytes: measure::Usage::now()?.peak_rss,
    })
}

/// Which records of a store are due.
#[derive(Clone, Copy)]
struct DueSet {
    stored: usize,
    expiring: usize,
    scattered: bool,
}

impl DueSet {
    /// Whether record `i` (in load order) is due today: one of the first `expiring`, or
    /// with `scattered` one in every `stored / expiring`.
    fn is_due(self, i: usize) -> bool {
        if self.scattered {
            let every = self.stored / self.expiring;
            i.is_multiple_of(every) && i / every < self.expiring
        } else {
            i < self.expiring
        }
    }
}

/// Writes records 0..stored, in that order, with [`LOADERS`] concurrent writers.
async fn load(
    store: &Arc<Store>,
    due: DueSet,
    today: Date,
    now: OffsetDateTime,
    sender: &NodeId,
    node: &NodeId,
) -> anyhow::Result<()> {
    let stored = due.stored;
    let next = Arc::new(AtomicUsize::new(0));
    // A stand-in receipt (no signature: the sweep is measured, not the exchange), shared so
    // that records stored together share one, as a node's do.
    let sealer: ReceiptSealer = Arc::new(|batch: &ReceiptBatch<'_>| {
        Ok(batch.items.iter().flat_map(|i| *i.id.as_bytes()).collect())
    });
    let mut loaders = Vec::new();
    for _ in 0..LOADERS.min(stored) {
        let (store, next, sealer) = (store.clone(), next.clone(), sealer.clone());
        let (sender, node) = (sender.clone(), node.clone());
        loaders.push(tokio::spawn(async move {
            let mut envelope = vec![0x5a_u8; ENVELOPE_BYTES];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= stored {
                    return Ok::<_, anyhow::Error>(());
                }
                let is_due = due.is_due(i);
                // Due records were received years ago; the others over the last months.
                let received_at = if is_due {
                    now - time::Duration::days(5 * 365)
                } else {
                    now - time::Duration::days(i as i64 % SPREAD_DAYS)
                };
                let deadlines = if is_due {
                    Deadlines {
                        review_by: today - time::Duration::days(200),
                        erase_by: today - time::Duration::days(1),
                    }
                } else {
                    Deadlines {
                        review_by: today + time::Duration::days(1 + i as i64 % 180),
                        erase_by: today + time::Duration::days(365 * 5 + i as i64 % 365),
                    }
                };
                envelope[..8].copy_from_slice(&(i as u64).to_be_bytes());
                let id = Uuid::now_v7();
                let record = NewInboxRecord {
                    id,
                    from: sender.clone(),
                    class: CLASS.into(),
                    subject_ref: Some(format!("bench-subject-{:06}", i % 100_000)),
                    received_at,
                    envelope_sha256: ring_sha256(&envelope),
                };
                let draft = JournalDraft::new(
                    received_at,
                    node.clone(),
                    SYSTEM_ACTOR,
                    Operation::Receive,
                    Outcome::Success,
                );
                store
                    .receive_retained(record, deadlines, &envelope, draft, &sealer)
                    .await
                    .with_context(|| format!("cannot store record {i}"))?;
            }
        }));
    }
    for l in loaders {
        l.await.context("loader task failed")??;
    }
    Ok(())
}

fn ring_sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The receiving node's runtime over `store`, with a development identity and the clock
/// given: what `pons_node::daemon::run` builds, without the endpoint and the tasks.
fn runtime(store: Store, clock: Clock) -> anyhow::Result<Runtime> {
    let now = clock();
    let ca = DevCa::new("pons.example", KeyAlgorithm::Ed25519, now)?;
    let node = NodeId::new("cuta")?;
    let signer = ca.issue(&node, now)?.identity(now)?.signer()?;
    let trust = Trust::new(
        "pons.example",
        &[ca.certificate().as_ref()],
        &[] as &[&[u8]],
    )?;
    let config = pons_node::Config::parse(
        &format!(
            r#"
node_id = "cuta"
federation = "pons.example"
listen = "127.0.0.1:7444"
data_dir = "data"
[tls]
ca = "ca.pem"
cert = "tls.pem"
key = "tls.key"
[signing]
cert = "sign.pem"
key = "sign.key"
[[peer]]
node_id = "adolescence"
address = "127.0.0.1:7445"
send = []
receive = [{CLASS:?}]
"#
        ),
        &store.path().join("node.toml"),
    )?;
    let key = pons_core::pseudonym::PseudonymKey::from_bytes(&[7; 32])?;
    Ok(Runtime::new(config, store, signer, trust, key, clock))
}

/// Prints the sweep's figures as a table.
pub fn print_table(r: &SweepReport) {
    println!(
        "pons bench --scenario sweep: inbox records with {}-byte envelopes, the due ones {}, sweep {}",
        r.envelope_bytes,
        if r.scattered {
            "spread over the store"
        } else {
            "the oldest"
        },
        if r.sync {
            "durable (flush + fdatasync per erasure)"
        } else {
            "flush only (--no-sync)"
        }
    );
    println!();
    println!(
        "  {:>10} {:>9} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>10}",
        "stored",
        "expiring",
        "load s",
        "load/s",
        "open s",
        "index s",
        "sweep s",
        "erased/s",
        "store MiB"
    );
    for c in &r.cases {
        println!(
            "  {:>10} {:>9} {:>8.1} {:>8.0} {:>7.2} {:>9.4} {:>9.3} {:>9.0} {:>10.0}",
            c.stored,
            c.expiring,
            c.load_s,
            c.load_records_per_s,
            c.open_s,
            c.index_read_s,
            c.sweep_s,
            c.erased_per_s,
            c.store_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    if let (Some(first), Some(last)) = (r.cases.first(), r.cases.last()) {
        if r.cases.len() > 1 {
            println!();
            println!(
                "  at {} stored / at {} stored: index read {:.2}, sweep {:.2}",
                last.stored, first.stored, r.index_read_ratio, r.sweep_time_ratio
            );
        }
    }
}
