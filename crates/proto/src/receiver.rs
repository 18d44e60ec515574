//! The receiving side's decision on one `Deliver`, as a pure function.
//!
//! The caller (transport and node) does the work — decode the frame, open and verify the
//! envelope with `pons-core`, read the TLS peer's identity, ask the policy, look the
//! record id up in the inbox — and this module decides what to answer.
//!
//! Order of the checks, and why:
//!
//! 1. framing ([`refusal_for_frame`]): nothing is opened before the frame is a `Deliver`
//!    within the size limit;
//! 2. opening the envelope (signature, trust, validation, marking), as reported by the
//!    caller in [`Verified`] or a [`Refusal`];
//! 3. the TLS peer must be the envelope's signer (`signer-mismatch`): a node cannot relay
//!    another node's records;
//! 4. the policy must allow this signer to send this class here (`policy-denied`);
//! 5. only then the inbox lookup: duplicate (same id, same SHA-256 → the original receipt)
//!    or conflict (same id, other bytes). Looking up only after authentication and
//!    authorisation means that an unauthenticated or unauthorised peer learns nothing
//!    about which record ids exist. [`Checked`] enforces this order in types: the inbox
//!    answer can only be given to a record that passed 1–4.
//!
//! On [`Decision::Accept`] the caller stores the record durably, and only then builds the
//! receipt and answers `Frame::Receipt`. Its insert must be atomic "insert if absent": if
//! two streams carry the same record at once, the loser finds the winner's entry and asks
//! [`Checked::against`] again with it, which answers `Duplicate` or `Reject(conflict)`.

use pons_core::SpiffeId;

use crate::frame::{Frame, FrameError};
use crate::reject::RejectCode;
use crate::RecordId;

/// What the caller learnt from an envelope that opened and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The record id in the payload.
    pub record_id: RecordId,
    /// The identity in the signing certificate.
    pub signer: SpiffeId,
    /// SHA-256 of the envelope bytes exactly as received.
    pub envelope_sha256: [u8; 32],
}

/// A refusal: the code and reason of the `Reject` frame to answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Refusal {
    /// Why.
    pub code: RejectCode,
    /// Detail for the sender's operator; never record content.
    pub reason: String,
}

impl Refusal {
    /// A refusal with this code and reason.
    pub fn new(code: RejectCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// The `Reject` frame carrying this refusal.
    pub fn frame(&self) -> Frame {
        Frame::Reject {
            code: self.code,
            reason: self.reason.clone(),
        }
    }
}

/// The policy's answer for (signer, class, this node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The signer may send this class here.
    Allowed,
    /// It may not; the reason names the rule (never record content).
    Denied {
        /// Which rule.
        reason: String,
    },
}

/// What the inbox holds for the record id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// SHA-256 of the envelope bytes received first.
    pub envelope_sha256: [u8; 32],
    /// The receipt sent for them, to send again unchanged.
    pub receipt: Vec<u8>,
}

/// What to do with a `Deliver`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// New record: store it durably, then build a receipt and answer `Frame::Receipt`.
    Accept {
        /// The record.
        record_id: RecordId,
        /// Its envelope's SHA-256, to store and to put in the receipt.
        envelope_sha256: [u8; 32],
    },
    /// Already stored with the same bytes: answer the original receipt again.
    Duplicate {
        /// The original receipt.
        receipt: Vec<u8>,
    },
    /// Answer `Frame::Reject`.
    Reject(Refusal),
}

impl Decision {
    /// The response frame, when no store write is needed first: `None` for `Accept`.
    pub fn frame(&self) -> Option<Frame> {
        match self {
            Decision::Accept { .. } => None,
            Decision::Duplicate { receipt } => Some(Frame::Receipt {
                receipt: receipt.clone(),
            }),
            Decision::Reject(refusal) => Some(refusal.frame()),
        }
    }
}

/// A record that passed every check but the inbox lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    record_id: RecordId,
    envelope_sha256: [u8; 32],
}

impl Checked {
    /// The record id, to look up in the inbox.
    pub fn record_id(&self) -> RecordId {
        self.record_id
    }

