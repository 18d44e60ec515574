//! The federation's trust: its name, its CA certificates and its revocation lists.
//!
//! [`Trust::verify_chain`] is the one place where a certificate chain is judged for
//! signatures (records, receipts): path to a federation CA, validity at a given time,
//! revocation, key usage, and a SPIFFE ID in this federation. It reads no file and no
//! clock: `pons-pki` reads the PEM files, the caller passes `now`.
//!
//! Successful verifications are cached per [`Trust`] value (see [`Trust::verify_chain`]):
//! a node opens envelopes and receipts of the same few signers all day, and the chain and
//! CRL signatures would otherwise be verified again for every record (docs/performance.md).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::{IdentityError, SpiffeId};
use crate::key::SigningAlgorithm;

/// id-kp-documentSigning, 1.3.6.1.5.5.7.3.36 (RFC 9336), as DER OID contents.
const EKU_DOCUMENT_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x24];
/// id-kp-serverAuth, 1.3.6.1.5.5.7.3.1.
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// id-kp-clientAuth, 1.3.6.1.5.5.7.3.2.
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// Signature algorithms accepted on certificates and CRLs (ring only).
///
/// Agency PKIs often sign with RSA, so RSA is accepted for CA signatures; the key that
/// signs envelopes is restricted separately (Ed25519 or P-256, see `cose`).
static CERT_SIGNATURE_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ED25519,
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// What a certificate is being checked for.
///
/// Each usage requires its extended key usage only if the certificate has an EKU
/// extension at all (RFC 5280 §4.2.1.12), so certificates made by a plain `openssl req`
/// without EKU also work; a certificate whose EKU lists other purposes only is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertUsage {
    /// Signing records and receipts: id-kp-documentSigning (RFC 9336).
    DocumentSigning,
    /// A TLS client: id-kp-clientAuth.
    TlsClient,
    /// A TLS server: id-kp-serverAuth.
    TlsServer,
}

impl CertUsage {
    fn key_usage(self) -> KeyUsage {
        match self {
            Self::DocumentSigning => KeyUsage::required_if_present(EKU_DOCUMENT_SIGNING),
            Self::TlsClient => KeyUsage::required_if_present(EKU_CLIENT_AUTH),
            Self::TlsServer => KeyUsage::required_if_present(EKU_SERVER_AUTH),
        }
    }
}

impl fmt::Display for CertUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DocumentSigning => "document signing (id-kp-documentSigning)",
            Self::TlsClient => "TLS client (id-kp-clientAuth)",
            Self::TlsServer => "TLS server (id-kp-serverAuth)",
        })
    }
}

/// Entries kept by a [`Trust`]'s cache of verified chains before it is cleared.
///
/// A federation has tens to hundreds of nodes, each with a TLS and a signing chain, so
/// this holds every chain a node sees in normal operation; clearing when full bounds the
/// memory an attacker presenting many valid chains could make it hold.
const CHAIN_CACHE_CAPACITY: usize = 1024;

/// A chain that verified, and the window in which that result stays true.
#[derive(Clone, Debug)]
struct VerifiedChain {
    id: SpiffeId,
    /// Latest notBefore over the leaf and the intermediates, Unix seconds.
    not_before: i64,
    /// Earliest notAfter over the leaf and the intermediates, Unix seconds.
    not_after: i64,
    /// The leaf's public key, once a signature was checked with it (see
    /// [`Trust::verify_signer`]): read from the certificate once per chain, not per
    /// envelope.
    signer_key: Option<SignerKey>,
}

/// A leaf certificate's public key, as a signature check needs it.
#[derive(Clone, Debug)]
pub(crate) struct SignerKey {
    /// The signing algorithm the key is for; `None` for a key type Pons does not sign with.
    pub(crate) algorithm: Option<SigningAlgorithm>,
    /// The subjectPublicKey bits.
    pub(crate) key: Arc<[u8]>,
}

