//! Class `protection-file`: the National Crisis Centre (NCCN) shares the protection file
//! of an official under threat (politician, magistrate, …) with the services that carry
//! out the protection measures.

use serde::{Deserialize, Serialize};
use time::Date;

use super::{
    check_names, check_nrn_birth, join, nrn_field, Author, ClassName, FromDraft,
    NationalRegisterNumber, RecordClass,
};
use crate::pseudonym::SubjectIdentity;
use crate::record::{format_date, iso_date};
use crate::validate::{
    check_opt_text, check_past_date, check_text, CheckContext, Fields, Rule, TextKind,
    ValidationErrors, MAX_LINE_CHARS, MAX_MEASURES, MAX_TEXT_CHARS,
};

choice! {
    /// Why the person is protected.
    #[non_exhaustive]
    pub enum ProtectedRole {
        /// A member of a parliament or government, a mayor.
        Politician = "politician",
        /// A public prosecutor.
        Prosecutor = "prosecutor",
        /// A judge.
        Judge = "judge",
        /// Anything else: `role_description` says what.
        Other = "other",
    }
}

choice! {
    /// Where the threat comes from.
    ///
    /// Terrorism and extremism are the threats CUTA assesses (law of 10 July 2006 on
    /// threat analysis, art. 3); the others are the common sources of threats against
    /// officials that NCCN handles. The federation may extend the list.
    #[non_exhaustive]
    pub enum ThreatSource {
        /// Terrorism.
        Terrorism = "terrorism",
        /// Extremism.
        Extremism = "extremism",
        /// Organised crime.
        OrganisedCrime = "organised-crime",
        /// A foreign state or its proxies.
        StateActor = "state-actor",
        /// An individual acting alone (e.g. a fixated person).
        Individual = "individual",
        /// Unknown or other.
        Other = "other",
    }
}

choice! {
    /// A protection measure decided for the person.
    #[non_exhaustive]
    pub enum ProtectionMeasure {
        /// Close protection officers.
        CloseProtection = "close-protection",
        /// Static guard at the residence or workplace.
        StaticGuard = "static-guard",
        /// Increased police patrols.
        Patrols = "patrols",
        /// Technical security of the residence (alarm, cameras).
        ResidenceSecurity = "residence-security",
        /// A personal alarm linked to the police.
        PersonalAlarm = "personal-alarm",
        /// Escort during travel.
        Escort = "escort",
        /// Security advice and briefing.
        SecurityAdvice = "security-advice",
        /// Something else: `measures_note` says what.
        Other = "other",
    }
}

/// The record body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectionFile {
    /// The protected person.
    pub protected_person: ProtectedPerson,
    /// Their office.
    pub role: ProtectedRole,
    /// What their office is, required when `role` is `other`.
    pub role_description: Option<String>,
    /// Where the threat comes from.
    pub threat_source: ThreatSource,
    /// CUTA's threat level, 1 (low) to 4 (very serious).
    pub threat_level: u8,
    /// Measures decided, at least one, at most [`MAX_MEASURES`].
    pub measures: Vec<ProtectionMeasure>,
    /// Details of the measures.
    pub measures_note: Option<String>,
    /// When the measures are to be reassessed; not before the record date.
    #[serde(with = "iso_date")]
    pub review_date: Date,
    /// The sending agency's own case reference.
    pub case_reference: String,
    /// Who wrote the file.
    pub author: Author,
}

/// The person a protection file is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedPerson {
    /// Given names.
    pub given_names: String,
    /// Family name.
    pub family_name: String,
    /// Date of birth; required when there is no national register number.
    #[serde(default, with = "iso_date::option")]
    pub date_of_birth: Option<Date>,
    /// National register number, when known.
    pub national_register_number: Option<NationalRegisterNumber>,
}

impl RecordClass for ProtectionFile {
    const NAME: ClassName = ClassName::ProtectionFile;

