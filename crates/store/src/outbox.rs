//! The outbox: records this node sends, from submission to receipt or rejection.
//!
//! Journal rule: a submission is journaled as `collect` (the record now exists on this node);
//! `disclose` is journaled only when a valid receipt proves the recipient holds the record
//! (`mark_delivered`), and a refusal by the recipient as `reject`. A delivery attempt
//! (`record_attempt`) changes no personal data and discloses nothing provable, so it is not
//! journaled.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pons_core::journal::{JournalDraft, Operation};
use pons_core::NodeId;
use serde::{Deserialize, Serialize};
use sled::IVec;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cipher::{BodyTree, SealedBody};
use crate::codec::{self, bytes};
use crate::retention::{Place, RetentionEntry};
use crate::{abort, prepare_draft, JournalSeq, Store, StoreError, Tx, TxResult};
use pons_core::retention::Deadlines;

/// What the caller knows about a record when it submits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOutboxRecord {
    /// The record id (UUIDv7, from the envelope).
    pub id: Uuid,
    /// The recipient node.
    pub to: NodeId,
    /// The record class.
    pub class: String,
    /// When the record was created (from the envelope).
    pub created: OffsetDateTime,
    /// Keyed pseudonym of the data subject, if the class has one.
    pub subject_ref: Option<String>,
}

/// A new outbox record ready to be stored: checked, its body encrypted, its `collect`
/// journal entry drafted. Made by [`Store::prepare_submission`].
pub struct Submission {
    record: NewOutboxRecord,
    deadlines: Option<Deadlines>,
    body: SealedBody,
    draft: JournalDraft,
}

impl fmt::Debug for Submission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submission")
            .field("record", &self.record)
            .field("deadlines", &self.deadlines)
            .finish_non_exhaustive()
    }
}

impl Submission {
    /// The record's id.
    pub fn id(&self) -> Uuid {
        self.record.id
    }
}

impl Tx<'_> {
    /// Store `sub` as a pending outbox record with its `collect` entry and, if it has
    /// deadlines, its retention entry; part of the caller's transaction.
    pub(crate) fn submit(&self, sub: &Submission) -> TxResult<JournalSeq> {
        let record = &sub.record;
        let id = record.id;
        let key = id.as_bytes();
        if self.outbox.get(key)?.is_some() {
            return abort(StoreError::OutboxDuplicate { id });
        }
        let entry = self.append(&sub.draft)?;
        let stored = OutboxRecord {
            id,
            to: record.to.clone(),
            class: record.class.clone(),
            created: record.created,
            subject_ref: record.subject_ref.clone(),
            state: OutboxState::Pending,
            attempts: 0,
            journal_seq: entry.seq,
        };
        let value = codec::encode("outbox record", &stored).or_else(abort)?;
        self.outbox.insert(key, value)?;
        self.put_body(BodyTree::Outbox, id, &sub.body)?;
        self.outbox_pending
            .insert(key, record.to.as_str().as_bytes())?;
        if let Some(deadlines) = sub.deadlines {
            self.retention_put(&RetentionEntry {
                id,
                place: Place::Outbox,
                class: record.class.clone(),
                subject_ref: record.subject_ref.clone(),
                counterpart: record.to.clone(),
                deadlines,
                holds: Vec::new(),
                erasure_ordered: None,
            })?;
        }
        Ok(entry.seq)
    }
}

/// Where an outbox record is in its delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OutboxState {
    /// Stored, not yet tried.
    Pending,
    /// At least one delivery attempt was started.
    InFlight,
    /// The recipient answered with a valid receipt.
    Delivered {
        /// The receipt (COSE_Sign1) as received.
        #[serde(with = "bytes")]
        receipt: Vec<u8>,
        /// When the receipt was accepted.
        at: OffsetDateTime,
    },
    /// The recipient refused the record.
    Rejected {
        /// The recipient's reject code.
        code: String,
        /// The recipient's reason.
        reason: String,
        /// When the rejection was received.
        at: OffsetDateTime,
    },
}

