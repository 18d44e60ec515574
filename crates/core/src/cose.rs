//! Sealing and opening COSE_Sign1 envelopes (RFC 9052) with a certificate chain (RFC 9360).
//!
//! An envelope made by [`seal`] is a **tagged** COSE_Sign1 (CBOR tag 18) whose protected
//! header holds everything a verifier needs, so that all of it is covered by the signature
//! and an envelope can be verified offline years later:
//!
//! | label | header | value |
//! |---|---|---|
//! | 1 | alg | -8 EdDSA (Ed25519 key) or -7 ES256 (P-256 key) |
//! | 3 | content type | e.g. `application/pons-record+cbor` |
//! | 4 | kid | the signer's node id, UTF-8 |
//! | 33 | x5chain | the signing certificate (bstr), or leaf-first array of bstr with intermediates |
//!
//! The unprotected header is empty. [`open`] also accepts x5chain in the unprotected header
//! (RFC 9360 allows either; other COSE implementations such as pycose put it there), since
//! the chain is verified on its own and the leaf must then verify the signature; no other
//! unprotected header is accepted, so unsigned bytes cannot carry meaning.

use std::fmt;

use coset::cbor::Value;
use coset::iana::{self, EnumI64};
use coset::{
    Algorithm, ContentType, CoseSign1, CoseSign1Builder, HeaderBuilder, Label,
    TaggedCborSerializable,
};
use time::OffsetDateTime;

use crate::identity::{IdentityError, NodeId, SpiffeId};
use crate::key::{KeyError, SigningAlgorithm, SigningKey};
use crate::trust::{SignerKey, Trust, TrustError};

/// Largest envelope accepted by [`open`] or produced by [`seal`], in bytes (1 MiB).
pub const MAX_ENVELOPE_LEN: usize = 1 << 20;

/// Content type of a record envelope.
pub const RECORD_CONTENT_TYPE: &str = "application/pons-record+cbor";

/// Content type of a receipt envelope.
pub const RECEIPT_CONTENT_TYPE: &str = "application/pons-receipt+cbor";

/// COSE header label of x5chain (RFC 9360).
pub const X5CHAIN_LABEL: i64 = 33;

/// CBOR tag 18 (COSE_Sign1) in its one-byte encoding, the only encoding accepted.
const TAG18: u8 = 0xd2;

/// A node's record-signing key with its certificate chain.
pub struct Signer {
    key: SigningKey,
    node: NodeId,
    chain: Vec<Vec<u8>>,
}

impl Signer {
    /// Ties `key` to its certificate chain (leaf first, then intermediates, DER).
    ///
    /// The leaf must certify `key` and carry the SPIFFE ID of `node`, so that an envelope
    /// sealed by this signer never names a kid its own certificate contradicts.
    pub fn new(key: SigningKey, node: NodeId, chain: Vec<Vec<u8>>) -> Result<Self, SignerError> {
        let leaf = chain.first().ok_or(SignerError::EmptyChain)?;
        key.check_certificate(leaf).map_err(SignerError::Key)?;
        let id = SpiffeId::from_certificate_der(leaf).map_err(SignerError::Identity)?;
        if id.node != node {
            return Err(SignerError::NodeMismatch {
                node,
                certificate: id.to_string(),
            });
        }
        Ok(Self { key, node, chain })
    }

