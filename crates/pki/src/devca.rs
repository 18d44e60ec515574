//! A development CA: a federation CA, an empty CRL and TLS and signing certificates for a
//! list of nodes. **Development and tests only, never production**: the CA key sits in a
//! file next to the certificates, and nothing here is audited.
//!
//! Layout written by [`dev_ca`]:
//!
//! ```text
//! DIR/ca.pem          CA certificate (the federation trust anchor)
//! DIR/ca.key          CA private key, PKCS#8, mode 0600
//! DIR/ca.crl.pem      empty CRL signed by the CA
//! DIR/<node>/tls.pem  TLS certificate (leaf only: the CA is the trust anchor, so the
//!                     leaf alone is a complete chain for rustls)
//! DIR/<node>/tls.key  TLS private key, PKCS#8, mode 0600
//! DIR/<node>/sign.pem record-signing certificate (leaf only)
//! DIR/<node>/sign.key record-signing private key, PKCS#8, mode 0600
//! ```
//!
//! Validity: the CA 10 years, leaves 5 years, all starting one hour before `now` so that
//! small clock differences between hosts do not make fresh certificates "not yet valid".
//! Long lifetimes keep a committed development PKI usable; production certificates come
//! from a real CA with short lifetimes and rotation.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pons_core::{NodeId, SpiffeId};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::NodeFiles;
use crate::{NodeIdentity, PkiError};

/// id-kp-documentSigning (RFC 9336), the extended key usage of record-signing certificates.
pub const EKU_DOCUMENT_SIGNING: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 3, 36];

/// Lifetime of the development CA.
pub const CA_LIFETIME: Duration = Duration::days(3650);
/// Lifetime of development node certificates.
pub const LEAF_LIFETIME: Duration = Duration::days(5 * 365);
/// How long before `now` certificates start, for clock skew between hosts.
pub const BACKDATE: Duration = Duration::hours(1);

/// The key algorithm of the development CA and its certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// Ed25519.
    #[default]
    Ed25519,
    /// ECDSA over P-256 with SHA-256.
    EcdsaP256,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "ecdsa-p256",
        })
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ed25519" => Ok(Self::Ed25519),
            "ecdsa-p256" | "p256" => Ok(Self::EcdsaP256),
            other => Err(format!(
                "key algorithm {other:?} is not supported: use ed25519 or ecdsa-p256"
            )),
        }
    }
}

/// What [`dev_ca`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCaFiles {
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The CA private key.
    pub ca_key: PathBuf,
    /// The empty CRL.
    pub crl: PathBuf,
    /// Each node's SPIFFE ID and files, in the order given.
    pub nodes: Vec<(SpiffeId, NodeFiles)>,
}

/// Writes a development CA and certificates for `nodes` of `federation` into `out`.
///
/// Refuses to overwrite any existing file unless `force`; with `force`, existing files are
/// replaced (removed, then created anew so that key files get mode 0600 from their
/// creation). Nothing is written if any check fails first.
pub fn dev_ca(
    out: &Path,
    nodes: &[NodeId],
    federation: &str,
    algorithm: KeyAlgorithm,
    now: OffsetDateTime,
    force: bool,
) -> Result<DevCaFiles, PkiError> {
    let mut seen = BTreeSet::new();
    let nodes: Vec<&NodeId> = nodes.iter().filter(|n| seen.insert(*n)).collect();

    let ca = DevCa::new(federation, algorithm, now)?;
    let issued = nodes
        .iter()
        .map(|node| ca.issue(node, now))
        .collect::<Result<Vec<_>, _>>()?;
    let crl = ca.crl(&[], now)?;

    let files = DevCaFiles {
        ca_cert: out.join("ca.pem"),
        ca_key: out.join("ca.key"),
        crl: out.join("ca.crl.pem"),
        nodes: issued
            .iter()
            .map(|n| {
                let files = NodeFiles::in_dir(&out.join(n.spiffe_id.node.as_str()));
                (n.spiffe_id.clone(), files)
            })
            .collect(),
    };

    let mut writes: Vec<(PathBuf, String, Secret)> = vec![
        (files.ca_cert.clone(), ca.certificate_pem(), Secret::No),
        (files.ca_key.clone(), ca.key.serialize_pem(), Secret::Yes),
        (files.crl.clone(), pem("X509 CRL", &crl), Secret::No),
    ];
    for (node, (_, paths)) in issued.iter().zip(&files.nodes) {
        writes.push((
            paths.tls_cert.clone(),
            pem("CERTIFICATE", &node.tls_cert),
            Secret::No,
        ));
        writes.push((paths.tls_key.clone(), node.tls_key_pem.clone(), Secret::Yes));
        writes.push((
            paths.sign_cert.clone(),
            pem("CERTIFICATE", &node.sign_cert),
            Secret::No,
        ));
        writes.push((
            paths.sign_key.clone(),
            node.sign_key_pem.clone(),
            Secret::Yes,
        ));
    }

    if !force {
        if let Some((path, _, _)) = writes.iter().find(|(p, _, _)| p.exists()) {
            return Err(PkiError::Exists { path: path.clone() });
        }
    }
    for (path, contents, secret) in &writes {
        write_file(path, contents.as_bytes(), *secret)?;
    }
    Ok(files)
}

/// A development CA held in memory: for [`dev_ca`] and for tests that need to issue or
/// revoke certificates.
pub struct DevCa {
    federation: String,
    algorithm: KeyAlgorithm,
    params: CertificateParams,
    key: KeyPair,
    cert: CertificateDer<'static>,
}

