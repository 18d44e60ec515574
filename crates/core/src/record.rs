//! The record: the CBOR payload of a COSE_Sign1 envelope (DESIGN.md "Records").
//!
//! A [`Record`] is built from a caseworker's [`Draft`](crate::validate::Draft) by
//! [`Draft::into_record`](crate::validate::Draft::into_record), encoded with
//! [`Record::to_cbor`], sealed by `cose`, and on the receiving side decoded with
//! [`Record::from_cbor`] and checked again with [`Record::validate`].

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month, OffsetDateTime, UtcOffset};
use uuid::Uuid;

pub use crate::class::{Body, ClassName};
use crate::identity::NodeId;
pub use crate::pseudonym::SubjectRef;

/// The payload format version this crate writes and reads.
pub const RECORD_VERSION: u8 = 1;

/// Largest CBOR payload [`Record::from_cbor`] decodes, in bytes.
///
/// A report is at most [`MAX_REPORT_BYTES`](crate::validate::MAX_REPORT_BYTES) of JSON;
/// its CBOR is no larger, and the envelope fields (ids, dates, purpose, justification)
/// fit in the 32 KiB of headroom.
pub const MAX_RECORD_BYTES: usize = 256 * 1024 + 32 * 1024;

/// CBOR nesting depth [`Record::from_cbor`] accepts; a record nests a few levels only.
const MAX_CBOR_DEPTH: usize = 32;

/// A record's payload: the envelope header fields and the class-specific body.
///
/// Field order is the CBOR map order, so the encoding of a record is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Payload format version, [`RECORD_VERSION`].
    pub v: u8,
    /// The record's id, a UUIDv7 assigned by the sending node.
    pub id: RecordId,
    /// The record class; always equal to the class of `body`.
    pub class: ClassName,
    /// The sending node.
    pub from: NodeId,
    /// The receiving node.
    pub to: NodeId,
    /// When the sending node accepted the record (RFC 3339, written in UTC).
    #[serde(with = "timestamp")]
    pub created: OffsetDateTime,
    /// Protective marking: never a classification.
    pub marking: Marking,
    /// Traffic Light Protocol 2.0 label: how far the receiver may share it.
    pub tlp: Tlp,
    /// Why the data is processed (GDPR art. 5(1)(b), LED art. 4(1)(b): purpose limitation).
    pub purpose: String,
    /// The legal provision or agreement allowing the disclosure.
    pub legal_basis: String,
    /// Why this disclosure is necessary (journalled with it).
    pub justification: String,
    /// Keyed pseudonym of the record's subject, see [`crate::pseudonym`].
    pub subject_ref: SubjectRef,
    /// The date by which the record must be reviewed for continued need.
    #[serde(with = "iso_date")]
    pub review_by: Date,
    /// The date by which the record must be erased at the latest.
    #[serde(with = "iso_date")]
    pub erase_by: Date,
    /// The class-specific content.
    pub body: Body,
}

/// Why bytes could not be decoded as a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is larger than [`MAX_RECORD_BYTES`].
    #[error("record payload is {0} bytes: the limit is {MAX_RECORD_BYTES}")]
    TooLarge(usize),
    /// The bytes are not a CBOR record of this format.
    #[error("record payload is not a valid record: {0}")]
    Cbor(String),
    /// Bytes follow the record.
    #[error("record payload has {0} trailing bytes after the record")]
    TrailingBytes(usize),
}

impl Record {
    /// Encodes the record as CBOR, fields in declaration order.
    pub fn to_cbor(&self) -> Vec<u8> {
        // Reports are ~2 KiB: one allocation for most.
        let mut out = Vec::with_capacity(4096);
        // Every field serialises infallibly (dates and timestamps are formatted by hand
        // below) and writing to a Vec cannot fail, so there is no error to return.
        if let Err(e) = ciborium::into_writer(self, &mut out) {
            unreachable!("serialising a record to memory failed: {e}");
        }
        out
    }

