//! Validation of reports and records.
//!
//! A caseworker writes a report as JSON (a [`Draft`]); `pons submit` reads it with
//! [`Draft::parse_json`] and turns it into a [`Record`] with [`Draft::into_record`]. A
//! receiving node checks the decoded record again with [`Record::validate`]: the rules
//! are the same on both sides.
//!
//! Validation happens in two passes. [`Draft::parse_json`] checks the *shape* of the
//! report: JSON syntax, required fields, types, unknown fields, enumerated values, dates,
//! markings, TLP labels, national register numbers. [`Draft::into_record`] and
//! [`Record::validate`] then check the *rules*: lengths, control characters, dates in the
//! future or out of order, the subject's age, assessments naming their authority. Each
//! pass reports every problem it finds, not just the first, as a [`ValidationErrors`]
//! whose entries name the field (`body.statements[2].text`) and the [`Rule`].
//!
//! # Report JSON
//! ```json
//! { "_comment": "keys starting with _ are comments and are ignored",
//!   "marking": "sensitive-unclassified", "tlp": "TLP:AMBER",
//!   "legal_basis": "…", "purpose": "… (optional: --purpose)",
//!   "justification": "… (optional: --justification)",
//!   "review_by": "YYYY-MM-DD (optional)", "erase_by": "YYYY-MM-DD (optional)",
//!   "class": "minor-risk-report (optional: --class)", "body": { … } }
//! ```
//! JSON has no comments, so **every object key starting with `_` is a comment** and is
//! ignored, at any depth; any other unknown key is an error (a misspelt optional field
//! must not vanish silently). `null` counts as absent. See `config/examples/`.
//!
//! Validation never panics, whatever the input: it is property-tested with arbitrary
//! JSON values and arbitrary bytes.

use std::cell::RefCell;
use std::fmt;

use serde_json::Value;
use time::{Date, Duration, OffsetDateTime, UtcOffset};

use crate::class::{Body, ClassName};
use crate::identity::NodeId;
use crate::pseudonym::{PseudonymKey, SubjectRef};
use crate::record::{
    format_date, parse_date, Marking, MarkingError, Record, RecordId, Tlp, TlpError,
    MAX_RECORD_BYTES, RECORD_VERSION,
};

/// Largest report file accepted, in bytes.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;
/// Longest name (given names, family name, author), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest one-line field (case reference, role, e-mail, authority), in characters.
pub const MAX_LINE_CHARS: usize = 200;
/// Longest `purpose`, in characters.
pub const MAX_PURPOSE_CHARS: usize = 500;
/// Longest `legal_basis`, in characters.
pub const MAX_LEGAL_BASIS_CHARS: usize = 500;
/// Longest `justification`, in characters.
pub const MAX_JUSTIFICATION_CHARS: usize = 2_000;
/// Longest statement, question, reason or note, in characters.
pub const MAX_TEXT_CHARS: usize = 8_000;
/// Most statements in one report.
pub const MAX_STATEMENTS: usize = 200;
/// Most protection measures in one protection file.
pub const MAX_MEASURES: usize = 32;
/// Most problems reported at once; the rest are counted.
pub const MAX_ERRORS: usize = 100;
/// Earliest date accepted anywhere (births, statements, records).
pub const EARLIEST_DATE: Date = time::macros::date!(1900 - 01 - 01);

