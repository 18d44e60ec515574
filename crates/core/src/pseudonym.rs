//! The subject pseudonym: a keyed hash that names a person without identifying them.
//!
//! `subject_ref = HMAC-SHA-256(federation key, input)` where the input is
//!
//! - `nrn:` followed by the 11 digits of the Belgian national register number, when the
//!   record carries one, or else
//! - `name:` followed by the normalised given names, U+001F, the normalised family name,
//!   U+001F and the date of birth as `YYYY-MM-DD`.
//!
//! Normalisation lower-cases (Unicode-aware), folds the accents of Latin letters
//! (`é` → `e`, `ß` → `ss`, combining marks dropped), unifies apostrophe and hyphen
//! variants, collapses runs of white space to one space and trims. U+001F cannot occur in
//! a name because validation refuses control characters, so the fields cannot run into
//! each other; the `nrn:` / `name:` prefixes keep the two input kinds apart.
//!
//! Every agency of a federation holds the same key, so **the same person always maps to
//! the same `subject_ref` across agencies**: a DPO can search journals by subject, and a
//! receiver can link records about one person, without the journals holding identities.
//! Without the key the reference cannot be reversed by trying national register numbers
//! (there are only about 10^9 of them: a plain hash would be no pseudonym at all). Records
//! about a person with and without a national register number get different references;
//! callers that learn the number later should re-send with it.

use std::fmt;

use ring::hmac;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::Date;

use crate::class::NationalRegisterNumber;
use crate::record::format_date;

/// Shortest federation key accepted, in bytes (the HMAC-SHA-256 output size).
pub const MIN_PSEUDONYM_KEY_LEN: usize = 32;

/// The federation's pseudonymisation key, shared by all its nodes.
#[derive(Clone)]
pub struct PseudonymKey(hmac::Key);

/// Why bytes are not a pseudonym key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PseudonymKeyError {
    /// The key is too short to resist guessing.
    #[error("pseudonym key is {0} bytes: at least {MIN_PSEUDONYM_KEY_LEN} are required")]
    TooShort(usize),
}

impl PseudonymKey {
    /// Takes a key of at least [`MIN_PSEUDONYM_KEY_LEN`] random bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PseudonymKeyError> {
        if bytes.len() < MIN_PSEUDONYM_KEY_LEN {
            return Err(PseudonymKeyError::TooShort(bytes.len()));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// The pseudonym of a subject.
    pub fn subject_ref(&self, subject: &SubjectIdentity<'_>) -> SubjectRef {
        let input = subject.hmac_input();
        let tag = hmac::sign(&self.0, input.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        SubjectRef(out)
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

/// What identifies a record's subject, borrowed from the record body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectIdentity<'a> {
    /// The Belgian national register number.
    Nrn(&'a NationalRegisterNumber),
    /// Names and date of birth, when no national register number is known.
    Name {
        /// Given names as written.
        given_names: &'a str,
        /// Family name as written.
        family_name: &'a str,
        /// Date of birth.
        date_of_birth: Date,
    },
}

impl SubjectIdentity<'_> {
    /// The HMAC input, see the module documentation.
    fn hmac_input(&self) -> String {
        match self {
            SubjectIdentity::Nrn(nrn) => format!("nrn:{}", nrn.digits()),
            SubjectIdentity::Name {
                given_names,
                family_name,
                date_of_birth,
            } => format!(
                "name:{}\u{1f}{}\u{1f}{}",
                normalise_name(given_names),
                normalise_name(family_name),
                format_date(*date_of_birth)
            ),
        }
    }
}

/// A subject pseudonym: 32 bytes, written as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectRef([u8; 32]);

/// Why a text is not a subject reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectRefError {
    /// Not 64 hex digits.
    #[error("subject_ref {0:?} is invalid: expected 64 lower-case hex digits")]
    BadHex(String),
}

impl SubjectRef {
    /// Wraps 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 lower-case hex digits.
    pub fn parse_hex(s: &str) -> Result<Self, SubjectRefError> {
        let bad = || SubjectRefError::BadHex(s.chars().take(80).collect());
        // Lower case only, so that a reference has one spelling in journals and searches.
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }

    /// The 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectRef({})", self.to_hex())
    }
}

impl Serialize for SubjectRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SubjectRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_hex(&s).map_err(D::Error::custom)
    }
}

