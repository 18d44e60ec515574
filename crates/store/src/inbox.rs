//! The inbox: records received from other nodes, in arrival order, each with the receipt
//! this node answered.
//!
//! `receive` stores the record, its `receive` journal entry, its arrival number and its receipt
//! in one transaction. The receipt names the journal sequence number, which is only known
//! inside that transaction, so the caller passes a [`ReceiptSealer`] that runs there: a record
//! is never durable without its receipt, and a receipt is never sent for a record that is not
//! durable.
//!
//! Receipts are batched (issue 7): the records one sender got into one committed batch of
//! writes (see `batch.rs`) share one receipt, at most [`RECEIPT_BATCH`] items under one
//! signature. The receipt is stored once; each record's entry in the `receipts` tree names it.

use std::sync::Arc;

use pons_core::journal::{JournalDraft, Operation};
use pons_core::{Effect, NodeId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cipher::BodyTree;
use crate::codec::{self, bytes};
use crate::retention::{EraseOrder, Place, RetentionEntry};
use crate::{abort, prepare_draft, JournalSeq, Store, StoreError, Tx, TxResult};
use pons_core::retention::Deadlines;
use sled::transaction::ConflictableTransactionError;

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

/// One record's item in a receipt: the numbers assigned inside the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptContext {
    /// The record id.
    pub id: Uuid,
    /// SHA-256 of the envelope bytes as received.
    pub envelope_sha256: [u8; 32],
    /// Sequence number of the `receive` journal entry.
    pub journal_seq: JournalSeq,
    /// Position in arrival order.
    pub arrival_seq: u64,
    /// What the record's erasure order did to the record it names, if it carried one
    /// (an `erasure-notice` or a `rectification`, see [`Store::receive_ordering`]).
    pub effect: Option<Effect>,
}

/// The records of one sender that one transaction stores, for one receipt.
#[derive(Clone, Copy, Debug)]
pub struct ReceiptBatch<'a> {
    /// The sending node, the same for every item.
    pub sender: &'a NodeId,
    /// The latest reception time of the items.
    pub received_at: OffsetDateTime,
    /// The records, in the order they were stored; at least one, at most [`RECEIPT_BATCH`].
    pub items: &'a [ReceiptContext],
}