    /// The length of [`Record::to_cbor`], counted without keeping the bytes.
    pub fn cbor_len(&self) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        if let Err(e) = ciborium::into_writer(self, &mut count) {
            unreachable!("serialising a record to a counter failed: {e}");
        }
        count.0
    }

    /// Decodes a record from CBOR, refusing oversized input, deep nesting and trailing
    /// bytes. The result still has to pass [`Record::validate`].
    pub fn from_cbor(bytes: &[u8]) -> Result<Record, DecodeError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let mut rest = bytes;
        let record: Record =
            ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_CBOR_DEPTH)
                .map_err(|e| DecodeError::Cbor(cbor_error(e)))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        Ok(record)
    }
}

fn cbor_error<E: fmt::Debug>(e: ciborium::de::Error<E>) -> String {
    use ciborium::de::Error;
    match e {
        Error::Io(e) => format!("truncated or unreadable input ({e:?})"),
        Error::Syntax(at) => format!("malformed CBOR at byte {at}"),
        Error::Semantic(at, msg) => match at {
            Some(at) => format!("{} at byte {at}", msg.to_lowercase()),
            None => msg.to_lowercase(),
        },
        Error::RecursionLimitExceeded => format!("nested deeper than {MAX_CBOR_DEPTH} levels"),
    }
}

/// A record id: a UUID of version 7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(Uuid);

/// Why a text or UUID is not a record id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordIdError {
    /// The text is not a UUID.
    #[error("record id {0:?} is not a UUID")]
    NotUuid(String),
    /// The UUID is not of version 7.
    #[error("record id {0} is not a UUIDv7")]
    NotV7(Uuid),
}

impl RecordId {
    /// Makes a UUIDv7 from the time of creation and 10 random bytes (RFC 9562 §5.7).
    ///
    /// The caller supplies both: this crate reads no clock and draws no randomness. A time
    /// before 1970 is written as the epoch.
    pub fn new_v7(now: OffsetDateTime, random: [u8; 10]) -> Self {
        let millis = now.unix_timestamp_nanos() / 1_000_000;
        let millis = u64::try_from(millis).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// Accepts a UUID if it is of version 7.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, RecordIdError> {
        if uuid.get_version_num() == 7 && uuid.get_variant() == uuid::Variant::RFC4122 {
            Ok(Self(uuid))
        } else {
            Err(RecordIdError::NotV7(uuid))
        }
    }

    /// Parses the hyphenated text form of a UUIDv7.
    pub fn parse(s: &str) -> Result<Self, RecordIdError> {
        let uuid =
            Uuid::try_parse(s).map_err(|_| RecordIdError::NotUuid(s.chars().take(80).collect()))?;
        Self::from_uuid(uuid)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for RecordId {
    type Err = RecordIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for RecordId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.hyphenated())
    }
}

impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(D::Error::custom)
    }
}

/// The protective marking of a record.
///
/// Pons carries unclassified information only: a classified marking is refused when a
/// report is read (see [`Marking::parse_draft`]) and cannot be represented here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Marking {
    /// Unclassified but sensitive: personal data, restricted to those who need it.
    #[serde(rename = "sensitive-unclassified")]
    SensitiveUnclassified,
    /// Unclassified.
    #[serde(rename = "unclassified")]
    Unclassified,
}

/// Why a caseworker's marking was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MarkingError {
    /// The marking is a classification (Belgian law of 11 December 1998, or its EU/NATO
    /// equivalents), in any of French, Dutch or English.
    #[error("{0:?} is a classified marking: classified information must not transit Pons")]
    Classified(String),
    /// The marking is none of those Pons knows.
    #[error("{0:?} is not a marking Pons carries: use sensitive-unclassified or unclassified")]
    Unknown(String),
}

/// Words of classified markings after [`fold_marking`]: Belgian levels in French and
/// Dutch (law of 11 December 1998 on classification, art. 4), the English equivalents
/// used by the EU and NATO, and the generic word.
const CLASSIFIED_WORDS: &[&str] = &[
    "restreint",
    "restreinte",
    "beperkt",
    "restricted",
    "confidentiel",
    "confidentielle",
    "vertrouwelijk",
    "confidential",
    "secret",
    "geheim",
    "classified",
    "classifie",
    "gerubriceerd",
];

/// Classified markings written without separators.
const CLASSIFIED_JOINED: &[&str] = &["tressecret", "topsecret", "zeergeheim", "secretdefense"];

