//! Record classes: one module per class.
//!
//! Adding a class means: one module here implementing [`RecordClass`] (the rules) and the
//! crate's JSON reader (`FromDraft`), one variant in [`ClassName`] and [`Body`], and one
//! line in each `match` of this file, plus its policy line in the node configuration.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, Month};

use crate::pseudonym::SubjectIdentity;
use crate::record::RecordId;
use crate::validate::{
    check_opt_text, check_text, CheckContext, Fields, Rule, TextKind, ValidationErrors,
    MAX_LINE_CHARS, MAX_NAME_CHARS,
};

/// Declares a kebab-case enumeration used in reports and records.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value's spelling in reports and records.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::validate::Choice for $name {
            fn all() -> &'static [Self] {
                Self::ALL
            }
            fn name(self) -> &'static str {
                self.as_str()
            }
        }
    };
}

pub mod erasure_notice;
pub mod follow_up_request;
pub mod minor_risk_report;
pub mod protection_file;
pub mod rectification;

pub use erasure_notice::{ErasureGround, ErasureNotice};
pub use follow_up_request::FollowUpRequest;
pub use minor_risk_report::{
    MinorRiskReport, RiskCategory, RiskLevel, Statement, StatementKind, Subject,
};
pub use protection_file::{
    ProtectedPerson, ProtectedRole, ProtectionFile, ProtectionMeasure, ThreatSource,
};
pub use rectification::Rectification;

choice! {
    /// The name of a record class, as it appears in records, reports and policy.
    #[non_exhaustive]
    pub enum ClassName {
        /// [`MinorRiskReport`].
        MinorRiskReport = "minor-risk-report",
        /// [`ProtectionFile`].
        ProtectionFile = "protection-file",
        /// [`FollowUpRequest`].
        FollowUpRequest = "follow-up-request",
        /// [`Rectification`].
        Rectification = "rectification",
        /// [`ErasureNotice`].
        ErasureNotice = "erasure-notice",
    }
}

impl ClassName {
    /// Reads a class name exactly as spelt in [`ClassName::as_str`].
    pub fn parse(s: &str) -> Result<ClassName, String> {
        ClassName::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ClassName::ALL.iter().map(|c| c.as_str()).collect();
                format!(
                    "{:?} is not a record class: use one of {}",
                    crate::validate::shorten(s),
                    names.join(", ")
                )
            })
    }
}

/// What every record class provides.
pub trait RecordClass {
    /// The class name.
    const NAME: ClassName;

    /// Checks the class's rules, recording each problem under `path` (e.g. `body`).
    fn validate(&self, ctx: &CheckContext, path: &str, e: &mut ValidationErrors);

    /// Who the record is about, for the subject pseudonym; `None` for classes that refer
    /// to another record instead.
    fn subject_identity(&self) -> Option<SubjectIdentity<'_>>;
}

/// Reads a class body from a report's JSON (shape only; rules come from
/// [`RecordClass::validate`]).
pub(crate) trait FromDraft: Sized {
    fn from_draft(f: Fields<'_>, e: &mut ValidationErrors) -> Option<Self>;
}

/// A record's class-specific content, tagged in CBOR by the class name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Body {
    /// A minor at risk of radicalisation.
    #[serde(rename = "minor-risk-report")]
    MinorRiskReport(MinorRiskReport),
    /// A protection file for an official under threat.
    #[serde(rename = "protection-file")]
    ProtectionFile(ProtectionFile),
    /// A question about an earlier record.
    #[serde(rename = "follow-up-request")]
    FollowUpRequest(FollowUpRequest),
    /// A correction replacing an earlier record.
    #[serde(rename = "rectification")]
    Rectification(Rectification),
    /// Notice that an earlier record was erased.
    #[serde(rename = "erasure-notice")]
    ErasureNotice(ErasureNotice),
}

impl Body {
    /// The class of this body.
    pub fn class_name(&self) -> ClassName {
        match self {
            Body::MinorRiskReport(_) => MinorRiskReport::NAME,
            Body::ProtectionFile(_) => ProtectionFile::NAME,
            Body::FollowUpRequest(_) => FollowUpRequest::NAME,
            Body::Rectification(_) => Rectification::NAME,
            Body::ErasureNotice(_) => ErasureNotice::NAME,
        }
    }

