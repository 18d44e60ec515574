//! The inbox: records received from other nodes, in arrival order, each with the receipt
//! this node answered.
//!
//! `receive` stores the record, its `receive` journal entry, its arrival number and its receipt
//! in one transaction. The receipt names the journal sequence number, which is only known
//! inside that transaction, so the caller passes a receipt builder that runs there: a record
//! is never durable without its receipt, and a receipt is never sent for a record that is not
//! durable.

use pons_core::journal::{JournalDraft, Operation};
use pons_core::{Effect, NodeId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cipher::BodyTree;
use crate::codec::{self, bytes};
use crate::retention::{EraseOrder, Place, RetentionEntry};
use crate::{abort, prepare_draft, JournalSeq, Store, StoreError};
use pons_core::retention::Deadlines;

/// What the receiver knows about a record it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInboxRecord {
    /// The record id (from the envelope).
    pub id: Uuid,
    /// The sending node (the TLS peer, equal to the envelope's signer).
    pub from: NodeId,
    /// The record class.
    pub class: String,
    /// Keyed pseudonym of the data subject, if any.
    pub subject_ref: Option<String>,
    /// When the record was received.
    pub received_at: OffsetDateTime,
    /// SHA-256 of the envelope bytes, for duplicate detection.
    pub envelope_sha256: [u8; 32],
}

/// A stored inbox record's metadata. The envelope is read with [`Store::inbox_envelope`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRecord {
    /// The record id.
    pub id: Uuid,
    /// The sending node.
    pub from: NodeId,
    /// The record class.
    pub class: String,
    /// Keyed pseudonym of the data subject, if any.
    pub subject_ref: Option<String>,
    /// When the record was received.
    pub received_at: OffsetDateTime,
    /// SHA-256 of the envelope bytes.
    #[serde(with = "bytes::array32")]
    pub envelope_sha256: [u8; 32],
    /// Position in arrival order, from 1, without gaps.
    pub arrival_seq: u64,
    /// Journal sequence number of the `receive` entry.
    pub journal_seq: JournalSeq,
}

/// What a duplicate check needs: the digest of the stored envelope and the receipt sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxMeta {
    /// SHA-256 of the stored envelope bytes.
    pub envelope_sha256: [u8; 32],
    /// The receipt this node answered with (send it again for an identical duplicate).
    pub receipt: Vec<u8>,
    /// Position in arrival order.
    pub arrival_seq: u64,
    /// Journal sequence number of the `receive` entry.
    pub journal_seq: JournalSeq,
}

/// What a receipt builder gets: the numbers assigned inside the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptContext {
    /// The record id.
    pub id: Uuid,
    /// Sequence number of the `receive` journal entry.
    pub journal_seq: JournalSeq,
    /// Position in arrival order.
    pub arrival_seq: u64,
    /// What the record's erasure order did to the record it names, if it carried one
    /// (an `erasure-notice` or a `rectification`, see [`Store::receive_ordering`]).
    pub effect: Option<Effect>,
}

/// The result of a successful [`Store::receive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Sequence number of the `receive` journal entry.
    pub journal_seq: JournalSeq,
    /// Position in arrival order.
    pub arrival_seq: u64,
    /// The receipt made by the builder, now durable with the record.
    pub receipt: Vec<u8>,
}

impl Store {
    /// Store a received record, its `receive` journal entry, its arrival number and the
    /// receipt made by `make_receipt`, in one transaction; return once durable.
    ///
    /// `make_receipt` runs inside the transaction and may run more than once: it must be a
    /// pure function of its argument (signing is). It runs on the store's committer thread
    /// (see `Store::write_batched`), hence `Send + 'static`. If it fails, nothing is stored. A record
    /// whose id is already in the inbox is refused with [`StoreError::AlreadyReceived`]: the
    /// caller compares digests with [`Store::lookup`] and answers with the stored receipt.
    ///
    /// The record gets no retention entry: nodes use [`Store::receive_retained`].
    pub async fn receive<F>(
        &self,
        record: NewInboxRecord,
        envelope: &[u8],
        draft: JournalDraft,
        make_receipt: F,
    ) -> Result<Received, StoreError>
    where
        F: Fn(&ReceiptContext) -> Result<Vec<u8>, String> + Send + 'static,
    {
        self.receive_inner(record, None, None, envelope, draft, make_receipt)
            .await
    }

    /// [`Store::receive`], and index the record's review and erasure dates (from the
    /// record) in the same transaction, so that retention finds it.
    pub async fn receive_retained<F>(
        &self,
        record: NewInboxRecord,
        deadlines: Deadlines,
        envelope: &[u8],
        draft: JournalDraft,
        make_receipt: F,
    ) -> Result<Received, StoreError>
    where
        F: Fn(&ReceiptContext) -> Result<Vec<u8>, String> + Send + 'static,
    {
        self.receive_inner(record, Some(deadlines), None, envelope, draft, make_receipt)
            .await
    }

    /// [`Store::receive_retained`] of a record that orders the erasure of an earlier record
    /// from the same sender (an `erasure-notice`, or a `rectification` that supersedes it),
    /// and the order carried out, in one transaction: the earlier record is erased with its
    /// tombstone entry, or, if this node holds it under a legal hold, kept restricted with
    /// the order remembered (see [`EraseOrder`]). The effect is given to `make_receipt`, so
    /// the receipt tells the sender.
    pub async fn receive_ordering<F>(
        &self,
        record: NewInboxRecord,
        deadlines: Deadlines,
        order: EraseOrder,
        envelope: &[u8],
        draft: JournalDraft,
        make_receipt: F,
    ) -> Result<Received, StoreError>
    where
        F: Fn(&ReceiptContext) -> Result<Vec<u8>, String> + Send + 'static,
    {
        self.receive_inner(
            record,
            Some(deadlines),
            Some(order),
            envelope,
            draft,
            make_receipt,
        )
        .await
    }

