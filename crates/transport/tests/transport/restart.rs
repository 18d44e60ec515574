//! The receiving endpoint restarts on the same port mid-way: nothing is lost.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pons_core::SpiffeId;
use pons_proto::Frame;
use pons_transport::{Endpoint, InboundHandler, PeerDriver};

use super::driver::{sender_config, TestOutbox};
use super::support::*;

/// Answers the first `answer` records, then hangs on every later one (a node that froze).
struct Freezing {
    answered: AtomicUsize,
    answer: usize,
    seen: Recorder,
    frozen: tokio::sync::Notify,
}

impl InboundHandler for Freezing {
    fn on_deliver(&self, peer: &SpiffeId, envelope: Vec<u8>) -> impl Future<Output = Frame> + Send {
        let n = self.answered.fetch_add(1, Ordering::SeqCst);
        let peer = peer.clone();
        async move {
            if n >= self.answer {
                self.frozen.notify_one();
                std::future::pending::<()>().await;
            }
            self.seen.on_deliver(&peer, envelope).await
        }
    }
}

/// Binds `addr` again, retrying while the old endpoint's socket is being released.
async fn rebind(addr: SocketAddr, fed: &Federation) -> Endpoint {
    let identity = fed.identity("cuta");
    for _ in 0..200 {
        match Endpoint::bind(addr, &identity, &fed.trust, limits()) {
            Ok(endpoint) => return endpoint,
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    panic!("port {addr} was not released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_reconnects_after_the_receiver_restarts_and_loses_nothing() {
    let fed = Federation::new(FEDERATION);
    let mut first_limits = limits();
    // Bounds how long the first server's close waits for its frozen streams.
    first_limits.response_timeout = Duration::from_millis(500);
    let (first, server_addr) = endpoint(&fed, "cuta", first_limits);
    let freezing = Arc::new(Freezing {
        answered: AtomicUsize::new(0),
        answer: 50,
        seen: Recorder::default(),
        frozen: tokio::sync::Notify::new(),
    });
    first.serve(freezing.clone());

    let (client, _) = endpoint(&fed, "vaa", limits());
    let (outbox, ids) = TestOutbox::with_records(120);
    let link = client.peer(node_id("cuta"), server_addr, "localhost".into());
    let driver = PeerDriver::spawn(link, sender_config(), outbox.clone());
    for id in &ids {
        driver.enqueue(*id);
    }

    // The first server answers 50 records, then freezes with streams open.
    tokio::time::timeout(Duration::from_secs(60), freezing.frozen.notified())
        .await
        .expect("first server froze");
    first.close().await;
    drop(first);
    let delivered_before = outbox.delivered_count();
    assert!(delivered_before <= 50, "{delivered_before}");

    let second = rebind(server_addr, &fed).await;
    let recorder = Arc::new(Recorder::default());
    second.serve(recorder.clone());

    outbox.wait_delivered(ids.len()).await;
    driver.shutdown().await;

    let delivered = outbox.delivered.lock().expect("lock").clone();
    assert_eq!(delivered.len(), ids.len(), "every record delivered");
    assert!(
        delivered.values().all(|&n| n == 1),
        "a record judged delivered twice"
    );
    // Every record reached one of the two servers; the second one got the rest.
    let mut seen: HashSet<Vec<u8>> = freezing
        .seen
        .per_envelope
        .lock()
        .expect("lock")
        .keys()
        .cloned()
        .collect();
    seen.extend(recorder.per_envelope.lock().expect("lock").keys().cloned());
    assert_eq!(seen.len(), ids.len());
    assert!(recorder.count() >= ids.len() - 50);
    second.close().await;
}
