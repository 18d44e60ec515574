//! The DPO's journal requests: verify, search and export, each itself journaled.
//!
//! Every request here needs the `dpo` role and a justification, and leaves one entry
//! (`journal-read` for verify and search, `export` for export) **before** anything is read,
//! so that no read of the journal goes unlogged (LED art. 25(1): consultation logs show the
//! justification, date, time and person).
//!
//! `--subject` is pseudonymised here, by the node, with the federation's pseudonym key: the
//! DPO sends the national register number or "given names|family name|YYYY-MM-DD" over the
//! control socket (a local socket, never the network) and needs no access to the key file.
//! The value is not kept: the journal-read entry names the subject by its pseudonym.

use std::sync::Arc;
use std::time::Duration;

use pons_core::checkpoint::{check_journal, Checkpoint, Cosigned};
use pons_core::class::NationalRegisterNumber;
use pons_core::journal::{
    format_time, ChainHead, ExportHeader, ExportLine, ExportedCheckpoint, ExportedEntry,
    JournalEntry, JournalFilter, Operation, Outcome, EXPORT_FORMAT, EXPORT_VERSION,
};
use pons_core::pseudonym::SubjectIdentity;
use pons_core::record::parse_date;
use pons_core::{NodeId, SpiffeId};
use pons_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::Role;
use crate::control::{Caller, Response};
use crate::runtime::{require, Runtime};

/// The filters of `pons journal search` and `pons journal export`, as the DPO typed them;
/// the node parses and checks them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalQuery {
    /// The subject: a national register number, or `given names|family name|YYYY-MM-DD`.
    #[serde(default)]
    pub subject: Option<String>,
    /// A record id.
    #[serde(default)]
    pub record: Option<String>,
    /// A peer node (the entries' counterpart).
    #[serde(default)]
    pub peer: Option<String>,
    /// An actor (OS user, or `system`).
    #[serde(default)]
    pub actor: Option<String>,
    /// An operation, e.g. `disclose`.
    #[serde(default)]
    pub operation: Option<String>,
    /// From this date (`YYYY-MM-DD`, midnight UTC) or RFC 3339 instant, inclusive.
    #[serde(default)]
    pub since: Option<String>,
    /// Until this date (`YYYY-MM-DD`: the whole day is included) or RFC 3339 instant
    /// (exclusive).
    #[serde(default)]
    pub until: Option<String>,
}

type Refused = Response;

fn require_dpo(caller: &Caller, what: &str) -> Result<(), Refused> {
    require(caller, &[Role::Dpo], what)
}

fn require_justification(justification: &str) -> Result<(), Refused> {
    if justification.trim().is_empty() {
        return Err(Response::invalid(
            "justification: required to read or export the journal (LED art. 25)",
            vec![],
        ));
    }
    Ok(())
}

/// Maps a store error: a chain or head fault is an integrity failure (exit 3).
fn store_error(e: StoreError) -> Refused {
    if e.is_integrity() {
        Response::integrity(e.to_string())
    } else {
        Response::runtime(e.to_string())
    }
}

/// Parses a subject as a national register number or `given names|family name|YYYY-MM-DD`.
pub fn parse_subject(value: &str) -> Result<SubjectInput, String> {
    let parts: Vec<&str> = value.split('|').collect();
    match parts.as_slice() {
        [nrn] => NationalRegisterNumber::parse(nrn)
            .map(SubjectInput::Nrn)
            .map_err(|e| format!("subject: {e}; or write given names|family name|YYYY-MM-DD")),
        [given, family, dob] => {
            let date = parse_date(dob.trim()).ok_or_else(|| {
                format!("subject: date of birth {dob:?} is not a date YYYY-MM-DD")
            })?;
            if given.trim().is_empty() || family.trim().is_empty() {
                return Err("subject: given names and family name must not be empty".into());
            }
            Ok(SubjectInput::Name {
                given_names: given.to_string(),
                family_name: family.to_string(),
                date_of_birth: date,
            })
        }
        _ => Err(
            "subject: expected a national register number or given names|family name|YYYY-MM-DD"
                .into(),
        ),
    }
}

/// A parsed subject, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectInput {
    /// A national register number.
    Nrn(NationalRegisterNumber),
    /// Names and date of birth.
    Name {
        /// Given names.
        given_names: String,
        /// Family name.
        family_name: String,
        /// Date of birth.
        date_of_birth: time::Date,
    },
}

impl SubjectInput {
    fn identity(&self) -> SubjectIdentity<'_> {
        match self {
            SubjectInput::Nrn(n) => SubjectIdentity::Nrn(n),
            SubjectInput::Name {
                given_names,
                family_name,
                date_of_birth,
            } => SubjectIdentity::Name {
                given_names,
                family_name,
                date_of_birth: *date_of_birth,
            },
        }
    }
}