impl Marking {
    /// The marking's spelling in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Marking::SensitiveUnclassified => "sensitive-unclassified",
            Marking::Unclassified => "unclassified",
        }
    }

    /// Reads a marking as a caseworker may write it: any case, accents, spaces, `_` or `-`.
    ///
    /// Every spelling of a classified marking is refused with
    /// [`MarkingError::Classified`], so that the caseworker learns why, not just that the
    /// value is unknown.
    pub fn parse_draft(s: &str) -> Result<Marking, MarkingError> {
        let shown: String = s.chars().take(80).collect();
        let words = fold_marking(s);
        let joined = words.concat();
        match joined.as_str() {
            "sensitiveunclassified" => return Ok(Marking::SensitiveUnclassified),
            "unclassified" | "nonclassifie" | "nietgerubriceerd" => {
                return Ok(Marking::Unclassified)
            }
            _ => {}
        }
        let classified = words.iter().any(|w| CLASSIFIED_WORDS.contains(&w.as_str()))
            || CLASSIFIED_JOINED.iter().any(|j| joined.contains(j));
        if classified {
            Err(MarkingError::Classified(shown))
        } else {
            Err(MarkingError::Unknown(shown))
        }
    }
}

/// Lower-cases, strips accents and splits on anything that is not a letter or digit.
fn fold_marking(s: &str) -> Vec<String> {
    crate::pseudonym::fold(s)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

impl fmt::Display for Marking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Traffic Light Protocol label, version 2.0 (FIRST, August 2022).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Tlp {
    /// `TLP:CLEAR`: no limit on disclosure.
    Clear,
    /// `TLP:GREEN`: the recipient's community.
    Green,
    /// `TLP:AMBER`: the recipient's organisation and its clients, need to know.
    Amber,
    /// `TLP:AMBER+STRICT`: the recipient's organisation only.
    AmberStrict,
    /// `TLP:RED`: the named recipients only.
    Red,
}

/// Why a TLP label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlpError {
    /// A TLP 1.0 label.
    #[error("{0:?} is a TLP 1.0 label: TLP 2.0 renamed WHITE to CLEAR")]
    White(String),
    /// Not a TLP label.
    #[error("{0:?} is not a TLP 2.0 label: use TLP:CLEAR, TLP:GREEN, TLP:AMBER, TLP:AMBER+STRICT or TLP:RED")]
    Unknown(String),
}

impl Tlp {
    /// Every label, from least to most restrictive.
    pub const ALL: [Tlp; 5] = [
        Tlp::Clear,
        Tlp::Green,
        Tlp::Amber,
        Tlp::AmberStrict,
        Tlp::Red,
    ];

    /// The canonical label, e.g. `TLP:AMBER+STRICT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tlp::Clear => "TLP:CLEAR",
            Tlp::Green => "TLP:GREEN",
            Tlp::Amber => "TLP:AMBER",
            Tlp::AmberStrict => "TLP:AMBER+STRICT",
            Tlp::Red => "TLP:RED",
        }
    }

    /// Reads a label as a caseworker may write it: any case, with or without `TLP:`.
    pub fn parse_draft(s: &str) -> Result<Tlp, TlpError> {
        let upper = s.trim().to_uppercase();
        let bare = upper.strip_prefix("TLP:").unwrap_or(&upper).trim();
        let shown = || s.chars().take(80).collect::<String>();
        match bare {
            "CLEAR" => Ok(Tlp::Clear),
            "GREEN" => Ok(Tlp::Green),
            "AMBER" => Ok(Tlp::Amber),
            "AMBER+STRICT" => Ok(Tlp::AmberStrict),
            "RED" => Ok(Tlp::Red),
            "WHITE" => Err(TlpError::White(shown())),
            _ => Err(TlpError::Unknown(shown())),
        }
    }

    /// Reads the canonical label only, as records carry it.
    pub fn parse_canonical(s: &str) -> Option<Tlp> {
        Tlp::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for Tlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tlp {
    type Err = TlpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_draft(s)
    }
}

impl Serialize for Tlp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Tlp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Tlp::parse_canonical(&s)
            .ok_or_else(|| D::Error::custom(format!("{s:?} is not a canonical TLP 2.0 label")))
    }
}

