//! What the sender keeps in memory so that each record costs one decrypt and each receipt
//! one signature check (issue 7).
//!
//! - [`SentRecords`]: the envelope, its SHA-256 and the fields its `disclose` entry names,
//!   for each record this node sealed and has not yet closed (delivered or rejected).
//!   Filled on submit (and by the first send after a restart), read on each send and on
//!   the receipt, dropped when the record is closed or erased. Bounded: past the bound the
//!   runtime reads the store, as it does after a restart.
//! - [`VerifiedReceipts`]: receipts that verified, by the SHA-256 of their bytes, for a
//!   few seconds. A receiver answers every record of a committed batch with the same
//!   receipt bytes; only the first is verified against the trust, every record still
//!   checks signer, sender and its own item.
//!
//! Neither is a source of truth: the store is. Restriction, erasure and state are read
//! from the store on every send and every receipt; these only spare the decrypt, the
//! decode and the signature check.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pons_core::cose;
use pons_core::envelope::stored_record;
use pons_core::receipt::{Receipt, ReceiptError};
use pons_core::record::Record;
use pons_core::{NodeId, Trust};
use time::OffsetDateTime;
use uuid::Uuid;

/// Most envelope bytes [`SentRecords`] keeps at once (64 MiB).
pub const SENT_MAX_BYTES: usize = 64 << 20;

/// Most records [`SentRecords`] keeps at once.
pub const SENT_MAX_RECORDS: usize = 65_536;

/// Most receipts [`VerifiedReceipts`] keeps at once; the oldest goes first.
pub const RECEIPTS_MAX: usize = 512;

/// How long a verified receipt is taken as verified. The trust (certificate validity,
/// revocation) is checked at verification time, so this stays short.
pub const RECEIPTS_TTL: time::Duration = time::Duration::seconds(5);

/// What the `disclose` journal entry of a record names (LED art. 25(1)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Disclosure {
    /// The record's purpose.
    pub purpose: String,
    /// The record's justification.
    pub justification: String,
    /// The record's legal basis.
    pub legal_basis: String,
}

impl Disclosure {
    fn of(record: &Record) -> Self {
        Self {
            purpose: record.purpose.clone(),
            justification: record.justification.clone(),
            legal_basis: record.legal_basis.clone(),
        }
    }
}

/// A record this node sealed, as the sender needs it until the record is closed.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// The COSE_Sign1 envelope, exactly as stored and sent.
    pub envelope: Arc<[u8]>,
    /// SHA-256 of `envelope`, which the receipt must name.
    pub sha256: [u8; 32],
    /// The fields of its `disclose` entry; `None` if the stored envelope cannot be read
    /// back (the entry then names only the recipient, as before this cache existed).
    pub disclosure: Option<Disclosure>,
}

impl Outgoing {
    /// A record just sealed: nothing to decode.
    pub fn sealed(record: &Record, envelope: &[u8]) -> Self {
        Self {
            envelope: Arc::from(envelope),
            sha256: cose::envelope_sha256(envelope),
            disclosure: Some(Disclosure::of(record)),
        }
    }

    /// A record read back from the store: this node's own envelope, decoded without
    /// verifying its signature again.
    pub fn stored(envelope: Vec<u8>) -> Self {
        let disclosure = stored_record(&envelope).ok().map(|r| Disclosure::of(&r));
        Self {
            sha256: cose::envelope_sha256(&envelope),
            envelope: Arc::from(envelope),
            disclosure,
        }
    }
}

/// Records sealed here and not yet closed, by id; bounded in bytes and in entries.
#[derive(Debug)]
pub(crate) struct SentRecords {
    inner: Mutex<SentInner>,
    max_bytes: usize,
    max_records: usize,
}

#[derive(Debug, Default)]
struct SentInner {
    records: HashMap<Uuid, Arc<Outgoing>>,
    bytes: usize,
}

impl Default for SentRecords {
    fn default() -> Self {
        Self::new(SENT_MAX_BYTES, SENT_MAX_RECORDS)
    }
}