/// A federation's trust anchors and revocation lists.
///
/// It remembers the chains it verified successfully (see [`Trust::verify_chain`]); the
/// cache lives and dies with this value, and is shared by `&self` callers across threads.
pub struct Trust {
    federation: String,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    /// Key: [`chain_key`]. Only successes are stored.
    cache: Mutex<HashMap<[u8; 32], VerifiedChain>>,
    /// Verifications answered from `cache` (for tests and benchmarks).
    cache_hits: AtomicU64,
}

impl Trust {
    /// Builds the trust of federation `federation` (e.g. `pons.example`) from its CA
    /// certificates and CRLs, all DER.
    ///
    /// At least one CA is required. CRLs are checked against the CAs when a chain is
    /// verified (a CRL is used only if a CA or intermediate in the path signed it).
    pub fn new<C, R>(federation: &str, ca_ders: &[C], crl_ders: &[R]) -> Result<Self, TrustError>
    where
        C: AsRef<[u8]>,
        R: AsRef<[u8]>,
    {
        // Same rule as the trust domain of a SPIFFE ID: reuse the one parser.
        if SpiffeId::parse(&format!("spiffe://{federation}/node/n")).is_err() {
            return Err(TrustError::BadFederation(
                federation.chars().take(80).collect(),
            ));
        }
        if ca_ders.is_empty() {
            return Err(TrustError::NoTrustAnchor);
        }
        let mut anchors = Vec::with_capacity(ca_ders.len());
        for (index, der) in ca_ders.iter().enumerate() {
            let der = CertificateDer::from(der.as_ref());
            let anchor = webpki::anchor_from_trusted_cert(&der).map_err(|e| {
                TrustError::BadCaCertificate {
                    index,
                    reason: format!("{e:?}"),
                }
            })?;
            anchors.push(anchor.to_owned());
        }
        let mut crls = Vec::with_capacity(crl_ders.len());
        for (index, der) in crl_ders.iter().enumerate() {
            let crl = OwnedCertRevocationList::from_der(der.as_ref()).map_err(|e| {
                TrustError::BadCrl {
                    index,
                    reason: format!("{e:?}"),
                }
            })?;
            crls.push(CertRevocationList::from(crl));
        }
        Ok(Self {
            federation: federation.to_owned(),
            anchors,
            crls,
            cache: Mutex::new(HashMap::new()),
            cache_hits: AtomicU64::new(0),
        })
    }

    /// The federation's name, e.g. `pons.example`.
    pub fn federation(&self) -> &str {
        &self.federation
    }

    /// Number of trust anchors.
    pub fn anchor_count(&self) -> usize {
        self.anchors.len()
    }

    /// Number of CRLs.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// Verifies `leaf_der` for `usage` at time `now`, building a path through
    /// `intermediates` to one of the federation CAs, and returns the leaf's SPIFFE ID.
    ///
    /// Rules, in the order a failure is most useful to report:
    /// - the path's signatures verify up to a federation CA (ring algorithms only);
    /// - every certificate on it is valid at `now`;
    /// - no certificate on it (leaf and intermediates) is revoked by a CRL of this trust.
    ///   A certificate whose issuer has no CRL here counts as not revoked: a federation
    ///   may run without CRLs, and an agency's sub-CA may publish none. Once a CRL from
    ///   an issuer is loaded, that issuer's certificates are checked against it. The
    ///   CRL's `nextUpdate` is not enforced, so an envelope can still be verified years
    ///   later against the last CRL; keeping CRLs fresh is `pons-pki`'s job;
    /// - the leaf's extended key usage allows `usage`, if it has an EKU extension;
    /// - the leaf carries one SPIFFE ID, in this federation.
    ///
    /// A success is cached, keyed by SHA-256 over (`usage`, `leaf_der`, `intermediates`),
    /// with the window [latest notBefore, earliest notAfter] over the leaf and the given
    /// intermediates. A later call with the same key is answered from the cache only if
    /// `now` is inside that window; otherwise the chain is verified in full again, which
    /// reports `Expired` or `NotYetValid`. Signatures and key usages do not change for the
    /// same bytes, and revocation cannot change either: the CRLs of a `Trust` are fixed
    /// at [`Trust::new`], so loading new CRLs means a new `Trust`, whose cache starts
    /// empty. Failures are never cached.
    pub fn verify_chain<I: AsRef<[u8]>>(
        &self,
        leaf_der: &[u8],
        intermediates: &[I],
        now: OffsetDateTime,
        usage: CertUsage,
    ) -> Result<SpiffeId, TrustError> {
        let now_secs = now.unix_timestamp();
        let secs = u64::try_from(now_secs).map_err(|_| TrustError::BadTime(now))?;
        let key = chain_key(usage, leaf_der, intermediates);
        if let Some((hit, _)) = self.cache_lookup(&key, now_secs) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.verify_and_cache(key, leaf_der, intermediates, secs, usage)
    }

