//! A test federation made with rcgen: CAs, node signing certificates and CRLs.
//!
//! Shared by the `cose` and `interop_pycose` test binaries and the in-crate unit tests
//! (through `#[path]`), so that every test builds its PKI the same way.

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber, SignatureAlgorithm,
};
use std::sync::atomic::{AtomicU64, Ordering};

use time::macros::datetime;
use time::OffsetDateTime;

/// Start of every certificate's validity.
pub const NOT_BEFORE: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
/// End of every certificate's validity.
pub const NOT_AFTER: OffsetDateTime = datetime!(2028-01-01 00:00 UTC);
/// A time inside the validity of every certificate.
pub const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

/// id-kp-documentSigning (RFC 9336).
pub const DOCUMENT_SIGNING: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 36];

/// Key algorithms for test keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// Ed25519.
    Ed25519,
    /// ECDSA P-256.
    P256,
}

impl Alg {
    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            Alg::Ed25519 => &rcgen::PKCS_ED25519,
            Alg::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

/// A certificate authority (root or intermediate).
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, DER.
    pub der: Vec<u8>,
    next_serial: AtomicU64,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = NOT_BEFORE;
    params.not_after = NOT_AFTER;
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

/// Options of a node certificate.
#[derive(Clone, Debug)]
pub struct NodeOpts {
    /// URI SANs, e.g. `spiffe://pons.example/node/cuta`.
    pub uris: Vec<String>,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
    /// Extended key usages (OIDs); empty means no EKU extension.
    pub ekus: Vec<Vec<u64>>,
}

impl NodeOpts {
    /// A signing certificate for `node` in federation `pons.example`, with the
    /// documentSigning EKU.
    pub fn signing(node: &str) -> Self {
        Self {
            uris: vec![format!("spiffe://pons.example/node/{node}")],
            not_before: NOT_BEFORE,
            not_after: NOT_AFTER,
            ekus: vec![DOCUMENT_SIGNING.to_vec()],
        }
    }
}

/// A node's signing key and certificate.
pub struct Node {
    /// The certificate, DER.
    pub cert: Vec<u8>,
    /// The private key, PKCS#8 DER.
    pub key: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate's serial number.
    pub serial: u64,
}

impl Ca {
    /// A self-signed root CA.
    pub fn root(name: &str, alg: Alg) -> Self {
        let key = KeyPair::generate_for(alg.rcgen()).expect("CA key");
        let issuer = CertifiedIssuer::self_signed(ca_params(name), key).expect("CA certificate");
        let der = issuer.der().to_vec();
        Self {
            issuer,
            der,
            next_serial: AtomicU64::new(100),
        }
    }

    /// An intermediate CA signed by this CA.
    pub fn intermediate(&self, name: &str, alg: Alg) -> Self {
        let key = KeyPair::generate_for(alg.rcgen()).expect("intermediate key");
        let mut params = ca_params(name);
        params.serial_number = Some(SerialNumber::from(self.serial()));
        let issuer =
            CertifiedIssuer::signed_by(params, key, &self.issuer).expect("intermediate cert");
        let der = issuer.der().to_vec();
        Self {
            issuer,
            der,
            next_serial: AtomicU64::new(1000),
        }
    }

    fn serial(&self) -> u64 {
        self.next_serial.fetch_add(1, Ordering::Relaxed)
    }

    /// A node certificate and key.
    pub fn node(&self, alg: Alg, opts: &NodeOpts) -> Node {
        let key = KeyPair::generate_for(alg.rcgen()).expect("node key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "test node");
        params.distinguished_name = dn;
        params.subject_alt_names = opts
            .uris
            .iter()
            .map(|u| SanType::URI(u.as_str().try_into().expect("URI SAN")))
            .collect();
        params.not_before = opts.not_before;
        params.not_after = opts.not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = opts
            .ekus
            .iter()
            .map(|oid| ExtendedKeyUsagePurpose::Other(oid.clone()))
            .collect();
        params.use_authority_key_identifier_extension = true;
        let serial = self.serial();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.issuer).expect("node cert");
        Node {
            cert: cert.der().to_vec(),
            key: key.serialize_der(),
            key_pem: key.serialize_pem(),
            serial,
        }
    }

    /// A CRL by this CA revoking `serials`.
    pub fn crl(&self, serials: &[u64]) -> Vec<u8> {
        let params = CertificateRevocationListParams {
            this_update: NOT_BEFORE,
            next_update: NOT_AFTER,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: NOT_BEFORE,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).expect("CRL").der().to_vec()
    }
}
