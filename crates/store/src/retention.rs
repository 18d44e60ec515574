//! Retention state of stored records: their review and erasure dates, their legal holds, and
//! an index by date so that finding what is due costs what is due, not the size of the store.
//!
//! The rules (what a date or a hold means) live in [`pons_core::retention`]; this module
//! keeps the facts they are applied to, and changes them only together with their journal
//! entry, in one transaction.
//!
//! Trees: `retention` (record id → [`RetentionEntry`], CBOR) and `deadlines`, whose keys are
//! `b'r' ‖ date ‖ id` (review due), `b'e' ‖ date ‖ id` (erasure due) and `b'h' ‖ id` (held),
//! with dates as big-endian Julian day numbers with the sign bit flipped, so sled's byte
//! order is date order.

use pons_core::journal::{JournalDraft, Operation};
use pons_core::retention::Deadlines;
use pons_core::NodeId;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::cipher::BodyTree;
use crate::codec;
use crate::{abort, prepare_draft, JournalSeq, Store, StoreError, Tx, TxResult};

const REVIEW: u8 = b'r';
const ERASE: u8 = b'e';
const HELD: u8 = b'h';

/// Where a record is stored on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Place {
    /// In the outbox: this node sent (or will send) it.
    Outbox,
    /// In the inbox: this node received it.
    Inbox,
}

impl Place {
    pub(crate) fn tree(self) -> BodyTree {
        match self {
            Place::Outbox => BodyTree::Outbox,
            Place::Inbox => BodyTree::Inbox,
        }
    }

    /// `outbox` or `inbox`.
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Outbox => "outbox",
            Place::Inbox => "inbox",
        }
    }
}

/// A legal hold on a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Why the record is held (e.g. a court case reference).
    pub reason: String,
    /// Who placed it (the OS user).
    pub by: String,
    /// When.
    pub at: OffsetDateTime,
}

/// The retention facts of one stored record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionEntry {
    /// The record id.
    pub id: Uuid,
    /// Outbox or inbox.
    pub place: Place,
    /// The record class.
    pub class: String,
    /// Keyed pseudonym of the data subject, if any.
    pub subject_ref: Option<String>,
    /// The other node: the recipient (outbox) or the sender (inbox).
    pub counterpart: NodeId,
    /// Review and erasure dates.
    pub deadlines: Deadlines,
    /// The legal holds on it, oldest first; held while not empty.
    pub holds: Vec<Hold>,
}

impl RetentionEntry {
    /// Whether a legal hold is on the record.
    pub fn held(&self) -> bool {
        !self.holds.is_empty()
    }
}

/// Which dates of the index [`Store::due`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Due {
    /// Records whose review date is on or before the given date.
    Review,
    /// Records whose erasure date is on or before the given date.
    Erase,
}

fn date_key(d: Date) -> [u8; 4] {
    // Flip the sign bit: i32 order becomes unsigned byte order.
    ((d.to_julian_day() as u32) ^ 0x8000_0000).to_be_bytes()
}

fn index_key(kind: u8, date: Date, id: Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(21);
    k.push(kind);
    k.extend_from_slice(&date_key(date));
    k.extend_from_slice(id.as_bytes());
    k
}

fn held_key(id: Uuid) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = HELD;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

impl Tx<'_> {
    /// The retention entry of record `id`, if any; part of the transaction.
    pub(crate) fn retention_get(&self, id: Uuid) -> TxResult<Option<RetentionEntry>> {
        match self.retention.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => codec::decode("retention entry", id.as_bytes(), &v)
                .map(Some)
                .or_else(abort),
        }
    }

    /// Store `entry` and its index keys, replacing those of the entry it replaces.
    pub(crate) fn retention_put(&self, entry: &RetentionEntry) -> TxResult<()> {
        self.retention_drop(entry.id)?;
        let value = codec::encode("retention entry", entry).or_else(abort)?;
        self.retention.insert(entry.id.as_bytes(), value)?;
        let d = entry.deadlines;
        self.deadlines
            .insert(index_key(REVIEW, d.review_by, entry.id), &[][..])?;
        self.deadlines
            .insert(index_key(ERASE, d.erase_by, entry.id), &[][..])?;
        if entry.held() {
            self.deadlines.insert(&held_key(entry.id)[..], &[][..])?;
        }
        Ok(())
    }

    /// Remove record `id`'s retention entry and its index keys; returns the entry.
    pub(crate) fn retention_drop(&self, id: Uuid) -> TxResult<Option<RetentionEntry>> {
        let Some(old) = self.retention_get(id)? else {
            return Ok(None);
        };
        let d = old.deadlines;
        self.deadlines.remove(index_key(REVIEW, d.review_by, id))?;
        self.deadlines.remove(index_key(ERASE, d.erase_by, id))?;
        self.deadlines.remove(&held_key(id)[..])?;
        self.retention.remove(id.as_bytes())?;
        Ok(Some(old))
    }
}

/// What an erasure removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erased {
    /// The retention entry of the record, as it was.
    pub entry: RetentionEntry,
    /// Sequence number of the tombstone `erase` journal entry.
    pub journal_seq: JournalSeq,
}