/// The rule a field breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The report is not JSON.
    Syntax,
    /// The report or record is too large.
    Size,
    /// A required field is missing or empty.
    Required,
    /// A field has the wrong JSON type.
    Type,
    /// A field that no class defines.
    UnknownField,
    /// A value outside its enumeration.
    Choice,
    /// A text over its length limit.
    Length,
    /// Too many items in a list.
    Count,
    /// A text contains a control or bidirectional-override character.
    ControlCharacter,
    /// Not a marking Pons carries.
    Marking,
    /// A classified marking.
    Classified,
    /// Not a TLP 2.0 label.
    Tlp,
    /// Not a date, or a date out of range.
    Date,
    /// A date in the future beyond the clock-skew allowance.
    FutureDate,
    /// Dates in the wrong order.
    DateOrder,
    /// The subject of a minor-risk-report is not a minor.
    Minor,
    /// A national register number that is not 11 digits.
    NrnFormat,
    /// A national register number with a wrong check number.
    NrnChecksum,
    /// A national register number that contradicts the date of birth.
    NrnDateOfBirth,
    /// An assessment without its assessing authority, or a fact with one.
    AssessingAuthority,
    /// A malformed value (record id, e-mail address).
    Format,
    /// A class mismatch or a class not allowed here.
    Class,
    /// An unknown payload version.
    Version,
    /// A bad sender or recipient.
    Node,
    /// A subject pseudonym that does not match the body.
    SubjectRef,
}

impl Rule {
    /// The rule's name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Syntax => "syntax",
            Rule::Size => "size",
            Rule::Required => "required",
            Rule::Type => "type",
            Rule::UnknownField => "unknown-field",
            Rule::Choice => "choice",
            Rule::Length => "length",
            Rule::Count => "count",
            Rule::ControlCharacter => "control-character",
            Rule::Marking => "marking",
            Rule::Classified => "classified",
            Rule::Tlp => "tlp",
            Rule::Date => "date",
            Rule::FutureDate => "future-date",
            Rule::DateOrder => "date-order",
            Rule::Minor => "minor",
            Rule::NrnFormat => "nrn-format",
            Rule::NrnChecksum => "nrn-checksum",
            Rule::NrnDateOfBirth => "nrn-date-of-birth",
            Rule::AssessingAuthority => "assessing-authority",
            Rule::Format => "format",
            Rule::Class => "class",
            Rule::Version => "version",
            Rule::Node => "node",
            Rule::SubjectRef => "subject-ref",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem: which field, which rule, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// Path of the field, e.g. `body.statements[2].text`; `report` for the whole file.
    pub field: String,
    /// The rule broken.
    pub rule: Rule,
    /// What is wrong, lower case, e.g. `2001-03-04 is not under 18 on 2026-11-23`.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.field, self.message, self.rule)
    }
}

/// Every problem found in a report or record, in the order found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidationErrors {
    errors: Vec<ValidationError>,
    /// Problems beyond [`MAX_ERRORS`], counted only.
    dropped: usize,
}

impl ValidationErrors {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem.
    pub fn push(&mut self, field: impl Into<String>, rule: Rule, message: impl Into<String>) {
        if self.errors.len() >= MAX_ERRORS {
            self.dropped += 1;
            return;
        }
        self.errors.push(ValidationError {
            field: field.into(),
            rule,
            message: message.into(),
        });
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many problems were found, counting those not kept.
    pub fn len(&self) -> usize {
        self.errors.len() + self.dropped
    }

    /// The problems kept (at most [`MAX_ERRORS`]).
    pub fn errors(&self) -> &[ValidationError] {
        &self.errors
    }

    /// Whether some problem concerns `field` and `rule`.
    pub fn has(&self, field: &str, rule: Rule) -> bool {
        self.errors
            .iter()
            .any(|e| e.field == field && e.rule == rule)
    }

    /// `Ok(())` if no problem was found.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        if self.dropped > 0 {
            write!(f, "\nand {} more problems", self.dropped)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// What rules that depend on time are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckContext {
    /// The record's date (`created`, in UTC): the subject's age is taken on this day.
    pub report_date: Date,
    /// The latest instant not "in the future": now plus the clock-skew allowance.
    pub latest: OffsetDateTime,
}

impl CheckContext {
    /// The context for a record created at `created`, checked at `now` with `skew`.
    pub fn new(created: OffsetDateTime, now: OffsetDateTime, skew: Duration) -> Self {
        Self {
            report_date: utc(created).date(),
            latest: now.checked_add(skew.abs()).unwrap_or(now),
        }
    }

