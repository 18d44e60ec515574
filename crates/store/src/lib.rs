//! Pons store: the durable state of one node, in sled.
//!
//! One sled database per node holds the outbox (records this node sends), the inbox (records
//! it received, in arrival order, with the receipt it answered), and the state of the
//! hash-chained audit journal, whose entries are in files of their own beside it
//! (`journal/log.rs`), as record bodies are (`bodies.rs`). The rules — how a journal entry is
//! encoded and chained — live in [`pons_core::journal`]; this crate carries them out.
//!
//! Invariants this crate keeps:
//! - Every change to a record's state and its journal entry are written in **one** sled
//!   transaction (over all trees), so neither is ever durable without the other.
//! - Journal entries are sealed inside that transaction from the head stored in the `meta`
//!   tree, so sequence numbers have no gaps and the chain has no forks.
//! - A write method returns only after the write is in the store's write-ahead log (and,
//!   with [`Durability::FlushAndSync`], the log is fdatasync'ed): an id, receipt or sequence
//!   number handed to anyone is never lost by a process crash.
//! - Only this crate imports sled.
//!
//! A transaction is this crate's own, not sled's: its writes are gathered in memory
//! ([`TxTree`]), then, under a mutex held for the (short) commit only, appended to the
//! write-ahead log as one record and applied to sled without a sled transaction (see
//! `wal.rs`: sled's transactions and flushes wrote ~100 KB per record). Syncing happens
//! outside the mutex and is shared: one fdatasync of the log runs at a time and covers
//! every writer waiting for it — group commit. The writes of the exchange's hot path go
//! further and share the transaction itself: see `batch.rs`.

mod batch;
mod bodies;
mod checkpoint;
mod cipher;
mod codec;
mod error;
mod feed;
mod inbox;
mod journal;
mod outbox;
mod retention;
mod wal;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use pons_core::journal::{ChainHead, JournalDraft, JournalEntry, Operation};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::IVec;
use uuid::Uuid;

pub use checkpoint::StoredCosigned;
pub use cipher::{MasterKey, KEY_LEN};
pub use error::StoreError;
pub use feed::{DeadLetter, FeedAdvance};
pub use inbox::{
    InboxMeta, InboxRecord, NewInboxRecord, ReceiptBatch, ReceiptContext, ReceiptSealer, Received,
    RECEIPT_BATCH,
};
pub use outbox::{
    NewOutboxRecord, OutboxFilter, OutboxRecord, OutboxState, PendingQueue, StateKind, Submission,
};
pub use retention::{Due, EraseOrder, Erased, Hold, Place, RetentionEntry};

/// Sequence number of a journal entry.
pub type JournalSeq = u64;

/// How hard a write is pushed to disk before the write method returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// The write-ahead log is written (to the kernel): survives a process crash; a power
    /// loss or kernel crash can lose the last writes (see the crate README).
    #[default]
    Flush,
    /// The write-ahead log is written and fdatasync'ed: also survives a power loss on a disk
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
    /// Flushes sled and deletes the log segments it covers; held only to be dropped (and
    /// joined) after the committer.
    _checkpointer: Checkpointer,
    /// Fills new log segments with zeros ahead of the writes (sync on); dropped last, as the
    /// committer may wait for it.
    _filler: Option<Filler>,
    /// Delivery attempts started since this store was opened, of outbox records still
    /// waiting: counted here, not written per attempt, and folded into the record when it
    /// is delivered or rejected (see `Store::record_attempt`).
    attempts: outbox::Attempts,
}

/// The handles of one store that transactions and flushes need, shared by [`Store`] and its
/// committer thread (each field is a reference-counted handle).
#[derive(Clone)]
pub(crate) struct Shared {
    trees: Trees,
    dir: PathBuf,
    /// The sled data file, kept open for fdatasync at checkpoints (FlushAndSync only).
    db_file: Option<Arc<File>>,
    /// The write-ahead log, appended to under `write_lock`.
    wal: Arc<Mutex<wal::Wal>>,
    /// Whether the log is fdatasync'ed ([`Durability::FlushAndSync`]).
    sync: bool,
    /// Serialises write transactions: they all touch the journal head, so running them one
    /// at a time keeps the log and tickets in commit order.
    write_lock: Arc<Mutex<()>>,
    /// The last commit's sequence number in the log (the last ticket handed out).
    committed: Arc<AtomicU64>,
    /// Highest ticket known to be synced; held while a sync runs, so that one sync at a time
    /// covers every writer waiting.
    synced: Arc<tokio::sync::Mutex<u64>>,
    /// Set when a commit was logged but could not be applied to sled: the store refuses
    /// writes until it is reopened (recovery applies the commit from the log).
    broken: Arc<AtomicBool>,
    /// Where a finished log segment is handed to the checkpointer.
    checkpoints: Arc<CheckpointQueue>,
    /// The log's filling ahead (see `wal::Room`).
    room: Arc<wal::Room>,
}

/// One sled tree. Reads never see a commit half applied: a commit is applied under the
/// write half of `visible`, a read takes the read half (sled's own transactions did this
/// with its concurrency control; our commits are not sled transactions, see `wal.rs`).
/// Scans are not atomic against commits, as with sled's.
#[derive(Clone)]
pub(crate) struct Tree {
    inner: sled::Tree,
    visible: Arc<RwLock<()>>,
}

impl Tree {
    pub(crate) fn get<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        let _visible = self.visible.read().unwrap_or_else(PoisonError::into_inner);
        self.inner.get(key)
    }

    pub(crate) fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<bool> {
        let _visible = self.visible.read().unwrap_or_else(PoisonError::into_inner);
        self.inner.contains_key(key)
    }

    pub(crate) fn last(&self) -> sled::Result<Option<(IVec, IVec)>> {
        let _visible = self.visible.read().unwrap_or_else(PoisonError::into_inner);
        self.inner.last()
    }

    pub(crate) fn iter(&self) -> sled::Iter {
        self.inner.iter()
    }

    pub(crate) fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> sled::Iter {
        self.inner.range(range)
    }

    pub(crate) fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> sled::Iter {
        self.inner.scan_prefix(prefix)
    }
}

