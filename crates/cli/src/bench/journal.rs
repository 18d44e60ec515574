//! The audit journal's own rates, measured in the same run: appends (one flushed call per
//! entry, then batches of [`BATCH`] in one transaction) and verification (the store's
//! streaming verification, and the chain check in memory).
//!
//! The store is opened as the nodes open it in the bench (`FlushAndSync`: every
//! acknowledged append is flushed and fdatasync'ed), in its own directory on the same file
//! system.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use pons_core::journal::{verify_chain, JournalDraft, Operation, Outcome};
use pons_core::NodeId;
use pons_store::{Durability, Options, Store};
use serde::Serialize;
use time::OffsetDateTime;

/// Entries per `append_journal_many` call.
pub const BATCH: usize = 1000;

/// How long single appends are measured (each one waits for its own fdatasync).
const SINGLE_WINDOW: Duration = Duration::from_millis(1000);

/// The journal's rates, entries per second.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct JournalRates {
    /// `Store::append_journal`, one durable call per entry, one writer.
    pub append_per_s: f64,
    /// `Store::append_journal_many` in batches of [`BATCH`], one durable call per batch.
    pub append_batch_1000_per_s: f64,
    /// Entries in the journal that was verified.
    pub verified_entries: u64,
    /// `Store::verify_journal_with`: read, hash and link every stored entry.
    pub verify_store_per_s: f64,
    /// `pons_core::journal::verify_chain` over the same entries, already in memory.
    pub verify_chain_memory_per_s: f64,
}

/// Appends, then verifies, a journal of `entries` entries in a new store under `dir`.
pub fn measure(dir: &Path, entries: usize) -> anyhow::Result<JournalRates> {
    let path = dir.join("journal-bench");
    let mut options = Options::default();
    options.durability = Durability::FlushAndSync;
    let store = Store::open(&path, options).context("cannot open the journal bench store")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let node = NodeId::new("cuta")?;
    let draft = |i: usize| {
        let mut d = JournalDraft::new(
            OffsetDateTime::now_utc(),
            node.clone(),
            "caseworker1",
            Operation::Consult,
            Outcome::Success,
        );
        d.role = Some("caseworker".into());
        d.record_id = Some(uuid::Uuid::now_v7());
        d.class = Some("minor-risk-report".into());
        d.justification = Some(format!("follow-up of case AGO-BENCH-{i:08}"));
        d
    };

    let (append_per_s, single) = runtime.block_on(async {
        let clock = Instant::now();
        let mut n = 0_usize;
        while clock.elapsed() < SINGLE_WINDOW && n < entries {
            store.append_journal(draft(n)).await?;
            n += 1;
        }
        Ok::<_, anyhow::Error>((n as f64 / clock.elapsed().as_secs_f64(), n))
    })?;

    let batched = entries.saturating_sub(single).max(BATCH);
    let batches: Vec<Vec<JournalDraft>> = (0..batched.div_ceil(BATCH))
        .map(|b| (0..BATCH).map(|i| draft(single + b * BATCH + i)).collect())
        .collect();
    let append_batch_1000_per_s = runtime.block_on(async {
        let clock = Instant::now();
        for batch in &batches {
            store.append_journal_many(batch).await?;
        }
        Ok::<_, anyhow::Error>((batches.len() * BATCH) as f64 / clock.elapsed().as_secs_f64())
    })?;
    drop(batches);
    drop(runtime);

    let clock = Instant::now();
    let mut seen = 0_u64;
    let head = store
        .verify_journal_with(|_| seen += 1)
        .context("the bench journal does not verify")?;
    let verify_store_per_s = seen as f64 / clock.elapsed().as_secs_f64();

    let loaded = store
        .journal_iter(0)
        .collect::<Result<Vec<_>, _>>()
        .context("cannot read the bench journal")?;
    let clock = Instant::now();
    let memory_head = verify_chain(&loaded).context("the bench journal does not verify")?;
    let verify_chain_memory_per_s = loaded.len() as f64 / clock.elapsed().as_secs_f64();
    anyhow::ensure!(
        memory_head == head && head.seq == loaded.len() as u64,
        "the two verifications disagree on the journal's head"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&path);
    Ok(JournalRates {
        append_per_s,
        append_batch_1000_per_s,
        verified_entries: head.seq,
        verify_store_per_s,
        verify_chain_memory_per_s,
    })
}
