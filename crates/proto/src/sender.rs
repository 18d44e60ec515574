//! The sending side towards one peer, as a state machine.
//!
//! The transport drives a [`Sender`] like quinn drives `quinn-proto`:
//!
//! 1. `enqueue` every record of the outbox for this peer (on start, and on each submit);
//! 2. while [`Sender::poll_transmit`] returns an id, open a bidirectional stream (connecting
//!    first if needed), write `Frame::Deliver` with that record's envelope and read one
//!    response frame;
//! 3. report what happened: [`Sender::on_receipt`] (only for a receipt the caller verified:
//!    signed by the intended recipient, over this record id and envelope hash),
//!    [`Sender::on_reject`], [`Sender::on_stream_failed`], [`Sender::on_connect_failed`],
//!    [`Sender::on_connection_lost`];
//! 4. sleep until [`Sender::poll_timeout`], then call [`Sender::handle_timeout`];
//! 5. drain [`Sender::poll_event`] and act on it: mark delivered or rejected in the outbox,
//!    reset a timed-out stream.
//!
//! The `Sender` keeps no durable state. After a restart the node builds a new one and
//! enqueues everything the outbox has not marked delivered or rejected: records whose
//! receipt was lost are sent again, and the receiver answers with the original receipt.
//! A transient failure is retried forever (with capped backoff): only a permanent reject
//! or the operator ends a record's delivery.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::reject::RejectCode;
use crate::RecordId;

/// Backoff key for the peer's connection attempts. Never a record id: a UUIDv7 has
/// version bits `0111`, never all ones.
const PEER_KEY: u128 = u128::MAX;

/// How a [`Sender`] paces its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most streams open at once to this peer (at least 1 is used).
    pub max_in_flight: usize,
    /// Delay before resending a record after its stream failed or was refused transiently.
    pub record_backoff: Backoff,
    /// Delay before connecting again after a connection attempt failed or was lost.
    pub peer_backoff: Backoff,
    /// How long to wait for the response to a `Deliver` before giving the stream up.
    pub response_timeout: Duration,
    /// Seed of the retry jitter; give each (node, peer) pair its own.
    pub seed: u64,
}

impl Default for Config {
    /// 8 streams, default [`Backoff`] for records and peer, 30 s response timeout, seed 0.
    fn default() -> Self {
        Self {
            max_in_flight: 8,
            record_backoff: Backoff::default(),
            peer_backoff: Backoff::default(),
            response_timeout: Duration::from_secs(30),
            seed: 0,
        }
    }
}

/// Something the node must learn about, from [`Sender::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer sent a receipt for the record: mark it delivered. The record is forgotten.
    Delivered {
        /// The record.
        record_id: RecordId,
        /// How many streams were opened for it.
        attempts: u32,
    },
    /// The peer refused the record permanently: mark it rejected. The record is forgotten.
    Rejected {
        /// The record.
        record_id: RecordId,
        /// The peer's code (always [`RejectCode::is_permanent`]).
        code: RejectCode,
        /// The peer's reason.
        reason: String,
        /// How many streams were opened for it.
        attempts: u32,
    },
    /// The record's stream got no response in time: the transport must reset that stream.
    /// A [`Event::RetryScheduled`] follows.
    TimedOut {
        /// The record.
        record_id: RecordId,
    },
    /// The record will be sent again, not before `at`.
    RetryScheduled {
        /// The record.
        record_id: RecordId,
        /// Consecutive failures so far.
        failures: u32,
        /// Earliest time of the next attempt.
        at: Instant,
        /// What failed.
        cause: RetryCause,
    },
}

/// Why a record is being retried.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryCause {
    /// The peer refused it with a transient code.
    Rejected {
        /// The peer's code.
        code: RejectCode,
        /// The peer's reason.
        reason: String,
    },
    /// Its stream failed (reset, or ended without a valid response).
    StreamFailed,
    /// The connection carrying its stream was lost.
    ConnectionLost,
    /// No response came within the response timeout.
    TimedOut,
}

#[derive(Debug)]
enum State {
    /// Waiting in `queue` until `ready_at`.
    Pending { ready_at: Instant },
    /// A stream is open for it; listed in `in_flight` with this deadline.
    InFlight { deadline: Instant },
}

