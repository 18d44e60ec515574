//! The `Sender` alone, driven by hand.

use std::time::{Duration, Instant};

use pons_proto::{Config, Event, RecordId, RejectCode, RetryCause, Sender};

fn id(n: u128) -> RecordId {
    RecordId::from_u128(n)
}

fn sender(max_in_flight: usize) -> (Sender, Instant) {
    let config = Config {
        max_in_flight,
        response_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    (Sender::new(config), Instant::now())
}

#[test]
fn idle_sender_needs_no_attention() {
    let (mut s, now) = sender(2);
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.poll_transmit(now), None);
    assert_eq!(s.poll_event(), None);
    assert!(s.is_empty());
}

#[test]
fn enqueue_is_idempotent_and_oldest_goes_first() {
    let (mut s, now) = sender(8);
    assert!(s.enqueue(id(3), now));
    assert!(s.enqueue(id(1), now));
    assert!(!s.enqueue(id(3), now));
    assert_eq!(s.len(), 2);
    assert_eq!(s.poll_timeout(), Some(now));
    assert_eq!(s.poll_transmit(now), Some(id(3)));
    assert!(!s.enqueue(id(3), now), "in flight is known too");
    assert_eq!(s.poll_transmit(now), Some(id(1)));
    assert_eq!(s.poll_transmit(now), None);
    // Only the response deadline is left to wait for.
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(5)));
}

#[test]
fn duplicate_and_unknown_receipts_are_ignored() {
    let (mut s, now) = sender(1);
    s.enqueue(id(1), now);
    assert_eq!(s.poll_transmit(now), Some(id(1)));
    s.on_receipt(id(1), now);
    s.on_receipt(id(1), now);
    s.on_receipt(id(9), now);
    assert_eq!(
        s.poll_event(),
        Some(Event::Delivered {
            record_id: id(1),
            attempts: 1
        })
    );
    assert_eq!(s.poll_event(), None);
    assert!(s.is_empty());
}

#[test]
fn late_receipt_after_timeout_still_delivers() {
    let (mut s, now) = sender(1);
    s.enqueue(id(1), now);
    s.poll_transmit(now);
    let later = now + Duration::from_secs(5);
    s.handle_timeout(later - Duration::from_millis(1));
    assert_eq!(s.poll_event(), None, "not yet overdue");
    s.handle_timeout(later);
    assert_eq!(s.poll_event(), Some(Event::TimedOut { record_id: id(1) }));
    assert!(matches!(
        s.poll_event(),
        Some(Event::RetryScheduled {
            cause: RetryCause::TimedOut,
            failures: 1,
            ..
        })
    ));
    assert_eq!(s.in_flight(), 0);
    s.on_receipt(id(1), later);
    assert!(matches!(
        s.poll_event(),
        Some(Event::Delivered { attempts: 1, .. })
    ));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn stale_transient_reject_does_not_touch_a_waiting_record() {
    let (mut s, now) = sender(1);
    s.enqueue(id(1), now);
    s.poll_transmit(now);
    s.on_stream_failed(id(1), now);
    let Some(Event::RetryScheduled { at, .. }) = s.poll_event() else {
        panic!("expected a retry")
    };
    s.on_reject(id(1), RejectCode::Busy, "late".into(), now);
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.poll_timeout(), Some(at), "the schedule is unchanged");
    // Not before its time.
    assert_eq!(s.poll_transmit(at - Duration::from_millis(1)), None);
    assert_eq!(s.poll_transmit(at), Some(id(1)));
}

#[test]
fn connect_failure_does_not_penalise_records_but_delays_the_peer() {
    let (mut s, now) = sender(4);
    s.enqueue(id(1), now);
    s.enqueue(id(2), now);
    assert_eq!(s.poll_transmit(now), Some(id(1)));
    s.on_connect_failed(now);
    assert_eq!(
        s.poll_event(),
        None,
        "records were not sent: no retry event"
    );
    assert_eq!(s.in_flight(), 0);
    assert_eq!(s.poll_transmit(now), None, "peer backoff");
    let at = s.poll_timeout().expect("records waiting");
    let wait = at - now;
    assert!(
        wait >= Duration::from_millis(100) && wait <= Duration::from_millis(200),
        "{wait:?}"
    );
    assert_eq!(s.poll_transmit(at), Some(id(1)), "order kept");
    // A response resets the peer backoff.
    s.on_receipt(id(1), at);
    assert_eq!(s.poll_transmit(at), Some(id(2)));
    assert!(matches!(
        s.poll_event(),
        Some(Event::Delivered { attempts: 1, .. })
    ));
}

#[test]
fn connection_loss_retries_everything_in_flight() {
    let (mut s, now) = sender(3);
    for n in 1..=4 {
        s.enqueue(id(n), now);
    }
    let sent: Vec<_> = std::iter::from_fn(|| s.poll_transmit(now)).collect();
    assert_eq!(sent, [id(1), id(2), id(3)]);
    s.on_connection_lost(now);
    let causes: Vec<_> = std::iter::from_fn(|| s.poll_event())
        .map(|e| match e {
            Event::RetryScheduled {
                record_id,
                cause,
                failures: 1,
                ..
            } => (record_id, cause),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        causes,
        [1, 2, 3].map(|n| (id(n), RetryCause::ConnectionLost))
    );
    // id(4) is ready, but the peer is backing off.
    assert_eq!(s.poll_transmit(now), None);
    assert!(s.poll_timeout().expect("work left") > now);
}

#[test]
fn permanent_reject_of_a_waiting_record_ends_it() {
    let (mut s, now) = sender(1);
    s.enqueue(id(1), now);
    s.poll_transmit(now);
    s.on_stream_failed(id(1), now);
    s.poll_event();
    s.on_reject(id(1), RejectCode::Conflict, "other bytes".into(), now);
    assert_eq!(
        s.poll_event(),
        Some(Event::Rejected {
            record_id: id(1),
            code: RejectCode::Conflict,
            reason: "other bytes".into(),
            attempts: 1
        })
    );
    assert!(s.is_empty());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn same_seed_same_schedule_other_seed_other_schedule() {
    let schedule = |seed: u64| {
        let mut s = Sender::new(Config {
            seed,
            max_in_flight: 16,
            ..Config::default()
        });
        let now = Instant::now();
        for n in 1..=16 {
            s.enqueue(id(n), now);
        }
        while s.poll_transmit(now).is_some() {}
        for n in 1..=16 {
            s.on_stream_failed(id(n), now);
        }
        std::iter::from_fn(|| s.poll_event())
            .map(|e| match e {
                Event::RetryScheduled { at, .. } => at - now,
                other => panic!("unexpected {other:?}"),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(schedule(1), schedule(1));
    assert_ne!(schedule(1), schedule(2));
}

#[test]
fn only_waiting_records_can_be_cancelled() {
    let (mut s, now) = sender(1);
    s.enqueue(id(1), now);
    s.enqueue(id(2), now);
    assert_eq!(s.poll_transmit(now), Some(id(1)));
    assert!(
        !s.cancel(id(1)),
        "in flight: its stream may still deliver it"
    );
    assert!(s.cancel(id(2)));
    assert!(!s.cancel(id(2)));
    assert!(!s.cancel(id(3)));
    assert_eq!(s.len(), 1);
    s.on_receipt(id(1), now);
    assert_eq!(
        s.poll_transmit(now),
        None,
        "the cancelled record is not sent"
    );
    assert_eq!(s.poll_timeout(), None);
}