    /// The signing node.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The algorithm of the signing key.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.key.algorithm()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("node", &self.node)
            .field("algorithm", &self.key.algorithm())
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Why a [`Signer`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// No certificate was given.
    #[error("signer certificate chain is empty: the signing certificate is required")]
    EmptyChain,
    /// The key does not match the leaf certificate.
    #[error("signer key: {0}")]
    Key(KeyError),
    /// The leaf certificate has no usable SPIFFE ID.
    #[error("signer certificate: {0}")]
    Identity(IdentityError),
    /// The leaf certificate names another node.
    #[error("signer node {node} does not match its certificate's SPIFFE ID {certificate}")]
    NodeMismatch {
        /// The node the signer was made for.
        node: NodeId,
        /// The SPIFFE ID in the certificate.
        certificate: String,
    },
}

/// Seals `payload` into a tagged COSE_Sign1 with content type `content_type`.
///
/// The content type must be non-empty printable ASCII without surrounding spaces: COSE
/// decoders (coset among them) refuse anything else, so such an envelope could not be
/// opened.
pub fn seal(payload: &[u8], content_type: &str, signer: &Signer) -> Result<Vec<u8>, SealError> {
    let printable = content_type
        .bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ');
    if content_type.is_empty() || !printable || content_type.trim() != content_type {
        return Err(SealError::BadContentType(
            content_type.chars().take(80).collect(),
        ));
    }
    let alg = match signer.key.algorithm() {
        SigningAlgorithm::Ed25519 => iana::Algorithm::EdDSA,
        SigningAlgorithm::EcdsaP256Sha256 => iana::Algorithm::ES256,
    };
    // RFC 9360 §2: one certificate is a bstr, more are an array of bstr.
    let x5chain = match signer.chain.as_slice() {
        [one] => Value::Bytes(one.clone()),
        many => Value::Array(many.iter().map(|c| Value::Bytes(c.clone())).collect()),
    };
    let protected = HeaderBuilder::new()
        .algorithm(alg)
        .content_type(content_type.to_owned())
        .key_id(signer.node.as_str().as_bytes().to_vec())
        .value(X5CHAIN_LABEL, x5chain)
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload.to_vec())
        .try_create_signature(b"", |tbs| signer.key.sign(tbs))
        .map_err(SealError::Signing)?
        .build();
    let bytes = sign1
        .to_tagged_vec()
        .map_err(|e| SealError::Encode(e.to_string()))?;
    if bytes.len() > MAX_ENVELOPE_LEN {
        return Err(SealError::TooLarge { len: bytes.len() });
    }
    Ok(bytes)
}

/// Why [`seal`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key refused to sign.
    #[error("sealing: {0}")]
    Signing(KeyError),
    /// The content type is empty, not printable ASCII or has surrounding spaces.
    #[error("sealing: content type {0:?} is invalid: non-empty printable ASCII is required")]
    BadContentType(String),
    /// The COSE structure could not be encoded.
    #[error("sealing: COSE_Sign1 could not be encoded: {0}")]
    Encode(String),
    /// The envelope would exceed [`MAX_ENVELOPE_LEN`].
    #[error("sealing: envelope of {len} bytes exceeds the limit of {MAX_ENVELOPE_LEN} bytes")]
    TooLarge {
        /// The envelope's size.
        len: usize,
    },
}

/// A verified envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The payload bytes, as signed.
    pub payload: Vec<u8>,
    /// The node whose certificate signed it.
    pub signer: NodeId,
    /// The signature algorithm.
    pub algorithm: SigningAlgorithm,
    /// SHA-256 of the whole envelope, as a receipt names it.
    pub envelope_sha256: [u8; 32],
    /// The signer's certificate chain as carried in the envelope, leaf first.
    pub signer_chain: Vec<Vec<u8>>,
}

/// An envelope whose signature verified with a key given by the caller.
///
/// Nothing about the signer's identity is established: the kid is only what the
/// envelope claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedWithKey {
    /// The payload bytes, as signed.
    pub payload: Vec<u8>,
    /// The key id the envelope claims (unverified).
    pub kid: Vec<u8>,
    /// The signature algorithm.
    pub algorithm: SigningAlgorithm,
    /// SHA-256 of the whole envelope.
    pub envelope_sha256: [u8; 32],
}

/// SHA-256 of envelope bytes.
pub fn envelope_sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The parts of an envelope that passed the structural checks.
struct Parsed {
    sign1: CoseSign1,
    algorithm: SigningAlgorithm,
    kid: Vec<u8>,
    payload: Vec<u8>,
}

fn alg_name(alg: &Algorithm) -> String {
    match alg {
        Algorithm::Assigned(a) => a.to_i64().to_string(),
        Algorithm::PrivateUse(i) => i.to_string(),
        Algorithm::Text(t) => format!("{t:?}"),
    }
}

fn label_name(label: &Label) -> String {
    match label {
        Label::Int(i) => i.to_string(),
        Label::Text(t) => format!("{t:?}"),
    }
}

