//! Retention state: deadlines indexed by date, legal holds, reviews and erasure, each with
//! its journal entry in the same transaction.

use pons_core::journal::Operation;
use pons_core::retention::Deadlines;
use pons_store::{Due, Hold, Place, StoreError};
use time::macros::date;
use time::Date;

use super::util::{
    assert_queues_match_index, draft, files, id, incoming, journal, now, open, outgoing,
    receipt_for,
};

fn dl(review_by: Date, erase_by: Date) -> Deadlines {
    Deadlines {
        review_by,
        erase_by,
    }
}

fn env(n: u64) -> Vec<u8> {
    format!("envelope-{n}").into_bytes()
}

fn hold(reason: &str) -> Hold {
    Hold {
        reason: reason.into(),
        by: "dpo1".into(),
        at: now(),
    }
}

async fn fill(store: &pons_store::Store) {
    // Outbox: 1, 2, 3 with review dates in March, January, February.
    for (n, review) in [
        (1, date!(2027 - 03 - 01)),
        (2, date!(2027 - 01 - 01)),
        (3, date!(2027 - 02 - 01)),
    ] {
        store
            .submit_retained(
                outgoing(n, "cuta"),
                dl(review, date!(2031 - 01 - 01)),
                &env(n),
                draft(Operation::Collect),
            )
            .await
            .expect("submit");
    }
    // Inbox: 4 and 5, erasure on 2027-06-01 and 2032-01-01.
    for (n, erase) in [(4, date!(2027 - 06 - 01)), (5, date!(2032 - 01 - 01))] {
        store
            .receive_retained(
                incoming(n, "vaa"),
                dl(date!(2027 - 05 - 01), erase),
                &env(n),
                draft(Operation::Receive),
                &receipt_for(),
            )
            .await
            .expect("receive");
    }
}

#[tokio::test]
async fn deadlines_are_found_by_date_in_date_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    fill(&store).await;
    // A record submitted without deadlines has no retention entry.
    store
        .submit(outgoing(9, "cuta"), &env(9), draft(Operation::Collect))
        .await
        .expect("submit");
    assert!(store.retention_get(id(9)).unwrap().is_none());

    assert!(store
        .due(Due::Review, date!(2026 - 12 - 31))
        .unwrap()
        .is_empty());
    assert_eq!(
        store.due(Due::Review, date!(2027 - 02 - 01)).unwrap(),
        vec![id(2), id(3)]
    );
    assert_eq!(
        store.due(Due::Review, date!(2027 - 12 - 31)).unwrap(),
        vec![id(2), id(3), id(1), id(4), id(5)]
    );
    assert_eq!(
        store.due(Due::Erase, date!(2027 - 06 - 01)).unwrap(),
        vec![id(4)]
    );
    let e = store.retention_get(id(4)).unwrap().expect("entry");
    assert_eq!(e.place, Place::Inbox);
    assert_eq!(e.counterpart.as_str(), "vaa");
    assert_eq!(e.subject_ref.as_deref(), Some("subj-4"));
    // Reopened, the index is still there.
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.due(Due::Erase, date!(2031 - 01 - 01)).unwrap(),
        vec![id(4), id(1), id(2), id(3)]
    );
}

#[tokio::test]
async fn holds_and_reviews_are_journaled_and_reindexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    fill(&store).await;
    let seq = store
        .hold_add(id(2), hold("court case 2026/123"), draft(Operation::Hold))
        .await
        .expect("hold");
    assert_eq!(store.held().unwrap(), vec![id(2)]);
    let last = journal(&store).pop().expect("entry");
    assert_eq!((last.seq, last.operation), (seq, Operation::Hold));
    assert_eq!(last.record_id, Some(id(2)));
    assert_eq!(last.subject_ref.as_deref(), Some("subj-2"));
    // The wrong operation is refused and changes nothing.
    let err = store
        .hold_add(id(3), hold("x"), draft(Operation::Review))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongOperation { .. }), "{err}");
    assert_eq!(store.held().unwrap(), vec![id(2)]);

    store
        .hold_remove(id(2), draft(Operation::Hold))
        .await
        .expect("lift");
    assert!(store.held().unwrap().is_empty());
    let err = store
        .hold_remove(id(2), draft(Operation::Hold))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotHeld { .. }), "{err}");

    let before = journal(&store).len();
    store
        .review(
            id(2),
            dl(date!(2027 - 07 - 01), date!(2031 - 01 - 01)),
            None,
            draft(Operation::Review),
        )
        .await
        .expect("review");
    assert_eq!(journal(&store).len(), before + 1);
    assert_eq!(
        store.due(Due::Review, date!(2027 - 02 - 01)).unwrap(),
        vec![id(3)],
        "the old review date is no longer indexed"
    );
    assert_eq!(
        store.due(Due::Review, date!(2027 - 07 - 01)).unwrap(),
        vec![id(3), id(1), id(4), id(5), id(2)]
    );
    let err = store
        .review(
            id(77),
            dl(now().date(), now().date()),
            None,
            draft(Operation::Review),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoRetention { .. }), "{err}");
}

