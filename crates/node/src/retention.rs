//! Retention carried out: restriction checks, legal holds, reviews, and the erasure plan and
//! sweep. The rules are [`pons_core::retention`]'s; the facts are in the store; this module
//! applies one to the other with the runtime's clock and journals every change.
//!
//! Legal sources: LED 2016/680 art. 5 (time limits for erasure or periodic review), art. 16
//! (erasure, and restriction instead of erasure where the data must be kept as evidence),
//! GDPR art. 5(1)(e), the Belgian law of 29 March 2024 (review at least twice a year).

use futures_util::StreamExt;
use pons_core::journal::{JournalDraft, Operation, Outcome};
use pons_core::retention::{after_review, decide, Decision, ReviewDecision};
use pons_core::ClassName;
use pons_store::{Due, Hold, Place, RetentionEntry, StoreError};
use serde_json::json;
use time::Date;
use uuid::Uuid;

use crate::config::Role;
use crate::control::{Caller, Response};
use crate::runtime::Runtime;

type Refused = Response;

/// Why a record may not be used, in words, from what retention decided today; `None` if
/// it may.
///
/// A record past its erasure date but not yet swept is refused as well: it is no longer
/// lawfully kept.
pub fn restriction(decision: &Decision) -> Option<String> {
    match decision {
        Decision::Active => None,
        Decision::Restricted(r) => Some(r.iter().map(|r| r.rule()).collect::<Vec<_>>().join("; ")),
        Decision::Erase(ground) => Some(format!("due for erasure: {}", ground.rule())),
        _ => Some("restricted by a retention rule this node does not know".into()),
    }
}

fn runtime_err(e: StoreError) -> Refused {
    Response::runtime(e.to_string())
}

