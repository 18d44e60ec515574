//! Class `rectification`: the sender corrects a record it sent by sending its full new
//! version (LED art. 16(1) and 16(6): inaccurate data is rectified and recipients are
//! told).

use serde::{Deserialize, Serialize};

use super::{join, Body, ClassName, FromDraft, RecordClass};
use crate::pseudonym::SubjectIdentity;
use crate::record::RecordId;
use crate::validate::{
    check_text, CheckContext, Fields, Rule, TextKind, ValidationErrors, MAX_TEXT_CHARS,
};

/// The record body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rectification {
    /// The record this one replaces.
    pub supersedes: RecordId,
    /// What was wrong.
    pub reason: String,
    /// The corrected body, of the class of the record replaced: only classes that name a
    /// subject (minor-risk-report, protection-file) can be rectified.
    pub body: Box<Body>,
}

impl RecordClass for Rectification {
    const NAME: ClassName = ClassName::Rectification;

    fn validate(&self, ctx: &CheckContext, path: &str, e: &mut ValidationErrors) {
        check_text(
            e,
            &join(path, "reason"),
            &self.reason,
            MAX_TEXT_CHARS,
            TextKind::Prose,
        );
        let bp = join(path, "body");
        if rectifiable(self.body.class_name()) {
            self.body.validate(ctx, &bp, e);
        } else {
            e.push(
                bp,
                Rule::Class,
                format!(
                    "a {} cannot be rectified: send a new one",
                    self.body.class_name()
                ),
            );
        }
    }

    fn subject_identity(&self) -> Option<SubjectIdentity<'_>> {
        self.body.subject_identity()
    }
}

fn rectifiable(class: ClassName) -> bool {
    matches!(
        class,
        ClassName::MinorRiskReport | ClassName::ProtectionFile
    )
}

impl FromDraft for Rectification {
    fn from_draft(f: Fields<'_>, e: &mut ValidationErrors) -> Option<Self> {
        let supersedes = f.record_id("supersedes", e);
        let reason = f.text("reason", e);
        let class = f
            .parsed("class", true, e, |s| {
                let c = ClassName::parse(s).map_err(|m| (Rule::Choice, m))?;
                if rectifiable(c) {
                    Ok(c)
                } else {
                    Err((
                        Rule::Class,
                        format!("a {c} cannot be rectified: send a new one"),
                    ))
                }
            })
            .flatten();
        let inner = f.object("body", e);
        let body = match (class, inner) {
            (Some(c), Some(b)) => Body::from_json(c, b, e),
            _ => None,
        };
        f.finish(e);
        Some(Rectification {
            supersedes: supersedes?,
            reason: reason?,
            body: Box::new(body?),
        })
    }
}
