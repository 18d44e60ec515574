//! The feed: every record this node accepted, handed to the agency's own systems through
//! the sinks named in the configuration, exactly once per sink, in arrival order.
//!
//! Each sink keeps a **cursor** in the store: the arrival number up to which every record was
//! handed over (or set aside as a dead letter). A push sink (`spool`, `exec`, `nats`) has a
//! worker that reads the inbox after its cursor, hands the records over, and only then moves
//! the cursor — with one `disclose` journal entry per record, in the same store transaction
//! ([`pons_store::Store::feed_advance`]). A `stream` sink has no worker: `pons feed` reads it
//! through the control socket and moves its cursor by acknowledging.
//!
//! Delivery is at least once: a crash between a hand-over and the cursor's move hands the
//! record over again after the restart. Consumers make it exactly once by keeping each
//! record id only once (the spool names its files by record id; every feed record carries
//! its id, and NATS deduplicates on the `Nats-Msg-Id` header). See
//! `docs/integrating-a-feed.md`.
//!
//! Journal entries of hand-overs (LED art. 25(1): a disclosure log names its recipient): the
//! recipient is the agency's own system, which is not a node, so `counterpart` is empty and
//! `justification` is `sink:<name>`; `purpose` and `legal_basis` are the record's.

mod exec;
mod nats;
mod sink;
mod spool;
mod stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use base64::Engine;
use pons_core::envelope::{open_record, stored_record};
use pons_core::journal::{JournalDraft, Operation, Outcome, SYSTEM_ACTOR};
use pons_core::Trust;
use pons_store::{DeadLetter, InboxRecord, StoreError};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::control::{Caller, Response};
use crate::runtime::{rfc3339, Runtime};

pub(crate) use sink::{resolve_sinks, RawSink};
pub use sink::{ExecSink, NatsSink, SinkConfig, SinkKind};

/// The `format` of every feed record: its JSON Schema is `docs/feed-record.schema.json`.
pub const FEED_FORMAT: &str = "pons-feed-record/1";

/// Records a worker reads and hands over at a time.
const BATCH: usize = 256;

/// What a hand-over attempt achieved: the records taken (a prefix of those offered) and,
/// when fewer than all were taken, why the next one was not.
#[derive(Debug, Default)]
pub(crate) struct Pushed {
    /// How many of the offered records the sink took.
    pub taken: usize,
    /// Why it stopped before the end.
    pub error: Option<String>,
}

/// One record ready for a sink: its metadata and its feed record as JSON bytes.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The inbox metadata.
    pub rec: InboxRecord,
    /// The feed record, JSON, one line without the newline.
    pub json: Vec<u8>,
    /// The record's purpose and legal basis, for the `disclose` entry of its hand-over
    /// (none when the record did not verify: read back from the store then).
    pub basis: Option<(String, String)>,
}

/// What a push sink does. Workers call it with records in arrival order.
pub(crate) trait Push: Send + 'static {
    /// Hands `items` over in order; stops at the first failure.
    fn push(&mut self, items: &[Item]) -> impl std::future::Future<Output = Pushed> + Send;
    /// After this many consecutive failures of the same record, it becomes a dead letter;
    /// `None`: retried until it goes through (a full disk is not the record's fault).
    fn max_attempts(&self) -> Option<u32>;
    /// The backoff between failed attempts.
    fn backoff(&self) -> pons_proto::Backoff;
    /// Records offered per hand-over; the cursor moves after each hand-over.
    fn batch(&self) -> usize {
        BATCH
    }
}

/// What `pons status` shows of one sink, since the node started.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct SinkStatus {
    handed_over: u64,
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_error_at: Option<OffsetDateTime>,
}

/// The running feed: the sinks, their workers and what wakes them.
pub struct Feed {
    sinks: Vec<SinkConfig>,
    trust: Trust,
    /// The highest arrival number announced; workers and long polls wait on it.
    arrivals: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    status: Mutex<BTreeMap<String, SinkStatus>>,
    /// The outcome of verifying each stored envelope lately ([`Verified`]).
    verified: Mutex<Verified>,
}

/// How many verification outcomes [`Verified`] keeps at most (~200 bytes each with their
/// keys, ~3 MiB in all): enough for a slow sink thousands of records behind the others.
const VERIFIED_KEEP: usize = 16_384;

