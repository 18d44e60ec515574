//! Inbox: receive with receipt in the same transaction, dedup lookup, arrival order.

use pons_core::journal::Operation;
use pons_store::StoreError;

use super::util::*;

#[tokio::test]
async fn receive_stores_record_receipt_and_journal_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        // A journal entry first, so journal and arrival numbers differ.
        store
            .append_journal(draft(Operation::JournalRead))
            .await
            .expect("append");
        let got = store
            .receive(
                incoming(1, "vaa"),
                &envelope(1),
                draft(Operation::Receive),
                receipt_for,
            )
            .await
            .expect("receive");
        assert_eq!((got.journal_seq, got.arrival_seq), (2, 1));
        assert_eq!(got.receipt, format!("receipt {} j2 a1", id(1)).into_bytes());
    }
    let store = open(dir.path());
    let meta = store.lookup(id(1)).expect("lookup").expect("present");
    assert_eq!(meta.envelope_sha256, [1; 32]);
    assert_eq!(
        meta.receipt,
        format!("receipt {} j2 a1", id(1)).into_bytes()
    );
    assert_eq!((meta.journal_seq, meta.arrival_seq), (2, 1));
    assert_eq!(store.inbox_envelope(id(1)).expect("env"), Some(envelope(1)));
    let rec = store.inbox_get(id(1)).expect("get").expect("present");
    assert_eq!(rec.from, node("vaa"));
    let entries = journal(&store);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].operation, Operation::Receive);
    assert_eq!(entries[1].counterpart, Some(node("vaa")));
    assert_eq!(entries[1].record_id, Some(id(1)));
    store.verify_journal().expect("verify");
    assert_eq!(store.lookup(id(2)).expect("lookup"), None);
}

#[tokio::test]
async fn duplicate_and_failed_receipt_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .receive(
            incoming(1, "vaa"),
            &envelope(1),
            draft(Operation::Receive),
            receipt_for,
        )
        .await
        .expect("receive");
    let err = store
        .receive(
            incoming(1, "vaa"),
            b"other",
            draft(Operation::Receive),
            receipt_for,
        )
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StoreError::AlreadyReceived { id: i } if i == id(1)));
    assert_eq!(store.inbox_envelope(id(1)).expect("env"), Some(envelope(1)));

    let err = store
        .receive(
            incoming(2, "vaa"),
            &envelope(2),
            draft(Operation::Receive),
            |_| Err("signing key unavailable".to_string()),
        )
        .await
        .expect_err("receipt fails");
    assert!(
        matches!(err, StoreError::Receipt { ref reason, .. } if reason == "signing key unavailable")
    );
    assert_eq!(store.lookup(id(2)).expect("lookup"), None);
    assert_eq!(store.inbox_envelope(id(2)).expect("env"), None);
    assert_eq!(store.journal_head().expect("head").seq, 1);

    // The arrival counter did not move either: the next record is arrival 2.
    let got = store
        .receive(
            incoming(3, "vaa"),
            &envelope(3),
            draft(Operation::Receive),
            receipt_for,
        )
        .await
        .expect("receive");
    assert_eq!((got.journal_seq, got.arrival_seq), (2, 2));

    let err = store
        .receive(
            incoming(4, "vaa"),
            &envelope(4),
            draft(Operation::Collect),
            receipt_for,
        )
        .await
        .expect_err("wrong operation");
    assert!(matches!(
        err,
        StoreError::WrongOperation {
            expected: Operation::Receive,
            ..
        }
    ));
}

#[tokio::test]
async fn feed_reads_in_arrival_order_not_id_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    // Arrive in an order unlike id order.
    let order = [5u64, 2, 9, 1, 7];
    for n in order {
        store
            .receive(
                incoming(n, "vaa"),
                &envelope(n),
                draft(Operation::Receive),
                receipt_for,
            )
            .await
            .expect("receive");
    }
    let ids = |v: Vec<pons_store::InboxRecord>| -> Vec<_> { v.into_iter().map(|r| r.id).collect() };
    assert_eq!(
        ids(store.inbox_list(10).expect("list")),
        order.map(id).to_vec()
    );
    assert_eq!(
        ids(store.inbox_after(2, 2).expect("after")),
        vec![id(9), id(1)]
    );
    assert_eq!(ids(store.inbox_after(4, 10).expect("after")), vec![id(7)]);
    assert_eq!(
        ids(store.inbox_after(u64::MAX, 10).expect("after")),
        Vec::<uuid::Uuid>::new()
    );
    let arrivals: Vec<_> = store
        .inbox_list(10)
        .expect("list")
        .iter()
        .map(|r| r.arrival_seq)
        .collect();
    assert_eq!(arrivals, vec![1, 2, 3, 4, 5]);
}
