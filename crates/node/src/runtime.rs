//! The running node: what happens on submit, on an incoming record, on a response from a
//! peer, and on each control request.
//!
//! The rules come from `pons-core` (validation, sealing, opening) and `pons-proto` (the
//! receiving decision, the sender's schedule); this module carries them out with
//! `pons-store` and `pons-transport`. Every state change and its journal entry go to the
//! store together; nothing is acknowledged before the store has flushed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pons_core::envelope::{open_record, seal_record, EnvelopeError};
use pons_core::journal::{JournalDraft, Operation, Outcome, SYSTEM_ACTOR};
use pons_core::pseudonym::PseudonymKey;
use pons_core::receipt::{Receipt, ReceiptItem};
use pons_core::record::{Record, RecordId};
use pons_core::validate::{Draft, DraftContext};
use pons_core::{NodeId, OpenError, Signer, SpiffeId, Trust};
use pons_proto::receiver::{self, Policy, Refusal, Stored, Verified};
use pons_proto::{Frame, RejectCode};
use pons_store::{
    NewInboxRecord, NewOutboxRecord, OutboxFilter, OutboxState, ReceiptBatch, ReceiptSealer,
    StateKind, Store, StoreError,
};
use pons_transport::{InboundHandler, ResponseOutcome};
use ring::rand::SecureRandom;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::{Config, Role};
use crate::control::{Caller, Handler, Request, Response};
use crate::sent::{Disclosure, Outgoing, SentRecords, VerifiedReceipts};

/// A record sealed by this node and not yet stored: see [`Runtime::seal_draft`].
pub(crate) struct SealedRecord {
    /// The record.
    pub record: Record,
    /// Its COSE_Sign1 envelope.
    pub envelope: Vec<u8>,
    /// What the outbox stores about it.
    pub meta: NewOutboxRecord,
    /// Its review and erasure dates.
    pub deadlines: pons_core::retention::Deadlines,
}

/// Where the node reads the time. Tests inject a clock; the daemon uses the system's.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// What the runtime knows about a peer, for `pons status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PeerStatus {
    /// Records delivered since start.
    pub delivered: u64,
    /// Records the peer refused permanently since start.
    pub rejected: u64,
    /// The last error talking to the peer, if any.
    pub last_error: Option<String>,
    /// When the last error happened.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_error_at: Option<OffsetDateTime>,
}

/// How the runtime hands records to the network: one queue per peer.
pub trait Links: Send + Sync + 'static {
    /// Schedules the record for delivery to `peer`.
    fn enqueue(&self, peer: &NodeId, id: Uuid);
    /// Whether a connection to `peer` is up.
    fn connected(&self, peer: &NodeId) -> Option<bool>;
    /// The transport's current error towards `peer` (cleared when the peer answers).
    fn transport_error(&self, peer: &NodeId) -> Option<String>;
}

/// The node's shared state: configuration, keys, trust, store and peer status.
pub struct Runtime {
    /// The configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The record signer.
    signer: Arc<Signer>,
    /// Seals receipts on the store's committer thread: one over the records of a sender that
    /// share a committed batch (see `pons_store::ReceiptSealer`).
    sealer: ReceiptSealer,
    trust: Trust,
    pseudonym_key: PseudonymKey,
    clock: Clock,
    peers: Mutex<BTreeMap<NodeId, PeerStatus>>,
    links: OnceLock<Arc<dyn Links>>,
    feed: OnceLock<Arc<crate::feed::Feed>>,
    started: OffsetDateTime,
    /// Records sealed here and not yet closed: one decrypt per record (issue 7).
    pub(crate) sent: SentRecords,
    /// Receipts that verified: one signature check per receipt, however many records it
    /// covers (issue 7).
    pub(crate) receipts: VerifiedReceipts,
}

/// An error the runtime reports to the control socket: code and message.
type Refused = Response;

/// A receipt that covers the record sent: the disclosure's fields (when the record can be
/// read back) and the effect the receipt states.
type ReceiptChecked = (Option<Disclosure>, Option<pons_core::Effect>);

impl Runtime {
    /// A runtime over an opened store, with loaded keys and trust.
    pub fn new(
        config: Config,
        store: Store,
        signer: Signer,
        trust: Trust,
        pseudonym_key: PseudonymKey,
        clock: Clock,
    ) -> Self {
        let peers = config
            .peers
            .keys()
            .map(|p| (p.clone(), PeerStatus::default()))
            .collect();
        let started = clock();
        let signer = Arc::new(signer);
        Self {
            config,
            store,
            sealer: receipt_sealer(Arc::clone(&signer)),
            signer,
            trust,
            pseudonym_key,
            clock,
            peers: Mutex::new(peers),
            links: OnceLock::new(),
            feed: OnceLock::new(),
            started,
            sent: SentRecords::default(),
            receipts: VerifiedReceipts::default(),
        }
    }

    /// Queues record `id` for delivery to `peer`, if the network is up.
    pub(crate) fn enqueue(&self, peer: &NodeId, id: Uuid) {
        if let Some(links) = self.links.get() {
            links.enqueue(peer, id);
        }
    }

    /// Connects the runtime to the feed, woken by each record received.
    pub fn set_feed(&self, feed: Arc<crate::feed::Feed>) {
        let _ = self.feed.set(feed);
    }

    /// Connects the runtime to the network once the transport is up.
    pub fn set_links(&self, links: Arc<dyn Links>) {
        let _ = self.links.set(links);
    }

