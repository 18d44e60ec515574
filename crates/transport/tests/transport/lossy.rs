//! A lossy network: the client's socket drops every 7th datagram it sends.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pons_transport::{Endpoint, PeerDriver};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};

use super::driver::{sender_config, TestOutbox};
use super::support::*;

/// Wraps a real socket; drops every `every`-th transmit (deterministic, no randomness).
struct Lossy {
    inner: Arc<dyn AsyncUdpSocket>,
    every: u64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl fmt::Debug for Lossy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lossy").field("every", &self.every).finish()
    }
}

impl AsyncUdpSocket for Lossy {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(self.every) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_get_through_a_lossy_network_exactly_once() {
    let fed = Federation::new(FEDERATION);
    let (server, server_addr) = endpoint(&fed, "cuta", limits());
    let recorder = Arc::new(Recorder::default());
    server.serve(recorder.clone());

    let std_socket = std::net::UdpSocket::bind(localhost()).expect("bind");
    let inner = quinn::TokioRuntime
        .wrap_udp_socket(std_socket)
        .expect("wrap socket");
    let lossy = Arc::new(Lossy {
        inner,
        every: 7,
        sent: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    let client = Endpoint::bind_socket(lossy.clone(), &fed.identity("vaa"), &fed.trust, limits())
        .expect("bind lossy endpoint");

    let (outbox, ids) = TestOutbox::with_records(100);
    let link = client.peer(node_id("cuta"), server_addr, "localhost".into());
    let driver = PeerDriver::spawn(link, sender_config(), outbox.clone());
    for id in &ids {
        driver.enqueue(*id);
    }
    outbox.wait_delivered(ids.len()).await;
    driver.shutdown().await;

    assert!(
        lossy.dropped.load(Ordering::SeqCst) > 0,
        "the network dropped nothing: the test proves nothing"
    );
    let delivered = outbox.delivered.lock().expect("lock").clone();
    assert_eq!(delivered.len(), ids.len());
    assert!(delivered.values().all(|&n| n == 1));
    assert_eq!(
        recorder.per_envelope.lock().expect("lock").len(),
        ids.len(),
        "the handler saw every record"
    );
    server.close().await;
}
