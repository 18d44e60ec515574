//! Signed journal checkpoints and their countersignatures by peers.
//!
//! A hash chain shows any change to an entry, but not a journal cut short or rewritten from
//! some entry on: the keeper can recompute every later hash. A **checkpoint** is the node's
//! signed statement "my journal had `seq` entries and its head hash was `head` at `time`"
//! (COSE_Sign1, [`CHECKPOINT_CONTENT_TYPE`]). The node sends it to its peers; each peer
//! verifies the signature and answers a **countersignature** ([`Cosigned`], its own
//! COSE_Sign1 over the node's envelope, [`COSIGNED_CONTENT_TYPE`]) and keeps a copy. From then
//! on the node cannot truncate or rewrite its journal before `seq` without the peer's copy
//! (or its own stored countersignature) showing it: [`check_journal`].
//!
//! No I/O, no clock: times are arguments.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cose::{self, OpenError, SealError, Signer};
use crate::identity::NodeId;
use crate::journal::ChainHead;
use crate::key::SigningAlgorithm;
use crate::trust::Trust;

/// Content type of a node's signed checkpoint.
pub const CHECKPOINT_CONTENT_TYPE: &str = "application/pons-checkpoint+cbor";

/// Content type of a peer's countersignature of a checkpoint.
pub const COSIGNED_CONTENT_TYPE: &str = "application/pons-cosigned+cbor";

/// Format version of [`Checkpoint`] and [`Cosigned`].
pub const CHECKPOINT_VERSION: u64 = 1;

/// A node's statement of its journal head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// [`CHECKPOINT_VERSION`].
    pub v: u64,
    /// The node whose journal this is (and who signs).
    pub node: NodeId,
    /// Number of entries (the sequence number of the last one).
    pub seq: u64,
    /// Hash of entry `seq`.
    #[serde(with = "bytes32")]
    pub head: [u8; 32],
    /// When the checkpoint was made (the node's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// A peer's countersignature: "I, `cosigner`, saw this signed checkpoint at `time`".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cosigned {
    /// [`CHECKPOINT_VERSION`].
    pub v: u64,
    /// The peer that countersigns.
    pub cosigner: NodeId,
    /// The node's checkpoint envelope, exactly as signed.
    #[serde(with = "bytes_vec")]
    pub checkpoint: Vec<u8>,
    /// When the peer countersigned (the peer's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// Why a checkpoint or countersignature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The envelope did not open.
    #[error("checkpoint envelope: {0}")]
    Open(OpenError),
    /// Sealing failed.
    #[error("checkpoint sealing: {0}")]
    Seal(SealError),
    /// The payload is not the expected CBOR map.
    #[error("checkpoint payload does not decode: {0}")]
    Decode(String),
    /// The payload has bytes after its CBOR map.
    #[error("checkpoint payload has trailing bytes")]
    TrailingData,
    /// Unknown version.
    #[error("checkpoint version {0} is not {CHECKPOINT_VERSION}")]
    Version(u64),
    /// The signer is not the node the payload names.
    #[error("checkpoint of {named} is signed by {signer}")]
    WrongSigner {
        /// The node the payload names.
        named: NodeId,
        /// The node that signed.
        signer: NodeId,
    },
    /// The envelope's key id is not the node the payload names.
    #[error("checkpoint of {named} has key id {kid:?}")]
    KidMismatch {
        /// The node the payload names.
        named: NodeId,
        /// The key id in the envelope.
        kid: String,
    },
    /// The certificate given to verify with is unusable.
    #[error("checkpoint certificate: {0}")]
    Certificate(String),
    /// A node asked to countersign its own checkpoint.
    #[error("node {0} cannot countersign its own checkpoint")]
    OwnCheckpoint(NodeId),
    /// The checkpoint goes backwards against one already countersigned for the same node.
    #[error("checkpoint of {node} at entry {seq} contradicts the one countersigned at entry {known_seq}: {reason}")]
    Contradicts {
        /// The node.
        node: NodeId,
        /// The new checkpoint's seq.
        seq: u64,
        /// The earlier checkpoint's seq.
        known_seq: u64,
        /// What contradicts.
        reason: &'static str,
    },
}

impl Checkpoint {
    /// A checkpoint of `node`'s journal at `head`.
    pub fn new(node: NodeId, head: ChainHead, time: OffsetDateTime) -> Checkpoint {
        Checkpoint {
            v: CHECKPOINT_VERSION,
            node,
            seq: head.seq,
            head: head.hash,
            time,
        }
    }