/// The outcome of verifying a stored envelope, kept so that the other sinks do not verify
/// the same bytes again: each sink gets the same record, so with four sinks the receiving
/// node verified every signature up to four times (issue 7: 9,600 verifications for 6,000
/// records in one `pons bench` run, whose slow sinks had not taken them all; 6,001 since).
///
/// An outcome is keyed by the SHA-256 of the exact bytes read from the store and the time
/// they were verified against (the record's reception); the trust and the skew are the
/// feed's own, fixed. A hit is therefore what verifying those bytes again would give, and
/// bytes that changed on disk miss and are verified afresh. Only the outcome is kept (the
/// signer, or why it did not verify), never a record's content: a verified hit decodes the
/// record from the bytes just read ([`stored_record`]), so nothing of a record outlives its
/// hand-over here, and an erased one is never handed over (its envelope is read from the
/// store every time). An outcome is forgotten once every sink has used it (a sink that
/// reads a record again, as a stream's reader may, counts once), or when [`VERIFIED_KEEP`]
/// newer ones push it out.
#[derive(Default)]
struct Verified {
    outcomes: HashMap<VerifiedKey, Slot>,
    /// Keys in the order they came, to forget the oldest; keys forgotten since may still
    /// be in it, and are skipped.
    order: std::collections::VecDeque<VerifiedKey>,
}

/// The SHA-256 of an envelope's bytes and the time (ns since the epoch) verified against.
type VerifiedKey = ([u8; 32], i128);

/// What verifying an envelope gave: its signer, or why it did not verify.
type Verification = Result<pons_core::NodeId, String>;

struct Slot {
    outcome: Arc<OnceLock<Verification>>,
    /// The sinks that used it, a bit each (by their place in the configuration).
    used: u64,
}

impl Verified {
    /// The place of `key`'s outcome, made if there is none (forgetting the oldest past
    /// [`VERIFIED_KEEP`]). Sinks that take the same record at the same moment share it:
    /// the first verifies, the others wait for its outcome (`OnceLock`), not verify too.
    fn slot(&mut self, key: VerifiedKey) -> Arc<OnceLock<Verification>> {
        if let Some(slot) = self.outcomes.get(&key) {
            return Arc::clone(&slot.outcome);
        }
        while self.order.len() >= VERIFIED_KEEP {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
        self.order.push_back(key);
        let slot = self.outcomes.entry(key).or_insert_with(|| Slot {
            outcome: Arc::default(),
            used: 0,
        });
        Arc::clone(&slot.outcome)
    }

    /// The sink at place `sink` of the feed's `sinks` used `key`'s outcome; it is forgotten
    /// once all of them did. A sink that is not one of them (`None`), or past the 64th,
    /// counts for none: the outcome is then kept until it is pushed out.
    fn used(&mut self, key: &VerifiedKey, sink: Option<usize>, sinks: usize) {
        let bit = sink.filter(|&i| i < 64).map_or(0, |i| 1u64 << i);
        let every = if sinks >= 64 {
            u64::MAX
        } else {
            (1u64 << sinks) - 1
        };
        if let Some(slot) = self.outcomes.get_mut(key) {
            slot.used |= bit;
            if slot.used & every == every {
                self.outcomes.remove(key);
            }
        }
    }
}

impl Feed {
    /// A feed for `sinks`; `trust` verifies stored envelopes again before they are handed
    /// over (once per stored bytes for all sinks, see [`Verified`]).
    pub fn new(sinks: Vec<SinkConfig>, trust: Trust) -> Arc<Self> {
        let status = sinks
            .iter()
            .map(|s| (s.name.clone(), SinkStatus::default()))
            .collect();
        Arc::new(Self {
            sinks,
            trust,
            arrivals: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            tasks: Mutex::new(Vec::new()),
            status: Mutex::new(status),
            verified: Mutex::default(),
        })
    }

    /// The configured sinks.
    pub fn sinks(&self) -> &[SinkConfig] {
        &self.sinks
    }

    /// Starts one worker per push sink (`spool`, `exec`, `nats`).
    pub fn start(self: &Arc<Self>, runtime: Arc<Runtime>) -> Result<(), String> {
        let mut tasks = Vec::new();
        for sink in &self.sinks {
            let name = sink.name.clone();
            let task = match &sink.kind {
                SinkKind::Spool { dir } => {
                    let push = spool::Spool::open(dir.clone())
                        .map_err(|e| format!("sink {name}: spool {}: {e}", dir.display()))?;
                    tokio::spawn(worker(self.clone(), runtime.clone(), name, push))
                }
                SinkKind::Exec(conf) => tokio::spawn(worker(
                    self.clone(),
                    runtime.clone(),
                    name.clone(),
                    exec::Exec::new(&name, conf.clone()),
                )),
                SinkKind::Nats(conf) => tokio::spawn(worker(
                    self.clone(),
                    runtime.clone(),
                    name,
                    nats::Nats::new(conf.clone()),
                )),
                SinkKind::Stream => continue,
            };
            tasks.push(task);
        }
        if let Ok(mut t) = self.tasks.lock() {
            t.extend(tasks);
        }
        Ok(())
    }

