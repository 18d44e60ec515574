//! Reading the journal, and journal entries for operations that change no stored state.

use pons_core::journal::{verify_chain_from, ChainHead, JournalDraft, JournalEntry, Operation};

use crate::{codec, decode_head, encode_head, JournalSeq, Store, StoreError, HEAD_KEY};

/// Meta key of the pruned journal's anchor: head (40 bytes) then the checkpoint envelope.
const ANCHOR_KEY: &[u8] = b"journal_anchor";

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
        match self.trees.meta.get(HEAD_KEY)? {
            None => Ok(ChainHead::genesis()),
            Some(v) => decode_head(&v),
        }
    }

    /// Journal entries from sequence number `from_seq` on, in order.
    pub fn journal_iter(
        &self,
        from_seq: JournalSeq,
    ) -> impl Iterator<Item = Result<JournalEntry, StoreError>> + Send + 'static {
        self.trees
            .journal
            .range(from_seq.to_be_bytes()..)
            .map(|item| {
                let (k, v) = item?;
                codec::decode::<JournalEntry>("journal entry", &k, &v)
            })
    }

    /// The anchor of a pruned journal: the first entry kept (its seq and hash, pinned by
    /// the signed checkpoint that is returned with it). `None` if never pruned.
    pub fn journal_anchor(&self) -> Result<Option<(ChainHead, Vec<u8>)>, StoreError> {
        match self.trees.meta.get(ANCHOR_KEY)? {
            None => Ok(None),
            Some(v) if v.len() > 40 => {
                let head = decode_head(&v[..40])?;
                Ok(Some((head, v[40..].to_vec())))
            }
            Some(v) => Err(StoreError::Corrupt {
                what: "journal anchor",
                key: codec::hex(ANCHOR_KEY),
                reason: format!("expected more than 40 bytes, found {}", v.len()),
            }),
        }
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
        let mut value = encode_head(anchor).to_vec();
        value.extend_from_slice(checkpoint);
        self.trees.meta.insert(ANCHOR_KEY, value)?;
        self.flush().await?;
        let mut removed = 0u64;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in self
                .trees
                .journal
                .range(..anchor.seq.to_be_bytes())
                .take(10_000)
            {
                let (k, _) = item?;
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.trees.journal.apply_batch(batch)?;
            removed += n;
        }
        self.flush().await?;
        Ok(removed)
    }

    /// Verify the kept journal chain (from genesis, or from the anchor after pruning) and
    /// that the stored head names its last entry. Streams: memory use does not grow with
    /// the journal.
    pub fn verify_journal(&self) -> Result<ChainHead, StoreError> {
        let mut head = self.journal_start()?;
        for entry in self.journal_iter(head.seq + 1) {
            let entry = entry?;
            head = verify_chain_from(std::iter::once(&entry), head)?;
        }
        let stored = self.journal_head()?;
        if stored != head {
            return Err(StoreError::HeadMismatch {
                head_seq: stored.seq,
                last_seq: head.seq,
            });
        }
        Ok(head)
    }
}