/// Parses a calendar date written `YYYY-MM-DD` (ISO 8601 extended, four-digit year).
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Serde for dates as `YYYY-MM-DD` text; formatting cannot fail.
pub(crate) mod iso_date {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_date(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        parse_date(&s).ok_or_else(|| D::Error::custom(format!("{s:?} is not a YYYY-MM-DD date")))
    }

    /// The same for optional dates.
    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&format_date(*d)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Date>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => parse_date(&s)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom(format!("{s:?} is not a YYYY-MM-DD date"))),
            }
        }
    }
}

/// Serde for timestamps as RFC 3339 text in UTC, formatted by hand so that it cannot fail.
mod timestamp {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    pub(super) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        OffsetDateTime::parse(&s, &Rfc3339)
            .map_err(|_| D::Error::custom(format!("{s:?} is not an RFC 3339 timestamp")))
    }

    fn format(t: OffsetDateTime) -> String {
        // A timestamp so close to the end of the range that UTC would overflow keeps its
        // offset; validation refuses such dates anyway.
        let t = t.checked_to_offset(UtcOffset::UTC).unwrap_or(t);
        let mut out = format!(
            "{}T{:02}:{:02}:{:02}",
            format_date(t.date()),
            t.hour(),
            t.minute(),
            t.second()
        );
        if t.nanosecond() != 0 {
            out.push_str(&format!(".{:09}", t.nanosecond()));
        }
        let off = t.offset();
        if off.is_utc() {
            out.push('Z');
        } else {
            let sign = if off.is_negative() { '-' } else { '+' };
            let (h, m, _) = off.as_hms();
            out.push_str(&format!(
                "{sign}{:02}:{:02}",
                h.unsigned_abs(),
                m.unsigned_abs()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn record_id_is_v7_and_ordered() {
        let a = RecordId::new_v7(datetime!(2026-11-23 10:00 UTC), [1; 10]);
        let b = RecordId::new_v7(datetime!(2026-11-23 10:00:01 UTC), [0; 10]);
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
        assert_eq!(RecordId::parse(&a.to_string()), Ok(a));
        let v4 = "6ba7b810-9dad-41d1-80b4-00c04fd430c8";
        assert!(matches!(RecordId::parse(v4), Err(RecordIdError::NotV7(_))));
        assert!(matches!(
            RecordId::parse("nope"),
            Err(RecordIdError::NotUuid(_))
        ));
    }

    #[test]
    fn tlp_labels() {
        for t in Tlp::ALL {
            assert_eq!(Tlp::parse_draft(t.as_str()), Ok(t));
            assert_eq!(Tlp::parse_canonical(t.as_str()), Some(t));
        }
        assert_eq!(Tlp::parse_draft("amber+strict"), Ok(Tlp::AmberStrict));
        assert_eq!(Tlp::parse_draft(" tlp:red "), Ok(Tlp::Red));
        assert_eq!(Tlp::parse_draft("Green"), Ok(Tlp::Green));
        let white = Tlp::parse_draft("TLP:WHITE").unwrap_err();
        assert!(
            white.to_string().contains("renamed WHITE to CLEAR"),
            "{white}"
        );
        assert!(matches!(Tlp::parse_draft("white"), Err(TlpError::White(_))));
        assert!(matches!(
            Tlp::parse_draft("AMBER STRICT"),
            Err(TlpError::Unknown(_))
        ));
        assert_eq!(Tlp::parse_canonical("tlp:red"), None);
    }

    #[test]
    fn markings() {
        for ok in [
            "sensitive-unclassified",
            "SENSITIVE UNCLASSIFIED",
            "Sensitive_Unclassified",
        ] {
            assert_eq!(
                Marking::parse_draft(ok),
                Ok(Marking::SensitiveUnclassified),
                "{ok}"
            );
        }
        assert_eq!(
            Marking::parse_draft("unclassified"),
            Ok(Marking::Unclassified)
        );
        assert!(matches!(
            Marking::parse_draft("public"),
            Err(MarkingError::Unknown(_))
        ));
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_date("2010-05-14"),
            Date::from_calendar_date(2010, Month::May, 14).ok()
        );
        for bad in [
            "2010-5-14",
            "2010-02-30",
            "+010-05-14",
            "2010/05/14",
            "20100514",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        let d = Date::from_calendar_date(987, Month::January, 2).unwrap();
        assert_eq!(parse_date(&format_date(d)), Some(d));
    }
}