#[tokio::test]
async fn erasure_removes_key_body_and_index_with_a_tombstone_but_not_while_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    fill(&store).await;
    store
        .hold_add(id(1), hold("inquiry"), draft(Operation::Hold))
        .await
        .expect("hold");
    let before = journal(&store).len();
    let err = store
        .erase(id(1), draft(Operation::Erase), |_| Ok(()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Held { .. }), "{err}");
    let err = store
        .erase(id(3), draft(Operation::Erase), |_| Err("not due".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EraseRefused { .. }), "{err}");
    assert_eq!(journal(&store).len(), before, "a refusal writes nothing");
    assert_eq!(store.outbox_envelope(id(1)).unwrap(), Some(env(1)));

    let erased = store
        .erase(id(3), draft(Operation::Erase), |_| Ok(()))
        .await
        .expect("erase outbox record");
    assert_eq!(erased.entry.place, Place::Outbox);
    let tomb = journal(&store).pop().expect("entry");
    assert_eq!(tomb.seq, erased.journal_seq);
    assert_eq!(tomb.operation, Operation::Erase);
    assert_eq!(tomb.record_id, Some(id(3)));
    assert_eq!(tomb.class.as_deref(), Some("minor-risk-report"));
    assert_eq!(tomb.subject_ref.as_deref(), Some("subj-3"));
    assert_eq!(store.outbox_envelope(id(3)).unwrap(), None);
    assert!(store.retention_get(id(3)).unwrap().is_none());
    assert!(!store.pending().unwrap().iter().any(|(i, _)| *i == id(3)));
    assert_queues_match_index(&store);
    assert!(store.outbox_get(id(3)).unwrap().is_some(), "metadata stays");
    assert!(!store.due(Due::Erase, Date::MAX).unwrap().contains(&id(3)));

    store
        .erase(id(4), draft(Operation::Erase), |_| Ok(()))
        .await
        .expect("erase inbox record");
    assert_eq!(store.inbox_envelope(id(4)).unwrap(), None);
    assert_eq!(store.inbox_envelope(id(5)).unwrap(), Some(env(5)));
    let err = store
        .erase(id(4), draft(Operation::Erase), |_| Ok(()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoRetention { .. }), "{err}");
    store.verify_journal().expect("journal verifies");

    drop(store);
    let store = open(dir.path());
    assert_eq!(store.inbox_envelope(id(4)).unwrap(), None);
    assert_eq!(store.outbox_envelope(id(1)).unwrap(), Some(env(1)));
}

#[tokio::test]
async fn a_delivered_record_is_erased_only_with_its_notice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    fill(&store).await;
    store
        .mark_delivered(id(2), b"receipt", now(), draft(Operation::Disclose))
        .await
        .expect("delivered");
    let before = journal(&store).len();
    let err = store
        .erase(id(2), draft(Operation::Erase), |_| Ok(()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoticeNeeded { .. }), "{err}");
    assert_eq!(
        journal(&store).len(),
        before,
        "nothing erased without its notice"
    );
    assert_eq!(store.outbox_envelope(id(2)).unwrap(), Some(env(2)));

    let mut notice = outgoing(90, "cuta");
    notice.class = "erasure-notice".into();
    let sub = store
        .prepare_submission(
            notice,
            Some(dl(date!(2027 - 05 - 01), date!(2029 - 01 - 01))),
            &env(90),
            draft(Operation::Collect),
        )
        .expect("prepared");
    let erased = store
        .erase_notifying(id(2), draft(Operation::Erase), |_| Ok(()), Some(&sub))
        .await
        .expect("erased with its notice");
    assert_eq!(erased.notice_seq, Some(erased.journal_seq + 1));
    assert_eq!(store.outbox_envelope(id(2)).unwrap(), None);
    assert_eq!(store.outbox_envelope(id(90)).unwrap(), Some(env(90)));
    assert!(store.pending().unwrap().iter().any(|(i, _)| *i == id(90)));
    // A record never delivered needs no notice: it will never be sent.
    let erased = store
        .erase_notifying(id(3), draft(Operation::Erase), |_| Ok(()), Some(&sub))
        .await
        .expect("erased");
    assert_eq!(erased.notice_seq, None);
    store.verify_journal().expect("journal verifies");
}

