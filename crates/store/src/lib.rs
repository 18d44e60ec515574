//! Pons store: the durable state of one node, in sled.
//!
//! One sled database per node holds the outbox (records this node sends), the inbox (records
//! it received, in arrival order, with the receipt it answered), and the hash-chained audit
//! journal. The rules — how a journal entry is encoded and chained — live in
//! [`pons_core::journal`]; this crate carries them out.
//!
//! Invariants this crate keeps:
//! - Every change to a record's state and its journal entry are written in **one** sled
//!   transaction (over all trees), so neither is ever durable without the other.
//! - Journal entries are sealed inside that transaction from the head stored in the `meta`
//!   tree, so sequence numbers have no gaps and the chain has no forks.
//! - A write method returns only after the write is flushed (and, with
//!   [`Durability::FlushAndSync`], fdatasync'ed): an id, receipt or sequence number handed to
//!   anyone is never lost by a process crash.
//! - Only this crate imports sled.
//!
//! Writes are serialised by a mutex held for the (short) transaction only; flushing happens
//! outside it and is shared: one flush (and, with [`Durability::FlushAndSync`], one
//! fdatasync) runs at a time and covers every writer waiting for it — group commit. The
//! writes of the exchange's hot path go further and share the transaction itself: see
//! `batch.rs`.

mod batch;
mod checkpoint;
mod cipher;
mod codec;
mod error;
mod feed;
mod inbox;
mod journal;
mod outbox;
mod retention;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pons_core::journal::{ChainHead, JournalDraft, JournalEntry, Operation};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};
use uuid::Uuid;

pub use checkpoint::StoredCosigned;
pub use cipher::{MasterKey, KEY_LEN};
pub use error::StoreError;
pub use feed::{DeadLetter, FeedAdvance};
pub use inbox::{
    InboxMeta, InboxRecord, NewInboxRecord, ReceiptBatch, ReceiptContext, ReceiptSealer, Received,
    RECEIPT_BATCH,
};
pub use outbox::{NewOutboxRecord, OutboxFilter, OutboxRecord, OutboxState, StateKind, Submission};
pub use retention::{Due, EraseOrder, Erased, Hold, Place, RetentionEntry};

/// Sequence number of a journal entry.
pub type JournalSeq = u64;

/// How hard a write is pushed to disk before the write method returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// sled's `flush`: the log is written and `sync_file_range`'d. Survives a process crash;
    /// a power loss or kernel crash can lose the last writes (see the crate README).
    #[default]
    Flush,
    /// `flush`, then `fdatasync` of the database file: also survives a power loss on a disk
    /// that honours cache flushes.
    FlushAndSync,
}

/// Options for [`Store::open`]. Non-exhaustive: start from `Options::default()` and set
/// fields.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// How hard writes are pushed to disk before they are acknowledged.
    pub durability: Durability,
    /// The node's master key, which wraps every record's data key. Without it, new bodies are
    /// stored in clear (format 0x00) and encrypted bodies cannot be read: a node always opens
    /// its store with it; tools that only read the journal may not.
    pub master_key: Option<MasterKey>,
}

const HEAD_KEY: &[u8] = b"journal_head";
const ARRIVAL_KEY: &[u8] = b"inbox_arrival";

/// The durable state of one node.
pub struct Store {
    db: sled::Db,
    trees: Trees,
    dir: PathBuf,
    durability: Durability,
    master_key: Option<MasterKey>,
    /// What writers and the committer thread share: transactions and durability.
    shared: Shared,
    /// The committer of batched writes ([`Store::write_batched`]); dropped (and joined)
    /// with the store.
    batcher: batch::Batcher,
}