/// The payload of an envelope that this node verified (or sealed) before and kept in its
/// own store, read back with the structural checks of [`open`] but without verifying the
/// signature and chain again. Never for bytes from elsewhere: those go through [`open`].
pub fn stored_payload(envelope: &[u8], expected_content_type: &str) -> Result<Vec<u8>, OpenError> {
    parse(envelope, expected_content_type).map(|p| p.payload)
}

/// Structural checks shared by [`open`] and [`open_with_public_key`]: size, tag,
/// headers, content type, attached payload.
fn parse(envelope: &[u8], expected_content_type: &str) -> Result<Parsed, OpenError> {
    if envelope.len() > MAX_ENVELOPE_LEN {
        return Err(OpenError::TooLarge {
            len: envelope.len(),
        });
    }
    if envelope.first() != Some(&TAG18) {
        return Err(OpenError::NotTagged);
    }
    let sign1 =
        CoseSign1::from_tagged_slice(envelope).map_err(|e| OpenError::Malformed(e.to_string()))?;
    let protected = &sign1.protected.header;
    if !protected.crit.is_empty() {
        return Err(OpenError::CriticalHeader);
    }
    // Only x5chain may be unprotected: anything else there is unsigned and would let a
    // third party change what a verifier sees without breaking the signature.
    let unprotected = &sign1.unprotected;
    let only_x5chain = unprotected.alg.is_none()
        && unprotected.crit.is_empty()
        && unprotected.content_type.is_none()
        && unprotected.key_id.is_empty()
        && unprotected.iv.is_empty()
        && unprotected.partial_iv.is_empty()
        && unprotected.counter_signatures.is_empty();
    if !only_x5chain {
        return Err(OpenError::UnprotectedHeader(
            "a core parameter (1-7)".to_owned(),
        ));
    }
    if let Some((label, _)) = unprotected
        .rest
        .iter()
        .find(|(l, _)| *l != Label::Int(X5CHAIN_LABEL))
    {
        return Err(OpenError::UnprotectedHeader(label_name(label)));
    }
    if let Some((label, _)) = protected
        .rest
        .iter()
        .find(|(l, _)| *l != Label::Int(X5CHAIN_LABEL))
    {
        return Err(OpenError::UnknownHeader(label_name(label)));
    }
    let algorithm = match &protected.alg {
        None => return Err(OpenError::MissingAlgorithm),
        Some(Algorithm::Assigned(iana::Algorithm::EdDSA)) => SigningAlgorithm::Ed25519,
        Some(Algorithm::Assigned(iana::Algorithm::ES256)) => SigningAlgorithm::EcdsaP256Sha256,
        Some(other) => return Err(OpenError::UnsupportedAlgorithm(alg_name(other))),
    };
    match &protected.content_type {
        Some(ContentType::Text(ct)) if ct == expected_content_type => {}
        found => {
            return Err(OpenError::ContentTypeMismatch {
                expected: expected_content_type.to_owned(),
                found: match found {
                    None => "none".to_owned(),
                    Some(ContentType::Text(t)) => format!("{t:?}"),
                    Some(ContentType::Assigned(a)) => format!("CoAP format {}", a.to_i64()),
                },
            })
        }
    }
    if protected.key_id.is_empty() {
        return Err(OpenError::MissingKid);
    }
    let kid = protected.key_id.clone();
    let payload = sign1.payload.clone().ok_or(OpenError::DetachedPayload)?;
    Ok(Parsed {
        sign1,
        algorithm,
        kid,
        payload,
    })
}

/// Reads x5chain from the protected or the unprotected header (not both), leaf first.
fn x5chain(sign1: &CoseSign1) -> Result<Vec<Vec<u8>>, OpenError> {
    let find = |rest: &[(Label, Value)]| {
        rest.iter()
            .find(|(l, _)| *l == Label::Int(X5CHAIN_LABEL))
            .map(|(_, v)| v.clone())
    };
    let value = match (
        find(&sign1.protected.header.rest),
        find(&sign1.unprotected.rest),
    ) {
        (Some(_), Some(_)) => return Err(OpenError::DuplicateX5chain),
        (None, None) => return Err(OpenError::MissingX5chain),
        (Some(v), None) | (None, Some(v)) => v,
    };
    match value {
        Value::Bytes(b) if !b.is_empty() => Ok(vec![b]),
        Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .map(|v| match v {
                Value::Bytes(b) if !b.is_empty() => Ok(b),
                _ => Err(OpenError::BadX5chain),
            })
            .collect(),
        _ => Err(OpenError::BadX5chain),
    }
}

