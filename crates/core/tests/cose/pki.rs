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
    /// ECDSA P-384: a valid certificate key that Pons does not sign with.
    P384,
}

impl Alg {
    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            Alg::Ed25519 => &rcgen::PKCS_ED25519,
            Alg::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Alg::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
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
    ///
    /// Ed25519 keys are PKCS#8 version 1 (seed only), as `openssl genpkey` writes them
    /// and as Python's `cryptography` reads them; ring writes version 2.
    pub fn node(&self, alg: Alg, opts: &NodeOpts) -> Node {
        let key = KeyPair::generate_for(alg.rcgen()).expect("node key");
        let key = match alg {
            Alg::Ed25519 => ed25519_pkcs8_v1(&key),
            Alg::P256 | Alg::P384 => key,
        };
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

/// Re-encodes a ring Ed25519 PKCS#8 v2 key (RFC 5958, with public key) as v1 (RFC 8410).
fn ed25519_pkcs8_v1(key: &KeyPair) -> KeyPair {
    let v2 = key.serialize_der();
    // v2: 30 51 02 01 01 30 05 06 03 2b 65 70 04 22 04 20 <seed 32> 81 21 00 <pub 32>
    const V2_PREFIX: &[u8] = &[
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    assert!(
        v2.starts_with(V2_PREFIX),
        "unexpected ring Ed25519 PKCS#8 layout"
    );
    let seed = &v2[V2_PREFIX.len()..V2_PREFIX.len() + 32];
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(seed);
    let v1 = rustls_pki_types::PrivatePkcs8KeyDer::from(v1);
    let out = KeyPair::try_from(&v1).expect("Ed25519 PKCS#8 v1");
    assert_eq!(out.public_key_raw(), key.public_key_raw(), "same key");
    out
}
