//! A node's identity: its TLS and record-signing certificates and keys, named by one
//! SPIFFE ID.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pons_core::{NodeId, Signer, SigningKey, SpiffeId};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pem::{load_certificates, load_private_key};
use crate::PkiError;

/// Where a node's four PKI files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFiles {
    /// TLS certificate chain (leaf first, without the root), PEM.
    pub tls_cert: PathBuf,
    /// TLS private key, PKCS#8 PEM, mode 0600.
    pub tls_key: PathBuf,
    /// Record-signing certificate chain (leaf first, without the root), PEM.
    pub sign_cert: PathBuf,
    /// Record-signing private key, PKCS#8 PEM, mode 0600.
    pub sign_key: PathBuf,
}

impl NodeFiles {
    /// The layout `pons pki dev-ca` writes: `DIR/tls.pem`, `DIR/tls.key`, `DIR/sign.pem`,
    /// `DIR/sign.key`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            tls_cert: dir.join("tls.pem"),
            tls_key: dir.join("tls.key"),
            sign_cert: dir.join("sign.pem"),
            sign_key: dir.join("sign.key"),
        }
    }

    /// The four paths, certificates before keys.
    pub fn paths(&self) -> [&Path; 4] {
        [
            &self.tls_cert,
            &self.tls_key,
            &self.sign_cert,
            &self.sign_key,
        ]
    }
}

/// A node's loaded and cross-checked identity.
///
/// Invariants, checked by [`NodeIdentity::load`] and [`NodeIdentity::from_der`]: both
/// certificates name the same SPIFFE ID; each key matches its certificate; every
/// certificate in both chains is valid at the `now` given. Whether the chains lead to the
/// federation CA is checked by [`crate::FederationTrust::check_identity`] and, for peers,
/// by the rustls verifiers.
pub struct NodeIdentity {
    spiffe_id: SpiffeId,
    tls_chain: Vec<CertificateDer<'static>>,
    tls_key: PrivatePkcs8KeyDer<'static>,
    sign_chain: Vec<CertificateDer<'static>>,
    sign_key: SigningKey,
    sign_key_der: PrivatePkcs8KeyDer<'static>,
    not_after: OffsetDateTime,
}

impl NodeIdentity {
    /// Loads and checks a node's identity from its files, at time `now`.
    pub fn load(files: &NodeFiles, now: OffsetDateTime) -> Result<Self, PkiError> {
        let tls_chain = load_certificates(&files.tls_cert)?;
        let tls_key = load_private_key(&files.tls_key)?;
        let sign_chain = load_certificates(&files.sign_cert)?;
        let sign_key = load_private_key(&files.sign_key)?;
        Self::build(files, tls_chain, tls_key, sign_chain, sign_key, now)
    }

    /// Checks a node's identity given in memory (DER); errors name the files as
    /// `<tls certificate>` and so on.
    pub fn from_der(
        tls_chain: Vec<CertificateDer<'static>>,
        tls_key: PrivatePkcs8KeyDer<'static>,
        sign_chain: Vec<CertificateDer<'static>>,
        sign_key: PrivatePkcs8KeyDer<'static>,
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        let files = NodeFiles {
            tls_cert: "<tls certificate>".into(),
            tls_key: "<tls key>".into(),
            sign_cert: "<signing certificate>".into(),
            sign_key: "<signing key>".into(),
        };
        if tls_chain.is_empty() || sign_chain.is_empty() {
            let path = if tls_chain.is_empty() {
                files.tls_cert
            } else {
                files.sign_cert
            };
            return Err(PkiError::Missing {
                path,
                what: "CERTIFICATE",
            });
        }
        Self::build(&files, tls_chain, tls_key, sign_chain, sign_key, now)
    }

