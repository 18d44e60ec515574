//! TLS 1.3 mutual authentication between dev-CA nodes, in memory.

use pons_core::SpiffeId;
use pons_pki::devca::{DevCa, DevNode};
use pons_pki::tls::check_peer;
use pons_pki::{
    client_config, peer_spiffe_id, server_config, FederationTrust, KeyAlgorithm, PkiError, ALPN,
};
use rustls::{CertificateError, ClientConfig};

use crate::util::{handshake, node, now, Side};

struct Fed {
    ca: DevCa,
    trust: FederationTrust,
    a: DevNode,
    b: DevNode,
}

fn federation(algorithm: KeyAlgorithm) -> Fed {
    let ca = DevCa::new("pons.example", algorithm, now()).unwrap();
    let crl = ca.crl(&[], now()).unwrap();
    let trust =
        FederationTrust::from_der("pons.example", vec![ca.certificate().clone()], vec![crl])
            .unwrap();
    let a = ca.issue(&node("adolescence"), now()).unwrap();
    let b = ca.issue(&node("cuta"), now()).unwrap();
    Fed { ca, trust, a, b }
}

#[test]
fn mutual_tls_between_dev_ca_nodes_names_both_peers() {
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        let fed = federation(algorithm);
        let client_id = fed.a.identity(now()).unwrap();
        let server_id = fed.b.identity(now()).unwrap();
        let (c, s) = handshake(
            client_config(&client_id, &fed.trust).unwrap(),
            server_config(&server_id, &fed.trust).unwrap(),
        )
        .unwrap();

        let seen_by_client = peer_spiffe_id(c.peer_certificates().unwrap()).unwrap();
        let seen_by_server = peer_spiffe_id(s.peer_certificates().unwrap()).unwrap();
        assert_eq!(
            seen_by_client.to_string(),
            "spiffe://pons.example/node/cuta"
        );
        assert_eq!(
            seen_by_server.to_string(),
            "spiffe://pons.example/node/adolescence"
        );
        assert_eq!(c.alpn_protocol(), Some(ALPN));
        assert_eq!(s.alpn_protocol(), Some(ALPN));
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));

        // The transport's check of the expected peer.
        check_peer(c.peer_certificates().unwrap(), server_id.spiffe_id()).unwrap();
        let err = check_peer(c.peer_certificates().unwrap(), client_id.spiffe_id()).unwrap_err();
        assert!(matches!(err, PkiError::UnexpectedPeer { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "TLS peer is spiffe://pons.example/node/cuta, expected spiffe://pons.example/node/adolescence"
        );
    }
}

#[test]
fn configs_turn_off_0rtt_and_allow_tls13_only() {
    let fed = federation(KeyAlgorithm::Ed25519);
    let id = fed.a.identity(now()).unwrap();
    let server = server_config(&id, &fed.trust).unwrap();
    let client = client_config(&id, &fed.trust).unwrap();
    assert_eq!(server.max_early_data_size, 0);
    assert!(!client.enable_early_data);
    assert_eq!(server.alpn_protocols, vec![b"pons/1".to_vec()]);
    assert_eq!(client.alpn_protocols, vec![b"pons/1".to_vec()]);
    // The workspace builds rustls without its `tls12` feature: TLS 1.2 is not even compiled.
    assert_eq!(rustls::ALL_VERSIONS.len(), 1);
    assert_eq!(
        rustls::ALL_VERSIONS[0].version,
        rustls::ProtocolVersion::TLSv1_3
    );
}

#[test]
fn server_refuses_client_from_another_ca() {
    let fed = federation(KeyAlgorithm::EcdsaP256);
    let rogue_ca = DevCa::new("pons.example", KeyAlgorithm::EcdsaP256, now()).unwrap();
    // Same federation name and node id, other CA: only the chain tells them apart.
    let rogue = rogue_ca.issue(&node("adolescence"), now()).unwrap();
    let rogue_id = rogue.identity(now()).unwrap();
    let server_id = fed.b.identity(now()).unwrap();
    let (side, err, client_done) = handshake(
        client_config(&rogue_id, &fed.trust).unwrap(),
        server_config(&server_id, &fed.trust).unwrap(),
    )
    .unwrap_err();
    assert_eq!(side, Side::Server);
    // Both dev CAs have the same subject name, so the chain is built to the federation CA
    // by name and fails on the signature: an impostor CA with the right name gets nowhere.
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::BadSignature)
    );
    // TLS 1.3: the client had finished its handshake before the server refused it.
    assert!(client_done);
}

