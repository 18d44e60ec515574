//! Group commit of whole transactions: concurrent writers share one transaction, one record
//! in the write-ahead log and one fdatasync (issue 7).
//!
//! A transaction's cost is mostly fixed: applying its writes to sled, appending its record
//! to the log (`wal.rs`) and, for a writer that waits for durability, one fdatasync of the
//! log. Sharing the fdatasync alone ([`Store::durable`]) does not share the rest.
//!
//! [`Store::write_batched`] queues the writer's closure for a committer thread owned by the
//! store. The committer takes every closure queued while it was busy, runs them **in queue
//! order inside one transaction** (each sees the writes of those before it, as if they had
//! committed one after the other), commits, syncs the log once, and only then answers each
//! writer. A closure that aborts is dropped from the batch with its error and the
//! transaction runs again without it, so no writer sees the effect of another's abort: the
//! outcome is the one serial commits in queue order would have had.
//!
//! Every guarantee of [`Store::write`] holds: each closure's changes and its journal entries
//! commit together (and here with those of its batch), the journal head moves inside the
//! transaction, and no writer is answered before the sync that covers it.

use std::cell::RefCell;
use std::sync::mpsc;
use std::thread::JoinHandle;

use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::{Store, StoreError, Tx, TxResult};

/// The most closures one transaction runs: bounds the transaction's size and the rerun cost
/// of an abort.
const MAX_BATCH: usize = 256;

