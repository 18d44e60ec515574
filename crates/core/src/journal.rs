//! The audit journal: entries, their canonical encoding and the hash chain.
//!
//! Every operation on personal data leaves one [`JournalEntry`]. Entries are chained:
//!
//! ```text
//! hash(n) = SHA-256( prev_hash(n) || canonical(n) )      prev_hash(n) = hash(n - 1)
//! prev_hash(1) = 32 zero bytes                            (genesis)
//! ```
//!
//! where `canonical(n)` is the deterministic CBOR encoding described on
//! [`JournalEntry::canonical_bytes`] of every field of the entry except `hash`. Changing,
//! removing, inserting or reordering any entry breaks the chain at that entry, which
//! [`verify_chain`] reports by sequence number. An exported journal verifies with this module
//! alone, or with a short script that rebuilds the CBOR array (see `docs/` and the test
//! vectors below).
//!
//! An entry never holds record content: only who did what to which record, why, on what legal
//! basis and with what outcome (LED art. 25 / GDPR art. 30 logging; the subject appears only
//! as the keyed pseudonym `subject_ref`).
//!
//! Sequence numbers start at 1. A later issue adds signed checkpoints (sequence + head hash);
//! [`verify_chain_from`] already verifies a segment that starts after such a checkpoint.
//!
//! This module does no I/O and reads no clock: time is a field set by the caller.

use std::fmt;

use ring::digest;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::identity::NodeId;

/// Version of the canonical encoding; the first element of the canonical CBOR array.
pub const CANONICAL_VERSION: u64 = 1;

/// `prev_hash` of the first entry (sequence 1): 32 zero bytes.
pub const GENESIS_PREV_HASH: [u8; 32] = [0u8; 32];

/// Sequence number of the first entry of a journal.
pub const FIRST_SEQ: u64 = 1;

/// Actor recorded for operations the node does on its own (retries, sweeps, receipts).
pub const SYSTEM_ACTOR: &str = "system";

/// What was done, in the vocabulary of the data-protection logging duty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Operation {
    /// A record was created on this node (a caseworker submitted it).
    Collect,
    /// A record was disclosed to another node (its receipt was accepted).
    Disclose,
    /// A record was received from another node and stored.
    Receive,
    /// A record was read by a person or a system (shown, exported to a feed).
    Consult,
    /// A record was changed (rectification).
    Alter,
    /// A record was combined with other data.
    Combine,
    /// A record was erased.
    Erase,
    /// Processing of a record was restricted.
    Restrict,
    /// A record's retention was reviewed.
    Review,
    /// A record was refused (by this node or by its intended recipient).
    Reject,
    /// A legal hold was placed or lifted.
    Hold,
    /// The journal itself was read (search, verify).
    JournalRead,
    /// Records or the journal were exported.
    Export,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 13] = [
        Operation::Collect,
        Operation::Disclose,
        Operation::Receive,
        Operation::Consult,
        Operation::Alter,
        Operation::Combine,
        Operation::Erase,
        Operation::Restrict,
        Operation::Review,
        Operation::Reject,
        Operation::Hold,
        Operation::JournalRead,
        Operation::Export,
    ];

    /// The kebab-case name used in the canonical encoding and in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Collect => "collect",
            Operation::Disclose => "disclose",
            Operation::Receive => "receive",
            Operation::Consult => "consult",
            Operation::Alter => "alter",
            Operation::Combine => "combine",
            Operation::Erase => "erase",
            Operation::Restrict => "restrict",
            Operation::Review => "review",
            Operation::Reject => "reject",
            Operation::Hold => "hold",
            Operation::JournalRead => "journal-read",
            Operation::Export => "export",
        }
    }

    /// Parse a kebab-case name.
    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Outcome {
    /// The operation was carried out.
    Success,
    /// The operation was refused by a rule (policy, validation, hold, peer rejection).
    Refused,
    /// The operation failed for a technical reason.
    Failed,
}

impl Outcome {
    /// The kebab-case name used in the canonical encoding and in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry before it is placed in the chain: everything but `seq`, `prev_hash` and `hash`.
///
/// The store seals a draft with the next sequence number and the current head hash inside
/// the same transaction as the state change it describes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalDraft {
    /// When the operation happened (UTC is recommended; the offset is kept as given).
    pub time: OffsetDateTime,
    /// The node that keeps this journal.
    pub node: NodeId,
    /// The OS user who asked for the operation, or [`SYSTEM_ACTOR`].
    pub actor: String,
    /// The actor's role (caseworker, dpo, operator), when known.
    pub role: Option<String>,
    /// What was done.
    pub operation: Operation,
    /// The record concerned, if any.
    pub record_id: Option<Uuid>,
    /// The record's class, if any.
    pub class: Option<String>,
    /// Keyed pseudonym of the data subject, if any.
    pub subject_ref: Option<String>,
    /// The other node involved (recipient of a disclosure, sender of a receipt), if any.
    pub counterpart: Option<NodeId>,
    /// Purpose of the processing.
    pub purpose: Option<String>,
    /// Why this processing is necessary (free text from the actor).
    pub justification: Option<String>,
    /// Legal basis of the processing.
    pub legal_basis: Option<String>,
    /// How the operation ended.
    pub outcome: Outcome,
}

impl JournalDraft {
    /// A draft with only the mandatory fields set; fill the optional ones as needed.
    pub fn new(
        time: OffsetDateTime,
        node: NodeId,
        actor: impl Into<String>,
        operation: Operation,
        outcome: Outcome,
    ) -> JournalDraft {
        JournalDraft {
            time,
            node,
            actor: actor.into(),
            role: None,
            operation,
            record_id: None,
            class: None,
            subject_ref: None,
            counterpart: None,
            purpose: None,
            justification: None,
            legal_basis: None,
            outcome,
        }
    }
}