impl Store {
    /// The retention entry of record `id`, if it has one.
    pub fn retention_get(&self, id: Uuid) -> Result<Option<RetentionEntry>, StoreError> {
        match self.trees.retention.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode("retention entry", id.as_bytes(), &v)?)),
        }
    }

    /// Ids of the records whose review (or erasure) date is on or before `through`, in date
    /// order. Reads only the index keys up to `through`.
    pub fn due(&self, which: Due, through: Date) -> Result<Vec<Uuid>, StoreError> {
        let kind = match which {
            Due::Review => REVIEW,
            Due::Erase => ERASE,
        };
        let start = [kind];
        let mut end = vec![kind];
        end.extend_from_slice(&date_key(through));
        end.extend_from_slice(&[0xff; 16]);
        let mut out = Vec::new();
        for item in self
            .trees
            .deadlines
            .range(start.as_slice()..=end.as_slice())
        {
            let (k, _) = item?;
            out.push(index_id(&k)?);
        }
        Ok(out)
    }

    /// Ids of the records under a legal hold.
    pub fn held(&self) -> Result<Vec<Uuid>, StoreError> {
        let mut out = Vec::new();
        for item in self.trees.deadlines.scan_prefix([HELD]) {
            let (k, _) = item?;
            out.push(index_id(&k)?);
        }
        Ok(out)
    }

    /// Place a legal hold on record `id`, with its `hold` journal entry, in one transaction.
    pub async fn hold_add(
        &self,
        id: Uuid,
        hold: Hold,
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        self.change_retention(id, Operation::Hold, draft, |entry| {
            entry.holds.push(hold.clone());
            Ok(())
        })
        .await
    }

    /// Lift every legal hold on record `id`, with its `hold` journal entry, in one
    /// transaction. Refused if the record is not held.
    pub async fn hold_remove(
        &self,
        id: Uuid,
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        self.change_retention(id, Operation::Hold, draft, |entry| {
            if entry.holds.is_empty() {
                return Err(StoreError::NotHeld { id });
            }
            entry.holds.clear();
            Ok(())
        })
        .await
    }

    /// Record a review of record `id` that set its deadlines to `deadlines`, with its
    /// `review` journal entry, in one transaction.
    pub async fn review(
        &self,
        id: Uuid,
        deadlines: Deadlines,
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        self.change_retention(id, Operation::Review, draft, |entry| {
            entry.deadlines = deadlines;
            Ok(())
        })
        .await
    }

    async fn change_retention(
        &self,
        id: Uuid,
        operation: Operation,
        draft: JournalDraft,
        change: impl Fn(&mut RetentionEntry) -> Result<(), StoreError>,
    ) -> Result<JournalSeq, StoreError> {
        let (seq, ticket) = self.write(|tx| {
            let Some(mut entry) = tx.retention_get(id)? else {
                return abort(StoreError::NoRetention { id });
            };
            let draft = prepare_draft(
                draft.clone(),
                operation,
                id,
                &entry.class,
                entry.subject_ref.as_deref(),
                &entry.counterpart,
            )
            .or_else(abort)?;
            change(&mut entry).or_else(abort)?;
            tx.retention_put(&entry)?;
            Ok(tx.append(&draft)?.seq)
        })?;
        self.durable(ticket).await?;
        Ok(seq)
    }

    /// Erase record `id`: its wrapped data key and its ciphertext, its retention entry and
    /// index keys, and (outbox) its place in the delivery queue, with a tombstone `erase`
    /// journal entry, in one transaction. The record's metadata (id, class, subject
    /// pseudonym, counterpart, state) stays as the trace that it existed. A held record is
    /// refused: `check` runs inside the transaction on the current entry and may refuse it.
    pub async fn erase(
        &self,
        id: Uuid,
        draft: JournalDraft,
        check: impl Fn(&RetentionEntry) -> Result<(), String>,
    ) -> Result<Erased, StoreError> {
        let (erased, ticket) = self.write(|tx| {
            let Some(entry) = tx.retention_get(id)? else {
                return abort(StoreError::NoRetention { id });
            };
            if entry.held() {
                return abort(StoreError::Held { id });
            }
            if let Err(reason) = check(&entry) {
                return abort(StoreError::EraseRefused { id, reason });
            }
            let draft = prepare_draft(
                draft.clone(),
                Operation::Erase,
                id,
                &entry.class,
                entry.subject_ref.as_deref(),
                &entry.counterpart,
            )
            .or_else(abort)?;
            tx.erase_body(entry.place.tree(), id)?;
            if entry.place == Place::Outbox {
                tx.outbox_pending.remove(id.as_bytes())?;
            }
            tx.retention_drop(id)?;
            let seq = tx.append(&draft)?.seq;
            Ok(Erased {
                entry,
                journal_seq: seq,
            })
        })?;
        self.durable(ticket).await?;
        Ok(erased)
    }
}

fn index_id(k: &[u8]) -> Result<Uuid, StoreError> {
    let tail = k.len().checked_sub(16).map(|i| &k[i..]);
    tail.and_then(|t| Uuid::from_slice(t).ok())
        .ok_or_else(|| StoreError::Corrupt {
            what: "deadline index",
            key: codec::hex(k),
            reason: "does not end with a record id".into(),
        })
}