fn require(caller: &Caller, roles: &[Role], what: &str) -> Result<(), Refused> {
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

fn parse_id(id: &str) -> Result<Uuid, Refused> {
    pons_core::RecordId::parse(id)
        .map(|r| *r.as_uuid())
        .map_err(|e| Response::invalid(format!("record id {id:?}: {e}"), vec![]))
}

fn non_empty(field: &str, value: &str) -> Result<(), Refused> {
    if value.trim().is_empty() {
        return Err(Response::invalid(
            format!("{field}: required and must not be blank"),
            vec![],
        ));
    }
    Ok(())
}

impl Runtime {
    fn today(&self) -> Date {
        self.now().date()
    }

    /// [`decide`] for a stored record today, under this node's policy for its class.
    pub fn decide_entry(&self, entry: &RetentionEntry, today: Date) -> Decision {
        decide(
            entry.facts(),
            today,
            &self.config.retention_of(&entry.class),
        )
    }

    fn restriction_of(&self, entry: &RetentionEntry, today: Date) -> Option<String> {
        restriction(&self.decide_entry(entry, today))
    }

    fn retention_draft(&self, caller: &Caller, op: Operation) -> JournalDraft {
        let mut d = self.draft(&caller.user, op, Outcome::Success);
        // Holds, reviews and sweeps are allowed to operators and DPOs only.
        d.role = caller
            .acting_role(&[Role::Dpo, Role::Operator])
            .map(|r| r.to_string());
        d
    }

    fn entry(&self, id: Uuid) -> Result<RetentionEntry, Refused> {
        self.store
            .retention_get(id)
            .map_err(runtime_err)?
            .ok_or_else(|| {
                Response::invalid(
                    format!("record {id}: has no retention entry on this node (unknown or erased)"),
                    vec![],
                )
            })
    }

    /// `Err(rule)` if record `id` may not be shown, exported or sent today.
    pub fn check_usable(&self, id: Uuid) -> Result<(), String> {
        match self.store.retention_get(id) {
            Ok(Some(entry)) => match self.restriction_of(&entry, self.today()) {
                None => Ok(()),
                Some(rule) => Err(rule),
            },
            Ok(None) => Ok(()),
            Err(e) => Err(format!("cannot read its retention entry: {e}")),
        }
    }

    /// After a change that may lift a restriction: a waiting outbox record goes back in
    /// its peer's queue (the driver dropped it while it was restricted).
    fn requeue(&self, entry: &RetentionEntry) {
        if entry.place != Place::Outbox || self.check_usable(entry.id).is_err() {
            return;
        }
        if let Ok(Some(r)) = self.store.outbox_get(entry.id) {
            if r.state.is_open() {
                self.enqueue(&r.to, entry.id);
            }
        }
    }

    /// `pons hold add|remove`: roles operator or dpo; journaled as `hold`.
    pub async fn hold(
        &self,
        caller: &Caller,
        id: &str,
        reason: &str,
        add: bool,
    ) -> Result<serde_json::Value, Refused> {
        require(caller, &[Role::Operator, Role::Dpo], "hold")?;
        let id = parse_id(id)?;
        non_empty("reason", reason)?;
        let entry = self.entry(id)?;
        let mut draft = self.retention_draft(caller, Operation::Hold);
        draft.justification = Some(reason.to_owned());
        draft.purpose = Some(if add {
            "legal hold placed: restricted, not erased (LED art. 16(3))".into()
        } else {
            "legal hold lifted".into()
        });
        let seq = if add {
            let hold = Hold {
                reason: reason.to_owned(),
                by: caller.user.clone(),
                at: self.now(),
            };
            self.store.hold_add(id, hold, draft).await
        } else {
            self.store.hold_remove(id, draft).await
        };
        let seq = seq.map_err(|e| match e {
            StoreError::NotHeld { .. } => Response::invalid(e.to_string(), vec![]),
            e => runtime_err(e),
        })?;
        if !add {
            self.requeue(&entry);
        }
        Ok(json!({ "id": id, "held": add, "journal_seq": seq }))
    }

    /// `pons review`: roles dpo or operator; journaled as `review`. `keep` moves the review
    /// date one review period past today; `erase` makes the record due for erasure today.
    pub async fn review(
        &self,
        caller: &Caller,
        id: &str,
        decision: &str,
        justification: &str,
    ) -> Result<serde_json::Value, Refused> {
        require(caller, &[Role::Dpo, Role::Operator], "review")?;
        let id = parse_id(id)?;
        let decision = ReviewDecision::parse(decision).ok_or_else(|| {
            Response::invalid(
                format!("decision: {decision:?} is not keep or erase"),
                vec![],
            )
        })?;
        non_empty("justification", justification)?;
        let entry = self.entry(id)?;
        ClassName::parse(&entry.class).map_err(|_| {
            Response::invalid(
                format!("record {id}: class {} has no retention policy", entry.class),
                vec![],
            )
        })?;
        let policy = self.config.retention_of(&entry.class);
        let today = self.today();
        let deadlines = after_review(entry.deadlines, &policy, decision, today);
        // An erase decision is an order: it erases even where the class's policy only
        // restricts expired records, and it is remembered under a hold.
        let ordered = match decision {
            ReviewDecision::Erase => Some(format!(
                "a review by {} on {today} decided to erase it: {justification}",
                caller.user
            )),
            _ => None,
        };
        let mut draft = self.retention_draft(caller, Operation::Review);
        draft.justification = Some(justification.to_owned());
        draft.purpose = Some(format!("review: {}", decision.as_str()));
        let seq = self
            .store
            .review(id, deadlines, ordered, draft)
            .await
            .map_err(runtime_err)?;
        self.requeue(&entry);
        Ok(json!({
            "id": id,
            "decision": decision.as_str(),
            "review_by": deadlines.review_by.to_string(),
            "erase_by": deadlines.erase_by.to_string(),
            "journal_seq": seq,
        }))
    }

    /// What retention decides today for every record that is due or held, read from the
    /// index (the cost is what is due, not the size of the store).
    pub(crate) fn due_today(&self) -> Result<Vec<(RetentionEntry, Decision)>, StoreError> {
        let today = self.today();
        let mut ids = self.store.due(Due::Review, today)?;
        ids.extend(self.store.due(Due::Erase, today)?);
        ids.extend(self.store.held()?);
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            if let Some(entry) = self.store.retention_get(id)? {
                let d = self.decide_entry(&entry, today);
                if d != Decision::Active {
                    out.push((entry, d));
                }
            }
        }
        Ok(out)
    }

    /// Records overdue for review or erasure and records under a legal hold, with their
    /// dates, rule and holds: what the DPO report lists.
    pub fn retention_report(&self) -> serde_json::Value {
        let today = self.today();
        match self.due_today() {
            Ok(list) => json!(list
                .iter()
                .map(|(e, _)| json!({
                    "id": e.id,
                    "place": e.place.as_str(),
                    "class": e.class,
                    "counterpart": e.counterpart,
                    "review_by": e.deadlines.review_by.to_string(),
                    "erase_by": e.deadlines.erase_by.to_string(),
                    "rule": self.restriction_of(e, today),
                    "holds": e.holds.iter().map(|h| json!({
                        "reason": h.reason,
                        "by": h.by,
                        "at": h.at.date().to_string(),
                    })).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()),
            Err(e) => json!({ "error": e.to_string() }),
        }
    }

    /// The restricted records, for `pons status`: id, place and rule.
    pub fn restricted_summary(&self) -> serde_json::Value {
        let today = self.today();
        match self.due_today() {
            Ok(list) => json!(list
                .iter()
                .map(|(e, _)| json!({
                    "id": e.id,
                    "place": e.place.as_str(),
                    "class": e.class,
                    "rule": self.restriction_of(e, today),
                }))
                .collect::<Vec<_>>()),
            Err(e) => json!({ "error": e.to_string() }),
        }
    }

    /// `pons retention plan`: what a sweep would erase, and what is restricted, with why.
    /// Changes nothing and journals nothing (it reads no content).
    pub async fn retention_plan(&self, caller: &Caller) -> Result<serde_json::Value, Refused> {
        require(caller, &[Role::Operator, Role::Dpo], "retention plan")?;
        let today = self.today();
        let list = self.due_today().map_err(runtime_err)?;
        let (mut erase, mut restricted) = (Vec::new(), Vec::new());
        for (e, d) in &list {
            let row = json!({
                "id": e.id,
                "place": e.place.as_str(),
                "class": e.class,
                "counterpart": e.counterpart,
                "review_by": e.deadlines.review_by.to_string(),
                "erase_by": e.deadlines.erase_by.to_string(),
                "held": e.held(),
            });
            match d {
                Decision::Erase(ground) => {
                    let mut row = row;
                    row["ground"] = json!(ground.rule());
                    erase.push(row);
                }
                _ => {
                    let mut row = row;
                    row["rule"] = json!(self.restriction_of(e, today));
                    restricted.push(row);
                }
            }
        }
        Ok(json!({ "date": today.to_string(), "erase": erase, "restricted": restricted }))
    }

    /// `pons retention sweep`: erase every record due for erasure today, each in one
    /// transaction with its tombstone `erase` entry. A record held or reviewed since the
    /// plan was read is re-decided inside the transaction and left alone.
    pub async fn retention_sweep(&self, caller: &Caller) -> Result<serde_json::Value, Refused> {
        require(caller, &[Role::Operator, Role::Dpo], "retention sweep")?;
        self.sweep(
            &caller.user,
            caller
                .acting_role(&[Role::Dpo, Role::Operator])
                .map(|r| r.to_string()),
        )
        .await
        .map_err(runtime_err)
    }

    /// Erase what is due today; `actor` is the caller, or `system` for the scheduler.
    pub async fn sweep(
        &self,
        actor: &str,
        role: Option<String>,
    ) -> Result<serde_json::Value, StoreError> {
        let today = self.today();
        let mut erased = Vec::new();
        let mut skipped = Vec::new();
        // What the index says is due (overdue reviews may be past their grace period; held
        // records are never erased): the sweep's cost is what is due.
        let due = self
            .due_today()?
            .into_iter()
            .filter_map(|(entry, d)| match d {
                Decision::Erase(ground) => Some((entry, ground)),
                _ => None,
            });
        // Each erasure is its own transaction; [`SWEEP_CONCURRENCY`] of them at a time share
        // their flush and fdatasync (group commit), and the results keep the index's order.
        let results: Vec<_> = futures_util::stream::iter(due)
            .map(|(entry, ground)| self.erase_due(entry, ground, today, actor, role.clone()))
            .buffered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        for (id, result) in results {
            match result {
                Ok(row) => erased.push(row),
                Err(e @ (StoreError::Held { .. } | StoreError::EraseRefused { .. })) => {
                    skipped.push(json!({ "id": id, "reason": e.to_string() }))
                }
                Err(e) => return Err(e),
            }
        }
        if !erased.is_empty() {
            tracing::info!(erased = erased.len(), "retention sweep");
        }
        Ok(json!({ "date": today.to_string(), "erased": erased, "skipped": skipped }))
    }

    /// Erases one record the sweep found due, re-deciding inside its transaction; the row
    /// of the sweep's answer.
    async fn erase_due(
        &self,
        entry: RetentionEntry,
        ground: pons_core::retention::ErasureGround,
        today: Date,
        actor: &str,
        role: Option<String>,
    ) -> (Uuid, Result<serde_json::Value, StoreError>) {
        let id = entry.id;
        let mut draft = self.draft(actor, Operation::Erase, Outcome::Success);
        draft.role = role;
        draft.justification = Some(ground.rule());
        draft.purpose = Some("retention: erasure".into());
        let check = |e: &RetentionEntry| match self.decide_entry(e, today) {
            Decision::Erase(_) => Ok(()),
            _ => Err("no longer due for erasure".to_owned()),
        };
        let result = self
            .erase_with_notice(&entry, &ground, draft, check)
            .await
            .map(|(done, notice)| {
                json!({
                    "id": id,
                    "place": done.entry.place.as_str(),
                    "class": done.entry.class,
                    "ground": ground.rule(),
                    "journal_seq": done.journal_seq,
                    "notice": notice.map(|n| json!({
                        "id": n,
                        "to": done.entry.counterpart,
                    })),
                })
            });
        (id, result)
    }
}

/// Erasures a sweep runs at once, sharing their durable flush.
pub const SWEEP_CONCURRENCY: usize = 64;

/// How often the daemon sweeps. Deadlines are dates, so an hourly sweep erases a record
/// within an hour of the day it falls due.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The daemon's scheduled sweep: once at start, then every [`SWEEP_EVERY`], as actor
/// `system`. A failed sweep is logged and tried again at the next tick; a sweep cut short
/// (crash, stop) leaves no half-erased record, since each erasure is one transaction, and the
/// next sweep finds the rest in the index.
pub async fn sweep_loop(rt: std::sync::Arc<Runtime>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = rt.sweep(pons_core::journal::SYSTEM_ACTOR, None).await {
            tracing::error!(error = %e, "retention sweep failed");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Two runtimes in one process with an injected clock: deadlines, reviews, holds,
    //! restriction of showing and sending, and the sweep, without sockets or sleeps. The
    //! two-node setup is shared with the sender's tests in `crate::sent`.

    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use pons_core::{NodeId, SpiffeId, Trust};
    use pons_pki::devca::DevCa;
    use pons_pki::KeyAlgorithm;
    use pons_proto::Frame;
    use pons_store::{Options, Store};
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::control::{Handler, Request};
    use crate::runtime::Clock;

    pub(crate) const MRR: &str = "minor-risk-report";

    fn config(node: &str, peer: &str, send: &str, receive: &str) -> String {
        format!(
            r#"
node_id = "{node}"
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
[[peer]]
node_id = "{peer}"
address = "127.0.0.1:7445"
send = [{send}]
receive = [{receive}]
"#
        )
    }

    pub(crate) struct Node {
        pub(crate) rt: Runtime,
    }

    /// The test federation's trust: `ca`, no CRL.
    pub(crate) fn trust_of(ca: &DevCa) -> Trust {
        Trust::new(
            "pons.example",
            &[ca.certificate().as_ref()],
            &[] as &[&[u8]],
        )
        .unwrap()
    }

    fn node(ca: &DevCa, node: &str, cfg: String, dir: &Path, clock: Clock) -> Node {
        let now = clock();
        let issued = ca.issue(&NodeId::new(node).unwrap(), now).unwrap();
        let signer = issued.identity(now).unwrap().signer().unwrap();
        let trust = trust_of(ca);
        let config = crate::Config::parse(&cfg, &dir.join("node.toml")).unwrap();
        let mut options = Options::default();
        options.master_key = Some(pons_store::MasterKey::from_bytes(&[9; 32]).unwrap());
        let store = Store::open(dir.join(node), options).unwrap();
        let key = pons_core::pseudonym::PseudonymKey::from_bytes(&[7; 32]).unwrap();
        Node {
            rt: Runtime::new(config, store, signer, trust, key, clock),
        }
    }

    /// A clock a test moves: the clock to give runtimes, and the time it reads.
    pub(crate) fn test_clock(start: OffsetDateTime) -> (Clock, Arc<Mutex<OffsetDateTime>>) {
        let now = Arc::new(Mutex::new(start));
        let read = now.clone();
        (Arc::new(move || *read.lock().unwrap()), now)
    }

    /// adolescence, which sends minor-risk reports, and cuta, which receives them; their
    /// policies name only that class.
    pub(crate) fn pair(ca: &DevCa, dir: &Path, clock: &Clock) -> (Node, Node) {
        let quote = format!("{MRR:?}");
        let a = node(
            ca,
            "adolescence",
            config("adolescence", "cuta", &quote, ""),
            &dir.join("a"),
            clock.clone(),
        );
        let c = node(
            ca,
            "cuta",
            config("cuta", "adolescence", "", &quote),
            &dir.join("c"),
            clock.clone(),
        );
        (a, c)
    }

    fn caller(roles: &[Role]) -> Caller {
        Caller {
            uid: 1000,
            user: "dpo1".into(),
            roles: roles.iter().copied().collect(),
        }
    }

    pub(crate) fn everyone() -> Caller {
        caller(&[Role::Caseworker, Role::Dpo, Role::Operator])
    }

    pub(crate) fn report() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/examples/minor-risk-report.json");
        std::fs::read_to_string(path).unwrap()
    }

    /// Submits the example report to cuta as a caseworker; the record's id.
    pub(crate) async fn submit_report(rt: &Runtime) -> Uuid {
        *rt.submit(&everyone(), "cuta", MRR, &report(), None, None)
            .await
            .unwrap()
            .as_uuid()
    }

    pub(crate) async fn ok(rt: &Runtime, request: Request) -> serde_json::Value {
        match rt.handle(everyone(), request).await {
            Response::Ok { body } => body,
            Response::Err { message, .. } => panic!("refused: {message}"),
        }
    }

    async fn refused(rt: &Runtime, request: Request) -> (u8, String) {
        match rt.handle(everyone(), request).await {
            Response::Ok { body } => panic!("accepted: {body}"),
            Response::Err { code, message, .. } => (code, message),
        }
    }

    fn show(id: Uuid) -> Request {
        Request::InboxShow {
            id: id.to_string(),
            justification: "assessment".into(),
        }
    }

    pub(crate) fn hold(id: Uuid, add: bool) -> Request {
        Request::Hold {
            id: id.to_string(),
            reason: "inquiry 2026/77".into(),
            add,
        }
    }

    pub(crate) fn spiffe(node: &str) -> SpiffeId {
        SpiffeId {
            federation: "pons.example".into(),
            node: NodeId::new(node).unwrap(),
        }
    }

    fn ops(rt: &Runtime) -> Vec<(Operation, Option<Uuid>)> {
        rt.store
            .journal_iter(0)
            .map(|e| e.map(|e| (e.operation, e.record_id)).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn deadlines_holds_reviews_and_the_sweep_over_time() {
        let dir = tempfile::tempdir().unwrap();
        let start = OffsetDateTime::now_utc();
        let ca = DevCa::new("pons.example", KeyAlgorithm::Ed25519, start).unwrap();
        let (clock, now) = test_clock(start);
        let set = |t: OffsetDateTime| *now.lock().unwrap() = t;
        let (a, c) = pair(&ca, dir.path(), &clock);

        // Sent and received: both sides index the record's own dates.
        let id = submit_report(&a.rt).await;
        let envelope = a.rt.envelope(id).expect("the record waits to be sent");
        let frame = c.rt.deliver(&spiffe("adolescence"), envelope).await;
        assert!(matches!(frame, Frame::Receipt { .. }), "{frame:?}");
        let entry = c.rt.store.retention_get(id).unwrap().expect("indexed");
        assert_eq!(entry.place, Place::Inbox);
        assert_eq!(
            a.rt.store.retention_get(id).unwrap().unwrap().deadlines,
            entry.deadlines
        );
        let review_by = entry.deadlines.review_by;
        let erase_by = entry.deadlines.erase_by;
        assert_eq!(review_by, start.date() + Duration::days(182));
        ok(&c.rt, show(id)).await;

        // A hold restricts: not shown, not exported, not sent; listed by status and plan.
        ok(&c.rt, hold(id, true)).await;
        let (code, msg) = refused(&c.rt, show(id)).await;
        assert_eq!(code, 2);
        assert!(msg.contains("legal hold"), "{msg}");
        let export = Request::RecordExport {
            id: id.to_string(),
            format: "json".into(),
            justification: "court".into(),
        };
        let (code, msg) = refused(&c.rt, export.clone()).await;
        assert!(code == 2 && msg.contains("legal hold"), "{msg}");
        let status = ok(&c.rt, Request::Status).await;
        assert_eq!(status["restricted"][0]["id"], id.to_string(), "{status}");
        let plan = ok(&c.rt, Request::RetentionPlan).await;
        assert_eq!(plan["restricted"].as_array().unwrap().len(), 1, "{plan}");
        assert!(plan["erase"].as_array().unwrap().is_empty(), "{plan}");
        ok(&a.rt, hold(id, true)).await;
        assert!(a.rt.envelope(id).is_none(), "a held record is not sent");
        ok(&a.rt, hold(id, false)).await;
        assert!(a.rt.envelope(id).is_some(), "lifted, it is sent again");
        let (code, msg) = refused(&a.rt, hold(id, false)).await;
        assert!(code == 2 && msg.contains("not under a legal hold"), "{msg}");
        // Only operator or dpo may hold.
        let r =
            c.rt.handle(caller(&[Role::Caseworker]), hold(id, false))
                .await;
        assert!(matches!(r, Response::Err { code: 2, .. }), "{r:?}");
        ok(&c.rt, hold(id, false)).await;
        ok(&c.rt, export).await;

        // On its review date it is still usable; the day after, restricted until reviewed.
        set(start.replace_date(review_by));
        ok(&c.rt, show(id)).await;
        set(start.replace_date(review_by + Duration::days(1)));
        let (code, msg) = refused(&c.rt, show(id)).await;
        assert!(code == 2 && msg.contains("review was due by"), "{msg}");
        assert!(a.rt.envelope(id).is_none(), "overdue for review: not sent");
        let status = ok(&c.rt, Request::Status).await;
        assert_eq!(status["restricted"].as_array().unwrap().len(), 1);
        // Not reviewed within the grace period: due for erasure (a late review still keeps it).
        set(start.replace_date(review_by + Duration::days(31)));
        let plan = ok(&a.rt, Request::RetentionPlan).await;
        let ground = plan["erase"][0]["ground"].as_str().unwrap_or_default();
        assert!(ground.contains("overdue by more than 30 days"), "{plan}");
        let review = |decision: &str| Request::Review {
            id: id.to_string(),
            decision: decision.into(),
            justification: "still needed for the assessment".into(),
        };
        let kept = ok(&c.rt, review("keep")).await;
        let next = review_by + Duration::days(31) + Duration::days(182);
        assert_eq!(kept["review_by"], next.to_string(), "{kept}");
        ok(&c.rt, show(id)).await;
        let status = ok(&c.rt, Request::Status).await;
        assert!(status["restricted"].as_array().unwrap().is_empty());
        let (code, _) = refused(&c.rt, review("maybe")).await;
        assert_eq!(code, 2);

        // At the end of the keep period: a held record is not erased; released, it is,
        // with a tombstone; the content is gone, the record's trace stays.
        ok(&c.rt, hold(id, true)).await;
        set(start.replace_date(erase_by));
        let plan = ok(&c.rt, Request::RetentionPlan).await;
        assert!(plan["erase"].as_array().unwrap().is_empty(), "{plan}");
        let swept = ok(&c.rt, Request::RetentionSweep).await;
        assert!(swept["erased"].as_array().unwrap().is_empty(), "{swept}");
        assert!(c.rt.store.inbox_envelope(id).unwrap().is_some());
        ok(&c.rt, hold(id, false)).await;
        let journal_before = ops(&c.rt).len();
        let plan = ok(&c.rt, Request::RetentionPlan).await;
        assert_eq!(plan["erase"][0]["id"], id.to_string(), "{plan}");
        assert_eq!(ops(&c.rt).len(), journal_before, "a plan changes nothing");
        let swept = ok(&c.rt, Request::RetentionSweep).await;
        assert_eq!(swept["erased"][0]["id"], id.to_string(), "{swept}");
        assert_eq!(ops(&c.rt).last(), Some(&(Operation::Erase, Some(id))));
        assert!(c.rt.store.inbox_envelope(id).unwrap().is_none());
        assert!(c.rt.store.inbox_get(id).unwrap().is_some());
        let (code, _) = refused(&c.rt, show(id)).await;
        assert_eq!(code, 2);
        let swept = ok(&c.rt, Request::RetentionSweep).await;
        assert!(
            swept["erased"].as_array().unwrap().is_empty(),
            "sweeps are idempotent"
        );
        c.rt.store.verify_journal().unwrap();

        // The sender's copy: a review decides to erase it now.
        set(start + Duration::days(1));
        let erase = Request::Review {
            id: id.to_string(),
            decision: "erase".into(),
            justification: "no longer necessary".into(),
        };
        ok(&a.rt, erase).await;
        let swept = ok(&a.rt, Request::RetentionSweep).await;
        assert_eq!(swept["erased"][0]["place"], "outbox", "{swept}");
        assert!(a.rt.store.outbox_envelope(id).unwrap().is_none());
        assert!(a.rt.envelope(id).is_none());
        let kinds: Vec<_> = ops(&a.rt).into_iter().map(|(o, _)| o).collect();
        assert_eq!(
            kinds,
            vec![
                Operation::Collect,
                Operation::Hold,
                Operation::Hold,
                Operation::Review,
                Operation::Erase
            ]
        );
    }

    fn inbox_has_body(rt: &Runtime, id: Uuid) -> bool {
        rt.store.inbox_envelope(id).unwrap().is_some()
    }

    /// Delivers what `from` has waiting for `to` (in the order given), and hands each
    /// answer back to `from`, as the transport would; returns the receipts' effects.
    async fn carry(
        from: &Node,
        from_name: &str,
        to: &Node,
        ids: &[Uuid],
    ) -> Vec<Option<pons_core::Effect>> {
        let mut effects = Vec::new();
        for &id in ids {
            let envelope = from.rt.envelope(id).expect("waiting to be sent");
            let frame = to.rt.deliver(&spiffe(from_name), envelope).await;
            let Frame::Receipt { receipt } = &frame else {
                panic!("{frame:?}")
            };
            let (r, _) = pons_core::Receipt::open(receipt, to.rt.trust(), to.rt.now()).unwrap();
            effects.push(crate::notify::effect_of(&r, id));
            let peer = NodeId::new(if from_name == "adolescence" {
                "cuta"
            } else {
                "adolescence"
            })
            .unwrap();
            let outcome = from.rt.on_response(&peer, id, frame).await;
            assert!(
                matches!(outcome, pons_transport::ResponseOutcome::Delivered),
                "{outcome:?}"
            );
        }
        effects
    }

    /// The outbox records of `rt` that wait to be sent, of `class`.
    fn waiting(rt: &Runtime, class: &str) -> Vec<Uuid> {
        rt.pending()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| rt.store.outbox_get(*id).unwrap().unwrap().class == class)
            .collect()
    }

    pub(crate) fn journal_of(rt: &Runtime) -> Vec<pons_core::journal::JournalEntry> {
        rt.store.journal_iter(0).map(|e| e.unwrap()).collect()
    }

    #[tokio::test]
    async fn erasure_notices_and_rectifications_reach_the_recipient() {
        use pons_core::Effect;

        let dir = tempfile::tempdir().unwrap();
        let start = OffsetDateTime::now_utc();
        let ca = DevCa::new("pons.example", KeyAlgorithm::Ed25519, start).unwrap();
        let clock: Clock = Arc::new(move || start);
        // The peers' policies list only the report class: notices and rectifications of
        // it are allowed by law (LED art. 16(6)).
        let (a, c) = pair(&ca, dir.path(), &clock);
        let submit = || async {
            *a.rt
                .submit(&everyone(), "cuta", MRR, &report(), None, None)
                .await
                .unwrap()
                .as_uuid()
        };
        let erase_review = |id: Uuid| Request::Review {
            id: id.to_string(),
            decision: "erase".into(),
            justification: "no longer necessary for the assessment".into(),
        };

        // 1. Erased at the sender after delivery: the notice goes with the erasure, the
        //    recipient erases its copy and says so in its signed receipt.
        let r1 = submit().await;
        carry(&a, "adolescence", &c, &[r1]).await;
        assert!(inbox_has_body(&c.rt, r1));
        ok(&a.rt, erase_review(r1)).await;
        let swept = ok(&a.rt, Request::RetentionSweep).await;
        assert_eq!(swept["erased"][0]["id"], r1.to_string(), "{swept}");
        assert_eq!(swept["erased"][0]["notice"]["to"], "cuta", "{swept}");
        let notices = waiting(&a.rt, "erasure-notice");
        assert_eq!(notices.len(), 1);
        let effects = carry(&a, "adolescence", &c, &notices).await;
        assert_eq!(effects, vec![Some(Effect::Erased)]);
        assert!(!inbox_has_body(&c.rt, r1), "the recipient's copy is erased");
        let cj = journal_of(&c.rt);
        let tomb = cj
            .iter()
            .rev()
            .find(|e| e.operation == Operation::Erase)
            .unwrap();
        assert_eq!(tomb.record_id, Some(r1));
        assert!(
            tomb.justification
                .as_deref()
                .unwrap()
                .contains("erasure notice"),
            "{tomb:?}"
        );
        let told = journal_of(&a.rt).pop().unwrap();
        assert_eq!(
            (told.operation, told.record_id),
            (Operation::Disclose, Some(notices[0]))
        );
        assert!(
            told.justification
                .as_deref()
                .unwrap()
                .contains("cuta reported: erased its copy"),
            "{told:?}"
        );
        let shown = ok(
            &a.rt,
            Request::OutboxShow {
                id: notices[0].to_string(),
            },
        )
        .await;
        assert_eq!(shown["receipt"]["effect"]["effect"], "erased", "{shown}");

        // 2. Held at the recipient: kept restricted, the order remembered and reported;
        //    erased by the recipient's first sweep after the hold is lifted.
        let r2 = submit().await;
        carry(&a, "adolescence", &c, &[r2]).await;
        ok(&c.rt, hold(r2, true)).await;
        ok(&a.rt, erase_review(r2)).await;
        ok(&a.rt, Request::RetentionSweep).await;
        let effects = carry(&a, "adolescence", &c, &waiting(&a.rt, "erasure-notice")).await;
        assert_eq!(effects, vec![Some(Effect::Held)]);
        assert!(inbox_has_body(&c.rt, r2), "held: kept");
        let (code, msg) = refused(&c.rt, show(r2)).await;
        assert!(code == 2 && msg.contains("erasure ordered"), "{msg}");
        let plan = ok(&c.rt, Request::RetentionPlan).await;
        assert!(plan["erase"].as_array().unwrap().is_empty(), "{plan}");
        ok(&c.rt, hold(r2, false)).await;
        let plan = ok(&c.rt, Request::RetentionPlan).await;
        assert_eq!(plan["erase"][0]["id"], r2.to_string(), "{plan}");
        let swept = ok(&c.rt, Request::RetentionSweep).await;
        assert_eq!(swept["erased"][0]["id"], r2.to_string(), "{swept}");
        assert!(
            swept["erased"][0]["notice"].is_null(),
            "a recipient tells no one: {swept}"
        );
        assert!(!inbox_has_body(&c.rt, r2));

        // 3. Rectified: the correction and the erasure of the original are one step at
        //    the sender, and the recipient replaces its copy.
        let r3 = submit().await;
        carry(&a, "adolescence", &c, &[r3]).await;
        let corrected = report().replace("Shared a video", "Shared two videos");
        let rectify = |id: Uuid, report: String, reason: &str| Request::Rectify {
            id: id.to_string(),
            report,
            reason: reason.into(),
        };
        let done = ok(
            &a.rt,
            rectify(r3, corrected.clone(), "the chat held two videos"),
        )
        .await;
        assert_eq!(done["original_here"], "erased", "{done}");
        let x3 = Uuid::parse_str(done["id"].as_str().unwrap()).unwrap();
        assert!(a.rt.store.outbox_envelope(r3).unwrap().is_none());
        let effects = carry(&a, "adolescence", &c, &[x3]).await;
        assert_eq!(effects, vec![Some(Effect::Erased)]);
        assert!(!inbox_has_body(&c.rt, r3));
        let shown = ok(&c.rt, show(x3)).await;
        let text = shown.to_string();
        assert!(
            text.contains("Shared two videos") && text.contains(&r3.to_string()),
            "{text}"
        );
        // A correction of the correction is of the report's class again.
        let again = ok(
            &a.rt,
            rectify(x3, corrected.replace("two videos", "three videos"), "three"),
        )
        .await;
        let x4 = Uuid::parse_str(again["id"].as_str().unwrap()).unwrap();
        assert_eq!(
            carry(&a, "adolescence", &c, &[x4]).await,
            vec![Some(Effect::Erased)]
        );

        // 4. Rectified while the original was in flight: the original's receipt brings an
        //    erasure notice, so the recipient ends with the correction only.
        let r5 = submit().await;
        let in_flight = a.rt.envelope(r5).unwrap();
        let done = ok(&a.rt, rectify(r5, corrected.clone(), "typo")).await;
        let x5 = Uuid::parse_str(done["id"].as_str().unwrap()).unwrap();
        assert_eq!(
            carry(&a, "adolescence", &c, &[x5]).await,
            vec![Some(Effect::NotFound)]
        );
        let frame = c.rt.deliver(&spiffe("adolescence"), in_flight).await;
        assert!(inbox_has_body(&c.rt, r5), "the original arrived late");
        let outcome =
            a.rt.on_response(&NodeId::new("cuta").unwrap(), r5, frame)
                .await;
        assert!(matches!(
            outcome,
            pons_transport::ResponseOutcome::Delivered
        ));
        let late = waiting(&a.rt, "erasure-notice");
        assert_eq!(late.len(), 1, "the late delivery is followed by a notice");
        assert_eq!(
            carry(&a, "adolescence", &c, &late).await,
            vec![Some(Effect::Erased)]
        );
        assert!(!inbox_has_body(&c.rt, r5));

        // Refusals name the field and the rule, and store nothing.
        let r6 = submit().await;
        let before = journal_of(&a.rt).len();
        for (rt, request, needle) in [
            (
                &a.rt,
                rectify(r3, corrected.clone(), "again"),
                "was erased on this node",
            ),
            (
                &a.rt,
                rectify(r6, corrected.clone(), "  "),
                "reason: required",
            ),
            (&a.rt, rectify(r6, "{}".into(), "x"), "marking"),
            (
                &c.rt,
                rectify(x5, corrected.clone(), "x"),
                "only the sender rectifies",
            ),
        ] {
            let (code, msg) = match rt.handle(everyone(), request).await {
                Response::Err {
                    code,
                    message,
                    details,
                } => (code, format!("{message} {}", details.join(" "))),
                Response::Ok { body } => panic!("accepted: {body}"),
            };
            assert!(code == 2 && msg.contains(needle), "{needle}: {msg}");
        }
        assert_eq!(journal_of(&a.rt).len(), before, "refusals store nothing");
        a.rt.store.verify_journal().unwrap();
        c.rt.store.verify_journal().unwrap();
    }
}
