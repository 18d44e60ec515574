//! Drives `pons_proto::Sender` for one peer: the clock, the sleeps and the streams.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pons_core::NodeId;
use pons_proto::sender::{Config, Event, Sender};
use pons_proto::{Frame, RecordId, RejectCode};
use quinn::Connection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::link::PeerLink;
use crate::TransportError;

/// The node's side of sending: where envelopes come from and where responses go.
pub trait Outbox: Send + Sync + 'static {
    /// The envelope of a record to send, exactly as sealed; `None` if the outbox no longer
    /// holds it for sending (withdrawn, erased, already finished): the driver drops it.
    fn envelope(&self, id: RecordId) -> impl Future<Output = Option<Vec<u8>>> + Send;

    /// Judges the response `frame` that `peer` gave to record `id`, and persists the
    /// outcome: a `Receipt` counts only once verified (signed by the intended recipient,
    /// over this record id and the SHA-256 of the exact bytes sent) and recorded.
    fn on_response(
        &self,
        peer: &NodeId,
        id: RecordId,
        frame: Frame,
    ) -> impl Future<Output = ResponseOutcome> + Send;
}

/// What the node made of a response, fed to the sender state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseOutcome {
    /// A valid receipt, recorded: the record is delivered and forgotten by the driver.
    Delivered,
    /// A refusal the node recorded as final: the record is forgotten by the driver.
    Rejected,
    /// Send the record again later (a transient reject, or a response that did not
    /// verify, or the node could not record it now).
    Retry,
}

enum Command {
    Enqueue(RecordId),
    Cancel(RecordId),
    Shutdown(oneshot::Sender<()>),
}

/// What one attempt at a record came to.
enum Attempt {
    /// The peer answered and the node judged the answer.
    Answered(Frame, ResponseOutcome),
    /// The outbox no longer holds the record.
    Gone,
    /// No answer.
    Failed(TransportError),
}

/// Delivers the records of one peer: a task running a `pons_proto::Sender` against a
/// [`PeerLink`], with up to the sender's `max_in_flight` streams at once, retries and
/// reconnects paced by the sender's backoffs. Dropping it without
/// [`PeerDriver::shutdown`] stops the task at once.
#[derive(Debug)]
pub struct PeerDriver {
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<()>>,
    link: PeerLink,
    pending: Arc<AtomicUsize>,
}