/// Opens an envelope: checks its structure, its signer's certificate chain against
/// `trust` at `now` (document-signing usage), and its signature.
///
/// Rules: at most [`MAX_ENVELOPE_LEN`] bytes; CBOR tag 18; no critical or unknown
/// protected header and nothing but x5chain unprotected; alg -8 or -7 matching the leaf
/// key type; content type equal to `expected_content_type`; an attached payload; the
/// chain trusted; the signature valid over Sig_structure1 (empty external aad); kid equal
/// to the node of the leaf's SPIFFE ID.
pub fn open(
    envelope: &[u8],
    expected_content_type: &str,
    trust: &Trust,
    now: OffsetDateTime,
) -> Result<Opened, OpenError> {
    let parsed = parse(envelope, expected_content_type)?;
    let chain = x5chain(&parsed.sign1)?;
    let (leaf, intermediates) = chain.split_first().ok_or(OpenError::MissingX5chain)?;
    let (id, signer) = trust
        .verify_signer(leaf, intermediates, now)
        .map_err(OpenError::Untrusted)?;
    let SignerKey {
        algorithm: key_alg,
        key: public_key,
    } = signer.map_err(OpenError::BadLeaf)?;
    match key_alg {
        None => return Err(OpenError::UnsupportedKey),
        Some(k) if k != parsed.algorithm => {
            return Err(OpenError::AlgorithmKeyMismatch {
                alg: parsed.algorithm,
                key: k,
            })
        }
        Some(_) => {}
    }
    parsed
        .sign1
        .verify_signature(b"", |sig, tbs| {
            parsed.algorithm.verify(&public_key, tbs, sig)
        })
        .map_err(|_| OpenError::BadSignature)?;
    if parsed.kid != id.node.as_str().as_bytes() {
        return Err(OpenError::KidMismatch {
            kid: String::from_utf8_lossy(&parsed.kid)
                .chars()
                .take(80)
                .collect(),
            certificate: id.to_string(),
        });
    }
    Ok(Opened {
        payload: parsed.payload,
        signer: id.node,
        algorithm: parsed.algorithm,
        envelope_sha256: envelope_sha256(envelope),
        signer_chain: chain,
    })
}