#[tokio::test]
async fn an_erasure_order_from_the_sender_erases_or_is_held_and_is_told() {
    use pons_core::Effect;
    use pons_store::EraseOrder;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    fill(&store).await; // inbox 4 and 5 from vaa
    store
        .hold_add(id(5), hold("inquiry 12"), draft(Operation::Hold))
        .await
        .expect("hold");
    let order = |target: u64, from: &str| EraseOrder {
        target: id(target),
        from: Some(super::util::node(from)),
        why: format!("erasure notice from {from}"),
        draft: draft(Operation::Erase),
    };
    let mut n = 100;
    let mut receive = |order: EraseOrder| {
        n += 1;
        let mut rec = incoming(n, "vaa");
        rec.class = "erasure-notice".into();
        let store = &store;
        async move {
            let effect = std::sync::Arc::new(std::sync::Mutex::new(None));
            let seen = effect.clone();
            let received = store
                .receive_ordering(
                    rec,
                    dl(date!(2027 - 05 - 01), date!(2029 - 01 - 01)),
                    order,
                    &env(n),
                    draft(Operation::Receive),
                    &(std::sync::Arc::new(move |batch: &pons_store::ReceiptBatch<'_>| {
                        *seen.lock().unwrap() = batch.items[0].effect;
                        receipt_for()(batch)
                    }) as pons_store::ReceiptSealer),
                )
                .await
                .expect("received");
            let effect = *effect.lock().unwrap();
            (received, effect)
        }
    };
    // Another sender's order does not touch vaa's record.
    let (_, effect) = receive(order(4, "cuta")).await;
    assert_eq!(effect, Some(Effect::NotFound));
    assert_eq!(store.inbox_envelope(id(4)).unwrap(), Some(env(4)));

    let (_, effect) = receive(order(4, "vaa")).await;
    assert_eq!(effect, Some(Effect::Erased));
    assert_eq!(store.inbox_envelope(id(4)).unwrap(), None);
    let tomb = journal(&store).pop().unwrap();
    assert_eq!(
        (tomb.operation, tomb.record_id, tomb.outcome),
        (
            Operation::Erase,
            Some(id(4)),
            pons_core::journal::Outcome::Success
        )
    );
    let (_, effect) = receive(order(4, "vaa")).await;
    assert_eq!(effect, Some(Effect::AlreadyErased));
    let (_, effect) = receive(order(77, "vaa")).await;
    assert_eq!(effect, Some(Effect::NotFound));

    // Held here: kept, restricted, the order remembered and journaled as refused.
    let (_, effect) = receive(order(5, "vaa")).await;
    assert_eq!(effect, Some(Effect::Held));
    assert_eq!(store.inbox_envelope(id(5)).unwrap(), Some(env(5)));
    let entry = store.retention_get(id(5)).unwrap().unwrap();
    assert_eq!(
        entry.erasure_ordered.as_deref(),
        Some("erasure notice from vaa")
    );
    let refused = journal(&store).pop().unwrap();
    assert_eq!(refused.outcome, pons_core::journal::Outcome::Refused);
    assert!(
        refused
            .justification
            .as_deref()
            .unwrap_or_default()
            .contains("inquiry 12"),
        "{refused:?}"
    );
    // Lifted: the remembered order now erases it.
    store
        .hold_remove(id(5), draft(Operation::Hold))
        .await
        .expect("lift");
    let entry = store.retention_get(id(5)).unwrap().unwrap();
    assert_eq!(
        entry.erasure_ordered.as_deref(),
        Some("erasure notice from vaa")
    );
    store.verify_journal().expect("journal verifies");
}