    /// The chain head this checkpoint names.
    pub fn chain_head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.head,
        }
    }

    /// Seals with the node's signer; the signer must be the node named.
    pub fn seal(&self, signer: &Signer) -> Result<Vec<u8>, CheckpointError> {
        if signer.node() != &self.node {
            return Err(CheckpointError::WrongSigner {
                named: self.node.clone(),
                signer: signer.node().clone(),
            });
        }
        let mut payload = Vec::new();
        ciborium::into_writer(self, &mut payload)
            .map_err(|e| CheckpointError::Decode(e.to_string()))?;
        cose::seal(&payload, CHECKPOINT_CONTENT_TYPE, signer).map_err(CheckpointError::Seal)
    }

    /// Opens a checkpoint envelope, verifying its signer against `trust` at `now`.
    pub fn open(
        bytes: &[u8],
        trust: &Trust,
        now: OffsetDateTime,
    ) -> Result<Checkpoint, CheckpointError> {
        let opened = cose::open(bytes, CHECKPOINT_CONTENT_TYPE, trust, now)
            .map_err(CheckpointError::Open)?;
        let c: Checkpoint = decode(&opened.payload)?;
        if c.node != opened.signer {
            return Err(CheckpointError::WrongSigner {
                named: c.node,
                signer: opened.signer,
            });
        }
        Ok(c)
    }

    /// Opens a checkpoint envelope with the node's public key (offline verification of an
    /// export with the node's signing certificate). The key id must name the node.
    pub fn open_with_key(
        bytes: &[u8],
        algorithm: SigningAlgorithm,
        public_key: &[u8],
    ) -> Result<Checkpoint, CheckpointError> {
        let opened =
            cose::open_with_public_key(bytes, CHECKPOINT_CONTENT_TYPE, algorithm, public_key)
                .map_err(CheckpointError::Open)?;
        let c: Checkpoint = decode(&opened.payload)?;
        if opened.kid != c.node.as_str().as_bytes() {
            return Err(CheckpointError::KidMismatch {
                named: c.node,
                kid: String::from_utf8_lossy(&opened.kid)
                    .chars()
                    .take(80)
                    .collect(),
            });
        }
        Ok(c)
    }
}

/// Opens a checkpoint envelope with the key of the node's signing certificate (DER), for
/// offline verification of an export: the certificate's SPIFFE ID must name the node that
/// the checkpoint names. The certificate's chain and validity are not checked here.
pub fn open_with_certificate(bytes: &[u8], cert_der: &[u8]) -> Result<Checkpoint, CheckpointError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let bad = |reason: String| CheckpointError::Certificate(reason);
    let id = crate::identity::SpiffeId::from_certificate_der(cert_der)
        .map_err(|e| bad(e.to_string()))?;
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| bad(e.to_string()))?;
    let spki = cert.public_key();
    let algorithm = match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.3.101.112" => SigningAlgorithm::Ed25519,
        "1.2.840.10045.2.1" => SigningAlgorithm::EcdsaP256Sha256,
        other => {
            return Err(bad(format!(
                "key algorithm {other} is not Ed25519 or P-256"
            )))
        }
    };
    let c = Checkpoint::open_with_key(bytes, algorithm, &spki.subject_public_key.data)?;
    if c.node != id.node {
        return Err(CheckpointError::WrongSigner {
            named: c.node,
            signer: id.node,
        });
    }
    Ok(c)
}

impl Cosigned {
    /// Countersigns `checkpoint` (a node's envelope) as `signer` at `now`, after verifying
    /// it against `trust`. `last` is the latest checkpoint of the same node this peer
    /// countersigned before, if any: a checkpoint with fewer entries, or the same number
    /// with another head, contradicts it and is refused (the node truncated or rewrote its
    /// journal).
    pub fn cosign(
        checkpoint: &[u8],
        last: Option<&Checkpoint>,
        trust: &Trust,
        now: OffsetDateTime,
        signer: &Signer,
    ) -> Result<(Checkpoint, Vec<u8>), CheckpointError> {
        let c = Checkpoint::open(checkpoint, trust, now)?;
        if &c.node == signer.node() {
            return Err(CheckpointError::OwnCheckpoint(c.node));
        }
        if let Some(last) = last {
            check_successor(last, &c)?;
        }
        let cosigned = Cosigned {
            v: CHECKPOINT_VERSION,
            cosigner: signer.node().clone(),
            checkpoint: checkpoint.to_vec(),
            time: now,
        };
        let mut payload = Vec::new();
        ciborium::into_writer(&cosigned, &mut payload)
            .map_err(|e| CheckpointError::Decode(e.to_string()))?;
        let env =
            cose::seal(&payload, COSIGNED_CONTENT_TYPE, signer).map_err(CheckpointError::Seal)?;
        Ok((c, env))
    }