/// Opens an envelope with a public key given by the caller instead of a certificate
/// chain: for interoperability tests and offline checks against a known key.
///
/// The same structural rules as [`open`] apply except that no x5chain is required (one
/// present is ignored); `algorithm` must equal the envelope's alg.
pub fn open_with_public_key(
    envelope: &[u8],
    expected_content_type: &str,
    algorithm: SigningAlgorithm,
    public_key: &[u8],
) -> Result<OpenedWithKey, OpenError> {
    let parsed = parse(envelope, expected_content_type)?;
    if parsed.algorithm != algorithm {
        return Err(OpenError::AlgorithmKeyMismatch {
            alg: parsed.algorithm,
            key: algorithm,
        });
    }
    parsed
        .sign1
        .verify_signature(b"", |sig, tbs| algorithm.verify(public_key, tbs, sig))
        .map_err(|_| OpenError::BadSignature)?;
    Ok(OpenedWithKey {
        payload: parsed.payload,
        kid: parsed.kid,
        algorithm,
        envelope_sha256: envelope_sha256(envelope),
    })
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The envelope exceeds [`MAX_ENVELOPE_LEN`].
    #[error("envelope of {len} bytes exceeds the limit of {MAX_ENVELOPE_LEN} bytes")]
    TooLarge {
        /// The envelope's size.
        len: usize,
    },
    /// The envelope does not start with CBOR tag 18.
    #[error("envelope is not a tagged COSE_Sign1: CBOR tag 18 is required")]
    NotTagged,
    /// The bytes are not a well-formed COSE_Sign1.
    #[error("envelope is not a well-formed COSE_Sign1: {0}")]
    Malformed(String),
    /// The protected header lists critical parameters.
    #[error("envelope protected header has crit parameters: none are understood")]
    CriticalHeader,
    /// A header other than x5chain is unprotected.
    #[error("envelope unprotected header has label {0}: only x5chain (33) may be unprotected")]
    UnprotectedHeader(String),
    /// The protected header has a label Pons does not know.
    #[error("envelope protected header has unknown label {0}: only alg, content type, kid and x5chain are allowed")]
    UnknownHeader(String),
    /// No alg in the protected header.
    #[error("envelope protected header has no alg: -8 (EdDSA) or -7 (ES256) is required")]
    MissingAlgorithm,
    /// The alg is not one Pons accepts.
    #[error("envelope alg {0} is not accepted: only -8 (EdDSA) and -7 (ES256)")]
    UnsupportedAlgorithm(String),
    /// The content type is not the one expected.
    #[error("envelope content type {found} does not match: expected {expected:?}")]
    ContentTypeMismatch {
        /// The content type the caller expects.
        expected: String,
        /// What the envelope says.
        found: String,
    },
    /// No kid in the protected header.
    #[error("envelope protected header has no kid: the signer's node id is required")]
    MissingKid,
    /// The payload is detached (nil).
    #[error("envelope payload is detached: an attached payload is required")]
    DetachedPayload,
    /// No x5chain header.
    #[error("envelope has no x5chain (label 33): the signer's certificate chain is required")]
    MissingX5chain,
    /// x5chain in both headers.
    #[error(
        "envelope has x5chain in both the protected and unprotected header: only one is allowed"
    )]
    DuplicateX5chain,
    /// x5chain is neither a bstr nor a non-empty array of bstr.
    #[error(
        "envelope x5chain is invalid: a certificate bstr or a non-empty array of them is required"
    )]
    BadX5chain,
    /// The leaf certificate could not be parsed.
    #[error("envelope signing certificate is not valid DER X.509: {0}")]
    BadLeaf(String),
    /// The signer's chain is not trusted.
    #[error("envelope signer is not trusted: {0}")]
    Untrusted(TrustError),
    /// The leaf key is neither Ed25519 nor P-256.
    #[error("envelope signing certificate key is not Ed25519 or ECDSA P-256")]
    UnsupportedKey,
    /// The alg does not fit the leaf key.
    #[error("envelope alg {alg} does not match the signing key type {key}")]
    AlgorithmKeyMismatch {
        /// The envelope's alg.
        alg: SigningAlgorithm,
        /// The key's algorithm.
        key: SigningAlgorithm,
    },
    /// The signature does not verify.
    #[error("envelope signature does not verify with the signing certificate's key")]
    BadSignature,
    /// The kid names another node than the certificate.
    #[error(
        "envelope kid {kid:?} does not match the signing certificate's SPIFFE ID {certificate}"
    )]
    KidMismatch {
        /// The kid, as text.
        kid: String,
        /// The certificate's SPIFFE ID.
        certificate: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structural_refusals_before_any_crypto() {
        let parse = |b: &[u8]| parse(b, RECORD_CONTENT_TYPE).map(|_| ());
        assert_eq!(parse(&[]), Err(OpenError::NotTagged));
        // An untagged COSE_Sign1 array header.
        assert_eq!(
            parse(&[0x84, 0x40, 0xa0, 0x40, 0x40]),
            Err(OpenError::NotTagged)
        );
        // Tag 18 over an empty array.
        assert!(matches!(parse(&[0xd2, 0x80]), Err(OpenError::Malformed(_))));
        // Tag 18 over a well-formed COSE_Sign1 with an empty protected header.
        assert_eq!(
            parse(&[0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40]),
            Err(OpenError::MissingAlgorithm)
        );
        let big = vec![TAG18; MAX_ENVELOPE_LEN + 1];
        assert!(matches!(parse(&big), Err(OpenError::TooLarge { .. })));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut deep = vec![TAG18];
        deep.extend(std::iter::repeat_n(0x81, 100_000));
        deep.push(0x00);
        assert!(matches!(
            parse(&deep, RECORD_CONTENT_TYPE),
            Err(OpenError::Malformed(_))
        ));
    }

    #[test]
    fn sha256_of_nothing() {
        assert_eq!(
            hex::encode(envelope_sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