/// Parses a `--since` / `--until` value; `end_of_day` moves a plain date to the next
/// midnight so that `--until 2026-11-23` includes that day.
pub fn parse_instant(field: &str, value: &str, end_of_day: bool) -> Result<OffsetDateTime, String> {
    if let Some(date) = parse_date(value) {
        let t = date.midnight().assume_utc();
        return Ok(if end_of_day {
            t + time::Duration::days(1)
        } else {
            t
        });
    }
    OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{field}: {value:?} is not a date YYYY-MM-DD or an RFC 3339 time"))
}

impl Runtime {
    /// Resolves a query into a filter; every problem is listed (exit 2).
    fn journal_filter(&self, q: &JournalQuery) -> Result<JournalFilter, Refused> {
        let mut problems = Vec::new();
        let mut filter = JournalFilter::default();
        if let Some(s) = &q.subject {
            match parse_subject(s) {
                Ok(subject) => {
                    filter.subject_ref = Some(
                        self.pseudonym_key()
                            .subject_ref(&subject.identity())
                            .to_hex(),
                    )
                }
                Err(e) => problems.push(e),
            }
        }
        if let Some(r) = &q.record {
            match Uuid::parse_str(r) {
                Ok(u) => filter.record_id = Some(u),
                Err(e) => problems.push(format!("record: {r:?} is not a record id: {e}")),
            }
        }
        if let Some(p) = &q.peer {
            match NodeId::new(p) {
                Ok(n) => filter.peer = Some(n),
                Err(e) => problems.push(format!("peer: {e}")),
            }
        }
        filter.actor = q.actor.clone();
        if let Some(o) = &q.operation {
            match Operation::parse(o) {
                Some(op) => filter.operation = Some(op),
                None => problems.push(format!(
                    "operation: {o:?} is not one of {}",
                    Operation::ALL.map(Operation::as_str).join(", ")
                )),
            }
        }
        if let Some(s) = &q.since {
            match parse_instant("since", s, false) {
                Ok(t) => filter.since = Some(t),
                Err(e) => problems.push(e),
            }
        }
        if let Some(u) = &q.until {
            match parse_instant("until", u, true) {
                Ok(t) => filter.until = Some(t),
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(filter)
        } else {
            Err(Response::invalid(
                format!("journal query refused ({} problems)", problems.len()),
                problems,
            ))
        }
    }

    /// Journals a DPO's read or export of the journal, durable before anything is read.
    async fn journal_access(
        &self,
        caller: &Caller,
        op: Operation,
        purpose: &str,
        filter: &JournalFilter,
        justification: &str,
    ) -> Result<u64, Refused> {
        let mut draft = pons_core::journal::JournalDraft::new(
            self.now(),
            self.node().clone(),
            caller.user.clone(),
            op,
            Outcome::Success,
        );
        draft.role = Some(Role::Dpo.to_string());
        draft.purpose = Some(purpose.to_owned());
        draft.justification = Some(justification.to_owned());
        draft.subject_ref = filter.subject_ref.clone();
        draft.record_id = filter.record_id;
        draft.counterpart = filter.peer.clone();
        self.store.append_journal(draft).await.map_err(store_error)
    }

    /// `pons journal verify`: the whole chain, the stored head, and the checkpoints.
    pub(crate) async fn journal_verify(
        &self,
        caller: &Caller,
        justification: &str,
    ) -> Result<Value, Refused> {
        require_dpo(caller, "journal verify")?;
        require_justification(justification)?;
        let seq = self
            .journal_access(
                caller,
                Operation::JournalRead,
                "journal verification",
                &JournalFilter::default(),
                justification,
            )
            .await?;
        let head = self.store.verify_journal().map_err(store_error)?;
        let (own, cosigned) = self.check_checkpoints(head)?;
        Ok(json!({
            "verified": true,
            "entries": head.seq,
            "head_hash": hex::encode(head.hash),
            "journal_seq": seq,
            "checkpoints": own,
            "cosigned": cosigned,
        }))
    }

    /// `pons journal search`: the entries matching the query.
    pub(crate) async fn journal_search(
        &self,
        caller: &Caller,
        query: &JournalQuery,
        justification: &str,
    ) -> Result<Value, Refused> {
        require_dpo(caller, "journal search")?;
        require_justification(justification)?;
        let filter = self.journal_filter(query)?;
        let seq = self
            .journal_access(
                caller,
                Operation::JournalRead,
                "journal search",
                &filter,
                justification,
            )
            .await?;
        let mut out = Vec::new();
        for entry in self.store.journal_iter(0) {
            let entry = entry.map_err(store_error)?;
            if entry.seq >= seq {
                // This search's own entry (and anything after it) is not part of the answer.
                break;
            }
            if filter.matches(&entry) {
                out.push(ExportedEntry::from(&entry));
            }
        }
        Ok(json!({ "journal_seq": seq, "entries": out }))
    }

    /// `pons journal export`: the header line, the matching entries (including this
    /// export's own entry when it matches) and the checkpoints.
    pub(crate) async fn journal_export(
        &self,
        caller: &Caller,
        query: &JournalQuery,
        justification: &str,
    ) -> Result<Value, Refused> {
        require_dpo(caller, "journal export")?;
        require_justification(justification)?;
        let filter = self.journal_filter(query)?;
        let seq = self
            .journal_access(
                caller,
                Operation::Export,
                "journal export",
                &filter,
                justification,
            )
            .await?;
        let mut lines = Vec::new();
        let start = self.store.journal_start().map_err(store_error)?;
        let mut head = start;
        for entry in self.store.journal_iter(start.seq + 1) {
            let entry: JournalEntry = entry.map_err(store_error)?;
            if entry.seq > seq {
                break;
            }
            head = ChainHead::of(&entry);
            if filter.matches(&entry) {
                lines.push(ExportLine::Entry(ExportedEntry::from(&entry)));
            }
        }
        let header = ExportLine::Header(ExportHeader {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            node: self.node().as_str().to_owned(),
            exported_at: format_time(self.now()),
            filtered: !filter.is_empty(),
            start_seq: start.seq,
            start_hash: hex::encode(start.hash),
            head_seq: head.seq,
            head_hash: hex::encode(head.hash),
        });
        lines.insert(0, header);
        // A checkpoint at this export's head, so that a copy cut short shows it.
        self.make_checkpoint().await.map_err(Response::runtime)?;
        lines.extend(self.checkpoint_lines(head)?);
        Ok(json!({ "journal_seq": seq, "lines": lines }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_parse_as_nrn_or_names() {
        assert!(matches!(
            parse_subject("85.07.30-033.28"),
            Ok(SubjectInput::Nrn(_))
        ));
        assert!(matches!(
            parse_subject("Amina|El Idrissi|2010-04-02"),
            Ok(SubjectInput::Name { .. })
        ));
        let e = parse_subject("Amina|El Idrissi|02/04/2010").expect_err("bad date");
        assert!(e.contains("date of birth"), "{e}");
        let e = parse_subject("12345").expect_err("bad nrn");
        assert!(e.contains("national register number"), "{e}");
        assert!(parse_subject("a|b").is_err());
        assert!(parse_subject("|b|2010-04-02").is_err());
    }

    #[test]
    fn until_a_date_includes_that_day() {
        let since = parse_instant("since", "2026-11-23", false).expect("date");
        let until = parse_instant("until", "2026-11-23", true).expect("date");
        assert_eq!((until - since).whole_hours(), 24);
        let t = parse_instant("since", "2026-11-23T10:00:00+01:00", false).expect("rfc3339");
        assert_eq!(t.hour(), 10);
        let e = parse_instant("since", "yesterday", false).expect_err("refused");
        assert!(e.starts_with("since:"), "{e}");
    }
}

// ---- checkpoints -------------------------------------------------------------------------

/// `[journal]` in the node configuration: when signed checkpoints are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// A checkpoint after this many new entries.
    pub checkpoint_every: u64,
    /// A checkpoint after this many seconds, if the journal grew.
    pub checkpoint_secs: u64,
    /// Journal entries older than this many days are pruned (default 3 years), back to
    /// the latest signed checkpoint before that age, which stays as the anchor.
    pub retention_days: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_secs: 300,
            retention_days: 3 * 365,
        }
    }
}

/// `[journal]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJournal {
    checkpoint_every: Option<u64>,
    checkpoint_secs: Option<u64>,
    retention_days: Option<u64>,
}