    /// The last date that is not in the future.
    pub fn latest_date(&self) -> Date {
        utc(self.latest).date()
    }
}

fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.checked_to_offset(UtcOffset::UTC).unwrap_or(t)
}

/// What a text field may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextKind {
    /// One line: no control character at all.
    Line,
    /// Prose: line feeds and tabs allowed.
    Prose,
}

/// Checks a required text: not blank, at most `max` characters, no control characters.
pub(crate) fn check_text(
    e: &mut ValidationErrors,
    field: &str,
    value: &str,
    max: usize,
    kind: TextKind,
) {
    if value.trim().is_empty() {
        e.push(field, Rule::Required, "must not be empty");
        return;
    }
    check_opt_text(e, field, value, max, kind);
}

/// Checks an optional text that is present: length and control characters.
pub(crate) fn check_opt_text(
    e: &mut ValidationErrors,
    field: &str,
    value: &str,
    max: usize,
    kind: TextKind,
) {
    let n = value.chars().count();
    if n > max {
        e.push(
            field,
            Rule::Length,
            format!("is {n} characters long: the limit is {max}"),
        );
    }
    if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find(|&(_, c)| forbidden_char(c, kind))
    {
        e.push(
            field,
            Rule::ControlCharacter,
            format!(
                "contains control character U+{:04X} at character {}",
                c as u32,
                i + 1
            ),
        );
    }
}

fn forbidden_char(c: char, kind: TextKind) -> bool {
    if kind == TextKind::Prose && matches!(c, '\n' | '\t') {
        return false;
    }
    // Bidirectional overrides and isolates can make text read differently from what it
    // says ("Trojan Source", CVE-2021-42574).
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Checks a date that must be in the past: not before [`EARLIEST_DATE`], not after
/// `ctx.latest`.
pub(crate) fn check_past_date(e: &mut ValidationErrors, field: &str, d: Date, ctx: &CheckContext) {
    if d < EARLIEST_DATE {
        e.push(
            field,
            Rule::Date,
            format!(
                "{} is before {}",
                format_date(d),
                format_date(EARLIEST_DATE)
            ),
        );
    }
    let latest = ctx.latest_date();
    if d > latest {
        e.push(
            field,
            Rule::FutureDate,
            format!(
                "{} is in the future (latest allowed {})",
                format_date(d),
                format_date(latest)
            ),
        );
    }
}

/// An enumeration a report spells in kebab case; parsed leniently (any case, `_` or space
/// for `-`).
pub(crate) trait Choice: Sized + Copy + 'static {
    /// Every value.
    fn all() -> &'static [Self];
    /// The value's spelling.
    fn name(self) -> &'static str;

    /// Reads a value as a caseworker may write it.
    fn parse_lenient(s: &str) -> Result<Self, String> {
        let norm: String = s
            .trim()
            .chars()
            .map(|c| match c {
                '_' | ' ' => '-',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        Self::all()
            .iter()
            .copied()
            .find(|c| c.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::all().iter().map(|c| c.name()).collect();
                format!("{:?} is not one of: {}", shorten(s), names.join(", "))
            })
    }
}

/// A value for messages: at most 80 characters.
pub(crate) fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

type LeafResult<T> = Result<T, (Rule, String)>;

/// Reads one JSON object of a report, recording every problem with its path.
///
/// Accessors return `None` when the field is wrong (the problem is recorded), so a class
/// reads all its fields first and combines them with `?` last: every problem is reported.
pub(crate) struct Fields<'a> {
    path: String,
    map: &'a serde_json::Map<String, Value>,
    used: RefCell<Vec<&'static str>>,
}