#[derive(Clone)]
struct Trees {
    /// The lock every tree's reads share (see [`Tree`]); a commit is applied under its
    /// write half.
    visible: Arc<RwLock<()>>,
    /// The body log the body trees refer to (`bodies.rs`).
    bodies: Arc<bodies::Bodies>,
    /// The journal's entries (`journal/log.rs`); the `journal` tree below is read only to
    /// move an older store's entries there.
    journal_log: Arc<journal::log::Log>,
    /// How many entries `outbox_pending` holds per recipient (its value's bytes), kept by
    /// [`Trees::apply`] under the write half of `visible` and counted afresh at open, so
    /// that a status poll does not walk a queue of thousands (`outbox.rs`).
    pending_by_peer: Arc<Mutex<BTreeMap<IVec, usize>>>,
    outbox: Tree,
    outbox_body: Tree,
    outbox_pending: Tree,
    inbox: Tree,
    inbox_body: Tree,
    inbox_arrival: Tree,
    receipts: Tree,
    journal: Tree,
    meta: Tree,
    feed: Tree,
    body_keys: Tree,
    retention: Tree,
    deadlines: Tree,
}

impl Trees {
    /// Opens every tree of `db`; reads of each share `visible`.
    fn open(
        db: &sled::Db,
        visible: &Arc<RwLock<()>>,
        bodies: bodies::Bodies,
        journal_log: journal::log::Log,
    ) -> Result<Trees, StoreError> {
        let open = |name: &str| -> Result<Tree, StoreError> {
            Ok(Tree {
                inner: db.open_tree(name)?,
                visible: Arc::clone(visible),
            })
        };
        let [ob, obb, obp, ib, ibb, iba, rc, jn, mt, fd, bk, rt, dl] = wal::TREES;
        Ok(Trees {
            visible: Arc::clone(visible),
            bodies: Arc::new(bodies),
            journal_log: Arc::new(journal_log),
            pending_by_peer: Arc::default(),
            outbox: open(ob)?,
            outbox_body: open(obb)?,
            outbox_pending: open(obp)?,
            inbox: open(ib)?,
            inbox_body: open(ibb)?,
            inbox_arrival: open(iba)?,
            receipts: open(rc)?,
            journal: open(jn)?,
            meta: open(mt)?,
            feed: open(fd)?,
            body_keys: open(bk)?,
            retention: open(rt)?,
            deadlines: open(dl)?,
        })
    }

    /// The trees in the order of their numbers in the log ([`wal::TREES`]).
    fn all(&self) -> [&Tree; wal::TREES.len()] {
        [
            &self.outbox,
            &self.outbox_body,
            &self.outbox_pending,
            &self.inbox,
            &self.inbox_body,
            &self.inbox_arrival,
            &self.receipts,
            &self.journal,
            &self.meta,
            &self.feed,
            &self.body_keys,
            &self.retention,
            &self.deadlines,
        ]
    }

    /// Moves an older store's journal entries from sled's `journal` tree into the journal
    /// files, once: the tree is emptied only after the files hold every entry, synced, so an
    /// import cut short by a crash is done again at the next open.
    fn move_journal_out_of_sled(&self, db: &sled::Db) -> Result<(), StoreError> {
        let Some((last, _)) = self.journal.inner.last()? else {
            return Ok(());
        };
        let last = codec::be_u64("journal key", &last)?;
        let log = &self.journal_log;
        if log.last() < last {
            log.clear()?;
            let n = log.import(self.journal.inner.iter().map(|item| {
                let (k, v) = item?;
                Ok((codec::be_u64("journal key", &k)?, v))
            }))?;
            tracing::info!(
                entries = n,
                "journal entries moved out of sled into the journal files"
            );
        }
        // Written by an earlier open that stopped before emptying the tree, maybe never
        // synced: synced now, before sled forgets the entries.
        log.sync_files()?;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in self.journal.inner.iter().take(10_000) {
                let (k, _) = item?;
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.journal.inner.apply_batch(batch)?;
        }
        db.flush()?;
        Ok(())
    }

    /// Counts `outbox_pending`'s entries by recipient afresh (at open, once the log is
    /// replayed: from then on [`Trees::apply`] keeps the counts).
    fn count_pending(&self) -> Result<(), StoreError> {
        let _visible = self.visible.write().unwrap_or_else(PoisonError::into_inner);
        let mut counts = BTreeMap::new();
        for item in self.outbox_pending.inner.iter() {
            let (_, peer) = item?;
            count_pending(&mut counts, None, Some(&peer));
        }
        *self
            .pending_by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = counts;
        Ok(())
    }

    /// Give each body that `writes` stores a place in the body log, with its reference in
    /// its tree instead, and note the places of the bodies it removes or replaces. The
    /// caller holds the write lock, so sled holds what the commit replaces.
    fn place_bodies(&self, writes: &mut wal::Writes) -> Result<(), StoreError> {
        let wal::Writes {
            trees,
            bodies,
            erased,
            erases,
        } = writes;
        let all = self.all();
        for id in BODY_TREES {
            for (key, value) in trees[id].iter_mut() {
                let old = all[id].inner.get(key)?;
                if old.is_some() && old == *value {
                    continue;
                }
                let corrupt = |reason| StoreError::Corrupt {
                    what: "body reference",
                    key: codec::hex(key),
                    reason,
                };
                if let Some(old) = old {
                    if let bodies::Stored::Ref(at, _) =
                        bodies::Stored::decode(&old).map_err(corrupt)?
                    {
                        erased.push(at);
                        *erases = true;
                    }
                }
                if let Some(value) = value {
                    // A pending value (see `Tx::put_body`); anything else is a body as is.
                    let (wrapped, from) = bodies::split_pending(value).unwrap_or((&[], 0));
                    let body = value.subslice(from, value.len() - from);
                    let at = self.bodies.place(&body)?;
                    let stored = IVec::from(at.stored(wrapped));
                    bodies.push((at, body));
                    *value = stored;
                }
            }
        }
        Ok(())
    }