/// The handles of one store that transactions and flushes need, shared by [`Store`] and its
/// committer thread (each field is a reference-counted handle).
#[derive(Clone)]
pub(crate) struct Shared {
    db: sled::Db,
    trees: Trees,
    dir: PathBuf,
    /// The sled data file, kept open for fdatasync (FlushAndSync only).
    db_file: Option<Arc<File>>,
    /// Serialises write transactions: they all touch the journal head, so running them one
    /// at a time avoids conflict retries and keeps tickets in commit order.
    write_lock: Arc<Mutex<()>>,
    /// Number of committed write transactions (the last ticket handed out).
    committed: Arc<AtomicU64>,
    /// Highest ticket known to be flushed (and fdatasync'ed with FlushAndSync); held while
    /// a flush runs, so that one flush at a time covers every writer waiting.
    synced: Arc<tokio::sync::Mutex<u64>>,
}

#[derive(Clone)]
struct Trees {
    outbox: sled::Tree,
    outbox_body: sled::Tree,
    outbox_pending: sled::Tree,
    inbox: sled::Tree,
    inbox_body: sled::Tree,
    inbox_arrival: sled::Tree,
    receipts: sled::Tree,
    journal: sled::Tree,
    meta: sled::Tree,
    feed: sled::Tree,
    body_keys: sled::Tree,
    retention: sled::Tree,
    deadlines: sled::Tree,
}

/// The trees as seen inside one transaction.
pub(crate) struct Tx<'a> {
    pub(crate) outbox: &'a TransactionalTree,
    pub(crate) outbox_body: &'a TransactionalTree,
    pub(crate) outbox_pending: &'a TransactionalTree,
    pub(crate) inbox: &'a TransactionalTree,
    pub(crate) inbox_body: &'a TransactionalTree,
    pub(crate) inbox_arrival: &'a TransactionalTree,
    pub(crate) receipts: &'a TransactionalTree,
    pub(crate) journal: &'a TransactionalTree,
    pub(crate) meta: &'a TransactionalTree,
    pub(crate) feed: &'a TransactionalTree,
    /// Wrapped data keys of encrypted bodies, by tree tag and record id.
    pub(crate) body_keys: &'a TransactionalTree,
    /// Retention entries by record id (see [`retention`]).
    pub(crate) retention: &'a TransactionalTree,
    /// The index of review dates, erasure dates and holds (see [`retention`]).
    pub(crate) deadlines: &'a TransactionalTree,
    /// Records stored by this transaction that wait for their receipt (see `inbox.rs`).
    pub(crate) receipts_due: RefCell<Vec<inbox::ReceiptDue>>,
    /// The batched write running now (see `batch.rs`); 0 outside a batch.
    pub(crate) job: Cell<usize>,
}

pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// Abort the running transaction with `e`; nothing it wrote is kept.
pub(crate) fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

impl Tx<'_> {
    /// The journal head as of this transaction.
    pub(crate) fn head(&self) -> TxResult<ChainHead> {
        match self.meta.get(HEAD_KEY)? {
            None => Ok(ChainHead::genesis()),
            Some(v) => decode_head(&v).or_else(abort),
        }
    }

    /// Seal `draft` as the next journal entry and move the head; part of the transaction.
    pub(crate) fn append(&self, draft: &JournalDraft) -> TxResult<JournalEntry> {
        let head = self.head()?;
        let entry = JournalEntry::seal(draft.clone(), head.seq + 1, head.hash);
        let value = journal::encode_entry(&entry);
        self.journal.insert(&entry.seq.to_be_bytes(), value)?;
        self.meta
            .insert(HEAD_KEY, &encode_head(ChainHead::of(&entry))[..])?;
        Ok(entry)
    }

    /// Take the next inbox arrival sequence number; part of the transaction.
    pub(crate) fn next_arrival(&self) -> TxResult<u64> {
        let last = match self.meta.get(ARRIVAL_KEY)? {
            None => 0,
            Some(v) => codec::be_u64("inbox arrival counter", &v).or_else(abort)?,
        };
        let next = last + 1;
        self.meta.insert(ARRIVAL_KEY, &next.to_be_bytes())?;
        Ok(next)
    }
}

fn encode_head(head: ChainHead) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&head.seq.to_be_bytes());
    out[8..].copy_from_slice(&head.hash);
    out
}