impl<'a> Fields<'a> {
    /// Reads `value` at `path` as an object.
    pub(crate) fn new(path: String, value: &'a Value, e: &mut ValidationErrors) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self {
                path,
                map,
                used: RefCell::new(Vec::new()),
            }),
            other => {
                let field = if path.is_empty() {
                    "report".into()
                } else {
                    path
                };
                e.push(
                    field,
                    Rule::Type,
                    format!("must be a JSON object, found {}", json_kind(other)),
                );
                None
            }
        }
    }

    /// The path of `key` in this object.
    pub(crate) fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn get(&self, key: &'static str) -> Option<&'a Value> {
        self.used.borrow_mut().push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// `None`: wrong (recorded); `Some(None)`: absent and optional; `Some(Some(t))`: read.
    fn leaf<T>(
        &self,
        key: &'static str,
        required: bool,
        e: &mut ValidationErrors,
        parse: impl FnOnce(&'a Value) -> LeafResult<T>,
    ) -> Option<Option<T>> {
        match self.get(key) {
            None if required => {
                e.push(self.path(key), Rule::Required, "is required");
                None
            }
            None => Some(None),
            Some(v) => match parse(v) {
                Ok(t) => Some(Some(t)),
                Err((rule, msg)) => {
                    e.push(self.path(key), rule, msg);
                    None
                }
            },
        }
    }

    /// A string field parsed by `parse`; `required` says whether absence is a problem.
    pub(crate) fn parsed<T>(
        &self,
        key: &'static str,
        required: bool,
        e: &mut ValidationErrors,
        parse: impl FnOnce(&str) -> LeafResult<T>,
    ) -> Option<Option<T>> {
        self.leaf(key, required, e, |v| match v {
            Value::String(s) => parse(s),
            other => Err((
                Rule::Type,
                format!("must be a string, found {}", json_kind(other)),
            )),
        })
    }

    /// A required text.
    pub(crate) fn text(&self, key: &'static str, e: &mut ValidationErrors) -> Option<String> {
        self.parsed(key, true, e, |s| Ok(s.to_owned())).flatten()
    }

    /// An optional text.
    pub(crate) fn opt_text(
        &self,
        key: &'static str,
        e: &mut ValidationErrors,
    ) -> Option<Option<String>> {
        self.parsed(key, false, e, |s| Ok(s.to_owned()))
    }

    /// A `YYYY-MM-DD` date; `required` says whether absence is a problem.
    pub(crate) fn date_field(
        &self,
        key: &'static str,
        required: bool,
        e: &mut ValidationErrors,
    ) -> Option<Option<Date>> {
        self.parsed(key, required, e, |s| {
            parse_date(s).ok_or_else(|| {
                (
                    Rule::Date,
                    format!("{:?} is not a date: write YYYY-MM-DD", shorten(s)),
                )
            })
        })
    }

    /// A required date.
    pub(crate) fn date(&self, key: &'static str, e: &mut ValidationErrors) -> Option<Date> {
        self.date_field(key, true, e).flatten()
    }

    /// A required enumerated value.
    pub(crate) fn choice<T: Choice>(
        &self,
        key: &'static str,
        e: &mut ValidationErrors,
    ) -> Option<T> {
        self.opt_choice(key, true, e).flatten()
    }

    /// An enumerated value; `required` says whether absence is a problem.
    pub(crate) fn opt_choice<T: Choice>(
        &self,
        key: &'static str,
        required: bool,
        e: &mut ValidationErrors,
    ) -> Option<Option<T>> {
        self.parsed(key, required, e, |s| {
            T::parse_lenient(s).map_err(|m| (Rule::Choice, m))
        })
    }

    /// A required record id.
    pub(crate) fn record_id(
        &self,
        key: &'static str,
        e: &mut ValidationErrors,
    ) -> Option<RecordId> {
        self.parsed(key, true, e, |s| {
            RecordId::parse(s.trim()).map_err(|err| (Rule::Format, err.to_string()))
        })
        .flatten()
    }

    /// A required whole number within `range`.
    pub(crate) fn number(
        &self,
        key: &'static str,
        range: std::ops::RangeInclusive<u64>,
        e: &mut ValidationErrors,
    ) -> Option<u64> {
        self.leaf(key, true, e, |v| {
            let n = v.as_u64().ok_or_else(|| {
                (
                    Rule::Type,
                    format!("must be a whole number, found {}", json_kind(v)),
                )
            })?;
            if range.contains(&n) {
                Ok(n)
            } else {
                Err((
                    Rule::Choice,
                    format!("{n} is not within {}..={}", range.start(), range.end()),
                ))
            }
        })
        .flatten()
    }

    /// A required nested object.
    pub(crate) fn object(&self, key: &'static str, e: &mut ValidationErrors) -> Option<Fields<'a>> {
        match self.get(key) {
            None => {
                e.push(self.path(key), Rule::Required, "is required");
                None
            }
            Some(v) => Fields::new(self.path(key), v, e),
        }
    }

    /// A required array of at most `max` items, each with its path (`key[i]`).
    pub(crate) fn array(
        &self,
        key: &'static str,
        max: usize,
        e: &mut ValidationErrors,
    ) -> Option<Vec<(String, &'a Value)>> {
        let path = self.path(key);
        match self.get(key) {
            None => {
                e.push(path, Rule::Required, "is required");
                None
            }
            Some(Value::Array(items)) if items.len() > max => {
                e.push(
                    path,
                    Rule::Count,
                    format!("has {} items: the limit is {max}", items.len()),
                );
                None
            }
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{path}[{i}]"), v))
                    .collect(),
            ),
            Some(other) => {
                e.push(
                    path,
                    Rule::Type,
                    format!("must be an array, found {}", json_kind(other)),
                );
                None
            }
        }
    }

    /// Reports keys no accessor asked for, except comments (keys starting with `_`).
    pub(crate) fn finish(self, e: &mut ValidationErrors) {
        let used = self.used.borrow();
        for key in self.map.keys() {
            if key.starts_with('_') || used.contains(&key.as_str()) {
                continue;
            }
            let shown = if key.chars().any(|c| c.is_control()) || key.chars().count() > 64 {
                format!("{:?}", shorten(key))
            } else {
                key.clone()
            };
            e.push(
                self.path(&shown),
                Rule::UnknownField,
                "is not a field of this report (keys starting with _ are comments)",
            );
        }
    }
}

/// A caseworker's report, read from JSON and not yet a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// The record class.
    pub class: ClassName,
    /// Protective marking.
    pub marking: Marking,
    /// TLP 2.0 label.
    pub tlp: Tlp,
    /// Purpose, unless given on the command line.
    pub purpose: Option<String>,
    /// Legal basis of the disclosure.
    pub legal_basis: String,
    /// Justification, unless given on the command line.
    pub justification: Option<String>,
    /// Review date, unless the retention policy supplies it.
    pub review_by: Option<Date>,
    /// Erasure date, unless the retention policy supplies it.
    pub erase_by: Option<Date>,
    /// The class-specific content.
    pub body: Body,
}

/// What [`Draft::into_record`] needs besides the report: supplied by the sending node.
#[derive(Clone, Debug)]
pub struct DraftContext<'a> {
    /// The new record's id.
    pub id: RecordId,
    /// The sending node.
    pub from: NodeId,
    /// The receiving node.
    pub to: NodeId,
    /// The current time: becomes `created`.
    pub now: OffsetDateTime,
    /// `--purpose`: overrides the report's purpose.
    pub purpose: Option<String>,
    /// `--justification`: overrides the report's justification.
    pub justification: Option<String>,
    /// The federation's pseudonym key.
    pub pseudonym_key: &'a PseudonymKey,
    /// The subject of the record referred to, for classes whose body names no subject
    /// (follow-up-request, erasure-notice).
    pub subject_ref: Option<SubjectRef>,
    /// Review date from the retention policy, when the report gives none.
    pub default_review_by: Option<Date>,
    /// Erasure date from the retention policy, when the report gives none.
    pub default_erase_by: Option<Date>,
    /// How far a date may lie in the future because clocks differ.
    pub clock_skew: Duration,
}