    fn build(
        files: &NodeFiles,
        tls_chain: Vec<CertificateDer<'static>>,
        tls_key: PrivatePkcs8KeyDer<'static>,
        sign_chain: Vec<CertificateDer<'static>>,
        sign_key_der: PrivatePkcs8KeyDer<'static>,
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        // Cheap structural checks first, so the error names the most basic fault.
        let mut not_after: Option<OffsetDateTime> = None;
        for (path, chain) in [
            (&files.tls_cert, &tls_chain),
            (&files.sign_cert, &sign_chain),
        ] {
            for der in chain {
                let end = check_validity(path, der, now)?;
                not_after = Some(not_after.map_or(end, |n| n.min(end)));
            }
        }
        let tls_id = leaf_spiffe_id(&files.tls_cert, &tls_chain)?;
        let sign_id = leaf_spiffe_id(&files.sign_cert, &sign_chain)?;
        if tls_id != sign_id {
            return Err(PkiError::SpiffeIdMismatch {
                tls: tls_id,
                signing: sign_id,
            });
        }

        check_tls_key(files, &tls_chain, &tls_key)?;

        let sign_key =
            SigningKey::from_pkcs8_der(sign_key_der.secret_pkcs8_der()).map_err(|source| {
                PkiError::SigningKey {
                    path: files.sign_key.clone(),
                    source,
                }
            })?;
        // `leaf_spiffe_id` succeeded, so the chain has a leaf.
        if let Some(leaf) = sign_chain.first() {
            sign_key
                .check_certificate(leaf)
                .map_err(|e| PkiError::KeyMismatch {
                    key: files.sign_key.clone(),
                    cert: files.sign_cert.clone(),
                    reason: match e {
                        pons_core::KeyError::CertificateMismatch { .. } => {
                            "the certificate's public key differs".to_owned()
                        }
                        other => other.to_string(),
                    },
                })?;
        }

        Ok(Self {
            spiffe_id: tls_id,
            tls_chain,
            tls_key,
            sign_chain,
            sign_key,
            sign_key_der,
            // Both chains are non-empty (checked by the callers), so this is set.
            not_after: not_after.unwrap_or(now),
        })
    }

    /// The SPIFFE ID both certificates name.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The node id within the federation.
    pub fn node(&self) -> &NodeId {
        &self.spiffe_id.node
    }

    /// The federation (SPIFFE trust domain).
    pub fn federation(&self) -> &str {
        &self.spiffe_id.federation
    }

    /// The TLS certificate chain, leaf first.
    pub fn tls_chain(&self) -> &[CertificateDer<'static>] {
        &self.tls_chain
    }

    /// A copy of the TLS private key, for a rustls configuration.
    pub fn tls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.tls_key.clone_key())
    }

    /// The record-signing certificate chain, leaf first: what travels in an envelope's
    /// x5chain.
    pub fn signing_chain(&self) -> &[CertificateDer<'static>] {
        &self.sign_chain
    }

    /// The record-signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.sign_key
    }

    /// A `pons-core` [`Signer`] for sealing envelopes and receipts: the signing key with
    /// its chain (which travels in each envelope's x5chain).
    pub fn signer(&self) -> Result<Signer, PkiError> {
        // `SigningKey` is not `Clone` (it holds ring key pairs); parse the checked DER again.
        let key =
            SigningKey::from_pkcs8_der(self.sign_key_der.secret_pkcs8_der()).map_err(|source| {
                PkiError::SigningKey {
                    path: "<signing key>".into(),
                    source,
                }
            })?;
        let chain = self.sign_chain.iter().map(|c| c.to_vec()).collect();
        Signer::new(key, self.spiffe_id.node.clone(), chain).map_err(PkiError::Signer)
    }

    /// The earliest notAfter of all certificates in both chains: when this identity stops
    /// working unless certificates are renewed.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("NodeIdentity")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("signing_algorithm", &self.sign_key.algorithm())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Checks that `der` is a certificate valid at `now`; returns its notAfter.
pub(crate) fn check_validity(
    path: &Path,
    der: &[u8],
    now: OffsetDateTime,
) -> Result<OffsetDateTime, PkiError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let validity = cert.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    if now < not_before {
        return Err(PkiError::NotYetValid {
            path: path.to_owned(),
            subject: cert.subject().to_string(),
            not_before,
            now,
        });
    }
    if now > not_after {
        return Err(PkiError::Expired {
            path: path.to_owned(),
            subject: cert.subject().to_string(),
            not_after,
            now,
        });
    }
    Ok(not_after)
}

fn leaf_spiffe_id(path: &Path, chain: &[CertificateDer<'_>]) -> Result<SpiffeId, PkiError> {
    let leaf = chain.first().ok_or_else(|| PkiError::Missing {
        path: path.to_owned(),
        what: "CERTIFICATE",
    })?;
    SpiffeId::from_certificate_der(leaf).map_err(|source| PkiError::Identity {
        path: path.to_owned(),
        source,
    })
}

/// Checks that the TLS key is one rustls' ring provider can sign with and that it matches
/// the leaf certificate (by comparing SubjectPublicKeyInfo).
fn check_tls_key(
    files: &NodeFiles,
    chain: &[CertificateDer<'static>],
    key: &PrivatePkcs8KeyDer<'static>,
) -> Result<(), PkiError> {
    let mismatch = |reason: String| PkiError::KeyMismatch {
        key: files.tls_key.clone(),
        cert: files.tls_cert.clone(),
        reason,
    };
    let signer = any_supported_type(&PrivateKeyDer::Pkcs8(key.clone_key()))
        .map_err(|e| mismatch(format!("the key is not usable for TLS: {e}")))?;
    CertifiedKey::new(chain.to_vec(), Arc::clone(&signer))
        .keys_match()
        .map_err(|e| mismatch(e.to_string()))
}