    /// [`Trust::verify_chain`] for a document signer, with the leaf's public key
    /// (`Err` naming what is wrong if the certificate's key cannot be read); the key is
    /// cached with the chain.
    pub(crate) fn verify_signer<I: AsRef<[u8]>>(
        &self,
        leaf_der: &[u8],
        intermediates: &[I],
        now: OffsetDateTime,
    ) -> Result<(SpiffeId, Result<SignerKey, String>), TrustError> {
        let usage = CertUsage::DocumentSigning;
        let now_secs = now.unix_timestamp();
        let secs = u64::try_from(now_secs).map_err(|_| TrustError::BadTime(now))?;
        let key = chain_key(usage, leaf_der, intermediates);
        let id = match self.cache_lookup(&key, now_secs) {
            Some((id, Some(signer))) => {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok((id, Ok(signer)));
            }
            Some((id, None)) => {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                id
            }
            None => self.verify_and_cache(key, leaf_der, intermediates, secs, usage)?,
        };
        let signer = signer_key(leaf_der);
        if let Ok(signer) = &signer {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = cache.get_mut(&key) {
                entry.signer_key = Some(signer.clone());
            }
        }
        Ok((id, signer))
    }

    /// Verifies in full and caches a success under `key` (see [`Trust::verify_chain`]).
    fn verify_and_cache<I: AsRef<[u8]>>(
        &self,
        key: [u8; 32],
        leaf_der: &[u8],
        intermediates: &[I],
        secs: u64,
        usage: CertUsage,
    ) -> Result<SpiffeId, TrustError> {
        let id = self.verify_uncached(leaf_der, intermediates, secs, usage)?;
        // A chain whose window cannot be read is simply not cached: it verified anyway.
        if let Some((not_before, not_after)) = validity_window(leaf_der, intermediates) {
            self.cache_insert(
                key,
                VerifiedChain {
                    id: id.clone(),
                    not_before,
                    not_after,
                    signer_key: None,
                },
            );
        }
        Ok(id)
    }

    /// Number of chains in the verification cache.
    #[doc(hidden)]
    pub fn cache_len(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Number of verifications answered from the cache since [`Trust::new`].
    #[doc(hidden)]
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// The cached identity for `key`, if `now_secs` is inside its validity window (bounds
    /// included, as webpki: it refuses only before notBefore or after notAfter).
    fn cache_lookup(&self, key: &[u8; 32], now_secs: i64) -> Option<(SpiffeId, Option<SignerKey>)> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = cache.get(key)?;
        (hit.not_before <= now_secs && now_secs <= hit.not_after)
            .then(|| (hit.id.clone(), hit.signer_key.clone()))
    }

