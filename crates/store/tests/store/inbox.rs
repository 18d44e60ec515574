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
                &receipt_for(),
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
            &receipt_for(),
        )
        .await
        .expect("receive");
    let err = store
        .receive(
            incoming(1, "vaa"),
            b"other",
            draft(Operation::Receive),
            &receipt_for(),
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
            &(std::sync::Arc::new(|_: &pons_store::ReceiptBatch<'_>| {
                Err("signing key unavailable".to_string())
            }) as pons_store::ReceiptSealer),
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
            &receipt_for(),
        )
        .await
        .expect("receive");
    assert_eq!((got.journal_seq, got.arrival_seq), (2, 2));

    let err = store
        .receive(
            incoming(4, "vaa"),
            &envelope(4),
            draft(Operation::Collect),
            &receipt_for(),
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
                &receipt_for(),
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

/// Records one sender got into one committed batch share one receipt, sealed once, at most
/// `RECEIPT_BATCH` records each, and never with another sender's records; every record's
/// lookup answers the receipt that covers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_committed_together_share_one_receipt() {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{mpsc, Arc, Mutex};
    use std::task::Poll;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    // The sealer counts its calls; its first call holds the committer until released, so the
    // records queued meanwhile are committed as one batch.
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, gate) = mpsc::channel::<()>();
    let (entered_tx, gate) = (Mutex::new(entered_tx), Mutex::new(gate));
    let calls = Arc::new(Mutex::new(Vec::<(String, usize)>::new()));
    let seen = calls.clone();
    let sealer: pons_store::ReceiptSealer = Arc::new(move |batch| {
        let first = seen.lock().unwrap().is_empty();
        seen.lock()
            .unwrap()
            .push((batch.sender.to_string(), batch.items.len()));
        if first {
            entered_tx.lock().unwrap().send(()).unwrap();
            gate.lock().unwrap().recv().unwrap();
        }
        receipt_for()(batch)
    });
    type Write = Pin<Box<dyn Future<Output = Result<pons_store::Received, StoreError>> + Send>>;
    let receive = |n: u64, from: &'static str| {
        let (store, sealer) = (store.clone(), sealer.clone());
        Box::pin(async move {
            store
                .receive(
                    incoming(n, from),
                    &envelope(n),
                    draft(Operation::Receive),
                    &sealer,
                )
                .await
        }) as Write
    };
    // Poll a write once: it is queued for the committer.
    async fn queue(write: &mut Write) {
        std::future::poll_fn(|cx| {
            assert!(
                write.as_mut().poll(cx).is_pending(),
                "answered before commit"
            );
            Poll::Ready(())
        })
        .await
    }
    let mut first = receive(1, "vaa");
    queue(&mut first).await;
    entered
        .recv()
        .expect("the committer seals the first record's receipt");
    // Then, in one batch: RECEIPT_BATCH + 8 records from vaa (2..=41), with four from nccn
    // (101..=104) among the first.
    let batched = pons_store::RECEIPT_BATCH as u64 + 8;
    let mut order: Vec<(u64, &str)> = Vec::new();
    for n in 2..=1 + batched {
        order.push((n, "vaa"));
        if n <= 5 {
            order.push((n + 99, "nccn"));
        }
    }
    let mut rest: Vec<_> = order.iter().map(|&(n, from)| receive(n, from)).collect();
    for write in &mut rest {
        queue(write).await;
    }
    release.send(()).unwrap();
    let first = first.await.expect("receive 1");
    let mut receipts = std::collections::BTreeMap::new();
    for (write, (n, _)) in rest.into_iter().zip(&order) {
        receipts.insert(*n, write.await.expect("receive").receipt);
    }

    // One signature for record 1 alone, then one per sender and RECEIPT_BATCH records.
    let calls = calls.lock().unwrap().clone();
    let expected = [
        ("vaa", 1),
        ("vaa", pons_store::RECEIPT_BATCH),
        ("nccn", 4),
        ("vaa", 8),
    ];
    assert_eq!(
        calls,
        expected.map(|(s, n)| (s.to_string(), n)),
        "sealer calls: sender and size"
    );
    let text = |r: &[u8]| String::from_utf8(r.to_vec()).unwrap();
    let ids = |r: &[u8]| -> Vec<String> {
        text(r)
            .lines()
            .map(|l| l.split(' ').nth(1).unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first.receipt), [id(1).to_string()]);
    let full = &receipts[&2];
    let tail = &receipts[&(1 + batched)];
    let nccn = &receipts[&101];
    for (n, receipt) in &receipts {
        let expected = match n {
            101..=104 => nccn,
            _ if *n <= 1 + pons_store::RECEIPT_BATCH as u64 => full,
            _ => tail,
        };
        assert_eq!(receipt, expected, "record {n}");
    }
    // nccn's receipt names nccn's records only, and vaa's only vaa's.
    assert_eq!(
        ids(nccn),
        (101..=104).map(|n| id(n).to_string()).collect::<Vec<_>>()
    );
    assert_eq!(ids(full).len(), pons_store::RECEIPT_BATCH);
    assert_eq!(ids(tail).len(), 8);
    assert!(ids(full)
        .iter()
        .chain(&ids(tail))
        .all(|i| (2..=1 + batched).any(|n| id(n).to_string() == *i)));
    // Each record's stored receipt (what a duplicate is answered) covers it.
    for n in std::iter::once(1).chain(order.iter().map(|&(n, _)| n)) {
        let meta = store.lookup(id(n)).unwrap().expect("stored");
        let line = format!(
            "receipt {} j{} a{}",
            id(n),
            meta.journal_seq,
            meta.arrival_seq
        );
        assert!(text(&meta.receipt).lines().any(|l| l == line), "{n}");
    }
    let stored = 1 + order.len();
    assert_eq!(store.inbox_list(usize::MAX).unwrap().len(), stored);
    assert_eq!(store.verify_journal().unwrap().seq, stored as u64);
}