    /// Apply commit `seq`'s changes to sled, recording `seq` as applied with them, under
    /// the write half of `visible`: a read sees all of them or none. Its bodies are written
    /// to the body log first (nothing refers to their places yet); the places it erases
    /// are punched out by the checkpointer, before it retires the log (see
    /// `Bodies::erase_later`).
    fn apply(&self, seq: u64, writes: &wal::Writes) -> sled::Result<()> {
        self.bodies.write(&writes.bodies).map_err(to_sled)?;
        let _visible = self.visible.write().unwrap_or_else(PoisonError::into_inner);
        self.journal_log
            .put_all(&writes.trees[JOURNAL_TREE])
            .map_err(to_sled)?;
        let mut pending = self
            .pending_by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (i, (tree, changes)) in self.all().into_iter().zip(&writes.trees).enumerate() {
            if i == JOURNAL_TREE {
                continue;
            }
            for (key, value) in changes {
                let old = match value {
                    Some(v) => tree.inner.insert(key, v.clone())?,
                    None => tree.inner.remove(key)?,
                };
                if i == PENDING_TREE && old != *value {
                    count_pending(&mut pending, old.as_ref(), value.as_ref());
                }
            }
        }
        self.meta
            .inner
            .insert(wal::APPLIED_KEY, &seq.to_be_bytes())?;
        self.bodies.erase_later(&writes.erased);
        Ok(())
    }
}

/// The body trees' numbers in [`wal::TREES`]: their values are [`bodies::BodyRef`]s.
const BODY_TREES: [usize; 2] = [1, 4];

/// `outbox_pending`'s number in [`wal::TREES`].
const PENDING_TREE: usize = 2;

/// `journal`'s number in [`wal::TREES`]: its changes go to the journal log, not to sled.
const JOURNAL_TREE: usize = 7;

/// Moves one entry of the pending counts from recipient `old` (none: a new entry) to
/// recipient `new` (none: removed).
fn count_pending(counts: &mut BTreeMap<IVec, usize>, old: Option<&IVec>, new: Option<&IVec>) {
    if let Some(old) = old {
        if let Some(n) = counts.get_mut(old) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(old);
            }
        }
    }
    if let Some(new) = new {
        *counts.entry(new.clone()).or_default() += 1;
    }
}

/// A store error where sled's error type is expected (the commit path's).
fn to_sled(e: StoreError) -> sled::Error {
    sled::Error::Io(std::io::Error::other(e.to_string()))
}

/// One tree as seen inside a transaction: reads see the transaction's own writes, which
/// are kept in memory until it commits.
pub(crate) struct TxTree<'a> {
    id: usize,
    tree: &'a sled::Tree,
    writes: &'a RefCell<wal::Writes>,
}

impl TxTree<'_> {
    pub(crate) fn get<K: AsRef<[u8]>>(&self, key: K) -> TxResult<Option<IVec>> {
        if let Some(v) = self.writes.borrow().trees[self.id].get(key.as_ref()) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(key)?)
    }

    pub(crate) fn insert<K: AsRef<[u8]>, V: Into<IVec>>(&self, key: K, value: V) -> TxResult<()> {
        self.writes.borrow_mut().trees[self.id]
            .insert(IVec::from(key.as_ref()), Some(value.into()));
        Ok(())
    }

    /// Removes `key`.
    pub(crate) fn remove<K: AsRef<[u8]>>(&self, key: K) -> TxResult<()> {
        self.writes.borrow_mut().trees[self.id].insert(IVec::from(key.as_ref()), None);
        Ok(())
    }

    /// Removes `key`; its value before (one read more than [`TxTree::remove`]).
    pub(crate) fn take<K: AsRef<[u8]>>(&self, key: K) -> TxResult<Option<IVec>> {
        let old = self.get(key.as_ref())?;
        self.remove(key)?;
        Ok(old)
    }
}

/// The trees as seen inside one transaction.
pub(crate) struct Tx<'a> {
    pub(crate) outbox: TxTree<'a>,
    pub(crate) outbox_body: TxTree<'a>,
    pub(crate) outbox_pending: TxTree<'a>,
    pub(crate) inbox: TxTree<'a>,
    pub(crate) inbox_body: TxTree<'a>,
    pub(crate) inbox_arrival: TxTree<'a>,
    pub(crate) receipts: TxTree<'a>,
    /// Written only, by [`Tx::append`]: the commit writes the entries to the journal files
    /// (sled's `journal` tree holds none).
    pub(crate) journal: TxTree<'a>,
    pub(crate) meta: TxTree<'a>,
    pub(crate) feed: TxTree<'a>,
    /// Wrapped data keys of encrypted bodies, by tree tag and record id.
    pub(crate) body_keys: TxTree<'a>,
    /// Retention entries by record id (see [`retention`]).
    pub(crate) retention: TxTree<'a>,
    /// The index of review dates, erasure dates and holds (see [`retention`]).
    pub(crate) deadlines: TxTree<'a>,
    /// The transaction's writes, shared by its trees.
    writes: &'a RefCell<wal::Writes>,
    /// Records stored by this transaction that wait for their receipt (see `inbox.rs`).
    pub(crate) receipts_due: RefCell<Vec<inbox::ReceiptDue>>,
    /// The batched write running now (see `batch.rs`); 0 outside a batch.
    pub(crate) job: Cell<usize>,
}

