//! Feed state: how far each sink of the node's feed has taken the inbox, and the records a
//! sink set aside (dead letters).
//!
//! A sink reads the inbox in arrival order. Its **cursor** is the arrival number up to which
//! every record was either handed over (and the hand-over journaled as a `disclose`) or set
//! aside as a dead letter. Moving the cursor and writing the `disclose` entries is one
//! transaction ([`Store::feed_advance`]): a record is never counted as handed over without
//! its journal entry, nor journaled without the cursor moving past it.
//!
//! Keys of the `feed` tree (sink names are checked by the node's configuration: lower-case
//! letters, digits, `-` and `_`, so they never hold the `0x00` separator):
//! - `cursor 0x00 <sink>` → the cursor, u64 big-endian;
//! - `dead 0x00 <sink> 0x00 <arrival u64 BE>` → a [`DeadLetter`], CBOR.

use pons_core::journal::{JournalDraft, Operation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::codec;
use crate::inbox::InboxRecord;
use crate::{abort, JournalSeq, Store, StoreError, Tx, TxResult};

const CURSOR_PREFIX: &[u8] = b"cursor\0";
const DEAD_PREFIX: &[u8] = b"dead\0";

fn cursor_key(sink: &str) -> Vec<u8> {
    [CURSOR_PREFIX, sink.as_bytes()].concat()
}

fn dead_prefix(sink: &str) -> Vec<u8> {
    [DEAD_PREFIX, sink.as_bytes(), b"\0"].concat()
}

fn dead_key(sink: &str, arrival_seq: u64) -> Vec<u8> {
    [dead_prefix(sink).as_slice(), &arrival_seq.to_be_bytes()].concat()
}

/// A record a sink could not take after its attempts ran out, set aside so that the records
/// after it are not held up. It is handed over again only when an operator asks
/// ([`Store::feed_request_retry`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The sink's name.
    pub sink: String,
    /// The record id.
    pub id: Uuid,
    /// The record's arrival number.
    pub arrival_seq: u64,
    /// Hand-overs tried.
    pub attempts: u32,
    /// What the last attempt failed with.
    pub last_error: String,
    /// When the record was set aside (or last failed again).
    pub at: OffsetDateTime,
    /// Whether an operator asked for another hand-over that has not happened yet.
    pub retry: bool,
}

/// The result of [`Store::feed_advance`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedAdvance {
    /// The cursor after the call.
    pub cursor: u64,
    /// The `disclose` journal entries written, one per record newly handed over.
    pub journal_seqs: Vec<JournalSeq>,
}

impl Tx<'_> {
    fn feed_cursor(&self, sink: &str) -> TxResult<u64> {
        match self.feed.get(cursor_key(sink))? {
            None => Ok(0),
            Some(v) => codec::be_u64("feed cursor", &v).or_else(abort),
        }
    }

    fn inbox_at(&self, arrival_seq: u64) -> TxResult<Option<InboxRecord>> {
        let Some(id) = self.inbox_arrival.get(arrival_seq.to_be_bytes())? else {
            return Ok(None);
        };
        match self.inbox.get(&id)? {
            Some(v) => codec::decode("inbox record", &id, &v)
                .map(Some)
                .or_else(abort),
            None => abort(StoreError::Corrupt {
                what: "inbox arrival index",
                key: codec::hex(&arrival_seq.to_be_bytes()),
                reason: "names a record that is not in the inbox".into(),
            }),
        }
    }
}

/// Check a hand-over's draft against the record: operation `disclose`, the same record;
/// record id, class and subject pseudonym filled in when absent.
fn complete_draft(mut draft: JournalDraft, rec: &InboxRecord) -> Result<JournalDraft, StoreError> {
    if draft.operation != Operation::Disclose {
        return Err(StoreError::WrongOperation {
            expected: Operation::Disclose,
            found: draft.operation,
        });
    }
    match draft.record_id {
        Some(found) if found != rec.id => {
            return Err(StoreError::WrongRecord {
                expected: rec.id,
                found,
            })
        }
        _ => draft.record_id = Some(rec.id),
    }
    if draft.class.is_none() {
        draft.class = Some(rec.class.clone());
    }
    if draft.subject_ref.is_none() {
        draft.subject_ref = rec.subject_ref.clone();
    }
    Ok(draft)
}