/// How long writes that need no flush wait for one that does, to share its transaction.
const UNFLUSHED_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// A closure waiting for the committer, with the place its answer goes.
pub(crate) trait Queued: Send {
    /// Run the closure inside the batch's transaction; keeps its value for [`Queued::answer`].
    fn run(&self, tx: &Tx<'_>) -> TxResult<()>;
    /// Answer the writer: the value of its last run and the batch's ticket, or the error.
    fn answer(self: Box<Self>, outcome: Result<u64, StoreError>);
    /// Whether the writer waits for the flush (see [`Store::write_batched_unflushed`]).
    fn durable(&self) -> bool;
}

/// A writer's closure, its value once run, and the channel its writer waits on.
struct Job<T, F> {
    f: F,
    durable: bool,
    value: RefCell<Option<T>>,
    reply: tokio::sync::oneshot::Sender<Result<(T, u64), StoreError>>,
}

impl<T, F> Queued for Job<T, F>
where
    T: Send,
    F: Fn(&Tx<'_>) -> TxResult<T> + Send,
{
    fn run(&self, tx: &Tx<'_>) -> TxResult<()> {
        let value = (self.f)(tx)?;
        *self.value.borrow_mut() = Some(value);
        Ok(())
    }

    fn answer(self: Box<Self>, outcome: Result<u64, StoreError>) {
        let Job { value, reply, .. } = *self;
        let answer = match (outcome, value.into_inner()) {
            (Ok(ticket), Some(value)) => Ok((value, ticket)),
            (Ok(_), None) => Err(StoreError::Task(
                "batched write committed without running its closure".into(),
            )),
            (Err(e), _) => Err(e),
        };
        // The writer may have gone away (its task cancelled); the write stands.
        let _ = reply.send(answer);
    }

    fn durable(&self) -> bool {
        self.durable
    }
}

/// The committer thread of one store and the queue that feeds it.
pub(crate) struct Batcher {
    queue: Option<mpsc::Sender<Box<dyn Queued>>>,
    thread: Option<JoinHandle<()>>,
}

impl Batcher {
    /// Starts the committer over `store`'s shared handles (see [`Committer`]).
    pub(crate) fn start(committer: Committer) -> Result<Batcher, StoreError> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Queued>>();
        let thread = std::thread::Builder::new()
            .name("pons-store-commit".into())
            .spawn(move || committer.run(&jobs))
            .map_err(|source| StoreError::Io {
                path: "store committer thread".into(),
                source,
            })?;
        Ok(Batcher {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    fn send(&self, job: Box<dyn Queued>) -> Result<(), StoreError> {
        self.queue
            .as_ref()
            .and_then(|q| q.send(job).ok())
            .ok_or_else(|| StoreError::Task("the store's committer has stopped".into()))
    }
}

impl Drop for Batcher {
    /// Closes the queue and waits for the committer to answer what it holds, so that the
    /// database is closed when the store is dropped (sled locks its files).
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the committer thread shares with the store: clones of its handles.
pub(crate) struct Committer {
    pub(crate) store: crate::Shared,
}

impl Committer {
    /// A committer over `store`'s handles.
    pub(crate) fn new(store: crate::Shared) -> Committer {
        Committer { store }
    }
}

impl Committer {
    fn run(self, jobs: &mpsc::Receiver<Box<dyn Queued>>) {
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            // Writes that do not wait for a flush wait a little for one that does, and ride
            // in its transaction: fewer and larger transactions are what makes a store fast
            // (each applies to sled and appends to the log once).
            let deadline = std::time::Instant::now() + UNFLUSHED_WAIT;
            while batch.len() < MAX_BATCH && !batch.iter().any(|j| j.durable()) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match jobs.recv_timeout(left) {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            // A closure that panics loses its batch (those writers get an error: the channel
            // of each answer is dropped unanswered), not the store: the committer goes on.
            let commit = std::panic::AssertUnwindSafe(|| self.commit(batch));
            if std::panic::catch_unwind(commit).is_err() {
                tracing::error!("a batched write panicked; its batch was not committed");
            }
        }
    }

    /// Runs `batch` in one transaction (dropping closures that abort), makes it durable and
    /// answers every writer.
    fn commit(&self, batch: Vec<Box<dyn Queued>>) {
        let mut failed: Vec<Option<StoreError>> = batch.iter().map(|_| None).collect();
        let committed = loop {
            if failed.iter().all(Option::is_some) {
                break None;
            }
            match self.store.transaction(&batch, &failed) {
                Ok(ticket) => break Some(Ok(ticket)),
                Err(TransactionError::Abort((i, e))) => failed[i] = Some(e),
                Err(TransactionError::Storage(e)) => break Some(Err(e)),
            }
        };
        // Synced only if a writer of the batch waits for it; otherwise the next sync (any
        // durable write's) covers the batch. It is in the log already: only a power loss
        // before that sync can lose it.
        let wait = batch
            .iter()
            .zip(&failed)
            .any(|(job, failure)| failure.is_none() && job.durable());
        let outcome = match committed {
            None => None,
            Some(Ok(ticket)) if wait => Some(self.store.sync_through(ticket).map(|()| ticket)),
            Some(Ok(ticket)) => Some(Ok(ticket)),
            Some(Err(e)) => Some(Err(StoreError::from(e))),
        };
        for (job, failure) in batch.into_iter().zip(failed) {
            let answer = match (failure, &outcome) {
                (Some(e), _) => Err(e),
                (None, Some(Ok(ticket))) => Ok(*ticket),
                (None, Some(Err(e))) => Err(duplicate(e)),
                (None, None) => Err(StoreError::Task("batch committed nothing".into())),
            };
            job.answer(answer);
        }
    }
}

impl crate::Shared {
    /// One transaction over every tree running the closures of `batch` not yet
    /// `failed`, in order; the ticket of the commit.
    fn transaction(
        &self,
        batch: &[Box<dyn Queued>],
        failed: &[Option<StoreError>],
    ) -> Result<u64, TransactionError<(usize, StoreError)>> {
        self.transact(|tx| {
            for (i, job) in batch.iter().enumerate() {
                if failed[i].is_some() {
                    continue;
                }
                tx.job.set(i);
                job.run(tx).map_err(|e| of_job(i, e))?;
            }
            // One receipt for the records each sender got into this batch (see `inbox.rs`);
            // if one cannot be sealed, the first write it covers is dropped and the batch
            // runs again.
            tx.seal_receipts().map_err(|(i, e)| of_job(i, e))
        })
        .map(|((), ticket)| ticket)
    }
}

impl Store {
    /// Like [`Store::write`] followed by [`Store::durable`], but run by the store's committer
    /// together with every other write queued meanwhile: one transaction and one sync
    /// for the whole batch (see the module `batch.rs`). Returns once the write is durable.
    ///
    /// `f` may run more than once (on a conflict, or when another closure of its batch
    /// aborts), so it must only read and write through `Tx`; it runs on the committer
    /// thread, hence `Send + 'static`.
    pub(crate) async fn write_batched<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Tx<'_>) -> TxResult<T> + Send + 'static,
    {
        self.queue(f, true).await
    }

    /// [`Store::write_batched`] for a write that acknowledges nothing to anyone, so that
    /// losing it in a crash only means doing it again: it returns once committed (in the
    /// log, so a process crash keeps it), and is made durable against a power loss by the
    /// next sync of the log, any durable write's. A sender's "delivered" is such a write: the
    /// receiver holds the record and its receipt durably, and a sender that lost the mark
    /// sends the record again and gets the same receipt back.
    pub(crate) async fn write_batched_unflushed<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Tx<'_>) -> TxResult<T> + Send + 'static,
    {
        self.queue(f, false).await
    }

    async fn queue<T, F>(&self, f: F, durable: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Tx<'_>) -> TxResult<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.batcher.send(Box::new(Job {
            f,
            durable,
            value: RefCell::new(None),
            reply,
        }))?;
        let (value, _ticket) = answer
            .await
            .map_err(|_| StoreError::Task("the store's committer dropped a write".into()))??;
        Ok(value)
    }
}

/// `e`, raised by the batch's write `i`.
fn of_job(
    i: usize,
    e: ConflictableTransactionError<StoreError>,
) -> ConflictableTransactionError<(usize, StoreError)> {
    match e {
        ConflictableTransactionError::Abort(e) => ConflictableTransactionError::Abort((i, e)),
        ConflictableTransactionError::Conflict => ConflictableTransactionError::Conflict,
        ConflictableTransactionError::Storage(e) => ConflictableTransactionError::Storage(e),
    }
}

/// A copy of `e` for each writer of a batch that failed as a whole.
fn duplicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Database(m) => StoreError::Database(m.clone()),
        StoreError::Io { path, source } => StoreError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => StoreError::Task(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{abort, Options};
    use pons_core::journal::{JournalDraft, Operation, Outcome};
    use pons_core::NodeId;
    use tokio::sync::oneshot;

    fn draft(actor: &str) -> JournalDraft {
        JournalDraft::new(
            time::macros::datetime!(2026-11-29 10:00 UTC),
            NodeId::new("cuta").unwrap(),
            actor,
            Operation::Consult,
            Outcome::Success,
        )
    }

    type Answer = oneshot::Receiver<Result<(u64, u64), StoreError>>;

    /// A job that appends one journal entry by `actor`, then aborts if `fail`.
    fn job(actor: &'static str, fail: bool) -> (Box<dyn Queued>, Answer) {
        job_of(actor, fail, true)
    }

    fn job_of(actor: &'static str, fail: bool, durable: bool) -> (Box<dyn Queued>, Answer) {
        let (reply, answer) = oneshot::channel();
        let f = move |tx: &Tx<'_>| {
            let seq = tx.append(&draft(actor))?.seq;
            if fail {
                return abort(StoreError::Task(format!("{actor} refused")));
            }
            Ok(seq)
        };
        let job = Job {
            f,
            durable,
            value: RefCell::new(None),
            reply,
        };
        (Box::new(job), answer)
    }

    #[test]
    fn an_aborted_write_leaves_no_trace_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let (a, answer_a) = job("a", false);
        let (b, answer_b) = job("b", true);
        let (c, answer_c) = job("c", false);
        Committer::new(store.shared.clone()).commit(vec![a, b, c]);

        let (seq_a, ticket_a) = answer_a.blocking_recv().unwrap().unwrap();
        let refused = answer_b.blocking_recv().unwrap().unwrap_err();
        let (seq_c, ticket_c) = answer_c.blocking_recv().unwrap().unwrap();
        // As if a, then c, had committed alone: b's entry was never written.
        assert_eq!((seq_a, seq_c), (1, 2));
        assert_eq!(ticket_a, ticket_c, "one transaction for the batch");
        assert!(refused.to_string().contains("b refused"), "{refused}");
        let actors: Vec<String> = store.journal_iter(1).map(|e| e.unwrap().actor).collect();
        assert_eq!(actors, ["a", "c"]);
        assert_eq!(store.verify_journal().unwrap().seq, 2);
    }