    /// A record with arrival number `arrival_seq` is durable in the inbox: wake the sinks.
    pub fn wake(&self, arrival_seq: u64) {
        self.arrivals.send_modify(|v| *v = (*v).max(arrival_seq));
    }

    /// Stops the workers: a hand-over in progress is abandoned and repeated after the next
    /// start (its cursor did not move). Waits for them, at most `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        self.stop.send_replace(true);
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(deadline, task).await.is_err() {
                abort.abort();
            }
        }
    }

    fn sink(&self, name: Option<&str>, want_stream: bool) -> Result<&SinkConfig, Response> {
        match name {
            Some(n) => {
                self.sinks.iter().find(|s| s.name == n).ok_or_else(|| {
                    Response::invalid(format!("sink: no sink is named {n:?}"), vec![])
                })
            }
            None => {
                let candidates: Vec<_> = self
                    .sinks
                    .iter()
                    .filter(|s| !want_stream || matches!(s.kind, SinkKind::Stream))
                    .collect();
                match candidates.as_slice() {
                    [one] => Ok(one),
                    [] if want_stream => Err(Response::invalid(
                        "sink: this node has no sink of kind stream (add a [[sink]] with kind = \"stream\")",
                        vec![],
                    )),
                    [] => Err(Response::invalid("sink: this node has no sinks", vec![])),
                    _ => Err(Response::invalid(
                        "sink: this node has several sinks: name one with --sink",
                        vec![],
                    )),
                }
            }
        }
    }

    fn note(&self, sink: &str, handed_over: usize, error: Option<&str>, now: OffsetDateTime) {
        if let Ok(mut status) = self.status.lock() {
            let s = status.entry(sink.to_owned()).or_default();
            s.handed_over += handed_over as u64;
            if let Some(e) = error {
                s.last_error = Some(e.to_owned());
                s.last_error_at = Some(now);
            }
        }
    }

    /// The feed's part of `pons status`: per sink its kind, cursor, lag, dead letters and
    /// last error.
    pub fn status(&self, runtime: &Runtime) -> Value {
        let last = runtime.store.last_arrival().unwrap_or(0);
        let status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        let sinks: Vec<Value> = self
            .sinks
            .iter()
            .map(|s| {
                let cursor = runtime.store.feed_cursor(&s.name).unwrap_or(0);
                let dead = runtime
                    .store
                    .feed_dead_letters(Some(&s.name))
                    .map(|d| d.len())
                    .unwrap_or(0);
                let st = status.get(&s.name).cloned().unwrap_or_default();
                json!({
                    "sink": s.name,
                    "kind": s.kind.as_str(),
                    "cursor": cursor,
                    "behind": last.saturating_sub(cursor),
                    "dead_letters": dead,
                    "handed_over": st.handed_over,
                    "last_error": st.last_error,
                    "last_error_at": st.last_error_at.map(rfc3339),
                })
            })
            .collect();
        json!(sinks)
    }

    /// The feed record of `rec` for sink `sink`, as a JSON value.
    ///
    /// The stored envelope is verified again as at its reception (the signer's certificate
    /// may have expired since); the result is in `verification`, and `record` is null when
    /// it does not verify, so that a consumer never takes an unverified record for a
    /// verified one.
    pub fn record(
        &self,
        runtime: &Runtime,
        sink: &str,
        rec: &InboxRecord,
    ) -> Result<Value, String> {
        let store = &runtime.store;
        let Some(envelope) = store.inbox_envelope(rec.id).map_err(|e| e.to_string())? else {
            // Erased (retention, or the sender's erasure notice) before this sink took it:
            // the sink learns the id and that it is gone, and nothing of its content.
            if store
                .retention_get(rec.id)
                .map_err(|e| e.to_string())?
                .is_none()
            {
                let mut erased = Self::metadata(sink, rec);
                erased.extend([
                    ("erased".to_owned(), json!(true)),
                    (
                        "verification".to_owned(),
                        json!({
                            "verified": false,
                            "signer": null,
                            "at": null,
                            "error": "erased on this node before the sink took it",
                        }),
                    ),
                    ("record".to_owned(), Value::Null),
                    ("receipt_base64".to_owned(), Value::Null),
                    ("cose_base64".to_owned(), Value::Null),
                ]);
                return Ok(Value::Object(erased));
            }
            return Err(format!(
                "record {}: envelope missing from the inbox",
                rec.id
            ));
        };
        let receipt = store
            .lookup(rec.id)
            .map_err(|e| e.to_string())?
            .map(|m| m.receipt)
            .unwrap_or_default();
        let key = (
            pons_core::cose::envelope_sha256(&envelope),
            rec.received_at.unix_timestamp_nanos(),
        );
        let slot = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .slot(key);
        let mut opened = None;
        let outcome = slot
            .get_or_init(|| {
                let (outcome, record) = self.open(runtime, &envelope, rec);
                opened = Some(record);
                outcome
            })
            .clone();
        let place = self.sinks.iter().position(|s| s.name == sink);
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .used(&key, place, self.sinks.len());
        let record = match (&outcome, opened) {
            (_, Some(record)) => record?,
            // These bytes verified for another sink: decoded without checking the
            // signature again.
            (Ok(_), None) => {
                let record = stored_record(&envelope).map_err(|e| e.to_string())?;
                serde_json::to_value(&record).map_err(|e| e.to_string())?
            }
            (Err(_), None) => Value::Null,
        };
        let at = rfc3339(rec.received_at);
        let verification = match outcome {
            Ok(signer) => json!({ "verified": true, "signer": signer, "at": at, "error": null }),
            Err(error) => json!({ "verified": false, "signer": null, "at": at, "error": error }),
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = Self::metadata(sink, rec);
        out.extend([
            ("erased".to_owned(), json!(false)),
            ("verification".to_owned(), verification),
            ("record".to_owned(), record),
            ("receipt_base64".to_owned(), json!(b64.encode(&receipt))),
            ("cose_base64".to_owned(), json!(b64.encode(&envelope))),
        ]);
        Ok(Value::Object(out))
    }

    /// Verifies `envelope` (the stored bytes of `rec`) as at its reception: its signer or
    /// why it does not verify, and the record (null unless verified).
    fn open(
        &self,
        runtime: &Runtime,
        envelope: &[u8],
        rec: &InboxRecord,
    ) -> (Verification, Result<Value, String>) {
        let skew = time::Duration::try_from(runtime.config.limits.clock_skew)
            .unwrap_or(time::Duration::minutes(5));
        match open_record(envelope, &self.trust, rec.received_at, skew) {
            Ok(opened) => (
                Ok(opened.signer),
                serde_json::to_value(&opened.record).map_err(|e| e.to_string()),
            ),
            Err(e) => (Err(e.to_string()), Ok(Value::Null)),
        }
    }

    /// The fields of a feed record that come from the inbox's metadata alone.
    fn metadata(sink: &str, rec: &InboxRecord) -> serde_json::Map<String, Value> {
        let mut map = serde_json::Map::new();
        map.extend([
            ("format".to_owned(), json!(FEED_FORMAT)),
            ("sink".to_owned(), json!(sink)),
            ("cursor".to_owned(), json!(rec.arrival_seq)),
            ("id".to_owned(), json!(rec.id)),
            ("from".to_owned(), json!(rec.from)),
            ("class".to_owned(), json!(rec.class)),
            ("subject_ref".to_owned(), json!(rec.subject_ref)),
            ("received_at".to_owned(), json!(rfc3339(rec.received_at))),
            ("receive_journal_seq".to_owned(), json!(rec.journal_seq)),
            (
                "envelope_sha256".to_owned(),
                json!(hex::encode(rec.envelope_sha256)),
            ),
        ]);
        map
    }

    fn item(&self, runtime: &Runtime, sink: &str, rec: &InboxRecord) -> Result<Item, String> {
        let value = self.record(runtime, sink, rec)?;
        let json = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
        let field = |name: &str| value["record"][name].as_str().map(str::to_owned);
        let basis = field("purpose").zip(field("legal_basis"));
        Ok(Item {
            rec: rec.clone(),
            json,
            basis,
        })
    }

    /// Moves `sink`'s cursor to `to` and journals a `disclose` per record handed over;
    /// `items` are those just handed over, whose purpose and legal basis are known.
    async fn advance(
        &self,
        runtime: &Runtime,
        sink: &str,
        to: u64,
        actor: &str,
        role: Option<&str>,
        items: &[Item],
    ) -> Result<pons_store::FeedAdvance, StoreError> {
        // The record's purpose and legal basis are in its envelope, read before the
        // transaction (whose closure may run more than once): from the items handed over,
        // or else read back from the store.
        let cursor = runtime.store.feed_cursor(sink)?;
        let span = usize::try_from(to.saturating_sub(cursor)).unwrap_or(usize::MAX);
        let known: HashMap<Uuid, &(String, String)> = items
            .iter()
            .filter_map(|i| Some((i.rec.id, i.basis.as_ref()?)))
            .collect();
        let mut bases = HashMap::new();
        for rec in runtime.store.inbox_after(cursor, span)? {
            let basis = match known.get(&rec.id) {
                Some(&basis) => Some(basis.clone()),
                None => self.basis(runtime, &rec),
            };
            bases.insert(rec.id, basis);
        }
        let now = runtime.now();
        let node = runtime.node().clone();
        let actor = actor.to_owned();
        let role = role.map(str::to_owned);
        let justification = format!("sink:{sink}");
        runtime
            .store
            .feed_advance(sink, to, move |rec| {
                let mut d = JournalDraft::new(
                    now,
                    node.clone(),
                    &actor,
                    Operation::Disclose,
                    Outcome::Success,
                );
                d.role.clone_from(&role);
                d.justification = Some(justification.clone());
                if let Some((purpose, basis)) = bases.get(&rec.id).cloned().flatten() {
                    d.purpose = Some(purpose);
                    d.legal_basis = Some(basis);
                }
                d
            })
            .await
    }

    /// The record's purpose and legal basis, for the journal.
    ///
    /// The envelope was verified when it was received and is verified again in the feed
    /// record itself; here it is only read back.
    fn basis(&self, runtime: &Runtime, rec: &InboxRecord) -> Option<(String, String)> {
        let envelope = runtime.store.inbox_envelope(rec.id).ok()??;
        let record = stored_record(&envelope).ok()?;
        Some((record.purpose, record.legal_basis))
    }

    /// A retried dead letter went through: remove it, journal the hand-over.
    async fn retried(
        &self,
        runtime: &Runtime,
        sink: &str,
        rec: &InboxRecord,
    ) -> Result<(), StoreError> {
        let mut d = JournalDraft::new(
            runtime.now(),
            runtime.node().clone(),
            SYSTEM_ACTOR,
            Operation::Disclose,
            Outcome::Success,
        );
        d.record_id = Some(rec.id);
        d.justification = Some(format!("sink:{sink}"));
        if let Some((purpose, basis)) = self.basis(runtime, rec) {
            d.purpose = Some(purpose);
            d.legal_basis = Some(basis);
        }
        runtime.store.feed_retried(sink, rec.arrival_seq, d).await?;
        Ok(())
    }
}