#[derive(Debug)]
struct Entry {
    /// Enqueue order, to send the oldest first among records ready at the same time.
    seq: u64,
    /// Consecutive failures, driving the record's backoff.
    failures: u32,
    /// Streams opened.
    attempts: u32,
    state: State,
}

/// The sending side towards one peer. See the [module documentation](self).
#[derive(Debug)]
pub struct Sender {
    config: Config,
    records: HashMap<RecordId, Entry>,
    /// Pending records by (ready time, enqueue order).
    queue: BTreeSet<(Instant, u64, RecordId)>,
    /// Records with a stream open, by (response deadline, id).
    in_flight: BTreeSet<(Instant, RecordId)>,
    next_seq: u64,
    /// Consecutive connection failures, driving the peer's backoff.
    peer_failures: u32,
    /// No stream is opened (hence no connection attempted) before this time.
    peer_ready_at: Option<Instant>,
    events: VecDeque<Event>,
}

impl Sender {
    /// An idle sender.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            records: HashMap::new(),
            queue: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            next_seq: 0,
            peer_failures: 0,
            peer_ready_at: None,
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Queues a record for delivery, ready now. Returns `false` (and changes nothing) if the
    /// record is already queued or in flight.
    pub fn enqueue(&mut self, record_id: RecordId, now: Instant) -> bool {
        if self.records.contains_key(&record_id) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.records.insert(
            record_id,
            Entry {
                seq,
                failures: 0,
                attempts: 0,
                state: State::Pending { ready_at: now },
            },
        );
        self.queue.insert((now, seq, record_id));
        true
    }

    /// Removes a record waiting for its (next) attempt, e.g. withdrawn by its author.
    ///
    /// Returns `false` and changes nothing if the record is in flight (its stream may still
    /// deliver it: cancel again once its outcome is known) or unknown.
    pub fn cancel(&mut self, record_id: RecordId) -> bool {
        match self.records.get(&record_id) {
            Some(Entry {
                state: State::Pending { .. },
                ..
            }) => self.forget(record_id).is_some(),
            _ => false,
        }
    }