/// One sealed entry of the audit journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Position in the journal, starting at [`FIRST_SEQ`], without gaps.
    pub seq: u64,
    /// When the operation happened.
    pub time: OffsetDateTime,
    /// The node that keeps this journal.
    pub node: NodeId,
    /// The OS user who asked for the operation, or [`SYSTEM_ACTOR`].
    pub actor: String,
    /// The actor's role, when known.
    pub role: Option<String>,
    /// What was done.
    pub operation: Operation,
    /// The record concerned, if any.
    pub record_id: Option<Uuid>,
    /// The record's class, if any.
    pub class: Option<String>,
    /// Keyed pseudonym of the data subject, if any.
    pub subject_ref: Option<String>,
    /// The other node involved, if any.
    pub counterpart: Option<NodeId>,
    /// Purpose of the processing.
    pub purpose: Option<String>,
    /// Why this processing is necessary.
    pub justification: Option<String>,
    /// Legal basis of the processing.
    pub legal_basis: Option<String>,
    /// How the operation ended.
    pub outcome: Outcome,
    /// Hash of the previous entry ([`GENESIS_PREV_HASH`] for the first).
    pub prev_hash: [u8; 32],
    /// `SHA-256(prev_hash || canonical_bytes())`.
    pub hash: [u8; 32],
}

impl JournalEntry {
    /// Place a draft in the chain at `seq` after an entry whose hash is `prev_hash`.
    pub fn seal(draft: JournalDraft, seq: u64, prev_hash: [u8; 32]) -> JournalEntry {
        let mut entry = JournalEntry {
            seq,
            time: draft.time,
            node: draft.node,
            actor: draft.actor,
            role: draft.role,
            operation: draft.operation,
            record_id: draft.record_id,
            class: draft.class,
            subject_ref: draft.subject_ref,
            counterpart: draft.counterpart,
            purpose: draft.purpose,
            justification: draft.justification,
            legal_basis: draft.legal_basis,
            outcome: draft.outcome,
            prev_hash,
            hash: [0u8; 32],
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// The canonical encoding of every field but `hash`: a definite-length CBOR array, every
    /// integer and length in its shortest form (RFC 8949 §4.2.1), in this fixed order:
    ///
    /// | # | field | CBOR |
    /// |---|---|---|
    /// | 0 | version | uint, [`CANONICAL_VERSION`] |
    /// | 1 | seq | uint |
    /// | 2 | time, seconds since the Unix epoch | int |
    /// | 3 | time, nanoseconds within the second | uint |
    /// | 4 | time, UTC offset in seconds | int |
    /// | 5 | node | text |
    /// | 6 | actor | text |
    /// | 7 | role | text or null |
    /// | 8 | operation (kebab-case) | text |
    /// | 9 | record_id (16 bytes, RFC 9562 order) | bytes or null |
    /// | 10 | class | text or null |
    /// | 11 | subject_ref | text or null |
    /// | 12 | counterpart | text or null |
    /// | 13 | purpose | text or null |
    /// | 14 | justification | text or null |
    /// | 15 | legal_basis | text or null |
    /// | 16 | outcome (kebab-case) | text |
    /// | 17 | prev_hash | bytes (32) |
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Room for every field at once: the texts plus at most 9 bytes of head each, the
        // record id, the hash and the numbers (a ~520-byte entry grew a 512-byte buffer).
        let texts = [
            Some(self.node.as_str()),
            Some(self.actor.as_str()),
            self.role.as_deref(),
            Some(self.operation.as_str()),
            self.class.as_deref(),
            self.subject_ref.as_deref(),
            self.counterpart.as_ref().map(NodeId::as_str),
            self.purpose.as_deref(),
            self.justification.as_deref(),
            self.legal_basis.as_deref(),
            Some(self.outcome.as_str()),
        ];
        let text_bytes: usize = texts.iter().flatten().map(|t| t.len() + 9).sum();
        let mut out = Vec::with_capacity(text_bytes + 128);
        cbor_head(&mut out, MAJOR_ARRAY, 18);
        cbor_uint(&mut out, CANONICAL_VERSION);
        cbor_uint(&mut out, self.seq);
        cbor_int(&mut out, self.time.unix_timestamp());
        cbor_uint(&mut out, u64::from(self.time.nanosecond()));
        cbor_int(&mut out, i64::from(self.time.offset().whole_seconds()));
        cbor_text(&mut out, self.node.as_str());
        cbor_text(&mut out, &self.actor);
        cbor_opt_text(&mut out, self.role.as_deref());
        cbor_text(&mut out, self.operation.as_str());
        match &self.record_id {
            Some(id) => cbor_bytes(&mut out, id.as_bytes()),
            None => out.push(CBOR_NULL),
        }
        cbor_opt_text(&mut out, self.class.as_deref());
        cbor_opt_text(&mut out, self.subject_ref.as_deref());
        cbor_opt_text(&mut out, self.counterpart.as_ref().map(NodeId::as_str));
        cbor_opt_text(&mut out, self.purpose.as_deref());
        cbor_opt_text(&mut out, self.justification.as_deref());
        cbor_opt_text(&mut out, self.legal_basis.as_deref());
        cbor_text(&mut out, self.outcome.as_str());
        cbor_bytes(&mut out, &self.prev_hash);
        out
    }

    /// `SHA-256(prev_hash || canonical_bytes())`, the value `hash` must hold.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&self.prev_hash);
        ctx.update(&self.canonical_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// Why a chain does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainFault {
    /// The sequence number is not the one after the previous entry's.
    #[error("seq is not {expected}")]
    SeqGap {
        /// The sequence number the entry should have.
        expected: u64,
    },
    /// `prev_hash` is not the previous entry's hash (or not zero for the first entry).
    #[error("prev_hash does not equal the previous entry's hash")]
    BrokenLink,
    /// `hash` does not equal `SHA-256(prev_hash || canonical)`: the entry was altered.
    #[error("hash does not match the entry's content")]
    BadHash,
}

/// The first entry at which a journal fails to verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("journal entry {seq}: {reason}")]
pub struct ChainError {
    /// Sequence number found in the first bad entry.
    pub seq: u64,
    /// What is wrong with it.
    pub reason: ChainFault,
}

/// Verify a whole journal from its first entry ([`FIRST_SEQ`], [`GENESIS_PREV_HASH`]).
///
/// Returns the number of entries verified and the head hash.
pub fn verify_chain<'a, I>(entries: I) -> Result<ChainHead, ChainError>
where
    I: IntoIterator<Item = &'a JournalEntry>,
{
    verify_chain_from(entries, ChainHead::genesis())
}

/// The position of a chain's last entry: its sequence number and hash.
///
/// `seq == 0` with a zero hash is the empty journal. A signed checkpoint will carry one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Sequence number of the last entry (0 for an empty journal).
    pub seq: u64,
    /// Hash of the last entry ([`GENESIS_PREV_HASH`] for an empty journal).
    pub hash: [u8; 32],
}

impl ChainHead {
    /// The head of an empty journal.
    pub const fn genesis() -> ChainHead {
        ChainHead {
            seq: FIRST_SEQ - 1,
            hash: GENESIS_PREV_HASH,
        }
    }