#[tokio::test]
async fn a_rectification_and_the_erasure_of_what_it_supersedes_are_one_transaction() {
    use pons_core::Effect;
    use pons_store::EraseOrder;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    fill(&store).await;
    let mut rect = outgoing(50, "cuta");
    rect.class = "rectification".into();
    let sub = store
        .prepare_submission(
            rect,
            Some(dl(date!(2027 - 01 - 01), date!(2031 - 01 - 01))),
            &env(50),
            draft(Operation::Collect),
        )
        .expect("prepared");
    let order = EraseOrder {
        target: id(2),
        from: None,
        why: "superseded by rectification".into(),
        draft: draft(Operation::Erase),
    };
    let (seq, effect) = store.rectify(&sub, &order).await.expect("rectified");
    assert_eq!(effect, Effect::Erased);
    assert_eq!(store.outbox_envelope(id(2)).unwrap(), None);
    assert_eq!(store.outbox_envelope(id(50)).unwrap(), Some(env(50)));
    let entries = journal(&store);
    assert_eq!(entries[entries.len() - 2].seq, seq);
    assert_eq!(entries.last().unwrap().operation, Operation::Erase);
    // The same rectification again: refused whole, the journal unchanged.
    let before = entries.len();
    let err = store.rectify(&sub, &order).await.unwrap_err();
    assert!(matches!(err, StoreError::OutboxDuplicate { .. }), "{err}");
    assert_eq!(journal(&store).len(), before);
}

const SWEEP_CHILD_ENV: &str = "PONS_STORE_SWEEP_CHILD_DIR";
const SWEEP_RECORDS: u64 = 1500;
const SWEEP_HELD: u64 = 10;
const SWEEP_KILL_AFTER: usize = 50;

fn sweep_day() -> Date {
    date!(2027 - 01 - 01)
}

/// Entry point of the child process of the next test; does nothing unless
/// `SWEEP_CHILD_ENV` names a directory. Erases what is due, printing each id once erased.
#[test]
fn sweep_child_eraser() {
    use std::io::Write;
    let Ok(dir) = std::env::var(SWEEP_CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = open(std::path::Path::new(&dir));
        let mut out = std::io::stdout().lock();
        for rid in store.due(Due::Erase, sweep_day()).expect("due") {
            match store.erase(rid, draft(Operation::Erase), |_| Ok(())).await {
                Ok(_) => {
                    writeln!(out, "ERASED {rid}").expect("stdout");
                    out.flush().expect("stdout");
                }
                Err(StoreError::Held { .. }) => {}
                Err(e) => panic!("erase {rid}: {e}"),
            }
        }
    });
}

/// A sweep killed with SIGKILL part-way leaves every record either whole or erased (never a
/// body without its key, nor a record erased without its tombstone), and a second sweep
/// erases the rest.
#[tokio::test]
async fn a_sweep_killed_mid_way_leaves_no_half_erased_record_and_resumes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        for n in 1..=SWEEP_RECORDS {
            store
                .submit_retained(
                    outgoing(n, "cuta"),
                    dl(date!(2026 - 12 - 01), sweep_day()),
                    &env(n),
                    draft(Operation::Collect),
                )
                .await
                .expect("submit");
        }
        for n in 1..=SWEEP_HELD {
            store
                .hold_add(id(n * 7), hold("inquiry"), draft(Operation::Hold))
                .await
                .expect("hold");
        }
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "store::retention::sweep_child_eraser",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SWEEP_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut erased = std::collections::BTreeSet::new();
    while erased.len() < SWEEP_KILL_AFTER {
        let line = lines
            .next()
            .expect("child ended before erasing enough records")
            .expect("read child stdout");
        if let Some(rid) = line.strip_prefix("ERASED ") {
            erased.insert(uuid::Uuid::parse_str(rid).expect("uuid"));
        }
    }
    child.kill().expect("kill child");
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(rid) = line.strip_prefix("ERASED ") {
            erased.insert(uuid::Uuid::parse_str(rid).expect("uuid"));
        }
    }
    assert!(
        !child.wait().expect("wait").success(),
        "the child was killed"
    );

    let store = open(dir.path());
    store
        .verify_journal()
        .expect("journal verifies after the kill");
    let tombstones: std::collections::BTreeSet<_> = journal(&store)
        .into_iter()
        .filter(|e| e.operation == Operation::Erase)
        .map(|e| e.record_id.expect("tombstone names its record"))
        .collect();
    let due: std::collections::BTreeSet<_> = store
        .due(Due::Erase, sweep_day())
        .expect("due")
        .into_iter()
        .collect();
    let mut remaining = 0;
    for n in 1..=SWEEP_RECORDS {
        let rid = id(n);
        let body = store.outbox_envelope(rid).expect("body reads or is gone");
        let entry = store.retention_get(rid).expect("entry");
        if tombstones.contains(&rid) {
            assert!(
                body.is_none() && entry.is_none() && !due.contains(&rid),
                "{rid}"
            );
        } else {
            assert!(!erased.contains(&rid), "acknowledged erasure lost: {rid}");
            assert_eq!(body, Some(env(n)), "{rid}");
            assert!(entry.is_some() && due.contains(&rid), "{rid}");
            remaining += 1;
        }
    }
    assert!(erased.is_subset(&tombstones));
    assert!(
        remaining > SWEEP_HELD,
        "the kill came before the end of the sweep"
    );

    // The next sweep erases the rest, except what is held.
    for rid in store.due(Due::Erase, sweep_day()).expect("due") {
        match store.erase(rid, draft(Operation::Erase), |_| Ok(())).await {
            Ok(_) | Err(StoreError::Held { .. }) => {}
            Err(e) => panic!("erase {rid}: {e}"),
        }
    }
    let left = store.due(Due::Erase, sweep_day()).expect("due");
    assert_eq!(left, store.held().expect("held"));
    assert_eq!(left.len() as u64, SWEEP_HELD);
    let erases = journal(&store)
        .iter()
        .filter(|e| e.operation == Operation::Erase)
        .count() as u64;
    assert_eq!(erases, SWEEP_RECORDS - SWEEP_HELD);
}

