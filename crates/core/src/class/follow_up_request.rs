//! Class `follow-up-request`: the receiver of a record asks its sender a question about
//! it.

use serde::{Deserialize, Serialize};

use super::{join, ClassName, FromDraft, RecordClass};
use crate::pseudonym::SubjectIdentity;
use crate::record::RecordId;
use crate::validate::{
    check_text, CheckContext, Fields, TextKind, ValidationErrors, MAX_TEXT_CHARS,
};

/// The record body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpRequest {
    /// The record asked about.
    pub refers_to: RecordId,
    /// The question.
    pub question: String,
}

impl RecordClass for FollowUpRequest {
    const NAME: ClassName = ClassName::FollowUpRequest;

    fn validate(&self, _ctx: &CheckContext, path: &str, e: &mut ValidationErrors) {
        check_text(
            e,
            &join(path, "question"),
            &self.question,
            MAX_TEXT_CHARS,
            TextKind::Prose,
        );
    }

    /// The subject is that of the record referred to: the caller supplies its reference.
    fn subject_identity(&self) -> Option<SubjectIdentity<'_>> {
        None
    }
}

impl FromDraft for FollowUpRequest {
    fn from_draft(f: Fields<'_>, e: &mut ValidationErrors) -> Option<Self> {
        let refers_to = f.record_id("refers_to", e);
        let question = f.text("question", e);
        f.finish(e);
        Some(FollowUpRequest {
            refers_to: refers_to?,
            question: question?,
        })
    }
}
