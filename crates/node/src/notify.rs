//! Telling recipients: erasure notices and rectifications.
//!
//! LED 2016/680 art. 16(6) (and the Belgian law of 30 July 2018, art. 39): when personal
//! data is rectified or erased, the recipients it was disclosed to are told, and they
//! rectify or erase their copy. Here that is carried out in the store's transactions:
//!
//! - an erasure on the sending node of a record its recipient holds stores the
//!   `erasure-notice` to that recipient in the same transaction (`Store::erase_notifying`);
//!   a record erased while in flight gets its notice when its receipt arrives
//!   (`Store::mark_delivered_notifying`);
//! - `pons rectify` stores the `rectification` (the full corrected report) and erases the
//!   record it supersedes in one transaction (`Store::rectify`);
//! - the receiving node carries out the order inside the transaction that stores the
//!   notice or the rectification (`Store::receive_ordering`): it erases its copy with a
//!   tombstone entry, or, under its own legal hold, keeps it restricted and remembers the
//!   order; its signed receipt states which ([`Effect`]), and the sender journals it.

use pons_core::class::{ErasureNotice, Rectification};
use pons_core::envelope::stored_record;
use pons_core::journal::{JournalDraft, Operation, Outcome, SYSTEM_ACTOR};
use pons_core::record::{Marking, Record, RecordId, Tlp};
use pons_core::retention::ErasureGround as RetentionGround;
use pons_core::validate::Draft;
use pons_core::{Body, ClassName, Effect, NodeId, Receipt, SpiffeId, SubjectRef};
use pons_store::{EraseOrder, OutboxState, Place, StoreError, Submission};
use serde_json::json;
use uuid::Uuid;

use crate::config::Role;
use crate::control::{Caller, Response};
use crate::runtime::{parse_id, require, Runtime};
use crate::sent::Outgoing;

type Refused = Response;

/// The legal basis written in every erasure notice.
pub const NOTICE_LEGAL_BASIS: &str =
    "Directive (EU) 2016/680 art. 16(6); law of 30 July 2018 art. 39: \
     recipients are told of erasures";

/// What an erasure notice's ground is, from the retention rule that erased the record.
fn notice_ground(ground: &RetentionGround) -> pons_core::class::ErasureGround {
    use pons_core::class::ErasureGround as G;
    match ground {
        RetentionGround::KeepPeriodEnded { .. } | RetentionGround::ReviewOverdue { .. } => {
            G::RetentionExpired
        }
        _ => G::PurposeAchieved,
    }
}

impl Runtime {
    /// The erasure order an incoming record from `peer` carries, if it is an erasure
    /// notice or a rectification.
    pub(crate) fn order_in(&self, peer: &SpiffeId, record: &Record) -> Option<EraseOrder> {
        let (target, why) = match &record.body {
            Body::ErasureNotice(n) => (
                n.record,
                format!(
                    "erasure notice {} from {}: {}{}",
                    record.id,
                    peer.node,
                    n.ground.as_str(),
                    n.note
                        .as_deref()
                        .map(|note| format!(" ({note})"))
                        .unwrap_or_default()
                ),
            ),
            Body::Rectification(r) => (
                r.supersedes,
                format!(
                    "superseded by rectification {} from {} (LED art. 16(1))",
                    record.id, peer.node
                ),
            ),
            _ => return None,
        };
        let mut draft = self.draft(SYSTEM_ACTOR, Operation::Erase, Outcome::Success);
        draft.purpose = Some("erasure ordered by the sender (LED art. 16(6))".into());
        Some(EraseOrder {
            target: *target.as_uuid(),
            from: Some(peer.node.clone()),
            why,
            draft,
        })
    }

    /// The erasure notice telling `to` that record `id` (subject `subject_ref`) was
    /// erased on `ground`, sealed and ready to store with the erasure; with what the
    /// sender keeps of it once it is stored (see `crate::sent`).
    pub(crate) fn notice(
        &self,
        id: Uuid,
        to: &NodeId,
        subject_ref: Option<&str>,
        ground: &RetentionGround,
        actor: &str,
    ) -> Result<(Submission, Outgoing), String> {
        let record =
            RecordId::from_uuid(id).map_err(|e| format!("record {id}: not a record id: {e}"))?;
        let subject = subject_ref
            .map(SubjectRef::parse_hex)
            .transpose()
            .map_err(|e| format!("record {id}: subject pseudonym: {e}"))?;
        let rule = ground.rule();
        let draft = Draft {
            class: ClassName::ErasureNotice,
            marking: Marking::SensitiveUnclassified,
            tlp: Tlp::Amber,
            purpose: Some("tell the recipient that a record it holds was erased".into()),
            legal_basis: NOTICE_LEGAL_BASIS.into(),
            justification: Some(format!("record {id} was erased: {rule}")),
            review_by: None,
            erase_by: None,
            body: Body::ErasureNotice(ErasureNotice {
                record,
                ground: notice_ground(ground),
                note: Some(rule),
            }),
        };
        let sealed = self
            .seal_draft(draft, to, None, None, subject)
            .map_err(|r| match r {
                Response::Err {
                    message, details, ..
                } => format!("{message}: {}", details.join("; ")),
                Response::Ok { .. } => "refused".into(),
            })?;
        let mut journal = self.draft(actor, Operation::Collect, Outcome::Success);
        journal.purpose = Some(sealed.record.purpose.clone());
        journal.justification = Some(sealed.record.justification.clone());
        journal.legal_basis = Some(sealed.record.legal_basis.clone());
        let sub = self
            .store
            .prepare_submission(
                sealed.meta,
                Some(sealed.deadlines),
                &sealed.envelope,
                journal,
            )
            .map_err(|e| e.to_string())?;
        Ok((sub, Outgoing::sealed(&sealed.record, &sealed.envelope)))
    }