impl JournalConfig {
    /// Checks `[journal]`: both values at least 1.
    pub(crate) fn resolve(raw: &RawJournal) -> Result<Self, String> {
        let d = Self::default();
        let out = Self {
            checkpoint_every: raw.checkpoint_every.unwrap_or(d.checkpoint_every),
            checkpoint_secs: raw.checkpoint_secs.unwrap_or(d.checkpoint_secs),
            retention_days: raw.retention_days.unwrap_or(d.retention_days),
        };
        if out.checkpoint_every == 0 || out.checkpoint_secs == 0 || out.retention_days == 0 {
            return Err(
                "checkpoint_every, checkpoint_secs and retention_days must be at least 1".into(),
            );
        }
        Ok(out)
    }
}

/// Where checkpoints go to be countersigned: the peers, over the network.
pub trait CheckpointPeers: Send + Sync + 'static {
    /// Sends a signed checkpoint to `peer`; returns its countersignature envelope.
    fn cosign(
        &self,
        peer: &NodeId,
        checkpoint: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, String>> + Send;
}

impl Runtime {
    /// Signs and keeps a checkpoint of the journal head, unless the last one already names
    /// it. Returns the checkpoint and its envelope.
    pub async fn make_checkpoint(&self) -> Result<Option<(Checkpoint, Vec<u8>)>, String> {
        let head = self.store.journal_head().map_err(|e| e.to_string())?;
        if head.seq == 0 {
            return Ok(None);
        }
        if let Some((seq, _)) = self.store.last_checkpoint().map_err(|e| e.to_string())? {
            if seq >= head.seq {
                return Ok(None);
            }
        }
        let cp = Checkpoint::new(self.node().clone(), head, self.now());
        let env = cp.seal(self.signer()).map_err(|e| e.to_string())?;
        self.store
            .put_checkpoint(cp.seq, &env)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(seq = cp.seq, "journal checkpoint signed");
        Ok(Some((cp, env)))
    }

