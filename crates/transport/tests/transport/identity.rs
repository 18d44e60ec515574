//! Who may talk to whom: certificates from another CA, another federation, the wrong node.

use std::sync::Arc;

use pons_pki::FederationTrust;
use pons_proto::Frame;
use pons_transport::{Endpoint, TransportError};

use super::support::*;

#[tokio::test]
async fn a_client_from_another_ca_is_refused_and_never_reaches_the_handler() {
    let fed = Federation::new(FEDERATION);
    let (server, server_addr) = endpoint(&fed, "cuta", limits());
    let recorder = Arc::new(Recorder::default());
    server.serve(recorder.clone());

    // Same federation name, but a rogue CA. The rogue client trusts the real CA too, so
    // that it accepts the server: only the server's check of the client can stop it.
    let rogue = Federation::new(FEDERATION);
    let trust = FederationTrust::from_der(
        FEDERATION,
        vec![rogue.ca.certificate().clone(), fed.ca.certificate().clone()],
        vec![],
    )
    .expect("trust");
    let client =
        Endpoint::bind(localhost(), &rogue.identity("vaa"), &trust, limits()).expect("bind");
    let link = client.peer(node_id("cuta"), server_addr, "localhost".into());
    let err = link.deliver(b"sneaky").await.expect_err("refused");
    // TLS 1.3: the client's handshake may finish first; the TLS alert then ends the
    // connection under the first stream. Either way it must not look like a stream issue.
    assert!(
        matches!(
            err,
            TransportError::Refused { .. } | TransportError::Connect { .. }
        ),
        "{err}"
    );
    assert!(!link.state().confirmed);
    assert_eq!(recorder.count(), 0);
}

#[tokio::test]
async fn a_client_of_another_federation_is_closed_with_the_identity_code() {
    let fed = Federation::new(FEDERATION);
    let other = Federation::new("other.example");
    // The server trusts both CAs (e.g. a cross-certified partner), but only serves nodes of
    // its own federation.
    let server_trust = FederationTrust::from_der(
        FEDERATION,
        vec![fed.ca.certificate().clone(), other.ca.certificate().clone()],
        vec![],
    )
    .expect("trust");
    let server =
        Endpoint::bind(localhost(), &fed.identity("cuta"), &server_trust, limits()).expect("bind");
    let server_addr = server.local_addr().expect("addr");
    let recorder = Arc::new(Recorder::default());
    server.serve(recorder.clone());

    let client_trust =
        FederationTrust::from_der("other.example", vec![fed.ca.certificate().clone()], vec![])
            .expect("trust");
    let client = RawClient::new(&other.identity("vaa"), &client_trust);
    let conn = client
        .connect(server_addr)
        .await
        .expect("handshake completes");
    let deliver = Frame::Deliver {
        envelope: b"x".to_vec(),
    }
    .encode()
    .expect("encode");
    let _ = raw_exchange(&conn, &deliver).await;
    let closed = conn.closed().await;
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(pons_transport::code::PEER_IDENTITY)),
        "{closed:?}"
    );
    assert_eq!(recorder.count(), 0);
}

#[tokio::test]
async fn a_server_that_is_not_the_expected_node_is_a_typed_error() {
    let fed = Federation::new(FEDERATION);
    let (server, server_addr) = endpoint(&fed, "police", limits());
    let recorder = Arc::new(Recorder::default());
    server.serve(recorder.clone());
    let (client, _) = endpoint(&fed, "vaa", limits());

    let link = client.peer(node_id("cuta"), server_addr, "localhost".into());
    let err = link
        .deliver(b"for cuta only")
        .await
        .expect_err("wrong server");
    match &err {
        TransportError::UnexpectedPeer {
            addr,
            expected,
            found,
        } => {
            assert_eq!(*addr, server_addr);
            assert_eq!(expected.to_string(), "spiffe://pons.example/node/cuta");
            assert_eq!(found, "spiffe://pons.example/node/police");
        }
        other => panic!("expected UnexpectedPeer, got {other}"),
    }
    assert!(!link.state().connected);
    assert_eq!(recorder.count(), 0, "nothing was sent to the wrong node");
}

/// Connects twice to `server_addr` with a client that asks for 0-RTT; whether the second
/// connection could send 0-RTT data.
async fn resumed_with_0rtt(fed: &Federation, server_addr: std::net::SocketAddr) -> bool {
    let identity = fed.identity("vaa");
    let mut tls = pons_pki::client_config(&identity, &fed.trust).expect("config");
    tls.enable_early_data = true;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).expect("quic");
    let config = quinn::ClientConfig::new(Arc::new(quic));
    let client = quinn::Endpoint::client(localhost()).expect("client");
    let first = client
        .connect_with(config.clone(), server_addr, "localhost")
        .expect("connect")
        .await
        .expect("first connection");
    // A round trip on a stream, so that the session tickets have arrived.
    let (mut send, mut recv) = first.open_bi().await.expect("open");
    send.write_all(b"ping").await.expect("write");
    send.finish().expect("finish");
    let _ = recv.read_to_end(1 << 20).await;
    first.close(quinn::VarInt::from_u32(0), b"");
    let connecting = client
        .connect_with(config, server_addr, "localhost")
        .expect("connect");
    connecting.into_0rtt().is_ok()
}

#[tokio::test]
async fn zero_rtt_is_off() {
    let fed = Federation::new(FEDERATION);
    let (server, server_addr) = endpoint(&fed, "cuta", limits());
    server.serve(Arc::new(Recorder::default()));
    assert!(
        !resumed_with_0rtt(&fed, server_addr).await,
        "a Pons server must not accept 0-RTT"
    );

    // Control: the same client against a server that allows early data does get 0-RTT,
    // so the assertion above can fail.
    let identity = fed.identity("cuta");
    let mut tls = pons_pki::server_config(&identity, &fed.trust).expect("config");
    tls.max_early_data_size = u32::MAX;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls)).expect("quic");
    let permissive = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(quic)),
        localhost(),
    )
    .expect("server");
    let addr = permissive.local_addr().expect("addr");
    let accept = tokio::spawn(async move {
        while let Some(incoming) = permissive.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let _ = recv.read_to_end(1024).await;
                        let _ = send.write_all(b"pong").await;
                        let _ = send.finish();
                    }
                }
            });
        }
    });
    assert!(
        resumed_with_0rtt(&fed, addr).await,
        "control server allows 0-RTT"
    );
    accept.abort();
}