    /// The head after `entry`.
    pub fn of(entry: &JournalEntry) -> ChainHead {
        ChainHead {
            seq: entry.seq,
            hash: entry.hash,
        }
    }
}

/// Verify a segment of a journal whose entries follow `start` (a trusted head, e.g. from a
/// checkpoint). Returns the head after the last entry (`start` if there is none).
pub fn verify_chain_from<'a, I>(entries: I, start: ChainHead) -> Result<ChainHead, ChainError>
where
    I: IntoIterator<Item = &'a JournalEntry>,
{
    let mut head = start;
    for entry in entries {
        let expected = head.seq.wrapping_add(1);
        if entry.seq != expected {
            return Err(ChainError {
                seq: entry.seq,
                reason: ChainFault::SeqGap { expected },
            });
        }
        if entry.prev_hash != head.hash {
            return Err(ChainError {
                seq: entry.seq,
                reason: ChainFault::BrokenLink,
            });
        }
        if entry.compute_hash() != entry.hash {
            return Err(ChainError {
                seq: entry.seq,
                reason: ChainFault::BadHash,
            });
        }
        head = ChainHead::of(entry);
    }
    Ok(head)
}

/// Which entries a DPO's search or export selects. Every field set must match; an empty
/// filter selects every entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Entries about this subject pseudonym (64 hex digits).
    pub subject_ref: Option<String>,
    /// Entries about this record.
    pub record_id: Option<Uuid>,
    /// Entries whose counterpart is this node.
    pub peer: Option<NodeId>,
    /// Entries by this actor (OS user or [`SYSTEM_ACTOR`]).
    pub actor: Option<String>,
    /// Entries of this operation.
    pub operation: Option<Operation>,
    /// Entries at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Entries strictly before this instant.
    pub until: Option<OffsetDateTime>,
}

impl JournalFilter {
    /// Whether no field is set (every entry matches).
    pub fn is_empty(&self) -> bool {
        *self == JournalFilter::default()
    }

    /// Whether `entry` is selected.
    pub fn matches(&self, entry: &JournalEntry) -> bool {
        fn eq<T: PartialEq>(want: &Option<T>, have: Option<&T>) -> bool {
            want.as_ref().is_none_or(|w| have == Some(w))
        }
        eq(&self.subject_ref, entry.subject_ref.as_ref())
            && eq(&self.record_id, entry.record_id.as_ref())
            && eq(&self.peer, entry.counterpart.as_ref())
            && eq(&self.actor, Some(&entry.actor))
            && eq(&self.operation, Some(&entry.operation))
            && self.since.is_none_or(|s| entry.time >= s)
            && self.until.is_none_or(|u| entry.time < u)
    }
}

/// Version of the JSONL export format, in its header line.
pub const EXPORT_VERSION: u64 = 1;

/// Name of the JSONL export format, in its header line.
pub const EXPORT_FORMAT: &str = "pons-journal-export";

/// One line of a JSONL journal export (see `docs/journal-format.md`): a JSON object whose
/// `type` is `header`, `entry` or `checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
// Entries are by far the most frequent line: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum ExportLine {
    /// The first line: what the file holds.
    Header(ExportHeader),
    /// One journal entry.
    Entry(ExportedEntry),
    /// One signed checkpoint, with the countersignatures known for it.
    Checkpoint(ExportedCheckpoint),
}

/// The header line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_VERSION`].
    pub version: u64,
    /// The node whose journal this is.
    pub node: String,
    /// When the export was made ([`format_time`]).
    pub exported_at: String,
    /// Whether a filter selected the entries: then only each entry's own hash and the links
    /// between consecutive sequence numbers can be checked, not the whole chain.
    pub filtered: bool,
    /// The head the first entry follows: sequence 0 and 32 zero bytes for a journal
    /// exported from its start, or the head of the anchor checkpoint after pruning.
    pub start_seq: u64,
    /// Hash of the head the first entry follows, hex.
    pub start_hash: String,
    /// The journal head when the export was made.
    pub head_seq: u64,
    /// Hash of the journal head, hex.
    pub head_hash: String,
}

/// A journal entry as exported: every field of [`JournalEntry`], hashes and record id as
/// text, time both as text and as the three integers of the canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEntry {
    /// Sequence number.
    pub seq: u64,
    /// The time as [`format_time`] writes it; must agree with the three integers below.
    pub time: String,
    /// Seconds since the Unix epoch (canonical field 2).
    pub time_unix: i64,
    /// Nanoseconds within the second (canonical field 3).
    pub time_nanos: u32,
    /// UTC offset in seconds (canonical field 4).
    pub time_offset: i32,
    /// The node keeping the journal.
    pub node: String,
    /// Actor.
    pub actor: String,
    /// Actor's role.
    pub role: Option<String>,
    /// Operation, kebab-case.
    pub operation: String,
    /// Record id, hyphenated lower-case UUID.
    pub record_id: Option<String>,
    /// Record class.
    pub class: Option<String>,
    /// Subject pseudonym.
    pub subject_ref: Option<String>,
    /// Counterpart node.
    pub counterpart: Option<String>,
    /// Purpose.
    pub purpose: Option<String>,
    /// Justification.
    pub justification: Option<String>,
    /// Legal basis.
    pub legal_basis: Option<String>,
    /// Outcome, kebab-case.
    pub outcome: String,
    /// Previous hash, 64 lower-case hex digits.
    pub prev_hash: String,
    /// This entry's hash, 64 lower-case hex digits.
    pub hash: String,
}