    /// Answers a peer's checkpoint with a countersignature, after checking that it verifies,
    /// that it is the peer's own, and that it does not contradict the last one this node
    /// countersigned for that peer (a truncated or rewritten journal). Keeps a copy.
    pub async fn cosign_checkpoint(
        &self,
        peer: &SpiffeId,
        envelope: &[u8],
    ) -> Result<Vec<u8>, String> {
        let last = self
            .store
            .cosigned(&peer.node)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|s| Cosigned::open(&s.envelope, self.trust(), self.now()).ok())
            .map(|(_, c)| c)
            .max_by_key(|c| c.seq);
        let (cp, cosigned) = Cosigned::cosign(
            envelope,
            last.as_ref(),
            self.trust(),
            self.now(),
            self.signer(),
        )
        .map_err(|e| e.to_string())?;
        if cp.node != peer.node {
            return Err(format!(
                "checkpoint of {} sent by {}: a node sends only its own",
                cp.node, peer.node
            ));
        }
        self.store
            .put_cosigned(&cp.node, cp.seq, self.node(), &cosigned)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(peer = %peer.node, seq = cp.seq, "peer journal checkpoint countersigned");
        Ok(cosigned)
    }

    /// Keeps a peer's countersignature of one of this node's checkpoints, once it verifies.
    pub async fn keep_cosigned(&self, peer: &NodeId, cosigned: &[u8]) -> Result<u64, String> {
        let (cs, cp) =
            Cosigned::open(cosigned, self.trust(), self.now()).map_err(|e| e.to_string())?;
        if &cs.cosigner != peer || &cp.node != self.node() {
            return Err(format!(
                "countersignature by {} of {}'s checkpoint, expected {peer} of {}",
                cs.cosigner,
                cp.node,
                self.node()
            ));
        }
        self.store
            .put_cosigned(self.node(), cp.seq, peer, cosigned)
            .await
            .map_err(|e| e.to_string())?;
        Ok(cp.seq)
    }

    /// Checks the journal (of `head`) against every own checkpoint and every peer's
    /// countersignature of one; returns (own, cosigned) counts or the first fault (exit 3).
    fn check_checkpoints(&self, head: ChainHead) -> Result<(u64, u64), Refused> {
        let hash_at = |seq: u64| -> Option<[u8; 32]> {
            match self.store.journal_iter(seq).next() {
                Some(Ok(e)) if e.seq == seq => Some(e.hash),
                _ => None,
            }
        };
        let now = self.now();
        let mut own = 0;
        for (seq, env) in self.store.checkpoints().map_err(store_error)? {
            let cp = Checkpoint::open(&env, self.trust(), now)
                .map_err(|e| Response::integrity(format!("checkpoint at entry {seq}: {e}")))?;
            if cp.seq != seq || &cp.node != self.node() {
                return Err(Response::integrity(format!(
                    "checkpoint stored at entry {seq} names {} entry {}",
                    cp.node, cp.seq
                )));
            }
            check_journal(
                &cp,
                &format!("node {} signed", self.node()),
                head.seq,
                hash_at,
            )
            .map_err(|f| Response::integrity(f.to_string()))?;
            own += 1;
        }
        let mut cosigned = 0;
        for s in self.store.cosigned(self.node()).map_err(store_error)? {
            let (cs, cp) = Cosigned::open(&s.envelope, self.trust(), now).map_err(|e| {
                Response::integrity(format!(
                    "countersignature by {} at entry {}: {e}",
                    s.cosigner, s.seq
                ))
            })?;
            check_journal(
                &cp,
                &format!("peer {} cosigned", cs.cosigner),
                head.seq,
                hash_at,
            )
            .map_err(|f| Response::integrity(f.to_string()))?;
            cosigned += 1;
        }
        Ok((own, cosigned))
    }

    /// The checkpoint lines of an export up to `head`.
    fn checkpoint_lines(&self, head: ChainHead) -> Result<Vec<ExportLine>, Refused> {
        let cosigned = self.store.cosigned(self.node()).map_err(store_error)?;
        let mut out = Vec::new();
        for (seq, env) in self.store.checkpoints().map_err(store_error)? {
            if seq > head.seq {
                continue;
            }
            let cp = Checkpoint::open(&env, self.trust(), self.now())
                .map_err(|e| Response::integrity(format!("checkpoint at entry {seq}: {e}")))?;
            out.push(ExportLine::Checkpoint(ExportedCheckpoint {
                seq,
                head: hex::encode(cp.head),
                cose: hex::encode(&env),
                cosigned: cosigned
                    .iter()
                    .filter(|c| c.seq == seq)
                    .map(|c| hex::encode(&c.envelope))
                    .collect(),
            }));
        }
        Ok(out)
    }
}

