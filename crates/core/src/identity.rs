//! Node identities: `spiffe://<federation>/node/<node-id>` in a certificate's URI SAN.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Longest node id accepted, in bytes.
pub const MAX_NODE_ID_LEN: usize = 63;

/// A node's short name within its federation, e.g. `cuta`.
///
/// Lower-case ASCII letters, digits and `-`, starting with a letter, at most
/// [`MAX_NODE_ID_LEN`] bytes: it appears in paths, SPIFFE IDs and journal entries, so it
/// must be unambiguous everywhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Checks `s` against the node id rule.
    pub fn new(s: &str) -> Result<Self, IdentityError> {
        let ok_len = !s.is_empty() && s.len() <= MAX_NODE_ID_LEN;
        let ok_first = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok_len && ok_first && ok_chars && !s.ends_with('-') {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentityError::BadNodeId(truncate_for_error(s)))
        }
    }

    /// The node id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for NodeId {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

/// A SPIFFE ID naming a Pons node: `spiffe://<federation>/node/<node-id>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// The trust domain, e.g. `pons.example`.
    pub federation: String,
    /// The node within it.
    pub node: NodeId,
}

impl SpiffeId {
    /// Parses a URI of the form `spiffe://<federation>/node/<node-id>`.
    pub fn parse(uri: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::BadSpiffeId(truncate_for_error(uri));
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let (federation, path) = rest.split_once('/').ok_or_else(bad)?;
        let node = path.strip_prefix("node/").ok_or_else(bad)?;
        // SPIFFE trust domains: lower-case letters, digits, '.', '-' and '_'.
        let ok_domain = !federation.is_empty()
            && federation.len() <= 255
            && federation.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            });
        if !ok_domain {
            return Err(bad());
        }
        let node = NodeId::new(node).map_err(|_| bad())?;
        Ok(Self {
            federation: federation.to_owned(),
            node,
        })
    }

    /// Reads the one Pons SPIFFE ID from a DER certificate's URI SANs.
    ///
    /// A certificate with no such URI, or with two different ones, identifies no node.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let subject = cert.subject().to_string();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let mut found: Option<SpiffeId> = None;
        if let Some(san) = san {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if !uri.starts_with("spiffe://") {
                        continue;
                    }
                    let id = Self::parse(uri)?;
                    match &found {
                        Some(prev) if *prev != id => {
                            return Err(IdentityError::AmbiguousSpiffeId { subject })
                        }
                        _ => found = Some(id),
                    }
                }
            }
        }
        found.ok_or(IdentityError::NoSpiffeId { subject })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/node/{}", self.federation, self.node)
    }
}

/// Why a node identity could not be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A node id breaks the naming rule.
    #[error("node id {0:?} is invalid: use 1 to 63 lower-case letters, digits and '-', starting with a letter")]
    BadNodeId(String),
    /// A URI is not of the form `spiffe://<federation>/node/<node-id>`.
    #[error("SPIFFE ID {0:?} is invalid: expected spiffe://<federation>/node/<node-id>")]
    BadSpiffeId(String),
    /// The certificate carries no `spiffe://` URI SAN.
    #[error("certificate {subject:?} has no SPIFFE ID: a URI SAN spiffe://<federation>/node/<node-id> is required")]
    NoSpiffeId {
        /// The certificate's subject, to tell which one.
        subject: String,
    },
    /// The certificate carries two different SPIFFE IDs.
    #[error("certificate {subject:?} has more than one SPIFFE ID: exactly one is allowed")]
    AmbiguousSpiffeId {
        /// The certificate's subject.
        subject: String,
    },
    /// The bytes are not a parseable X.509 certificate.
    #[error("certificate is not valid DER X.509: {0}")]
    BadCertificate(String),
}

fn truncate_for_error(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_rule() {
        assert!(NodeId::new("cuta").is_ok());
        assert!(NodeId::new("adolescence-2").is_ok());
        for bad in [
            "",
            "Cuta",
            "2cuta",
            "cu ta",
            "cuta-",
            "cu/ta",
            &"a".repeat(64),
        ] {
            assert!(NodeId::new(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn spiffe_parse() {
        let id = SpiffeId::parse("spiffe://pons.example/node/cuta").unwrap();
        assert_eq!(id.federation, "pons.example");
        assert_eq!(id.node.as_str(), "cuta");
        assert_eq!(id.to_string(), "spiffe://pons.example/node/cuta");
        for bad in [
            "https://pons.example/node/cuta",
            "spiffe://pons.example/cuta",
            "spiffe://pons.example/node/",
            "spiffe:///node/cuta",
            "spiffe://Pons.Example/node/cuta",
            "spiffe://pons.example/node/cuta/extra",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn spiffe_from_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://pons.example/node/cuta".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = SpiffeId::from_certificate_der(cert.der()).unwrap();
        assert_eq!(id.node.as_str(), "cuta");

        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let err = SpiffeId::from_certificate_der(cert.der()).unwrap_err();
        assert!(matches!(err, IdentityError::NoSpiffeId { .. }), "{err}");
    }
}
