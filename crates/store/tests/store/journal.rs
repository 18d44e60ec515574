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