/// Makes checkpoints every `checkpoint_every` entries or `checkpoint_secs` seconds and sends
/// each to every peer for countersigning, keeping the answers. Runs until dropped.
pub async fn checkpoint_loop<P: CheckpointPeers>(rt: Arc<Runtime>, peers: Arc<P>) {
    let conf = rt.config.journal;
    let mut last_at = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(
        Duration::from_secs(1).min(Duration::from_secs(conf.checkpoint_secs)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned_at: Option<tokio::time::Instant> = None;
    let mut retried_at = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if pruned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            pruned_at = Some(tokio::time::Instant::now());
            let days = i64::try_from(conf.retention_days).unwrap_or(i64::MAX / 86_400);
            let before = rt.now() - time::Duration::days(days.min(365 * 1000));
            if let Err(e) = rt
                .prune_journal(pons_core::journal::SYSTEM_ACTOR, None, before, "retention")
                .await
            {
                tracing::error!(error = %e, "journal retention failed");
            }
        }
        let last_seq = match rt.store.last_checkpoint() {
            Ok(last) => last.map_or(0, |(s, _)| s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the last checkpoint");
                continue;
            }
        };
        let head = match rt.store.journal_head() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the journal head");
                continue;
            }
        };
        if retried_at.elapsed() >= Duration::from_secs(60) {
            // Peers that were unreachable when the last checkpoint was made get it again.
            retried_at = tokio::time::Instant::now();
            resend_missing(&rt, &*peers).await;
        }
        let grown = head.seq.saturating_sub(last_seq);
        let due = grown >= conf.checkpoint_every
            || (grown > 0 && last_at.elapsed() >= Duration::from_secs(conf.checkpoint_secs));
        if !due {
            continue;
        }
        last_at = tokio::time::Instant::now();
        match rt.make_checkpoint().await {
            Ok(Some((_, env))) => send_to_peers(&rt, &*peers, env).await,
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot make a journal checkpoint"),
        }
    }
}

/// Sends the latest checkpoint to the peers that have not countersigned it.
async fn resend_missing<P: CheckpointPeers>(rt: &Runtime, peers: &P) {
    let Ok(Some((seq, env))) = rt.store.last_checkpoint() else {
        return;
    };
    let Ok(have) = rt.store.cosigned(rt.node()) else {
        return;
    };
    let missing: Vec<NodeId> = rt
        .config
        .peers
        .keys()
        .filter(|p| {
            !have
                .iter()
                .any(|c| c.seq == seq && c.cosigner == p.as_str())
        })
        .cloned()
        .collect();
    if !missing.is_empty() {
        send_to(rt, peers, &missing, env).await;
    }
}

async fn send_to_peers<P: CheckpointPeers>(rt: &Runtime, peers: &P, env: Vec<u8>) {
    let all: Vec<NodeId> = rt.config.peers.keys().cloned().collect();
    send_to(rt, peers, &all, env).await;
}

async fn send_to<P: CheckpointPeers>(rt: &Runtime, peers: &P, to: &[NodeId], env: Vec<u8>) {
    for peer in to {
        match peers.cosign(peer, env.clone()).await {
            Ok(cosigned) => match rt.keep_cosigned(peer, &cosigned).await {
                Ok(seq) => tracing::info!(%peer, seq, "journal checkpoint countersigned by peer"),
                Err(e) => tracing::warn!(%peer, error = %e, "countersignature refused"),
            },
            Err(e) => tracing::info!(%peer, error = %e, "peer did not countersign the checkpoint"),
        }
    }
}

/// Checkpoints sent over the peers' QUIC links (`Checkpoint` → `Cosigned`).
pub struct LinkPeers {
    links: std::collections::BTreeMap<NodeId, pons_transport::PeerLink>,
}

impl LinkPeers {
    /// Over these links, by peer.
    pub fn new(links: std::collections::BTreeMap<NodeId, pons_transport::PeerLink>) -> Self {
        Self { links }
    }
}

impl CheckpointPeers for LinkPeers {
    async fn cosign(&self, peer: &NodeId, checkpoint: Vec<u8>) -> Result<Vec<u8>, String> {
        let link = self
            .links
            .get(peer)
            .ok_or_else(|| format!("{peer} is not a peer"))?;
        match link.cosign(&checkpoint).await.map_err(|e| e.to_string())? {
            pons_proto::Frame::Cosigned { checkpoint } => Ok(checkpoint),
            pons_proto::Frame::Reject { code, reason } => Err(format!("{code}: {reason}")),
            other => Err(format!("unexpected {} frame", other.type_name())),
        }
    }
}