/// A push sink's worker: hand over what arrived after the cursor, move the cursor, wait for
/// more; retry with backoff; set a record aside after its attempts ran out.
async fn worker<P: Push>(feed: Arc<Feed>, runtime: Arc<Runtime>, name: String, mut push: P) {
    let mut arrivals = feed.arrivals.subscribe();
    let mut stop = feed.stop.subscribe();
    let mut failures: u32 = 0;
    let seed = name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    tracing::info!(sink = %name, "feed sink started");
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        // Seen before reading the store: a record that arrives after this line wakes us.
        arrivals.borrow_and_update();
        let error = match step(&feed, &runtime, &name, &mut push, &mut failures).await {
            Ok(Step::Idle) => {
                tokio::select! {
                    _ = arrivals.changed() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            Ok(Step::Progress) => {
                failures = 0;
                continue;
            }
            Ok(Step::Failed(e)) => e,
            Err(e) => {
                failures = failures.saturating_add(1);
                e
            }
        };
        tracing::warn!(sink = %name, failures, error = %error, "feed hand-over failed");
        feed.note(&name, 0, Some(&error), runtime.now());
        let delay = push
            .backoff()
            .delay(seed, u128::from(failures), failures.max(1));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
            // An operator's retry request does not wait for the backoff.
            _ = arrivals.changed() => {}
        }
    }
    tracing::info!(sink = %name, "feed sink stopped");
}

