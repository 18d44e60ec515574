//! rustls configurations for node-to-node mutual TLS.
//!
//! Both sides: TLS 1.3 only, the ring provider only, a certificate required from both
//! peers, chains verified against the federation CAs with its CRLs, 0-RTT off, ALPN
//! [`ALPN`].
//!
//! What the verifiers check: the peer's chain leads to a federation CA, every certificate
//! on it is valid now and not revoked by a loaded CRL, the leaf's extended key usage allows
//! the role (client or server auth), and, on the client, that the server certificate
//! names the server name the transport connected to (DNS or IP SAN).
//!
//! What they do **not** check, and the transport must: that the peer's SPIFFE ID is the
//! node it meant to talk to (client side) or a node allowed to connect (server side).
//! Read it from the session's peer certificates with [`peer_spiffe_id`] or compare with
//! [`check_peer`]. Remember that a TLS 1.3 client finishes its handshake before the server
//! has judged the client certificate: a connect that succeeded proves nothing.
//!
//! Revocation follows `pons_core::trust::Trust`: every certificate on the path is checked
//! against a CRL of its issuer when one is loaded; an issuer without a loaded CRL counts as
//! not revoking (an agency sub-CA may publish none); a CRL past its nextUpdate is still
//! used, since keeping CRLs fresh is the operator's job and a stale CRL is better than none.

use std::sync::Arc;

use pons_core::SpiffeId;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::CertificateDer;

use crate::{FederationTrust, NodeIdentity, PkiError};

/// The ALPN protocol of the Pons exchange, set on both configurations.
pub const ALPN: &[u8] = b"pons/1";

/// The one crypto provider Pons uses: ring (never aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: requires and verifies a client certificate from the federation.
pub fn server_config(
    identity: &NodeIdentity,
    trust: &FederationTrust,
) -> Result<ServerConfig, PkiError> {
    check_federation(identity, trust)?;
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(trust.root_store(), provider.clone())
            .with_crls(trust.crls().iter().cloned())
            .allow_unknown_revocation_status()
            .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.tls_chain().to_vec(), identity.tls_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // 0-RTT data can be replayed; nothing in Pons may be sent before the handshake ends.
    config.max_early_data_size = 0;
    config.send_half_rtt_data = false;
    Ok(config)
}

/// The client side: presents the node's TLS certificate and verifies the server's.
pub fn client_config(
    identity: &NodeIdentity,
    trust: &FederationTrust,
) -> Result<ClientConfig, PkiError> {
    check_federation(identity, trust)?;
    let provider = provider();
    let verifier =
        WebPkiServerVerifier::builder_with_provider(trust.root_store(), provider.clone())
            .with_crls(trust.crls().iter().cloned())
            .allow_unknown_revocation_status()
            .build()?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(identity.tls_chain().to_vec(), identity.tls_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.enable_early_data = false;
    Ok(config)
}

/// The SPIFFE ID of a TLS peer, from the certificates of its session (leaf first, as
/// rustls' `peer_certificates()` and quinn's `peer_identity()` give them).
///
/// Call it only on a session whose handshake completed, so that the chain was verified.
pub fn peer_spiffe_id(certs: &[CertificateDer<'_>]) -> Result<SpiffeId, PkiError> {
    let leaf = certs.first().ok_or(PkiError::NoPeerCertificate)?;
    SpiffeId::from_certificate_der(leaf).map_err(PkiError::PeerIdentity)
}

/// Checks that a TLS peer is `expected`; returns its SPIFFE ID.
pub fn check_peer(certs: &[CertificateDer<'_>], expected: &SpiffeId) -> Result<SpiffeId, PkiError> {
    let found = peer_spiffe_id(certs)?;
    if &found != expected {
        return Err(PkiError::UnexpectedPeer {
            expected: expected.clone(),
            found,
        });
    }
    Ok(found)
}

fn check_federation(identity: &NodeIdentity, trust: &FederationTrust) -> Result<(), PkiError> {
    if identity.federation() != trust.federation() {
        return Err(PkiError::WrongFederation {
            path: "<tls certificate>".into(),
            id: identity.spiffe_id().clone(),
            federation: trust.federation().to_owned(),
        });
    }
    Ok(())
}