    /// Checks the class's rules.
    pub fn validate(&self, ctx: &CheckContext, path: &str, e: &mut ValidationErrors) {
        match self {
            Body::MinorRiskReport(b) => b.validate(ctx, path, e),
            Body::ProtectionFile(b) => b.validate(ctx, path, e),
            Body::FollowUpRequest(b) => b.validate(ctx, path, e),
            Body::Rectification(b) => b.validate(ctx, path, e),
            Body::ErasureNotice(b) => b.validate(ctx, path, e),
        }
    }

    /// Who the record is about, if the body names a subject.
    pub fn subject_identity(&self) -> Option<SubjectIdentity<'_>> {
        match self {
            Body::MinorRiskReport(b) => b.subject_identity(),
            Body::ProtectionFile(b) => b.subject_identity(),
            Body::FollowUpRequest(b) => b.subject_identity(),
            Body::Rectification(b) => b.subject_identity(),
            Body::ErasureNotice(b) => b.subject_identity(),
        }
    }

    /// The earlier record this body is about, for classes that refer to one
    /// (follow-up-request, rectification, erasure-notice).
    ///
    /// Such a record takes its `subject_ref` from the record referred to, which the
    /// sending node must hold (sent to or received from the same peer).
    pub fn refers_to(&self) -> Option<RecordId> {
        match self {
            Body::FollowUpRequest(b) => Some(b.refers_to),
            Body::Rectification(b) => Some(b.supersedes),
            Body::ErasureNotice(b) => Some(b.record),
            Body::MinorRiskReport(_) | Body::ProtectionFile(_) => None,
        }
    }

    /// Reads a body of class `class` from a report's JSON.
    pub(crate) fn from_json(
        class: ClassName,
        f: Fields<'_>,
        e: &mut ValidationErrors,
    ) -> Option<Body> {
        match class {
            ClassName::MinorRiskReport => {
                MinorRiskReport::from_draft(f, e).map(Body::MinorRiskReport)
            }
            ClassName::ProtectionFile => ProtectionFile::from_draft(f, e).map(Body::ProtectionFile),
            ClassName::FollowUpRequest => {
                FollowUpRequest::from_draft(f, e).map(Body::FollowUpRequest)
            }
            ClassName::Rectification => Rectification::from_draft(f, e).map(Body::Rectification),
            ClassName::ErasureNotice => ErasureNotice::from_draft(f, e).map(Body::ErasureNotice),
        }
    }
}

/// A Belgian national register number (rijksregisternummer / numéro de registre
/// national), or a BIS number: 11 digits `YYMMDD SSS CC`.
///
/// The check number `CC` is `97 - (N mod 97)` where `N` is the first nine digits for
/// people born before 2000, and `2` followed by those nine digits for people born from
/// 2000 on (Royal Decree of 8 February 1991 as amended; the "2" rule applies since
/// 2000). BIS numbers add 20 or 40 to the month and use the same check.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NationalRegisterNumber(String);

/// Why a text is not a national register number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NrnError {
    /// Not 11 digits (after removing spaces, dots and dashes).
    #[error("national register number must have 11 digits (spaces, dots and dashes allowed)")]
    Format,
    /// The check number does not match, under either century rule.
    #[error("national register number has a wrong check number (mod 97)")]
    Checksum,
}

