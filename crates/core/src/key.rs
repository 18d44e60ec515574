//! Record-signing keys: Ed25519 (COSE alg EdDSA, -8) or ECDSA P-256 (COSE alg ES256, -7).
//!
//! Keys arrive as PKCS#8 DER bytes; reading the PEM file is `pons-pki`'s work.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The signature algorithms Pons signs and verifies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// Ed25519, COSE algorithm EdDSA (-8).
    Ed25519,
    /// ECDSA over P-256 with SHA-256, fixed-length `r || s` signatures, COSE algorithm ES256 (-7).
    EcdsaP256Sha256,
}

impl SigningAlgorithm {
    /// The COSE algorithm identifier (RFC 9053).
    pub fn cose_alg(self) -> i64 {
        match self {
            Self::Ed25519 => -8,
            Self::EcdsaP256Sha256 => -7,
        }
    }

    /// The algorithm for a COSE algorithm identifier, if Pons accepts it.
    pub fn from_cose_alg(alg: i64) -> Option<Self> {
        match alg {
            -8 => Some(Self::Ed25519),
            -7 => Some(Self::EcdsaP256Sha256),
            _ => None,
        }
    }

    /// Verifies `sig` over `msg` with a raw public key (the certificate's
    /// `subjectPublicKey` bit string contents).
    pub fn verify(self, public_key: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let alg: &dyn signature::VerificationAlgorithm = match self {
            Self::Ed25519 => &signature::ED25519,
            Self::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_FIXED,
        };
        UnparsedPublicKey::new(alg, public_key)
            .verify(msg, sig)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ed25519 => "EdDSA (Ed25519)",
            Self::EcdsaP256Sha256 => "ES256 (ECDSA P-256)",
        })
    }
}

/// A private key that signs records and receipts.
pub struct SigningKey {
    inner: Inner,
    rng: SystemRandom,
}

enum Inner {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
}

impl SigningKey {
    /// Reads a PKCS#8 DER private key: Ed25519 or ECDSA P-256.
    ///
    /// Version 1 PKCS#8 (as written by `openssl genpkey`) is accepted for Ed25519; the
    /// public key is then derived, and [`SigningKey::check_certificate`] ties it to a
    /// certificate.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        if let Ok(kp) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(Self {
                inner: Inner::Ed25519(kp),
                rng,
            });
        }
        match EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng) {
            Ok(kp) => Ok(Self {
                inner: Inner::EcdsaP256(kp),
                rng,
            }),
            Err(_) => Err(KeyError::UnsupportedKey),
        }
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        match self.inner {
            Inner::Ed25519(_) => SigningAlgorithm::Ed25519,
            Inner::EcdsaP256(_) => SigningAlgorithm::EcdsaP256Sha256,
        }
    }

    /// The raw public key, as it appears in a certificate's `subjectPublicKey`.
    pub fn public_key(&self) -> &[u8] {
        match &self.inner {
            Inner::Ed25519(kp) => kp.public_key().as_ref(),
            Inner::EcdsaP256(kp) => kp.public_key().as_ref(),
        }
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            Inner::Ed25519(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
            Inner::EcdsaP256(kp) => kp
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::SigningFailed),
        }
    }

    /// Checks that `cert_der` certifies this key.
    pub fn check_certificate(&self, cert_der: &[u8]) -> Result<(), KeyError> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| KeyError::BadCertificate(e.to_string()))?;
        if cert.public_key().subject_public_key.data.as_ref() == self.public_key() {
            Ok(())
        } else {
            Err(KeyError::CertificateMismatch {
                subject: cert.subject().to_string(),
            })
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is neither Ed25519 nor ECDSA P-256 in PKCS#8.
    #[error("private key is not a PKCS#8 Ed25519 or ECDSA P-256 key")]
    UnsupportedKey,
    /// The key does not match the certificate it is used with.
    #[error(
        "private key does not match certificate {subject:?}: the certificate's public key differs"
    )]
    CertificateMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// The certificate could not be parsed.
    #[error("certificate is not valid DER X.509: {0}")]
    BadCertificate(String),
    /// ring refused to sign.
    #[error("signing failed")]
    SigningFailed,
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<(rcgen::KeyPair, SigningAlgorithm)> {
        vec![
            (
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
                SigningAlgorithm::Ed25519,
            ),
            (
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
                SigningAlgorithm::EcdsaP256Sha256,
            ),
        ]
    }

    #[test]
    fn sign_verify_and_certificate_match() {
        for (kp, alg) in keys() {
            let key = SigningKey::from_pkcs8_der(&kp.serialize_der()).unwrap();
            assert_eq!(key.algorithm(), alg);
            let sig = key.sign(b"record").unwrap();
            alg.verify(key.public_key(), b"record", &sig).unwrap();
            assert_eq!(
                alg.verify(key.public_key(), b"recorD", &sig),
                Err(KeyError::BadSignature)
            );

            let cert = rcgen::CertificateParams::new(vec!["x".into()])
                .unwrap()
                .self_signed(&kp)
                .unwrap();
            key.check_certificate(cert.der()).unwrap();
            let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["x".into()])
                .unwrap()
                .self_signed(&other)
                .unwrap();
            assert!(matches!(
                key.check_certificate(cert.der()),
                Err(KeyError::CertificateMismatch { .. })
            ));
        }
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(
            SigningKey::from_pkcs8_der(b"not a key").unwrap_err(),
            KeyError::UnsupportedKey
        );
    }

    #[test]
    fn cose_alg_ids() {
        assert_eq!(
            SigningAlgorithm::from_cose_alg(-8),
            Some(SigningAlgorithm::Ed25519)
        );
        assert_eq!(
            SigningAlgorithm::from_cose_alg(-7),
            Some(SigningAlgorithm::EcdsaP256Sha256)
        );
        assert_eq!(SigningAlgorithm::from_cose_alg(-35), None);
    }
}