/// Normalises a name for the pseudonym: [`fold`], unified apostrophes and hyphens, white
/// space collapsed and trimmed.
pub fn normalise_name(s: &str) -> String {
    let folded: String = fold(s)
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{02bc}' | '`' | '\u{b4}' => '\'',
            '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' => '-',
            c => c,
        })
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Lower-cases `s` and folds accented Latin letters to their base letters.
///
/// A small explicit table (Latin-1, Latin Extended-A letters common in Belgium and its
/// neighbours) instead of a Unicode normalisation crate; combining marks (U+0300–U+036F)
/// are dropped, so decomposed input folds like composed input. Other letters are kept.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        if ('\u{300}'..='\u{36f}').contains(&c) {
            continue;
        }
        match fold_char(c) {
            Some(base) => out.push_str(base),
            None => out.push(c),
        }
    }
    out
}

fn fold_char(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn key(b: u8) -> PseudonymKey {
        PseudonymKey::from_bytes(&[b; 32]).unwrap()
    }

    fn name<'a>(g: &'a str, f: &'a str, dob: Date) -> SubjectIdentity<'a> {
        SubjectIdentity::Name {
            given_names: g,
            family_name: f,
            date_of_birth: dob,
        }
    }

    #[test]
    fn same_person_same_ref() {
        let k = key(7);
        let dob = date!(2010 - 05 - 14);
        let a = k.subject_ref(&name("Zoë Amélie", "Van den Broeck", dob));
        for (g, f) in [
            ("  zoë   amélie ", "van den  broeck"),
            ("ZOË AMÉLIE", "VAN DEN BROECK"),
            ("Zoe Amelie", "Van den Broeck"),
            // Decomposed: e + combining diaeresis.
            ("Zoe\u{308} Ame\u{301}lie", "Van\tden Broeck"),
        ] {
            assert_eq!(k.subject_ref(&name(g, f, dob)), a, "{g} {f}");
        }
        let nrn = NationalRegisterNumber::parse("10.05.14-998.20").unwrap();
        let nrn2 = NationalRegisterNumber::parse("10051499820").unwrap();
        assert_eq!(
            k.subject_ref(&SubjectIdentity::Nrn(&nrn)),
            k.subject_ref(&SubjectIdentity::Nrn(&nrn2))
        );
    }

    #[test]
    fn different_person_or_key_different_ref() {
        let k = key(7);
        let dob = date!(2010 - 05 - 14);
        let a = k.subject_ref(&name("Zoë", "Peeters", dob));
        assert_ne!(
            a,
            k.subject_ref(&name("Zoë", "Peeters", date!(2010 - 05 - 15)))
        );
        assert_ne!(a, k.subject_ref(&name("Zoë", "Pieters", dob)));
        // Moving a word between given and family name is another person.
        assert_ne!(
            k.subject_ref(&name("Anna Maria", "Smet", dob)),
            k.subject_ref(&name("Anna", "Maria Smet", dob))
        );
        assert_ne!(a, key(8).subject_ref(&name("Zoë", "Peeters", dob)));
    }

    #[test]
    fn key_and_hex_rules() {
        assert_eq!(
            PseudonymKey::from_bytes(&[0; 31]).unwrap_err(),
            PseudonymKeyError::TooShort(31)
        );
        let r = key(1).subject_ref(&name("a", "b", date!(2010 - 01 - 01)));
        assert_eq!(SubjectRef::parse_hex(&r.to_hex()), Ok(r));
        assert!(SubjectRef::parse_hex(&r.to_hex().to_uppercase()).is_err());
        assert!(SubjectRef::parse_hex("00").is_err());
        assert_eq!(format!("{:?}", key(1)), "PseudonymKey(..)");
    }

    #[test]
    fn folding() {
        assert_eq!(fold("TRÈS Secret"), "tres secret");
        assert_eq!(normalise_name("  D’Hondt –  Straße "), "d'hondt - strasse");
        assert_eq!(fold("Łukasz Żółć"), "lukasz zolc");
    }
}