impl NationalRegisterNumber {
    /// Reads a number written with or without the usual separators (`85.07.30-033.28`).
    pub fn parse(s: &str) -> Result<Self, NrnError> {
        if s.chars().count() > 20 {
            return Err(NrnError::Format);
        }
        let digits: String = s
            .chars()
            .filter(|c| !matches!(c, ' ' | '.' | '-'))
            .collect();
        if digits.len() != 11 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NrnError::Format);
        }
        let n = Self(digits);
        if n.born_before_2000().is_none() {
            return Err(NrnError::Checksum);
        }
        Ok(n)
    }

    /// The 11 digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// `Some(true)` if the check number follows the pre-2000 rule, `Some(false)` for the
    /// 2000+ rule, `None` if neither matches.
    fn born_before_2000(&self) -> Option<bool> {
        let (body, check) = self.0.split_at(9);
        let body: u64 = body.parse().ok()?;
        let check: u64 = check.parse().ok()?;
        if 97 - body % 97 == check {
            Some(true)
        } else if 97 - (2_000_000_000 + body) % 97 == check {
            Some(false)
        } else {
            None
        }
    }

    /// The date of birth the number encodes, when it encodes a full one.
    pub fn birth_date(&self) -> Option<Date> {
        let before_2000 = self.born_before_2000()?;
        let num = |r: std::ops::Range<usize>| -> Option<u8> { self.0.get(r)?.parse().ok() };
        let yy = i32::from(num(0..2)?);
        let mut mm = num(2..4)?;
        // BIS numbers: +20 when the sex was unknown at registration, +40 when known.
        if mm > 40 {
            mm -= 40;
        } else if mm > 20 {
            mm -= 20;
        }
        let year = if before_2000 { 1900 + yy } else { 2000 + yy };
        let month = Month::try_from(mm).ok()?;
        Date::from_calendar_date(year, month, num(4..6)?).ok()
    }
}

impl TryFrom<String> for NationalRegisterNumber {
    type Error = NrnError;
    fn try_from(s: String) -> Result<Self, NrnError> {
        Self::parse(&s)
    }
}

impl From<NationalRegisterNumber> for String {
    fn from(n: NationalRegisterNumber) -> String {
        n.0
    }
}

impl fmt::Display for NationalRegisterNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads an optional national register number field.
pub(crate) fn nrn_field(
    f: &Fields<'_>,
    key: &'static str,
    e: &mut ValidationErrors,
) -> Option<Option<NationalRegisterNumber>> {
    f.parsed(key, false, e, |s| {
        NationalRegisterNumber::parse(s).map_err(|err| {
            let rule = match err {
                NrnError::Checksum => Rule::NrnChecksum,
                _ => Rule::NrnFormat,
            };
            (rule, err.to_string())
        })
    })
}

/// Checks that a national register number agrees with the date of birth given with it.
pub(crate) fn check_nrn_birth(
    e: &mut ValidationErrors,
    path: &str,
    nrn: &NationalRegisterNumber,
    dob: Option<Date>,
) {
    if let (Some(encoded), Some(dob)) = (nrn.birth_date(), dob) {
        if encoded != dob {
            e.push(
                path,
                Rule::NrnDateOfBirth,
                format!(
                    "encodes date of birth {} but date_of_birth is {}",
                    crate::record::format_date(encoded),
                    crate::record::format_date(dob)
                ),
            );
        }
    }
}

/// Checks given and family names.
pub(crate) fn check_names(e: &mut ValidationErrors, path: &str, given: &str, family: &str) {
    check_text(
        e,
        &join(path, "given_names"),
        given,
        MAX_NAME_CHARS,
        TextKind::Line,
    );
    check_text(
        e,
        &join(path, "family_name"),
        family,
        MAX_NAME_CHARS,
        TextKind::Line,
    );
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The caseworker who wrote a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Author {
    /// Full name.
    pub name: String,
    /// Function, e.g. `consulent`.
    pub role: String,
    /// Work e-mail address, for questions about the record.
    pub email: Option<String>,
}

impl Author {
    pub(crate) fn from_draft(f: Fields<'_>, e: &mut ValidationErrors) -> Option<Self> {
        let name = f.text("name", e);
        let role = f.text("role", e);
        let email = f.opt_text("email", e);
        f.finish(e);
        Some(Author {
            name: name?,
            role: role?,
            email: email?,
        })
    }

    pub(crate) fn validate(&self, path: &str, e: &mut ValidationErrors) {
        check_text(
            e,
            &join(path, "name"),
            &self.name,
            MAX_NAME_CHARS,
            TextKind::Line,
        );
        check_text(
            e,
            &join(path, "role"),
            &self.role,
            MAX_LINE_CHARS,
            TextKind::Line,
        );
        if let Some(email) = &self.email {
            let field = join(path, "email");
            check_opt_text(e, &field, email, MAX_LINE_CHARS, TextKind::Line);
            let plausible = email
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
                && !email.chars().any(char::is_whitespace);
            if !plausible {
                e.push(
                    field,
                    Rule::Format,
                    format!(
                        "{:?} is not an e-mail address",
                        crate::validate::shorten(email)
                    ),
                );
            }
        }
    }
}