impl Runtime {
    /// The answer to a peer's `Checkpoint` frame.
    pub async fn on_checkpoint_frame(
        &self,
        peer: &SpiffeId,
        checkpoint: Vec<u8>,
    ) -> pons_proto::Frame {
        match self.cosign_checkpoint(peer, &checkpoint).await {
            Ok(cosigned) => pons_proto::Frame::Cosigned {
                checkpoint: cosigned,
            },
            Err(reason) => {
                tracing::warn!(peer = %peer.node, %reason, "peer checkpoint refused");
                pons_proto::Refusal::new(pons_proto::RejectCode::InvalidSignature, reason).frame()
            }
        }
    }
}

// ---- DPO report ---------------------------------------------------------------------------

impl Runtime {
    /// `pons dpo report`: the journal's figures over a period and the verification status
    /// of the chain and the checkpoints (journaled as `journal-read`).
    pub(crate) async fn dpo_report(
        &self,
        caller: &Caller,
        since: Option<&str>,
        until: Option<&str>,
        justification: &str,
    ) -> Result<Value, Refused> {
        use std::collections::BTreeMap;
        require_dpo(caller, "dpo report")?;
        require_justification(justification)?;
        let filter = self.journal_filter(&JournalQuery {
            since: since.map(str::to_owned),
            until: until.map(str::to_owned),
            ..JournalQuery::default()
        })?;
        let seq = self
            .journal_access(
                caller,
                Operation::JournalRead,
                "dpo report",
                &JournalFilter::default(),
                justification,
            )
            .await?;
        // month -> peer -> (disclosed, received)
        let mut exchanges: BTreeMap<String, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
        let mut rejections: BTreeMap<String, u64> = BTreeMap::new();
        let mut consultations: BTreeMap<String, u64> = BTreeMap::new();
        let mut journal_reads: BTreeMap<String, u64> = BTreeMap::new();
        let mut operations: BTreeMap<&'static str, u64> = BTreeMap::new();
        // Erasures of records and what recipients reported about theirs (LED art. 16(6)).
        let mut erasures: Vec<Value> = Vec::new();
        let mut erasures_total = 0u64;
        let mut entries = 0u64;
        for entry in self.store.journal_iter(0) {
            let entry = entry.map_err(store_error)?;
            if entry.seq > seq {
                break;
            }
            if !filter.matches(&entry) {
                continue;
            }
            entries += 1;
            *operations.entry(entry.operation.as_str()).or_default() += 1;
            let month = format!(
                "{:04}-{:02}",
                entry.time.year(),
                u8::from(entry.time.month())
            );
            let peer = entry
                .counterpart
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.as_str().to_owned());
            match entry.operation {
                Operation::Disclose => {
                    exchanges
                        .entry(month)
                        .or_default()
                        .entry(peer)
                        .or_default()
                        .0 += 1
                }
                Operation::Receive => {
                    exchanges
                        .entry(month)
                        .or_default()
                        .entry(peer)
                        .or_default()
                        .1 += 1
                }
                Operation::Reject => {
                    // The justification of a reject entry starts with its reject code.
                    let code = entry
                        .justification
                        .as_deref()
                        .and_then(|j| j.split(':').next())
                        .unwrap_or("unknown")
                        .to_owned();
                    *rejections.entry(code).or_default() += 1;
                }
                Operation::Consult => *consultations.entry(entry.actor.clone()).or_default() += 1,
                Operation::Erase if entry.record_id.is_some() => {
                    erasures_total += 1;
                    if erasures.len() < MAX_REPORT_ERASURES {
                        erasures.push(json!({
                            "time": format_time(entry.time),
                            "record_id": entry.record_id,
                            "class": entry.class,
                            "counterpart": entry.counterpart,
                            "actor": entry.actor,
                            "outcome": entry.outcome.as_str(),
                            "ground": entry.justification,
                        }));
                    }
                }
                Operation::JournalRead | Operation::Export => {
                    *journal_reads.entry(entry.actor.clone()).or_default() += 1
                }
                _ => {}
            }
        }
        let chain = match self.store.verify_journal() {
            Ok(head) => match self.check_checkpoints(head) {
                Ok((own, cosigned)) => json!({
                    "ok": true,
                    "entries": head.seq,
                    "head_hash": hex::encode(head.hash),
                    "checkpoints": own,
                    "cosigned": cosigned,
                }),
                Err(Response::Err { message, .. }) => json!({ "ok": false, "error": message }),
                Err(_) => json!({ "ok": false, "error": "checkpoint check failed" }),
            },
            Err(e) => json!({ "ok": false, "error": e.to_string() }),
        };
        let mut exchanges_json = serde_json::Map::new();
        for (month, peers) in exchanges {
            let mut m = serde_json::Map::new();
            for (peer, (d, r)) in peers {
                m.insert(peer, json!({ "disclosed": d, "received": r }));
            }
            exchanges_json.insert(month, Value::Object(m));
        }
        Ok(json!({
            "node": self.node(),
            "generated_at": format_time(self.now()),
            "since": since,
            "until": until,
            "journal_seq": seq,
            "entries": entries,
            "operations": operations,
            "exchanges": exchanges_json,
            "rejections": rejections,
            "consultations": consultations,
            "journal_reads": journal_reads,
            "verification": chain,
            "retention": self.retention_report(),
            "erasures": erasures,
            "erasures_total": erasures_total,
        }))
    }
}