fn decode_head(v: &[u8]) -> Result<ChainHead, StoreError> {
    let corrupt = || StoreError::Corrupt {
        what: "journal head",
        key: codec::hex(HEAD_KEY),
        reason: format!("expected 40 bytes, found {}", v.len()),
    };
    if v.len() != 40 {
        return Err(corrupt());
    }
    let seq = codec::be_u64("journal head", &v[..8])?;
    let hash: [u8; 32] = v[8..].try_into().map_err(|_| corrupt())?;
    Ok(ChainHead { seq, hash })
}

impl Store {
    /// Open (or create) the store in directory `path`.
    ///
    /// Logs whether sled had to recover from an unclean shutdown, and checks that the journal
    /// head agrees with the last journal entry.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store, StoreError> {
        let dir = path.as_ref().to_path_buf();
        let db = sled::Config::new().path(&dir).open()?;
        if db.was_recovered() {
            tracing::info!(path = %dir.display(), "store opened; recovered existing database");
        } else {
            tracing::info!(path = %dir.display(), "store opened; created new database");
        }
        let trees = Trees {
            outbox: db.open_tree("outbox")?,
            outbox_body: db.open_tree("outbox_body")?,
            outbox_pending: db.open_tree("outbox_pending")?,
            inbox: db.open_tree("inbox")?,
            inbox_body: db.open_tree("inbox_body")?,
            inbox_arrival: db.open_tree("inbox_arrival")?,
            receipts: db.open_tree("receipts")?,
            journal: db.open_tree("journal")?,
            meta: db.open_tree("meta")?,
            feed: db.open_tree("feed")?,
            body_keys: db.open_tree("body_keys")?,
            retention: db.open_tree("retention")?,
            deadlines: db.open_tree("deadlines")?,
        };
        let db_file = match options.durability {
            Durability::Flush => None,
            Durability::FlushAndSync => {
                // The new tree names must be on disk before the first acknowledged write.
                db.flush()?;
                Some(Arc::new(sync_files(&dir)?))
            }
        };
        let shared = Shared {
            db: db.clone(),
            trees: trees.clone(),
            dir: dir.clone(),
            db_file,
            write_lock: Arc::new(Mutex::new(())),
            committed: Arc::new(AtomicU64::new(0)),
            synced: Arc::new(tokio::sync::Mutex::new(0)),
        };
        let batcher = batch::Batcher::start(batch::Committer::new(shared.clone()))?;
        let store = Store {
            db,
            trees,
            dir,
            durability: options.durability,
            master_key: options.master_key,
            shared,
            batcher,
        };
        store.check_head()?;
        Ok(store)
    }

    /// Whether sled recovered an existing database when this store was opened.
    pub fn was_recovered(&self) -> bool {
        self.db.was_recovered()
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The durability this store was opened with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The head must name the last entry: anything else means entries were cut or added
    /// outside a transaction.
    fn check_head(&self) -> Result<(), StoreError> {
        let head = self.journal_head()?;
        let last_seq = match self.trees.journal.last()? {
            None => 0,
            Some((k, _)) => codec::be_u64("journal key", &k)?,
        };
        if last_seq != head.seq {
            return Err(StoreError::HeadMismatch {
                head_seq: head.seq,
                last_seq,
            });
        }
        Ok(())
    }

    /// Run `f` as one transaction over every tree. Returns its value and a durability ticket
    /// to pass to [`Store::durable`]. `f` may run more than once (sled retries on conflict),
    /// so it must only read and write through `Tx`.
    pub(crate) fn write<T>(
        &self,
        f: impl Fn(&Tx<'_>) -> TxResult<T>,
    ) -> Result<(T, u64), StoreError> {
        // Receipts are sealed only at the end of a batched write's transaction.
        let f = |tx: &Tx<'_>| {
            let value = f(tx)?;
            if tx.receipts_due.borrow().is_empty() {
                Ok(value)
            } else {
                abort(StoreError::Task(
                    "a record was received outside a batched write: no receipt would be sealed"
                        .into(),
                ))
            }
        };
        match self.shared.transact(f) {
            Ok(v) => Ok(v),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Wait until the write with `ticket` (and every write before it) is durable.
    ///
    /// Flushes are serialised (group commit): one flush at a time covers every write
    /// committed before it, and writers it covered return without flushing again. The flush
    /// itself runs on tokio's blocking pool, not through `sled::Db::flush_async`: that one
    /// blocks a thread of sled's own small IO pool per caller until the log is written, and
    /// the log write is queued on that same pool, so a few dozen concurrent writers starve it
    /// and the node deadlocks (seen in the end-to-end tests with 1,000 records). The flush
    /// and the fdatasync run in one blocking task: one hand-over per group, not two.
    pub(crate) async fn durable(&self, ticket: u64) -> Result<(), StoreError> {
        let mut synced = self.shared.synced.lock().await;
        if *synced >= ticket {
            // Another writer's flush already covered this write (group commit).
            return Ok(());
        }
        let shared = self.shared.clone();
        let target = tokio::task::spawn_blocking(move || shared.flush_and_sync())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        *synced = target;
        Ok(())
    }

    /// Flush everything written so far (and fdatasync with [`Durability::FlushAndSync`]).
    /// The write methods already do this; it is for shutdown and for `record_attempt`.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.durable(self.shared.committed.load(Ordering::SeqCst))
            .await
    }
}

impl Shared {
    /// Run `f` as one transaction over every tree, under the write lock; its value and the
    /// commit's durability ticket.
    fn transact<T, E>(
        &self,
        f: impl Fn(&Tx<'_>) -> Result<T, ConflictableTransactionError<E>>,
    ) -> Result<(T, u64), TransactionError<E>> {
        let t = &self.trees;
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let value = (
            &t.outbox,
            &t.outbox_body,
            &t.outbox_pending,
            &t.inbox,
            &t.inbox_body,
            &t.inbox_arrival,
            &t.receipts,
            &t.journal,
            &t.meta,
            &t.feed,
            &t.body_keys,
            &t.retention,
            &t.deadlines,
        )
            .transaction(|(ob, obb, obp, ib, ibb, iba, rc, jn, mt, fd, bk, rt, dl)| {
                f(&Tx {
                    outbox: ob,
                    outbox_body: obb,
                    outbox_pending: obp,
                    inbox: ib,
                    inbox_body: ibb,
                    inbox_arrival: iba,
                    receipts: rc,
                    journal: jn,
                    meta: mt,
                    feed: fd,
                    body_keys: bk,
                    retention: rt,
                    deadlines: dl,
                    receipts_due: RefCell::new(Vec::new()),
                    job: Cell::new(0),
                })
            })?;
        // Taken under the lock, so tickets are in commit order.
        let ticket = self.committed.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((value, ticket))
    }

    /// Flush sled's log (and fdatasync its file with FlushAndSync), blocking; returns the
    /// last ticket committed before the flush began, which the flush made durable. Callers
    /// hold `synced`.
    fn flush_and_sync(&self) -> Result<u64, StoreError> {
        // Every ticket <= target has committed, so the flush below makes it stable.
        let target = self.committed.load(Ordering::SeqCst);
        self.db.flush()?;
        if let Some(file) = &self.db_file {
            file.sync_data().map_err(|source| StoreError::Io {
                path: self.dir.join("db").display().to_string(),
                source,
            })?;
        }
        Ok(target)
    }

    /// Make the write with `ticket` durable from a thread outside the async runtime (the
    /// committer's), sharing the flush with [`Store::durable`].
    fn sync_through(&self, ticket: u64) -> Result<(), StoreError> {
        let mut synced = self.synced.blocking_lock();
        if *synced >= ticket {
            return Ok(());
        }
        *synced = self.flush_and_sync()?;
        Ok(())
    }
}

/// Open the sled data file for fdatasync, and sync the directory and `conf` once so the files'
/// existence survives a power loss.
fn sync_files(dir: &Path) -> Result<File, StoreError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::Io { path, source }
    };
    let db_path = dir.join("db");
    // Opened for writing only because some systems refuse fsync on read-only descriptors;
    // this handle never writes.
    let db_file = std::fs::OpenOptions::new()
        .write(true)
        .open(&db_path)
        .map_err(io(&db_path))?;
    db_file.sync_data().map_err(io(&db_path))?;
    let conf = dir.join("conf");
    if let Ok(f) = File::open(&conf) {
        f.sync_all().map_err(io(&conf))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(db_file)
}

/// Check and complete a journal draft for a change to record `id`: the operation must be
/// `expected`; record_id, class, subject_ref and counterpart are filled in when absent.
pub(crate) fn prepare_draft(
    mut draft: JournalDraft,
    expected: Operation,
    id: Uuid,
    class: &str,
    subject_ref: Option<&str>,
    counterpart: &pons_core::NodeId,
) -> Result<JournalDraft, StoreError> {
    if draft.operation != expected {
        return Err(StoreError::WrongOperation {
            expected,
            found: draft.operation,
        });
    }
    match draft.record_id {
        Some(found) if found != id => {
            return Err(StoreError::WrongRecord {
                expected: id,
                found,
            });
        }
        _ => draft.record_id = Some(id),
    }
    if draft.class.is_none() {
        draft.class = Some(class.to_owned());
    }
    if draft.subject_ref.is_none() {
        draft.subject_ref = subject_ref.map(str::to_owned);
    }
    if draft.counterpart.is_none() {
        draft.counterpart = Some(counterpart.clone());
    }
    Ok(draft)
}

impl Store {
    /// Encrypt a body of record `id` for `tree` (see [`cipher`]).
    pub(crate) fn seal_body(
        &self,
        tree: cipher::BodyTree,
        id: Uuid,
        envelope: &[u8],
    ) -> Result<cipher::SealedBody, StoreError> {
        cipher::encode_body(self.master_key.as_ref(), tree, id, envelope)
    }

    /// Read and decrypt the body of record `id` in `tree`; `None` if there is none (never
    /// stored, or erased). The data key is read first: erasure removes both in one
    /// transaction, so a body without its key is corruption, not a race.
    pub(crate) fn read_body(
        &self,
        tree: cipher::BodyTree,
        id: Uuid,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let wrapped = self.trees.body_keys.get(tree.key_of(id))?;
        let bodies = match tree {
            cipher::BodyTree::Outbox => &self.trees.outbox_body,
            cipher::BodyTree::Inbox => &self.trees.inbox_body,
        };
        let Some(body) = bodies.get(id.as_bytes())? else {
            return Ok(None);
        };
        cipher::decode_body(
            self.master_key.as_ref(),
            tree,
            id,
            &body,
            wrapped.as_deref(),
        )
        .map(Some)
    }
}

impl Tx<'_> {
    /// Store a sealed body of record `id` in `tree`; part of the transaction.
    pub(crate) fn put_body(
        &self,
        tree: cipher::BodyTree,
        id: Uuid,
        sealed: &cipher::SealedBody,
    ) -> TxResult<()> {
        let bodies = match tree {
            cipher::BodyTree::Outbox => self.outbox_body,
            cipher::BodyTree::Inbox => self.inbox_body,
        };
        bodies.insert(id.as_bytes(), sealed.body.as_slice())?;
        if let Some(w) = &sealed.wrapped_key {
            self.body_keys.insert(&tree.key_of(id)[..], w.as_slice())?;
        }
        Ok(())
    }

    /// Erase the body of record `id` in `tree`: its wrapped data key and its ciphertext, in
    /// this transaction. Returns whether there was a body.
    pub(crate) fn erase_body(&self, tree: cipher::BodyTree, id: Uuid) -> TxResult<bool> {
        let bodies = match tree {
            cipher::BodyTree::Outbox => self.outbox_body,
            cipher::BodyTree::Inbox => self.inbox_body,
        };
        self.body_keys.remove(&tree.key_of(id)[..])?;
        Ok(bodies.remove(id.as_bytes())?.is_some())
    }
}
