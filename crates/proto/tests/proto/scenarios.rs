//! A `Sender` against a simulated receiver: delivery, loss, duplication, restarts,
//! rejects, backoff and flow control.

use std::time::Duration;

use proptest::prelude::*;

use pons_proto::{Backoff, Config, Event, RejectCode, RetryCause};

use crate::pair::{Fault, Outbox, Pair};

fn config(max_in_flight: usize) -> Config {
    Config {
        max_in_flight,
        response_timeout: Duration::from_secs(5),
        seed: 42,
        ..Config::default()
    }
}

#[test]
fn all_delivered_once_without_faults() {
    let mut pair = Pair::new(config(4), 20);
    pair.run();
    pair.assert_exactly_once();
    for id in pair.ids() {
        assert_eq!(pair.transmits_of(id), 1, "{id}");
    }
    assert_eq!(pair.inbox.duplicates, 0);
    assert!(pair.retries.is_empty());
}

#[test]
fn lost_deliver_is_retried_after_the_response_timeout() {
    let mut pair = Pair::new(config(1), 1);
    pair.faults.push_back(Fault::Drop);
    let start = pair.now;
    pair.run();
    pair.assert_exactly_once();
    let id = pair.ids()[0];
    assert_eq!(pair.transmits_of(id), 2);
    assert!(pair.events.contains(&Event::TimedOut { record_id: id }));
    // The retry waited for the timeout and then the first backoff band [100, 200] ms.
    let second = pair.transmits[1].1 - start;
    assert!(
        second >= Duration::from_millis(5_100) && second <= Duration::from_millis(5_200),
        "{second:?}"
    );
    assert_eq!(
        pair.inbox.duplicates, 0,
        "the lost Deliver never reached the receiver"
    );
}

#[test]
fn lost_receipt_is_answered_with_the_original_receipt() {
    let mut pair = Pair::new(config(1), 1);
    pair.faults.extend([Fault::None, Fault::Drop]); // Deliver arrives, Receipt is lost
    pair.run();
    pair.assert_exactly_once();
    let id = pair.ids()[0];
    assert_eq!(pair.transmits_of(id), 2);
    assert_eq!(pair.inbox.delivers[&id], 2);
    assert_eq!(pair.inbox.duplicates, 1);
    assert_eq!(
        pair.inbox.receipts_built, 1,
        "the receipt is sent again, not rebuilt"
    );
}

#[test]
fn reset_stream_is_retried_without_waiting_for_the_timeout() {
    let mut pair = Pair::new(config(1), 1);
    pair.faults.extend([Fault::None, Fault::Reset]);
    let start = pair.now;
    pair.run();
    pair.assert_exactly_once();
    let id = pair.ids()[0];
    assert!(matches!(
        pair.events[0],
        Event::RetryScheduled {
            cause: RetryCause::StreamFailed,
            failures: 1,
            ..
        }
    ));
    assert!(pair.transmits[1].1 - start < Duration::from_secs(1));
    assert_eq!(pair.transmits_of(id), 2);
}

#[test]
fn duplicated_frames_are_stored_once() {
    let mut pair = Pair::new(config(3), 10);
    pair.faults
        .extend(std::iter::repeat_n(Fault::Duplicate, 40));
    pair.run();
    pair.assert_exactly_once();
    // Every Deliver arrived twice; the second copy was answered as a duplicate.
    assert_eq!(pair.inbox.duplicates, 10);
    for id in pair.ids() {
        assert_eq!(
            pair.transmits_of(id),
            1,
            "{id}: a duplicate response changes nothing"
        );
    }
}

#[test]
fn sender_restart_resends_only_undelivered_records() {
    let mut pair = Pair::new(config(4), 8);
    // 4 records in flight, their Delivers reach the receiver at +10 ms, receipts would
    // reach the sender at +20 ms: restart in between.
    let start = pair.now;
    pair.run_until(Some(start + Duration::from_millis(15)));
    assert_eq!(pair.inbox.store.len(), 4);
    assert!(pair.outbox.values().all(|s| *s == Outbox::Pending));
    pair.restart_sender(7);
    pair.run();
    pair.assert_exactly_once();
    assert_eq!(
        pair.inbox.duplicates, 4,
        "the four stored records got their receipt again"
    );
    assert_eq!(pair.inbox.receipts_built, 8);

    // A second restart after everything was delivered sends nothing.
    let transmits = pair.transmits.len();
    pair.restart_sender(8);
    pair.run();
    assert_eq!(pair.transmits.len(), transmits);
}