impl PeerDriver {
    /// Starts the driver task. Must run inside a tokio runtime.
    pub fn spawn<O: Outbox>(link: PeerLink, config: Config, outbox: Arc<O>) -> PeerDriver {
        let (commands, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let run = Run {
            sender: Sender::new(config),
            link: link.clone(),
            outbox,
            conn: None,
            connecting: None,
            streams: JoinSet::new(),
            tasks: HashMap::new(),
            task_ids: HashMap::new(),
            pending: pending.clone(),
            draining: false,
        };
        let task = tokio::spawn(run.run(rx));
        PeerDriver {
            commands,
            task: Some(task),
            link,
            pending,
        }
    }

    /// Queues a record for delivery (on submit, and for every record the outbox has not
    /// finished at start-up). A record already queued or in flight is not queued twice.
    /// Ignored after [`PeerDriver::shutdown`] began.
    pub fn enqueue(&self, id: RecordId) {
        let _ = self.commands.send(Command::Enqueue(id));
    }

    /// Stops delivering a record (withdrawn or erased) if it is waiting for an attempt.
    /// A record in flight finishes its attempt; the outbox should then answer `None` from
    /// [`Outbox::envelope`] for it, which drops it at its next attempt.
    pub fn cancel(&self, id: RecordId) {
        let _ = self.commands.send(Command::Cancel(id));
    }

    /// Records queued or in flight, as of the driver's last step.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// The link the driver uses (for its [`PeerLink::state`]).
    pub fn link(&self) -> &PeerLink {
        &self.link
    }

    /// Stops taking new work, lets the streams in flight finish (at most the link's
    /// response timeout), then ends the task. Records not delivered stay in the outbox.
    pub async fn shutdown(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for PeerDriver {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A connection attempt, and the records handed out by the sender while it runs.
type Connecting = (
    JoinHandle<Result<Connection, TransportError>>,
    Vec<RecordId>,
);

/// The driver task's state.
struct Run<O> {
    sender: Sender,
    link: PeerLink,
    outbox: Arc<O>,
    /// The connection streams are opened on; `None` until connected.
    conn: Option<Connection>,
    /// A connection attempt in progress, with the records waiting for it.
    connecting: Option<Connecting>,
    /// One task per record in flight: (record, connection id, what happened).
    streams: JoinSet<(RecordId, usize, Attempt)>,
    /// Which record each stream task carries, to abort it on timeout.
    tasks: HashMap<RecordId, tokio::task::AbortHandle>,
    /// The record of each stream task, to know which one a panicked task carried.
    task_ids: HashMap<tokio::task::Id, RecordId>,
    pending: Arc<AtomicUsize>,
    draining: bool,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl<O: Outbox> Run<O> {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut shutdown_waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            self.step();
            if self.draining && self.streams.is_empty() {
                break;
            }
            let wake = if self.draining {
                drain_deadline
            } else {
                self.sender
                    .poll_timeout()
                    .map(tokio::time::Instant::from_std)
            };
            tokio::select! {
                command = commands.recv(), if !self.draining => match command {
                    Some(Command::Enqueue(id)) => {
                        self.sender.enqueue(id, now());
                    }
                    Some(Command::Cancel(id)) => {
                        self.sender.cancel(id);
                    }
                    Some(Command::Shutdown(done)) => {
                        shutdown_waiters.push(done);
                        self.start_draining();
                        drain_deadline = Some(
                            tokio::time::Instant::now() + self.link.limits().response_timeout,
                        );
                    }
                    None => {
                        self.start_draining();
                        drain_deadline = Some(
                            tokio::time::Instant::now() + self.link.limits().response_timeout,
                        );
                    }
                },
                connected = async {
                    match self.connecting.as_mut() {
                        Some((task, _)) => task.await,
                        None => std::future::pending().await,
                    }
                } => {
                    let waiting = self.connecting.take().map(|(_, w)| w).unwrap_or_default();
                    self.on_connected(connected.unwrap_or(Err(TransportError::Closed)), waiting);
                }
                Some(joined) = self.streams.join_next_with_id(), if !self.streams.is_empty() => {
                    match joined {
                        Ok((task, (id, conn_id, attempt))) => {
                            self.task_ids.remove(&task);
                            if self.tasks.get(&id).map(|h| h.id()) == Some(task) {
                                self.tasks.remove(&id);
                            }
                            self.on_attempt(id, conn_id, attempt);
                        }
                        Err(e) => {
                            let id = self.task_ids.remove(&e.id());
                            if let (true, Some(id)) = (e.is_panic(), id) {
                                // The outbox panicked judging it: retry, as for a failure.
                                tracing::error!(peer = %self.link.node(), record_id = %id, "outbox panicked");
                                self.tasks.remove(&id);
                                self.sender.on_stream_failed(id, now());
                            }
                            // A cancelled task was a timed-out stream: already retried.
                        }
                    }
                }
                _ = sleep_until(wake) => {
                    if self.draining {
                        break;
                    }
                    self.sender.handle_timeout(now());
                }
            }
        }
        self.streams.abort_all();
        if let Some((task, _)) = self.connecting.take() {
            task.abort();
        }
        for done in shutdown_waiters {
            let _ = done.send(());
        }
    }

    fn start_draining(&mut self) {
        self.draining = true;
        if let Some((task, _)) = self.connecting.take() {
            task.abort();
        }
    }

    /// Opens the streams the sender allows and acts on its events.
    fn step(&mut self) {
        let now = now();
        if !self.draining {
            while let Some(id) = self.sender.poll_transmit(now) {
                match &self.conn {
                    Some(conn) if conn.close_reason().is_none() => {
                        let conn = conn.clone();
                        self.spawn_stream(id, conn);
                    }
                    _ => {
                        self.conn = None;
                        match &mut self.connecting {
                            // Handed out again while waiting (its response timeout passed
                            // before the connection came): it waits once.
                            Some((_, waiting)) if waiting.contains(&id) => {}
                            Some((_, waiting)) => waiting.push(id),
                            None => {
                                let link = self.link.clone();
                                let task = tokio::spawn(async move { link.connection().await });
                                self.connecting = Some((task, vec![id]));
                            }
                        }
                    }
                }
            }
        }
        while let Some(event) = self.sender.poll_event() {
            match event {
                Event::TimedOut { record_id } => {
                    // Give the stream up: dropping its task resets it.
                    if let Some(task) = self.tasks.remove(&record_id) {
                        self.task_ids.remove(&task.id());
                        task.abort();
                    }
                    tracing::info!(peer = %self.link.node(), %record_id, "no response in time");
                }
                Event::Delivered {
                    record_id,
                    attempts,
                } => {
                    tracing::debug!(peer = %self.link.node(), %record_id, attempts, "delivered");
                }
                Event::Rejected {
                    record_id, code, ..
                } => {
                    tracing::info!(peer = %self.link.node(), %record_id, %code, "rejected");
                }
                Event::RetryScheduled {
                    record_id,
                    failures,
                    cause,
                    ..
                } => {
                    tracing::debug!(peer = %self.link.node(), %record_id, failures, ?cause, "retry scheduled");
                }
                _ => {}
            }
        }
        self.pending.store(self.sender.len(), Ordering::SeqCst);
    }

    fn spawn_stream(&mut self, id: RecordId, conn: Connection) {
        let link = self.link.clone();
        let outbox = self.outbox.clone();
        let conn_id = conn.stable_id();
        let handle = self.streams.spawn(async move {
            let Some(envelope) = outbox.envelope(id).await else {
                return (id, conn_id, Attempt::Gone);
            };
            let attempt = match link.deliver_on(&conn, &envelope).await {
                Ok(frame) => {
                    let outcome = outbox.on_response(link.node(), id, frame.clone()).await;
                    Attempt::Answered(frame, outcome)
                }
                Err(e) => Attempt::Failed(e),
            };
            (id, conn_id, attempt)
        });
        self.task_ids.insert(handle.id(), id);
        if let Some(previous) = self.tasks.insert(id, handle) {
            // A stream for this record is still open (given up, then sent again): the
            // newer one replaces it.
            self.task_ids.remove(&previous.id());
            previous.abort();
        }
    }

    fn on_connected(&mut self, result: Result<Connection, TransportError>, waiting: Vec<RecordId>) {
        match result {
            Ok(conn) => {
                for id in waiting {
                    // A record may have timed out while waiting for the connection.
                    if self.sender.contains(id) {
                        self.spawn_stream(id, conn.clone());
                    }
                }
                self.conn = Some(conn);
            }
            Err(e) => {
                tracing::info!(peer = %self.link.node(), error = %e, "connecting failed");
                // The waiting records were handed out but never sent: back to the queue.
                self.sender.on_connect_failed(now());
            }
        }
    }

    fn on_attempt(&mut self, id: RecordId, conn_id: usize, attempt: Attempt) {
        let now = now();
        match attempt {
            Attempt::Answered(_, ResponseOutcome::Delivered) => self.sender.on_receipt(id, now),
            Attempt::Answered(Frame::Reject { code, reason }, outcome) => {
                let code = match outcome {
                    // The node recorded a final refusal: the sender must forget the record,
                    // which it does for permanent codes only.
                    ResponseOutcome::Rejected if !code.is_permanent() => RejectCode::Malformed,
                    _ => code,
                };
                if outcome == ResponseOutcome::Retry && code.is_permanent() {
                    // The node chose to retry despite a permanent code.
                    self.sender.on_stream_failed(id, now);
                } else {
                    self.sender.on_reject(id, code, reason, now);
                }
            }
            Attempt::Answered(_, ResponseOutcome::Rejected) => self.sender.on_reject(
                id,
                RejectCode::Malformed,
                "the response did not verify and the node refused the record".into(),
                now,
            ),
            Attempt::Answered(_, _) => self.sender.on_stream_failed(id, now),
            Attempt::Gone => {
                tracing::info!(peer = %self.link.node(), record_id = %id, "record no longer in the outbox; not sent");
                // Only a waiting record can be cancelled: end the attempt first.
                self.sender.on_stream_failed(id, now);
                self.sender.cancel(id);
            }
            Attempt::Failed(e) => {
                tracing::debug!(peer = %self.link.node(), record_id = %id, error = %e, "stream failed");
                let current = self.conn.as_ref().map(Connection::stable_id) == Some(conn_id);
                if e.is_connection_level() && current {
                    self.conn = None;
                    self.sender.on_connection_lost(now);
                } else {
                    self.sender.on_stream_failed(id, now);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
