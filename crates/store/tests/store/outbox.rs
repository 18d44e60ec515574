//! Outbox: submit, state machine, restart.

use pons_core::journal::{verify_chain, Operation};
use pons_store::{OutboxFilter, OutboxState, StateKind, StoreError};

use super::util::*;

/// Submits records `ns` to cuta.
async fn submit_to_cuta(store: &pons_store::Store, ns: std::ops::RangeInclusive<u64>) {
    for n in ns {
        store
            .submit(outgoing(n, "cuta"), &envelope(n), draft(Operation::Collect))
            .await
            .expect("submit");
    }
}

/// Marks record 1 delivered and record `rejected` rejected by its recipient's policy.
async fn deliver_1_and_reject(store: &pons_store::Store, rejected: u64) {
    store
        .mark_delivered(id(1), b"receipt-1", now(), draft(Operation::Disclose))
        .await
        .expect("delivered");
    store
        .mark_rejected(
            id(rejected),
            "policy",
            "no",
            now(),
            draft(Operation::Reject),
        )
        .await
        .expect("rejected");
}

#[tokio::test]
async fn submit_then_reopen_keeps_records_and_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        assert!(!store.was_recovered());
        for n in 1..=3 {
            let seq = store
                .submit(outgoing(n, "cuta"), &envelope(n), draft(Operation::Collect))
                .await
                .expect("submit");
            assert_eq!(seq, n);
        }
    }
    let store = open(dir.path());
    assert!(store.was_recovered());
    for n in 1..=3 {
        let rec = store.outbox_get(id(n)).expect("get").expect("present");
        assert_eq!(rec.to, node("cuta"));
        assert_eq!(rec.state, OutboxState::Pending);
        assert_eq!(rec.journal_seq, n);
        assert_eq!(
            store.outbox_envelope(id(n)).expect("env"),
            Some(envelope(n))
        );
    }
    let entries = journal(&store);
    assert_eq!(entries.len(), 3);
    let head = verify_chain(&entries).expect("chain verifies");
    assert_eq!(store.journal_head().expect("head"), head);
    assert_eq!(store.verify_journal().expect("verify"), head);
    // The store completed the draft from the record.
    let e = &entries[1];
    assert_eq!(e.operation, Operation::Collect);
    assert_eq!(e.record_id, Some(id(2)));
    assert_eq!(e.counterpart, Some(node("cuta")));
    assert_eq!(e.subject_ref.as_deref(), Some("subj-2"));
    assert_eq!(e.class.as_deref(), Some("minor-risk-report"));
    assert_eq!(
        store.pending().expect("pending"),
        vec![
            (id(1), node("cuta")),
            (id(2), node("cuta")),
            (id(3), node("cuta"))
        ]
    );
}

/// The queue lengths `status` shows are counted as commits apply, and afresh at open: they
/// follow submits, deliveries and rejections to each recipient, and a restart.
#[tokio::test]
async fn delivery_queues_are_counted_per_recipient_through_changes_and_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = |len, oldest: u64| pons_store::PendingQueue {
        len,
        oldest: Some(id(oldest)),
    };
    {
        let store = open(dir.path());
        assert!(store.pending_queues().expect("queues").is_empty());
        submit_to_cuta(&store, 1..=3).await;
        for n in 4..=5 {
            store
                .submit(outgoing(n, "nccn"), &envelope(n), draft(Operation::Collect))
                .await
                .expect("submit");
        }
        let queues = store.pending_queues().expect("queues");
        assert_eq!(queues[&node("cuta")], queue(3, 1));
        assert_eq!(queues[&node("nccn")], queue(2, 4));
        assert_queues_match_index(&store);

        deliver_1_and_reject(&store, 4).await;
        let queues = store.pending_queues().expect("queues");
        assert_eq!(queues[&node("cuta")], queue(2, 2));
        assert_eq!(queues[&node("nccn")], queue(1, 5));
        assert_queues_match_index(&store);
    }
    // Counted afresh from the index at open.
    let store = open(dir.path());
    assert_queues_match_index(&store);
    assert_eq!(store.pending_queues().expect("queues").len(), 2);
    store
        .mark_rejected(id(5), "policy", "refused", now(), draft(Operation::Reject))
        .await
        .expect("rejected");
    let queues = store.pending_queues().expect("queues");
    assert!(
        !queues.contains_key(&node("nccn")),
        "an empty queue is gone"
    );
    assert_eq!(queues[&node("cuta")], queue(2, 2));
    assert_queues_match_index(&store);
}