impl Draft {
    /// Reads a report of class `class` (as given by `--class`) from JSON bytes.
    pub fn parse_json(class: &str, bytes: &[u8]) -> Result<Draft, ValidationErrors> {
        let mut e = ValidationErrors::new();
        if bytes.len() > MAX_REPORT_BYTES {
            e.push(
                "report",
                Rule::Size,
                format!("is {} bytes: the limit is {MAX_REPORT_BYTES}", bytes.len()),
            );
            return Err(e);
        }
        let class = match ClassName::parse(class) {
            Ok(c) => Some(c),
            Err(msg) => {
                e.push("class", Rule::Choice, msg);
                None
            }
        };
        // Editors on Windows may start the file with a byte-order mark.
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        // A key given twice would be read as its last value by serde_json, while a person
        // reading the file may see the first: refuse the ambiguity.
        let value: Value = match serde_json::from_slice::<NoDuplicateKeys>(bytes) {
            Ok(NoDuplicateKeys(v)) => v,
            Err(err) => {
                e.push(
                    "report",
                    Rule::Syntax,
                    format!(
                        "is not valid JSON at line {} column {}: {}",
                        err.line(),
                        err.column(),
                        json_error_text(&err)
                    ),
                );
                return Err(e);
            }
        };
        let Some(f) = Fields::new(String::new(), &value, &mut e) else {
            return Err(e);
        };
        let class_in_file = f.parsed("class", false, &mut e, |s| {
            ClassName::parse(s).map_err(|m| (Rule::Choice, m))
        });
        if let (Some(c), Some(Some(in_file))) = (class, class_in_file) {
            if c != in_file {
                e.push(
                    "class",
                    Rule::Class,
                    format!("the report says {in_file} but {c} was requested"),
                );
            }
        }
        let marking = f
            .parsed("marking", true, &mut e, |s| {
                Marking::parse_draft(s).map_err(|err| match err {
                    MarkingError::Classified(_) => (Rule::Classified, err.to_string()),
                    _ => (Rule::Marking, err.to_string()),
                })
            })
            .flatten();
        let tlp = f
            .parsed("tlp", true, &mut e, |s| {
                Tlp::parse_draft(s).map_err(|err: TlpError| (Rule::Tlp, err.to_string()))
            })
            .flatten();
        let purpose = f.opt_text("purpose", &mut e);
        let legal_basis = f.text("legal_basis", &mut e);
        let justification = f.opt_text("justification", &mut e);
        let review_by = f.date_field("review_by", false, &mut e);
        let erase_by = f.date_field("erase_by", false, &mut e);
        let body = match (class, f.object("body", &mut e)) {
            (Some(c), Some(b)) => Body::from_json(c, b, &mut e),
            _ => None,
        };
        f.finish(&mut e);
        let draft = (|| {
            Some(Draft {
                class: class?,
                marking: marking?,
                tlp: tlp?,
                purpose: purpose?,
                legal_basis: legal_basis?,
                justification: justification?,
                review_by: review_by?,
                erase_by: erase_by?,
                body: body?,
            })
        })();
        match draft {
            Some(d) if e.is_empty() => Ok(d),
            _ => {
                if e.is_empty() {
                    // Unreachable by construction (every None records a problem), but a
                    // draft must never pass without a reason given.
                    e.push("report", Rule::Required, "is incomplete");
                }
                Err(e)
            }
        }
    }

