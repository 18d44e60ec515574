//! Shared helpers.

use pons_core::journal::{JournalDraft, Operation, Outcome};
use pons_core::NodeId;
use pons_store::{NewInboxRecord, NewOutboxRecord, Options, Store};
use time::macros::datetime;
use time::OffsetDateTime;
use uuid::Uuid;

pub fn node(s: &str) -> NodeId {
    NodeId::new(s).expect("valid node id")
}

pub fn now() -> OffsetDateTime {
    datetime!(2026-11-23 10:00:00 UTC)
}

/// The master key every test store is opened with, so that all store tests exercise
/// encrypted bodies.
pub fn master_key() -> pons_store::MasterKey {
    pons_store::MasterKey::from_bytes(&[0x5a; 32]).expect("32 bytes")
}

pub fn open(dir: &std::path::Path) -> Store {
    open_durable(dir, false)
}

/// [`open`], with the log fdatasync'ed if `sync` (`Durability::FlushAndSync`).
pub fn open_durable(dir: &std::path::Path, sync: bool) -> Store {
    let mut options = Options::default();
    options.master_key = Some(master_key());
    if sync {
        options.durability = pons_store::Durability::FlushAndSync;
    }
    Store::open(dir, options).expect("open store")
}

pub fn draft(op: Operation) -> JournalDraft {
    let mut d = JournalDraft::new(now(), node("vaa"), "caseworker1", op, Outcome::Success);
    d.purpose = Some("threat assessment".into());
    d.legal_basis = Some("cooperation agreement".into());
    d
}

/// A v7-looking id that sorts by `n`.
pub fn id(n: u64) -> Uuid {
    Uuid::from_u128((0x0192_0000_0000_7000_8000_0000_0000_0000u128) + u128::from(n))
}

pub fn outgoing(n: u64, to: &str) -> NewOutboxRecord {
    NewOutboxRecord {
        id: id(n),
        to: node(to),
        class: "minor-risk-report".into(),
        created: now(),
        subject_ref: Some(format!("subj-{n}")),
    }
}

pub fn envelope(n: u64) -> Vec<u8> {
    format!("envelope-{n}").into_bytes()
}

pub fn incoming(n: u64, from: &str) -> NewInboxRecord {
    NewInboxRecord {
        id: id(n),
        from: node(from),
        class: "minor-risk-report".into(),
        subject_ref: Some(format!("subj-{n}")),
        received_at: now(),
        envelope_sha256: [n as u8; 32],
    }
}

/// A stand-in sealer: its receipt has one line a record, with the numbers the store assigned
/// (see [`receipt_line`]). Records received with clones of one sealer may share a receipt.
pub fn receipt_for() -> pons_store::ReceiptSealer {
    std::sync::Arc::new(|batch: &pons_store::ReceiptBatch<'_>| {
        let lines: Vec<String> = batch.items.iter().map(receipt_line).collect();
        Ok(lines.join("\n").into_bytes())
    })
}

/// A record's line in a [`receipt_for`] receipt.
pub fn receipt_line(ctx: &pons_store::ReceiptContext) -> String {
    format!(
        "receipt {} j{} a{}",
        ctx.id, ctx.journal_seq, ctx.arrival_seq
    )
}

/// All journal entries.
pub fn journal(store: &Store) -> Vec<pons_core::journal::JournalEntry> {
    store
        .journal_iter(0)
        .collect::<Result<Vec<_>, _>>()
        .expect("journal reads")
}

/// Every file under `dir`, recursively, with its bytes; a file deleted while the directory
/// is read (a log segment the checkpointer retired) is left out.
pub fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                match std::fs::read(&p) {
                    Ok(bytes) => out.push((p, bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("read {}: {e}", p.display()),
                }
            }
        }
    }
    out
}

/// Asserts the delivery queues the store counts (`pending_queues`) are what its pending
/// index holds: each recipient's length and its oldest (first) record.
pub fn assert_queues_match_index(store: &Store) {
    let mut expected: std::collections::BTreeMap<NodeId, pons_store::PendingQueue> =
        std::collections::BTreeMap::new();
    for (id, peer) in store.pending().expect("pending") {
        let queue = expected.entry(peer).or_insert(pons_store::PendingQueue {
            len: 0,
            oldest: Some(id),
        });
        queue.len += 1;
    }
    assert_eq!(store.pending_queues().expect("pending queues"), expected);
}

/// One entry of a closed store's journal files, read as their format says
/// (`crates/store/src/journal/log.rs`): for tests acting as someone with access to the files.
pub struct FileEntry {
    pub path: std::path::PathBuf,
    pub seq: u64,
    pub value: Vec<u8>,
}

/// Every entry of the journal files of the store in `dir`, in order.
pub fn journal_file_entries(dir: &std::path::Path) -> Vec<FileEntry> {
    let mut paths: Vec<_> = std::fs::read_dir(dir.join("journal"))
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(&bytes[..8], b"PONSJNL1");
        let mut at = 8;
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
            let seq = u64::from_be_bytes(bytes[at + 8..at + 16].try_into().expect("8"));
            out.push(FileEntry {
                path: path.clone(),
                seq,
                value: bytes[at + 16..at + 8 + len].to_vec(),
            });
            at += 8 + len;
        }
    }
    out
}

/// Writes the journal files of the store in `dir` anew with `entries` (one file, checksums
/// recomputed, as someone rewriting them would).
pub fn write_journal_files(dir: &std::path::Path, entries: &[FileEntry]) {
    let jdir = dir.join("journal");
    for e in std::fs::read_dir(&jdir).expect("journal dir") {
        std::fs::remove_file(e.expect("entry").path()).expect("remove");
    }
    let Some(first) = entries.first() else {
        return;
    };
    let mut out = b"PONSJNL1".to_vec();
    for e in entries {
        let mut h = crc32fast::Hasher::new();
        h.update(&e.seq.to_be_bytes());
        h.update(&e.value);
        out.extend_from_slice(&(e.value.len() as u32 + 8).to_le_bytes());
        out.extend_from_slice(&h.finalize().to_le_bytes());
        out.extend_from_slice(&e.seq.to_be_bytes());
        out.extend_from_slice(&e.value);
    }
    std::fs::write(jdir.join(format!("{:020}.journal", first.seq)), out).expect("write");
}
