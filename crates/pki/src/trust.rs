//! The federation's trust store: its CA certificates and CRLs, read from PEM.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use pons_core::{CertUsage, SpiffeId, Trust};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;

use crate::pem::{load_certificates, load_crls};
use crate::{NodeFiles, NodeIdentity, PkiError};

/// A federation's CA certificates and certificate revocation lists.
///
/// Every certificate and CRL has been parsed when this exists: a trust store that loads
/// is one rustls and `pons-core` accept.
#[derive(Clone)]
pub struct FederationTrust {
    federation: String,
    cas: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    roots: Arc<RootCertStore>,
}

impl FederationTrust {
    /// Loads the trust of `federation` from a PEM file of CA certificates (one or more) and
    /// zero or more PEM files of CRLs.
    pub fn load(federation: &str, ca_file: &Path, crl_files: &[&Path]) -> Result<Self, PkiError> {
        let cas = load_certificates(ca_file)?;
        let mut crls = Vec::new();
        for path in crl_files {
            let loaded = load_crls(path)?;
            for crl in &loaded {
                check_crl(path, crl)?;
            }
            crls.extend(loaded);
        }
        Self::build(federation, ca_file, cas, crls)
    }

    /// Builds a trust store from DER certificates and CRLs held in memory.
    pub fn from_der(
        federation: &str,
        cas: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Self, PkiError> {
        let crl_path = Path::new("<crl>");
        for crl in &crls {
            check_crl(crl_path, crl)?;
        }
        Self::build(federation, Path::new("<ca certificate>"), cas, crls)
    }

    fn build(
        federation: &str,
        ca_path: &Path,
        cas: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Self, PkiError> {
        // A federation is a SPIFFE trust domain: reuse pons-core's one parser of the rule.
        SpiffeId::parse(&format!("spiffe://{federation}/node/n")).map_err(PkiError::BadName)?;
        if cas.is_empty() {
            return Err(PkiError::NoCa);
        }
        let mut roots = RootCertStore::empty();
        for ca in &cas {
            roots
                .add(ca.clone())
                .map_err(|e| PkiError::BadCertificate {
                    path: ca_path.to_owned(),
                    reason: format!("not usable as a trust anchor: {e}"),
                })?;
        }
        Ok(Self {
            federation: federation.to_owned(),
            cas,
            crls,
            roots: Arc::new(roots),
        })
    }

    /// The federation's name (SPIFFE trust domain), e.g. `pons.example`.
    pub fn federation(&self) -> &str {
        &self.federation
    }

    /// The CA certificates, DER.
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        &self.cas
    }

    /// The CRLs, DER.
    pub fn crls(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crls
    }

    /// The `pons-core` [`Trust`] of these CAs and CRLs, which verifies the signing chains
    /// of envelopes and receipts.
    pub fn to_core(&self) -> Result<Trust, PkiError> {
        Ok(Trust::new(&self.federation, &self.cas, &self.crls)?)
    }

    /// Checks a node's own identity against this trust at `now`: its TLS chain for client
    /// and server authentication and its signing chain for document signing lead to a
    /// federation CA, are valid and not revoked, and name a node of this federation.
    ///
    /// A node runs this at start-up, so that certificates from the wrong CA, expired or
    /// revoked are reported by the node itself rather than by every peer it calls.
    pub fn check_identity(
        &self,
        identity: &NodeIdentity,
        files: Option<&NodeFiles>,
        now: OffsetDateTime,
    ) -> Result<(), PkiError> {
        let trust = self.to_core()?;
        let (tls_path, sign_path) = match files {
            Some(f) => (f.tls_cert.clone(), f.sign_cert.clone()),
            None => ("<tls certificate>".into(), "<signing certificate>".into()),
        };
        let checks = [
            (&tls_path, identity.tls_chain(), CertUsage::TlsClient),
            (&tls_path, identity.tls_chain(), CertUsage::TlsServer),
            (
                &sign_path,
                identity.signing_chain(),
                CertUsage::DocumentSigning,
            ),
        ];
        for (path, chain, usage) in checks {
            let Some((leaf, intermediates)) = chain.split_first() else {
                return Err(PkiError::Missing {
                    path: path.clone(),
                    what: "CERTIFICATE",
                });
            };
            trust
                .verify_chain(leaf, intermediates, now, usage)
                .map_err(|source| PkiError::Untrusted {
                    path: path.clone(),
                    usage,
                    source,
                })?;
        }
        Ok(())
    }

    /// The CA certificates as a rustls root store.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.roots)
    }
}

impl fmt::Debug for FederationTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederationTrust")
            .field("federation", &self.federation)
            .field("cas", &self.cas.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

/// Parses a CRL now, so that a bad one is reported with its file name rather than later by
/// rustls without one.
fn check_crl(path: &Path, crl: &CertificateRevocationListDer<'_>) -> Result<(), PkiError> {
    webpki::OwnedCertRevocationList::from_der(crl)
        .map(|_| ())
        .map_err(|e| PkiError::BadCrl {
            path: path.to_owned(),
            reason: format!("{e:?}"),
        })
}
