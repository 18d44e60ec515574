//! Journal: standalone entries, iteration, head consistency.

use pons_core::journal::{ChainHead, Operation};
use pons_store::StoreError;

use super::util::*;

#[tokio::test]
async fn append_journal_chains_and_iterates_from_a_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert_eq!(store.journal_head().expect("head"), ChainHead::genesis());
    assert_eq!(
        store.verify_journal().expect("empty verifies"),
        ChainHead::genesis()
    );
    for op in [
        Operation::Consult,
        Operation::JournalRead,
        Operation::Export,
    ] {
        store.append_journal(draft(op)).await.expect("append");
    }
    let from2: Vec<_> = store
        .journal_iter(2)
        .map(|e| e.expect("entry").operation)
        .collect();
    assert_eq!(from2, vec![Operation::JournalRead, Operation::Export]);
    let head = store.verify_journal().expect("verify");
    assert_eq!(head.seq, 3);
    assert_eq!(head, store.journal_head().expect("head"));
}

#[tokio::test]
async fn append_journal_refuses_operations_owned_by_state_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for op in [
        Operation::Collect,
        Operation::Disclose,
        Operation::Receive,
        Operation::Reject,
    ] {
        let err = store.append_journal(draft(op)).await.expect_err("refused");
        assert!(matches!(err, StoreError::WrongOperation { found, .. } if found == op));
    }
    assert_eq!(store.journal_head().expect("head").seq, 0);
}

/// A store with `n` consultations journaled, closed, then opened and closed again so that
/// its write-ahead log is retired: the journal files alone hold the entries (the log would
/// otherwise write them again at the next open).
async fn closed_store(dir: &std::path::Path, n: usize) {
    {
        let store = open(dir);
        for _ in 0..n {
            store
                .append_journal(draft(Operation::Consult))
                .await
                .expect("append");
        }
    }
    drop(open(dir));
}

/// Alter a stored entry behind the store's back (in the journal files, checksum mended, as
/// an attacker with file access would): verification names the altered entry.
#[tokio::test]
async fn tampered_stored_entry_is_found_by_verify_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_store(dir.path(), 4).await;
    let mut entries = journal_file_entries(dir.path());
    let v = &mut entries[2].value;
    // Stored as 0x01 || hash || canonical bytes: change the actor, keep the hash.
    assert_eq!(v[0], 0x01);
    let hash: [u8; 32] = v[1..33].try_into().expect("hash");
    let mut entry =
        pons_core::journal::JournalEntry::from_canonical(&v[33..], hash).expect("decode");
    entry.actor = "someone-else".into();
    let mut out = vec![0x01];
    out.extend_from_slice(&hash);
    out.extend_from_slice(&entry.canonical_bytes());
    *v = out;
    write_journal_files(dir.path(), &entries);
    let store = open(dir.path());
    let err = store.verify_journal().expect_err("tampered");
    assert!(
        matches!(
            err,
            StoreError::Chain(pons_core::journal::ChainError {
                seq: 3,
                reason: pons_core::journal::ChainFault::BadHash
            })
        ),
        "{err}"
    );
}

/// A byte changed without mending the checksum, where the write-ahead log no longer holds
/// the entry: the store refuses to open (appending after the damage would overwrite it),
/// naming the file, the byte and the rule.
#[tokio::test]
async fn a_damaged_journal_file_is_refused_at_open_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_store(dir.path(), 4).await;
    let entries = journal_file_entries(dir.path());
    let path = entries[2].path.clone();
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes.len() - entries[3].value.len() - 16 - 10;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let err = pons_store::Store::open(dir.path(), pons_store::Options::default())
        .err()
        .expect("open refuses");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string())
            && text.contains("checksum")
            && text.contains("end with 2, the journal head is entry 4"),
        "{text}"
    );
    // Nothing was cut: the damaged bytes are still there for the investigation.
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