    /// Stores a success, clearing the cache first if it is full.
    fn cache_insert(&self, key: [u8; 32], entry: VerifiedChain) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CHAIN_CACHE_CAPACITY && !cache.contains_key(&key) {
            cache.clear();
        }
        cache.insert(key, entry);
    }

    fn verify_uncached<I: AsRef<[u8]>>(
        &self,
        leaf_der: &[u8],
        intermediates: &[I],
        secs: u64,
        usage: CertUsage,
    ) -> Result<SpiffeId, TrustError> {
        let time = UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let leaf = CertificateDer::from(leaf_der);
        let ee =
            EndEntityCert::try_from(&leaf).map_err(|e| TrustError::BadLeaf(format!("{e:?}")))?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|der| CertificateDer::from(der.as_ref()))
            .collect();
        let crl_refs: Vec<&CertRevocationList<'static>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                // Unknown = no loaded CRL is authoritative for the issuer; see above.
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(ExpirationPolicy::Ignore)
                .build()
        });
        ee.verify_for_usage(
            CERT_SIGNATURE_ALGS,
            &self.anchors,
            &intermediates,
            time,
            usage.key_usage(),
            revocation,
            None,
        )
        .map_err(|e| map_webpki_error(e, usage, leaf_subject(leaf_der)))?;

        let id = SpiffeId::from_certificate_der(leaf_der).map_err(|e| match e {
            IdentityError::NoSpiffeId { subject } => TrustError::NoSpiffeId { subject },
            other => TrustError::BadIdentity(other),
        })?;
        if id.federation != self.federation {
            return Err(TrustError::WrongFederation {
                id: id.to_string(),
                federation: self.federation.clone(),
            });
        }
        Ok(id)
    }
}

/// SHA-256 over the usage and the chain, each certificate length-prefixed so that no two
/// different (usage, leaf, intermediates) inputs share an encoding.
fn chain_key<I: AsRef<[u8]>>(usage: CertUsage, leaf_der: &[u8], intermediates: &[I]) -> [u8; 32] {
    let tag: u8 = match usage {
        CertUsage::DocumentSigning => 1,
        CertUsage::TlsClient => 2,
        CertUsage::TlsServer => 3,
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"pons-trust-chain-v1");
    ctx.update(&[tag]);
    ctx.update(&(leaf_der.len() as u64).to_be_bytes());
    ctx.update(leaf_der);
    ctx.update(&(intermediates.len() as u64).to_be_bytes());
    for der in intermediates {
        let der = der.as_ref();
        ctx.update(&(der.len() as u64).to_be_bytes());
        ctx.update(der);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// [latest notBefore, earliest notAfter] in Unix seconds over the leaf and every given
/// intermediate (used on the path or not, which can only narrow the window), or `None`
/// if one does not parse.
fn validity_window<I: AsRef<[u8]>>(leaf_der: &[u8], intermediates: &[I]) -> Option<(i64, i64)> {
    let mut window = (i64::MIN, i64::MAX);
    for der in std::iter::once(leaf_der).chain(intermediates.iter().map(AsRef::as_ref)) {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let validity = cert.validity();
        window.0 = window.0.max(validity.not_before.timestamp());
        window.1 = window.1.min(validity.not_after.timestamp());
    }
    Some(window)
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("federation", &self.federation)
            .field("anchors", &self.anchors.len())
            .field("crls", &self.crls.len())
            .field("cached_chains", &self.cache_len())
            .finish()
    }
}

fn leaf_subject(der: &[u8]) -> String {
    X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "<unparseable>".to_owned())
}