    /// The decision given what the inbox holds for this id.
    pub fn against(&self, stored: Option<&Stored>) -> Decision {
        match stored {
            None => Decision::Accept {
                record_id: self.record_id,
                envelope_sha256: self.envelope_sha256,
            },
            Some(s) if s.envelope_sha256 == self.envelope_sha256 => Decision::Duplicate {
                receipt: s.receipt.clone(),
            },
            Some(_) => Decision::Reject(Refusal::new(
                RejectCode::Conflict,
                format!(
                    "record {} was already received with other bytes",
                    self.record_id
                ),
            )),
        }
    }
}

/// The envelope of the first frame of a request stream, or the refusal to answer.
///
/// `frame` is what the caller's [`crate::FrameDecoder`] returned once the peer finished its
/// side (or the decoder failed); a stream must carry exactly one `Deliver`.
pub fn refusal_for_frame(frame: Result<Option<Frame>, FrameError>) -> Result<Vec<u8>, Refusal> {
    match frame {
        Ok(Some(Frame::Deliver { envelope })) => Ok(envelope),
        Ok(Some(other)) => Err(Refusal::new(
            RejectCode::Malformed,
            format!("expected a deliver frame, got {}", other.type_name()),
        )),
        Ok(None) => Err(Refusal::new(
            RejectCode::Malformed,
            "stream ended before a deliver frame",
        )),
        Err(e) => Err(Refusal::new(e.reject_code(), e.to_string())),
    }
}

/// Checks 2–4 of the module documentation: opening, signer, policy.
pub fn check(
    opened: Result<Verified, Refusal>,
    peer: &SpiffeId,
    policy: Policy,
) -> Result<Checked, Refusal> {
    let verified = opened?;
    if verified.signer != *peer {
        return Err(Refusal::new(
            RejectCode::SignerMismatch,
            format!(
                "stream peer {} is not the envelope signer {}",
                spiffe(peer),
                spiffe(&verified.signer)
            ),
        ));
    }
    if let Policy::Denied { reason } = policy {
        return Err(Refusal::new(RejectCode::PolicyDenied, reason));
    }
    Ok(Checked {
        record_id: verified.record_id,
        envelope_sha256: verified.envelope_sha256,
    })
}

/// All checks at once, for a caller that has every answer at hand.
///
/// `lookup` is called only if checks 2–4 pass, with the record id to look up.
pub fn decide(
    opened: Result<Verified, Refusal>,
    peer: &SpiffeId,
    policy: Policy,
    lookup: impl FnOnce(RecordId) -> Option<Stored>,
) -> Decision {
    match check(opened, peer, policy) {
        Ok(checked) => checked.against(lookup(checked.record_id).as_ref()),
        Err(refusal) => Decision::Reject(refusal),
    }
}

