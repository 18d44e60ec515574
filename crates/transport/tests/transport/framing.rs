//! Hostile bytes on a stream get a Reject with the right code; the endpoint keeps serving.

use std::sync::Arc;

use pons_proto::{Frame, RejectCode};

use super::support::*;

fn reject_code(frame: &Frame) -> RejectCode {
    match frame {
        Frame::Reject { code, .. } => *code,
        other => panic!("expected a reject frame, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_streams_are_rejected_and_others_still_served() {
    let fed = Federation::new(FEDERATION);
    let (server, server_addr) = endpoint(&fed, "cuta", limits());
    let recorder = Arc::new(Recorder::default());
    server.serve(recorder.clone());

    let hostile = RawClient::new(&fed.identity("vaa"), &fed.trust);
    let conn = hostile.connect(server_addr).await.expect("connect");

    // A 4 GiB length prefix: refused on the prefix alone, nothing buffered.
    let answer = raw_exchange(&conn, &[0xff, 0xff, 0xff, 0xff])
        .await
        .expect("answer");
    assert_eq!(reject_code(&one_frame(&answer)), RejectCode::FrameTooLarge);

    // A prefix just over the limit followed by some of its body.
    let mut over = u32::try_from(limits().max_frame + 1)
        .expect("fits")
        .to_be_bytes()
        .to_vec();
    over.extend_from_slice(&[0u8; 1000]);
    let answer = raw_exchange(&conn, &over).await.expect("answer");
    assert_eq!(reject_code(&one_frame(&answer)), RejectCode::FrameTooLarge);

    // Garbage: a small prefix then bytes that are not CBOR.
    let answer = raw_exchange(&conn, &[0, 0, 0, 3, 0xff, 0xfe, 0xfd])
        .await
        .expect("answer");
    assert_eq!(reject_code(&one_frame(&answer)), RejectCode::Malformed);

    // A truncated frame (prefix announces more than is sent before finishing).
    let answer = raw_exchange(&conn, &[0, 0, 0, 100, 0xa1])
        .await
        .expect("answer");
    assert_eq!(reject_code(&one_frame(&answer)), RejectCode::Malformed);

    // The wrong frame type.
    let receipt = Frame::Receipt { receipt: vec![1] }
        .encode()
        .expect("encode");
    let answer = raw_exchange(&conn, &receipt).await.expect("answer");
    assert_eq!(reject_code(&one_frame(&answer)), RejectCode::Malformed);

    // Two frames on one stream.
    let mut two = Frame::Deliver { envelope: vec![1] }
        .encode()
        .expect("encode");
    two.extend_from_slice(&two.clone());
    let answer = raw_exchange(&conn, &two).await.expect("answer");
    assert_eq!(reject_code(&one_frame(&answer)), RejectCode::Malformed);

    // An empty stream.
    let answer = raw_exchange(&conn, &[]).await.expect("answer");
    assert_eq!(reject_code(&one_frame(&answer)), RejectCode::Malformed);

    assert_eq!(recorder.count(), 0, "no bad stream reached the handler");

    // The same connection still serves a good stream...
    let deliver = Frame::Deliver {
        envelope: b"good".to_vec(),
    }
    .encode()
    .expect("encode");
    let answer = raw_exchange(&conn, &deliver).await.expect("answer");
    assert_eq!(
        one_frame(&answer),
        Frame::Receipt {
            receipt: receipt_for(b"good")
        }
    );
    // ...and so does the endpoint for another peer.
    let (other, _) = endpoint(&fed, "police", limits());
    let link = other.peer(node_id("cuta"), server_addr, "localhost".into());
    link.deliver(b"from police").await.expect("delivered");
    let calls = recorder.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0.node.as_str(), "vaa");
    assert_eq!(calls[1].0.node.as_str(), "police");
}

#[tokio::test]
async fn a_slow_stream_is_reset_and_does_not_hold_its_slot() {
    let fed = Federation::new(FEDERATION);
    let mut short = limits();
    short.response_timeout = std::time::Duration::from_millis(300);
    short.max_streams_per_peer = 1;
    let (server, server_addr) = endpoint(&fed, "cuta", short);
    let recorder = Arc::new(Recorder::default());
    server.serve(recorder.clone());

    let client = RawClient::new(&fed.identity("vaa"), &fed.trust);
    let conn = client.connect(server_addr).await.expect("connect");
    // Send half a prefix and never finish: the server gives up on it.
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    send.write_all(&[0, 0]).await.expect("write");
    let read = recv.read_to_end(1024).await;
    assert!(
        matches!(read, Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) if code == quinn::VarInt::from_u32(pons_transport::code::STREAM_TIMEOUT)),
        "{read:?}"
    );
    drop(send);
    // With a limit of one stream per peer, the slot is free again for a good request.
    let deliver = Frame::Deliver {
        envelope: b"after".to_vec(),
    }
    .encode()
    .expect("encode");
    let answer = raw_exchange(&conn, &deliver).await.expect("answer");
    assert!(matches!(one_frame(&answer), Frame::Receipt { .. }));
    assert_eq!(recorder.count(), 1);
}

/// Answers after a pause and counts how many requests it holds at once.
#[derive(Default)]
struct Slow {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl pons_transport::InboundHandler for Slow {
    async fn on_deliver(&self, _peer: &pons_core::SpiffeId, envelope: Vec<u8>) -> Frame {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.now.fetch_sub(1, SeqCst);
        Frame::Receipt {
            receipt: receipt_for(&envelope),
        }
    }
}

/// A peer's requests hold at most `Limits::inbound_budget` bytes at once, however many
/// streams it opens: sixteen near-largest frames at once (twice the budget) are all
/// answered, no more than eight of them held at a time.
#[tokio::test]
async fn many_large_requests_share_the_peer_budget_and_all_are_answered() {
    let fed = Federation::new(FEDERATION);
    let limits = limits();
    assert_eq!(limits.inbound_budget(), 8 * (limits.max_frame + 4));
    let (server, server_addr) = endpoint(&fed, "cuta", limits);
    let slow = Arc::new(Slow::default());
    server.serve(slow.clone());

    let client = RawClient::new(&fed.identity("vaa"), &fed.trust);
    let conn = client.connect(server_addr).await.expect("connect");
    let n = limits.max_streams_per_peer as usize;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let conn = conn.clone();
        let mut envelope = vec![i as u8; limits.max_frame - 64];
        envelope[0] = b'e';
        tasks.spawn(async move {
            let frame = Frame::Deliver {
                envelope: envelope.clone(),
            }
            .encode()
            .expect("encode");
            let answer = raw_exchange(&conn, &frame).await.expect("answer");
            match one_frame(&answer) {
                Frame::Receipt { receipt } => assert_eq!(receipt, receipt_for(&envelope)),
                other => panic!("{other:?}"),
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("request task");
    }
    let most = slow.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=8).contains(&most),
        "{most} requests held at once, the budget allows 8"
    );
}