/// Makes the signed receipt of a [`ReceiptBatch`]; it runs inside the transaction that
/// stores the records (on the store's committer thread) and may run more than once, so it
/// must be a pure function of its argument (signing is). If it fails, none of the batch's
/// records is stored.
///
/// Records share a receipt only if they were received with the same sealer (compared by
/// pointer): a node makes one and passes clones of it.
pub type ReceiptSealer = Arc<dyn Fn(&ReceiptBatch<'_>) -> Result<Vec<u8>, String> + Send + Sync>;

/// Most records one batched receipt covers. Every record of a receipt is answered with the
/// whole receipt, so this bounds what one answer carries (about 80 bytes an item) against
/// how many records share one signature.
pub const RECEIPT_BATCH: usize = 32;

/// A record stored in the running transaction, waiting for its receipt.
pub(crate) struct ReceiptDue {
    /// The batched write that stored it (see `batch.rs`), to drop it if sealing fails.
    pub(crate) job: usize,
    pub(crate) sender: NodeId,
    pub(crate) received_at: OffsetDateTime,
    pub(crate) item: ReceiptContext,
    pub(crate) sealer: ReceiptSealer,
}

/// The prefix of a stored receipt's own key in the `receipts` tree; a record's entry holds
/// that key when its receipt covers several records (else the receipt itself).
const RECEIPT_SET: &[u8] = b"set";

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
    /// Store a received record, its `receive` journal entry, its arrival number and its
    /// receipt made by `sealer`, in one transaction; return once durable.
    ///
    /// The receipt covers this record and the others from the same sender that share its
    /// transaction and `sealer` (see [`ReceiptSealer`]). If sealing fails, nothing is
    /// stored. A record whose id is already in the inbox is refused with
    /// [`StoreError::AlreadyReceived`]: the caller compares digests with [`Store::lookup`]
    /// and answers with the stored receipt.
    ///
    /// The record gets no retention entry: nodes use [`Store::receive_retained`].
    pub async fn receive(
        &self,
        record: NewInboxRecord,
        envelope: &[u8],
        draft: JournalDraft,
        sealer: &ReceiptSealer,
    ) -> Result<Received, StoreError> {
        self.receive_inner(record, None, None, envelope, draft, sealer)
            .await
    }

    /// [`Store::receive`], and index the record's review and erasure dates (from the
    /// record) in the same transaction, so that retention finds it.
    pub async fn receive_retained(
        &self,
        record: NewInboxRecord,
        deadlines: Deadlines,
        envelope: &[u8],
        draft: JournalDraft,
        sealer: &ReceiptSealer,
    ) -> Result<Received, StoreError> {
        self.receive_inner(record, Some(deadlines), None, envelope, draft, sealer)
            .await
    }

    /// [`Store::receive_retained`] of a record that orders the erasure of an earlier record
    /// from the same sender (an `erasure-notice`, or a `rectification` that supersedes it),
    /// and the order carried out, in one transaction: the earlier record is erased with its
    /// tombstone entry, or, if this node holds it under a legal hold, kept restricted with
    /// the order remembered (see [`EraseOrder`]). The effect is the record's receipt item's,
    /// so the receipt tells the sender.
    pub async fn receive_ordering(
        &self,
        record: NewInboxRecord,
        deadlines: Deadlines,
        order: EraseOrder,
        envelope: &[u8],
        draft: JournalDraft,
        sealer: &ReceiptSealer,
    ) -> Result<Received, StoreError> {
        self.receive_inner(
            record,
            Some(deadlines),
            Some(order),
            envelope,
            draft,
            sealer,
        )
        .await
    }

    async fn receive_inner(
        &self,
        record: NewInboxRecord,
        deadlines: Option<Deadlines>,
        order: Option<EraseOrder>,
        envelope: &[u8],
        draft: JournalDraft,
        sealer: &ReceiptSealer,
    ) -> Result<Received, StoreError> {
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
        let sealer = Arc::clone(sealer);
        // Batched: one transaction and one flush with the writes queued beside it; the
        // receipt is sealed at the end of that transaction, over every record it stored from
        // this sender, and an erase order is carried out in that same transaction.
        let (journal_seq, arrival_seq) = self
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
                tx.receipt_due(ReceiptDue {
                    job: tx.job.get(),
                    sender: record.from.clone(),
                    received_at: record.received_at,
                    item: ReceiptContext {
                        id,
                        envelope_sha256: record.envelope_sha256,
                        journal_seq: entry.seq,
                        arrival_seq,
                        effect,
                    },
                    sealer: Arc::clone(&sealer),
                });
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
                tx.inbox_arrival.insert(arrival_seq.to_be_bytes(), key)?;
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
                Ok((entry.seq, arrival_seq))
            })
            .await?;
        let receipt = self.receipt_of(id)?.ok_or_else(|| StoreError::Corrupt {
            what: "inbox receipt",
            key: codec::hex(id.as_bytes()),
            reason: "record committed without its receipt".into(),
        })?;
        Ok(Received {
            journal_seq,
            arrival_seq,
            receipt,
        })
    }

    /// The receipt answered for inbox record `id`, if it was received.
    fn receipt_of(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(entry) = self.trees.receipts.get(id.as_bytes())? else {
            return Ok(None);
        };
        if !entry.starts_with(RECEIPT_SET) {
            return Ok(Some(entry.to_vec()));
        }
        match self.trees.receipts.get(&entry)? {
            Some(receipt) => Ok(Some(receipt.to_vec())),
            None => Err(StoreError::Corrupt {
                what: "inbox receipt",
                key: codec::hex(id.as_bytes()),
                reason: format!("names receipt {} that is not stored", codec::hex(&entry)),
            }),
        }
    }

    /// The digest and receipt of a received record, for duplicate detection.
    pub fn lookup(&self, id: Uuid) -> Result<Option<InboxMeta>, StoreError> {
        let Some(rec) = self.inbox_get(id)? else {
            return Ok(None);
        };
        let receipt = self.receipt_of(id)?.ok_or_else(|| StoreError::Corrupt {
            what: "inbox receipt",
            key: codec::hex(id.as_bytes()),
            reason: "record stored without its receipt".into(),
        })?;
        Ok(Some(InboxMeta {
            envelope_sha256: rec.envelope_sha256,
            receipt,
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

impl Tx<'_> {
    /// Note that record `due.item` was stored in this transaction and needs its receipt,
    /// sealed by [`Tx::seal_receipts`] before the transaction commits.
    pub(crate) fn receipt_due(&self, due: ReceiptDue) {
        self.receipts_due.borrow_mut().push(due);
    }

    /// Seal the receipts of the records stored in this transaction: one per sender and
    /// sealer, over at most [`RECEIPT_BATCH`] records each, stored once, with each record's
    /// entry naming it. On failure, the error and the batched write of the first record the
    /// failed receipt covers.
    pub(crate) fn seal_receipts(
        &self,
    ) -> Result<(), (usize, ConflictableTransactionError<StoreError>)> {
        let due = std::mem::take(&mut *self.receipts_due.borrow_mut());
        let mut groups: Vec<Vec<ReceiptDue>> = Vec::new();
        for d in due {
            let group = groups.iter_mut().find(|g| {
                let first = &g[0];
                g.len() < RECEIPT_BATCH
                    && first.sender == d.sender
                    && Arc::ptr_eq(&first.sealer, &d.sealer)
            });
            match group {
                Some(g) => g.push(d),
                None => groups.push(vec![d]),
            }
        }
        for group in &groups {
            let first = &group[0];
            self.seal_group(group).map_err(|e| (first.job, e))?;
        }
        Ok(())
    }

    fn seal_group(&self, group: &[ReceiptDue]) -> TxResult<()> {
        let first = &group[0];
        let items: Vec<ReceiptContext> = group.iter().map(|d| d.item).collect();
        let batch = ReceiptBatch {
            sender: &first.sender,
            received_at: group
                .iter()
                .map(|d| d.received_at)
                .max()
                .unwrap_or(first.received_at),
            items: &items,
        };
        let receipt = match (first.sealer)(&batch) {
            Ok(r) => r,
            Err(reason) => {
                return abort(StoreError::Receipt {
                    id: first.item.id,
                    reason,
                })
            }
        };
        if let [only] = group {
            self.receipts.insert(only.item.id.as_bytes(), receipt)?;
            return Ok(());
        }
        let mut set_key = RECEIPT_SET.to_vec();
        set_key.extend_from_slice(first.item.id.as_bytes());
        self.receipts.insert(set_key.as_slice(), receipt)?;
        for d in group {
            self.receipts
                .insert(d.item.id.as_bytes(), set_key.as_slice())?;
        }
        Ok(())
    }
}