fn unix_to_datetime(t: UnixTime) -> OffsetDateTime {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn map_webpki_error(e: webpki::Error, usage: CertUsage, subject: String) -> TrustError {
    use webpki::Error as E;
    match e {
        E::CertExpired { time, not_after } => TrustError::Expired {
            subject,
            not_after: unix_to_datetime(not_after),
            now: unix_to_datetime(time),
        },
        E::CertNotValidYet { time, not_before } => TrustError::NotYetValid {
            subject,
            not_before: unix_to_datetime(not_before),
            now: unix_to_datetime(time),
        },
        E::UnknownIssuer => TrustError::UnknownIssuer { subject },
        E::CertRevoked => TrustError::Revoked { subject },
        E::RequiredEkuNotFoundContext(_) => TrustError::BadUsage { subject, usage },
        E::InvalidSignatureForPublicKey => TrustError::BadCertSignature { subject },
        other => TrustError::Rejected {
            subject,
            reason: format!("{other:?}"),
        },
    }
}

/// Formats a time as RFC 3339 for error messages.
pub(crate) fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Why a trust could not be built or a certificate chain is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The federation name is not a valid SPIFFE trust domain.
    #[error("federation {0:?} is invalid: use lower-case letters, digits, '.', '-' and '_'")]
    BadFederation(String),
    /// No CA certificate was given.
    #[error("trust has no CA certificate: at least one federation CA is required")]
    NoTrustAnchor,
    /// A CA certificate could not be used as a trust anchor.
    #[error("CA certificate #{index} is not a usable DER X.509 trust anchor: {reason}")]
    BadCaCertificate {
        /// Position in the list given to [`Trust::new`].
        index: usize,
        /// webpki's reason.
        reason: String,
    },
    /// A CRL could not be parsed.
    #[error("CRL #{index} is not a valid DER certificate revocation list: {reason}")]
    BadCrl {
        /// Position in the list given to [`Trust::new`].
        index: usize,
        /// webpki's reason.
        reason: String,
    },
    /// The time to verify at is before 1970.
    #[error("verification time {} is before the Unix epoch", rfc3339(.0))]
    BadTime(OffsetDateTime),
    /// The leaf certificate could not be parsed.
    #[error("certificate is not valid DER X.509: {0}")]
    BadLeaf(String),
    /// A certificate in the chain has expired.
    #[error("certificate chain of {subject:?} is expired: a certificate's not_after {} is before {}", rfc3339(.not_after), rfc3339(.now))]
    Expired {
        /// The leaf's subject.
        subject: String,
        /// The expired certificate's notAfter.
        not_after: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },
    /// A certificate in the chain is not valid yet.
    #[error("certificate chain of {subject:?} is not yet valid: a certificate's not_before {} is after {}", rfc3339(.not_before), rfc3339(.now))]
    NotYetValid {
        /// The leaf's subject.
        subject: String,
        /// The certificate's notBefore.
        not_before: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },
    /// No path leads to a federation CA.
    #[error("certificate {subject:?} has an unknown issuer: no chain to a federation CA")]
    UnknownIssuer {
        /// The leaf's subject.
        subject: String,
    },
    /// A certificate in the chain is revoked by a CRL.
    #[error(
        "certificate chain of {subject:?} is revoked: a certificate is listed in its issuer's CRL"
    )]
    Revoked {
        /// The leaf's subject.
        subject: String,
    },
    /// The leaf's extended key usage does not allow the usage.
    #[error(
        "certificate {subject:?} is not valid for {usage}: its extended key usage excludes it"
    )]
    BadUsage {
        /// The leaf's subject.
        subject: String,
        /// The usage checked for.
        usage: CertUsage,
    },
    /// A certificate's signature does not verify with its issuer's key.
    #[error("certificate chain of {subject:?} has a bad signature: a certificate does not verify with its issuer's key")]
    BadCertSignature {
        /// The leaf's subject.
        subject: String,
    },
    /// Another path-building failure.
    #[error("certificate chain of {subject:?} is not trusted: {reason}")]
    Rejected {
        /// The leaf's subject.
        subject: String,
        /// webpki's reason.
        reason: String,
    },
    /// The leaf carries no SPIFFE ID.
    #[error("certificate {subject:?} has no SPIFFE ID: a URI SAN spiffe://<federation>/node/<node-id> is required")]
    NoSpiffeId {
        /// The leaf's subject.
        subject: String,
    },
    /// The leaf's SPIFFE ID is malformed or ambiguous.
    #[error("certificate identity is invalid: {0}")]
    BadIdentity(IdentityError),
    /// The leaf's SPIFFE ID names another federation.
    #[error("certificate SPIFFE ID {id} is in the wrong federation: expected {federation}")]
    WrongFederation {
        /// The SPIFFE ID found.
        id: String,
        /// This trust's federation.
        federation: String,
    },
}

