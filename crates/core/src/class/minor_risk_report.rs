//! Class `minor-risk-report`: a youth-care agency reports a minor at risk of
//! radicalisation to CUTA under their cooperation agreement.

use serde::{Deserialize, Serialize};
use time::Date;

use super::{
    check_names, check_nrn_birth, join, nrn_field, Author, ClassName, FromDraft,
    NationalRegisterNumber, RecordClass,
};
use crate::pseudonym::SubjectIdentity;
use crate::record::{format_date, iso_date};
use crate::validate::{
    check_past_date, check_text, CheckContext, Fields, Rule, TextKind, ValidationErrors,
    MAX_LINE_CHARS, MAX_STATEMENTS, MAX_TEXT_CHARS,
};

/// Age of majority in Belgium (Civil Code art. 388).
pub const AGE_OF_MAJORITY: i32 = 18;

choice! {
    /// The kind of radicalisation the report is about.
    ///
    /// Broad ideological families as used in Belgian prevention policy (Plan R, the
    /// 2021 Strategy on Terrorism, Extremism and Radicalisation) and Europol's TE-SAT;
    /// the exact list is fixed by the federation's cooperation agreement, so it may grow.
    #[non_exhaustive]
    pub enum RiskCategory {
        /// Violent extremism whose ideology is unclear or mixed.
        ViolentExtremism = "violent-extremism",
        /// Religiously motivated extremism (e.g. jihadism).
        ReligiouslyMotivated = "religiously-motivated",
        /// Politically motivated extremism (left-wing, right-wing, separatist).
        PoliticallyMotivated = "politically-motivated",
        /// A single cause (e.g. anti-abortion, environmental, anti-government conspiracy).
        SingleIssue = "single-issue",
        /// Anything else; describe it in the statements.
        Other = "other",
    }
}

choice! {
    /// The reporting agency's overall assessment of the risk.
    pub enum RiskLevel {
        /// Low.
        Low = "low",
        /// Medium.
        Medium = "medium",
        /// High.
        High = "high",
    }
}

choice! {
    /// Whether a statement is a fact or an assessment.
    ///
    /// LED art. 7(1) (Directive (EU) 2016/680; Belgian law of 30 July 2018, art. 30):
    /// data based on facts must be distinguished from data based on personal assessments.
    pub enum StatementKind {
        /// Something observed or documented.
        Fact = "fact",
        /// Someone's judgement; names its assessing authority.
        Assessment = "assessment",
    }
}

/// The record body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinorRiskReport {
    /// The minor reported.
    pub subject: Subject,
    /// The reporting agency's own case reference.
    pub case_reference: String,
    /// The kind of radicalisation.
    pub risk_category: RiskCategory,
    /// The assessed level of risk.
    pub risk_level: RiskLevel,
    /// Facts and assessments, at least one, at most [`MAX_STATEMENTS`].
    pub statements: Vec<Statement>,
    /// The caseworker who wrote the report.
    pub author: Author,
}

/// The minor a report is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Given names, as in the national register.
    pub given_names: String,
    /// Family name.
    pub family_name: String,
    /// Date of birth: the subject must be under 18 on the record date.
    #[serde(with = "iso_date")]
    pub date_of_birth: Date,
    /// National register number, when known.
    pub national_register_number: Option<NationalRegisterNumber>,
}

/// One fact or assessment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Fact or assessment.
    pub kind: StatementKind,
    /// The statement.
    pub text: String,
    /// Who made the assessment (required for an assessment, absent for a fact).
    pub assessing_authority: Option<String>,
    /// When the fact happened or the assessment was made, if known.
    #[serde(default, with = "iso_date::option")]
    pub date: Option<Date>,
}

impl RecordClass for MinorRiskReport {
    const NAME: ClassName = ClassName::MinorRiskReport;

    fn validate(&self, ctx: &CheckContext, path: &str, e: &mut ValidationErrors) {
        let sp = join(path, "subject");
        let s = &self.subject;
        check_names(e, &sp, &s.given_names, &s.family_name);
        let dob_path = join(&sp, "date_of_birth");
        check_past_date(e, &dob_path, s.date_of_birth, ctx);
        if !is_minor(s.date_of_birth, ctx.report_date) {
            e.push(
                dob_path,
                Rule::Minor,
                format!(
                    "{} is not under {AGE_OF_MAJORITY} on {}",
                    format_date(s.date_of_birth),
                    format_date(ctx.report_date)
                ),
            );
        }
        if let Some(nrn) = &s.national_register_number {
            check_nrn_birth(
                e,
                &join(&sp, "national_register_number"),
                nrn,
                Some(s.date_of_birth),
            );
        }
        check_text(
            e,
            &join(path, "case_reference"),
            &self.case_reference,
            MAX_LINE_CHARS,
            TextKind::Line,
        );
        let stp = join(path, "statements");
        if self.statements.is_empty() {
            e.push(&stp, Rule::Required, "must hold at least one statement");
        }
        if self.statements.len() > MAX_STATEMENTS {
            e.push(
                &stp,
                Rule::Count,
                format!(
                    "has {} items: the limit is {MAX_STATEMENTS}",
                    self.statements.len()
                ),
            );
        }
        for (i, st) in self.statements.iter().take(MAX_STATEMENTS).enumerate() {
            st.validate(ctx, &format!("{stp}[{i}]"), e);
        }
        self.author.validate(&join(path, "author"), e);
    }

