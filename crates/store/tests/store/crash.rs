//! "Acknowledged is never lost": a writer process is killed with SIGKILL in the middle of a
//! burst of concurrent submissions and receives; every id it printed (printed only after
//! `submit` / `receive` returned) must be in the reopened store (received ones with their
//! receipt), with a journal that verifies and holds exactly one entry per stored record.
//!
//! The child is this test binary, re-run with `CHILD_ENV` set and filtered to
//! `crash_child_writer`, which then runs the writer loop instead of returning.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use pons_core::journal::Operation;
use pons_store::OutboxFilter;

use super::util::*;

const CHILD_ENV: &str = "PONS_STORE_CRASH_CHILD_DIR";
/// Set: the child opens its store with `Durability::FlushAndSync`, as a node in production.
const SYNC_ENV: &str = "PONS_STORE_CRASH_CHILD_SYNC";
/// Ids the parent waits for before it kills the child.
const KILL_AFTER: usize = 150;

/// Entry point of the child process; does nothing unless `CHILD_ENV` names a directory.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let sync = std::env::var_os(SYNC_ENV).is_some();
        let store = std::sync::Arc::new(open_durable(std::path::Path::new(&dir), sync));
        // One sealer for both receiving tasks, so their records share receipts.
        let sealer = receipt_for();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(char, uuid::Uuid)>();
        // Four concurrent writers, without end: the parent kills us. Tasks 0 and 1 submit to
        // the outbox ('o'), tasks 2 and 3 receive into the inbox ('i', acknowledged = receipt
        // handed back, as a receiver would send it).
        for t in 0..4u64 {
            let store = store.clone();
            let tx = tx.clone();
            let sealer = sealer.clone();
            tokio::spawn(async move {
                for i in 0u64.. {
                    let n = t * 1_000_000_000 + i + 1;
                    let kind = if t < 2 {
                        store
                            .submit(outgoing(n, "cuta"), &envelope(n), draft(Operation::Collect))
                            .await
                            .expect("submit");
                        'o'
                    } else {
                        store
                            .receive(
                                incoming(n, "vaa"),
                                &envelope(n),
                                draft(Operation::Receive),
                                &sealer,
                            )
                            .await
                            .expect("receive");
                        'i'
                    };
                    if tx.send((kind, id(n))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut out = std::io::stdout().lock();
        while let Some((kind, id)) = rx.recv().await {
            // Marker so the parent ignores the test harness's own output.
            writeln!(out, "ACK {kind} {id}").expect("stdout");
            out.flush().expect("stdout");
        }
    });
}

#[test]
fn sigkill_mid_batch_loses_no_acknowledged_submission() {
    sigkill_mid_batch(false);
}

/// The same with the log fdatasync'ed, as a node in production runs.
#[test]
fn sigkill_mid_batch_loses_no_acknowledged_submission_with_sync() {
    sigkill_mid_batch(true);
}

fn sigkill_mid_batch(sync: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "store::crash::crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path());
    if sync {
        command.env(SYNC_ENV, "1");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = BTreeSet::new();
    let mut received = BTreeSet::new();
    let mut note = |line: &str| {
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (kind, id) = rest.split_once(' ').expect("kind and id");
            let id = uuid::Uuid::parse_str(id).expect("uuid");
            match kind {
                "o" => acked.insert(id),
                _ => received.insert(id),
            };
        }
    };
    let mut seen = 0;
    while seen < KILL_AFTER {
        let line = lines
            .next()
            .expect("child ended before acknowledging enough submissions")
            .expect("read child stdout");
        if line.starts_with("ACK ") {
            seen += 1;
        }
        note(&line);
    }
    // std's Child::kill sends SIGKILL on Unix: no destructor, no flush, no shutdown.
    child.kill().expect("kill child");
    // Lines already written to the pipe were acknowledged too.
    for line in lines {
        let Ok(line) = line else { break };
        note(&line);
    }
    let status = child.wait().expect("wait child");
    assert!(
        !status.success(),
        "child must have been killed, not exited: {status}"
    );

    let store = open_durable(dir.path(), sync);
    let stored: BTreeSet<_> = store
        .outbox_list(&OutboxFilter::default())
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    // The queue counts, made at open after the log's replay, match the replayed index.
    assert_queues_match_index(&store);
    assert!(!acked.is_empty() && !received.is_empty());
    // With its body, from the body log (`bodies.rs`), whole.
    let n_of = |r: &uuid::Uuid| (r.as_u128() - id(0).as_u128()) as u64;
    for id in &acked {
        let body = store.outbox_envelope(*id).expect("read outbox body");
        assert_eq!(body, Some(envelope(n_of(id))), "{id}: body");
    }
    for id in &received {
        let body = store.inbox_envelope(*id).expect("read inbox body");
        assert_eq!(body, Some(envelope(n_of(id))), "{id}: body");
    }

    // Every acknowledged receive is in the inbox with the receipt that was handed back.
    for id in &received {
        let meta = store
            .lookup(*id)
            .expect("lookup")
            .unwrap_or_else(|| panic!("lost {id}"));
        // Receipts are batched: the record's line is in the receipt it shares.
        let line = receipt_line(&pons_store::ReceiptContext {
            id: *id,
            envelope_sha256: [0; 32],
            journal_seq: meta.journal_seq,
            arrival_seq: meta.arrival_seq,
            effect: None,
        });
        let receipt = String::from_utf8(meta.receipt).expect("stand-in receipt");
        assert!(
            receipt.lines().any(|l| l == line),
            "{id}: {line:?} not in {receipt:?}"
        );
    }
    // Arrival numbers have no gaps, whatever was cut short by the kill.
    let inbox = store.inbox_list(usize::MAX).expect("inbox");
    let arrivals: Vec<_> = inbox.iter().map(|r| r.arrival_seq).collect();
    assert_eq!(arrivals, (1..=inbox.len() as u64).collect::<Vec<_>>());

    // The journal verifies and matches outbox and inbox one to one: no record without its
    // entry, no entry without its record.
    let head = store
        .verify_journal()
        .expect("journal verifies after crash");
    let entries = journal(&store);
    assert_eq!(head.seq as usize, entries.len());
    let mut collected = BTreeSet::new();
    let mut receives = BTreeSet::new();
    for e in &entries {
        let id = e.record_id.expect("entry names its record");
        let fresh = match e.operation {
            Operation::Collect => collected.insert(id),
            Operation::Receive => receives.insert(id),
            other => panic!("unexpected operation {other}"),
        };
        assert!(fresh, "one entry per record: {id}");
    }
    assert_eq!(collected, stored);
    let inbox_ids: BTreeSet<_> = inbox.iter().map(|r| r.id).collect();
    assert_eq!(receives, inbox_ids);
    for rec in store.outbox_list(&OutboxFilter::default()).expect("list") {
        assert!(
            store.outbox_envelope(rec.id).expect("env").is_some(),
            "{}",
            rec.id
        );
    }
}