    fn validate(&self, ctx: &CheckContext, path: &str, e: &mut ValidationErrors) {
        let pp = join(path, "protected_person");
        let p = &self.protected_person;
        check_names(e, &pp, &p.given_names, &p.family_name);
        let dob_path = join(&pp, "date_of_birth");
        match (&p.national_register_number, p.date_of_birth) {
            (None, None) => e.push(
                dob_path,
                Rule::Required,
                "is required when national_register_number is absent: the subject pseudonym needs one of them",
            ),
            (nrn, dob) => {
                if let Some(d) = dob {
                    check_past_date(e, &dob_path, d, ctx);
                }
                if let Some(n) = nrn {
                    check_nrn_birth(e, &join(&pp, "national_register_number"), n, dob);
                }
            }
        }
        let rp = join(path, "role_description");
        match (&self.role, &self.role_description) {
            (ProtectedRole::Other, None) => {
                e.push(rp, Rule::Required, "is required when role is other")
            }
            (ProtectedRole::Other, Some(d)) => {
                check_text(e, &rp, d, MAX_LINE_CHARS, TextKind::Line)
            }
            (_, Some(d)) => check_opt_text(e, &rp, d, MAX_LINE_CHARS, TextKind::Line),
            (_, None) => {}
        }
        if !(1..=4).contains(&self.threat_level) {
            e.push(
                join(path, "threat_level"),
                Rule::Choice,
                format!(
                    "{} is not a CUTA threat level: use 1 to 4",
                    self.threat_level
                ),
            );
        }
        let mp = join(path, "measures");
        if self.measures.is_empty() {
            e.push(&mp, Rule::Required, "must hold at least one measure");
        }
        if self.measures.len() > MAX_MEASURES {
            e.push(
                &mp,
                Rule::Count,
                format!(
                    "has {} items: the limit is {MAX_MEASURES}",
                    self.measures.len()
                ),
            );
        }
        let np = join(path, "measures_note");
        match &self.measures_note {
            Some(n) => check_text(e, &np, n, MAX_TEXT_CHARS, TextKind::Prose),
            None if self.measures.contains(&ProtectionMeasure::Other) => {
                e.push(np, Rule::Required, "is required when a measure is other")
            }
            None => {}
        }
        if self.review_date < ctx.report_date {
            e.push(
                join(path, "review_date"),
                Rule::DateOrder,
                format!(
                    "{} is before the record date {}",
                    format_date(self.review_date),
                    format_date(ctx.report_date)
                ),
            );
        }
        check_text(
            e,
            &join(path, "case_reference"),
            &self.case_reference,
            MAX_LINE_CHARS,
            TextKind::Line,
        );
        self.author.validate(&join(path, "author"), e);
    }

    fn subject_identity(&self) -> Option<SubjectIdentity<'_>> {
        let p = &self.protected_person;
        match (&p.national_register_number, p.date_of_birth) {
            (Some(nrn), _) => Some(SubjectIdentity::Nrn(nrn)),
            (None, Some(dob)) => Some(SubjectIdentity::Name {
                given_names: &p.given_names,
                family_name: &p.family_name,
                date_of_birth: dob,
            }),
            (None, None) => None,
        }
    }
}

impl FromDraft for ProtectionFile {
    fn from_draft(f: Fields<'_>, e: &mut ValidationErrors) -> Option<Self> {
        let person = f.object("protected_person", e).and_then(|p| {
            let given_names = p.text("given_names", e);
            let family_name = p.text("family_name", e);
            let date_of_birth = p.date_field("date_of_birth", false, e);
            let nrn = nrn_field(&p, "national_register_number", e);
            p.finish(e);
            Some(ProtectedPerson {
                given_names: given_names?,
                family_name: family_name?,
                date_of_birth: date_of_birth?,
                national_register_number: nrn?,
            })
        });
        let role = f.choice("role", e);
        let role_description = f.opt_text("role_description", e);
        let threat_source = f.choice("threat_source", e);
        let threat_level = f.number("threat_level", 1..=4, e);
        let measures = f.array("measures", MAX_MEASURES, e).and_then(|items| {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for (path, v) in items {
                let parsed = match v {
                    serde_json::Value::String(s) => {
                        <ProtectionMeasure as crate::validate::Choice>::parse_lenient(s)
                            .map_err(|m| (Rule::Choice, m))
                    }
                    _ => Err((Rule::Type, "must be a string".to_owned())),
                };
                match parsed {
                    Ok(m) => out.push(m),
                    Err((rule, msg)) => {
                        e.push(path, rule, msg);
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        });
        let measures_note = f.opt_text("measures_note", e);
        let review_date = f.date("review_date", e);
        let case_reference = f.text("case_reference", e);
        let author = f.object("author", e).and_then(|a| Author::from_draft(a, e));
        f.finish(e);
        Some(ProtectionFile {
            protected_person: person?,
            role: role?,
            role_description: role_description?,
            threat_source: threat_source?,
            threat_level: u8::try_from(threat_level?).ok()?,
            measures: measures?,
            measures_note: measures_note?,
            review_date: review_date?,
            case_reference: case_reference?,
            author: author?,
        })
    }
}