impl Store {
    /// The cursor of `sink`: every record with an arrival number up to it was handed over
    /// or set aside. 0 for a sink that has taken nothing yet.
    pub fn feed_cursor(&self, sink: &str) -> Result<u64, StoreError> {
        match self.trees.feed.get(cursor_key(sink))? {
            None => Ok(0),
            Some(v) => codec::be_u64("feed cursor", &v),
        }
    }

    /// The highest arrival number in the inbox (0 when it is empty).
    pub fn last_arrival(&self) -> Result<u64, StoreError> {
        match self.trees.inbox_arrival.last()? {
            None => Ok(0),
            Some((k, _)) => codec::be_u64("inbox arrival key", &k),
        }
    }

    /// Records `cursor+1 ..= to` were handed over to `sink`: write one `disclose` journal
    /// entry per record (made by `draft` from the record's metadata) and move the cursor to
    /// `to`, in one transaction; return once durable.
    ///
    /// Acknowledging what is already acknowledged (`to` ≤ cursor) writes nothing and returns
    /// the cursor unchanged, so that a consumer may repeat an acknowledgement after a crash.
    /// `to` beyond the last arrival is refused. `draft` may run more than once, on the
    /// store's committer thread (the write shares a transaction and a flush with the others
    /// queued beside it: `Store::write_batched`).
    pub async fn feed_advance<F>(
        &self,
        sink: &str,
        to: u64,
        draft: F,
    ) -> Result<FeedAdvance, StoreError>
    where
        F: Fn(&InboxRecord) -> JournalDraft + Send + 'static,
    {
        // The cursor only moves forward: already there now means already there in the
        // transaction, so a repeated acknowledgement costs no transaction.
        let cursor = self.feed_cursor(sink)?;
        if to <= cursor {
            return Ok(FeedAdvance {
                cursor,
                journal_seqs: Vec::new(),
            });
        }
        let sink = sink.to_owned();
        self.write_batched(move |tx| {
            let sink = sink.as_str();
            let cursor = tx.feed_cursor(sink)?;
            let mut journal_seqs = Vec::new();
            if to <= cursor {
                return Ok(FeedAdvance {
                    cursor,
                    journal_seqs,
                });
            }
            for seq in cursor + 1..=to {
                let Some(rec) = tx.inbox_at(seq)? else {
                    return abort(StoreError::FeedBeyondInbox {
                        sink: sink.to_owned(),
                        to,
                        missing: seq,
                    });
                };
                let entry = complete_draft(draft(&rec), &rec).or_else(abort)?;
                journal_seqs.push(tx.append(&entry)?.seq);
            }
            tx.feed.insert(cursor_key(sink), &to.to_be_bytes())?;
            Ok(FeedAdvance {
                cursor: to,
                journal_seqs,
            })
        })
        .await
    }