    /// Erase record `id` on `ground`, with the erasure notice to its recipient if it was
    /// delivered; returns the erasure and the notice's id. `check` re-decides inside the
    /// transaction.
    pub(crate) async fn erase_with_notice(
        &self,
        entry: &pons_store::RetentionEntry,
        ground: &RetentionGround,
        draft: JournalDraft,
        check: impl Fn(&pons_store::RetentionEntry) -> Result<(), String>,
    ) -> Result<(pons_store::Erased, Option<Uuid>), StoreError> {
        let id = entry.id;
        let make = || {
            self.notice(
                id,
                &entry.counterpart,
                entry.subject_ref.as_deref(),
                ground,
                &draft.actor,
            )
            .map_err(|reason| StoreError::EraseRefused {
                id,
                reason: format!("cannot make its erasure notice: {reason}"),
            })
        };
        let delivered = entry.place == Place::Outbox
            && matches!(
                self.store.outbox_get(id)?.map(|r| r.state),
                Some(OutboxState::Delivered { .. })
            );
        let mut notice = if delivered { Some(make()?) } else { None };
        loop {
            match self
                .store
                .erase_notifying(id, draft.clone(), &check, notice.as_ref().map(|(n, _)| n))
                .await
            {
                // Delivered since it was read: make the notice and try again.
                Err(StoreError::NoticeNeeded { .. }) if notice.is_none() => {
                    notice = Some(make()?);
                }
                Ok(erased) => {
                    // Erased data does not stay in memory either.
                    self.forget_sent(id);
                    let sent = match (erased.notice_seq, notice) {
                        (Some(_), Some((n, outgoing))) => {
                            self.keep_sent(n.id(), outgoing);
                            self.enqueue(&entry.counterpart, n.id());
                            tracing::info!(record = %id, to = %entry.counterpart, notice = %n.id(), "erasure notice queued");
                            Some(n.id())
                        }
                        _ => None,
                    };
                    return Ok((erased, sent));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A receipt for record `id`, which this node erased while it was in flight: the
    /// recipient holds it now, so it is marked delivered and told of the erasure in the
    /// same transaction. The receipt must be signed by `peer` and name the record.
    pub(crate) async fn delivered_after_erasure(
        &self,
        peer: &NodeId,
        id: Uuid,
        receipt: &[u8],
    ) -> Result<(), String> {
        let opened = self.open_receipt(receipt).map_err(|e| e.to_string())?;
        let (r, signer) = (&opened.receipt, &opened.signer);
        if signer != peer || r.sender != *self.node() {
            return Err(format!(
                "receipt is signed by {signer} for sender {}, not by {peer} for {}",
                r.sender,
                self.node()
            ));
        }
        if !r.items.iter().any(|i| i.record_id == id) {
            return Err(format!("receipt does not name record {id}"));
        }
        let rec = self
            .store
            .outbox_get(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("record {id} is not in the outbox"))?;
        let ground = RetentionGround::Ordered(format!(
            "record {id} was erased on this node while in flight to {peer}"
        ));
        let (notice, outgoing) =
            self.notice(id, peer, rec.subject_ref.as_deref(), &ground, SYSTEM_ACTOR)?;
        let mut journal = self.draft(SYSTEM_ACTOR, Operation::Disclose, Outcome::Success);
        journal.counterpart = Some(peer.clone());
        journal.justification = Some(format!(
            "delivered while being erased here; erasure notice {} follows",
            notice.id()
        ));
        let notice_id = notice.id();
        match self
            .store
            .mark_delivered_notifying(id, receipt, self.now(), journal, notice)
            .await
        {
            Ok(_) => {
                self.forget_sent(id);
                self.keep_sent(notice_id, outgoing);
                self.enqueue(peer, notice_id);
                Ok(())
            }
            Err(StoreError::InvalidTransition { .. }) => {
                self.forget_sent(id);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// `pons rectify ID --file NEW.json --reason R`: sends the full corrected report as a
    /// `rectification` to the recipient of record `id`, and erases `id` here (kept
    /// restricted if held), in one transaction. The recipient erases its copy on receipt
    /// and says so in its receipt. Role caseworker.
    pub async fn rectify(
        &self,
        caller: &Caller,
        id: &str,
        report: &str,
        reason: &str,
    ) -> Result<serde_json::Value, Refused> {
        require(caller, &[Role::Caseworker], "rectify")?;
        let uuid = parse_id(id)?;
        let refused = |problem: String| {
            Response::invalid(
                "rectification refused (1 problems); nothing was stored",
                vec![problem],
            )
        };
        if reason.trim().is_empty() {
            return Err(refused("reason: required and must not be blank".into()));
        }
        let original = self
            .store
            .outbox_get(uuid)
            .map_err(|e| Response::runtime(e.to_string()))?
            .ok_or_else(|| {
                refused(format!(
                    "id: record {uuid} is not in this node's outbox: only the sender rectifies"
                ))
            })?;
        if let OutboxState::Rejected { code, .. } = &original.state {
            return Err(refused(format!(
                "id: record {uuid} was rejected by {} ({code}): it is not held there; submit \
                 a new report",
                original.to
            )));
        }
        let envelope = self
            .store
            .outbox_envelope(uuid)
            .map_err(|e| Response::runtime(e.to_string()))?
            .ok_or_else(|| {
                refused(format!(
                    "id: record {uuid} was erased on this node: there is nothing to rectify"
                ))
            })?;
        let stored = stored_record(&envelope)
            .map_err(|e| Response::runtime(format!("record {uuid}: {e}")))?;
        // A rectification of a rectification corrects the same report again.
        let class = match &stored.body {
            Body::Rectification(r) => r.body.class_name(),
            b => b.class_name(),
        };
        if !matches!(
            class,
            ClassName::MinorRiskReport | ClassName::ProtectionFile
        ) {
            return Err(refused(format!(
                "id: a {class} cannot be rectified: send a new one"
            )));
        }
        let corrected = Draft::parse_json(class.as_str(), report.as_bytes()).map_err(|errors| {
            Response::invalid(
                format!(
                    "rectification refused ({} problems); nothing was stored",
                    errors.len()
                ),
                errors.errors().iter().map(|e| e.to_string()).collect(),
            )
        })?;
        // The correction keeps the original's dates unless the report sets its own: a
        // correction does not extend how long the data is kept.
        let entry = self
            .store
            .retention_get(uuid)
            .map_err(|e| Response::runtime(e.to_string()))?;
        let draft = Draft {
            class: ClassName::Rectification,
            review_by: corrected
                .review_by
                .or(entry.as_ref().map(|e| e.deadlines.review_by)),
            erase_by: corrected
                .erase_by
                .or(entry.as_ref().map(|e| e.deadlines.erase_by)),
            body: Body::Rectification(Rectification {
                supersedes: stored.id,
                reason: reason.to_owned(),
                body: Box::new(corrected.body.clone()),
            }),
            ..corrected
        };
        let sealed = self.seal_draft(draft, &original.to, None, None, None)?;
        let record = &sealed.record;
        let mut journal = self.draft(&caller.user, Operation::Collect, Outcome::Success);
        journal.role = Some(Role::Caseworker.to_string());
        journal.purpose = Some(record.purpose.clone());
        journal.justification = Some(format!("rectification of {uuid}: {reason}"));
        journal.legal_basis = Some(record.legal_basis.clone());
        let sub = self
            .store
            .prepare_submission(
                sealed.meta.clone(),
                Some(sealed.deadlines),
                &sealed.envelope,
                journal,
            )
            .map_err(|e| Response::runtime(e.to_string()))?;
        let mut erase = self.draft(&caller.user, Operation::Erase, Outcome::Success);
        erase.role = Some(Role::Caseworker.to_string());
        erase.purpose = Some("rectification (LED art. 16(1))".into());
        let order = EraseOrder {
            target: uuid,
            from: None,
            why: format!("superseded by rectification {}: {reason}", record.id),
            draft: erase,
        };
        let (seq, effect) = self
            .store
            .rectify(&sub, &order)
            .await
            .map_err(|e| Response::runtime(format!("cannot store the rectification: {e}")))?;
        // The original is erased here (or kept restricted, never sent again).
        self.forget_sent(uuid);
        self.keep_sent(
            *record.id.as_uuid(),
            Outgoing::sealed(record, &sealed.envelope),
        );
        self.enqueue(&original.to, *record.id.as_uuid());
        tracing::info!(record = %record.id, supersedes = %uuid, to = %original.to, "rectification accepted");
        Ok(json!({
            "id": record.id,
            "supersedes": uuid,
            "to": original.to,
            "journal_seq": seq,
            "original_here": effect.as_str(),
        }))
    }
}

/// The effect a receipt states for record `id`, if any.
pub(crate) fn effect_of(receipt: &Receipt, id: Uuid) -> Option<Effect> {
    receipt
        .items
        .iter()
        .find(|i| i.record_id == id)
        .and_then(|i| i.effect)
}