    async fn receive_inner<F>(
        &self,
        record: NewInboxRecord,
        deadlines: Option<Deadlines>,
        order: Option<EraseOrder>,
        envelope: &[u8],
        draft: JournalDraft,
        make_receipt: F,
    ) -> Result<Received, StoreError>
    where
        F: Fn(&ReceiptContext) -> Result<Vec<u8>, String> + Send + 'static,
    {
        let draft = prepare_draft(
            draft,
            Operation::Receive,
            record.id,
            &record.class,
            record.subject_ref.as_deref(),
            &record.from,
        )?;
        let id = record.id;
        let body = self.seal_body(BodyTree::Inbox, id, envelope)?;
        // Batched: one transaction and one flush with the writes queued beside it; the
        // receipt is still made inside the transaction that stores the record, and an
        // erase order is carried out in that same transaction.
        let received = self
            .write_batched(move |tx| {
                let key = id.as_bytes();
                if tx.inbox.get(key)?.is_some() {
                    return abort(StoreError::AlreadyReceived { id });
                }
                let entry = tx.append(&draft)?;
                let arrival_seq = tx.next_arrival()?;
                let effect = match &order {
                    Some(order) => Some(tx.carry_out(order)?.0),
                    None => None,
                };
                let ctx = ReceiptContext {
                    id,
                    journal_seq: entry.seq,
                    arrival_seq,
                    effect,
                };
                let receipt = match make_receipt(&ctx) {
                    Ok(r) => r,
                    Err(reason) => return abort(StoreError::Receipt { id, reason }),
                };
                let stored = InboxRecord {
                    id,
                    from: record.from.clone(),
                    class: record.class.clone(),
                    subject_ref: record.subject_ref.clone(),
                    received_at: record.received_at,
                    envelope_sha256: record.envelope_sha256,
                    arrival_seq,
                    journal_seq: entry.seq,
                };
                let value = codec::encode("inbox record", &stored).or_else(abort)?;
                tx.inbox.insert(key, value)?;
                tx.put_body(BodyTree::Inbox, id, &body)?;
                tx.inbox_arrival.insert(&arrival_seq.to_be_bytes(), key)?;
                tx.receipts.insert(key, receipt.as_slice())?;
                if let Some(deadlines) = deadlines {
                    tx.retention_put(&RetentionEntry {
                        id,
                        place: Place::Inbox,
                        class: record.class.clone(),
                        subject_ref: record.subject_ref.clone(),
                        counterpart: record.from.clone(),
                        deadlines,
                        holds: Vec::new(),
                        erasure_ordered: None,
                    })?;
                }
                Ok(Received {
                    journal_seq: entry.seq,
                    arrival_seq,
                    receipt,
                })
            })
            .await?;
        Ok(received)
    }

    /// The digest and receipt of a received record, for duplicate detection.
    pub fn lookup(&self, id: Uuid) -> Result<Option<InboxMeta>, StoreError> {
        let Some(rec) = self.inbox_get(id)? else {
            return Ok(None);
        };
        let key = id.as_bytes();
        let receipt = self
            .trees
            .receipts
            .get(key)?
            .ok_or_else(|| StoreError::Corrupt {
                what: "inbox receipt",
                key: codec::hex(key),
                reason: "record stored without its receipt".into(),
            })?;
        Ok(Some(InboxMeta {
            envelope_sha256: rec.envelope_sha256,
            receipt: receipt.to_vec(),
            arrival_seq: rec.arrival_seq,
            journal_seq: rec.journal_seq,
        }))
    }

    /// One inbox record's metadata.
    pub fn inbox_get(&self, id: Uuid) -> Result<Option<InboxRecord>, StoreError> {
        let key = id.as_bytes();
        match self.trees.inbox.get(key)? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode("inbox record", key, &v)?)),
        }
    }

    /// One inbox record's envelope bytes, as received.
    pub fn inbox_envelope(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_body(BodyTree::Inbox, id)
    }

    /// The first `limit` inbox records in arrival order.
    pub fn inbox_list(&self, limit: usize) -> Result<Vec<InboxRecord>, StoreError> {
        self.inbox_after(0, limit)
    }

    /// Up to `limit` inbox records that arrived after `arrival_seq`, in arrival order: what a
    /// feed whose cursor is at `arrival_seq` reads next.
    pub fn inbox_after(
        &self,
        arrival_seq: u64,
        limit: usize,
    ) -> Result<Vec<InboxRecord>, StoreError> {
        let Some(start) = arrival_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.trees.inbox_arrival.range(start.to_be_bytes()..) {
            if out.len() >= limit {
                break;
            }
            let (k, id) = item?;
            let rec = match self.trees.inbox.get(&id)? {
                Some(v) => codec::decode::<InboxRecord>("inbox record", &id, &v)?,
                None => {
                    return Err(StoreError::Corrupt {
                        what: "inbox arrival index",
                        key: codec::hex(&k),
                        reason: "names a record that is not in the inbox".into(),
                    })
                }
            };
            out.push(rec);
        }
        Ok(out)
    }
}
