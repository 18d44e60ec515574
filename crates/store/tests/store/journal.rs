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

/// Alter a stored entry behind the store's back (with sled directly, as an attacker with
/// file access would): verification names the altered entry.
#[tokio::test]
async fn tampered_stored_entry_is_found_by_verify_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        for _ in 0..4 {
            store
                .append_journal(draft(Operation::Consult))
                .await
                .expect("append");
        }
    }
    {
        let db = sled::open(dir.path()).expect("sled open");
        let journal = db.open_tree("journal").expect("tree");
        let key = 3u64.to_be_bytes();
        let v = journal.get(key).expect("get").expect("entry 3");
        // Stored as 0x01 || hash || canonical bytes: change the actor, keep the hash.
        assert_eq!(v[0], 0x01);
        let hash: [u8; 32] = v[1..33].try_into().expect("hash");
        let mut entry =
            pons_core::journal::JournalEntry::from_canonical(&v[33..], hash).expect("decode");
        entry.actor = "someone-else".into();
        let mut out = vec![0x01];
        out.extend_from_slice(&hash);
        out.extend_from_slice(&entry.canonical_bytes());
        journal.insert(key, out).expect("insert");
        db.flush().expect("flush");
    }
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

/// Entries written before the canonical storage format (ciborium maps) still read and
/// verify, and a change to one is found too.
#[tokio::test]
async fn entries_in_the_older_format_verify_and_tampering_is_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        for _ in 0..3 {
            store
                .append_journal(draft(Operation::Consult))
                .await
                .expect("append");
        }
    }
    let rewrite = |actor: Option<&str>| {
        let db = sled::open(dir.path()).expect("sled open");
        let journal = db.open_tree("journal").expect("tree");
        let key = 2u64.to_be_bytes();
        let v = journal.get(key).expect("get").expect("entry 2");
        let hash: [u8; 32] = v[1..33].try_into().expect("hash");
        let mut entry = pons_core::journal::JournalEntry::from_canonical(&v[33..], hash)
            .unwrap_or_else(|_| ciborium::from_reader(v.as_ref()).expect("old format"));
        if let Some(a) = actor {
            entry.actor = a.into();
        }
        let mut out = Vec::new();
        ciborium::into_writer(&entry, &mut out).expect("encode");
        journal.insert(key, out).expect("insert");
        db.flush().expect("flush");
    };
    rewrite(None);
    {
        let store = open(dir.path());
        assert_eq!(store.verify_journal().expect("old format verifies").seq, 3);
        assert_eq!(journal(&store).len(), 3);
    }
    rewrite(Some("someone-else"));
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
    {
        let store = open(dir.path());
        for _ in 0..3 {
            store
                .append_journal(draft(Operation::Consult))
                .await
                .expect("append");
        }
    }
    {
        let db = sled::open(dir.path()).expect("sled open");
        let journal = db.open_tree("journal").expect("tree");
        journal.remove(3u64.to_be_bytes()).expect("remove");
        db.flush().expect("flush");
    }
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