    /// Set the record at the sink's next position aside as a dead letter and move the
    /// cursor past it, in one transaction; return once durable. Nothing was handed over, so
    /// nothing is journaled. The letter's `arrival_seq` must be the cursor + 1.
    pub async fn feed_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let value = codec::encode("dead letter", letter)?;
        let sink = letter.sink.as_str();
        let ((), ticket) = self.write(|tx| {
            let cursor = tx.feed_cursor(sink)?;
            if letter.arrival_seq != cursor + 1 {
                return abort(StoreError::FeedCursorMoved {
                    sink: sink.to_owned(),
                    expected: letter.arrival_seq.saturating_sub(1),
                    found: cursor,
                });
            }
            match tx.inbox_at(letter.arrival_seq)? {
                Some(rec) if rec.id == letter.id => {}
                _ => {
                    return abort(StoreError::WrongRecord {
                        expected: letter.id,
                        found: Uuid::nil(),
                    })
                }
            }
            tx.feed
                .insert(dead_key(sink, letter.arrival_seq), value.as_slice())?;
            tx.feed
                .insert(cursor_key(sink), &letter.arrival_seq.to_be_bytes())?;
            Ok(())
        })?;
        self.durable(ticket).await
    }

    /// Journal that records were read from a feed without being handed over yet (a
    /// `stream` sink's reader saw them; its acknowledgement journals the `disclose`): one
    /// `consult` entry per draft, all in one transaction; return their sequence numbers
    /// once durable. Every draft must be a `consult` naming a record of the inbox.
    pub async fn feed_journal_reads(
        &self,
        drafts: &[JournalDraft],
    ) -> Result<Vec<JournalSeq>, StoreError> {
        for d in drafts {
            if d.operation != Operation::Consult {
                return Err(StoreError::WrongOperation {
                    expected: Operation::Consult,
                    found: d.operation,
                });
            }
        }
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let drafts = drafts.to_vec();
        self.write_batched(move |tx| {
            let mut seqs = Vec::with_capacity(drafts.len());
            for d in &drafts {
                let Some(id) = d.record_id else {
                    return abort(StoreError::WrongRecord {
                        expected: Uuid::nil(),
                        found: Uuid::nil(),
                    });
                };
                if tx.inbox.get(id.as_bytes())?.is_none() {
                    return abort(StoreError::WrongRecord {
                        expected: id,
                        found: Uuid::nil(),
                    });
                }
                seqs.push(tx.append(d)?.seq);
            }
            Ok(seqs)
        })
        .await
    }

    /// Dead letters of `sink` (of every sink when `None`), by sink then arrival.
    pub fn feed_dead_letters(&self, sink: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let prefix = match sink {
            Some(s) => dead_prefix(s),
            None => DEAD_PREFIX.to_vec(),
        };
        self.trees
            .feed
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item?;
                codec::decode("dead letter", &k, &v)
            })
            .collect()
    }

    /// Ask for another hand-over of the dead letter `id` of `sink`; return it as updated.
    pub async fn feed_request_retry(&self, sink: &str, id: Uuid) -> Result<DeadLetter, StoreError> {
        let found = self
            .feed_dead_letters(Some(sink))?
            .into_iter()
            .find(|l| l.id == id)
            .ok_or_else(|| StoreError::NoDeadLetter {
                sink: sink.to_owned(),
                id,
            })?;
        let key = dead_key(sink, found.arrival_seq);
        let (letter, ticket) = self.write(|tx| {
            let Some(v) = tx.feed.get(&key)? else {
                return abort(StoreError::NoDeadLetter {
                    sink: sink.to_owned(),
                    id,
                });
            };
            let mut letter: DeadLetter = codec::decode("dead letter", &key, &v).or_else(abort)?;
            letter.retry = true;
            let value = codec::encode("dead letter", &letter).or_else(abort)?;
            tx.feed.insert(key.as_slice(), value)?;
            Ok(letter)
        })?;
        self.durable(ticket).await?;
        Ok(letter)
    }

    /// A retried dead letter failed again: keep it, clear the retry request, note the error.
    pub async fn feed_retry_failed(
        &self,
        sink: &str,
        arrival_seq: u64,
        error: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let key = dead_key(sink, arrival_seq);
        let ((), ticket) = self.write(|tx| {
            let Some(v) = tx.feed.get(&key)? else {
                return Ok(());
            };
            let mut letter: DeadLetter = codec::decode("dead letter", &key, &v).or_else(abort)?;
            letter.retry = false;
            letter.attempts = letter.attempts.saturating_add(1);
            letter.last_error = error.to_owned();
            letter.at = at;
            let value = codec::encode("dead letter", &letter).or_else(abort)?;
            tx.feed.insert(key.as_slice(), value)?;
            Ok(())
        })?;
        self.durable(ticket).await
    }

    /// A retried dead letter was handed over: remove it and journal the `disclose`, in one
    /// transaction; return the entry's sequence number once durable.
    pub async fn feed_retried(
        &self,
        sink: &str,
        arrival_seq: u64,
        draft: JournalDraft,
    ) -> Result<JournalSeq, StoreError> {
        let key = dead_key(sink, arrival_seq);
        let (seq, ticket) = self.write(|tx| {
            let Some(v) = tx.feed.get(&key)? else {
                return abort(StoreError::NoDeadLetter {
                    sink: sink.to_owned(),
                    id: draft.record_id.unwrap_or_default(),
                });
            };
            let letter: DeadLetter = codec::decode("dead letter", &key, &v).or_else(abort)?;
            let Some(rec) = tx.inbox_at(letter.arrival_seq)? else {
                return abort(StoreError::NoDeadLetter {
                    sink: sink.to_owned(),
                    id: letter.id,
                });
            };
            let entry = complete_draft(draft.clone(), &rec).or_else(abort)?;
            let seq = tx.append(&entry)?.seq;
            tx.feed.remove(key.as_slice())?;
            Ok(seq)
        })?;
        self.durable(ticket).await?;
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::NewInboxRecord;
    use crate::Options;
    use pons_core::journal::Outcome;
    use pons_core::NodeId;

    fn node(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn t0() -> OffsetDateTime {
        time::macros::datetime!(2026-11-23 10:00 UTC)
    }

    fn stand_in_sealer() -> crate::ReceiptSealer {
        std::sync::Arc::new(|_: &crate::ReceiptBatch<'_>| Ok(vec![0xaa]))
    }

    async fn receive(store: &Store, n: u8) -> Uuid {
        let id = Uuid::from_bytes([n; 16]);
        let rec = NewInboxRecord {
            id,
            from: node("adolescence"),
            class: "minor-risk-report".into(),
            subject_ref: Some(format!("subject-{n}")),
            received_at: t0(),
            envelope_sha256: [n; 32],
        };
        let draft = JournalDraft::new(
            t0(),
            node("cuta"),
            "system",
            Operation::Receive,
            Outcome::Success,
        );
        store
            .receive(rec, &[n, n, n], draft, &stand_in_sealer())
            .await
            .unwrap();
        id
    }

    fn disclose(sink: &str) -> impl Fn(&InboxRecord) -> JournalDraft + Send + 'static {
        let sink = sink.to_owned();
        move |_| {
            let mut d = JournalDraft::new(
                t0(),
                node("cuta"),
                "system",
                Operation::Disclose,
                Outcome::Success,
            );
            d.justification = Some(format!("sink:{sink}"));
            d
        }
    }

    #[tokio::test]
    async fn advance_journals_each_record_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ids = {
            let store = Store::open(dir.path(), Options::default()).unwrap();
            let mut ids = Vec::new();
            for n in 1..=3 {
                ids.push(receive(&store, n).await);
            }
            assert_eq!(store.feed_cursor("spool").unwrap(), 0);
            let a = store
                .feed_advance("spool", 2, disclose("spool"))
                .await
                .unwrap();
            assert_eq!(a.cursor, 2);
            assert_eq!(a.journal_seqs.len(), 2);
            // Repeated and older acknowledgements write nothing.
            let again = store
                .feed_advance("spool", 2, disclose("spool"))
                .await
                .unwrap();
            assert_eq!((again.cursor, again.journal_seqs.len()), (2, 0));
            let older = store
                .feed_advance("spool", 1, disclose("spool"))
                .await
                .unwrap();
            assert_eq!((older.cursor, older.journal_seqs.len()), (2, 0));
            // Another sink has its own cursor.
            assert_eq!(store.feed_cursor("exec").unwrap(), 0);
            // Beyond the inbox is refused and changes nothing.
            let err = store
                .feed_advance("spool", 9, disclose("spool"))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::FeedBeyondInbox { missing: 4, .. }),
                "{err}"
            );
            assert_eq!(store.feed_cursor("spool").unwrap(), 2);
            ids
        };
        let store = Store::open(dir.path(), Options::default()).unwrap();
        assert_eq!(store.feed_cursor("spool").unwrap(), 2);
        assert_eq!(store.last_arrival().unwrap(), 3);
        store.verify_journal().unwrap();
        let disclosed: Vec<_> = store
            .journal_iter(0)
            .map(|e| e.unwrap())
            .filter(|e| e.operation == Operation::Disclose)
            .collect();
        assert_eq!(disclosed.len(), 2);
        assert_eq!(disclosed[0].record_id, Some(ids[0]));
        assert_eq!(disclosed[1].record_id, Some(ids[1]));
        assert_eq!(disclosed[0].justification.as_deref(), Some("sink:spool"));
        assert_eq!(disclosed[0].subject_ref.as_deref(), Some("subject-1"));
        assert_eq!(disclosed[0].counterpart, None);
    }

    #[tokio::test]
    async fn reads_are_journaled_as_consultations_of_inbox_records_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let id = receive(&store, 1).await;
        let consult = |record: Uuid, op: Operation| {
            let mut d = JournalDraft::new(t0(), node("cuta"), "oscar", op, Outcome::Success);
            d.record_id = Some(record);
            d
        };
        let head = store.journal_head().unwrap();
        let err = store
            .feed_journal_reads(&[consult(id, Operation::Disclose)])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::WrongOperation { .. }), "{err}");
        let stranger = Uuid::from_bytes([9; 16]);
        let err = store
            .feed_journal_reads(&[
                consult(id, Operation::Consult),
                consult(stranger, Operation::Consult),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::WrongRecord { .. }), "{err}");
        assert_eq!(store.journal_head().unwrap(), head, "nothing written");
        let seqs = store
            .feed_journal_reads(&[consult(id, Operation::Consult)])
            .await
            .unwrap();
        assert_eq!(seqs, vec![head.seq + 1]);
    }

    #[tokio::test]
    async fn a_draft_for_another_operation_is_refused_and_nothing_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        receive(&store, 1).await;
        let head = store.journal_head().unwrap();
        let err = store
            .feed_advance("spool", 1, |_| {
                JournalDraft::new(
                    t0(),
                    node("cuta"),
                    "system",
                    Operation::Consult,
                    Outcome::Success,
                )
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::WrongOperation { .. }), "{err}");
        assert_eq!(store.feed_cursor("spool").unwrap(), 0);
        assert_eq!(store.journal_head().unwrap(), head);
    }

    #[tokio::test]
    async fn dead_letters_are_set_aside_retried_and_removed_once_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let a = receive(&store, 1).await;
        let b = receive(&store, 2).await;
        let letter = |id, seq| DeadLetter {
            sink: "exec".into(),
            id,
            arrival_seq: seq,
            attempts: 3,
            last_error: "exit status 1".into(),
            at: t0(),
            retry: false,
        };
        // Only the record at the cursor may be set aside.
        let err = store.feed_dead_letter(&letter(b, 2)).await.unwrap_err();
        assert!(matches!(err, StoreError::FeedCursorMoved { .. }), "{err}");
        store.feed_dead_letter(&letter(a, 1)).await.unwrap();
        assert_eq!(store.feed_cursor("exec").unwrap(), 1);
        assert_eq!(store.feed_dead_letters(None).unwrap(), vec![letter(a, 1)]);
        assert!(store.feed_dead_letters(Some("spool")).unwrap().is_empty());

        let err = store.feed_request_retry("exec", b).await.unwrap_err();
        assert!(matches!(err, StoreError::NoDeadLetter { .. }), "{err}");
        let asked = store.feed_request_retry("exec", a).await.unwrap();
        assert!(asked.retry);
        store
            .feed_retry_failed("exec", 1, "exit status 2", t0())
            .await
            .unwrap();
        let kept = &store.feed_dead_letters(Some("exec")).unwrap()[0];
        assert_eq!((kept.retry, kept.attempts), (false, 4));
        assert_eq!(kept.last_error, "exit status 2");

        let mut draft = disclose("exec")(&store.inbox_get(a).unwrap().unwrap());
        draft.record_id = Some(a);
        store.feed_retried("exec", 1, draft).await.unwrap();
        assert!(store.feed_dead_letters(None).unwrap().is_empty());
        let disclosed = store
            .journal_iter(0)
            .map(|e| e.unwrap())
            .filter(|e| e.operation == Operation::Disclose)
            .count();
        assert_eq!(disclosed, 1);
    }
}