/// A checkpoint as exported: the signed envelope and its countersignatures, hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedCheckpoint {
    /// Sequence number the checkpoint covers (informational; the signed payload rules).
    pub seq: u64,
    /// Head hash (informational), hex.
    pub head: String,
    /// The checkpoint's COSE_Sign1 envelope, hex.
    pub cose: String,
    /// Countersignatures by peers (COSE_Sign1 envelopes), hex.
    #[serde(default)]
    pub cosigned: Vec<String>,
}

/// Why an exported entry cannot be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A field has a value outside its rule.
    #[error("journal entry {seq}: {field}: {rule}")]
    Field {
        /// The entry's sequence number.
        seq: u64,
        /// The field.
        field: &'static str,
        /// The rule broken.
        rule: String,
    },
}

/// Formats a journal time for exports: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn±HH:MM`, always nine
/// fraction digits and a numeric offset; `:SS` is appended to the offset when it has seconds.
pub fn format_time(t: OffsetDateTime) -> String {
    let off = t.offset().whole_seconds();
    let sign = if off < 0 { '-' } else { '+' };
    let a = off.unsigned_abs();
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}{}{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond(),
        sign,
        a / 3600,
        (a / 60) % 60
    );
    if !a.is_multiple_of(60) {
        out.push_str(&format!(":{:02}", a % 60));
    }
    out
}

impl From<&JournalEntry> for ExportedEntry {
    fn from(e: &JournalEntry) -> ExportedEntry {
        ExportedEntry {
            seq: e.seq,
            time: format_time(e.time),
            time_unix: e.time.unix_timestamp(),
            time_nanos: e.time.nanosecond(),
            time_offset: e.time.offset().whole_seconds(),
            node: e.node.as_str().to_owned(),
            actor: e.actor.clone(),
            role: e.role.clone(),
            operation: e.operation.as_str().to_owned(),
            record_id: e.record_id.map(|u| u.hyphenated().to_string()),
            class: e.class.clone(),
            subject_ref: e.subject_ref.clone(),
            counterpart: e.counterpart.as_ref().map(|n| n.as_str().to_owned()),
            purpose: e.purpose.clone(),
            justification: e.justification.clone(),
            legal_basis: e.legal_basis.clone(),
            outcome: e.outcome.as_str().to_owned(),
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
        }
    }
}

impl TryFrom<&ExportedEntry> for JournalEntry {
    type Error = ExportError;

    /// Reads an exported entry back, refusing any field that does not have exactly the form
    /// [`ExportedEntry::from`] writes (so one entry has one export text). The hash is not
    /// checked here: [`verify_chain_from`] does that.
    fn try_from(x: &ExportedEntry) -> Result<JournalEntry, ExportError> {
        let seq = x.seq;
        let bad = |field: &'static str, rule: String| ExportError::Field { seq, field, rule };
        let offset = time::UtcOffset::from_whole_seconds(x.time_offset)
            .map_err(|e| bad("time_offset", e.to_string()))?;
        if x.time_nanos >= 1_000_000_000 {
            return Err(bad("time_nanos", "must be below 1000000000".into()));
        }
        let time = OffsetDateTime::from_unix_timestamp(x.time_unix)
            .map_err(|e| bad("time_unix", e.to_string()))?
            .replace_nanosecond(x.time_nanos)
            .map_err(|e| bad("time_nanos", e.to_string()))?
            .to_offset(offset);
        if format_time(time) != x.time {
            return Err(bad(
                "time",
                format!("{:?} does not equal {}", x.time, format_time(time)),
            ));
        }
        let node = |field, s: &str| NodeId::new(s).map_err(|e| bad(field, e.to_string()));
        let hash = |field, s: &str| -> Result<[u8; 32], ExportError> {
            let mut out = [0u8; 32];
            if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(bad(field, "must be 64 lower-case hex digits".into()));
            }
            hex::decode_to_slice(s, &mut out)
                .map_err(|_| bad(field, "must be 64 lower-case hex digits".into()))?;
            Ok(out)
        };
        let record_id = match &x.record_id {
            None => None,
            Some(s) => {
                let u = Uuid::parse_str(s).map_err(|e| bad("record_id", e.to_string()))?;
                if u.hyphenated().to_string() != *s {
                    return Err(bad(
                        "record_id",
                        "must be a hyphenated lower-case UUID".into(),
                    ));
                }
                Some(u)
            }
        };
        let outcome = match x.outcome.as_str() {
            "success" => Outcome::Success,
            "refused" => Outcome::Refused,
            "failed" => Outcome::Failed,
            other => return Err(bad("outcome", format!("{other:?} is not an outcome"))),
        };
        Ok(JournalEntry {
            seq,
            time,
            node: node("node", &x.node)?,
            actor: x.actor.clone(),
            role: x.role.clone(),
            operation: Operation::parse(&x.operation).ok_or_else(|| {
                bad(
                    "operation",
                    format!("{:?} is not an operation", x.operation),
                )
            })?,
            record_id,
            class: x.class.clone(),
            subject_ref: x.subject_ref.clone(),
            counterpart: x
                .counterpart
                .as_deref()
                .map(|c| node("counterpart", c))
                .transpose()?,
            purpose: x.purpose.clone(),
            justification: x.justification.clone(),
            legal_basis: x.legal_basis.clone(),
            outcome,
            prev_hash: hash("prev_hash", &x.prev_hash)?,
            hash: hash("hash", &x.hash)?,
        })
    }
}