impl OutboxState {
    /// The state without its data.
    pub fn kind(&self) -> StateKind {
        match self {
            OutboxState::Pending => StateKind::Pending,
            OutboxState::InFlight => StateKind::InFlight,
            OutboxState::Delivered { .. } => StateKind::Delivered,
            OutboxState::Rejected { .. } => StateKind::Rejected,
        }
    }

    /// Whether the record still waits for delivery.
    pub fn is_open(&self) -> bool {
        matches!(self, OutboxState::Pending | OutboxState::InFlight)
    }
}

/// The name of an [`OutboxState`], for filters and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateKind {
    /// See [`OutboxState::Pending`].
    Pending,
    /// See [`OutboxState::InFlight`].
    InFlight,
    /// See [`OutboxState::Delivered`].
    Delivered,
    /// See [`OutboxState::Rejected`].
    Rejected,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateKind::Pending => "pending",
            StateKind::InFlight => "in-flight",
            StateKind::Delivered => "delivered",
            StateKind::Rejected => "rejected",
        })
    }
}

/// An outbox record's metadata and state. The envelope is read with [`Store::outbox_envelope`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// The record id.
    pub id: Uuid,
    /// The recipient node.
    pub to: NodeId,
    /// The record class.
    pub class: String,
    /// When the record was created.
    pub created: OffsetDateTime,
    /// Keyed pseudonym of the data subject, if any.
    pub subject_ref: Option<String>,
    /// Delivery state.
    pub state: OutboxState,
    /// Number of delivery attempts started.
    pub attempts: u32,
    /// Journal sequence number of the `collect` entry.
    pub journal_seq: JournalSeq,
}

/// Which outbox records [`Store::outbox_list`] returns. The default returns all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxFilter {
    /// Only records in this state.
    pub state: Option<StateKind>,
    /// Only records for this recipient.
    pub to: Option<NodeId>,
    /// At most this many records.
    pub limit: Option<usize>,
}

impl OutboxFilter {
    fn matches(&self, r: &OutboxRecord) -> bool {
        self.state.is_none_or(|s| r.state.kind() == s)
            && self.to.as_ref().is_none_or(|t| &r.to == t)
    }
}

impl Store {
    /// Store a new record as [`OutboxState::Pending`] with its `collect` journal entry, in one
    /// transaction, and return the entry's sequence number once it is durable.
    ///
    /// The caller may hand out the record id only after this returns `Ok`.
    ///
    /// The record gets no retention entry: nodes use [`Store::submit_retained`].
    pub async fn submit(
        &self,
        record: NewOutboxRecord,
        envelope: &[u8],
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        self.submit_inner(record, None, envelope, draft).await
    }

    /// [`Store::submit`], and index the record's review and erasure dates (from the record)
    /// in the same transaction, so that retention finds it.
    pub async fn submit_retained(
        &self,
        record: NewOutboxRecord,
        deadlines: Deadlines,
        envelope: &[u8],
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        self.submit_inner(record, Some(deadlines), envelope, draft)
            .await
    }

    async fn submit_inner(
        &self,
        record: NewOutboxRecord,
        deadlines: Option<Deadlines>,
        envelope: &[u8],
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        let sub = self.prepare_submission(record, deadlines, envelope, draft)?;
        // Batched: one transaction and one flush with the writes queued beside it.
        self.write_batched(move |tx| tx.submit(&sub)).await
    }

    /// Checks a new outbox record and encrypts its body, outside any transaction, so that
    /// it can be stored inside another operation's transaction (an erasure and its notice,
    /// a rectification and the record it supersedes).
    pub fn prepare_submission(
        &self,
        record: NewOutboxRecord,
        deadlines: Option<Deadlines>,
        envelope: &[u8],
        draft: JournalDraft,
    ) -> Result<Submission, StoreError> {
        let draft = prepare_draft(
            draft,
            Operation::Collect,
            record.id,
            &record.class,
            record.subject_ref.as_deref(),
            &record.to,
        )?;
        let body = self.seal_body(BodyTree::Outbox, record.id, envelope)?;
        Ok(Submission {
            record,
            deadlines,
            body,
            draft,
        })
    }