impl SentRecords {
    /// An empty set keeping at most `max_bytes` of envelopes and `max_records` records.
    pub fn new(max_bytes: usize, max_records: usize) -> Self {
        Self {
            inner: Mutex::new(SentInner::default()),
            max_bytes,
            max_records,
        }
    }

    /// Keeps `record` under `id`; returns whether it was kept. When full, nothing is
    /// evicted: the record is read from the store instead, like any record after a restart.
    pub fn keep(&self, id: Uuid, record: Arc<Outgoing>) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        let size = record.envelope.len();
        if inner.records.contains_key(&id) {
            return true;
        }
        if inner.records.len() >= self.max_records
            || inner.bytes.saturating_add(size) > self.max_bytes
        {
            return false;
        }
        inner.bytes += size;
        inner.records.insert(id, record);
        true
    }

    /// Whether an envelope of `size` bytes would be kept now.
    pub fn has_room(&self, size: usize) -> bool {
        self.inner.lock().is_ok_and(|inner| {
            inner.records.len() < self.max_records
                && inner.bytes.saturating_add(size) <= self.max_bytes
        })
    }

    /// The record kept under `id`, if any.
    pub fn get(&self, id: Uuid) -> Option<Arc<Outgoing>> {
        self.inner.lock().ok()?.records.get(&id).cloned()
    }

    /// Drops the record kept under `id`, if any: closed, or erased here.
    pub fn forget(&self, id: Uuid) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(r) = inner.records.remove(&id) {
                inner.bytes -= r.envelope.len();
            }
        }
    }

    /// How many records are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.records.len()).unwrap_or(0)
    }
}

/// A receipt that verified, and its signer (always its receiver).
#[derive(Debug)]
pub(crate) struct OpenedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// Its signer, as the trust established it.
    pub signer: NodeId,
}

/// Receipts that verified, by the SHA-256 of their bytes; kept [`RECEIPTS_TTL`] and at most
/// [`RECEIPTS_MAX`]. A receipt that does not verify is never kept.
#[derive(Debug)]
pub(crate) struct VerifiedReceipts {
    inner: Mutex<ReceiptsInner>,
    max: usize,
    ttl: time::Duration,
    /// Receipts verified against the trust (cache misses), for tests and diagnostics.
    verified: AtomicU64,
}

#[derive(Debug, Default)]
struct ReceiptsInner {
    by_hash: HashMap<[u8; 32], (OffsetDateTime, Arc<OpenedReceipt>)>,
    /// Hashes in the order they were verified: the oldest is evicted first.
    order: VecDeque<[u8; 32]>,
}

impl Default for VerifiedReceipts {
    fn default() -> Self {
        Self::new(RECEIPTS_MAX, RECEIPTS_TTL)
    }
}

impl VerifiedReceipts {
    /// An empty cache of at most `max` receipts, each kept `ttl`.
    pub fn new(max: usize, ttl: time::Duration) -> Self {
        Self {
            inner: Mutex::new(ReceiptsInner::default()),
            max,
            ttl,
            verified: AtomicU64::new(0),
        }
    }

    /// [`Receipt::open`], unless the same bytes verified less than the TTL before `now`.
    ///
    /// The caller still checks what depends on the record: signer, sender and item.
    pub fn open(
        &self,
        bytes: &[u8],
        trust: &Trust,
        now: OffsetDateTime,
    ) -> Result<Arc<OpenedReceipt>, ReceiptError> {
        let key = cose::envelope_sha256(bytes);
        if let Some(hit) = self.lookup(&key, now) {
            return Ok(hit);
        }
        self.verified.fetch_add(1, Ordering::Relaxed);
        let (receipt, signer) = Receipt::open(bytes, trust, now)?;
        let opened = Arc::new(OpenedReceipt { receipt, signer });
        self.insert(key, now, opened.clone());
        Ok(opened)
    }

    /// How many receipts were verified against the trust (not found in the cache).
    #[cfg(test)]
    pub fn verified(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }

    fn fresh(&self, at: OffsetDateTime, now: OffsetDateTime) -> bool {
        // A clock that went back makes the entry stale too: verify again.
        at <= now && now - at < self.ttl
    }