/// Why an export does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportFault {
    /// The first line is not a header, or a second header appears.
    #[error("line {line}: {reason}")]
    Header {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// An entry's fields are not in export form.
    #[error("line {line}: {source}")]
    Field {
        /// 1-based line number.
        line: u64,
        /// The field error.
        source: ExportError,
    },
    /// The chain breaks at an entry.
    #[error("line {line}: {source}")]
    Chain {
        /// 1-based line number.
        line: u64,
        /// The chain error (names the entry's seq).
        source: ChainError,
    },
    /// The entries do not end at the head the header announces: the tail was cut, or
    /// entries were added.
    #[error("export ends at entry {last_seq} but its header names head {head_seq} {head_hash}")]
    Head {
        /// Sequence number of the last entry in the file.
        last_seq: u64,
        /// Head sequence number in the header.
        head_seq: u64,
        /// Head hash in the header (hex).
        head_hash: String,
    },
    /// A checkpoint line fails.
    #[error("line {line}: checkpoint: {reason}")]
    Checkpoint {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What an export that verified holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// The node whose journal it is.
    pub node: String,
    /// Entries checked.
    pub entries: u64,
    /// The head after the last entry (for a whole export: the journal head).
    pub head: Option<ChainHead>,
    /// Whether the export was filtered (links checked only between consecutive entries).
    pub filtered: bool,
    /// Checkpoint lines checked.
    pub checkpoints: u64,
}

/// Verifies a JSONL export line by line, in constant memory: feed it every parsed line
/// with [`ExportVerifier::push`], then call [`ExportVerifier::finish`].
///
/// For an unfiltered export the entries must form one chain from the header's start head to
/// its head. For a filtered one each entry's hash must match its content, and consecutive
/// sequence numbers must link. Checkpoint lines are checked by a caller-supplied function
/// (signature and head, see `pons_core::checkpoint`), so this type does no cryptography
/// beyond hashing.
#[derive(Debug, Default)]
pub struct ExportVerifier {
    line: u64,
    header: Option<ExportHeader>,
    head: ChainHead,
    entries: u64,
    checkpoints: u64,
}

impl Default for ChainHead {
    fn default() -> Self {
        ChainHead::genesis()
    }
}

impl ExportVerifier {
    /// A verifier expecting the header line first.
    pub fn new() -> ExportVerifier {
        ExportVerifier::default()
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&ExportHeader> {
        self.header.as_ref()
    }

    /// Checks one line. `checkpoint` is called for checkpoint lines and returns why one
    /// is bad, if it is.
    pub fn push(
        &mut self,
        line: &ExportLine,
        checkpoint: &mut dyn FnMut(&ExportedCheckpoint) -> Result<(), String>,
    ) -> Result<(), ExportFault> {
        self.line += 1;
        let n = self.line;
        let header_fault = |reason: &str| ExportFault::Header {
            line: n,
            reason: reason.to_owned(),
        };
        match (line, &self.header) {
            (ExportLine::Header(h), None) => {
                if h.format != EXPORT_FORMAT || h.version != EXPORT_VERSION {
                    return Err(header_fault(&format!(
                        "format {:?} version {} is not {EXPORT_FORMAT} version {EXPORT_VERSION}",
                        h.format, h.version
                    )));
                }
                let mut start = [0u8; 32];
                hex::decode_to_slice(&h.start_hash, &mut start)
                    .map_err(|_| header_fault("start_hash must be 64 hex digits"))?;
                self.head = ChainHead {
                    seq: h.start_seq,
                    hash: start,
                };
                self.header = Some(h.clone());
                Ok(())
            }
            (ExportLine::Header(_), Some(_)) => Err(header_fault("a second header line")),
            (_, None) => Err(header_fault("the first line must be the header")),
            (ExportLine::Entry(x), Some(h)) => {
                let entry = JournalEntry::try_from(x)
                    .map_err(|source| ExportFault::Field { line: n, source })?;
                if entry.node.as_str() != h.node {
                    return Err(ExportFault::Field {
                        line: n,
                        source: ExportError::Field {
                            seq: entry.seq,
                            field: "node",
                            rule: format!("{} is not the export's node {}", entry.node, h.node),
                        },
                    });
                }
                let start = if h.filtered && entry.seq != self.head.seq.wrapping_add(1) {
                    // A gap left by the filter: only this entry's own hash can be checked.
                    ChainHead {
                        seq: entry.seq.wrapping_sub(1),
                        hash: entry.prev_hash,
                    }
                } else {
                    self.head
                };
                self.head = verify_chain_from(std::iter::once(&entry), start)
                    .map_err(|source| ExportFault::Chain { line: n, source })?;
                self.entries += 1;
                Ok(())
            }
            (ExportLine::Checkpoint(c), Some(_)) => {
                checkpoint(c).map_err(|reason| ExportFault::Checkpoint { line: n, reason })?;
                self.checkpoints += 1;
                Ok(())
            }
        }
    }

    /// Ends the verification: an unfiltered export must end at the header's head.
    pub fn finish(self) -> Result<ExportSummary, ExportFault> {
        let Some(h) = self.header else {
            return Err(ExportFault::Header {
                line: 0,
                reason: "the export is empty: no header line".into(),
            });
        };
        if !h.filtered
            && (self.head.seq != h.head_seq || hex::encode(self.head.hash) != h.head_hash)
        {
            return Err(ExportFault::Head {
                last_seq: self.head.seq,
                head_seq: h.head_seq,
                head_hash: h.head_hash,
            });
        }
        Ok(ExportSummary {
            node: h.node,
            entries: self.entries,
            head: (self.entries > 0).then_some(self.head),
            filtered: h.filtered,
            checkpoints: self.checkpoints,
        })
    }
}

/// Why bytes are not the canonical encoding of an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("canonical journal entry: {0}")]
pub struct CanonicalError(pub String);

/// A reader of the canonical array, item by item.
struct Canon<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Canon<'a> {
    fn err<T>(&self, what: &str) -> Result<T, CanonicalError> {
        Err(CanonicalError(format!("{what} at byte {}", self.at)))
    }

    fn byte(&mut self) -> Result<u8, CanonicalError> {
        let Some(&v) = self.b.get(self.at) else {
            return self.err("unexpected end");
        };
        self.at += 1;
        Ok(v)
    }

    /// A head: (major type, argument), or None for null.
    fn head(&mut self) -> Result<Option<(u8, u64)>, CanonicalError> {
        let first = self.byte()?;
        if first == CBOR_NULL {
            return Ok(None);
        }
        let (major, info) = (first >> 5, first & 0x1f);
        let n = match info {
            0..=23 => return Ok(Some((major, u64::from(info)))),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return self.err("unsupported additional information"),
        };
        let Some(bytes) = self.b.get(self.at..self.at + n) else {
            return self.err("unexpected end");
        };
        self.at += n;
        Ok(Some((
            major,
            bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
        )))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], CanonicalError> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.at.checked_add(l))
            .filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return self.err("length beyond the end");
        };
        let out = &self.b[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn uint(&mut self) -> Result<u64, CanonicalError> {
        match self.head()? {
            Some((MAJOR_UINT, v)) => Ok(v),
            _ => self.err("expected an unsigned integer"),
        }
    }

    fn int(&mut self) -> Result<i64, CanonicalError> {
        match self.head()? {
            Some((MAJOR_UINT, v)) => i64::try_from(v).or_else(|_| self.err("integer too large")),
            Some((MAJOR_NINT, v)) => i64::try_from(v)
                .map(|v| -1 - v)
                .or_else(|_| self.err("integer too small")),
            _ => self.err("expected an integer"),
        }
    }

    fn opt_text(&mut self) -> Result<Option<String>, CanonicalError> {
        match self.head()? {
            None => Ok(None),
            Some((MAJOR_TEXT, len)) => {
                let b = self.take(len)?;
                std::str::from_utf8(b)
                    .map(|s| Some(s.to_owned()))
                    .or_else(|_| self.err("text is not UTF-8"))
            }
            _ => self.err("expected text or null"),
        }
    }

    fn text(&mut self) -> Result<String, CanonicalError> {
        match self.opt_text()? {
            Some(s) => Ok(s),
            None => self.err("expected text"),
        }
    }

    fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, CanonicalError> {
        match self.head()? {
            None => Ok(None),
            Some((MAJOR_BYTES, len)) => self.take(len).map(Some),
            _ => self.err("expected bytes or null"),
        }
    }
}

