//! Pons PKI: from PEM files on disk to a node identity, a federation trust store and
//! rustls configurations.
//!
//! - [`pem`] reads certificates, PKCS#8 private keys and CRLs, and refuses a private key
//!   file that the group or others can read.
//! - [`identity`] ties a node's TLS and record-signing certificates and keys together into a
//!   [`NodeIdentity`] named by one SPIFFE ID.
//! - [`trust`] holds the federation CA certificates and CRLs ([`FederationTrust`]).
//! - [`tls`] builds the rustls server and client configurations: TLS 1.3 only, ring
//!   provider only, client certificates required, CRLs honoured, 0-RTT off.
//! - [`devca`] makes a development CA and node certificates; never for production.
//!
//! This crate reads files and builds configurations; it opens no socket. Rules about
//! records and what a peer may send live in `pons-core`; the check that a TLS peer is the
//! node the transport meant to reach lives in `pons-transport` (with [`tls::peer_spiffe_id`]).

#![forbid(unsafe_code)]

pub mod devca;
pub mod error;
pub mod identity;
pub mod pem;
pub mod tls;
pub mod trust;

pub use devca::{dev_ca, DevCaFiles, KeyAlgorithm};
pub use error::PkiError;
pub use identity::{NodeFiles, NodeIdentity};
pub use tls::{client_config, peer_spiffe_id, server_config, ALPN};
pub use trust::FederationTrust;
