//! Shared fixtures: a federation CA, node identities, endpoints and a recording handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pons_core::{NodeId, SpiffeId};
use pons_pki::devca::DevCa;
use pons_pki::{FederationTrust, KeyAlgorithm, NodeIdentity};
use pons_proto::Frame;
use pons_transport::{Endpoint, InboundHandler, Limits};
use time::OffsetDateTime;

pub const FEDERATION: &str = "pons.example";

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn node_id(name: &str) -> NodeId {
    NodeId::new(name).expect("valid node id")
}

/// A federation: its CA and trust store.
pub struct Federation {
    pub ca: DevCa,
    pub trust: FederationTrust,
}

impl Federation {
    pub fn new(name: &str) -> Self {
        let ca = DevCa::new(name, KeyAlgorithm::Ed25519, now()).expect("dev CA");
        let trust =
            FederationTrust::from_der(name, vec![ca.certificate().clone()], vec![]).expect("trust");
        Self { ca, trust }
    }

    pub fn identity(&self, node: &str) -> NodeIdentity {
        self.ca
            .issue(&node_id(node), now())
            .expect("issue")
            .identity(now())
            .expect("identity")
    }
}

/// Short limits so that failure paths end quickly; frames up to 64 KiB.
pub fn limits() -> Limits {
    Limits {
        max_frame: 64 * 1024,
        max_streams_per_peer: 16,
        idle_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(3),
    }
}

pub fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An endpoint of `node` in `federation`, bound on an ephemeral loopback port.
pub fn endpoint(federation: &Federation, node: &str, limits: Limits) -> (Endpoint, SocketAddr) {
    let identity = federation.identity(node);
    let endpoint =
        Endpoint::bind(localhost(), &identity, &federation.trust, limits).expect("bind endpoint");
    let addr = endpoint.local_addr().expect("local addr");
    (endpoint, addr)
}

/// The receipt the recording handler answers for an envelope.
pub fn receipt_for(envelope: &[u8]) -> Vec<u8> {
    let mut r = b"receipt:".to_vec();
    r.extend_from_slice(envelope);
    r
}

/// Records every delivery: who sent which envelope, how many times.
#[derive(Default)]
pub struct Recorder {
    pub calls: Mutex<Vec<(SpiffeId, Vec<u8>)>>,
    pub per_envelope: Mutex<HashMap<Vec<u8>, u32>>,
    pub changed: tokio::sync::Notify,
}

impl Recorder {
    pub fn count(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }
}

impl InboundHandler for Recorder {
    async fn on_deliver(&self, peer: &SpiffeId, envelope: Vec<u8>) -> Frame {
        self.calls
            .lock()
            .expect("lock")
            .push((peer.clone(), envelope.clone()));
        *self
            .per_envelope
            .lock()
            .expect("lock")
            .entry(envelope.clone())
            .or_default() += 1;
        self.changed.notify_waiters();
        Frame::Receipt {
            receipt: receipt_for(&envelope),
        }
    }
}

/// A bare quinn client with `identity`'s certificate, trusting `trust`: it checks nothing
/// about the server's SPIFFE ID and can write any bytes, as a hostile peer would.
pub struct RawClient {
    pub endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
}

impl RawClient {
    pub fn new(identity: &NodeIdentity, trust: &FederationTrust) -> Self {
        let tls = pons_pki::client_config(identity, trust).expect("client config");
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))
            .expect("quic client config");
        let config = quinn::ClientConfig::new(Arc::new(quic));
        let endpoint = quinn::Endpoint::client(localhost()).expect("client endpoint");
        Self { endpoint, config }
    }

    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        self.endpoint
            .connect_with(self.config.clone(), addr, "localhost")
            .expect("connect call")
            .await
    }
}

/// Writes `bytes` on a new stream, finishes it and reads the whole answer (up to 1 MiB).
pub async fn raw_exchange(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    // The server may stop reading early (oversize prefix): that is not an error here.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())
}

/// Decodes exactly one frame from a response.
pub fn one_frame(bytes: &[u8]) -> Frame {
    let mut decoder = pons_proto::FrameDecoder::default();
    decoder.push(bytes);
    let frame = decoder
        .next_frame()
        .expect("valid frame")
        .expect("complete frame");
    assert_eq!(decoder.buffered(), 0, "one frame only");
    frame
}