impl JournalEntry {
    /// Reads an entry back from its canonical bytes and its hash: the inverse of
    /// [`JournalEntry::canonical_bytes`]. Bytes that decode but are not exactly what
    /// `canonical_bytes` writes (longer integer forms, trailing bytes) are refused.
    pub fn from_canonical(bytes: &[u8], hash: [u8; 32]) -> Result<JournalEntry, CanonicalError> {
        let mut c = Canon { b: bytes, at: 0 };
        if c.head()? != Some((MAJOR_ARRAY, 18)) {
            return Err(CanonicalError("expected an array of 18 items".into()));
        }
        if c.uint()? != CANONICAL_VERSION {
            return Err(CanonicalError(format!(
                "version is not {CANONICAL_VERSION}"
            )));
        }
        let seq = c.uint()?;
        let secs = c.int()?;
        let nanos = c.uint()?;
        let offset = c.int()?;
        let bad = |what: &str| CanonicalError(what.to_owned());
        let offset = i32::try_from(offset)
            .ok()
            .and_then(|o| time::UtcOffset::from_whole_seconds(o).ok())
            .ok_or_else(|| bad("UTC offset out of range"))?;
        let time = OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(|t| t.replace_nanosecond(u32::try_from(nanos).ok()?).ok())
            .ok_or_else(|| bad("time out of range"))?
            .to_offset(offset);
        let node = NodeId::new(&c.text()?).map_err(|e| CanonicalError(e.to_string()))?;
        let actor = c.text()?;
        let role = c.opt_text()?;
        let operation = c.text()?;
        let operation =
            Operation::parse(&operation).ok_or_else(|| bad("operation is not an operation"))?;
        let record_id = match c.opt_bytes()? {
            None => None,
            Some(b) => Some(Uuid::from_slice(b).map_err(|_| bad("record_id is not 16 bytes"))?),
        };
        let class = c.opt_text()?;
        let subject_ref = c.opt_text()?;
        let counterpart = match c.opt_text()? {
            None => None,
            Some(s) => Some(NodeId::new(&s).map_err(|e| CanonicalError(e.to_string()))?),
        };
        let purpose = c.opt_text()?;
        let justification = c.opt_text()?;
        let legal_basis = c.opt_text()?;
        let outcome = match c.text()?.as_str() {
            "success" => Outcome::Success,
            "refused" => Outcome::Refused,
            "failed" => Outcome::Failed,
            _ => return Err(bad("outcome is not an outcome")),
        };
        let prev_hash: [u8; 32] = c
            .opt_bytes()?
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("prev_hash is not 32 bytes"))?;
        let entry = JournalEntry {
            seq,
            time,
            node,
            actor,
            role,
            operation,
            record_id,
            class,
            subject_ref,
            counterpart,
            purpose,
            justification,
            legal_basis,
            outcome,
            prev_hash,
            hash,
        };
        if entry.canonical_bytes() != bytes {
            return Err(bad("bytes are not in canonical form"));
        }
        Ok(entry)
    }
}

/// What a fast chain check needs from canonical bytes without decoding them: the sequence
/// number (item 1) and `prev_hash` (the last 32 bytes). `None` if the bytes cannot be a
/// canonical entry.
pub fn canonical_seq_and_prev(bytes: &[u8]) -> Option<(u64, [u8; 32])> {
    // 0x92 (array of 18), 0x01 (version 1), then seq.
    if bytes.len() < 3 + 34 || bytes[0] != 0x92 || bytes[1] != 0x01 {
        return None;
    }
    let mut c = Canon { b: bytes, at: 2 };
    let seq = c.uint().ok()?;
    let tail = &bytes[bytes.len() - 34..];
    if tail[0] != 0x58 || tail[1] != 0x20 {
        return None;
    }
    tail[2..].try_into().ok().map(|p| (seq, p))
}

/// `SHA-256(prev_hash || canonical)` over bytes as stored.
pub fn hash_canonical(prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev_hash);
    ctx.update(canonical);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

// Minimal deterministic CBOR writer for the canonical form: writing it by hand keeps the
// byte layout under this module's control (no serializer may reorder or re-encode fields).
const MAJOR_UINT: u8 = 0;
const MAJOR_NINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const CBOR_NULL: u8 = 0xf6;

