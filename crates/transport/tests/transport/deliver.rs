//! One record through a link, the handler seeing the right peer.

use std::sync::Arc;

use pons_proto::Frame;

use super::support::*;

#[tokio::test]
async fn a_record_is_delivered_and_the_handler_sees_the_peer() {
    let fed = Federation::new(FEDERATION);
    let (server, server_addr) = endpoint(&fed, "cuta", limits());
    let recorder = Arc::new(Recorder::default());
    server.serve(recorder.clone());
    let (client, _) = endpoint(&fed, "vaa", limits());

    let link = client.peer(node_id("cuta"), server_addr, "localhost".into());
    assert!(!link.state().connected);
    let response = link.deliver(b"envelope one").await.expect("delivered");
    assert_eq!(
        response,
        Frame::Receipt {
            receipt: receipt_for(b"envelope one")
        }
    );
    let calls = recorder.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0.to_string(), "spiffe://pons.example/node/vaa");
    assert_eq!(calls[0].1, b"envelope one");

    let state = link.state();
    assert!(state.connected && state.confirmed, "{state:?}");
    assert_eq!(state.last_error, None);

    // The connection is reused for the next record.
    let changes = state.changes;
    link.deliver(b"envelope two").await.expect("delivered");
    assert_eq!(
        link.state().changes,
        changes,
        "no reconnect between records"
    );
    assert_eq!(recorder.count(), 2);

    client.close().await;
    server.close().await;
}

#[tokio::test]
async fn an_envelope_over_the_frame_limit_is_refused_before_sending() {
    let fed = Federation::new(FEDERATION);
    let (server, server_addr) = endpoint(&fed, "cuta", limits());
    let recorder = Arc::new(Recorder::default());
    server.serve(recorder.clone());
    let (client, _) = endpoint(&fed, "vaa", limits());
    let link = client.peer(node_id("cuta"), server_addr, "localhost".into());
    let big = vec![0u8; limits().max_frame];
    let err = link.deliver(&big).await.expect_err("too large");
    assert!(
        matches!(err, pons_transport::TransportError::EnvelopeTooLarge { len, max } if len == big.len() && max == limits().max_frame),
        "{err}"
    );
    assert_eq!(recorder.count(), 0);
}

#[tokio::test]
async fn an_unreachable_peer_is_a_connect_error_recorded_in_the_state() {
    let fed = Federation::new(FEDERATION);
    // Bind and close a socket to get a port nobody listens on.
    let port = std::net::UdpSocket::bind(localhost())
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut short = limits();
    short.connect_timeout = std::time::Duration::from_millis(300);
    let (client, _) = endpoint(&fed, "vaa", short);
    let link = client.peer(node_id("cuta"), port, "localhost".into());
    let err = link.deliver(b"x").await.expect_err("nobody there");
    assert!(err.is_connection_level(), "{err}");
    let state = link.state();
    assert!(!state.connected);
    assert_eq!(state.last_error, Some(err.to_string()));
}