fn spiffe(id: &SpiffeId) -> String {
    format!("spiffe://{}/node/{}", id.federation, id.node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> RecordId {
        RecordId::from_u128(n)
    }

    fn node(name: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://pons.example/node/{name}")).expect("valid test id")
    }

    fn verified(n: u128, signer: &str, hash: u8) -> Result<Verified, Refusal> {
        Ok(Verified {
            record_id: id(n),
            signer: node(signer),
            envelope_sha256: [hash; 32],
        })
    }

    fn no_lookup(_: RecordId) -> Option<Stored> {
        panic!("the inbox must not be consulted before authentication and policy")
    }

    #[test]
    fn new_record_is_accepted() {
        let d = decide(verified(1, "vaj", 7), &node("vaj"), Policy::Allowed, |_| {
            None
        });
        assert_eq!(
            d,
            Decision::Accept {
                record_id: id(1),
                envelope_sha256: [7; 32]
            }
        );
        assert_eq!(d.frame(), None);
    }

    #[test]
    fn same_bytes_get_the_original_receipt() {
        let stored = Stored {
            envelope_sha256: [7; 32],
            receipt: b"original".to_vec(),
        };
        let d = decide(
            verified(1, "vaj", 7),
            &node("vaj"),
            Policy::Allowed,
            |looked| {
                assert_eq!(looked, id(1));
                Some(stored.clone())
            },
        );
        assert_eq!(
            d.frame(),
            Some(Frame::Receipt {
                receipt: b"original".to_vec()
            })
        );
    }

    #[test]
    fn same_id_other_bytes_is_a_conflict() {
        let stored = Stored {
            envelope_sha256: [8; 32],
            receipt: b"original".to_vec(),
        };
        let d = decide(verified(1, "vaj", 7), &node("vaj"), Policy::Allowed, |_| {
            Some(stored)
        });
        let Decision::Reject(r) = d else {
            panic!("expected a reject, got {d:?}")
        };
        assert_eq!(r.code, RejectCode::Conflict);
        assert!(r.reason.contains(&id(1).to_string()), "{}", r.reason);
    }

    #[test]
    fn failed_opening_is_answered_before_anything_else() {
        let refusal = Refusal::new(RejectCode::InvalidSignature, "signature does not verify");
        // Even with a mismatching peer and a denying policy, the opening error wins.
        let d = decide(
            Err(refusal.clone()),
            &node("other"),
            Policy::Denied {
                reason: "no".into(),
            },
            no_lookup,
        );
        assert_eq!(d, Decision::Reject(refusal));
    }

    #[test]
    fn peer_must_be_the_signer_before_policy_is_consulted() {
        let d = decide(
            verified(1, "vaj", 7),
            &node("police"),
            Policy::Denied {
                reason: "no".into(),
            },
            no_lookup,
        );
        let Decision::Reject(r) = d else {
            panic!("expected a reject, got {d:?}")
        };
        assert_eq!(r.code, RejectCode::SignerMismatch);
        assert_eq!(
            r.reason,
            "stream peer spiffe://pons.example/node/police is not the envelope signer \
             spiffe://pons.example/node/vaj"
        );
        // Same node name in another federation is another node.
        let foreign = SpiffeId::parse("spiffe://elsewhere.example/node/vaj").expect("valid");
        let d = decide(verified(1, "vaj", 7), &foreign, Policy::Allowed, no_lookup);
        assert!(matches!(
            d,
            Decision::Reject(Refusal {
                code: RejectCode::SignerMismatch,
                ..
            })
        ));
    }

    #[test]
    fn policy_denial_hides_whether_the_id_exists() {
        let d = decide(
            verified(1, "vaj", 7),
            &node("vaj"),
            Policy::Denied {
                reason: "vaj may not send follow-up-request to cuta".into(),
            },
            no_lookup,
        );
        assert_eq!(
            d.frame(),
            Some(Frame::Reject {
                code: RejectCode::PolicyDenied,
                reason: "vaj may not send follow-up-request to cuta".into()
            })
        );
    }

    #[test]
    fn checked_record_can_be_rechecked_after_a_lost_insert_race() {
        let checked = check(verified(2, "vaj", 1), &node("vaj"), Policy::Allowed).expect("passes");
        assert_eq!(checked.record_id(), id(2));
        assert!(matches!(checked.against(None), Decision::Accept { .. }));
        let winner = Stored {
            envelope_sha256: [1; 32],
            receipt: b"r".to_vec(),
        };
        assert_eq!(
            checked.against(Some(&winner)),
            Decision::Duplicate {
                receipt: b"r".to_vec()
            }
        );
    }

    #[test]
    fn request_stream_must_carry_one_deliver() {
        assert_eq!(
            refusal_for_frame(Ok(Some(Frame::Deliver { envelope: vec![1] }))),
            Ok(vec![1])
        );
        let r = refusal_for_frame(Ok(Some(Frame::Receipt { receipt: vec![] }))).unwrap_err();
        assert_eq!(
            (r.code, r.reason.as_str()),
            (
                RejectCode::Malformed,
                "expected a deliver frame, got receipt"
            )
        );
        let r = refusal_for_frame(Ok(None)).unwrap_err();
        assert_eq!(r.code, RejectCode::Malformed);
        let r = refusal_for_frame(Err(FrameError::TooLarge { len: 10, max: 5 })).unwrap_err();
        assert_eq!(
            r,
            Refusal::new(
                RejectCode::FrameTooLarge,
                "frame length 10 exceeds the limit of 5 bytes"
            )
        );
        let r = refusal_for_frame(Err(FrameError::NotAMap)).unwrap_err();
        assert_eq!(r.code, RejectCode::Malformed);
    }
}