    /// The time now, from the runtime's clock.
    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.config.node_id
    }

    /// The federation's pseudonym key (for `crate::journal`).
    pub(crate) fn pseudonym_key(&self) -> &PseudonymKey {
        &self.pseudonym_key
    }

    /// The node's record signer (for `crate::journal`: checkpoints).
    pub(crate) fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The federation trust (for `crate::journal`: countersignatures).
    pub(crate) fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Allowed clock difference, as the rule crates take it.
    fn skew(&self) -> time::Duration {
        time::Duration::try_from(self.config.limits.clock_skew)
            .unwrap_or(time::Duration::minutes(5))
    }

    pub(crate) fn draft(&self, actor: &str, op: Operation, outcome: Outcome) -> JournalDraft {
        JournalDraft::new(self.now(), self.node().clone(), actor, op, outcome)
    }

    fn note_error(&self, peer: &NodeId, error: String) {
        let now = self.now();
        if let Ok(mut peers) = self.peers.lock() {
            let status = peers.entry(peer.clone()).or_default();
            status.last_error = Some(error);
            status.last_error_at = Some(now);
        }
    }

    fn count(&self, peer: &NodeId, delivered: bool) {
        if let Ok(mut peers) = self.peers.lock() {
            let status = peers.entry(peer.clone()).or_default();
            if delivered {
                status.delivered += 1;
            } else {
                status.rejected += 1;
            }
        }
    }

    /// Keeps in memory what the sender needs of record `id`, durable in the outbox, until
    /// it is closed or erased (see `crate::sent`).
    pub(crate) fn keep_sent(&self, id: Uuid, record: Outgoing) {
        // Looked at again once kept: an erasure that committed meanwhile may have run its
        // `forget_sent` before this `keep`, and erased data must not stay in memory.
        if self.sent.keep(id, Arc::new(record))
            && !matches!(self.store.outbox_has_body(id), Ok(true))
        {
            self.sent.forget(id);
        }
    }

    /// Drops what the sender kept of record `id`: closed, or erased here.
    pub(crate) fn forget_sent(&self, id: Uuid) {
        self.sent.forget(id);
    }

    /// A receipt opened through the cache of verified receipts: the signature and the
    /// signer's certificate are checked once per distinct receipt (see `crate::sent`).
    pub(crate) fn open_receipt(
        &self,
        receipt: &[u8],
    ) -> Result<Arc<crate::sent::OpenedReceipt>, pons_core::receipt::ReceiptError> {
        self.receipts.open(receipt, &self.trust, self.now())
    }

    /// Every record still waiting for delivery, by peer: what a restart resumes.
    pub fn pending(&self) -> Result<Vec<(Uuid, NodeId)>, StoreError> {
        self.store.pending()
    }

    // ---- submit ---------------------------------------------------------------------

    /// Validates, seals and stores a report; returns the record id once durable.
    pub async fn submit(
        &self,
        caller: &Caller,
        to: &str,
        class: &str,
        report: &str,
        purpose: Option<String>,
        justification: Option<String>,
    ) -> Result<RecordId, Refused> {
        require(caller, &[Role::Caseworker], "submit")?;
        let mut problems = Vec::new();
        let to_node = match NodeId::new(to) {
            Ok(n) => Some(n),
            Err(e) => {
                problems.push(format!("to: {e}"));
                None
            }
        };
        if let Some(to) = &to_node {
            if !self.config.peers.contains_key(to) {
                problems.push(format!("to: {to} is not a peer of {}", self.node()));
            } else if !self.config.may_send(to, class) {
                problems.push(format!(
                    "class: policy does not allow {class} to be sent from {} to {to}",
                    self.node()
                ));
            }
        }
        let draft = match Draft::parse_json(class, report.as_bytes()) {
            Ok(d) => Some(d),
            Err(errors) => {
                problems.extend(errors.errors().iter().map(|e| e.to_string()));
                None
            }
        };
        let (Some(to), Some(draft), true) = (to_node, draft, problems.is_empty()) else {
            return Err(Response::invalid(
                format!(
                    "report refused ({} problems); nothing was stored",
                    problems.len()
                ),
                problems,
            ));
        };
        // A record about an earlier record carries that record's subject pseudonym; the
        // earlier record must have been exchanged with the same peer.
        let subject_ref = match draft.body.refers_to() {
            None => None,
            Some(earlier) => Some(self.subject_of(&earlier, &to).ok_or_else(|| {
                Response::invalid(
                    "report refused (1 problems); nothing was stored",
                    vec![format!(
                        "body: record {earlier} referred to was not exchanged with {to} by this node"
                    )],
                )
            })?),
        };
        let sealed = self.seal_draft(draft, &to, purpose, justification, subject_ref)?;
        let record = &sealed.record;
        // LED art. 25(1): the collection is logged with who, why and under which basis.
        let mut journal = self.draft(&caller.user, Operation::Collect, Outcome::Success);
        journal.role = Some(Role::Caseworker.to_string());
        journal.purpose = Some(record.purpose.clone());
        journal.justification = Some(record.justification.clone());
        journal.legal_basis = Some(record.legal_basis.clone());
        self.store
            .submit_retained(
                sealed.meta.clone(),
                sealed.deadlines,
                &sealed.envelope,
                journal,
            )
            .await
            .map_err(|e| Response::runtime(format!("cannot store the record: {e}")))?;
        // Durable: from here on the record id may be handed out.
        self.keep_sent(
            *record.id.as_uuid(),
            Outgoing::sealed(record, &sealed.envelope),
        );
        self.enqueue(&to, *record.id.as_uuid());
        tracing::info!(record = %record.id, to = %to, class = %record.class, "record accepted");
        Ok(record.id)
    }

    /// Turns a checked draft into a signed record to `to`: a new id, the class's retention
    /// dates where the draft gives none (this node's policy), every rule checked, sealed
    /// with this node's key. Stores nothing.
    pub(crate) fn seal_draft(
        &self,
        draft: Draft,
        to: &NodeId,
        purpose: Option<String>,
        justification: Option<String>,
        subject_ref: Option<pons_core::SubjectRef>,
    ) -> Result<SealedRecord, Refused> {
        let now = self.now();
        let (review_by, erase_by) = self.config.retention(draft.class).deadlines(now.date());
        let ctx = DraftContext {
            id: new_record_id(now).map_err(Response::runtime)?,
            from: self.node().clone(),
            to: to.clone(),
            now,
            purpose,
            justification,
            pseudonym_key: &self.pseudonym_key,
            subject_ref,
            default_review_by: Some(review_by),
            default_erase_by: Some(erase_by),
            clock_skew: self.skew(),
        };
        let record = draft.into_record(&ctx).map_err(|errors| {
            Response::invalid(
                format!(
                    "report refused ({} problems); nothing was stored",
                    errors.len()
                ),
                errors.errors().iter().map(|e| e.to_string()).collect(),
            )
        })?;
        let envelope = seal_record(&record, &self.signer)
            .map_err(|e| Response::runtime(format!("cannot seal the record: {e}")))?;
        let meta = NewOutboxRecord {
            id: *record.id.as_uuid(),
            to: to.clone(),
            class: record.class.to_string(),
            created: record.created,
            subject_ref: Some(record.subject_ref.to_hex()),
        };
        // LED art. 5: the record's own review and erasure dates are indexed with it.
        let deadlines = pons_core::retention::Deadlines {
            review_by: record.review_by,
            erase_by: record.erase_by,
        };
        Ok(SealedRecord {
            record,
            envelope,
            meta,
            deadlines,
        })
    }

    /// The subject pseudonym of an earlier record exchanged with `peer`: one it received
    /// from `peer`, or one it sent to `peer`.
    pub(crate) fn subject_of(&self, id: &RecordId, peer: &NodeId) -> Option<pons_core::SubjectRef> {
        let uuid = *id.as_uuid();
        let hex = match (self.store.inbox_get(uuid), self.store.outbox_get(uuid)) {
            (Ok(Some(r)), _) if &r.from == peer => r.subject_ref,
            (_, Ok(Some(r))) if &r.to == peer => r.subject_ref,
            _ => None,
        }?;
        pons_core::SubjectRef::parse_hex(&hex).ok()
    }

    // ---- inbound ----------------------------------------------------------------------

    /// Decides on one incoming envelope from `peer` and answers the frame to send back.
    pub async fn deliver(&self, peer: &SpiffeId, envelope: Vec<u8>) -> Frame {
        let now = self.now();
        let opened = open_record(&envelope, &self.trust, now, self.skew());
        let record = opened.as_ref().ok().map(|o| o.record.clone());
        let verified = match &opened {
            Ok(o) if o.record.to != *self.node() => Err(Refusal::new(
                RejectCode::InvalidRecord,
                format!(
                    "record {} is addressed to {}, not to {}",
                    o.record.id,
                    o.record.to,
                    self.node()
                ),
            )),
            Ok(o) => Ok(Verified {
                record_id: *o.record.id.as_uuid(),
                signer: SpiffeId {
                    federation: self.trust.federation().to_owned(),
                    node: o.signer.clone(),
                },
                envelope_sha256: o.envelope_sha256,
            }),
            Err(e) => Err(refusal_for_envelope(e)),
        };
        let policy = match &record {
            Some(r) if self.config.may_receive(&peer.node, r.class.as_str()) => Policy::Allowed,
            Some(r) => Policy::Denied {
                reason: format!(
                    "policy does not allow {} to send {} to {}",
                    peer.node,
                    r.class,
                    self.node()
                ),
            },
            None => Policy::Allowed,
        };
        let checked = match receiver::check(verified, peer, policy) {
            Ok(c) => c,
            Err(refusal) => {
                self.journal_refusal(peer, record.as_ref(), &refusal).await;
                return refusal.frame();
            }
        };
        let Some(record) = record else {
            return Refusal::new(RejectCode::Internal, "record missing after checks").frame();
        };
        let stored = match self.lookup(checked.record_id()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "inbox lookup failed");
                return Refusal::new(RejectCode::StorageUnavailable, "inbox unavailable").frame();
            }
        };
        match checked.against(stored.as_ref()) {
            receiver::Decision::Accept {
                record_id,
                envelope_sha256,
            } => {
                self.accept(peer, &record, record_id, envelope_sha256, &envelope, now)
                    .await
            }
            decision => {
                if let receiver::Decision::Reject(refusal) = &decision {
                    self.journal_refusal(peer, Some(&record), refusal).await;
                }
                // A stored receipt is read as soon as its batch commits, which may be before
                // its flush: it is answered again only once durable.
                if let receiver::Decision::Duplicate { .. } = &decision {
                    if let Err(refusal) = self.durable_now().await {
                        return refusal.frame();
                    }
                }
                decision.frame().unwrap_or_else(|| {
                    Refusal::new(RejectCode::Internal, "no answer for a decision").frame()
                })
            }
        }
    }

    /// Waits until everything committed so far is durable: before a stored receipt is
    /// answered again.
    async fn durable_now(&self) -> Result<(), Refusal> {
        self.store.flush().await.map_err(|e| {
            tracing::error!(error = %e, "cannot flush the store");
            Refusal::new(RejectCode::StorageUnavailable, "inbox unavailable")
        })
    }

    fn lookup(&self, id: Uuid) -> Result<Option<Stored>, StoreError> {
        Ok(self.store.lookup(id)?.map(|m| Stored {
            envelope_sha256: m.envelope_sha256,
            receipt: m.receipt,
        }))
    }

    async fn accept(
        &self,
        peer: &SpiffeId,
        record: &Record,
        record_id: Uuid,
        envelope_sha256: [u8; 32],
        envelope: &[u8],
        now: OffsetDateTime,
    ) -> Frame {
        let meta = NewInboxRecord {
            id: record_id,
            from: peer.node.clone(),
            class: record.class.to_string(),
            subject_ref: Some(record.subject_ref.to_hex()),
            received_at: now,
            envelope_sha256,
        };
        let mut journal = JournalDraft::new(
            now,
            self.node().clone(),
            SYSTEM_ACTOR,
            Operation::Receive,
            Outcome::Success,
        );
        journal.purpose = Some(record.purpose.clone());
        journal.justification = Some(record.justification.clone());
        journal.legal_basis = Some(record.legal_basis.clone());
        let deadlines = pons_core::retention::Deadlines {
            review_by: record.review_by,
            erase_by: record.erase_by,
        };
        // An erasure notice or a rectification from the sender erases (or, under this
        // node's own legal hold, restricts) the record it names, in the same transaction.
        let made = match self.order_in(peer, record) {
            Some(order) => {
                self.store
                    .receive_ordering(meta, deadlines, order, envelope, journal, &self.sealer)
                    .await
            }
            None => {
                self.store
                    .receive_retained(meta, deadlines, envelope, journal, &self.sealer)
                    .await
            }
        };
        match made {
            Ok(received) => {
                tracing::info!(record = %record_id, from = %peer.node, "record received");
                if let Some(feed) = self.feed.get() {
                    feed.wake(received.arrival_seq);
                }
                Frame::Receipt {
                    receipt: received.receipt,
                }
            }
            // Two streams raced with the same record: answer as a duplicate would be.
            Err(StoreError::AlreadyReceived { .. }) => match self.lookup(record_id) {
                Ok(Some(stored)) if stored.envelope_sha256 == envelope_sha256 => {
                    match self.durable_now().await {
                        Ok(()) => Frame::Receipt {
                            receipt: stored.receipt,
                        },
                        Err(refusal) => refusal.frame(),
                    }
                }
                Ok(_) => Refusal::new(
                    RejectCode::Conflict,
                    format!("record {record_id} was already received with other bytes"),
                )
                .frame(),
                Err(e) => {
                    tracing::error!(error = %e, "inbox lookup failed");
                    Refusal::new(RejectCode::StorageUnavailable, "inbox unavailable").frame()
                }
            },
            Err(e) => {
                tracing::error!(record = %record_id, error = %e, "cannot store a received record");
                Refusal::new(
                    RejectCode::StorageUnavailable,
                    "the receiver cannot store the record now",
                )
                .frame()
            }
        }
    }

    async fn journal_refusal(&self, peer: &SpiffeId, record: Option<&Record>, refusal: &Refusal) {
        tracing::warn!(peer = %peer.node, code = %refusal.code, reason = %refusal.reason, "record refused");
        let mut journal = self.draft(SYSTEM_ACTOR, Operation::Reject, Outcome::Refused);
        journal.counterpart = Some(peer.node.clone());
        journal.justification = Some(format!("{}: {}", refusal.code, refusal.reason));
        if let Some(r) = record {
            journal.record_id = Some(*r.id.as_uuid());
            journal.class = Some(r.class.to_string());
            journal.subject_ref = Some(r.subject_ref.to_hex());
        }
        if let Err(e) = self.store.journal_refusal(journal).await {
            tracing::error!(error = %e, "cannot journal a refusal");
        }
    }

    // ---- responses from peers -----------------------------------------------------------

    /// Handles the peer's answer to one delivery of record `id`.
    pub async fn on_response(&self, peer: &NodeId, id: Uuid, frame: Frame) -> ResponseOutcome {
        let uuid = id;
        match frame {
            Frame::Receipt { receipt } => match self.check_receipt(peer, id, &receipt) {
                // No body here: erased while in flight; delivered with its notice.
                Ok(None) => self.on_receipt_after_erasure(peer, id, &receipt).await,
                Ok(Some((record, effect))) => {
                    let mut journal =
                        self.draft(SYSTEM_ACTOR, Operation::Disclose, Outcome::Success);
                    // LED art. 25(1): a disclosure log names the recipient, the justification
                    // and the time.
                    journal.counterpart = Some(peer.clone());
                    if let Some(record) = record {
                        journal.purpose = Some(record.purpose);
                        journal.justification = Some(record.justification);
                        journal.legal_basis = Some(record.legal_basis);
                    }
                    // An erasure notice's or a rectification's receipt says what the
                    // recipient did to the record it names (LED art. 16(6)).
                    if let Some(effect) = effect {
                        tracing::info!(record = %id, peer = %peer, %effect, "recipient reported");
                        journal.justification = Some(format!(
                            "{}; {peer} reported: {}",
                            journal.justification.unwrap_or_default(),
                            effect_words(effect)
                        ));
                    }
                    match self
                        .store
                        .mark_delivered(uuid, &receipt, self.now(), journal)
                        .await
                    {
                        Ok(_) => {
                            self.forget_sent(id);
                            self.count(peer, true);
                            ResponseOutcome::Delivered
                        }
                        // Delivered on another stream already: nothing more to do.
                        Err(StoreError::InvalidTransition {
                            from: StateKind::Delivered,
                            ..
                        }) => {
                            self.forget_sent(id);
                            ResponseOutcome::Delivered
                        }
                        // Erased after the check above: delivered with its notice.
                        Err(StoreError::ErasedInFlight { .. }) => {
                            self.on_receipt_after_erasure(peer, id, &receipt).await
                        }
                        Err(e) => {
                            tracing::error!(record = %id, error = %e, "cannot mark a record delivered");
                            ResponseOutcome::Retry
                        }
                    }
                }
                Err(reason) => {
                    // A receipt that does not verify proves nothing: keep the record and try
                    // again; an honest receiver answers the original receipt.
                    tracing::error!(record = %id, peer = %peer, %reason, "receipt refused");
                    self.note_error(peer, format!("receipt for {id} refused: {reason}"));
                    ResponseOutcome::Retry
                }
            },
            Frame::Reject { code, reason } if code.is_permanent() => {
                let mut journal = self.draft(SYSTEM_ACTOR, Operation::Reject, Outcome::Refused);
                journal.counterpart = Some(peer.clone());
                journal.justification = Some(format!("{code}: {reason}"));
                self.note_error(peer, format!("record {id} rejected: {code}: {reason}"));
                match self
                    .store
                    .mark_rejected(uuid, code.as_str(), &reason, self.now(), journal)
                    .await
                {
                    Ok(_) => {
                        self.forget_sent(id);
                        self.count(peer, false);
                        ResponseOutcome::Rejected
                    }
                    Err(StoreError::InvalidTransition { .. }) => {
                        self.forget_sent(id);
                        ResponseOutcome::Rejected
                    }
                    Err(e) => {
                        tracing::error!(record = %id, error = %e, "cannot mark a record rejected");
                        ResponseOutcome::Retry
                    }
                }
            }
            Frame::Reject { code, reason } => {
                self.note_error(peer, format!("record {id} deferred: {code}: {reason}"));
                ResponseOutcome::Retry
            }
            other => {
                self.note_error(
                    peer,
                    format!("unexpected {} frame in answer to {id}", other.type_name()),
                );
                ResponseOutcome::Retry
            }
        }
    }

    /// A receipt for record `id`, erased here while it was in flight: stored with the
    /// erasure notice to the recipient.
    async fn on_receipt_after_erasure(
        &self,
        peer: &NodeId,
        id: Uuid,
        receipt: &[u8],
    ) -> ResponseOutcome {
        match self.delivered_after_erasure(peer, id, receipt).await {
            Ok(()) => {
                self.count(peer, true);
                ResponseOutcome::Delivered
            }
            Err(reason) => {
                tracing::error!(record = %id, peer = %peer, %reason, "receipt refused");
                self.note_error(peer, format!("receipt for {id} refused: {reason}"));
                ResponseOutcome::Retry
            }
        }
    }

    /// Checks a receipt against the exact envelope sent; returns the disclosure's fields
    /// (when the record can be read back) and the effect the receipt states, or `None` if
    /// the record has no body here (erased while in flight: the receipt is checked on the
    /// notice path, `delivered_after_erasure`).
    fn check_receipt(
        &self,
        peer: &NodeId,
        id: Uuid,
        receipt: &[u8],
    ) -> Result<Option<ReceiptChecked>, String> {
        let Some(sent) = self.outgoing(id).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let opened = self.open_receipt(receipt).map_err(|e| e.to_string())?;
        let (receipt, signer) = (&opened.receipt, &opened.signer);
        if signer != peer {
            return Err(format!(
                "receipt is signed by {signer}, not by the recipient {peer}"
            ));
        }
        if receipt.sender != *self.node() {
            return Err(format!(
                "receipt names sender {}, not {}",
                receipt.sender,
                self.node()
            ));
        }
        let Some(item) = receipt.covers(id, &sent.sha256) else {
            return Err(format!(
                "receipt does not cover record {id} with the bytes sent"
            ));
        };
        Ok(Some((sent.disclosure.clone(), item.effect)))
    }

    /// Whether outbox record `id` was erased here (its metadata stays, its body is gone).
    fn erased_here(&self, id: Uuid) -> bool {
        matches!(self.store.outbox_has_body(id), Ok(false))
            && matches!(self.store.outbox_get(id), Ok(Some(_)))
    }

    /// What the sender needs of record `id`: kept since it was sealed, or else read back
    /// (decrypted) from the store. `None` if the outbox has no body for it (erased).
    fn outgoing(&self, id: Uuid) -> Result<Option<Arc<Outgoing>>, StoreError> {
        if let Some(kept) = self.sent.get(id) {
            return Ok(Some(kept));
        }
        Ok(self
            .store
            .outbox_envelope(id)?
            .map(|envelope| Arc::new(Outgoing::stored(envelope))))
    }

    /// The envelope to send for record `id`, if it is still waiting.
    ///
    /// Each call counts as a delivery attempt (shown by `pons outbox show`).
    pub fn envelope(&self, id: Uuid) -> Option<Vec<u8>> {
        // State, restriction and erasure are read from the store on every send; only the
        // body may come from memory. A restricted record is not sent (lifting the
        // restriction queues it again), and its attempt is not counted.
        if let Err(rule) = self.check_usable(id) {
            tracing::info!(record = %id, %rule, "not sent");
            return None;
        }
        // Counting the attempt reads the record's state: one no longer waiting (delivered,
        // rejected) or gone is not sent.
        match self.store.record_attempt(id) {
            Ok(_) => {}
            Err(StoreError::OutboxNotFound { .. } | StoreError::InvalidTransition { .. }) => {
                return None
            }
            Err(e) => {
                tracing::warn!(record = %id, error = %e, "cannot read the outbox");
                return None;
            }
        }
        if let Some(kept) = self.sent.get(id) {
            match self.store.outbox_has_body(id) {
                Ok(true) => return Some(kept.envelope.to_vec()),
                // Erased since it was kept: nothing to send, nothing to keep.
                Ok(false) => {
                    self.sent.forget(id);
                    return None;
                }
                Err(e) => {
                    tracing::warn!(record = %id, error = %e, "cannot read the outbox");
                    return None;
                }
            }
        }
        // Not kept (after a restart, or past the bound): read back once, and kept for the
        // receipt.
        let envelope = self.store.outbox_envelope(id).ok().flatten()?;
        if !self.sent.has_room(envelope.len()) {
            return Some(envelope);
        }
        let outgoing = Outgoing::stored(envelope);
        let bytes = outgoing.envelope.to_vec();
        self.keep_sent(id, outgoing);
        Some(bytes)
    }

    // ---- control requests ---------------------------------------------------------------

    async fn outbox_list(&self, caller: &Caller) -> Result<serde_json::Value, Refused> {
        require(
            caller,
            &[Role::Caseworker, Role::Operator, Role::Dpo],
            "outbox list",
        )?;
        let records = self
            .store
            .outbox_list(&OutboxFilter::default())
            .map_err(runtime)?;
        Ok(json!(records
            .iter()
            .map(outbox_summary)
            .collect::<Vec<_>>()))
    }

    async fn outbox_show(&self, caller: &Caller, id: &str) -> Result<serde_json::Value, Refused> {
        require(
            caller,
            &[Role::Caseworker, Role::Operator, Role::Dpo],
            "outbox show",
        )?;
        let id = parse_id(id)?;
        let record =
            self.store.outbox_get(id).map_err(runtime)?.ok_or_else(|| {
                Response::invalid(format!("record {id}: not in the outbox"), vec![])
            })?;
        let mut out = outbox_summary(&record);
        // Erased here (retention, or superseded by a rectification): only metadata is kept.
        out["erased"] = json!(self.erased_here(id));
        if let OutboxState::Delivered { receipt, .. } = &record.state {
            // The receipt is re-verified on every show: what is displayed is what is signed.
            match Receipt::open(receipt, &self.trust, self.now()) {
                Ok((r, signer)) => {
                    out["receipt"] = json!({
                        "signed_by": signer,
                        "received_at": r.received_at.format(&time::format_description::well_known::Rfc3339).ok(),
                        "journal_seq": r.items.iter().find(|i| i.record_id == id).map(|i| i.journal_seq),
                        "effect": crate::notify::effect_of(&r, id).map(|e| json!({
                            "effect": e.as_str(),
                            "meaning": effect_words(e),
                        })),
                        "verified": true,
                    })
                }
                Err(e) => out["receipt"] = json!({ "verified": false, "error": e.to_string() }),
            }
        }
        Ok(out)
    }

    async fn inbox_list(&self, caller: &Caller) -> Result<serde_json::Value, Refused> {
        require(
            caller,
            &[Role::Caseworker, Role::Operator, Role::Dpo],
            "inbox list",
        )?;
        let records = self.store.inbox_list(usize::MAX).map_err(runtime)?;
        Ok(json!(records
            .iter()
            .map(|r| json!({
                "id": r.id,
                "from": r.from,
                "class": r.class,
                "subject_ref": r.subject_ref,
                "received_at": rfc3339(r.received_at),
                "arrival_seq": r.arrival_seq,
            }))
            .collect::<Vec<_>>()))
    }

    /// A consultation of a received record: refused without a justification, journaled.
    async fn inbox_show(
        &self,
        caller: &Caller,
        id: &str,
        justification: &str,
        op: Operation,
    ) -> Result<serde_json::Value, Refused> {
        require(caller, &[Role::Caseworker, Role::Dpo], "inbox show")?;
        let id = parse_id(id)?;
        if justification.trim().is_empty() {
            // LED art. 25(1): consultation logs must show the justification.
            return Err(Response::invalid(
                "justification: required to consult a record (LED art. 25)",
                vec![],
            ));
        }
        if let Err(rule) = self.check_usable(id) {
            return Err(Response::invalid(format!("record {id}: {rule}"), vec![]));
        }
        let (meta, envelope) = match (
            self.store.inbox_get(id).map_err(runtime)?,
            self.store.inbox_envelope(id).map_err(runtime)?,
        ) {
            (Some(m), Some(e)) => (m, e),
            (Some(_), None) => {
                return Err(Response::invalid(
                    format!(
                        "record {id}: erased on this node (the journal's erase entry says \
                         when and why); only its metadata is kept"
                    ),
                    vec![],
                ))
            }
            (None, _) => {
                return Err(Response::invalid(
                    format!("record {id}: not in the inbox"),
                    vec![],
                ))
            }
        };
        // Verify as at reception: the signer's certificate may have expired since.
        let opened =
            open_record(&envelope, &self.trust, meta.received_at, self.skew()).map_err(|e| {
                Response::integrity(format!("record {id}: stored envelope does not verify: {e}"))
            })?;
        let mut journal = self.draft(&caller.user, op, Outcome::Success);
        journal.role = caller
            .acting_role(&[Role::Caseworker, Role::Dpo])
            .map(|r| r.to_string());
        journal.record_id = Some(id);
        journal.class = Some(meta.class.clone());
        journal.subject_ref = meta.subject_ref.clone();
        journal.counterpart = Some(meta.from.clone());
        journal.justification = Some(justification.to_owned());
        journal.purpose = Some(opened.record.purpose.clone());
        journal.legal_basis = Some(opened.record.legal_basis.clone());
        self.store.append_journal(journal).await.map_err(runtime)?;
        Ok(json!({
            "signer": opened.signer,
            "envelope_sha256": hex::encode(opened.envelope_sha256),
            "received_at": rfc3339(meta.received_at),
            "record": opened.record,
            "envelope": envelope,
        }))
    }

    async fn export(
        &self,
        caller: &Caller,
        id: &str,
        format: &str,
        justification: &str,
    ) -> Result<serde_json::Value, Refused> {
        if !matches!(format, "cose" | "json") {
            return Err(Response::invalid(
                format!("format: {format:?} is not cose or json"),
                vec![],
            ));
        }
        let mut out = self
            .inbox_show(caller, id, justification, Operation::Export)
            .await?;
        if format == "cose" {
            let envelope: Vec<u8> =
                serde_json::from_value(out["envelope"].take()).unwrap_or_default();
            Ok(json!({ "cose_base64": base64_encode(&envelope) }))
        } else {
            out.as_object_mut().map(|o| o.remove("envelope"));
            Ok(out)
        }
    }

    async fn status(&self, caller: &Caller) -> Result<serde_json::Value, Refused> {
        require(
            caller,
            &[Role::Operator, Role::Dpo, Role::Caseworker],
            "status",
        )?;
        let now = self.now();
        // Each peer's queue length is counted in memory and its oldest entry is the first in
        // the queue index (ids are UUIDv7 from this node's clock): status is polled, and
        // walking the whole index cost the sender 3 % of its CPU in `pons bench`, polled
        // every 50 ms with thousands waiting. Only the oldest record of each is read.
        let mut waiting: BTreeMap<NodeId, (usize, Option<OffsetDateTime>)> = BTreeMap::new();
        for (peer, queue) in self.store.pending_queues().map_err(runtime)? {
            let oldest = match queue.oldest {
                Some(id) => self.store.outbox_get(id).map_err(runtime)?,
                None => None,
            }
            .map(|r| r.created);
            waiting.insert(peer, (queue.len, oldest));
        }
        let peers = self.peers.lock().map(|p| p.clone()).unwrap_or_default();
        let mut out = Vec::new();
        for (peer, conf) in &self.config.peers {
            let (queue, oldest) = waiting.get(peer).copied().unwrap_or_default();
            let status = peers.get(peer).cloned().unwrap_or_default();
            out.push(json!({
                "peer": peer,
                "address": conf.address.to_string(),
                "connected": self.links.get().and_then(|l| l.connected(peer)),
                "queue": queue,
                "oldest_pending_secs": oldest.map(|o| (now - o).whole_seconds()),
                "delivered": status.delivered,
                "rejected": status.rejected,
                "last_error": status.last_error,
                "last_error_at": status.last_error_at.map(rfc3339),
                "transport_error": self.links.get().and_then(|l| l.transport_error(peer)),
            }));
        }
        let head = self.store.journal_head().map_err(runtime)?;
        Ok(json!({
            "node": self.node(),
            "listen": self.config.listen.to_string(),
            "up_secs": (now - self.started).whole_seconds(),
            "recovered": self.store.was_recovered(),
            "journal_seq": head.seq,
            // Arrival numbers have no gaps: the last one counts the records received.
            "inbox": self.store.last_arrival().unwrap_or(0),
            "peers": out,
            "feed": self.feed.get().map(|f| f.status(self)),
            "restricted": self.restricted_summary(),
        }))
    }
}

