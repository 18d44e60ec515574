//! Errors of the store.

use pons_core::journal::{ChainError, Operation};
use uuid::Uuid;

use crate::outbox::StateKind;

/// What can go wrong when reading or writing the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database engine failed (I/O error, corruption detected by sled).
    #[error("database: {0}")]
    Database(String),
    /// A file next to the database could not be opened or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The master key is malformed or could not be made.
    #[error("master key: {reason}")]
    MasterKey {
        /// The rule broken or the failure.
        reason: String,
    },
    /// An encrypted body was read from a store opened without a master key.
    #[error("{what} {id} is encrypted: the store must be opened with the node's master key")]
    NoMasterKey {
        /// Which body.
        what: &'static str,
        /// The record id.
        id: Uuid,
    },
    /// The record has no retention entry (unknown, erased, or stored before retention).
    #[error("record {id}: no retention entry (not stored here, or erased)")]
    NoRetention {
        /// The record id.
        id: Uuid,
    },
    /// A hold was to be lifted from a record that has none.
    #[error("record {id}: is not under a legal hold")]
    NotHeld {
        /// The record id.
        id: Uuid,
    },
    /// A held record may not be erased.
    #[error("record {id}: under a legal hold, it is not erased (LED art. 16(3))")]
    Held {
        /// The record id.
        id: Uuid,
    },
    /// The caller's check refused the erasure.
    #[error("record {id}: not erased: {reason}")]
    EraseRefused {
        /// The record id.
        id: Uuid,
        /// The rule.
        reason: String,
    },
    /// A delivered record's erasure must store the erasure notice to its recipient.
    #[error(
        "record {id}: not erased: it was delivered, so its erasure needs the erasure notice \
         to its recipient (LED art. 16(6))"
    )]
    NoticeNeeded {
        /// The record id.
        id: Uuid,
    },
    /// A record was erased here while in flight, and its receipt has come: its delivery is
    /// stored only with the erasure notice that tells the recipient
    /// ([`crate::Store::mark_delivered_notifying`]).
    #[error(
        "record {id}: erased here while in flight: its delivery needs the erasure notice to \
         its recipient (LED art. 16(6))"
    )]
    ErasedInFlight {
        /// The record id.
        id: Uuid,
    },
    /// A record with this id is already in the outbox.
    #[error("outbox record {id} already exists")]
    OutboxDuplicate {
        /// The record id.
        id: Uuid,
    },
    /// No outbox record has this id.
    #[error("outbox record {id} not found")]
    OutboxNotFound {
        /// The record id.
        id: Uuid,
    },
    /// The outbox record's state does not allow the requested change.
    #[error("outbox record {id} is {from}: it cannot become {to}")]
    InvalidTransition {
        /// The record id.
        id: Uuid,
        /// The state the record is in.
        from: StateKind,
        /// The state that was requested.
        to: StateKind,
    },
    /// A refusal was journaled for a record of this node's own outbox.
    #[error("record {id} is in this node's outbox: its rejection is journaled by mark_rejected")]
    OwnRecordRefusal {
        /// The record id.
        id: Uuid,
    },
    /// A record with this id is already in the inbox (use `lookup` to compare digests).
    #[error("inbox record {id} already received")]
    AlreadyReceived {
        /// The record id.
        id: Uuid,
    },
    /// The journal draft does not describe the operation being stored.
    #[error("journal draft operation is {found}, this change requires {expected}")]
    WrongOperation {
        /// The operation the change must be journaled as.
        expected: Operation,
        /// The operation the draft named.
        found: Operation,
    },
    /// The journal draft names another record than the one being changed.
    #[error("journal draft record_id {found} is not the record {expected}")]
    WrongRecord {
        /// The record being changed.
        expected: Uuid,
        /// The record the draft named.
        found: Uuid,
    },
    /// The receipt builder refused to make a receipt; nothing was stored.
    #[error("receipt for inbox record {id} could not be made: {reason}")]
    Receipt {
        /// The record id.
        id: Uuid,
        /// Why the builder failed.
        reason: String,
    },
    /// A stored value does not decode: the database was altered or is from another version.
    #[error("stored {what} at key {key} does not decode: {reason}")]
    Corrupt {
        /// Which kind of value.
        what: &'static str,
        /// The key, in hex.
        key: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// A journal file is damaged, or the journal files do not hold what the journal head
    /// and the write-ahead log say they must (`journal/log.rs`).
    #[error("journal file {path}: {reason}")]
    JournalFile {
        /// The file (or the journal directory, for what concerns the files together).
        path: String,
        /// What is wrong, and where in the file.
        reason: String,
    },
    /// The journal's hash chain does not verify.
    #[error("journal integrity: {0}")]
    Chain(#[from] ChainError),
    /// The journal head in the meta tree disagrees with the last journal entry.
    #[error("journal head says seq {head_seq}, the last entry is seq {last_seq}")]
    HeadMismatch {
        /// Sequence number recorded in the head.
        head_seq: u64,
        /// Sequence number of the last stored entry (0 if none).
        last_seq: u64,
    },
    /// A background task (fdatasync) did not complete.
    #[error("background task: {0}")]
    Task(String),
    /// One commit's changes are more than a write-ahead log record holds.
    #[error(
        "one commit's changes take {bytes} bytes; the write-ahead log takes at most {max} \
         per commit (nothing of it was stored)"
    )]
    CommitTooLarge {
        /// The record's payload size.
        bytes: usize,
        /// The largest payload a record holds.
        max: usize,
    },
    /// A feed acknowledgement names an arrival number the inbox does not hold.
    #[error("feed sink {sink}: cannot advance to {to}: no record has arrival number {missing}")]
    FeedBeyondInbox {
        /// The sink.
        sink: String,
        /// The requested cursor.
        to: u64,
        /// The first arrival number not in the inbox.
        missing: u64,
    },
    /// A feed change expected the sink's cursor elsewhere (another writer moved it).
    #[error("feed sink {sink}: cursor is {found}, expected {expected}")]
    FeedCursorMoved {
        /// The sink.
        sink: String,
        /// The cursor the change expected.
        expected: u64,
        /// The cursor found.
        found: u64,
    },
    /// No dead letter of this sink holds this record.
    #[error("feed sink {sink}: record {id} is not a dead letter")]
    NoDeadLetter {
        /// The sink.
        sink: String,
        /// The record id.
        id: Uuid,
    },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl StoreError {
    /// Whether this is an integrity failure (the journal's chain, its head or its files, or
    /// a stored value that does not decode) rather than a runtime one: the CLI's exit 3.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            StoreError::Chain(_)
                | StoreError::HeadMismatch { .. }
                | StoreError::Corrupt { .. }
                | StoreError::JournalFile { .. }
        )
    }
}