/// The signature algorithm and raw public key of a certificate's subjectPublicKeyInfo.
fn signer_key(leaf_der: &[u8]) -> Result<SignerKey, String> {
    let (_, cert) = X509Certificate::from_der(leaf_der).map_err(|e| e.to_string())?;
    let spki = cert.public_key();
    let key = Arc::from(spki.subject_public_key.data.as_ref());
    let alg_oid = spki.algorithm.algorithm.to_id_string();
    let algorithm = match alg_oid.as_str() {
        // id-Ed25519 (RFC 8410)
        "1.3.101.112" => Some(SigningAlgorithm::Ed25519),
        // id-ecPublicKey with namedCurve prime256v1 (RFC 5480)
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            (curve.as_deref() == Some("1.2.840.10045.3.1.7"))
                .then_some(SigningAlgorithm::EcdsaP256Sha256)
        }
        _ => None,
    };
    Ok(SignerKey { algorithm, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_cache_is_cleared_when_full() {
        let none: &[&[u8]] = &[];
        // The cache alone, on a value `Trust::new` would refuse (no anchor).
        let trust = Trust {
            federation: "pons.example".to_owned(),
            anchors: Vec::new(),
            crls: Vec::new(),
            cache: Mutex::new(HashMap::new()),
            cache_hits: AtomicU64::new(0),
        };
        let entry = VerifiedChain {
            id: SpiffeId::parse("spiffe://pons.example/node/cuta").unwrap(),
            not_before: 0,
            not_after: 10,
            signer_key: None,
        };
        let key = |n: usize| chain_key(CertUsage::TlsClient, &n.to_be_bytes(), none);
        for n in 0..CHAIN_CACHE_CAPACITY {
            trust.cache_insert(key(n), entry.clone());
        }
        assert_eq!(trust.cache_len(), CHAIN_CACHE_CAPACITY);
        // Refreshing a present key does not clear.
        trust.cache_insert(key(0), entry.clone());
        assert_eq!(trust.cache_len(), CHAIN_CACHE_CAPACITY);
        assert!(trust.cache_lookup(&key(0), 5).is_some());
        trust.cache_insert(key(CHAIN_CACHE_CAPACITY), entry.clone());
        assert_eq!(trust.cache_len(), 1);
        assert!(trust.cache_lookup(&key(0), 5).is_none());
        assert!(trust.cache_lookup(&key(CHAIN_CACHE_CAPACITY), 5).is_some());
        // Outside the window: no answer.
        assert!(trust.cache_lookup(&key(CHAIN_CACHE_CAPACITY), 11).is_none());
        assert!(trust.cache_lookup(&key(CHAIN_CACHE_CAPACITY), -1).is_none());
    }

    #[test]
    fn chain_keys_separate_usage_and_certificate_boundaries() {
        let none: &[&[u8]] = &[];
        let a = chain_key(CertUsage::TlsClient, b"ab", &[b"c".as_slice()]);
        assert_ne!(
            a,
            chain_key(CertUsage::TlsServer, b"ab", &[b"c".as_slice()])
        );
        assert_ne!(
            a,
            chain_key(CertUsage::TlsClient, b"a", &[b"bc".as_slice()])
        );
        assert_ne!(a, chain_key(CertUsage::TlsClient, b"abc", none));
        assert_eq!(a, chain_key(CertUsage::TlsClient, b"ab", &[b"c".to_vec()]));
    }

    #[test]
    fn eku_oids_decode_to_their_dotted_form() {
        let dotted = |u: CertUsage| {
            u.key_usage()
                .oid_values()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(".")
        };
        assert_eq!(dotted(CertUsage::DocumentSigning), "1.3.6.1.5.5.7.3.36");
        assert_eq!(dotted(CertUsage::TlsServer), "1.3.6.1.5.5.7.3.1");
        assert_eq!(dotted(CertUsage::TlsClient), "1.3.6.1.5.5.7.3.2");
    }

    #[test]
    fn times_format_as_rfc3339() {
        let t = OffsetDateTime::from_unix_timestamp(1_830_297_600).unwrap();
        assert_eq!(rfc3339(&t), "2028-01-01T00:00:00Z");
        assert_eq!(
            unix_to_datetime(UnixTime::since_unix_epoch(Duration::from_secs(
                1_830_297_600
            ))),
            t
        );
    }
}