impl Handler for Runtime {
    async fn handle(&self, caller: Caller, request: Request) -> Response {
        let result = match request {
            Request::Submit {
                to,
                class,
                report,
                purpose,
                justification,
            } => self
                .submit(&caller, &to, &class, &report, purpose, justification)
                .await
                .map(|id| json!({ "id": id })),
            Request::OutboxList => self.outbox_list(&caller).await,
            Request::OutboxShow { id } => self.outbox_show(&caller, &id).await,
            Request::InboxList => self.inbox_list(&caller).await,
            Request::InboxShow { id, justification } => self
                .inbox_show(&caller, &id, &justification, Operation::Consult)
                .await
                .map(|mut v| {
                    v.as_object_mut().map(|o| o.remove("envelope"));
                    v
                }),
            Request::RecordExport {
                id,
                format,
                justification,
            } => self.export(&caller, &id, &format, &justification).await,
            Request::Status => self.status(&caller).await,
            request @ (Request::FeedRead { .. }
            | Request::FeedAck { .. }
            | Request::FeedDeadLetters { .. }
            | Request::FeedRetry { .. }) => match self.feed.get() {
                Some(feed) => crate::feed::handle(feed, self, &caller, request).await,
                None => Err(Response::runtime("the feed is not running")),
            },
            Request::JournalVerify { justification } => {
                self.journal_verify(&caller, &justification).await
            }
            Request::JournalSearch {
                query,
                justification,
            } => self.journal_search(&caller, &query, &justification).await,
            Request::JournalExport {
                query,
                justification,
            } => self.journal_export(&caller, &query, &justification).await,
            Request::JournalPrune {
                before,
                justification,
            } => self.journal_prune(&caller, &before, &justification).await,
            Request::DpoReport {
                since,
                until,
                justification,
            } => {
                self.dpo_report(&caller, since.as_deref(), until.as_deref(), &justification)
                    .await
            }
            Request::Hold { id, reason, add } => self.hold(&caller, &id, &reason, add).await,
            Request::Review {
                id,
                decision,
                justification,
            } => self.review(&caller, &id, &decision, &justification).await,
            Request::Rectify { id, report, reason } => {
                self.rectify(&caller, &id, &report, &reason).await
            }
            Request::RetentionPlan => self.retention_plan(&caller).await,
            Request::RetentionSweep => self.retention_sweep(&caller).await,
        };
        match result {
            Ok(body) => Response::ok(body),
            Err(refused) => refused,
        }
    }
}

