//! Reading the journal, and journal entries for operations that change no stored state.

use pons_core::journal::{verify_chain_from, ChainHead, JournalDraft, JournalEntry, Operation};

use crate::{codec, decode_head, JournalSeq, Store, StoreError, HEAD_KEY};

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

    /// Verify the whole journal chain and that the stored head names its last entry.
    /// Streams: memory use does not grow with the journal.
    pub fn verify_journal(&self) -> Result<ChainHead, StoreError> {
        let mut head = ChainHead::genesis();
        for entry in self.journal_iter(0) {
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