    /// Mark a pending or in-flight record delivered on a valid receipt, with its `disclose`
    /// journal entry, in one transaction; returns once committed, **not** waiting for the
    /// flush: the mark acknowledges nothing to anyone, and a crash before the next flush
    /// leaves the record open, so it is sent again and its recipient answers the receipt it
    /// stored (the journal then gets the `disclose` entry once).
    ///
    /// A receipt may cover many records (a receiver batches them): it is stored once, and
    /// [`Store::outbox_get`] reads it back whole for each.
    pub async fn mark_delivered(
        &self,
        id: Uuid,
        receipt: &[u8],
        at: OffsetDateTime,
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        let state = OutboxState::Delivered {
            receipt: receipt.to_vec(),
            at,
        };
        self.close(id, state, Operation::Disclose, draft, None)
            .await
    }

    /// [`Store::mark_delivered`] of a record erased while it was in flight, with the
    /// erasure notice that tells the recipient, in one transaction: the recipient's receipt
    /// proves it holds a record this node no longer keeps.
    pub async fn mark_delivered_notifying(
        &self,
        id: Uuid,
        receipt: &[u8],
        at: OffsetDateTime,
        draft: JournalDraft,
        notice: Submission,
    ) -> Result<JournalSeq, StoreError> {
        let state = OutboxState::Delivered {
            receipt: receipt.to_vec(),
            at,
        };
        self.close(id, state, Operation::Disclose, draft, Some(notice))
            .await
    }

    /// Mark a pending or in-flight record rejected by its recipient, with its `reject`
    /// journal entry, in one transaction; returns once durable.
    pub async fn mark_rejected(
        &self,
        id: Uuid,
        code: &str,
        reason: &str,
        at: OffsetDateTime,
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        let state = OutboxState::Rejected {
            code: code.to_owned(),
            reason: reason.to_owned(),
            at,
        };
        self.close(id, state, Operation::Reject, draft, None).await
    }

