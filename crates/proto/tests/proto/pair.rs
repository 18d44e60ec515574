//! A sender and a simulated receiver on an in-memory network with simulated time,
//! after quinn-proto's `tests/util.rs` `Pair`.
//!
//! The sender side plays `pons-transport`: one stream per `poll_transmit`, one `Deliver`
//! written, one response read, outcomes reported to the `Sender`, events applied to an
//! outbox. The receiver side plays transport + node: decode, "open" the envelope, ask
//! `receiver::decide`, persist into a `HashMap` inbox, answer. The network delays every
//! frame by `latency` and applies a fault from a script to each frame sent.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use pons_core::SpiffeId;
use pons_proto::receiver::{decide, refusal_for_frame};
use pons_proto::{
    Config, Decision, Event, Frame, FrameDecoder, Policy, RecordId, RejectCode, Sender, Stored,
    Verified,
};

/// What the network does to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Arrives once, after `latency`.
    None,
    /// Never arrives and nobody is told: the sender's response timeout must notice.
    Drop,
    /// Never arrives and the stream is reset: the sender gets `on_stream_failed`.
    Reset,
    /// Arrives twice.
    Duplicate,
}

/// A record's state in the sender's durable outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbox {
    /// Not yet delivered.
    Pending,
    /// Delivered, with the receipt that proved it.
    Delivered(Vec<u8>),
    /// Refused permanently.
    Rejected(RejectCode),
}

#[derive(Debug)]
enum Msg {
    ToReceiver { stream: u64, bytes: Vec<u8> },
    ToSender { stream: u64, bytes: Vec<u8> },
    Reset { stream: u64 },
}

/// The receiver node: its inbox survives restarts, nothing else matters.
#[derive(Debug, Default)]
pub struct Inbox {
    /// The durable inbox: record id → hash and original receipt.
    pub store: HashMap<RecordId, Stored>,
    /// How many times each record was accepted (written as new). Must never exceed 1.
    pub accepted: HashMap<RecordId, u32>,
    /// How many `Deliver`s were answered with an original receipt again.
    pub duplicates: u32,
    /// Receipts built (one per accept).
    pub receipts_built: u64,
    /// Records refused by policy.
    pub deny: HashSet<RecordId>,
    /// Records answered `busy` this many more times before being processed.
    pub busy: HashMap<RecordId, u32>,
    /// Every `Deliver` processed, by record.
    pub delivers: HashMap<RecordId, u32>,
}

/// The sender's node identity, as in its TLS and signing certificates.
pub fn sender_identity() -> SpiffeId {
    SpiffeId::parse("spiffe://pons.example/node/vaj").expect("valid test identity")
}

