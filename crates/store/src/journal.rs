//! Reading the journal, and journal entries for operations that change no stored state.
//!
//! The entries themselves are in the journal files (`journal/log.rs`), not in sled.

pub(crate) mod log;

use pons_core::journal::{
    canonical_seq_and_prev, hash_canonical, verify_chain_from, ChainHead, JournalDraft,
    JournalEntry, Operation,
};

use std::sync::{Arc, PoisonError};

use crate::{codec, decode_head, encode_head, JournalSeq, Store, StoreError, HEAD_KEY};

/// Meta key of the pruned journal's anchor: head (40 bytes) then the checkpoint envelope.
pub(crate) const ANCHOR_KEY: &[u8] = b"journal_anchor";

impl Store {
    /// Append a journal entry for an operation that changes no stored state (`consult`,
    /// `journal-read`, `export`, …) and return its sequence number once durable.
    ///
    /// Operations that this store journals with their state change (`collect`, `disclose`,
    /// `receive`, `reject`) are refused here, so they can only be journaled together with it.
    pub async fn append_journal(&self, draft: JournalDraft) -> Result<JournalSeq, StoreError> {
        let owned = match draft.operation {
            Operation::Collect => Some(Operation::Collect),
            Operation::Disclose => Some(Operation::Disclose),
            Operation::Receive => Some(Operation::Receive),
            Operation::Reject => Some(Operation::Reject),
            _ => None,
        };
        if let Some(op) = owned {
            return Err(StoreError::WrongOperation {
                expected: Operation::Consult,
                found: op,
            });
        }
        let (seq, ticket) = self.write(|tx| Ok(tx.append(&draft)?.seq))?;
        self.durable(ticket).await?;
        Ok(seq)
    }

    /// Append many entries for operations that change no stored state, in one transaction
    /// and one flush (imports, benchmarks); the same operations as [`Store::append_journal`]
    /// are refused. Returns the sequence number of the last entry once durable.
    pub async fn append_journal_many(
        &self,
        drafts: &[JournalDraft],
    ) -> Result<JournalSeq, StoreError> {
        for draft in drafts {
            if matches!(
                draft.operation,
                Operation::Collect | Operation::Disclose | Operation::Receive | Operation::Reject
            ) {
                return Err(StoreError::WrongOperation {
                    expected: Operation::Consult,
                    found: draft.operation,
                });
            }
        }
        let (seq, ticket) = self.write(|tx| {
            let mut seq = 0;
            for draft in drafts {
                seq = tx.append(draft)?.seq;
            }
            Ok(seq)
        })?;
        self.durable(ticket).await?;
        Ok(seq)
    }

    /// Journal a record this node refused to receive (operation `reject`), and return its
    /// sequence number once durable.
    ///
    /// A refused incoming record changes no stored state (nothing of it is kept), but the
    /// refusal is an operation on personal data the DPO must see. A sender's record
    /// rejected by its recipient is journaled by [`Store::mark_rejected`] instead, so a
    /// draft naming a record of this node's outbox is refused here.
    pub async fn journal_refusal(&self, draft: JournalDraft) -> Result<JournalSeq, StoreError> {
        if draft.operation != Operation::Reject {
            return Err(StoreError::WrongOperation {
                expected: Operation::Reject,
                found: draft.operation,
            });
        }
        let (seq, ticket) = self.write(|tx| {
            if let Some(id) = draft.record_id {
                if tx.outbox.get(id.as_bytes())?.is_some() {
                    return crate::abort(StoreError::OwnRecordRefusal { id });
                }
            }
            Ok(tx.append(&draft)?.seq)
        })?;
        self.durable(ticket).await?;
        Ok(seq)
    }

    /// The journal head: sequence number and hash of the last entry.
    pub fn journal_head(&self) -> Result<ChainHead, StoreError> {
        head_of(self.trees.meta.get(HEAD_KEY)?.as_deref())
    }

