//! Reject codes: why a receiver refused a record, and whether retrying can help.

use std::fmt;
use std::str::FromStr;

/// Why a receiver refused a `Deliver`.
///
/// A permanent code means that sending the same bytes again will be refused again: the
/// sender stops and reports. A transient code means the receiver could not take the record
/// now: the sender retries later with backoff. See [`RejectCode::is_permanent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectCode {
    /// Policy does not allow this sender to send this class to this receiver.
    PolicyDenied,
    /// The envelope's signature does not verify.
    InvalidSignature,
    /// The envelope's signing certificate does not chain to the federation CA, or is revoked.
    UntrustedSigner,
    /// The TLS peer of the stream is not the signer of the envelope.
    SignerMismatch,
    /// The record fails validation (schema, class rules, addressing).
    InvalidRecord,
    /// A record with the same id but other bytes was already received.
    Conflict,
    /// The record carries a classified marking: classified information must not transit Pons.
    ClassifiedMarking,
    /// The frame exceeds the receiver's size limit.
    FrameTooLarge,
    /// The frame is not a well-formed `pons/1` frame, or not the one expected.
    Malformed,
    /// The receiver is overloaded.
    Busy,
    /// The receiver's store cannot take the record now.
    StorageUnavailable,
    /// The receiver is shutting down.
    ShuttingDown,
    /// The receiver failed in a way that is not the sender's fault.
    Internal,
}

impl RejectCode {
    /// Every code.
    pub const ALL: [RejectCode; 13] = [
        RejectCode::PolicyDenied,
        RejectCode::InvalidSignature,
        RejectCode::UntrustedSigner,
        RejectCode::SignerMismatch,
        RejectCode::InvalidRecord,
        RejectCode::Conflict,
        RejectCode::ClassifiedMarking,
        RejectCode::FrameTooLarge,
        RejectCode::Malformed,
        RejectCode::Busy,
        RejectCode::StorageUnavailable,
        RejectCode::ShuttingDown,
        RejectCode::Internal,
    ];

    /// Whether sending the same bytes again would be refused again.
    ///
    /// Permanent codes are about the record or the sender (signature, trust, policy,
    /// content, size, id conflict); transient ones are about the receiver's state.
    pub fn is_permanent(self) -> bool {
        match self {
            RejectCode::PolicyDenied
            | RejectCode::InvalidSignature
            | RejectCode::UntrustedSigner
            | RejectCode::SignerMismatch
            | RejectCode::InvalidRecord
            | RejectCode::Conflict
            | RejectCode::ClassifiedMarking
            | RejectCode::FrameTooLarge
            | RejectCode::Malformed => true,
            RejectCode::Busy
            | RejectCode::StorageUnavailable
            | RejectCode::ShuttingDown
            | RejectCode::Internal => false,
        }
    }

    /// The code as it appears on the wire, e.g. `policy-denied`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::PolicyDenied => "policy-denied",
            RejectCode::InvalidSignature => "invalid-signature",
            RejectCode::UntrustedSigner => "untrusted-signer",
            RejectCode::SignerMismatch => "signer-mismatch",
            RejectCode::InvalidRecord => "invalid-record",
            RejectCode::Conflict => "conflict",
            RejectCode::ClassifiedMarking => "classified-marking",
            RejectCode::FrameTooLarge => "frame-too-large",
            RejectCode::Malformed => "malformed",
            RejectCode::Busy => "busy",
            RejectCode::StorageUnavailable => "storage-unavailable",
            RejectCode::ShuttingDown => "shutting-down",
            RejectCode::Internal => "internal",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reject code that is not one of `pons/1`'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reject code {0:?} is not a pons/1 reject code")]
pub struct UnknownRejectCode(pub String);

impl FromStr for RejectCode {
    type Err = UnknownRejectCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RejectCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownRejectCode(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for code in RejectCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate wire name {code}");
            assert_eq!(code.as_str().parse::<RejectCode>(), Ok(code));
        }
        assert_eq!(
            "policy_denied".parse::<RejectCode>(),
            Err(UnknownRejectCode("policy_denied".into()))
        );
    }

    #[test]
    fn classification_matches_the_protocol() {
        let transient: Vec<_> = RejectCode::ALL
            .into_iter()
            .filter(|c| !c.is_permanent())
            .collect();
        assert_eq!(
            transient,
            [
                RejectCode::Busy,
                RejectCode::StorageUnavailable,
                RejectCode::ShuttingDown,
                RejectCode::Internal
            ]
        );
    }
}