/// A receipt that comes after the record was erased here (in flight: no notice was needed
/// then) cannot be stored as a plain delivery, which would leave the recipient holding a
/// record it was never told is erased; it needs the erasure notice (LED art. 16(6)).
#[tokio::test]
async fn a_record_erased_in_flight_is_not_marked_delivered_without_its_notice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    fill(&store).await;
    store.record_attempt(id(2)).expect("in flight");
    store
        .erase(id(2), draft(Operation::Erase), |_| Ok(()))
        .await
        .expect("erased in flight, before any receipt");
    let before = journal(&store).len();
    let err = store
        .mark_delivered(id(2), b"receipt", now(), draft(Operation::Disclose))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ErasedInFlight { .. }), "{err}");
    assert!(err.to_string().contains("LED art. 16(6)"), "{err}");
    assert_eq!(journal(&store).len(), before, "a refusal writes nothing");
    let rec = store.outbox_get(id(2)).unwrap().expect("metadata kept");
    assert!(rec.state.is_open(), "{:?}", rec.state);
}

/// Every file under `dir` (the store, or its write-ahead log), concatenated.
fn store_bytes(dir: &std::path::Path) -> Vec<u8> {
    files(dir)
        .into_iter()
        .flat_map(|(_, bytes)| bytes)
        .collect()
}

/// An erasure has the checkpointer punch the body out of the body log and retire the
/// write-ahead log that held it: soon no file of the store keeps it (sled only ever held a
/// reference to it).
#[tokio::test]
async fn an_erased_body_leaves_the_write_ahead_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No master key: bodies are stored in clear, so the test can look for them.
    let mut options = pons_store::Options::default();
    options.durability = pons_store::Durability::FlushAndSync;
    let store = pons_store::Store::open(dir.path(), options.clone()).expect("open");
    let secret = b"body of record one: Janssens 85.07.30-033.61".to_vec();
    let deadlines = dl(date!(2027 - 01 - 01), date!(2031 - 01 - 01));
    for (n, body) in [(1, secret.clone()), (2, env(2))] {
        store
            .submit_retained(
                outgoing(n, "cuta"),
                deadlines,
                &body,
                draft(Operation::Collect),
            )
            .await
            .expect("submit");
    }
    let holds = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret.as_slice());
    assert!(
        holds(&store_bytes(&dir.path().join("wal"))),
        "the log holds the body before"
    );
    assert!(
        holds(&store_bytes(&dir.path().join("bodies"))),
        "the body log holds the body before"
    );

    store
        .erase(id(1), draft(Operation::Erase), |_| Ok(()))
        .await
        .expect("erase");
    let mut left = true;
    for _ in 0..250 {
        left = holds(&store_bytes(dir.path()));
        if !left {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !left,
        "a file of the store still holds the erased body 5 s after the erasure"
    );

    drop(store);
    let store = pons_store::Store::open(dir.path(), options).expect("reopen");
    assert_eq!(store.outbox_envelope(id(1)).unwrap(), None);
    assert_eq!(store.outbox_envelope(id(2)).unwrap(), Some(env(2)));
    store.verify_journal().expect("journal verifies");
}