    /// Completes the report into a record and checks every rule.
    pub fn into_record(self, ctx: &DraftContext<'_>) -> Result<Record, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let purpose = ctx.purpose.clone().or(self.purpose);
        if purpose.is_none() {
            e.push(
                "purpose",
                Rule::Required,
                "is required: give it in the report or with --purpose",
            );
        }
        let justification = ctx.justification.clone().or(self.justification);
        if justification.is_none() {
            e.push(
                "justification",
                Rule::Required,
                "is required: give it in the report or with --justification",
            );
        }
        let review_by = self.review_by.or(ctx.default_review_by);
        if review_by.is_none() {
            e.push(
                "review_by",
                Rule::Required,
                "is required: the retention policy gives no default",
            );
        }
        let erase_by = self.erase_by.or(ctx.default_erase_by);
        if erase_by.is_none() {
            e.push(
                "erase_by",
                Rule::Required,
                "is required: the retention policy gives no default",
            );
        }
        let subject_ref = match self.body.subject_identity() {
            Some(id) => Some(ctx.pseudonym_key.subject_ref(&id)),
            None => ctx.subject_ref,
        };
        if subject_ref.is_none() {
            e.push(
                "subject_ref",
                Rule::Required,
                format!(
                    "is required: a {} names no subject, so the caller must give the subject of the record it refers to",
                    self.class
                ),
            );
        }
        let created = utc(ctx.now);
        match (purpose, justification, review_by, erase_by, subject_ref) {
            (
                Some(purpose),
                Some(justification),
                Some(review_by),
                Some(erase_by),
                Some(subject_ref),
            ) => {
                let record = Record {
                    v: RECORD_VERSION,
                    id: ctx.id,
                    class: self.class,
                    from: ctx.from.clone(),
                    to: ctx.to.clone(),
                    created,
                    marking: self.marking,
                    tlp: self.tlp,
                    purpose,
                    legal_basis: self.legal_basis,
                    justification,
                    subject_ref,
                    review_by,
                    erase_by,
                    body: self.body,
                };
                record.check(ctx.now, ctx.clock_skew, None, &mut e);
                e.into_result().map(|()| record)
            }
            _ => {
                // Still report what is wrong in the body, so the caseworker fixes all at once.
                let cctx = CheckContext::new(created, ctx.now, ctx.clock_skew);
                self.body.validate(&cctx, "body", &mut e);
                Err(e)
            }
        }
    }
}