/// A test envelope: the record id, then the signer's node name. Opaque to the protocol.
pub fn envelope(id: RecordId) -> Vec<u8> {
    let mut e = id.as_bytes().to_vec();
    e.extend_from_slice(b"vaj");
    e
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The test's stand-in for `pons-core`'s open-and-verify.
fn open(envelope: &[u8]) -> Result<Verified, pons_proto::Refusal> {
    let (id, signer) = envelope
        .split_at_checked(16)
        .ok_or(pons_proto::Refusal::new(
            RejectCode::InvalidRecord,
            "envelope shorter than a record id",
        ))?;
    let id = RecordId::from_slice(id)
        .map_err(|_| pons_proto::Refusal::new(RejectCode::InvalidRecord, "bad record id"))?;
    let signer = std::str::from_utf8(signer).unwrap_or("?");
    Ok(Verified {
        record_id: id,
        signer: SpiffeId::parse(&format!("spiffe://pons.example/node/{signer}"))
            .map_err(|e| pons_proto::Refusal::new(RejectCode::UntrustedSigner, e.to_string()))?,
        envelope_sha256: sha256(envelope),
    })
}

impl Inbox {
    /// Handles one request stream's bytes as the receiving node would.
    fn handle(&mut self, bytes: &[u8]) -> Frame {
        let mut decoder = FrameDecoder::default();
        // Split the bytes to exercise the incremental decoder as a stream would.
        let half = bytes.len() / 2;
        decoder.push(&bytes[..half]);
        decoder.push(&bytes[half..]);
        let envelope = match refusal_for_frame(decoder.next_frame()) {
            Ok(envelope) => envelope,
            Err(refusal) => return refusal.frame(),
        };
        let opened = open(&envelope);
        if let Ok(v) = &opened {
            *self.delivers.entry(v.record_id).or_default() += 1;
            if let Some(n) = self.busy.get_mut(&v.record_id).filter(|n| **n > 0) {
                *n -= 1;
                return Frame::Reject {
                    code: RejectCode::Busy,
                    reason: "inbox queue full".into(),
                };
            }
        }
        let policy = match &opened {
            Ok(v) if self.deny.contains(&v.record_id) => Policy::Denied {
                reason: "vaj may not send this class to cuta".into(),
            },
            _ => Policy::Allowed,
        };
        let decision = decide(opened, &sender_identity(), policy, |id| {
            self.store.get(&id).cloned()
        });
        match decision {
            Decision::Accept {
                record_id,
                envelope_sha256,
            } => {
                // Durable first, then the receipt (DESIGN.md: a receiver sends a receipt
                // only once the record is durable in its inbox).
                self.receipts_built += 1;
                let receipt = format!("receipt {record_id} #{}", self.receipts_built).into_bytes();
                self.store.insert(
                    record_id,
                    Stored {
                        envelope_sha256,
                        receipt: receipt.clone(),
                    },
                );
                *self.accepted.entry(record_id).or_default() += 1;
                Frame::Receipt { receipt }
            }
            Decision::Duplicate { .. } => {
                self.duplicates += 1;
                decision.frame().expect("a duplicate has a response frame")
            }
            other => other.frame().expect("a reject has a response frame"),
        }
    }
}

/// A sender and a receiver on a simulated network.
pub struct Pair {
    /// Simulated time.
    pub now: Instant,
    /// One-way delay of every frame.
    pub latency: Duration,
    /// The sender state machine under test.
    pub sender: Sender,
    /// Its configuration, reused on restart.
    pub config: Config,
    /// The sender's durable outbox.
    pub outbox: BTreeMap<RecordId, Outbox>,
    /// The receiver.
    pub inbox: Inbox,
    /// Faults applied to frames in order; `Fault::None` once exhausted.
    pub faults: VecDeque<Fault>,
    /// The receiver refuses connections until then.
    pub receiver_down_until: Option<Instant>,
    /// Every `poll_transmit`: (record, time).
    pub transmits: Vec<(RecordId, Instant)>,
    /// Every failed connection attempt.
    pub connect_failures: Vec<Instant>,
    /// Every `RetryScheduled`: (record, failures, delay).
    pub retries: Vec<(RecordId, u32, Duration)>,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Receipts the sender received, per record.
    pub receipts_seen: HashMap<RecordId, Vec<Vec<u8>>>,
    /// Most streams open at once.
    pub max_open: usize,
    net: Vec<(Instant, u64, Msg)>,
    /// Open streams: stream → record.
    open: HashMap<u64, RecordId>,
    next_stream: u64,
    next_msg: u64,
}

impl Pair {
    /// A pair with `n` records in the outbox, all enqueued.
    pub fn new(config: Config, n: u128) -> Self {
        let now = Instant::now(); // the only clock read: the origin of simulated time
        let mut pair = Self {
            now,
            latency: Duration::from_millis(10),
            sender: Sender::new(config),
            config,
            outbox: BTreeMap::new(),
            inbox: Inbox::default(),
            faults: VecDeque::new(),
            receiver_down_until: None,
            transmits: Vec::new(),
            connect_failures: Vec::new(),
            retries: Vec::new(),
            events: Vec::new(),
            receipts_seen: HashMap::new(),
            max_open: 0,
            net: Vec::new(),
            open: HashMap::new(),
            next_stream: 0,
            next_msg: 0,
        };
        for i in 1..=n {
            // UUIDv7-shaped ids: version 7 in bits 48..52.
            let id = RecordId::from_u128((0x0192_0000_0000_7000_8000_0000_0000_0000) | i);
            pair.outbox.insert(id, Outbox::Pending);
            assert!(pair.sender.enqueue(id, now));
        }
        pair
    }

    /// The record ids, in order.
    pub fn ids(&self) -> Vec<RecordId> {
        self.outbox.keys().copied().collect()
    }

    fn send(&mut self, msg: Msg) {
        let fault = self.faults.pop_front().unwrap_or(Fault::None);
        let at = self.now + self.latency;
        let stream = match &msg {
            Msg::ToReceiver { stream, .. }
            | Msg::ToSender { stream, .. }
            | Msg::Reset { stream } => *stream,
        };
        match fault {
            Fault::None => self.push(at, msg),
            Fault::Drop => {}
            Fault::Reset => self.push(at, Msg::Reset { stream }),
            Fault::Duplicate => {
                let copy = match &msg {
                    Msg::ToReceiver { stream, bytes } => Msg::ToReceiver {
                        stream: *stream,
                        bytes: bytes.clone(),
                    },
                    Msg::ToSender { stream, bytes } => Msg::ToSender {
                        stream: *stream,
                        bytes: bytes.clone(),
                    },
                    Msg::Reset { stream } => Msg::Reset { stream: *stream },
                };
                self.push(at, msg);
                self.push(at + self.latency, copy);
            }
        }
    }

    fn push(&mut self, at: Instant, msg: Msg) {
        self.net.push((at, self.next_msg, msg));
        self.next_msg += 1;
    }

    /// Opens streams for every record the sender wants to send now.
    fn transmit(&mut self) {
        while let Some(id) = self.sender.poll_transmit(self.now) {
            self.transmits.push((id, self.now));
            if self.receiver_down_until.is_some_and(|t| self.now < t) {
                self.connect_failures.push(self.now);
                self.sender.on_connect_failed(self.now);
                // One connection attempt per step: a sender without peer backoff must
                // fail the step limit, not hang here.
                return;
            }
            let stream = self.next_stream;
            self.next_stream += 1;
            self.open.insert(stream, id);
            self.max_open = self.max_open.max(self.open.len());
            let bytes = Frame::Deliver {
                envelope: envelope(id),
            }
            .encode()
            .expect("small frame");
            self.send(Msg::ToReceiver { stream, bytes });
        }
    }

    fn close_stream_of(&mut self, id: RecordId) {
        self.open.retain(|_, r| *r != id);
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.sender.poll_event() {
            match &event {
                Event::Delivered { record_id, .. } => {
                    let receipt = self.receipts_seen[record_id]
                        .last()
                        .cloned()
                        .expect("delivered on a receipt");
                    let before = self.outbox.insert(*record_id, Outbox::Delivered(receipt));
                    assert_eq!(before, Some(Outbox::Pending), "{record_id} delivered twice");
                }
                Event::Rejected {
                    record_id, code, ..
                } => {
                    let before = self.outbox.insert(*record_id, Outbox::Rejected(*code));
                    assert_eq!(before, Some(Outbox::Pending), "{record_id} ended twice");
                }
                // The transport resets the stream; nothing more arrives on it.
                Event::TimedOut { record_id } => self.close_stream_of(*record_id),
                Event::RetryScheduled {
                    record_id,
                    failures,
                    at,
                    ..
                } => self.retries.push((
                    *record_id,
                    *failures,
                    at.saturating_duration_since(self.now),
                )),
                other => panic!("unexpected event {other:?}"),
            }
            self.events.push(event);
        }
    }

    /// Delivers one message that is due.
    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::ToReceiver { stream, bytes } => {
                // The receiver answers on the same stream, whatever the sender did since.
                let response = self.inbox.handle(&bytes).encode().expect("small frame");
                self.send(Msg::ToSender {
                    stream,
                    bytes: response,
                });
            }
            Msg::ToSender { stream, bytes } => {
                // A stream closed by the sender (answered, reset, timed out) gets nothing.
                let Some(id) = self.open.remove(&stream) else {
                    return;
                };
                let mut decoder = FrameDecoder::default();
                decoder.push(&bytes);
                match decoder.next_frame() {
                    Ok(Some(Frame::Receipt { receipt })) => {
                        // The transport verifies the receipt before reporting it.
                        assert_eq!(
                            Some(&receipt),
                            self.inbox.store.get(&id).map(|s| &s.receipt),
                            "{id}: a receipt must be the original one"
                        );
                        self.receipts_seen.entry(id).or_default().push(receipt);
                        self.sender.on_receipt(id, self.now);
                    }
                    Ok(Some(Frame::Reject { code, reason })) => {
                        self.sender.on_reject(id, code, reason, self.now)
                    }
                    other => panic!("unexpected response {other:?}"),
                }
            }
            Msg::Reset { stream } => {
                if let Some(id) = self.open.remove(&stream) {
                    self.sender.on_stream_failed(id, self.now);
                }
            }
        }
    }

    /// Runs until nothing more can happen, or until `until`.
    pub fn run_until(&mut self, until: Option<Instant>) {
        for _ in 0..100_000 {
            self.transmit();
            self.drain_events();
            let next_msg = self.net.iter().map(|(t, _, _)| *t).min();
            let next = match (self.sender.poll_timeout(), next_msg) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => return,
                },
            };
            if until.is_some_and(|u| next > u) {
                self.now = until.expect("checked");
                return;
            }
            self.now = self.now.max(next);
            // Deliver due messages in send order.
            self.net.sort_by_key(|(t, seq, _)| (*t, *seq));
            while self.net.first().is_some_and(|(t, _, _)| *t <= self.now) {
                let (_, _, msg) = self.net.remove(0);
                self.deliver(msg);
            }
            self.sender.handle_timeout(self.now);
            self.drain_events();
        }
        panic!("simulation did not settle in 100000 steps");
    }

    /// Runs until nothing more can happen.
    pub fn run(&mut self) {
        self.run_until(None);
    }

    /// The sender's process restarts: its connection and everything in flight towards it
    /// are gone (frames already on their way to the receiver may still arrive), and a new
    /// `Sender` is built from the outbox's pending records.
    pub fn restart_sender(&mut self, seed: u64) {
        self.open.clear();
        self.net
            .retain(|(_, _, m)| matches!(m, Msg::ToReceiver { .. }));
        self.sender = Sender::new(Config {
            seed,
            ..self.config
        });
        for (id, state) in &self.outbox {
            if *state == Outbox::Pending {
                assert!(self.sender.enqueue(*id, self.now));
            }
        }
    }

    /// The receiver's process restarts: the connection is lost with everything on it, the
    /// receiver refuses connections for `down`, its inbox persists.
    pub fn restart_receiver(&mut self, down: Duration) {
        self.open.clear();
        self.net.clear();
        self.receiver_down_until = Some(self.now + down);
        self.sender.on_connection_lost(self.now);
        self.drain_events();
    }

    /// Asserts the exactly-once outcome: every record not refused is in the inbox, was
    /// accepted once, and every receipt the sender saw for it is the original.
    pub fn assert_exactly_once(&self) {
        assert!(
            self.sender.is_empty(),
            "sender still holds {} records",
            self.sender.len()
        );
        for (id, state) in &self.outbox {
            match state {
                Outbox::Delivered(receipt) => {
                    let stored = &self.inbox.store[id];
                    assert_eq!(&stored.receipt, receipt, "{id}");
                    assert_eq!(self.inbox.accepted[id], 1, "{id} accepted more than once");
                    for seen in &self.receipts_seen[id] {
                        assert_eq!(seen, receipt, "{id}: receipt changed");
                    }
                }
                Outbox::Rejected(_) => assert!(!self.inbox.store.contains_key(id)),
                Outbox::Pending => panic!("{id} never delivered"),
            }
        }
        assert_eq!(self.inbox.receipts_built as usize, self.inbox.store.len());
    }

    /// How many streams were opened for a record.
    pub fn transmits_of(&self, id: RecordId) -> usize {
        self.transmits.iter().filter(|(r, _)| *r == id).count()
    }
}