    async fn close(
        &self,
        id: Uuid,
        state: OutboxState,
        operation: Operation,
        draft: JournalDraft,
        notice: Option<Submission>,
    ) -> Result<JournalSeq, StoreError> {
        if draft.operation != operation {
            return Err(StoreError::WrongOperation {
                expected: operation,
                found: draft.operation,
            });
        }
        // A receipt covers up to `RECEIPT_BATCH` records: it is stored once, under its
        // SHA-256, and each record's state names it.
        let (state, sent) = match state {
            OutboxState::Delivered { receipt, at } => {
                let reference = sent_receipt_key(&receipt);
                let state = OutboxState::Delivered {
                    receipt: reference.clone(),
                    at,
                };
                (state, Some((reference, receipt)))
            }
            other => (other, None),
        };
        // A plain delivery acknowledges nothing to anyone: committed with the writes queued
        // beside it, made durable by their flush or the next one (see
        // `Store::write_batched_unflushed`). A crash before that leaves the record open, so
        // it is sent again and the recipient answers its stored receipt. A delivery with an
        // erasure notice is flushed before the notice is queued for sending.
        let unflushed = sent.is_some() && notice.is_none();
        let attempts = self.attempts.peek(id);
        let write = move |tx: &Tx<'_>| {
            let key = id.as_bytes();
            let Some(v) = tx.outbox.get(key)? else {
                return abort(StoreError::OutboxNotFound { id });
            };
            let mut rec: OutboxRecord = codec::decode("outbox record", key, &v).or_else(abort)?;
            if !rec.state.is_open() {
                return abort(StoreError::InvalidTransition {
                    id,
                    from: rec.state.kind(),
                    to: state.kind(),
                });
            }
            let draft = prepare_draft(
                draft.clone(),
                operation,
                id,
                &rec.class,
                rec.subject_ref.as_deref(),
                &rec.to,
            )
            .or_else(abort)?;
            // Erased while in flight (the check before this write raced the erasure):
            // the recipient holds a record this node no longer keeps, so the delivery
            // goes with the erasure notice that tells it.
            if sent.is_some() && notice.is_none() && tx.outbox_body.get(key)?.is_none() {
                return abort(StoreError::ErasedInFlight { id });
            }
            rec.state = state.clone();
            rec.attempts = rec.attempts.saturating_add(attempts);
            if let Some((reference, receipt)) = &sent {
                if tx.receipts.get(reference)?.is_none() {
                    tx.receipts
                        .insert(reference.as_slice(), receipt.as_slice())?;
                }
            }
            let value = codec::encode("outbox record", &rec).or_else(abort)?;
            tx.outbox.insert(key, value)?;
            tx.outbox_pending.remove(key)?;
            let seq = tx.append(&draft)?.seq;
            if let Some(notice) = &notice {
                tx.submit(notice)?;
            }
            Ok(seq)
        };
        let seq = if unflushed {
            self.write_batched_unflushed(write).await
        } else {
            self.write_batched(write).await
        }?;
        self.attempts.forget(id);
        Ok(seq)
    }

    /// Count a delivery attempt of a record still waiting; the number of attempts so far
    /// (those stored and those of this run). The record then shows as
    /// [`OutboxState::InFlight`]. Not journaled and not written: the count is kept in memory
    /// and stored with the record when it is delivered or rejected, so an attempt lost in a
    /// crash is harmless (the record stays open and is retried), and an attempt costs a read,
    /// not a write.
    pub fn record_attempt(&self, id: Uuid) -> Result<u32, StoreError> {
        let key = id.as_bytes();
        let Some(v) = self.trees.outbox.get(key)? else {
            self.attempts.forget(id);
            return Err(StoreError::OutboxNotFound { id });
        };
        let rec: OutboxRecord = codec::decode("outbox record", key, &v)?;
        if !rec.state.is_open() {
            self.attempts.forget(id);
            return Err(StoreError::InvalidTransition {
                id,
                from: rec.state.kind(),
                to: StateKind::InFlight,
            });
        }
        Ok(rec.attempts.saturating_add(self.attempts.count(id)))
    }

    /// Every record not yet delivered or rejected, with its recipient, in id (creation) order:
    /// what a restarted node must still deliver.
    pub fn pending(&self) -> Result<Vec<(Uuid, NodeId)>, StoreError> {
        let mut out = Vec::new();
        for item in self.trees.outbox_pending.iter() {
            let (k, v) = item?;
            out.push((pending_id(&k)?, pending_peer(&v)?));
        }
        Ok(out)
    }

    /// The delivery queue of each recipient that has one: how many records wait for it and
    /// the oldest one's id. The counts are kept in memory as commits apply, so this reads
    /// the queue index only up to each recipient's first entry, not every record waiting:
    /// `status` calls it, and a peer that was away for a day can have a million waiting.
    pub fn pending_queues(&self) -> Result<BTreeMap<NodeId, PendingQueue>, StoreError> {
        let counts = self
            .trees
            .pending_by_peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut queues = BTreeMap::new();
        let mut oldest: BTreeMap<IVec, Uuid> = BTreeMap::new();
        if !counts.is_empty() {
            for item in self.trees.outbox_pending.iter() {
                let (k, v) = item?;
                if counts.contains_key(&v) && !oldest.contains_key(&v) {
                    oldest.insert(v, pending_id(&k)?);
                    if oldest.len() == counts.len() {
                        break;
                    }
                }
            }
        }
        for (peer, len) in counts {
            let node = pending_peer(&peer)?;
            let oldest = oldest.get(&peer).copied();
            queues.insert(node, PendingQueue { len, oldest });
        }
        Ok(queues)
    }

    /// One outbox record's metadata and state.
    pub fn outbox_get(&self, id: Uuid) -> Result<Option<OutboxRecord>, StoreError> {
        let key = id.as_bytes();
        match self.trees.outbox.get(key)? {
            None => Ok(None),
            Some(v) => {
                let rec = self.with_attempts(codec::decode("outbox record", key, &v)?);
                Ok(Some(self.with_receipt(rec)?))
            }
        }
    }

    /// `rec` with the attempts of this run counted (see [`Store::record_attempt`]).
    fn with_attempts(&self, mut rec: OutboxRecord) -> OutboxRecord {
        let more = self.attempts.peek(rec.id);
        if more > 0 && rec.state.is_open() {
            rec.attempts = rec.attempts.saturating_add(more);
            rec.state = OutboxState::InFlight;
        }
        rec
    }

    /// `rec` with the receipt its stored state names (see [`Store::mark_delivered`]).
    fn with_receipt(&self, mut rec: OutboxRecord) -> Result<OutboxRecord, StoreError> {
        if let OutboxState::Delivered { receipt, .. } = &mut rec.state {
            if is_sent_receipt_key(receipt) {
                let stored =
                    self.trees
                        .receipts
                        .get(&receipt[..])?
                        .ok_or_else(|| StoreError::Corrupt {
                            what: "outbox receipt",
                            key: codec::hex(rec.id.as_bytes()),
                            reason: format!(
                                "names receipt {} that is not stored",
                                codec::hex(receipt)
                            ),
                        })?;
                *receipt = stored.to_vec();
            }
        }
        Ok(rec)
    }

    /// One outbox record's envelope bytes, as submitted.
    pub fn outbox_envelope(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_body(BodyTree::Outbox, id)
    }

    /// Whether outbox record `id` still has its body (not erased), without reading it.
    pub fn outbox_has_body(&self, id: Uuid) -> Result<bool, StoreError> {
        Ok(self.trees.outbox_body.contains_key(id.as_bytes())?)
    }

    /// Outbox records matching `filter`, in id (creation) order.
    pub fn outbox_list(&self, filter: &OutboxFilter) -> Result<Vec<OutboxRecord>, StoreError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for item in self.trees.outbox.iter() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let rec = self.with_attempts(codec::decode("outbox record", &k, &v)?);
            if filter.matches(&rec) {
                out.push(self.with_receipt(rec)?);
            }
        }
        Ok(out)
    }
}