#[test]
fn server_refuses_client_of_an_unknown_ca() {
    let fed = federation(KeyAlgorithm::Ed25519);
    let dir = tempfile::tempdir().unwrap();
    // An agency CA with another name: no issuer of that name is trusted at all.
    let other = pons_pki::dev_ca(
        dir.path(),
        &[node("adolescence")],
        "other.example",
        KeyAlgorithm::Ed25519,
        now(),
        false,
    )
    .unwrap();
    let stranger = pons_pki::NodeIdentity::load(&other.nodes[0].1, now()).unwrap();
    let stranger_trust = FederationTrust::load("other.example", &other.ca_cert, &[]).unwrap();
    let (side, err, _) = handshake(
        client_config(&fed.a.identity(now()).unwrap(), &fed.trust).unwrap(),
        server_config(&stranger, &stranger_trust).unwrap(),
    )
    .unwrap_err();
    // The client refuses the server: its chain leads to no federation CA.
    assert_eq!(side, Side::Client);
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[test]
fn server_refuses_client_without_certificate() {
    let fed = federation(KeyAlgorithm::Ed25519);
    let server_id = fed.b.identity(now()).unwrap();
    let anonymous = ClientConfig::builder_with_provider(pons_pki::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(fed.trust.root_store())
        .with_no_client_auth();
    let (side, err, _) =
        handshake(anonymous, server_config(&server_id, &fed.trust).unwrap()).unwrap_err();
    assert_eq!(side, Side::Server);
    assert_eq!(err, rustls::Error::NoCertificatesPresented);
}

fn revoking(fed: &Fed, revoked: &DevNode) -> FederationTrust {
    let crl = fed.ca.crl(&[&revoked.tls_cert], now()).unwrap();
    FederationTrust::from_der(
        "pons.example",
        vec![fed.ca.certificate().clone()],
        vec![crl],
    )
    .unwrap()
}

#[test]
fn server_refuses_revoked_client_certificate() {
    let fed = federation(KeyAlgorithm::EcdsaP256);
    let trust = revoking(&fed, &fed.a);
    let (side, err, _) = handshake(
        client_config(&fed.a.identity(now()).unwrap(), &trust).unwrap(),
        server_config(&fed.b.identity(now()).unwrap(), &trust).unwrap(),
    )
    .unwrap_err();
    assert_eq!(side, Side::Server);
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );

    // The CRL names only that certificate: another client still gets in.
    let c = fed.ca.issue(&node("nccn"), now()).unwrap();
    handshake(
        client_config(&c.identity(now()).unwrap(), &trust).unwrap(),
        server_config(&fed.b.identity(now()).unwrap(), &trust).unwrap(),
    )
    .unwrap();
}

#[test]
fn client_refuses_revoked_server_certificate() {
    let fed = federation(KeyAlgorithm::Ed25519);
    let trust = revoking(&fed, &fed.b);
    let (side, err, _) = handshake(
        client_config(&fed.a.identity(now()).unwrap(), &trust).unwrap(),
        server_config(&fed.b.identity(now()).unwrap(), &trust).unwrap(),
    )
    .unwrap_err();
    assert_eq!(side, Side::Client);
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
}

#[test]
fn configs_refuse_identity_of_another_federation() {
    let fed = federation(KeyAlgorithm::Ed25519);
    let other = DevCa::new("other.example", KeyAlgorithm::Ed25519, now()).unwrap();
    let id = other
        .issue(&node("cuta"), now())
        .unwrap()
        .identity(now())
        .unwrap();
    for err in [
        server_config(&id, &fed.trust).unwrap_err(),
        client_config(&id, &fed.trust).unwrap_err(),
    ] {
        assert!(matches!(err, PkiError::WrongFederation { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("outside federation \"pons.example\""),
            "{err}"
        );
    }
}

#[test]
fn peer_spiffe_id_needs_a_certificate_with_one() {
    assert!(matches!(
        peer_spiffe_id(&[]),
        Err(PkiError::NoPeerCertificate)
    ));
    let fed = federation(KeyAlgorithm::Ed25519);
    // The CA certificate carries no SPIFFE ID.
    let err = peer_spiffe_id(&[fed.ca.certificate().clone()]).unwrap_err();
    assert!(matches!(err, PkiError::PeerIdentity(_)), "{err}");
    assert_eq!(
        peer_spiffe_id(std::slice::from_ref(&fed.a.tls_cert)).unwrap(),
        SpiffeId::parse("spiffe://pons.example/node/adolescence").unwrap()
    );
}