/// Most erasures listed one by one in a DPO report (all are counted).
pub const MAX_REPORT_ERASURES: usize = 1000;

// ---- retention -----------------------------------------------------------------------------

impl Runtime {
    /// Prunes the journal entries before the latest own checkpoint whose entry is older than
    /// `before`; that checkpoint becomes the anchor that keeps the rest verifiable. Journals
    /// the pruning (operation `erase`) and returns (entries removed, anchor seq).
    pub async fn prune_journal(
        &self,
        actor: &str,
        role: Option<&str>,
        before: OffsetDateTime,
        justification: &str,
    ) -> Result<(u64, u64), String> {
        let mut anchor = None;
        for (seq, env) in self.store.checkpoints().map_err(|e| e.to_string())? {
            let entry = match self.store.journal_iter(seq).next() {
                Some(Ok(e)) if e.seq == seq => e,
                _ => continue,
            };
            if entry.time >= before {
                break;
            }
            let cp = Checkpoint::open(&env, self.trust(), self.now()).map_err(|e| e.to_string())?;
            if cp.seq == seq && cp.head == entry.hash {
                anchor = Some((cp.chain_head(), env));
            }
        }
        let Some((head, env)) = anchor else {
            return Ok((0, 0));
        };
        let start = self.store.journal_start().map_err(|e| e.to_string())?;
        let to_remove = head.seq.saturating_sub(start.seq + 1);
        if to_remove == 0 {
            return Ok((0, head.seq));
        }
        let mut draft = pons_core::journal::JournalDraft::new(
            self.now(),
            self.node().clone(),
            actor,
            Operation::Erase,
            Outcome::Success,
        );
        draft.role = role.map(str::to_owned);
        draft.purpose = Some("journal retention".into());
        draft.justification = Some(format!(
            "{justification}: the {to_remove} journal entries before entry {} removed; the signed checkpoint at entry {} is the anchor",
            head.seq, head.seq
        ));
        let removed = self
            .store
            .prune_journal(head, &env, draft)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(removed, anchor = head.seq, "journal pruned");
        Ok((removed, head.seq))
    }

    /// `pons journal prune`: retention on demand (role operator or dpo).
    pub(crate) async fn journal_prune(
        &self,
        caller: &Caller,
        before: &str,
        justification: &str,
    ) -> Result<Value, Refused> {
        require(caller, &[Role::Operator, Role::Dpo], "journal prune")?;
        require_justification(justification)?;
        let before =
            parse_instant("before", before, false).map_err(|e| Response::invalid(e, vec![]))?;
        let (removed, anchor) = self
            .prune_journal(
                &caller.user,
                caller
                    .acting_role(&[Role::Dpo, Role::Operator])
                    .map(Role::as_str),
                before,
                justification,
            )
            .await
            .map_err(Response::runtime)?;
        Ok(json!({ "removed": removed, "anchor_seq": anchor }))
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use std::path::Path;

    use pons_core::journal::JournalDraft;
    use pons_pki::devca::DevCa;
    use pons_pki::KeyAlgorithm;
    use pons_store::{Options, Store};

    use super::*;
    use crate::runtime::system_clock;

    fn config(node: &str) -> String {
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
"#
        )
    }

    fn runtime(ca: &DevCa, node: &str, dir: &Path) -> Runtime {
        runtime_with(ca, node, dir, "")
    }

    fn runtime_with(ca: &DevCa, node: &str, dir: &Path, extra: &str) -> Runtime {
        let now = OffsetDateTime::now_utc();
        let issued = ca.issue(&NodeId::new(node).unwrap(), now).unwrap();
        let signer = issued.identity(now).unwrap().signer().unwrap();
        let trust = crate::retention::tests::trust_of(ca);
        let config = crate::Config::parse(&(config(node) + extra), &dir.join("node.toml")).unwrap();
        let store = Store::open(dir.join(node), Options::default()).unwrap();
        let key = pons_core::pseudonym::PseudonymKey::from_bytes(&[7; 32]).unwrap();
        Runtime::new(config, store, signer, trust, key, system_clock())
    }

    async fn grow(rt: &Runtime, n: usize) {
        for _ in 0..n {
            let d = JournalDraft::new(
                rt.now(),
                rt.node().clone(),
                "dpo1",
                Operation::JournalRead,
                Outcome::Success,
            );
            rt.store.append_journal(d).await.unwrap();
        }
    }