    fn lookup(&self, key: &[u8; 32], now: OffsetDateTime) -> Option<Arc<OpenedReceipt>> {
        let inner = self.inner.lock().ok()?;
        match inner.by_hash.get(key) {
            Some((at, opened)) if self.fresh(*at, now) => Some(opened.clone()),
            _ => None,
        }
    }

    fn insert(&self, key: [u8; 32], now: OffsetDateTime, opened: Arc<OpenedReceipt>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        // Drop what expired and what exceeds the bound, oldest first.
        while let Some(oldest) = inner.order.front().copied() {
            let expired = inner
                .by_hash
                .get(&oldest)
                .is_none_or(|(at, _)| !self.fresh(*at, now));
            if !expired && inner.order.len() < self.max {
                break;
            }
            inner.order.pop_front();
            inner.by_hash.remove(&oldest);
        }
        if inner.by_hash.insert(key, (now, opened)).is_some() {
            // Verified again (it had expired, or two records raced): one place in the order.
            inner.order.retain(|k| k != &key);
        }
        inner.order.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    //! The sender's two caches, alone and inside a runtime facing a receiver (the
    //! two-node setup of `crate::retention::tests`), with an injected clock.

    use std::sync::Arc;

    use pons_core::journal::Operation;
    use pons_core::receipt::{ReceiptItem, RECEIPT_VERSION};
    use pons_core::{NodeId, Signer};
    use pons_pki::devca::DevCa;
    use pons_pki::KeyAlgorithm;
    use pons_proto::Frame;
    use pons_store::OutboxState;
    use pons_transport::ResponseOutcome;
    use time::{Duration, OffsetDateTime};
    use uuid::Uuid;

    use super::*;
    use crate::control::Request;
    use crate::retention::tests::{
        hold, journal_of, ok, pair, spiffe, submit_report, test_clock, trust_of,
    };
    use crate::runtime::{Clock, Runtime};

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn signer(ca: &DevCa, name: &str, now: OffsetDateTime) -> Signer {
        let issued = ca.issue(&node(name), now).unwrap();
        issued.identity(now).unwrap().signer().unwrap()
    }

    /// A receipt from cuta to adolescence covering `items` (id, envelope), as a receiver
    /// batching its answers makes it.
    fn receipt(signer: &Signer, at: OffsetDateTime, items: &[(Uuid, &[u8])]) -> Vec<u8> {
        Receipt {
            v: RECEIPT_VERSION,
            receiver: node("cuta"),
            sender: node("adolescence"),
            received_at: at,
            items: items
                .iter()
                .zip(1..)
                .map(|(&(record_id, envelope), journal_seq)| ReceiptItem {
                    record_id,
                    envelope_sha256: cose::envelope_sha256(envelope),
                    journal_seq,
                    effect: None,
                })
                .collect(),
        }
        .seal(signer)
        .unwrap()
    }

    fn outgoing(size: usize) -> Arc<Outgoing> {
        Arc::new(Outgoing::stored(vec![0; size]))
    }

    #[test]
    fn sent_records_stay_within_their_bounds() {
        let sent = SentRecords::new(100, 3);
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        assert!(sent.keep(ids[0], outgoing(60)));
        assert!(!sent.keep(ids[1], outgoing(41)), "past the bytes bound");
        assert!(sent.get(ids[1]).is_none(), "read from the store instead");
        assert!(sent.keep(ids[1], outgoing(40)));
        assert!(!sent.has_room(1));
        // Forgetting frees its bytes.
        sent.forget(ids[0]);
        assert!(sent.get(ids[0]).is_none());
        assert!(sent.keep(ids[2], outgoing(30)));
        assert!(sent.keep(ids[3], outgoing(30)));
        assert!(!sent.keep(ids[0], outgoing(0)), "past the records bound");
        assert_eq!(sent.len(), 3);
        assert!(Outgoing::stored(vec![1, 2, 3]).disclosure.is_none());
    }

    #[test]
    fn verified_receipts_evict_the_oldest_and_expire() {
        let now = OffsetDateTime::now_utc();
        let ca = DevCa::new("pons.example", KeyAlgorithm::Ed25519, now).unwrap();
        let (signer, trust) = (signer(&ca, "cuta", now), trust_of(&ca));
        let id = Uuid::now_v7();
        let receipts: Vec<Vec<u8>> = (0..3)
            .map(|i| receipt(&signer, now + Duration::seconds(i), &[(id, b"bytes")]))
            .collect();
        let cache = VerifiedReceipts::new(2, Duration::seconds(5));
        for r in &receipts {
            cache.open(r, &trust, now).unwrap();
        }
        assert_eq!(cache.verified(), 3);
        // The two newest are kept; the oldest was evicted and is verified again.
        cache.open(&receipts[2], &trust, now).unwrap();
        cache.open(&receipts[1], &trust, now).unwrap();
        assert_eq!(cache.verified(), 3);
        cache.open(&receipts[0], &trust, now).unwrap();
        assert_eq!(cache.verified(), 4);
        // Expired, or a clock that went back: verified again.
        cache
            .open(&receipts[0], &trust, now + Duration::seconds(5))
            .unwrap();
        assert_eq!(cache.verified(), 5);
        cache
            .open(&receipts[0], &trust, now - Duration::seconds(1))
            .unwrap();
        assert_eq!(cache.verified(), 6);
        // One that does not verify is refused, every time: never kept.
        let mut tampered = receipts[1].clone();
        *tampered.last_mut().unwrap() ^= 1;
        for _ in 0..2 {
            assert!(cache.open(&tampered, &trust, now).is_err());
        }
        assert_eq!(cache.verified(), 8);
    }

    fn answer(receipt: &[u8]) -> Frame {
        Frame::Receipt {
            receipt: receipt.to_vec(),
        }
    }

    fn delivered(rt: &Runtime, id: Uuid) -> bool {
        matches!(
            rt.store.outbox_get(id).unwrap().unwrap().state,
            OutboxState::Delivered { .. }
        )
    }

    /// The purpose of the `disclose` entry of record `id`, if it has one.
    fn disclosed(rt: &Runtime, id: Uuid) -> Option<Option<String>> {
        journal_of(rt)
            .into_iter()
            .find(|e| e.operation == Operation::Disclose && e.record_id == Some(id))
            .map(|e| e.purpose)
    }

    #[tokio::test]
    async fn a_receipt_covering_many_records_is_verified_once() {
        let dir = tempfile::tempdir().unwrap();
        let start = OffsetDateTime::now_utc();
        let ca = DevCa::new("pons.example", KeyAlgorithm::Ed25519, start).unwrap();
        let (clock, now) = test_clock(start);
        let (a, c) = pair(&ca, dir.path(), &clock);
        let cuta = node("cuta");
        let (r1, r2, r3) = (
            submit_report(&a.rt).await,
            submit_report(&a.rt).await,
            submit_report(&a.rt).await,
        );
        let (e1, e2) = (a.rt.envelope(r1).unwrap(), a.rt.envelope(r2).unwrap());
        let both = receipt(c.rt.signer(), start, &[(r1, &e1), (r2, &e2)]);

        // A tampered receipt is refused each time it comes: never kept as verified.
        let mut tampered = both.clone();
        *tampered.last_mut().unwrap() ^= 1;
        for _ in 0..2 {
            let outcome = a.rt.on_response(&cuta, r1, answer(&tampered)).await;
            assert!(matches!(outcome, ResponseOutcome::Retry), "{outcome:?}");
        }
        assert!(!delivered(&a.rt, r1));
        assert_eq!(a.rt.receipts.verified(), 2);

        // The same receipt bytes for both records: one signature check.
        for id in [r1, r2] {
            let outcome = a.rt.on_response(&cuta, id, answer(&both)).await;
            assert!(matches!(outcome, ResponseOutcome::Delivered), "{outcome:?}");
            assert!(delivered(&a.rt, id));
            assert!(a.rt.sent.get(id).is_none(), "closed: no longer kept");
        }
        assert_eq!(a.rt.receipts.verified(), 3);
        let purpose = disclosed(&a.rt, r1).expect("journaled as disclose");
        assert!(purpose.is_some_and(|p| !p.is_empty()));

        // Verified or not, each record checks its own item and the signer.
        let outcome = a.rt.on_response(&cuta, r3, answer(&both)).await;
        assert!(matches!(outcome, ResponseOutcome::Retry), "{outcome:?}");
        let status = ok(&a.rt, Request::Status).await;
        let last_error = status["peers"][0]["last_error"]
            .as_str()
            .unwrap_or_default();
        assert!(last_error.contains("does not cover record"), "{status}");
        let outcome = a.rt.on_response(&node("other"), r1, answer(&both)).await;
        assert!(matches!(outcome, ResponseOutcome::Retry), "{outcome:?}");
        assert_eq!(a.rt.receipts.verified(), 3, "both refusals used the cache");
        assert!(!delivered(&a.rt, r3));

        // Past its few seconds the trust is asked again.
        *now.lock().unwrap() = start + RECEIPTS_TTL;
        let outcome = a.rt.on_response(&cuta, r3, answer(&both)).await;
        assert!(matches!(outcome, ResponseOutcome::Retry), "{outcome:?}");
        assert_eq!(a.rt.receipts.verified(), 4);
    }

    #[tokio::test]
    async fn records_are_sent_from_memory_and_from_the_store_when_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let start = OffsetDateTime::now_utc();
        let ca = DevCa::new("pons.example", KeyAlgorithm::Ed25519, start).unwrap();
        let clock: Clock = Arc::new(move || start);
        let (a, c) = pair(&ca, dir.path(), &clock);
        let cuta = node("cuta");
        let deliver = |id: Uuid| {
            let (a, c, cuta) = (&a, &c, &cuta);
            async move {
                let envelope = a.rt.envelope(id).expect("waiting to be sent");
                let frame = c.rt.deliver(&spiffe("adolescence"), envelope).await;
                a.rt.on_response(cuta, id, frame).await
            }
        };

        // Kept from submit: sent as stored, without reading the store's copy.
        let kept = submit_report(&a.rt).await;
        let stored = a.rt.store.outbox_envelope(kept).unwrap().unwrap();
        let copy = a.rt.sent.get(kept).expect("kept on submit");
        assert_eq!(&copy.envelope[..], &stored[..]);
        assert_eq!(copy.sha256, cose::envelope_sha256(&stored));
        // State, restriction and erasure are still the store's: a hold stops it.
        ok(&a.rt, hold(kept, true)).await;
        assert!(a.rt.envelope(kept).is_none(), "a held record is not sent");
        ok(&a.rt, hold(kept, false)).await;
        assert!(matches!(deliver(kept).await, ResponseOutcome::Delivered));
        assert!(a.rt.sent.get(kept).is_none());
        assert!(disclosed(&a.rt, kept).unwrap().is_some());

        // Not kept (as after a restart): read from the store, for the send and for the
        // receipt, and journaled the same.
        let restarted = submit_report(&a.rt).await;
        a.rt.forget_sent(restarted);
        let envelope = a.rt.envelope(restarted).unwrap();
        assert_eq!(
            envelope,
            a.rt.store.outbox_envelope(restarted).unwrap().unwrap()
        );
        a.rt.forget_sent(restarted);
        let frame = c.rt.deliver(&spiffe("adolescence"), envelope).await;
        let outcome = a.rt.on_response(&cuta, restarted, frame).await;
        assert!(matches!(outcome, ResponseOutcome::Delivered), "{outcome:?}");
        assert_eq!(disclosed(&a.rt, restarted), disclosed(&a.rt, kept));

        // Erased before it was sent: not sent, and its copy leaves memory with it.
        let erased = submit_report(&a.rt).await;
        assert!(a.rt.sent.get(erased).is_some());
        let review = Request::Review {
            id: erased.to_string(),
            decision: "erase".into(),
            justification: "no longer necessary".into(),
        };
        ok(&a.rt, review).await;
        let swept = ok(&a.rt, Request::RetentionSweep).await;
        assert_eq!(swept["erased"][0]["id"], erased.to_string(), "{swept}");
        assert!(a.rt.sent.get(erased).is_none());
        assert!(a.rt.envelope(erased).is_none());
    }
}
