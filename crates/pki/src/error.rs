//! The one error type of this crate: every variant names the file or certificate at fault
//! and the rule it breaks.

use std::path::PathBuf;

use pons_core::{IdentityError, KeyError, SignerError, SpiffeId, TrustError};

/// Why a PKI file could not be loaded, an identity established or a configuration built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A private key file is readable by group or others.
    #[error("private key {} is readable by group or others (mode {mode:04o}): chmod 600", .path.display())]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file is not valid PEM.
    #[error("{}: not valid PEM: {reason}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser reported.
        reason: String,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("{}: no {what} found: expected a PEM block \"-----BEGIN {what}-----\"", .path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// The PEM label expected, e.g. `CERTIFICATE`.
        what: &'static str,
    },
    /// A private key is in a format other than PKCS#8.
    #[error("private key {} is not PKCS#8: convert it with `openssl pkcs8 -topk8 -nocrypt`", .path.display())]
    NotPkcs8 {
        /// The key file.
        path: PathBuf,
    },
    /// A certificate could not be parsed.
    #[error("certificate in {} is not valid DER X.509: {reason}", .path.display())]
    BadCertificate {
        /// The file holding it.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// A CRL could not be parsed.
    #[error("CRL in {} is not a valid X.509 CRL: {reason}", .path.display())]
    BadCrl {
        /// The file holding it.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// A certificate names no node, or names it badly.
    #[error("certificate in {}: {source}", .path.display())]
    Identity {
        /// The file holding the certificate.
        path: PathBuf,
        /// Why the SPIFFE ID could not be read.
        source: IdentityError,
    },
    /// The TLS and signing certificates name different nodes.
    #[error("TLS certificate names {tls} but signing certificate names {signing}: both must name the same node")]
    SpiffeIdMismatch {
        /// The SPIFFE ID in the TLS certificate.
        tls: SpiffeId,
        /// The SPIFFE ID in the signing certificate.
        signing: SpiffeId,
    },
    /// A node certificate belongs to another federation than the trust store's.
    #[error("certificate in {} names {id}, outside federation {federation:?}", .path.display())]
    WrongFederation {
        /// The file holding the certificate.
        path: PathBuf,
        /// The SPIFFE ID it names.
        id: SpiffeId,
        /// The federation expected.
        federation: String,
    },
    /// A private key does not match the certificate it is loaded with.
    #[error("private key {} does not match certificate {}: {reason}", .key.display(), .cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
        /// Why.
        reason: String,
    },
    /// The signing key is not usable by `pons-core`.
    #[error("signing key {}: {source}", .path.display())]
    SigningKey {
        /// The key file.
        path: PathBuf,
        /// Why `pons-core` refused it.
        source: KeyError,
    },
    /// A certificate's validity starts after `now`.
    #[error("certificate {subject:?} in {} is not valid before {not_before} (now {now})", .path.display())]
    NotYetValid {
        /// The file holding it.
        path: PathBuf,
        /// Its subject.
        subject: String,
        /// Its notBefore.
        not_before: time::OffsetDateTime,
        /// The time checked against.
        now: time::OffsetDateTime,
    },
    /// A certificate's validity ended before `now`.
    #[error("certificate {subject:?} in {} expired on {not_after} (now {now})", .path.display())]
    Expired {
        /// The file holding it.
        path: PathBuf,
        /// Its subject.
        subject: String,
        /// Its notAfter.
        not_after: time::OffsetDateTime,
        /// The time checked against.
        now: time::OffsetDateTime,
    },
    /// `pons-core` refused the signing key and chain as a signer.
    #[error("signing identity refused: {0}")]
    Signer(SignerError),
    /// `pons-core` refused the trust store, or a chain does not verify against it.
    #[error("{0}")]
    Trust(#[from] TrustError),
    /// A node's own certificate chain does not verify against the federation trust.
    #[error("certificate chain in {} is not trusted for {usage}: {source}", .path.display())]
    Untrusted {
        /// The file holding the chain.
        path: PathBuf,
        /// The usage it was checked for.
        usage: pons_core::CertUsage,
        /// Why `pons-core` refused it.
        source: TrustError,
    },
    /// The trust store has no CA certificate.
    #[error("trust store has no CA certificate: at least one is required")]
    NoCa,
    /// rustls refused a certificate, key or configuration.
    #[error("TLS configuration refused: {0}")]
    Tls(#[from] rustls::Error),
    /// rustls could not build a certificate verifier from the trust store.
    #[error("TLS certificate verifier refused the trust store: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS peer presented no certificate.
    #[error("TLS peer presented no certificate: a client certificate is required")]
    NoPeerCertificate,
    /// The TLS peer's certificate names no node, or names it badly.
    #[error("TLS peer certificate: {0}")]
    PeerIdentity(IdentityError),
    /// The TLS peer is not the node expected.
    #[error("TLS peer is {found}, expected {expected}")]
    UnexpectedPeer {
        /// The SPIFFE ID expected.
        expected: SpiffeId,
        /// The SPIFFE ID the peer's certificate names.
        found: SpiffeId,
    },
    /// The development CA would overwrite an existing file.
    #[error("{} already exists: refusing to overwrite it without force", .path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A federation name or node id does not make a valid SPIFFE ID.
    #[error("invalid identity: {0}")]
    BadName(IdentityError),
    /// rcgen could not make a certificate, key or CRL.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}
