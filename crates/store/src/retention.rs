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

use pons_core::journal::{JournalDraft, Operation, Outcome};
use pons_core::retention::{Deadlines, Facts};
use pons_core::{Effect, NodeId};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::cipher::BodyTree;
use crate::codec;
use crate::inbox::InboxRecord;
use crate::outbox::{OutboxRecord, StateKind, Submission};
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
    /// Why its erasure was ordered (a review, the sender's erasure notice, a rectification
    /// that supersedes it), if it was and a legal hold kept it; erased once the hold is
    /// lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure_ordered: Option<String>,
}

impl RetentionEntry {
    /// Whether a legal hold is on the record.
    pub fn held(&self) -> bool {
        !self.holds.is_empty()
    }

    /// `draft` checked to be `operation` and completed with this record's id, class,
    /// subject and counterpart (see `prepare_draft`).
    pub(crate) fn draft(
        &self,
        draft: JournalDraft,
        operation: Operation,
    ) -> Result<JournalDraft, StoreError> {
        prepare_draft(
            draft,
            operation,
            self.id,
            &self.class,
            self.subject_ref.as_deref(),
            &self.counterpart,
        )
    }

    /// The facts retention decides on.
    pub fn facts(&self) -> Facts<'_> {
        Facts {
            deadlines: self.deadlines,
            held: self.held(),
            erasure_ordered: self.erasure_ordered.as_deref(),
        }
    }
}

/// An order to erase a stored record, carried out inside the transaction of the operation
/// that gives it (the receipt of an `erasure-notice`, the submission of a `rectification`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EraseOrder {
    /// The record to erase.
    pub target: Uuid,
    /// For an order from another node: that node, which must be the one the record came
    /// from (an inbox record of another sender is not touched: [`Effect::NotFound`]).
    pub from: Option<NodeId>,
    /// Why, in words: the tombstone's ground, and what a hold remembers.
    pub why: String,
    /// The `erase` journal entry (actor, role, time); the store fills in the record's
    /// class, subject and counterpart, and marks it refused when a hold keeps the record.
    pub draft: JournalDraft,
}