/// The prefix of a receipt's key in the `receipts` tree when this node stored it as the
/// sender (the receiver's keys are record ids, see `inbox.rs`).
const SENT_RECEIPT: &[u8] = b"sent";

/// The key under which a receipt this node was sent is stored: [`SENT_RECEIPT`] and the
/// receipt's SHA-256, so the records one receipt covers share it.
fn sent_receipt_key(receipt: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, receipt);
    [SENT_RECEIPT, digest.as_ref()].concat()
}

/// Whether a stored `Delivered` state's receipt is a [`sent_receipt_key`] (a receipt itself
/// is a tagged COSE_Sign1: it starts with another byte).
fn is_sent_receipt_key(receipt: &[u8]) -> bool {
    receipt.len() == SENT_RECEIPT.len() + 32 && receipt.starts_with(SENT_RECEIPT)
}

/// Delivery attempts started in this run, by outbox record id, of records still waiting
/// (see [`Store::record_attempt`]); an entry goes when its record is delivered, rejected or
/// erased.
#[derive(Default)]
pub(crate) struct Attempts(Mutex<HashMap<Uuid, u32>>);

impl Attempts {
    fn map(&self) -> MutexGuard<'_, HashMap<Uuid, u32>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Count one more attempt of `id`; the attempts of this run, this one included.
    fn count(&self, id: Uuid) -> u32 {
        let mut map = self.map();
        let n = map.entry(id).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// The attempts of this run of `id`.
    fn peek(&self, id: Uuid) -> u32 {
        self.map().get(&id).copied().unwrap_or(0)
    }

    pub(crate) fn forget(&self, id: Uuid) {
        self.map().remove(&id);
    }
}

/// One recipient's delivery queue ([`Store::pending_queues`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingQueue {
    /// How many records wait for delivery to it.
    pub len: usize,
    /// The oldest of them (ids are UUIDv7: the first in id order).
    pub oldest: Option<Uuid>,
}

/// The record id that is a key of the pending index.
fn pending_id(key: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(key).map_err(|e| StoreError::Corrupt {
        what: "outbox pending index",
        key: codec::hex(key),
        reason: e.to_string(),
    })
}

/// The recipient that is a value of the pending index.
fn pending_peer(value: &[u8]) -> Result<NodeId, StoreError> {
    std::str::from_utf8(value)
        .map_err(|e| e.to_string())
        .and_then(|s| NodeId::new(s).map_err(|e| e.to_string()))
        .map_err(|reason| StoreError::Corrupt {
            what: "outbox pending index (recipient)",
            key: codec::hex(value),
            reason,
        })
}