enum Step {
    /// Nothing to hand over.
    Idle,
    /// Records were handed over or set aside.
    Progress,
    /// The next record was not taken; `failures` counts it.
    Failed(String),
}

async fn step<P: Push>(
    feed: &Feed,
    runtime: &Runtime,
    name: &str,
    push: &mut P,
    failures: &mut u32,
) -> Result<Step, String> {
    let store = &runtime.store;
    // Dead letters an operator asked to retry go first: they arrived before the rest.
    let retries: Vec<DeadLetter> = store
        .feed_dead_letters(Some(name))
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|l| l.retry)
        .collect();
    if let Some(letter) = retries.first() {
        let rec = store
            .inbox_get(letter.id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("dead letter {}: not in the inbox", letter.id))?;
        let item = feed.item(runtime, name, &rec)?;
        let pushed = push.push(std::slice::from_ref(&item)).await;
        if pushed.taken == 1 {
            feed.retried(runtime, name, &rec)
                .await
                .map_err(|e| e.to_string())?;
            feed.note(name, 1, None, runtime.now());
            tracing::info!(sink = %name, record = %rec.id, "dead letter handed over on retry");
        } else {
            let error = pushed.error.unwrap_or_else(|| "not taken".into());
            store
                .feed_retry_failed(name, letter.arrival_seq, &error, runtime.now())
                .await
                .map_err(|e| e.to_string())?;
            feed.note(name, 0, Some(&error), runtime.now());
        }
        return Ok(Step::Progress);
    }

    let cursor = store.feed_cursor(name).map_err(|e| e.to_string())?;
    let recs = store
        .inbox_after(cursor, push.batch())
        .map_err(|e| e.to_string())?;
    if recs.is_empty() {
        return Ok(Step::Idle);
    }
    // A record is read as soon as its batch commits, which may be before its flush: hand
    // over only what is durable (the flush covers everything committed before it).
    store.flush().await.map_err(|e| e.to_string())?;
    let items = recs
        .iter()
        .map(|r| feed.item(runtime, name, r))
        .collect::<Result<Vec<_>, _>>()?;
    let pushed = push.push(&items).await;
    if pushed.taken > 0 {
        let to = items[pushed.taken - 1].rec.arrival_seq;
        feed.advance(
            runtime,
            name,
            to,
            SYSTEM_ACTOR,
            None,
            &items[..pushed.taken],
        )
        .await
        .map_err(|e| e.to_string())?;
        feed.note(name, pushed.taken, None, runtime.now());
        *failures = 0;
    }
    let Some(error) = pushed.error else {
        return Ok(Step::Progress);
    };
    let Some(next) = items.get(pushed.taken) else {
        return Ok(Step::Progress);
    };
    *failures = failures.saturating_add(1);
    match push.max_attempts() {
        Some(max) if *failures >= max => {
            let letter = DeadLetter {
                sink: name.to_owned(),
                id: next.rec.id,
                arrival_seq: next.rec.arrival_seq,
                attempts: *failures,
                last_error: error.clone(),
                at: runtime.now(),
                retry: false,
            };
            store
                .feed_dead_letter(&letter)
                .await
                .map_err(|e| e.to_string())?;
            tracing::error!(sink = %name, record = %next.rec.id, attempts = *failures, error = %error, "record set aside as a dead letter");
            feed.note(name, 0, Some(&error), runtime.now());
            *failures = 0;
            Ok(Step::Progress)
        }
        _ => Ok(Step::Failed(error)),
    }
}