impl Tx<'_> {
    /// Carry out `order`: erase the record, or remember the order on a held record (erased
    /// once the hold is lifted), each with its `erase` journal entry. Returns what was done
    /// and the entry's sequence number (none when nothing was there to erase).
    pub(crate) fn carry_out(&self, order: &EraseOrder) -> TxResult<(Effect, Option<JournalSeq>)> {
        let id = order.target;
        let Some(mut entry) = self.retention_get(id)? else {
            let known = match &order.from {
                Some(from) => match self.inbox.get(id.as_bytes())? {
                    Some(v) => {
                        let r: InboxRecord =
                            codec::decode("inbox record", id.as_bytes(), &v).or_else(abort)?;
                        &r.from == from
                    }
                    None => false,
                },
                None => {
                    self.inbox.get(id.as_bytes())?.is_some()
                        || self.outbox.get(id.as_bytes())?.is_some()
                }
            };
            let effect = if known {
                Effect::AlreadyErased
            } else {
                Effect::NotFound
            };
            return Ok((effect, None));
        };
        if let Some(from) = &order.from {
            if entry.place != Place::Inbox || &entry.counterpart != from {
                return Ok((Effect::NotFound, None));
            }
        }
        let mut draft = entry
            .draft(order.draft.clone(), Operation::Erase)
            .or_else(abort)?;
        if entry.held() {
            draft.outcome = Outcome::Refused;
            draft.justification = Some(format!(
                "{}; kept restricted under a legal hold of this node ({}), erased when it is \
                 lifted (LED art. 16(3))",
                order.why,
                entry
                    .holds
                    .iter()
                    .map(|h| h.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            entry.erasure_ordered = Some(order.why.clone());
            // Indexed as due from the order's day, so the first sweep after the hold is
            // lifted finds it.
            let day = order.draft.time.date();
            entry.deadlines.erase_by = entry.deadlines.erase_by.min(day);
            entry.deadlines.review_by = entry.deadlines.review_by.min(day);
            self.retention_put(&entry)?;
            let seq = self.append(&draft)?.seq;
            return Ok((Effect::Held, Some(seq)));
        }
        draft.justification = Some(order.why.clone());
        let seq = self.erase_entry(&entry, &draft)?;
        Ok((Effect::Erased, Some(seq)))
    }

    /// Erase the record of `entry`: data key, ciphertext, retention entry and index keys,
    /// its place in the delivery queue; append the tombstone `draft`.
    fn erase_entry(&self, entry: &RetentionEntry, draft: &JournalDraft) -> TxResult<JournalSeq> {
        let id = entry.id;
        self.erase_body(entry.place.tree(), id)?;
        if entry.place == Place::Outbox {
            self.outbox_pending.remove(id.as_bytes())?;
        }
        self.retention_drop(id)?;
        Ok(self.append(draft)?.seq)
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
    /// Sequence number of the `collect` entry of the erasure notice stored with it, if the
    /// record had been delivered.
    pub notice_seq: Option<JournalSeq>,
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

    /// Record a review of record `id` that set its deadlines to `deadlines` and, if it
    /// decided to erase, the order (`erasure_ordered`), with its `review` journal entry, in
    /// one transaction.
    pub async fn review(
        &self,
        id: Uuid,
        deadlines: Deadlines,
        erasure_ordered: Option<String>,
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        self.change_retention(id, Operation::Review, draft, |entry| {
            entry.deadlines = deadlines;
            entry.erasure_ordered = erasure_ordered.clone();
            Ok(())
        })
        .await
    }

    /// Store the rectification `sub` and carry out `order` on the record it supersedes, in
    /// one transaction: the record is erased (or kept restricted under a hold) only if its
    /// correction is durable, and the correction is never stored beside an uncorrected
    /// original. Returns the `collect` entry's sequence number and what the order did.
    pub async fn rectify(
        &self,
        sub: &Submission,
        order: &EraseOrder,
    ) -> Result<(JournalSeq, Effect), StoreError> {
        let (done, ticket) = self.write(|tx| {
            let seq = tx.submit(sub)?;
            let (effect, _) = tx.carry_out(order)?;
            Ok((seq, effect))
        })?;
        self.attempts.forget(order.target);
        self.durable(ticket).await?;
        Ok(done)
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
            let draft = entry.draft(draft.clone(), operation).or_else(abort)?;
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
        self.erase_notifying(id, draft, check, None).await
    }

    /// [`Store::erase`], and, if the record is an outbox record its recipient holds (state
    /// delivered), store `notice` (the `erasure-notice` to that recipient) in the same
    /// transaction: an erasure is never durable without the notice that tells the
    /// recipient. A record still waiting for delivery is erased without a notice: it will
    /// never be sent. Returns [`StoreError::NoticeNeeded`] if the record was delivered and
    /// no notice is given (the caller makes one and tries again).
    pub async fn erase_notifying(
        &self,
        id: Uuid,
        draft: JournalDraft,
        check: impl Fn(&RetentionEntry) -> Result<(), String>,
        notice: Option<&Submission>,
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
            let draft = entry
                .draft(draft.clone(), Operation::Erase)
                .or_else(abort)?;
            let delivered = entry.place == Place::Outbox
                && match tx.outbox.get(id.as_bytes())? {
                    Some(v) => {
                        let r: OutboxRecord =
                            codec::decode("outbox record", id.as_bytes(), &v).or_else(abort)?;
                        r.state.kind() == StateKind::Delivered
                    }
                    None => false,
                };
            let seq = tx.erase_entry(&entry, &draft)?;
            let notice_seq = match (delivered, notice) {
                (true, Some(sub)) => Some(tx.submit(sub)?),
                (true, None) => return abort(StoreError::NoticeNeeded { id }),
                (false, _) => None,
            };
            Ok(Erased {
                entry,
                journal_seq: seq,
                notice_seq,
            })
        })?;
        self.attempts.forget(id);
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