/// Any JSON value, read in one pass, failing on an object with a repeated key.
struct NoDuplicateKeys(Value);

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeysVisitor)
    }
}

struct NoDuplicateKeysVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeysVisitor {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // JSON has no NaN or infinity, so every number read is finite.
        Ok(NoDuplicateKeys(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys(Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(NoDuplicateKeys(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(NoDuplicateKeys(Value::Array(items)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key {:?}",
                    shorten(&key)
                )));
            }
            let NoDuplicateKeys(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(NoDuplicateKeys(Value::Object(object)))
    }
}

/// serde_json's message without its " at line x column y" suffix (given separately).
fn json_error_text(err: &serde_json::Error) -> String {
    let s = err.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

impl Record {
    /// Checks every rule, as a receiver does on a decoded record: `now` is the receiver's
    /// clock and `skew` the allowance for clocks that differ.
    pub fn validate(&self, now: OffsetDateTime, skew: Duration) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        self.check(now, skew, None, &mut e);
        e.into_result()
    }

    /// [`Record::validate`] for a record decoded from `cbor_len` bytes: the size rule is
    /// checked on those bytes instead of on the record encoded again.
    pub fn validate_decoded(
        &self,
        now: OffsetDateTime,
        skew: Duration,
        cbor_len: usize,
    ) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        self.check(now, skew, Some(cbor_len), &mut e);
        e.into_result()
    }

    /// Checks that `subject_ref` is the pseudonym of the subject the body names, for a
    /// receiver holding the federation key: a wrong reference would hide the record from
    /// searches by subject. Classes that name no subject pass.
    pub fn validate_subject_ref(&self, key: &PseudonymKey) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if let Some(id) = self.body.subject_identity() {
            if key.subject_ref(&id) != self.subject_ref {
                e.push(
                    "subject_ref",
                    Rule::SubjectRef,
                    "is not the pseudonym of the subject the body names",
                );
            }
        }
        e.into_result()
    }

    /// Every rule; `cbor_len`: the size of the CBOR the record was decoded from, if it was.
    fn check(
        &self,
        now: OffsetDateTime,
        skew: Duration,
        cbor_len: Option<usize>,
        e: &mut ValidationErrors,
    ) {
        let ctx = CheckContext::new(self.created, now, skew);
        if self.v != RECORD_VERSION {
            e.push(
                "v",
                Rule::Version,
                format!(
                    "{} is not a known version: this node reads version {RECORD_VERSION}",
                    self.v
                ),
            );
        }
        let body_class = self.body.class_name();
        if self.class != body_class {
            e.push(
                "class",
                Rule::Class,
                format!("is {} but the body is a {body_class}", self.class),
            );
        }
        if self.from == self.to {
            e.push(
                "to",
                Rule::Node,
                format!(
                    "is the sender {}: a node does not send to itself",
                    self.from
                ),
            );
        }
        if self.created > ctx.latest {
            e.push(
                "created",
                Rule::FutureDate,
                format!("{} is in the future", utc(self.created)),
            );
        }
        if ctx.report_date < EARLIEST_DATE {
            e.push(
                "created",
                Rule::Date,
                format!(
                    "{} is before {}",
                    format_date(ctx.report_date),
                    format_date(EARLIEST_DATE)
                ),
            );
        }
        check_text(
            e,
            "purpose",
            &self.purpose,
            MAX_PURPOSE_CHARS,
            TextKind::Prose,
        );
        check_text(
            e,
            "legal_basis",
            &self.legal_basis,
            MAX_LEGAL_BASIS_CHARS,
            TextKind::Prose,
        );
        check_text(
            e,
            "justification",
            &self.justification,
            MAX_JUSTIFICATION_CHARS,
            TextKind::Prose,
        );
        // Storage limitation (GDPR art. 5(1)(e), LED art. 5): a record is reviewed before
        // it may be erased, and both after it was made.
        if self.review_by <= ctx.report_date {
            e.push(
                "review_by",
                Rule::DateOrder,
                format!(
                    "{} is not after the record date {}",
                    format_date(self.review_by),
                    format_date(ctx.report_date)
                ),
            );
        }
        if self.erase_by < self.review_by {
            e.push(
                "erase_by",
                Rule::DateOrder,
                format!(
                    "{} is before review_by {}",
                    format_date(self.erase_by),
                    format_date(self.review_by)
                ),
            );
        }
        self.body.validate(&ctx, "body", e);
        let size = cbor_len.unwrap_or_else(|| self.cbor_len());
        if size > MAX_RECORD_BYTES {
            e.push(
                "record",
                Rule::Size,
                format!("is {size} bytes of CBOR: the limit is {MAX_RECORD_BYTES}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_pass(json: &str) -> Result<Value, String> {
        serde_json::from_str::<NoDuplicateKeys>(json)
            .map(|NoDuplicateKeys(v)| v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_one_pass_reader_gives_serde_jsons_value() {
        let json = r#"{"a": [1, -2, 3.5, 1e300, "x\u00e9", true, null, {}], "b": {"c": {"d": []}},
            "n": 18446744073709551615, "s": "line\nbreak"}"#;
        let expected: Value = serde_json::from_str(json).unwrap();
        assert_eq!(one_pass(json).unwrap(), expected);
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        for json in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"body": {"statements": [{"kind": "fact", "kind": "assessment"}]}}"#,
        ] {
            let err = one_pass(json).unwrap_err();
            assert!(err.contains("duplicate key"), "{json}: {err}");
        }
        assert!(one_pass(r#"[{"a": 1}, {"a": 2}]"#).is_ok());
    }

    proptest::proptest! {
        /// Any JSON without a repeated key reads as serde_json's own `Value` reads it (the
        /// reader this one replaced; its floats are not always exact, and must agree).
        #[test]
        fn any_value_reads_as_serde_json_reads_it(v in json_value()) {
            let text = serde_json::to_string(&v).unwrap();
            let expected: Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(one_pass(&text).unwrap(), expected);
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