/// Handles the feed's control requests.
pub async fn handle(
    feed: &Feed,
    runtime: &Runtime,
    caller: &Caller,
    request: crate::control::Request,
) -> Result<Value, Response> {
    use crate::config::Role;
    use crate::control::Request;
    match request {
        Request::FeedRead {
            sink,
            from,
            limit,
            wait_ms,
        } => {
            require(caller, &[Role::Operator], "feed read")?;
            let sink = feed.sink(sink.as_deref(), true)?;
            stream::read(feed, runtime, caller, sink, from, limit, wait_ms).await
        }
        Request::FeedAck { sink, cursor } => {
            require(caller, &[Role::Operator], "feed ack")?;
            let sink = feed.sink(sink.as_deref(), true)?;
            stream::ack(feed, runtime, caller, sink, cursor).await
        }
        Request::FeedDeadLetters { sink } => {
            require(caller, &[Role::Operator, Role::Dpo], "feed dead-letters")?;
            if let Some(s) = &sink {
                feed.sink(Some(s), false)?;
            }
            let letters = runtime
                .store
                .feed_dead_letters(sink.as_deref())
                .map_err(|e| Response::runtime(e.to_string()))?;
            Ok(json!(letters.iter().map(letter_json).collect::<Vec<_>>()))
        }
        Request::FeedRetry { sink, id } => {
            require(caller, &[Role::Operator], "feed retry")?;
            let id = Uuid::parse_str(&id)
                .map_err(|e| Response::invalid(format!("record id {id:?}: {e}"), vec![]))?;
            let sink = match sink {
                Some(s) => feed.sink(Some(&s), false)?.name.clone(),
                None => runtime
                    .store
                    .feed_dead_letters(None)
                    .map_err(|e| Response::runtime(e.to_string()))?
                    .into_iter()
                    .find(|l| l.id == id)
                    .map(|l| l.sink)
                    .ok_or_else(|| {
                        Response::invalid(
                            format!("record {id}: not a dead letter of any sink"),
                            vec![],
                        )
                    })?,
            };
            let letter =
                runtime
                    .store
                    .feed_request_retry(&sink, id)
                    .await
                    .map_err(|e| match e {
                        StoreError::NoDeadLetter { .. } => Response::invalid(e.to_string(), vec![]),
                        other => Response::runtime(other.to_string()),
                    })?;
            // Wake the workers without announcing a new arrival.
            feed.arrivals.send_modify(|_| {});
            Ok(letter_json(&letter))
        }
        _ => Err(Response::runtime("not a feed request")),
    }
}