#[test]
fn receiver_restart_loses_nothing_and_backs_off_the_peer() {
    let mut pair = Pair::new(config(2), 6);
    let start = pair.now;
    pair.run_until(Some(start + Duration::from_millis(35)));
    let stored_before = pair.inbox.store.len();
    assert!(stored_before > 0 && stored_before < 6, "{stored_before}");
    pair.restart_receiver(Duration::from_secs(3));
    pair.run();
    pair.assert_exactly_once();
    // Connection attempts during the 3 s down time follow the peer backoff: the n-th
    // failure waits at least 100 × 2^(n-1) ms, so at most 5 attempts fit.
    let n = pair.connect_failures.len();
    assert!(
        (2..=5).contains(&n),
        "{n} connection attempts: {:?}",
        pair.connect_failures
    );
    let gaps: Vec<Duration> = pair
        .connect_failures
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    let b = Backoff::default();
    for (i, gap) in gaps.iter().enumerate() {
        let c = b.ceiling(i as u32 + 2); // failure 1 is the lost connection
        assert!(
            *gap >= c / 2 && *gap <= c,
            "gap {i}: {gap:?} outside [c/2, c] of {c:?}"
        );
    }
}

#[test]
fn permanent_reject_stops_retrying() {
    let mut pair = Pair::new(config(2), 3);
    let denied = pair.ids()[1];
    pair.inbox.deny.insert(denied);
    pair.run();
    pair.assert_exactly_once();
    assert_eq!(
        pair.outbox[&denied],
        Outbox::Rejected(RejectCode::PolicyDenied)
    );
    assert_eq!(pair.transmits_of(denied), 1);
    assert!(pair.events.iter().any(|e| matches!(
        e,
        Event::Rejected { record_id, code: RejectCode::PolicyDenied, attempts: 1, reason }
            if *record_id == denied && reason == "vaj may not send this class to cuta"
    )));
    assert_eq!(pair.inbox.store.len(), 2);
}

#[test]
fn transient_reject_retries_with_growing_capped_backoff() {
    let mut pair = Pair::new(config(1), 1);
    let id = pair.ids()[0];
    pair.inbox.busy.insert(id, 14);
    pair.run();
    pair.assert_exactly_once();
    assert_eq!(pair.transmits_of(id), 15);
    let b = Backoff::default();
    assert_eq!(pair.retries.len(), 14);
    for (i, (record, failures, delay)) in pair.retries.iter().enumerate() {
        assert_eq!((*record, *failures), (id, i as u32 + 1));
        let c = b.ceiling(*failures);
        assert!(
            *delay >= c / 2 && *delay <= c,
            "retry {failures}: {delay:?} vs {c:?}"
        );
        assert!(*delay <= b.max);
    }
    // The ceiling grew to the cap and stayed there.
    let delays: Vec<Duration> = pair.retries.iter().map(|r| r.2).collect();
    assert!(delays[0] <= Duration::from_millis(200));
    assert!(delays[10..].iter().all(|d| *d >= b.max / 2));
}

#[test]
fn max_in_flight_is_respected_and_used() {
    let mut pair = Pair::new(config(3), 50);
    pair.run();
    pair.assert_exactly_once();
    assert_eq!(pair.max_open, 3);
    // 50 records, 3 at a time, 20 ms a round trip: 17 rounds.
    let last = pair.transmits.last().expect("transmitted").1 - pair.transmits[0].1;
    assert_eq!(last, Duration::from_millis(16 * 20));
}

/// One fault per frame, most frames unharmed.
fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => Just(Fault::None),
        2 => Just(Fault::Drop),
        1 => Just(Fault::Reset),
        2 => Just(Fault::Duplicate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn exactly_once_under_any_loss_and_duplication(
        n in 1u128..16,
        max_in_flight in 1usize..5,
        faults in prop::collection::vec(fault(), 0..120),
        seed in any::<u64>(),
        restart_sender_at_ms in prop::option::of(0u64..400),
        restart_receiver_at_ms in prop::option::of(0u64..400),
        busy in prop::collection::vec(0u32..3, 0..16),
    ) {
        let mut pair = Pair::new(Config { seed, ..config(max_in_flight) }, n);
        pair.faults.extend(faults);
        for (id, k) in pair.ids().into_iter().zip(busy) {
            pair.inbox.busy.insert(id, k);
        }
        let start = pair.now;
        let mut stops: Vec<(u64, bool)> = restart_sender_at_ms.map(|t| (t, true)).into_iter()
            .chain(restart_receiver_at_ms.map(|t| (t, false))).collect();
        stops.sort_unstable();
        for (at, is_sender) in stops {
            pair.run_until(Some(start + Duration::from_millis(at)));
            if is_sender {
                pair.restart_sender(seed ^ 1);
            } else {
                pair.restart_receiver(Duration::from_millis(500));
            }
        }
        pair.run();
        pair.assert_exactly_once();
        prop_assert!(pair.outbox.values().all(|s| matches!(s, Outbox::Delivered(_))));
        prop_assert!(pair.max_open <= max_in_flight);
    }
}