/// A store written before the journal files (its entries in sled's `journal` tree, one of
/// them in the older ciborium format) has them moved to the files at open, once; they
/// verify, and a change to one is found.
#[tokio::test]
async fn an_older_stores_journal_moves_out_of_sled_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_store(dir.path(), 3).await;
    // Made older: the entries back in sled (entry 2 as a ciborium map), no journal files.
    let to_sled = |dir: &std::path::Path, entries: &[FileEntry], actor: Option<&str>| {
        let db = sled::open(dir).expect("sled open");
        let journal = db.open_tree("journal").expect("tree");
        for e in entries {
            let mut value = e.value.clone();
            if e.seq == 2 {
                let hash: [u8; 32] = value[1..33].try_into().expect("hash");
                let mut entry =
                    pons_core::journal::JournalEntry::from_canonical(&value[33..], hash)
                        .expect("decode");
                if let Some(a) = actor {
                    entry.actor = a.into();
                }
                value.clear();
                ciborium::into_writer(&entry, &mut value).expect("encode");
            }
            journal.insert(e.seq.to_be_bytes(), value).expect("insert");
        }
        db.flush().expect("flush");
        write_journal_files(dir, &[]);
    };
    let entries = journal_file_entries(dir.path());
    to_sled(dir.path(), &entries, None);
    {
        let store = open(dir.path());
        assert_eq!(store.verify_journal().expect("old format verifies").seq, 3);
        assert_eq!(journal(&store).len(), 3);
        store
            .append_journal(draft(Operation::Consult))
            .await
            .expect("goes on");
    }
    {
        let db = sled::open(dir.path()).expect("sled open");
        assert!(
            db.open_tree("journal").expect("tree").is_empty(),
            "sled keeps no entry"
        );
    }
    let moved = journal_file_entries(dir.path());
    assert_eq!(
        moved.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(open(dir.path()).verify_journal().expect("verifies").seq, 4);

    let dir = tempfile::tempdir().expect("tempdir");
    closed_store(dir.path(), 3).await;
    let entries = journal_file_entries(dir.path());
    to_sled(dir.path(), &entries, Some("someone-else"));
    let err = open(dir.path()).verify_journal().expect_err("tampered");
    assert!(
        matches!(
            err,
            StoreError::Chain(pons_core::journal::ChainError {
                seq: 2,
                reason: pons_core::journal::ChainFault::BadHash
            })
        ),
        "{err}"
    );
}

/// Cutting the last entry (hiding what was done) is refused at open.
#[tokio::test]
async fn truncated_journal_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_store(dir.path(), 3).await;
    let mut entries = journal_file_entries(dir.path());
    entries.pop();
    write_journal_files(dir.path(), &entries);
    let err = pons_store::Store::open(dir.path(), pons_store::Options::default())
        .err()
        .expect("open refuses");
    assert!(
        matches!(
            err,
            StoreError::HeadMismatch {
                head_seq: 3,
                last_seq: 2
            }
        ),
        "{err}"
    );
}

/// Entries the journal files lost (never synced) while the write-ahead log still holds them
/// are written again at open; entries the files hold beyond the journal head (a commit
/// whose log record was lost, never acknowledged) are cut.
#[tokio::test]
async fn the_write_ahead_log_settles_the_journal_files_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        for _ in 0..5 {
            store
                .append_journal(draft(Operation::Consult))
                .await
                .expect("append");
        }
    }
    let entries = journal_file_entries(dir.path());
    write_journal_files(dir.path(), &entries[..2]);
    {
        let store = open(dir.path());
        assert_eq!(store.verify_journal().expect("written again").seq, 5);
    }
    let mut entries = journal_file_entries(dir.path());
    assert_eq!(entries.len(), 5);
    let mut extra = FileEntry {
        path: entries[0].path.clone(),
        seq: 6,
        value: entries[4].value.clone(),
    };
    extra.value[40] ^= 1;
    entries.push(extra);
    write_journal_files(dir.path(), &entries);
    let store = open(dir.path());
    assert_eq!(store.verify_journal().expect("cut at the head").seq, 5);
    store
        .append_journal(draft(Operation::Consult))
        .await
        .expect("append");
    assert_eq!(store.verify_journal().expect("goes on").seq, 6);
}

/// A refused incoming record is journaled as `reject` without any stored state; a refusal
/// naming one of this node's own outbox records is refused (that goes through
/// `mark_rejected`), and so is any other operation.
#[tokio::test]
async fn journal_refusal_records_inbound_rejections_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut refusal = draft(Operation::Reject);
    refusal.record_id = Some(id(7));
    let seq = store.journal_refusal(refusal).await.expect("journaled");
    assert_eq!(seq, 1);
    assert!(
        store.inbox_get(id(7)).expect("inbox").is_none(),
        "nothing of it is kept"
    );

    store
        .submit(outgoing(8, "cuta"), &envelope(8), draft(Operation::Collect))
        .await
        .expect("submit");
    let mut own = draft(Operation::Reject);
    own.record_id = Some(id(8));
    let err = store.journal_refusal(own).await.expect_err("own record");
    assert!(matches!(err, StoreError::OwnRecordRefusal { .. }), "{err}");
    let err = store
        .journal_refusal(draft(Operation::Consult))
        .await
        .expect_err("wrong op");
    assert!(matches!(err, StoreError::WrongOperation { .. }), "{err}");
    assert_eq!(store.journal_head().expect("head").seq, 2);
    store.verify_journal().expect("chain verifies");
}