impl DevCa {
    /// Makes a new CA for `federation`, valid from `now` − [`BACKDATE`] for [`CA_LIFETIME`].
    pub fn new(
        federation: &str,
        algorithm: KeyAlgorithm,
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        SpiffeId::parse(&format!("spiffe://{federation}/node/n")).map_err(PkiError::BadName)?;
        let key = KeyPair::generate_for(algorithm.rcgen())?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            "Pons development federation CA (DEV ONLY)",
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, federation);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_LIFETIME;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?.der().clone();
        Ok(Self {
            federation: federation.to_owned(),
            algorithm,
            params,
            key,
            cert,
        })
    }

    /// The CA certificate, DER.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    /// The federation this CA serves.
    pub fn federation(&self) -> &str {
        &self.federation
    }

    /// Issues a node's TLS and signing certificates, with fresh keys, valid from
    /// `now` − [`BACKDATE`] for [`LEAF_LIFETIME`].
    pub fn issue(&self, node: &NodeId, now: OffsetDateTime) -> Result<DevNode, PkiError> {
        self.issue_valid(node, now - BACKDATE, now + LEAF_LIFETIME)
    }

    /// Issues a node's certificates with the validity given (tests of expiry use this).
    pub fn issue_valid(
        &self,
        node: &NodeId,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<DevNode, PkiError> {
        let spiffe_id = SpiffeId {
            federation: self.federation.clone(),
            node: node.clone(),
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        let uri = SanType::URI(spiffe_id.to_string().try_into()?);

        let tls_key = KeyPair::generate_for(self.algorithm.rcgen())?;
        let mut tls = leaf_params(&spiffe_id, "TLS", not_before, not_after);
        tls.subject_alt_names = vec![
            uri.clone(),
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        tls.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        tls.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let tls_cert = tls.signed_by(&tls_key, &issuer)?.der().clone();

        let sign_key = KeyPair::generate_for(self.algorithm.rcgen())?;
        let mut sign = leaf_params(&spiffe_id, "record signing", not_before, not_after);
        sign.subject_alt_names = vec![uri];
        // Non-repudiation (contentCommitment): a record's signature binds the agency.
        sign.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        sign.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
            EKU_DOCUMENT_SIGNING.to_vec(),
        )];
        let sign_cert = sign.signed_by(&sign_key, &issuer)?.der().clone();

        Ok(DevNode {
            spiffe_id,
            tls_cert,
            tls_key: PrivatePkcs8KeyDer::from(tls_key.serialize_der()),
            tls_key_pem: tls_key.serialize_pem(),
            sign_cert,
            sign_key: PrivatePkcs8KeyDer::from(sign_key.serialize_der()),
            sign_key_pem: sign_key.serialize_pem(),
        })
    }

    /// A CRL signed by this CA revoking `revoked` (certificates it issued), valid from
    /// `now` − [`BACKDATE`] for [`LEAF_LIFETIME`].
    pub fn crl(
        &self,
        revoked: &[&CertificateDer<'_>],
        now: OffsetDateTime,
    ) -> Result<CertificateRevocationListDer<'static>, PkiError> {
        let path = Path::new("<revoked certificate>");
        let revoked_certs = revoked
            .iter()
            .map(|der| {
                let (_, cert) =
                    X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(cert.raw_serial()),
                    revocation_time: now - BACKDATE,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: now - BACKDATE,
            next_update: now + LEAF_LIFETIME,
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        Ok(params.signed_by(&issuer)?.der().clone())
    }
}

impl fmt::Debug for DevCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCa")
            .field("federation", &self.federation)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A node's development certificates and keys, in memory.
pub struct DevNode {
    /// The SPIFFE ID both certificates carry.
    pub spiffe_id: SpiffeId,
    /// TLS certificate, DER.
    pub tls_cert: CertificateDer<'static>,
    /// TLS private key, PKCS#8 DER.
    pub tls_key: PrivatePkcs8KeyDer<'static>,
    tls_key_pem: String,
    /// Record-signing certificate, DER.
    pub sign_cert: CertificateDer<'static>,
    /// Record-signing private key, PKCS#8 DER.
    pub sign_key: PrivatePkcs8KeyDer<'static>,
    sign_key_pem: String,
}

impl DevNode {
    /// The checked [`NodeIdentity`] of these certificates at `now`.
    pub fn identity(&self, now: OffsetDateTime) -> Result<NodeIdentity, PkiError> {
        NodeIdentity::from_der(
            vec![self.tls_cert.clone()],
            self.tls_key.clone_key(),
            vec![self.sign_cert.clone()],
            self.sign_key.clone_key(),
            now,
        )
    }
}

impl fmt::Debug for DevNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevNode")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .finish_non_exhaustive()
    }
}

fn leaf_params(
    id: &SpiffeId,
    role: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{} {role} (DEV ONLY)", id.node));
    params
        .distinguished_name
        .push(DnType::OrganizationName, id.federation.as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.not_before = not_before;
    params.not_after = not_after;
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

#[derive(Clone, Copy)]
enum Secret {
    Yes,
    No,
}

/// PEM-encodes `der` with `label`, 64 columns, as OpenSSL writes it.
///
/// rustls-pki-types only decodes PEM, hence this small encoder.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 text is ASCII, so splitting it at any byte keeps valid UTF-8.
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Creates `path` anew with `contents`; secrets get mode 0600 at creation, so no moment
/// exists in which another user could open them.
fn write_file(path: &Path, contents: &[u8], secret: Secret) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(match secret {
        Secret::Yes => 0o600,
        Secret::No => 0o644,
    });
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}