impl<'a> Tx<'a> {
    fn new(trees: &'a Trees, writes: &'a RefCell<wal::Writes>) -> Tx<'a> {
        let all = trees.all();
        let t = |id: usize| TxTree {
            id,
            tree: &all[id].inner,
            writes,
        };
        Tx {
            outbox: t(0),
            outbox_body: t(1),
            outbox_pending: t(2),
            inbox: t(3),
            inbox_body: t(4),
            inbox_arrival: t(5),
            receipts: t(6),
            journal: t(7),
            meta: t(8),
            feed: t(9),
            body_keys: t(10),
            retention: t(11),
            deadlines: t(12),
            writes,
            receipts_due: RefCell::new(Vec::new()),
            job: Cell::new(0),
        }
    }
}

pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// Abort the running transaction with `e`; nothing it wrote is kept.
pub(crate) fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

impl Tx<'_> {
    /// The journal head as of this transaction.
    pub(crate) fn head(&self) -> TxResult<ChainHead> {
        journal::head_of(self.meta.get(HEAD_KEY)?.as_deref()).or_else(abort)
    }

    /// Seal `draft` as the next journal entry and move the head; part of the transaction.
    pub(crate) fn append(&self, draft: &JournalDraft) -> TxResult<JournalEntry> {
        let head = self.head()?;
        let entry = JournalEntry::seal(draft.clone(), head.seq + 1, head.hash);
        let value = journal::encode_entry(&entry);
        self.journal.insert(entry.seq.to_be_bytes(), value)?;
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
    /// head names the last journal entry (anything else means entries were cut or added
    /// outside a transaction: [`StoreError::HeadMismatch`]).
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store, StoreError> {
        let dir = path.as_ref().to_path_buf();
        let db = open_db(&dir)?;
        if db.was_recovered() {
            tracing::info!(path = %dir.display(), "store opened; recovered existing database");
        } else {
            tracing::info!(path = %dir.display(), "store opened; created new database");
        }
        let visible = Arc::new(RwLock::new(()));
        let trees = Trees::open(
            &db,
            &visible,
            bodies::Bodies::open(&dir.join("bodies"))?,
            journal::log::Log::open(&dir.join("journal"), journal::log::SEGMENT_BYTES)?,
        )?;
        trees.move_journal_out_of_sled(&db)?;
        let sync = options.durability == Durability::FlushAndSync;
        let db_file = if sync {
            // The new tree names must be on disk before the first acknowledged write.
            db.flush()?;
            Some(Arc::new(sync_files(&dir)?))
        } else {
            None
        };
        let wal_dir = dir.join("wal");
        let room = Arc::new(wal::Room::default());
        let last = recover(&db, &trees, db_file.as_deref(), &wal_dir, sync, &room)?;
        trees.count_pending()?;
        let wal = wal::Wal::start(&wal_dir, last + 1, sync, Arc::clone(&room))?;
        let filler = if sync {
            Some(Filler::start(Arc::clone(&room))?)
        } else {
            None
        };
        let shared = Shared {
            trees: trees.clone(),
            dir: dir.clone(),
            db_file,
            wal: Arc::new(Mutex::new(wal)),
            sync,
            write_lock: Arc::new(Mutex::new(())),
            committed: Arc::new(AtomicU64::new(last)),
            synced: Arc::new(tokio::sync::Mutex::new(last)),
            broken: Arc::new(AtomicBool::new(false)),
            checkpoints: Arc::new(CheckpointQueue::default()),
            room,
        };
        let checkpointer = Checkpointer::start(db.clone(), shared.clone(), wal_dir)?;
        let batcher = batch::Batcher::start(batch::Committer::new(shared.clone()))?;
        Ok(Store {
            db,
            trees,
            dir,
            durability: options.durability,
            master_key: options.master_key,
            shared,
            batcher,
            _checkpointer: checkpointer,
            _filler: filler,
            attempts: outbox::Attempts::default(),
        })
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
    /// With [`Durability::Flush`] it already is (its log record was written at commit).
    /// With [`Durability::FlushAndSync`] syncs are serialised (group commit): one fdatasync
    /// of the log at a time covers every write committed before it, and writers it covered
    /// return without syncing again. The fdatasync runs on tokio's blocking pool.
    pub(crate) async fn durable(&self, ticket: u64) -> Result<(), StoreError> {
        let mut synced = self.shared.synced.lock().await;
        if *synced >= ticket {
            // Another writer's sync already covered this write (group commit).
            return Ok(());
        }
        let target = if self.shared.sync {
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || shared.sync_log())
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??
        } else {
            self.shared.sync_log()?
        };
        *synced = target;
        Ok(())
    }

    /// Make everything committed so far durable (see [`Store::durable`]): at shutdown, and
    /// before something read from the store is handed to anyone (a write is visible to
    /// readers as soon as it commits, before its sync).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.durable(self.shared.committed.load(Ordering::SeqCst))
            .await
    }

    /// Flush sled itself (and fdatasync its file with [`Durability::FlushAndSync`]): for the
    /// few writes made outside the write-ahead log (checkpoints, countersignatures, the
    /// removal of pruned journal entries), which are durable only once sled is.
    pub(crate) async fn flush_db(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        let db_file = self.shared.db_file.clone();
        tokio::task::spawn_blocking(move || flush_db(&db, db_file.as_deref()))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl Shared {
    /// Run `f` as one transaction over every tree, under the write lock; its value and the
    /// commit's durability ticket (its sequence number in the log).
    ///
    /// `f`'s writes are kept in memory; if it returns a value they are appended to the log
    /// as one record and applied to sled, all before the lock is released. A transaction
    /// that writes nothing appends nothing and gets the last ticket.
    fn transact<T, E>(
        &self,
        f: impl Fn(&Tx<'_>) -> Result<T, ConflictableTransactionError<E>>,
    ) -> Result<(T, u64), TransactionError<E>> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.broken.load(Ordering::SeqCst) {
            return Err(TransactionError::Storage(sled::Error::ReportableBug(
                "an earlier commit was logged but not applied; reopen the store to recover it"
                    .into(),
            )));
        }
        loop {
            let writes = RefCell::new(wal::Writes::default());
            let value = match f(&Tx::new(&self.trees, &writes)) {
                Ok(value) => value,
                // Writers are serialised, so nothing conflicts; run again if told to.
                Err(ConflictableTransactionError::Conflict) => continue,
                Err(ConflictableTransactionError::Abort(e)) => {
                    return Err(TransactionError::Abort(e))
                }
                Err(ConflictableTransactionError::Storage(e)) => {
                    return Err(TransactionError::Storage(e))
                }
            };
            let writes = writes.into_inner();
            if writes.is_empty() {
                return Ok((value, self.committed.load(Ordering::SeqCst)));
            }
            let ticket = self.commit(writes).map_err(TransactionError::Storage)?;
            return Ok((value, ticket));
        }
    }

    /// Append `writes` to the log and apply them to sled; the caller holds `write_lock`.
    fn commit(&self, mut writes: wal::Writes) -> sled::Result<u64> {
        let seq = self.committed.load(Ordering::SeqCst) + 1;
        self.trees.place_bodies(&mut writes).map_err(to_sled)?;
        let writes = &writes;
        let rolled = self
            .wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(seq, writes)
            .map_err(|e| sled::Error::Io(std::io::Error::other(e.to_string())))?;
        if let Err(e) = self.trees.apply(seq, writes) {
            // Logged, maybe half applied in memory: only recovery can put sled right.
            self.broken.store(true, Ordering::SeqCst);
            tracing::error!(seq, error = %e, "a logged commit could not be applied; the store refuses writes until reopened");
            return Err(e);
        }
        self.committed.store(seq, Ordering::SeqCst);
        if let Some(rolled) = rolled {
            self.checkpoints.request(rolled.first);
        }
        if writes.erases {
            self.checkpoints.request_erasure();
        }
        Ok(seq)
    }

    /// Sync the log (fdatasync with FlushAndSync; with Flush it is already written to the
    /// kernel), blocking; returns the last ticket committed before the sync began, which the
    /// sync made durable. Callers hold `synced`.
    fn sync_log(&self) -> Result<u64, StoreError> {
        // Every ticket <= target is in the segment taken below or in one synced before it.
        let target = self.committed.load(Ordering::SeqCst);
        if self.sync {
            let segment = self
                .wal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .segment();
            segment.sync_data().map_err(|source| StoreError::Io {
                path: self.dir.join("wal").display().to_string(),
                source,
            })?;
        }
        Ok(target)
    }

    /// Make the write with `ticket` durable from a thread outside the async runtime (the
    /// committer's), sharing the sync with [`Store::durable`].
    fn sync_through(&self, ticket: u64) -> Result<(), StoreError> {
        let mut synced = self.synced.blocking_lock();
        if *synced >= ticket {
            return Ok(());
        }
        *synced = self.sync_log()?;
        Ok(())
    }
}

/// How long [`Store::open`] waits for sled's lock on its file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens sled in `dir`. sled takes an exclusive lock on its file and releases it only when
/// every handle of a dropped database is gone, some of them on its background threads
/// after the store is dropped: a store reopened at once in the same process (a restart, a
/// test) can find it still held for a moment. So a held lock is waited for up to
/// [`LOCK_WAIT`]; a store open in another process still fails, that much later.
fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(dir).open() {
            // sled's own words for it (an `Other` error whose text names the lock).
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

/// Bring sled up to date with the log in `wal_dir` after it opened: replay every record
/// after the last one sled holds, flush sled, and delete the segments. Returns the last
/// sequence number in the store.
fn recover(
    db: &sled::Db,
    trees: &Trees,
    db_file: Option<&File>,
    wal_dir: &Path,
    recycle: bool,
    room: &wal::Room,
) -> Result<u64, StoreError> {
    let applied = match trees.meta.get(wal::APPLIED_KEY)? {
        None => 0,
        Some(v) => codec::be_u64("write-ahead log position", &v)?,
    };
    let mut last = applied;
    wal::replay(wal_dir, |seq, writes| {
        if seq <= applied {
            // sled holds this commit, but the body log may not: it is synced only before
            // the log segments are retired, and sled writes itself out on its own. Writing
            // the bodies at their places again (and erasing again, at the checkpoint
            // below, what the commit erased) is harmless.
            trees.bodies.write(&writes.bodies)?;
            trees.bodies.erase_later(&writes.erased);
            // The same holds for the journal files; entries written again at their places
            // are the same entries.
            let _visible = trees
                .visible
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            trees.journal_log.put_all(&writes.trees[JOURNAL_TREE])?;
            return Ok(());
        }
        if seq != last + 1 {
            return Err(StoreError::Corrupt {
                what: "write-ahead log",
                key: wal_dir.display().to_string(),
                reason: format!(
                    "the store holds commits through {applied} but the log resumes at {seq}"
                ),
            });
        }
        trees.apply(seq, &writes)?;
        last = seq;
        Ok(())
    })?;
    if last > applied {
        tracing::info!(
            from = applied + 1,
            through = last,
            "store recovered commits from its write-ahead log"
        );
    }
    let head = journal::head_of(trees.meta.get(HEAD_KEY)?.as_deref())?;
    // A damaged anchor is for verification to report (`journal_start`), not for the open.
    let anchor =
        journal::anchor_of(trees.meta.get(journal::ANCHOR_KEY)?.as_deref()).unwrap_or_default();
    trees
        .journal_log
        .finish(head.seq, anchor.map_or(1, |(a, _)| a.seq))?;
    checkpoint(db, trees, db_file, wal_dir, u64::MAX, recycle, room)?;
    Ok(last)
}

/// Sync the body log and the journal files, flush sled (and fdatasync its file), then retire
/// the log segments that start before `keep_from`: the body log, the journal files and sled
/// now hold every commit in them. With `recycle`, the newest becomes the next segment's file.
fn checkpoint(
    db: &sled::Db,
    trees: &Trees,
    db_file: Option<&File>,
    wal_dir: &Path,
    keep_from: u64,
    recycle: bool,
    room: &wal::Room,
) -> Result<(), StoreError> {
    trees.bodies.sync()?;
    trees.journal_log.sync()?;
    flush_db(db, db_file)?;
    wal::retire_before(wal_dir, keep_from, recycle, room)
}

fn flush_db(db: &sled::Db, db_file: Option<&File>) -> Result<(), StoreError> {
    db.flush()?;
    if let Some(file) = db_file {
        file.sync_data().map_err(|source| StoreError::Io {
            path: "store database file".into(),
            source,
        })?;
    }
    Ok(())
}

/// What the checkpointer is asked to do.
#[derive(Default)]
struct Requests {
    /// Retire the segments before this one (a segment was finished).
    keep_from: Option<u64>,
    /// A commit erased a record: retire every segment that may hold it.
    erasure: bool,
    /// The store is closing.
    stop: bool,
}

/// Requests for the checkpointer, and its wake-up.
#[derive(Default)]
pub(crate) struct CheckpointQueue {
    state: Mutex<Requests>,
    wake: Condvar,
}

impl CheckpointQueue {
    /// Ask for the segments before `first` to be retired.
    fn request(&self, first: u64) {
        self.ask(|r| r.keep_from = Some(r.keep_from.map_or(first, |f| f.max(first))));
    }

    /// Ask for the log to be retired up to now, the spare included (see
    /// [`Shared::retire_for_erasure`]).
    fn request_erasure(&self) {
        self.ask(|r| r.erasure = true);
    }

    fn ask(&self, f: impl FnOnce(&mut Requests)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.wake.notify_one();
    }
}

impl Shared {
    /// After an erasure: no file of the log may keep the erased body or its wrapped key
    /// longer than it takes to flush sled. Starts a new segment (never the spare, which may
    /// hold old records), flushes sled, deletes every older segment and the spare (the next
    /// checkpoint recycles one again). sled's own files keep deleted values until it
    /// rewrites their segments (see `docs/data-protection.md`).
    fn retire_for_erasure(&self, db: &sled::Db, wal_dir: &Path) -> Result<(), StoreError> {
        let keep_from = {
            let _guard = self
                .write_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let next = self.committed.load(Ordering::SeqCst) + 1;
            self.wal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .restart(next)?;
            next
        };
        // Punches the erased bodies' blocks out and syncs the body log before the log
        // segments that still hold them are deleted.
        self.trees.bodies.sync()?;
        self.trees.journal_log.sync()?;
        flush_db(db, self.db_file.as_deref())?;
        wal::retire_before(wal_dir, keep_from, false, &self.room)?;
        wal::remove_spare(wal_dir)
    }
}

/// The thread that fills new log segments ahead of the writes (see `wal::Room`).
struct Filler {
    room: Arc<wal::Room>,
    thread: Option<JoinHandle<()>>,
}

impl Filler {
    fn start(room: Arc<wal::Room>) -> Result<Filler, StoreError> {
        let r = Arc::clone(&room);
        let thread = std::thread::Builder::new()
            .name("pons-store-fill".into())
            .spawn(move || r.run_filler())
            .map_err(|source| StoreError::Io {
                path: "store fill thread".into(),
                source,
            })?;
        Ok(Filler {
            room,
            thread: Some(thread),
        })
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.room.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread that checkpoints finished segments and retires the log after erasures (see
/// `wal.rs`).
struct Checkpointer {
    queue: Arc<CheckpointQueue>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(db: sled::Db, shared: Shared, wal_dir: PathBuf) -> Result<Checkpointer, StoreError> {
        let queue = Arc::clone(&shared.checkpoints);
        let thread = std::thread::Builder::new()
            .name("pons-store-checkpoint".into())
            .spawn(move || loop {
                let q = &shared.checkpoints;
                let (keep_from, erasure) = {
                    let mut r = q.state.lock().unwrap_or_else(PoisonError::into_inner);
                    while r.keep_from.is_none() && !r.erasure && !r.stop {
                        r = q.wake.wait(r).unwrap_or_else(PoisonError::into_inner);
                    }
                    if r.keep_from.is_none() && !r.erasure {
                        return;
                    }
                    (r.keep_from.take(), std::mem::take(&mut r.erasure))
                };
                let done = if erasure {
                    shared.retire_for_erasure(&db, &wal_dir)
                } else {
                    let keep_from = keep_from.unwrap_or(0);
                    let db_file = shared.db_file.as_deref();
                    checkpoint(
                        &db,
                        &shared.trees,
                        db_file,
                        &wal_dir,
                        keep_from,
                        shared.sync,
                        &shared.room,
                    )
                };
                if let Err(e) = done {
                    // The segments stay; the next checkpoint (or the next open) takes them.
                    tracing::warn!(error = %e, erasure, "store checkpoint failed");
                }
            })
            .map_err(|source| StoreError::Io {
                path: "store checkpoint thread".into(),
                source,
            })?;
        Ok(Checkpointer {
            queue,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    /// Finishes what was asked, if anything, and waits for the thread (it holds a handle on
    /// the database, which must be closed when the store is dropped).
    fn drop(&mut self) {
        self.queue.ask(|r| r.stop = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
    /// stored, or erased). The body tree's value holds the body's place in the body log
    /// and its wrapped data key; erasure removes it in one transaction, and a body punched
    /// out after its reference was read reads as none.
    pub(crate) fn read_body(
        &self,
        tree: cipher::BodyTree,
        id: Uuid,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let bodies = match tree {
            cipher::BodyTree::Outbox => &self.trees.outbox_body,
            cipher::BodyTree::Inbox => &self.trees.inbox_body,
        };
        let Some(stored) = bodies.get(id.as_bytes())? else {
            return Ok(None);
        };
        let decoded = bodies::Stored::decode(&stored).map_err(|reason| StoreError::Corrupt {
            what: "body reference",
            key: codec::hex(id.as_bytes()),
            reason,
        })?;
        let (reference, wrapped) = match decoded {
            bodies::Stored::Ref(at, Some(wrapped)) => (Some(at), Some(IVec::from(wrapped))),
            // A body in clear, or one an older store wrote: its key (if any) in `body_keys`.
            bodies::Stored::Ref(at, None) => (Some(at), self.trees.body_keys.get(tree.key_of(id))?),
            bodies::Stored::Inline => (None, self.trees.body_keys.get(tree.key_of(id))?),
        };
        let body = match reference {
            // A body stored in sled itself, by an older store.
            None => stored.to_vec(),
            Some(at) => match self.trees.bodies.read(&at) {
                Ok(body) => body,
                Err(bodies::ReadError::Mismatch(reason)) => {
                    // Erased (and punched out) since its reference was read: no body.
                    if bodies.get(id.as_bytes())?.as_deref() != Some(&stored[..]) {
                        return Ok(None);
                    }
                    return Err(StoreError::Corrupt {
                        what: "body",
                        key: at.to_string(),
                        reason,
                    });
                }
                Err(bodies::ReadError::Store(e)) => return Err(e),
            },
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
    /// Store a sealed body of record `id` in `tree`; part of the transaction. The commit
    /// puts the body in the body log and its place, with the wrapped data key, in `tree`
    /// (`Trees::place_bodies`).
    pub(crate) fn put_body(
        &self,
        tree: cipher::BodyTree,
        id: Uuid,
        sealed: &cipher::SealedBody,
    ) -> TxResult<()> {
        let bodies = match tree {
            cipher::BodyTree::Outbox => &self.outbox_body,
            cipher::BodyTree::Inbox => &self.inbox_body,
        };
        let value =
            bodies::pending(sealed.wrapped_key.as_deref(), &sealed.body).or_else(|reason| {
                abort(StoreError::Corrupt {
                    what: "wrapped data key",
                    key: codec::hex(id.as_bytes()),
                    reason,
                })
            })?;
        bodies.insert(id.as_bytes(), value)
    }

    /// Erase the body of record `id` in `tree`: its wrapped data key (in its reference, or
    /// in `body_keys` for a body an older store wrote) and its ciphertext, in this
    /// transaction. Returns whether there was a body.
    ///
    /// Once the transaction commits, the store retires its log (see
    /// [`Shared::retire_for_erasure`]).
    pub(crate) fn erase_body(&self, tree: cipher::BodyTree, id: Uuid) -> TxResult<bool> {
        let bodies = match tree {
            cipher::BodyTree::Outbox => &self.outbox_body,
            cipher::BodyTree::Inbox => &self.inbox_body,
        };
        let had_key = self.body_keys.take(&tree.key_of(id)[..])?.is_some();
        let had_body = bodies.take(id.as_bytes())?.is_some();
        if had_key || had_body {
            self.writes.borrow_mut().erases = true;
        }
        Ok(had_body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pons_core::journal::Outcome;

    fn draft(n: u64) -> JournalDraft {
        JournalDraft::new(
            time::macros::datetime!(2026-11-30 10:00 UTC),
            pons_core::NodeId::new("cuta").unwrap(),
            format!("writer {n}"),
            Operation::Consult,
            Outcome::Success,
        )
    }

    /// Options with a master key, as a node opens its store.
    fn keyed(durability: Durability) -> Options {
        Options {
            durability,
            master_key: Some(MasterKey::from_bytes(&[7; 32]).unwrap()),
        }
    }

    /// An outbox record `id` to cuta, with its `collect` draft.
    fn outgoing(id: Uuid) -> (NewOutboxRecord, JournalDraft) {
        let record = NewOutboxRecord {
            id,
            to: pons_core::NodeId::new("cuta").unwrap(),
            class: "minor-risk-report".into(),
            created: time::macros::datetime!(2026-11-30 10:00 UTC),
            subject_ref: None,
        };
        let mut d = draft(1);
        d.operation = Operation::Collect;
        (record, d)
    }

    const CRASH_CHILD_ENV: &str = "PONS_STORE_WAL_CRASH_CHILD_DIR";

    /// Entry point of the child process of the test below; does nothing unless
    /// `CRASH_CHILD_ENV` names a directory. Appends journal entries without end, in 4 KiB
    /// segments (so segments roll, are checkpointed and recycled all the time), printing
    /// each seq once it is durable.
    #[test]
    fn wal_crash_child() {
        let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
            return;
        };
        let options = Options {
            durability: Durability::FlushAndSync,
            ..Options::default()
        };
        let store = Store::open(&dir, options).unwrap();
        store.shared.wal.lock().unwrap().segment_bytes = 4096;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut out = std::io::stdout().lock();
        for n in 1.. {
            let seq = rt.block_on(store.append_journal(draft(n))).unwrap();
            use std::io::Write;
            writeln!(out, "ACK {seq}").unwrap();
            out.flush().unwrap();
        }
    }

    /// SIGKILL while segments roll, are checkpointed and recycled: the reopened store has
    /// every entry acknowledged, its journal verifies, and it goes on from there.
    #[test]
    fn a_store_killed_while_its_log_rolls_loses_nothing_acknowledged() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::wal_crash_child", "--nocapture"])
            .env(CRASH_CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = 0u64;
        while acked < 300 {
            let line = lines.next().expect("the child ended early").unwrap();
            if let Some(seq) = line.strip_prefix("ACK ") {
                acked = seq.parse().unwrap();
            }
        }
        child.kill().unwrap();
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(seq) = line.strip_prefix("ACK ") {
                acked = seq.parse().unwrap();
            }
        }
        assert!(!child.wait().unwrap().success(), "killed, not exited");

        let options = Options {
            durability: Durability::FlushAndSync,
            ..Options::default()
        };
        let store = Store::open(dir.path(), options).unwrap();
        let head = store.verify_journal().unwrap();
        assert!(head.seq >= acked, "acknowledged {acked}, kept {}", head.seq);
        let next = store.write(|tx| Ok(tx.append(&draft(0))?.seq)).unwrap().0;
        assert_eq!(next, head.seq + 1, "the journal goes on where it was");
    }

    /// A store dropped and reopened at once opens (sled may still hold its lock for a
    /// moment), again and again; one still open is refused, naming the lock.
    #[tokio::test]
    async fn a_dropped_store_reopens_at_once_and_an_open_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for n in 1..=20 {
            let store = Store::open(dir.path(), Options::default()).unwrap();
            store.append_journal(draft(n)).await.unwrap();
        }
        let store = Store::open(dir.path(), Options::default()).unwrap();
        assert_eq!(store.verify_journal().unwrap().seq, 20);
        let err = Store::open(dir.path(), Options::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("could not acquire lock"), "{err}");
    }

    /// Segments roll, the checkpointer deletes the ones sled holds, and a reopened store has
    /// every commit whichever segments were left.
    #[tokio::test]
    async fn the_log_rolls_and_checkpoints_and_the_store_reopens_whole() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            durability: Durability::FlushAndSync,
            ..Options::default()
        };
        {
            let store = Store::open(dir.path(), options.clone()).unwrap();
            store.shared.wal.lock().unwrap().segment_bytes = 4096;
            for n in 1..=200 {
                store.append_journal(draft(n)).await.unwrap();
            }
            // Give the checkpointer its turn: it deletes every segment but the last few.
            let segments = || wal::segments(&dir.path().join("wal")).unwrap();
            for _ in 0..100 {
                if segments().len() <= 2 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let left = segments();
            assert!(left.len() <= 2, "checkpointed segments deleted: {left:?}");
            assert!(left[0].0 > 100, "the log no longer starts at 1: {left:?}");
        }
        let store = Store::open(dir.path(), options).unwrap();
        assert_eq!(store.verify_journal().unwrap().seq, 200);
        let actors: Vec<String> = store.journal_iter(199).map(|e| e.unwrap().actor).collect();
        assert_eq!(actors, ["writer 199", "writer 200"]);
    }

    /// sled writes itself out on its own, the body log only at checkpoints: after a power
    /// loss sled may hold references to bodies the kernel never wrote. Recovery writes the
    /// bodies of every record still in the log again, those sled already holds included.
    /// (Without that, this test fails: sled is flushed through the last commit below, so
    /// replaying only what it lacks writes no body.)
    #[tokio::test]
    async fn bodies_lost_from_the_body_log_are_written_again_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let options = keyed(Durability::FlushAndSync);
        let id =
            |n: u64| Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 + u128::from(n));
        let body = |n: u64| format!("envelope {n} ").repeat(200).into_bytes();
        {
            let store = Store::open(dir.path(), options.clone()).unwrap();
            for n in 1..=20 {
                let (record, d) = outgoing(id(n));
                store.submit(record, &body(n), d).await.unwrap();
            }
            // sled holds every commit, the log still holds them all (no checkpoint yet).
            store.flush_db().await.unwrap();
            let applied = store.trees.meta.get(wal::APPLIED_KEY).unwrap().unwrap();
            assert_eq!(codec::be_u64("applied", &applied).unwrap(), 20);
        }
        // What the kernel had not written of the body log when the power went.
        let file = dir.path().join("bodies").join("00000001.body");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(bodies::BLOCK)
            .unwrap();
        let store = Store::open(dir.path(), options).unwrap();
        for n in 1..=20 {
            assert_eq!(
                store.outbox_envelope(id(n)).unwrap(),
                Some(body(n)),
                "record {n}"
            );
        }
        store.verify_journal().unwrap();
    }

    /// New bodies keep their wrapped data key in their reference (one sled key per body);
    /// a body an older store kept in sled, its key in `body_keys`, still reads and erases.
    #[tokio::test]
    async fn bodies_an_older_store_kept_in_sled_still_read_and_erase() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), keyed(Durability::Flush)).unwrap();
        let deadlines = pons_core::retention::Deadlines {
            review_by: time::macros::date!(2027 - 01 - 01),
            erase_by: time::macros::date!(2031 - 01 - 01),
        };
        for n in [1u128, 2] {
            let (record, d) = outgoing(Uuid::from_u128(n));
            store
                .submit_retained(record, deadlines, b"new body", d)
                .await
                .unwrap();
        }
        let tree = cipher::BodyTree::Outbox;
        let (new, old) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let no_key = |id: Uuid| {
            store
                .trees
                .body_keys
                .get(tree.key_of(id))
                .unwrap()
                .is_none()
        };
        assert!(no_key(new));
        let stored = store
            .trees
            .outbox_body
            .get(new.as_bytes())
            .unwrap()
            .unwrap();
        assert!(matches!(
            bodies::Stored::decode(&stored),
            Ok(bodies::Stored::Ref(_, Some(_)))
        ));
        assert_eq!(store.outbox_envelope(new).unwrap().unwrap(), b"new body");

        // Record 2 as an older version stored it: the body in sled, its key apart.
        let sealed = store.seal_body(tree, old, b"old body").unwrap();
        let wrapped = sealed.wrapped_key.clone().unwrap();
        store
            .trees
            .outbox_body
            .inner
            .insert(old.as_bytes(), sealed.body)
            .unwrap();
        store
            .trees
            .body_keys
            .inner
            .insert(tree.key_of(old), wrapped)
            .unwrap();
        assert_eq!(store.outbox_envelope(old).unwrap().unwrap(), b"old body");

        for id in [new, old] {
            let mut d = draft(1);
            d.operation = Operation::Erase;
            store.erase(id, d, |_| Ok(())).await.unwrap();
            assert_eq!(store.outbox_envelope(id).unwrap(), None);
            assert!(no_key(id));
            assert!(store
                .trees
                .outbox_body
                .get(id.as_bytes())
                .unwrap()
                .is_none());
        }
        store.verify_journal().unwrap();
    }
}