    /// Opens a countersignature and the checkpoint inside it, both against `trust` at `now`.
    pub fn open(
        bytes: &[u8],
        trust: &Trust,
        now: OffsetDateTime,
    ) -> Result<(Cosigned, Checkpoint), CheckpointError> {
        let opened =
            cose::open(bytes, COSIGNED_CONTENT_TYPE, trust, now).map_err(CheckpointError::Open)?;
        let cs: Cosigned = decode(&opened.payload)?;
        if cs.cosigner != opened.signer {
            return Err(CheckpointError::WrongSigner {
                named: cs.cosigner,
                signer: opened.signer,
            });
        }
        let c = Checkpoint::open(&cs.checkpoint, trust, now)?;
        Ok((cs, c))
    }
}

/// Whether `next` may follow `last` for the same node: not fewer entries, and the same head
/// when the number of entries is the same.
pub fn check_successor(last: &Checkpoint, next: &Checkpoint) -> Result<(), CheckpointError> {
    let contradicts = |reason| CheckpointError::Contradicts {
        node: next.node.clone(),
        seq: next.seq,
        known_seq: last.seq,
        reason,
    };
    if next.node != last.node {
        return Err(contradicts("another node"));
    }
    if next.seq < last.seq {
        return Err(contradicts("fewer entries: the journal was truncated"));
    }
    if next.seq == last.seq && next.head != last.head {
        return Err(contradicts(
            "another head at the same entry: the journal was rewritten",
        ));
    }
    Ok(())
}

/// Why a journal does not agree with a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointFault {
    /// The journal has fewer entries than a checkpoint covers.
    #[error("truncated: {by} size {seq} with head {head}, journal has {len} entries")]
    Truncated {
        /// Who vouches for the checkpoint (`peer X cosigned` or `node X signed`).
        by: String,
        /// Entries the checkpoint covers.
        seq: u64,
        /// The checkpoint's head, hex.
        head: String,
        /// Entries the journal has.
        len: u64,
    },
    /// The journal's entry at the checkpoint's seq has another hash.
    #[error(
        "rewritten: {by} head {head} at entry {seq}, the journal's entry {seq} has hash {found}"
    )]
    Rewritten {
        /// Who signed the checkpoint.
        by: String,
        /// The entry.
        seq: u64,
        /// The checkpoint's head, hex.
        head: String,
        /// The entry's hash, hex.
        found: String,
    },
}

/// Checks a journal of `len` entries against a checkpoint signed `by` someone; `hash_at`
/// gives the hash of the journal's entry `seq` (None if absent or pruned).
pub fn check_journal(
    checkpoint: &Checkpoint,
    by: &str,
    len: u64,
    hash_at: impl FnOnce(u64) -> Option<[u8; 32]>,
) -> Result<(), CheckpointFault> {
    if checkpoint.seq > len {
        return Err(CheckpointFault::Truncated {
            by: by.to_owned(),
            seq: checkpoint.seq,
            head: hex::encode(checkpoint.head),
            len,
        });
    }
    if checkpoint.seq == 0 {
        return Ok(());
    }
    match hash_at(checkpoint.seq) {
        Some(h) if h == checkpoint.head => Ok(()),
        Some(h) => Err(CheckpointFault::Rewritten {
            by: by.to_owned(),
            seq: checkpoint.seq,
            head: hex::encode(checkpoint.head),
            found: hex::encode(h),
        }),
        // Pruned before an anchor: nothing left to compare.
        None => Ok(()),
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, CheckpointError> {
    let mut cursor = Cursor::new(payload);
    let v: T =
        ciborium::from_reader(&mut cursor).map_err(|e| CheckpointError::Decode(e.to_string()))?;
    if usize::try_from(cursor.position()).unwrap_or(usize::MAX) != payload.len() {
        return Err(CheckpointError::TrailingData);
    }
    Ok(v)
}

mod bytes32 {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = [u8; 32];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string of 32 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                <[u8; 32]>::try_from(v).map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(V)
    }
}

mod bytes_vec {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}
