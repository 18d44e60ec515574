//! Class `erasure-notice`: the sender of a record tells its recipient that the record was
//! erased, so the recipient erases its copy too (LED art. 16(6); Belgian law of 30 July
//! 2018, art. 39: recipients are told of erasures).

use serde::{Deserialize, Serialize};

use super::{join, ClassName, FromDraft, RecordClass};
use crate::pseudonym::SubjectIdentity;
use crate::record::RecordId;
use crate::validate::{
    check_text, CheckContext, Fields, TextKind, ValidationErrors, MAX_TEXT_CHARS,
};

choice! {
    /// Why a record was erased.
    #[non_exhaustive]
    pub enum ErasureGround {
        /// Its retention period ended.
        RetentionExpired = "retention-expired",
        /// It is no longer needed for its purpose.
        PurposeAchieved = "purpose-achieved",
        /// It was processed unlawfully.
        UnlawfulProcessing = "unlawful-processing",
        /// It is inaccurate and cannot be rectified.
        Inaccurate = "inaccurate",
        /// A court or the supervisory authority ordered it.
        Order = "order",
        /// Another ground: `note` says which.
        Other = "other",
    }
}

/// The record body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureNotice {
    /// The erased record.
    pub record: RecordId,
    /// Why it was erased.
    pub ground: ErasureGround,
    /// Details; required when the ground is `other`.
    pub note: Option<String>,
}

impl RecordClass for ErasureNotice {
    const NAME: ClassName = ClassName::ErasureNotice;

    fn validate(&self, _ctx: &CheckContext, path: &str, e: &mut ValidationErrors) {
        let np = join(path, "note");
        match &self.note {
            Some(n) => check_text(e, &np, n, MAX_TEXT_CHARS, TextKind::Prose),
            None if self.ground == ErasureGround::Other => e.push(
                np,
                crate::validate::Rule::Required,
                "is required when the ground is other",
            ),
            None => {}
        }
    }

    /// The subject is that of the erased record: the caller supplies its reference.
    fn subject_identity(&self) -> Option<SubjectIdentity<'_>> {
        None
    }
}

impl FromDraft for ErasureNotice {
    fn from_draft(f: Fields<'_>, e: &mut ValidationErrors) -> Option<Self> {
        let record = f.record_id("record", e);
        let ground = f.choice("ground", e);
        let note = f.opt_text("note", e);
        f.finish(e);
        Some(ErasureNotice {
            record: record?,
            ground: ground?,
            note: note?,
        })
    }
}