fn cbor_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let m = major << 5;
    if value < 24 {
        // `value < 24` fits in the low five bits.
        out.push(m | value as u8);
    } else if let Ok(v) = u8::try_from(value) {
        out.push(m | 24);
        out.push(v);
    } else if let Ok(v) = u16::try_from(value) {
        out.push(m | 25);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(value) {
        out.push(m | 26);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

fn cbor_uint(out: &mut Vec<u8>, v: u64) {
    cbor_head(out, MAJOR_UINT, v);
}

fn cbor_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        cbor_head(out, MAJOR_UINT, v.unsigned_abs());
    } else {
        // CBOR negative integers encode -1 - v; for v < 0 that is |v| - 1, never overflowing.
        cbor_head(out, MAJOR_NINT, v.unsigned_abs() - 1);
    }
}

fn cbor_bytes(out: &mut Vec<u8>, b: &[u8]) {
    cbor_head(out, MAJOR_BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    cbor_head(out, MAJOR_TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn cbor_opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => cbor_text(out, s),
        None => out.push(CBOR_NULL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn node(s: &str) -> NodeId {
        NodeId::new(s).expect("valid node id")
    }

    fn full_draft(i: u64) -> JournalDraft {
        JournalDraft {
            time: datetime!(2026-11-23 10:00:00.123456789 UTC) + time::Duration::seconds(i as i64),
            node: node("vaa"),
            actor: "caseworker1".into(),
            role: Some("caseworker".into()),
            operation: Operation::Collect,
            record_id: Some(Uuid::from_u128(
                0x0192_0000_0000_7000_8000_0000_0000_0000 + i as u128,
            )),
            class: Some("minor-risk-report".into()),
            subject_ref: Some("subj-abc".into()),
            counterpart: Some(node("cuta")),
            purpose: Some("threat assessment".into()),
            justification: Some("signals at school".into()),
            legal_basis: Some("cooperation agreement art. 5".into()),
            outcome: Outcome::Success,
        }
    }

    fn chain(n: u64) -> Vec<JournalEntry> {
        let mut head = ChainHead::genesis();
        let mut out = Vec::new();
        for i in 0..n {
            let e = JournalEntry::seal(full_draft(i), head.seq + 1, head.hash);
            head = ChainHead::of(&e);
            out.push(e);
        }
        out
    }

    #[test]
    fn sealed_chain_verifies_and_reports_head() {
        let c = chain(5);
        let head = verify_chain(&c).expect("valid chain");
        assert_eq!(head.seq, 5);
        assert_eq!(head.hash, c[4].hash);
        assert_eq!(c[0].prev_hash, GENESIS_PREV_HASH);
        assert_eq!(c[0].seq, FIRST_SEQ);
        assert_eq!(verify_chain(&[]), Ok(ChainHead::genesis()));
    }

    #[test]
    fn segment_verifies_from_a_trusted_head() {
        let c = chain(6);
        let start = ChainHead::of(&c[2]);
        assert_eq!(verify_chain_from(&c[3..], start), Ok(ChainHead::of(&c[5])));
        // The same segment does not verify from genesis.
        let err = verify_chain(&c[3..]).expect_err("segment is not a whole journal");
        assert_eq!(err.seq, 4);
        assert_eq!(err.reason, ChainFault::SeqGap { expected: 1 });
    }

    /// The buffer is sized once: a long entry does not grow it (growth doubles it).
    #[test]
    fn canonical_bytes_are_written_into_one_allocation() {
        let mut d = full_draft(1);
        d.justification = Some("j".repeat(3000));
        d.purpose = Some("p".repeat(700));
        let e = JournalEntry::seal(d, 1, GENESIS_PREV_HASH);
        let b = e.canonical_bytes();
        assert!(b.len() > 3700);
        assert!(
            b.capacity() - b.len() < 11 * 9 + 128,
            "{} of {}",
            b.len(),
            b.capacity()
        );
    }

    #[test]
    fn canonical_bytes_start_as_documented() {
        let e = &chain(1)[0];
        let b = e.canonical_bytes();
        // array(18), version 1, seq 1
        assert_eq!(&b[..3], &[0x92, 0x01, 0x01]);
        // ends with bytes(32) of zeros (genesis prev_hash)
        assert_eq!(&b[b.len() - 34..b.len() - 32], &[0x58, 0x20]);
        assert!(b[b.len() - 32..].iter().all(|&x| x == 0));
        // hash = SHA-256(prev_hash || canonical)
        let mut input = e.prev_hash.to_vec();
        input.extend_from_slice(&b);
        assert_eq!(digest::digest(&digest::SHA256, &input).as_ref(), &e.hash);
    }

    #[test]
    fn canonical_bytes_match_ciborium_value_encoding() {
        // An independent encoder must produce the same bytes, so a third party can rebuild
        // them with any RFC 8949 deterministic encoder.
        use ciborium::value::Value;
        let e = &chain(1)[0];
        let text = |s: &str| Value::Text(s.to_owned());
        let v = Value::Array(vec![
            Value::Integer(1.into()),
            Value::Integer(e.seq.into()),
            Value::Integer(e.time.unix_timestamp().into()),
            Value::Integer(e.time.nanosecond().into()),
            Value::Integer(0.into()),
            text("vaa"),
            text("caseworker1"),
            text("caseworker"),
            text("collect"),
            Value::Bytes(e.record_id.expect("set").as_bytes().to_vec()),
            text("minor-risk-report"),
            text("subj-abc"),
            text("cuta"),
            text("threat assessment"),
            text("signals at school"),
            text("cooperation agreement art. 5"),
            text("success"),
            Value::Bytes(vec![0; 32]),
        ]);
        let mut expected = Vec::new();
        ciborium::into_writer(&v, &mut expected).expect("encode");
        assert_eq!(e.canonical_bytes(), expected);

        let mut none = JournalEntry::seal(
            JournalDraft::new(
                datetime!(1960-01-01 00:00:00 +01:00),
                node("cuta"),
                SYSTEM_ACTOR,
                Operation::JournalRead,
                Outcome::Refused,
            ),
            300,
            [7; 32],
        );
        none.seq = 70_000;
        let v = Value::Array(vec![
            Value::Integer(1.into()),
            Value::Integer(70_000.into()),
            Value::Integer(none.time.unix_timestamp().into()),
            Value::Integer(0.into()),
            Value::Integer(3600.into()),
            text("cuta"),
            text("system"),
            Value::Null,
            text("journal-read"),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            text("refused"),
            Value::Bytes(vec![7; 32]),
        ]);
        let mut expected = Vec::new();
        ciborium::into_writer(&v, &mut expected).expect("encode");
        assert_eq!(none.canonical_bytes(), expected);
    }

    /// Every field, changed after sealing, must make the chain fail at that entry.
    #[test]
    fn tampering_any_field_is_detected_at_that_entry() {
        type Tamper = fn(&mut JournalEntry);
        let tampers: Vec<(&str, Tamper)> = vec![
            ("time", |e| e.time += time::Duration::nanoseconds(1)),
            ("time offset", |e| {
                e.time = e
                    .time
                    .to_offset(time::UtcOffset::from_hms(1, 0, 0).expect("offset"))
            }),
            ("node", |e| e.node = NodeId::new("other").expect("id")),
            ("actor", |e| e.actor.push('x')),
            ("role", |e| e.role = None),
            ("operation", |e| e.operation = Operation::Disclose),
            ("record_id", |e| e.record_id = Some(Uuid::nil())),
            ("record_id none", |e| e.record_id = None),
            ("class", |e| e.class = Some("rectification".into())),
            ("subject_ref", |e| e.subject_ref = Some("subj-abd".into())),
            ("counterpart", |e| e.counterpart = None),
            ("purpose", |e| e.purpose = Some(String::new())),
            ("justification", |e| e.justification = None),
            ("legal_basis", |e| e.legal_basis = Some("none".into())),
            ("outcome", |e| e.outcome = Outcome::Failed),
            ("hash", |e| e.hash[31] ^= 1),
        ];
        for (name, tamper) in tampers {
            let mut c = chain(4);
            tamper(&mut c[2]);
            let err = verify_chain(&c).expect_err(name);
            assert_eq!(err.seq, 3, "{name}");
            assert_eq!(err.reason, ChainFault::BadHash, "{name}");
        }
    }

    #[test]
    fn tampering_links_and_sequence_is_detected() {
        // prev_hash changed: the link breaks.
        let mut c = chain(4);
        c[2].prev_hash[0] ^= 1;
        assert_eq!(
            verify_chain(&c),
            Err(ChainError {
                seq: 3,
                reason: ChainFault::BrokenLink
            })
        );

        // prev_hash changed and the hash recomputed: the link still breaks.
        let mut c = chain(4);
        c[2].prev_hash[0] ^= 1;
        c[2].hash = c[2].compute_hash();
        assert_eq!(
            verify_chain(&c).map_err(|e| (e.seq, e.reason)),
            Err((3, ChainFault::BrokenLink))
        );

        // An entry removed: a gap.
        let mut c = chain(4);
        c.remove(1);
        assert_eq!(
            verify_chain(&c).map_err(|e| (e.seq, e.reason)),
            Err((3, ChainFault::SeqGap { expected: 2 }))
        );

        // Two entries swapped.
        let mut c = chain(4);
        c.swap(1, 2);
        assert_eq!(
            verify_chain(&c).map_err(|e| (e.seq, e.reason)),
            Err((3, ChainFault::SeqGap { expected: 2 }))
        );

        // An entry rewritten and its hash recomputed: the next link breaks.
        let mut c = chain(4);
        c[1].hash = {
            c[1].actor.push('x');
            c[1].compute_hash()
        };
        assert_eq!(
            verify_chain(&c).map_err(|e| (e.seq, e.reason)),
            Err((3, ChainFault::BrokenLink))
        );

        // Genesis must link to zero.
        let mut c = chain(2);
        c[0] = JournalEntry::seal(full_draft(0), 1, [1; 32]);
        assert_eq!(
            verify_chain(&c).map_err(|e| (e.seq, e.reason)),
            Err((1, ChainFault::BrokenLink))
        );
    }

    #[test]
    fn operation_names_are_kebab_case_and_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            let json = serde_json::to_string(&op).expect("json");
            assert_eq!(json, format!("\"{}\"", op.as_str()));
        }
        assert_eq!(Operation::JournalRead.as_str(), "journal-read");
        assert_eq!(Operation::parse("read"), None);
    }

    #[test]
    fn cbor_serde_round_trip_keeps_the_hash_valid() {
        let c = chain(3);
        for e in &c {
            let mut buf = Vec::new();
            ciborium::into_writer(e, &mut buf).expect("encode");
            let back: JournalEntry = ciborium::from_reader(buf.as_slice()).expect("decode");
            assert_eq!(&back, e);
            assert_eq!(back.compute_hash(), e.hash);
        }
    }

    #[test]
    fn canonical_bytes_decode_back_and_refuse_other_forms() {
        for e in chain(3) {
            let b = e.canonical_bytes();
            assert_eq!(JournalEntry::from_canonical(&b, e.hash), Ok(e.clone()));
            assert_eq!(canonical_seq_and_prev(&b), Some((e.seq, e.prev_hash)));
            assert_eq!(hash_canonical(&e.prev_hash, &b), e.hash);
            let mut long = b.clone();
            long.push(0);
            assert!(JournalEntry::from_canonical(&long, e.hash).is_err());
            for cut in 0..b.len() {
                assert!(JournalEntry::from_canonical(&b[..cut], e.hash).is_err());
            }
        }
        // seq 1 written in a longer form than needed decodes but is not canonical.
        let e = &chain(1)[0];
        let mut b = e.canonical_bytes();
        b.splice(2..3, [0x18, 0x01]);
        assert!(JournalEntry::from_canonical(&b, e.hash).is_err());
    }

    #[test]
    fn cbor_int_encodes_extremes() {
        let mut out = Vec::new();
        cbor_int(&mut out, i64::MIN);
        assert_eq!(out, [0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        out.clear();
        cbor_int(&mut out, -1);
        assert_eq!(out, [0x20]);
        out.clear();
        cbor_uint(&mut out, 24);
        assert_eq!(out, [0x18, 24]);
        out.clear();
        cbor_uint(&mut out, 65_536);
        assert_eq!(out, [0x1a, 0, 1, 0, 0]);
    }
}