fn require(caller: &Caller, roles: &[crate::config::Role], what: &str) -> Result<(), Response> {
    if caller.has_any(roles) {
        return Ok(());
    }
    let names: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
    Err(Response::invalid(
        format!(
            "{what} needs the role {}: user {} (uid {}) has none of them",
            names.join(" or "),
            caller.user,
            caller.uid
        ),
        vec![],
    ))
}

fn letter_json(l: &DeadLetter) -> Value {
    json!({
        "sink": l.sink,
        "id": l.id,
        "cursor": l.arrival_seq,
        "attempts": l.attempts,
        "last_error": l.last_error,
        "at": rfc3339(l.at),
        "retry_requested": l.retry,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use pons_core::journal::JournalDraft;
    use pons_pki::devca::DevCa;
    use pons_pki::KeyAlgorithm;
    use pons_store::{NewInboxRecord, Options, Store};

    use super::*;
    use crate::retention::tests::trust_of;
    use crate::runtime::system_clock;

    const CONFIG: &str = r#"
node_id = "cuta"
federation = "pons.example"
listen = "127.0.0.1:7444"
data_dir = "data"
[tls]
ca = "ca.pem"
cert = "tls.pem"
key = "tls.key"
[signing]
cert = "sign.pem"
key = "sign.key"
"#;

    /// A runtime of node cuta over a store in `dir`, and the federation's trust.
    fn runtime(dir: &Path) -> (Runtime, Trust) {
        let now = OffsetDateTime::now_utc();
        let ca = DevCa::new("pons.example", KeyAlgorithm::Ed25519, now).unwrap();
        let cuta = ca
            .issue(&pons_core::NodeId::new("cuta").unwrap(), now)
            .unwrap();
        let signer = cuta.identity(now).unwrap().signer().unwrap();
        let trust = || trust_of(&ca);
        let config = crate::Config::parse(CONFIG, &dir.join("node.toml")).unwrap();
        let store = Store::open(dir.join("db"), Options::default()).unwrap();
        let key = pons_core::pseudonym::PseudonymKey::from_bytes(&[7; 32]).unwrap();
        let rt = Runtime::new(config, store, signer, trust(), key, system_clock());
        (rt, trust())
    }

    /// Every sink gets the record verified as at its reception, and the signature is
    /// checked once for all of them: the second sink's record comes from the kept outcome
    /// and is what a feed verifying afresh hands over.
    #[tokio::test]
    async fn a_record_is_verified_once_for_every_sink_and_handed_over_the_same() {
        use crate::retention::tests::{pair, spiffe, submit_report};

        let dir = tempfile::tempdir().unwrap();
        let start = OffsetDateTime::now_utc();
        let ca = DevCa::new("pons.example", KeyAlgorithm::Ed25519, start).unwrap();
        let clock: crate::runtime::Clock = Arc::new(move || start);
        let (a, c) = pair(&ca, dir.path(), &clock);
        let id = submit_report(&a.rt).await;
        let frame =
            c.rt.deliver(&spiffe("adolescence"), a.rt.envelope(id).unwrap())
                .await;
        assert!(
            matches!(frame, pons_proto::Frame::Receipt { .. }),
            "{frame:?}"
        );
        let rec = c.rt.store.inbox_get(id).unwrap().unwrap();
        let trust = || trust_of(&ca);
        // Two sinks (not started): the outcome serves both, then is forgotten.
        let sinks = ["spool", "exec"]
            .map(|name| SinkConfig {
                name: name.into(),
                kind: SinkKind::Stream,
            })
            .to_vec();
        let feed = Feed::new(sinks, trust());
        let kept = || feed.verified.lock().unwrap().outcomes.len();

        let first = feed.record(&c.rt, "spool", &rec).unwrap();
        assert_eq!(first["verification"]["verified"], true, "{first}");
        assert_eq!(first["verification"]["signer"], "adolescence");
        assert_eq!(first["record"]["id"], id.to_string());
        assert_eq!(kept(), 1);
        // Marked, to see that the next sink's record comes from it, not from verifying
        // again.
        {
            let mut verified = feed.verified.lock().unwrap();
            let slot = verified.outcomes.values_mut().next().unwrap();
            let marked = OnceLock::new();
            marked
                .set(Ok(pons_core::NodeId::new("marked").unwrap()))
                .unwrap();
            slot.outcome = Arc::new(marked);
        }
        let second = feed.record(&c.rt, "exec", &rec).unwrap();
        assert_eq!(second["verification"]["signer"], "marked", "{second}");
        assert_eq!(kept(), 0, "forgotten once both sinks had it");
        assert_eq!(second["record"], first["record"]);
        assert_eq!(second["sink"], "exec");
        // Forgotten: the next one verifies afresh, and hands over what the first did.
        let third = feed.record(&c.rt, "spool", &rec).unwrap();
        assert_eq!(third, first);
    }

    /// The outcomes kept are bounded: the oldest goes first.
    #[test]
    fn verification_outcomes_kept_are_bounded() {
        let mut verified = Verified::default();
        let key = |n: usize| {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(n as u64).to_be_bytes());
            (hash, 0)
        };
        for n in 0..=VERIFIED_KEEP {
            verified.slot(key(n)).set(Err(n.to_string())).unwrap();
        }
        assert_eq!(verified.outcomes.len(), VERIFIED_KEEP);
        assert_eq!(verified.order.len(), VERIFIED_KEEP);
        assert!(!verified.outcomes.contains_key(&key(0)), "the oldest went");
        let n = |v: &Verified, k| v.outcomes[&key(k)].outcome.get().cloned();
        assert_eq!(n(&verified, 1), Some(Err("1".into())));
        assert_eq!(
            n(&verified, VERIFIED_KEEP),
            Some(Err(VERIFIED_KEEP.to_string()))
        );
        // The place of a kept outcome is the same one; used by every sink, it is forgotten.
        assert_eq!(verified.slot(key(1)).get(), Some(&Err("1".into())));
        verified.used(&key(1), Some(0), 2);
        verified.used(&key(1), Some(0), 2);
        assert!(
            verified.outcomes.contains_key(&key(1)),
            "one sink twice is one sink"
        );
        verified.used(&key(1), Some(1), 2);
        assert!(!verified.outcomes.contains_key(&key(1)));
    }

    #[tokio::test]
    async fn an_envelope_that_does_not_verify_is_handed_over_without_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, trust) = runtime(dir.path());
        let feed = Feed::new(Vec::new(), trust);
        let garbage = b"not a COSE_Sign1 envelope".to_vec();
        let id = Uuid::from_bytes([3; 16]);
        let now = rt.now();
        let received = rt
            .store
            .receive(
                NewInboxRecord {
                    id,
                    from: pons_core::NodeId::new("adolescence").unwrap(),
                    class: "minor-risk-report".into(),
                    subject_ref: None,
                    received_at: now,
                    envelope_sha256: [0; 32],
                },
                &garbage,
                JournalDraft::new(
                    now,
                    rt.node().clone(),
                    SYSTEM_ACTOR,
                    Operation::Receive,
                    Outcome::Success,
                ),
                &(std::sync::Arc::new(|_: &pons_store::ReceiptBatch<'_>| Ok(b"receipt".to_vec()))
                    as pons_store::ReceiptSealer),
            )
            .await
            .unwrap();
        let rec = rt.store.inbox_get(id).unwrap().unwrap();
        let v = feed.record(&rt, "spool", &rec).unwrap();
        assert_eq!(v["format"], FEED_FORMAT);
        assert_eq!(v["cursor"], received.arrival_seq);
        assert_eq!(v["verification"]["verified"], false);
        assert!(v["verification"]["error"].is_string(), "{v}");
        assert_eq!(v["verification"]["signer"], Value::Null);
        assert_eq!(
            v["record"],
            Value::Null,
            "an unverified record is not decoded"
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(v["cose_base64"], b64.encode(&garbage));
        assert_eq!(v["receipt_base64"], b64.encode(b"receipt"));
    }

    /// A feed item for record number `n` with `json` as its feed record.
    pub(crate) fn item(n: u8, json: &str) -> Item {
        Item {
            rec: InboxRecord {
                id: Uuid::from_bytes([n; 16]),
                from: pons_core::NodeId::new("adolescence").unwrap(),
                class: "minor-risk-report".into(),
                subject_ref: None,
                received_at: time::macros::datetime!(2026-11-23 10:00 UTC),
                envelope_sha256: [n; 32],
                arrival_seq: u64::from(n),
                journal_seq: u64::from(n),
            },
            json: json.as_bytes().to_vec(),
            basis: None,
        }
    }
}
