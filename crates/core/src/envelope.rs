//! Records sealed in envelopes: the record codec joined to COSE_Sign1 and trust.
//!
//! Opening a record envelope checks, in order: the COSE signature and the signer's
//! certificate chain (see [`crate::cose::open`]), the CBOR payload, that the record's
//! `from` is the node that signed it, and the record's own validation rules, so that a
//! receiver applies exactly the rules the sender applied.

use time::{Duration, OffsetDateTime};

use crate::cose::{self, OpenError, SealError, Signer, RECORD_CONTENT_TYPE};
use crate::identity::NodeId;
use crate::record::{DecodeError, Record};
use crate::trust::Trust;
use crate::validate::ValidationErrors;

/// A record envelope that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedRecord {
    /// The record.
    pub record: Record,
    /// The node whose certificate signed it (equal to `record.from`).
    pub signer: NodeId,
    /// SHA-256 of the envelope bytes, as receipts name them.
    pub envelope_sha256: [u8; 32],
}

/// Why a record envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The signature, the chain or the COSE structure failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The payload is not a record.
    #[error("envelope payload is not a pons record: {0}")]
    Decode(#[from] DecodeError),
    /// The record claims to come from another node than the one that signed it.
    #[error("record {id}: from is {from} but the envelope is signed by {signer}")]
    SignerMismatch {
        /// The record id.
        id: String,
        /// The record's `from`.
        from: NodeId,
        /// The signing node.
        signer: NodeId,
    },
    /// The record breaks a validation rule.
    #[error("record {id} is invalid: {errors}")]
    Invalid {
        /// The record id.
        id: String,
        /// Every problem found.
        errors: ValidationErrors,
    },
}

/// Seals a record into a tagged COSE_Sign1 envelope signed by `signer`.
///
/// The record must come from the signing node; the signer's chain travels in the envelope.
pub fn seal_record(record: &Record, signer: &Signer) -> Result<Vec<u8>, SealError> {
    cose::seal(&record.to_cbor(), RECORD_CONTENT_TYPE, signer)
}

/// The record in an envelope that this node sealed or verified before and kept in its own
/// store, without verifying it again (see [`cose::stored_payload`]): for reading back fields
/// such as the purpose for a journal entry, on paths where the signature was already checked.
pub fn stored_record(envelope: &[u8]) -> Result<Record, EnvelopeError> {
    let payload = cose::stored_payload(envelope, RECORD_CONTENT_TYPE)?;
    Ok(Record::from_cbor(&payload)?)
}

/// Opens and checks a record envelope at time `now`, allowing `skew` of clock difference.
pub fn open_record(
    envelope: &[u8],
    trust: &Trust,
    now: OffsetDateTime,
    skew: Duration,
) -> Result<OpenedRecord, EnvelopeError> {
    let opened = cose::open(envelope, RECORD_CONTENT_TYPE, trust, now)?;
    let record = Record::from_cbor(&opened.payload)?;
    if record.from != opened.signer {
        return Err(EnvelopeError::SignerMismatch {
            id: record.id.to_string(),
            from: record.from,
            signer: opened.signer,
        });
    }
    record
        .validate_decoded(now, skew, opened.payload.len())
        .map_err(|errors| EnvelopeError::Invalid {
            id: record.id.to_string(),
            errors,
        })?;
    Ok(OpenedRecord {
        record,
        signer: opened.signer,
        envelope_sha256: opened.envelope_sha256,
    })
}