    /// Journal entries from sequence number `from_seq` on, in order.
    pub fn journal_iter(
        &self,
        from_seq: JournalSeq,
    ) -> impl Iterator<Item = Result<JournalEntry, StoreError>> + Send + 'static {
        self.trees.journal_log.entries(from_seq).map(|item| {
            let (seq, v) = item?;
            decode_entry(&seq.to_be_bytes(), &v)
        })
    }

    /// The anchor of a pruned journal: the first entry kept (its seq and hash, pinned by
    /// the signed checkpoint that is returned with it). `None` if never pruned.
    pub fn journal_anchor(&self) -> Result<Option<(ChainHead, Vec<u8>)>, StoreError> {
        anchor_of(self.trees.meta.get(ANCHOR_KEY)?.as_deref())
    }

    /// Where verification of the kept journal starts: the head just before the anchor entry
    /// (its `prev_hash`), or genesis for a journal never pruned.
    pub fn journal_start(&self) -> Result<ChainHead, StoreError> {
        let Some((anchor, _)) = self.journal_anchor()? else {
            return Ok(ChainHead::genesis());
        };
        match self.journal_iter(anchor.seq).next() {
            Some(Ok(e)) if e.seq == anchor.seq && e.hash == anchor.hash => Ok(ChainHead {
                seq: e.seq - 1,
                hash: e.prev_hash,
            }),
            Some(Err(e)) => Err(e),
            _ => Err(StoreError::Chain(pons_core::journal::ChainError {
                seq: anchor.seq,
                reason: pons_core::journal::ChainFault::BadHash,
            })),
        }
    }

    /// Removes the entries before `anchor.seq` (journal retention). `anchor` must name an
    /// entry of the journal exactly (seq and hash), and `checkpoint` is this node's signed
    /// checkpoint of that head (checked by the caller): it keeps the rest verifiable.
    /// Returns how many entries were removed.
    ///
    /// The anchor is written (and flushed) before any entry is removed, so a crash in the
    /// middle leaves entries that verification ignores and a later prune removes.
    pub async fn prune_journal(
        &self,
        anchor: ChainHead,
        checkpoint: &[u8],
        draft: JournalDraft,
    ) -> Result<u64, StoreError> {
        match self.journal_iter(anchor.seq).next() {
            Some(Ok(e)) if e.seq == anchor.seq && e.hash == anchor.hash => {}
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(StoreError::Chain(pons_core::journal::ChainError {
                    seq: anchor.seq,
                    reason: pons_core::journal::ChainFault::BadHash,
                }))
            }
        }
        if let Some((old, _)) = self.journal_anchor()? {
            if old.seq > anchor.seq {
                return Ok(0);
            }
        }
        if draft.operation != Operation::Erase {
            return Err(StoreError::WrongOperation {
                expected: Operation::Erase,
                found: draft.operation,
            });
        }
        // The new anchor and the `erase` entry recording the pruning are written in one
        // transaction, before any entry is removed: a crash afterwards leaves entries before
        // the anchor, which the next pruning removes; never a pruning without its entry.
        let mut value = encode_head(anchor).to_vec();
        value.extend_from_slice(checkpoint);
        let ((), ticket) = self.write(|tx| {
            tx.meta.insert(ANCHOR_KEY, value.as_slice())?;
            tx.append(&draft)?;
            Ok(())
        })?;
        self.durable(ticket).await?;
        // The files are rewritten with the write lock held, so that no commit appends
        // meanwhile; a crash in the middle is finished at the next open (`log.rs`).
        let (log, write_lock) = (
            Arc::clone(&self.trees.journal_log),
            Arc::clone(&self.shared.write_lock),
        );
        tokio::task::spawn_blocking(move || {
            let _guard = write_lock.lock().unwrap_or_else(PoisonError::into_inner);
            log.prune(anchor.seq)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Verify the kept journal chain (from genesis, or from the anchor after pruning) and
    /// that the stored head names its last entry. Streams: memory use does not grow with
    /// the journal.
    pub fn verify_journal(&self) -> Result<ChainHead, StoreError> {
        self.verify_journal_with(|_| {})
    }

    /// [`Store::verify_journal`], calling `progress` with each entry's seq (for progress
    /// bars and benchmarks).
    ///
    /// Entries in the canonical storage format are checked without decoding them: the
    /// hash is recomputed over the stored canonical bytes, and seq and prev_hash are read
    /// from them (`pons_core::journal::canonical_seq_and_prev`).
    pub fn verify_journal_with(
        &self,
        mut progress: impl FnMut(u64),
    ) -> Result<ChainHead, StoreError> {
        let mut head = self.journal_start()?;
        // The head and the entries as of one moment: a commit moves both under the write
        // half of the visibility lock.
        let (stored, entries) = {
            let _visible = self
                .trees
                .visible
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            // sled's tree itself: `Tree::get` would take the read lock held here again.
            let stored = head_of(self.trees.meta.inner.get(HEAD_KEY)?.as_deref())?;
            (stored, self.trees.journal_log.entries(head.seq + 1))
        };
        for item in entries {
            let (seq, v) = item?;
            let k = seq.to_be_bytes();
            head = match v.split_first() {
                Some((&FORMAT_CANONICAL, rest)) if rest.len() > 32 => {
                    let (hash, canonical) = rest.split_at(32);
                    let Some((seq, prev)) = canonical_seq_and_prev(canonical) else {
                        return Err(corrupt_entry(&k, "not a canonical entry"));
                    };
                    let key_seq = codec::be_u64("journal key", &k)?;
                    let expected = head.seq.wrapping_add(1);
                    let fault =
                        |reason| StoreError::Chain(pons_core::journal::ChainError { seq, reason });
                    if seq != expected || key_seq != seq {
                        return Err(fault(pons_core::journal::ChainFault::SeqGap { expected }));
                    }
                    if prev != head.hash {
                        return Err(fault(pons_core::journal::ChainFault::BrokenLink));
                    }
                    if hash_canonical(&prev, canonical) != hash {
                        return Err(fault(pons_core::journal::ChainFault::BadHash));
                    }
                    let mut h = [0u8; 32];
                    h.copy_from_slice(hash);
                    ChainHead { seq, hash: h }
                }
                _ => {
                    let entry = decode_entry(&k, &v)?;
                    verify_chain_from(std::iter::once(&entry), head)?
                }
            };
            progress(head.seq);
        }
        if stored != head {
            return Err(StoreError::HeadMismatch {
                head_seq: stored.seq,
                last_seq: head.seq,
            });
        }
        Ok(head)
    }
}

/// The journal head as the `meta` tree holds it (`None`: no entry yet, genesis).
pub(crate) fn head_of(stored: Option<&[u8]>) -> Result<ChainHead, StoreError> {
    stored.map_or(Ok(ChainHead::genesis()), decode_head)
}

/// The pruned journal's anchor as the `meta` tree holds it: the first entry kept and its
/// checkpoint (`None`: never pruned).
pub(crate) fn anchor_of(stored: Option<&[u8]>) -> Result<Option<(ChainHead, Vec<u8>)>, StoreError> {
    match stored {
        None => Ok(None),
        Some(v) if v.len() > 40 => Ok(Some((decode_head(&v[..40])?, v[40..].to_vec()))),
        Some(v) => Err(StoreError::Corrupt {
            what: "journal anchor",
            key: codec::hex(ANCHOR_KEY),
            reason: format!("expected more than 40 bytes, found {}", v.len()),
        }),
    }
}

/// First byte of a journal value in the canonical format: `0x01 || hash (32) || canonical
/// bytes`. Values written before it are ciborium maps (first byte 0xa0..=0xbf), read as
/// such.
const FORMAT_CANONICAL: u8 = 0x01;

/// The stored form of an entry: its hash and canonical bytes, so that verification hashes
/// what is stored without decoding it.
pub(crate) fn encode_entry(entry: &JournalEntry) -> Vec<u8> {
    let canonical = entry.canonical_bytes();
    let mut out = Vec::with_capacity(33 + canonical.len());
    out.push(FORMAT_CANONICAL);
    out.extend_from_slice(&entry.hash);
    out.extend_from_slice(&canonical);
    out
}

fn corrupt_entry(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        what: "journal entry",
        key: codec::hex(key),
        reason: reason.to_owned(),
    }
}

/// Reads a stored entry in either format.
pub(crate) fn decode_entry(key: &[u8], v: &[u8]) -> Result<JournalEntry, StoreError> {
    match v.split_first() {
        Some((&FORMAT_CANONICAL, rest)) if rest.len() > 32 => {
            let (hash, canonical) = rest.split_at(32);
            let mut h = [0u8; 32];
            h.copy_from_slice(hash);
            JournalEntry::from_canonical(canonical, h)
                .map_err(|e| corrupt_entry(key, &e.to_string()))
        }
        _ => codec::decode::<JournalEntry>("journal entry", key, v),
    }
}