#[tokio::test]
async fn state_machine_and_one_journal_entry_per_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .submit(outgoing(1, "cuta"), &envelope(1), draft(Operation::Collect))
        .await
        .expect("submit 1");
    store
        .submit(outgoing(2, "nccn"), &envelope(2), draft(Operation::Collect))
        .await
        .expect("submit 2");
    assert_eq!(store.journal_head().expect("head").seq, 2);

    // Attempts are counted, not journaled.
    assert_eq!(store.record_attempt(id(1)).expect("attempt"), 1);
    assert_eq!(store.record_attempt(id(1)).expect("attempt"), 2);
    assert_eq!(store.journal_head().expect("head").seq, 2);
    let rec = store.outbox_get(id(1)).expect("get").expect("present");
    assert_eq!((rec.state.kind(), rec.attempts), (StateKind::InFlight, 2));

    let seq = store
        .mark_delivered(id(1), b"receipt-1", now(), draft(Operation::Disclose))
        .await
        .expect("delivered");
    assert_eq!(seq, 3);
    let seq = store
        .mark_rejected(
            id(2),
            "policy",
            "class not allowed",
            now(),
            draft(Operation::Reject),
        )
        .await
        .expect("rejected");
    assert_eq!(seq, 4);

    let entries = journal(&store);
    let ops: Vec<_> = entries.iter().map(|e| (e.operation, e.record_id)).collect();
    assert_eq!(
        ops,
        vec![
            (Operation::Collect, Some(id(1))),
            (Operation::Collect, Some(id(2))),
            (Operation::Disclose, Some(id(1))),
            (Operation::Reject, Some(id(2))),
        ]
    );
    assert_eq!(entries[3].counterpart, Some(node("nccn")));
    assert_eq!(
        store
            .outbox_get(id(1))
            .expect("get")
            .expect("present")
            .state,
        OutboxState::Delivered {
            receipt: b"receipt-1".to_vec(),
            at: now()
        }
    );
    assert!(store.pending().expect("pending").is_empty());

    // Terminal states refuse every change, and a refused change writes no journal entry.
    let err = store
        .mark_delivered(id(1), b"receipt-again", now(), draft(Operation::Disclose))
        .await
        .expect_err("delivered twice");
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: StateKind::Delivered,
            to: StateKind::Delivered,
            ..
        }
    ));
    let err = store
        .mark_rejected(id(1), "late", "late", now(), draft(Operation::Reject))
        .await
        .expect_err("reject after delivery");
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: StateKind::Delivered,
            to: StateKind::Rejected,
            ..
        }
    ));
    let err = store
        .mark_delivered(id(2), b"r", now(), draft(Operation::Disclose))
        .await
        .expect_err("deliver after rejection");
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: StateKind::Rejected,
            to: StateKind::Delivered,
            ..
        }
    ));
    let err = store
        .record_attempt(id(2))
        .expect_err("attempt after rejection");
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            to: StateKind::InFlight,
            ..
        }
    ));
    let err = store
        .mark_delivered(id(9), b"r", now(), draft(Operation::Disclose))
        .await
        .expect_err("unknown id");
    assert!(matches!(err, StoreError::OutboxNotFound { id: i } if i == id(9)));
    assert_eq!(store.journal_head().expect("head").seq, 4);
    store.verify_journal().expect("chain verifies");
}

#[tokio::test]
async fn bad_drafts_and_duplicates_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let err = store
        .submit(
            outgoing(1, "cuta"),
            &envelope(1),
            draft(Operation::Disclose),
        )
        .await
        .expect_err("wrong operation");
    assert!(matches!(
        err,
        StoreError::WrongOperation {
            expected: Operation::Collect,
            found: Operation::Disclose
        }
    ));
    let mut d = draft(Operation::Collect);
    d.record_id = Some(id(7));
    let err = store
        .submit(outgoing(1, "cuta"), &envelope(1), d)
        .await
        .expect_err("wrong record");
    assert!(matches!(err, StoreError::WrongRecord { found, .. } if found == id(7)));
    assert_eq!(store.outbox_get(id(1)).expect("get"), None);
    assert_eq!(store.journal_head().expect("head").seq, 0);

    store
        .submit(outgoing(1, "cuta"), &envelope(1), draft(Operation::Collect))
        .await
        .expect("submit");
    let err = store
        .submit(
            outgoing(1, "cuta"),
            b"other bytes",
            draft(Operation::Collect),
        )
        .await
        .expect_err("duplicate id");
    assert!(matches!(err, StoreError::OutboxDuplicate { id: i } if i == id(1)));
    assert_eq!(
        store.outbox_envelope(id(1)).expect("env"),
        Some(envelope(1))
    );
    assert_eq!(store.journal_head().expect("head").seq, 1);

    let err = store
        .mark_delivered(id(1), b"r", now(), draft(Operation::Collect))
        .await
        .expect_err("wrong operation");
    assert!(matches!(
        err,
        StoreError::WrongOperation {
            expected: Operation::Disclose,
            ..
        }
    ));
    assert_eq!(store.journal_head().expect("head").seq, 1);
}