    /// The next record to open a stream for, if one is due and the limits allow it.
    ///
    /// The record is then in flight until one of the `on_*` calls or its response timeout.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<RecordId> {
        if self.in_flight.len() >= self.max_in_flight() || self.peer_ready_at > Some(now) {
            return None;
        }
        let &(ready_at, seq, record_id) = self.queue.first()?;
        if ready_at > now {
            return None;
        }
        self.queue.remove(&(ready_at, seq, record_id));
        let deadline = now + self.config.response_timeout;
        if let Some(entry) = self.records.get_mut(&record_id) {
            entry.state = State::InFlight { deadline };
            entry.attempts = entry.attempts.saturating_add(1);
        }
        self.in_flight.insert((deadline, record_id));
        Some(record_id)
    }

    /// The peer sent a receipt for the record, which the caller has verified.
    ///
    /// Accepted whether the record is in flight or waiting for a retry (a late receipt on a
    /// stream given up is still proof of delivery). Unknown ids are ignored: a duplicate
    /// receipt after delivery changes nothing.
    pub fn on_receipt(&mut self, record_id: RecordId, _now: Instant) {
        self.peer_responded();
        if let Some(entry) = self.forget(record_id) {
            self.events.push_back(Event::Delivered {
                record_id,
                attempts: entry.attempts,
            });
        }
    }

    /// The peer refused the record.
    ///
    /// A permanent code ends the record ([`Event::Rejected`]); a transient one schedules a
    /// retry with the record's backoff. A transient reject for a record not in flight (a
    /// late answer on a stream given up) is ignored: a retry is already scheduled.
    pub fn on_reject(
        &mut self,
        record_id: RecordId,
        code: RejectCode,
        reason: String,
        now: Instant,
    ) {
        self.peer_responded();
        if code.is_permanent() {
            if let Some(entry) = self.forget(record_id) {
                self.events.push_back(Event::Rejected {
                    record_id,
                    code,
                    reason,
                    attempts: entry.attempts,
                });
            }
        } else {
            self.retry(record_id, RetryCause::Rejected { code, reason }, now);
        }
    }

    /// The record's stream failed without a response: reset, closed early, or the response
    /// was not a valid frame or receipt. The record is retried with its backoff.
    pub fn on_stream_failed(&mut self, record_id: RecordId, now: Instant) {
        self.retry(record_id, RetryCause::StreamFailed, now);
    }

    /// Connecting to the peer failed. Records handed out by `poll_transmit` were not sent:
    /// they go back to the queue without penalty, and no stream is opened before the
    /// peer's backoff expires.
    pub fn on_connect_failed(&mut self, now: Instant) {
        let in_flight = std::mem::take(&mut self.in_flight);
        for (_, record_id) in in_flight {
            if let Some(entry) = self.records.get_mut(&record_id) {
                entry.attempts = entry.attempts.saturating_sub(1);
                entry.state = State::Pending { ready_at: now };
                self.queue.insert((now, entry.seq, record_id));
            }
        }
        self.peer_failed(now);
    }

    /// The connection to the peer was lost (closed with an error, or by the peer) while
    /// streams may have been open. Each record in flight is retried with its backoff, and
    /// no stream is opened before the peer's backoff expires. A connection closed while
    /// idle needs no call.
    pub fn on_connection_lost(&mut self, now: Instant) {
        let in_flight: Vec<RecordId> = self.in_flight.iter().map(|&(_, id)| id).collect();
        for record_id in in_flight {
            self.retry(record_id, RetryCause::ConnectionLost, now);
        }
        self.peer_failed(now);
    }

    /// Gives up the streams whose response is overdue ([`Event::TimedOut`]) and schedules
    /// their records again. Call at [`Self::poll_timeout`]; calling early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, record_id)) = self.in_flight.first() {
            if deadline > now {
                break;
            }
            self.events.push_back(Event::TimedOut { record_id });
            self.retry(record_id, RetryCause::TimedOut, now);
        }
    }

    /// When the sender next needs attention: a record becomes due (and may be sent), or a
    /// response is overdue. `None` when only a response or an `enqueue` can change anything.
    ///
    /// May be in the past: then call `poll_transmit` / `handle_timeout` right away.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let overdue = self.in_flight.first().map(|&(deadline, _)| deadline);
        let due = if self.in_flight.len() < self.max_in_flight() {
            self.queue
                .first()
                .map(|&(ready_at, _, _)| self.peer_ready_at.map_or(ready_at, |p| p.max(ready_at)))
        } else {
            None
        };
        match (overdue, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event for the node, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Records queued or in flight.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records with a stream open.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the record is queued or in flight.
    pub fn contains(&self, record_id: RecordId) -> bool {
        self.records.contains_key(&record_id)
    }

    fn max_in_flight(&self) -> usize {
        self.config.max_in_flight.max(1)
    }

    /// Removes a record from every index.
    fn forget(&mut self, record_id: RecordId) -> Option<Entry> {
        let entry = self.records.remove(&record_id)?;
        match entry.state {
            State::Pending { ready_at } => {
                self.queue.remove(&(ready_at, entry.seq, record_id));
            }
            State::InFlight { deadline } => {
                self.in_flight.remove(&(deadline, record_id));
            }
        }
        Some(entry)
    }

    /// Moves an in-flight record back to the queue after its backoff; ignores others.
    fn retry(&mut self, record_id: RecordId, cause: RetryCause, now: Instant) {
        let Some(entry) = self.records.get_mut(&record_id) else {
            return;
        };
        let State::InFlight { deadline } = entry.state else {
            return;
        };
        self.in_flight.remove(&(deadline, record_id));
        entry.failures = entry.failures.saturating_add(1);
        let delay =
            self.config
                .record_backoff
                .delay(self.config.seed, record_id.as_u128(), entry.failures);
        let at = now + delay;
        entry.state = State::Pending { ready_at: at };
        self.queue.insert((at, entry.seq, record_id));
        self.events.push_back(Event::RetryScheduled {
            record_id,
            failures: entry.failures,
            at,
            cause,
        });
    }

    /// Any response frame proves the connection works end to end (a finished handshake
    /// does not: TLS 1.3 completes on the client before the server checks its certificate).
    fn peer_responded(&mut self) {
        self.peer_failures = 0;
        self.peer_ready_at = None;
    }

    fn peer_failed(&mut self, now: Instant) {
        self.peer_failures = self.peer_failures.saturating_add(1);
        let delay = self
            .config
            .peer_backoff
            .delay(self.config.seed, PEER_KEY, self.peer_failures);
        self.peer_ready_at = Some(now + delay);
    }
}