    fn spiffe(node: &str) -> SpiffeId {
        SpiffeId {
            federation: "pons.example".into(),
            node: NodeId::new(node).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_truncated_journal_fails_against_the_peer_countersignature_and_the_peer_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::new(
            "pons.example",
            KeyAlgorithm::Ed25519,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let cuta = runtime(&ca, "cuta", &dir.path().join("a"));
        let adolescence = runtime(&ca, "adolescence", &dir.path().join("b"));

        grow(&cuta, 12).await;
        let (cp, env) = cuta.make_checkpoint().await.unwrap().unwrap();
        assert_eq!(cp.seq, 12);
        // Nothing new: no second checkpoint.
        assert!(cuta.make_checkpoint().await.unwrap().is_none());
        let cosigned = adolescence
            .cosign_checkpoint(&spiffe("cuta"), &env)
            .await
            .unwrap();
        assert_eq!(
            cuta.keep_cosigned(&NodeId::new("adolescence").unwrap(), &cosigned)
                .await,
            Ok(12)
        );
        let head = cuta.store.verify_journal().unwrap();
        assert_eq!(cuta.check_checkpoints(head).map_err(|_| ()), Ok((1, 1)));
        // A peer cannot pass off another node's checkpoint, nor get its own countersigned.
        assert!(adolescence
            .cosign_checkpoint(&spiffe("nccn"), &env)
            .await
            .is_err());
        assert!(cuta.cosign_checkpoint(&spiffe("cuta"), &env).await.is_err());

        // cuta's journal replaced by a shorter one, its countersignature kept: verify fails.
        let shorter = runtime(&ca, "cuta", &dir.path().join("c"));
        grow(&shorter, 10).await;
        shorter
            .keep_cosigned(&NodeId::new("adolescence").unwrap(), &cosigned)
            .await
            .unwrap();
        let head = shorter.store.verify_journal().unwrap();
        match shorter.check_checkpoints(head) {
            Err(Response::Err { code: 3, message, .. }) => assert_eq!(
                message,
                format!(
                    "truncated: peer adolescence cosigned size 12 with head {}, journal has 10 entries",
                    hex::encode(cp.head)
                )
            ),
            other => panic!("expected an integrity failure, got {other:?}"),
        }
        // Same length, other content: rewritten.
        grow(&shorter, 2).await;
        let head = shorter.store.verify_journal().unwrap();
        match shorter.check_checkpoints(head) {
            Err(Response::Err {
                code: 3, message, ..
            }) => {
                assert!(
                    message.starts_with("rewritten: peer adolescence cosigned"),
                    "{message}"
                )
            }
            other => panic!("expected an integrity failure, got {other:?}"),
        }
        // And the peer refuses to countersign the shorter journal's checkpoint.
        let short = runtime(&ca, "cuta", &dir.path().join("d"));
        grow(&short, 5).await;
        let (_, env) = short.make_checkpoint().await.unwrap().unwrap();
        let refused = adolescence
            .cosign_checkpoint(&spiffe("cuta"), &env)
            .await
            .unwrap_err();
        assert!(refused.contains("truncated"), "{refused}");
    }

    /// A peer that refuses the first request (as if unreachable), then countersigns.
    struct Flaky {
        peer: Runtime,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl CheckpointPeers for Flaky {
        async fn cosign(&self, _peer: &NodeId, checkpoint: Vec<u8>) -> Result<Vec<u8>, String> {
            if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return Err("connection refused".into());
            }
            self.peer
                .cosign_checkpoint(&spiffe("cuta"), &checkpoint)
                .await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_scheduler_checkpoints_and_retries_a_peer_that_was_down() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::new(
            "pons.example",
            KeyAlgorithm::Ed25519,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let peer_conf = "[[peer]]\nnode_id = \"adolescence\"\naddress = \"127.0.0.1:7445\"\n\
                         [journal]\ncheckpoint_every = 3\ncheckpoint_secs = 3600\n";
        let cuta = Arc::new(runtime_with(&ca, "cuta", &dir.path().join("a"), peer_conf));
        let peers = Arc::new(Flaky {
            peer: runtime(&ca, "adolescence", &dir.path().join("b")),
            calls: Default::default(),
        });
        grow(&cuta, 4).await;
        let task = tokio::spawn(checkpoint_loop(cuta.clone(), peers.clone()));
        // Paused time: each sleep lets the loop's one-second ticks run at once.
        let mut cosigned = Vec::new();
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            cosigned = cuta.store.cosigned(cuta.node()).unwrap();
            if !cosigned.is_empty() {
                break;
            }
        }
        task.abort();
        assert_eq!(cuta.store.last_checkpoint().unwrap().map(|c| c.0), Some(4));
        assert_eq!(cosigned.len(), 1, "the retry got the countersignature");
        assert_eq!(
            (cosigned[0].seq, cosigned[0].cosigner.as_str()),
            (4, "adolescence")
        );
        assert!(peers.calls.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    }
}