impl InboundHandler for Runtime {
    async fn on_deliver(&self, peer: &SpiffeId, envelope: Vec<u8>) -> Frame {
        self.deliver(peer, envelope).await
    }

    async fn on_checkpoint(&self, peer: &SpiffeId, checkpoint: Vec<u8>) -> Frame {
        self.on_checkpoint_frame(peer, checkpoint).await
    }
}

pub(crate) fn require(caller: &Caller, roles: &[Role], what: &str) -> Result<(), Refused> {
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

fn runtime(e: StoreError) -> Refused {
    Response::runtime(e.to_string())
}

pub(crate) fn parse_id(id: &str) -> Result<Uuid, Refused> {
    RecordId::parse(id)
        .map(|r| *r.as_uuid())
        .map_err(|e| Response::invalid(format!("record id {id:?}: {e}"), vec![]))
}

/// What a recipient's effect means, for the journal and `pons outbox show`.
pub(crate) fn effect_words(effect: pons_core::Effect) -> &'static str {
    match effect {
        pons_core::Effect::Erased => "erased its copy",
        pons_core::Effect::Held => {
            "keeps its copy restricted under its own legal hold; erased when the hold is lifted"
        }
        pons_core::Effect::AlreadyErased => "had erased its copy already",
        pons_core::Effect::NotFound => "holds no such record from this node",
        _ => "an effect this node does not know",
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn outbox_summary(r: &pons_store::OutboxRecord) -> serde_json::Value {
    let (state, detail) = match &r.state {
        OutboxState::Delivered { at, .. } => ("delivered", json!({ "at": rfc3339(*at) })),
        OutboxState::Rejected { code, reason, at } => (
            "rejected",
            json!({ "code": code, "reason": reason, "at": rfc3339(*at) }),
        ),
        OutboxState::InFlight => ("in-flight", json!(null)),
        _ => ("pending", json!(null)),
    };
    json!({
        "id": r.id,
        "to": r.to,
        "class": r.class,
        "subject_ref": r.subject_ref,
        "created": rfc3339(r.created),
        "state": state,
        "detail": detail,
        "attempts": r.attempts,
    })
}

/// The reject code for an envelope that did not open.
fn refusal_for_envelope(e: &EnvelopeError) -> Refusal {
    let code = match e {
        EnvelopeError::Open(OpenError::Untrusted(_)) => RejectCode::UntrustedSigner,
        EnvelopeError::Open(_) => RejectCode::InvalidSignature,
        EnvelopeError::SignerMismatch { .. } => RejectCode::SignerMismatch,
        EnvelopeError::Invalid { errors, .. }
            if errors
                .errors()
                .iter()
                .any(|e| e.rule == pons_core::validate::Rule::Classified) =>
        {
            RejectCode::ClassifiedMarking
        }
        _ => RejectCode::InvalidRecord,
    };
    Refusal::new(code, e.to_string())
}

/// A fresh UUIDv7 from `now` and the system random generator.
pub fn new_record_id(now: OffsetDateTime) -> Result<RecordId, String> {
    let mut random = [0u8; 10];
    ring::rand::SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| "the system random generator failed".to_owned())?;
    Ok(RecordId::new_v7(now, random))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Deadline for draining in-flight work on shutdown.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// The receipts of the records received by the node `signer` signs for: one receipt over the
/// records of a [`ReceiptBatch`], under one signature.
fn receipt_sealer(signer: Arc<Signer>) -> ReceiptSealer {
    Arc::new(move |batch: &ReceiptBatch<'_>| {
        Receipt {
            v: pons_core::receipt::RECEIPT_VERSION,
            receiver: signer.node().clone(),
            sender: batch.sender.clone(),
            received_at: batch.received_at,
            items: batch
                .items
                .iter()
                .map(|ctx| ReceiptItem {
                    record_id: ctx.id,
                    envelope_sha256: ctx.envelope_sha256,
                    journal_seq: ctx.journal_seq,
                    effect: ctx.effect,
                })
                .collect(),
        }
        .seal(&signer)
        .map_err(|e| e.to_string())
    })
}