    fn subject_identity(&self) -> Option<SubjectIdentity<'_>> {
        let s = &self.subject;
        Some(match &s.national_register_number {
            Some(nrn) => SubjectIdentity::Nrn(nrn),
            None => SubjectIdentity::Name {
                given_names: &s.given_names,
                family_name: &s.family_name,
                date_of_birth: s.date_of_birth,
            },
        })
    }
}

impl Statement {
    fn validate(&self, ctx: &CheckContext, path: &str, e: &mut ValidationErrors) {
        check_text(
            e,
            &join(path, "text"),
            &self.text,
            MAX_TEXT_CHARS,
            TextKind::Prose,
        );
        let ap = join(path, "assessing_authority");
        match (self.kind, &self.assessing_authority) {
            (StatementKind::Assessment, None) => e.push(
                ap,
                Rule::AssessingAuthority,
                "is required: an assessment must name the authority that made it",
            ),
            (StatementKind::Assessment, Some(a)) => {
                check_text(e, &ap, a, MAX_LINE_CHARS, TextKind::Line)
            }
            (StatementKind::Fact, Some(_)) => e.push(
                ap,
                Rule::AssessingAuthority,
                "must be absent for a fact: make the statement an assessment or remove the authority",
            ),
            (StatementKind::Fact, None) => {}
        }
        if let Some(d) = self.date {
            check_past_date(e, &join(path, "date"), d, ctx);
        }
    }
}

/// Whether someone born on `dob` is under [`AGE_OF_MAJORITY`] on `day`.
///
/// Someone born on 29 February comes of age on 1 March in common years.
pub fn is_minor(dob: Date, day: Date) -> bool {
    let year = dob.year() + AGE_OF_MAJORITY;
    let coming_of_age = Date::from_calendar_date(year, dob.month(), dob.day())
        .or_else(|_| Date::from_calendar_date(year, time::Month::March, 1));
    match coming_of_age {
        Ok(d) => day < d,
        // Beyond the calendar's range: certainly not of age yet.
        Err(_) => true,
    }
}

impl FromDraft for MinorRiskReport {
    fn from_draft(f: Fields<'_>, e: &mut ValidationErrors) -> Option<Self> {
        let subject = f.object("subject", e).and_then(|s| {
            let given_names = s.text("given_names", e);
            let family_name = s.text("family_name", e);
            let date_of_birth = s.date("date_of_birth", e);
            let nrn = nrn_field(&s, "national_register_number", e);
            s.finish(e);
            Some(Subject {
                given_names: given_names?,
                family_name: family_name?,
                date_of_birth: date_of_birth?,
                national_register_number: nrn?,
            })
        });
        let case_reference = f.text("case_reference", e);
        let risk_category = f.choice("risk_category", e);
        let risk_level = f.choice("risk_level", e);
        let statements = f.array("statements", MAX_STATEMENTS, e).and_then(|items| {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for (path, v) in items {
                match Fields::new(path, v, e).and_then(|s| statement_from_draft(s, e)) {
                    Some(st) => out.push(st),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        });
        let author = f.object("author", e).and_then(|a| Author::from_draft(a, e));
        f.finish(e);
        Some(MinorRiskReport {
            subject: subject?,
            case_reference: case_reference?,
            risk_category: risk_category?,
            risk_level: risk_level?,
            statements: statements?,
            author: author?,
        })
    }
}

fn statement_from_draft(s: Fields<'_>, e: &mut ValidationErrors) -> Option<Statement> {
    let kind = s.choice("kind", e);
    let text = s.text("text", e);
    let authority = s.opt_text("assessing_authority", e);
    let date = s.date_field("date", false, e);
    s.finish(e);
    Some(Statement {
        kind: kind?,
        text: text?,
        assessing_authority: authority?,
        date: date?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn majority() {
        let dob = date!(2008 - 11 - 23);
        assert!(is_minor(dob, date!(2026 - 11 - 22)));
        assert!(!is_minor(dob, date!(2026 - 11 - 23)));
        let leap = date!(2008 - 02 - 29);
        assert!(is_minor(leap, date!(2026 - 02 - 28)));
        assert!(!is_minor(leap, date!(2026 - 03 - 01)));
        assert!(!is_minor(date!(2001 - 03 - 04), date!(2026 - 11 - 23)));
    }

    #[test]
    fn nrn_checksums() {
        // Born 2010-05-14: the check uses 2100514998.
        let n = NationalRegisterNumber::parse("10.05.14-998.20").unwrap();
        assert_eq!(n.birth_date(), Some(date!(2010 - 05 - 14)));
        // The same digits under the pre-2000 rule: born 1910.
        let old = NationalRegisterNumber::parse("10051499888").unwrap();
        assert_eq!(old.birth_date(), Some(date!(1910 - 05 - 14)));
        assert_eq!(
            NationalRegisterNumber::parse("10051499821"),
            Err(super::super::NrnError::Checksum)
        );
        assert_eq!(
            NationalRegisterNumber::parse("1005149982"),
            Err(super::super::NrnError::Format)
        );
        assert_eq!(
            NationalRegisterNumber::parse("1005149982x"),
            Err(super::super::NrnError::Format)
        );
        // BIS number: month + 40.
        let bis = 97 - (2_104_514_998u64 % 97);
        let bis = NationalRegisterNumber::parse(&format!("104514998{bis:02}")).unwrap();
        assert_eq!(bis.birth_date(), Some(date!(2010 - 05 - 14)));
    }
}
