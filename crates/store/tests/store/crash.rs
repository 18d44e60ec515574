//! "Acknowledged is never lost": a writer process is killed with SIGKILL in the middle of a
//! burst of concurrent submissions; every id it printed (printed only after `submit`
//! returned) must be in the reopened store, with a journal that verifies and holds exactly
//! one `collect` entry per stored record.
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
        let store = std::sync::Arc::new(open(std::path::Path::new(&dir)));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<uuid::Uuid>();
        // Four concurrent submitters, without end: the parent kills us.
        for t in 0..4u64 {
            let store = store.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0u64.. {
                    let n = t * 1_000_000_000 + i + 1;
                    store
                        .submit(outgoing(n, "cuta"), &envelope(n), draft(Operation::Collect))
                        .await
                        .expect("submit");
                    if tx.send(id(n)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut out = std::io::stdout().lock();
        while let Some(id) = rx.recv().await {
            // Marker so the parent ignores the test harness's own output.
            writeln!(out, "ACK {id}").expect("stdout");
            out.flush().expect("stdout");
        }
    });
}

#[test]
fn sigkill_mid_batch_loses_no_acknowledged_submission() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "store::crash::crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = BTreeSet::new();
    while acked.len() < KILL_AFTER {
        let line = lines
            .next()
            .expect("child ended before acknowledging enough submissions")
            .expect("read child stdout");
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.insert(uuid::Uuid::parse_str(id).expect("uuid"));
        }
    }
    // std's Child::kill sends SIGKILL on Unix: no destructor, no flush, no shutdown.
    child.kill().expect("kill child");
    // Lines already written to the pipe were acknowledged too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.insert(uuid::Uuid::parse_str(id).expect("uuid"));
        }
    }
    let status = child.wait().expect("wait child");
    assert!(
        !status.success(),
        "child must have been killed, not exited: {status}"
    );

    let store = open(dir.path());
    let stored: BTreeSet<_> = store
        .outbox_list(&OutboxFilter::default())
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(stored.len() >= KILL_AFTER);

    // The journal verifies and matches the outbox one to one: no record without its entry,
    // no entry without its record.
    let head = store
        .verify_journal()
        .expect("journal verifies after crash");
    let entries = journal(&store);
    assert_eq!(head.seq as usize, entries.len());
    let journaled: BTreeSet<_> = entries
        .iter()
        .map(|e| {
            assert_eq!(e.operation, Operation::Collect);
            e.record_id.expect("collect names its record")
        })
        .collect();
    assert_eq!(journaled.len(), entries.len(), "one entry per record");
    assert_eq!(journaled, stored);
    for rec in store.outbox_list(&OutboxFilter::default()).expect("list") {
        assert!(
            store.outbox_envelope(rec.id).expect("env").is_some(),
            "{}",
            rec.id
        );
    }
}