    /// A batch flushes only if one of its writers waits for it.
    #[test]
    fn a_batch_is_flushed_only_for_a_writer_that_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let synced = || *store.shared.synced.blocking_lock();
        let committer = Committer::new(store.shared.clone());
        let (a, answer_a) = job_of("a", false, false);
        committer.commit(vec![a]);
        let (_, ticket_a) = answer_a.blocking_recv().unwrap().unwrap();
        assert!(
            synced() < ticket_a,
            "an unflushed write is answered without a flush"
        );
        let (b, answer_b) = job_of("b", false, false);
        let (c, answer_c) = job_of("c", false, true);
        committer.commit(vec![b, c]);
        let (_, ticket_b) = answer_b.blocking_recv().unwrap().unwrap();
        let (_, ticket_c) = answer_c.blocking_recv().unwrap().unwrap();
        assert_eq!(ticket_b, ticket_c);
        assert!(synced() >= ticket_c, "a durable writer's batch is flushed");
        assert!(
            synced() > ticket_a,
            "and the flush covers what was committed before it"
        );
    }

    /// With sync on, a durable writer is answered after the fdatasync that covers it; the
    /// unflushed ones among them are not waited for.
    #[test]
    fn with_sync_on_durable_writers_are_answered_after_their_sync() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            durability: crate::Durability::FlushAndSync,
            ..Options::default()
        };
        let store = Store::open(dir.path(), options).unwrap();
        let answers: Vec<(bool, Answer)> = (0..60)
            .map(|i| {
                let durable = i % 3 != 0;
                let (job, answer) = job_of("w", false, durable);
                store.batcher.send(job).unwrap();
                (durable, answer)
            })
            .collect();
        let mut seqs = Vec::new();
        for (durable, answer) in answers {
            let (seq, ticket) = answer.blocking_recv().unwrap().unwrap();
            if durable {
                assert!(*store.shared.synced.blocking_lock() >= ticket);
            }
            seqs.push(seq);
        }
        assert_eq!(
            seqs,
            (1..=60).collect::<Vec<u64>>(),
            "journaled in queue order"
        );
        assert_eq!(store.verify_journal().unwrap().seq, 60);
    }

    #[test]
    fn a_batch_of_only_aborts_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let (a, answer_a) = job("a", true);
        let (b, answer_b) = job("b", true);
        Committer::new(store.shared.clone()).commit(vec![a, b]);
        assert!(answer_a.blocking_recv().unwrap().is_err());
        assert!(answer_b.blocking_recv().unwrap().is_err());
        assert_eq!(store.journal_head().unwrap().seq, 0);
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_committer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let lost = store
            .write_batched(|_tx| -> TxResult<()> { panic!("a closure that panics") })
            .await;
        assert!(matches!(lost, Err(StoreError::Task(_))), "{lost:?}");
        let seq = store
            .write_batched(|tx| Ok(tx.append(&draft("after"))?.seq))
            .await
            .unwrap();
        assert_eq!(seq, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batched_writes_chain_in_one_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path(), Options::default()).unwrap());
        let writers: Vec<_> = (0..64)
            .map(|_| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .write_batched(|tx| Ok(tx.append(&draft("w"))?.seq))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for w in writers {
            seqs.push(w.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=64).collect::<Vec<u64>>());
        assert_eq!(store.verify_journal().unwrap().seq, 64);
    }
}