#[tokio::test]
async fn list_filters_by_state_and_peer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for n in 1..=6 {
        let to = if n % 2 == 0 { "cuta" } else { "nccn" };
        store
            .submit(outgoing(n, to), &envelope(n), draft(Operation::Collect))
            .await
            .expect("submit");
    }
    store
        .mark_delivered(id(2), b"r", now(), draft(Operation::Disclose))
        .await
        .expect("delivered");
    let ids = |f: OutboxFilter| -> Vec<_> {
        store
            .outbox_list(&f)
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(
        ids(OutboxFilter::default()),
        (1..=6).map(id).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(OutboxFilter {
            to: Some(node("cuta")),
            ..Default::default()
        }),
        vec![id(2), id(4), id(6)]
    );
    assert_eq!(
        ids(OutboxFilter {
            to: Some(node("cuta")),
            state: Some(StateKind::Pending),
            ..Default::default()
        }),
        vec![id(4), id(6)]
    );
    assert_eq!(
        ids(OutboxFilter {
            state: Some(StateKind::Delivered),
            ..Default::default()
        }),
        vec![id(2)]
    );
    assert_eq!(
        ids(OutboxFilter {
            limit: Some(2),
            ..Default::default()
        }),
        vec![id(1), id(2)]
    );
    assert_eq!(store.pending().expect("pending").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submitters_get_distinct_gapless_sequence_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(
        pons_store::Store::open(dir.path(), {
            let mut options = pons_store::Options::default();
            options.durability = pons_store::Durability::FlushAndSync;
            options
        })
        .expect("open"),
    );
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25u64 {
                let n = t * 100 + i + 1;
                seqs.push(
                    store
                        .submit(outgoing(n, "cuta"), &envelope(n), draft(Operation::Collect))
                        .await
                        .expect("submit"),
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
    assert_eq!(store.verify_journal().expect("verify").seq, 200);
    assert_eq!(
        store
            .outbox_list(&OutboxFilter::default())
            .expect("list")
            .len(),
        200
    );
}

/// A receipt covering several records (a batched receipt) is stored once and read back whole
/// through each record's state, also after the store is reopened.
#[tokio::test]
async fn records_delivered_on_one_receipt_each_read_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receipt = vec![0xd2; 3000];
    {
        let store = open(dir.path());
        submit_to_cuta(&store, 1..=3).await;
        for n in 1..=2 {
            store
                .mark_delivered(id(n), &receipt, now(), draft(Operation::Disclose))
                .await
                .expect("delivered");
        }
        store
            .mark_delivered(id(3), b"another receipt", now(), draft(Operation::Disclose))
            .await
            .expect("delivered");
    }
    let store = open(dir.path());
    let expected = |n: u64, receipt: &[u8]| {
        let got = store.outbox_get(id(n)).expect("get").expect("present");
        assert_eq!(
            got.state,
            OutboxState::Delivered {
                receipt: receipt.to_vec(),
                at: now()
            },
            "record {n}"
        );
    };
    expected(1, &receipt);
    expected(2, &receipt);
    expected(3, b"another receipt");
    let listed = store.outbox_list(&OutboxFilter::default()).expect("list");
    let receipts: Vec<&[u8]> = listed
        .iter()
        .map(|r| match &r.state {
            OutboxState::Delivered { receipt, .. } => receipt.as_slice(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        receipts,
        [&receipt[..], &receipt[..], &b"another receipt"[..]]
    );
}

#[tokio::test]
async fn attempts_are_counted_in_memory_and_stored_when_the_record_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        submit_to_cuta(&store, 1..=3).await;
        for _ in 0..3 {
            store.record_attempt(id(1)).expect("attempt 1");
        }
        store.record_attempt(id(2)).expect("attempt 2");
        store.record_attempt(id(3)).expect("attempt 3");
        // The filter sees the state the attempts give.
        let in_flight = OutboxFilter {
            state: Some(StateKind::InFlight),
            ..OutboxFilter::default()
        };
        let listed: Vec<_> = store
            .outbox_list(&in_flight)
            .expect("list")
            .iter()
            .map(|r| (r.id, r.attempts))
            .collect();
        assert_eq!(listed, vec![(id(1), 3), (id(2), 1), (id(3), 1)]);

        deliver_1_and_reject(&store, 2).await;
        // Closed: no more attempts, and the count is the stored one.
        assert!(store.record_attempt(id(1)).is_err());
        let rec = store.outbox_get(id(1)).expect("get").expect("present");
        assert_eq!((rec.state.kind(), rec.attempts), (StateKind::Delivered, 3));
    }
    // Reopened: the closed records kept their counts; the open one's attempts of the last
    // run were never written (a crash loses them the same way), so it is pending again and
    // counts from there.
    let store = open(dir.path());
    let state = |n| {
        let rec = store.outbox_get(id(n)).expect("get").expect("present");
        (rec.state.kind(), rec.attempts)
    };
    assert_eq!(state(1), (StateKind::Delivered, 3));
    assert_eq!(state(2), (StateKind::Rejected, 1));
    assert_eq!(state(3), (StateKind::Pending, 0));
    assert_eq!(store.record_attempt(id(3)).expect("attempt 3"), 1);
    assert_eq!(state(3), (StateKind::InFlight, 1));
}
