//! The node's one QUIC endpoint: server and client at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use pons_core::{NodeId, SpiffeId};
use pons_pki::{FederationTrust, NodeIdentity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use tokio::task::JoinHandle;

use crate::inbound::{self, InboundHandler, Inflight};
use crate::link::PeerLink;
use crate::{code, Limits, TransportError};

/// The node's QUIC endpoint, bound on one UDP address, serving peers and calling them.
///
/// Cheap to clone: clones share the endpoint. The UDP port is released once
/// [`Endpoint::close`] has run and every clone, [`PeerLink`] and driver holding it is dropped.
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) quic: quinn::Endpoint,
    pub(crate) local: SpiffeId,
    pub(crate) client: quinn::ClientConfig,
    pub(crate) limits: Limits,
    inflight: Arc<Inflight>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.shared.local.to_string())
            .field("addr", &self.shared.quic.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Binds the endpoint on `addr` (port 0 picks a free port) with the node's identity,
    /// the federation's trust store and the limits. Must run inside a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        identity: &NodeIdentity,
        trust: &FederationTrust,
        limits: Limits,
    ) -> Result<Self, TransportError> {
        check_limits(&limits)?;
        let (server, client) = configs(identity, trust, &limits)?;
        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        let quic = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { addr, source })?;
        Ok(Self::from_parts(quic, identity, client, limits))
    }

    /// Like [`Endpoint::bind`] on a socket the caller made: for tests that wrap the UDP
    /// socket to drop or delay datagrams. A node uses [`Endpoint::bind`].
    pub fn bind_socket(
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        identity: &NodeIdentity,
        trust: &FederationTrust,
        limits: Limits,
    ) -> Result<Self, TransportError> {
        check_limits(&limits)?;
        let (server, client) = configs(identity, trust, &limits)?;
        let addr = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let quic = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { addr, source })?;
        Ok(Self::from_parts(quic, identity, client, limits))
    }

    fn from_parts(
        quic: quinn::Endpoint,
        identity: &NodeIdentity,
        client: quinn::ClientConfig,
        limits: Limits,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                quic,
                local: identity.spiffe_id().clone(),
                client,
                limits,
                inflight: Arc::new(Inflight::default()),
                accept_task: Mutex::new(None),
            }),
        }
    }

    /// The bound address (with the actual port when bound on port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.shared
            .quic
            .local_addr()
            .map_err(|_| TransportError::Closed)
    }

    /// This node's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.shared.local
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Starts accepting peers: every `Deliver` on every stream of every connection from a
    /// node of the federation goes to `handler`. Calling it again replaces the handler and
    /// drops the connections accepted under the previous one.
    pub fn serve<H: InboundHandler>(&self, handler: Arc<H>) {
        let task = tokio::spawn(inbound::accept_loop(
            self.shared.quic.clone(),
            handler,
            self.shared.local.federation.clone(),
            self.shared.limits,
            self.shared.inflight.clone(),
        ));
        let previous = self
            .shared
            .accept_task
            .lock()
            .map(|mut slot| slot.replace(task))
            .unwrap_or(None);
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    /// A link to the peer `node`, reached at `addr` under the TLS server name
    /// `server_name` (a DNS name or IP address in its certificate). No connection is made
    /// until the link is used.
    pub fn peer(&self, node: NodeId, addr: SocketAddr, server_name: String) -> PeerLink {
        let expected = SpiffeId {
            federation: self.shared.local.federation.clone(),
            node,
        };
        PeerLink::new(
            self.shared.quic.clone(),
            self.shared.client.clone(),
            expected,
            addr,
            server_name,
            self.shared.limits,
        )
    }

    /// Shuts the endpoint down: refuses new connections, lets inbound streams in progress
    /// finish (at most the response timeout), closes every connection with
    /// [`code::SHUTDOWN`] and waits (at most the response timeout again) until the peers
    /// have been told.
    pub async fn close(&self) {
        let bound = self.shared.limits.response_timeout;
        // Refuse new connections; existing ones keep their streams.
        self.shared.quic.set_server_config(None);
        let _ = tokio::time::timeout(bound, self.shared.inflight.idle()).await;
        self.shared
            .quic
            .close(VarInt::from_u32(code::SHUTDOWN), b"node shutting down");
        let task = self
            .shared
            .accept_task
            .lock()
            .map(|mut slot| slot.take())
            .unwrap_or(None);
        if let Some(task) = task {
            task.abort();
            // Wait for the abort so that the accept loop's endpoint handle is dropped.
            let _ = task.await;
        }
        let _ = tokio::time::timeout(bound, self.shared.quic.wait_idle()).await;
    }
}

fn check_limits(limits: &Limits) -> Result<(), TransportError> {
    let bad = |field, rule| Err(TransportError::BadLimit { field, rule });
    if limits.max_frame == 0 || limits.max_frame > u32::MAX as usize {
        return bad("max_frame", "must be between 1 and 4294967295 bytes");
    }
    if limits.max_streams_per_peer == 0 {
        return bad("max_streams_per_peer", "must be at least 1");
    }
    for (field, d) in [
        ("idle_timeout", limits.idle_timeout),
        ("response_timeout", limits.response_timeout),
        ("connect_timeout", limits.connect_timeout),
    ] {
        if d.is_zero() {
            return bad(field, "must be more than zero");
        }
    }
    if IdleTimeout::try_from(limits.idle_timeout).is_err() {
        return bad("idle_timeout", "must be below 2^62 milliseconds");
    }
    Ok(())
}

/// The quinn server and client configurations of a node.
fn configs(
    identity: &NodeIdentity,
    trust: &FederationTrust,
    limits: &Limits,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TransportError> {
    let mut tls_server = pons_pki::server_config(identity, trust)?;
    // 0-RTT data can be replayed: nothing may arrive before the handshake completes.
    // QUIC allows only 0 or u32::MAX here, and quinn enables 0-RTT with the latter.
    tls_server.max_early_data_size = 0;
    let mut tls_client = pons_pki::client_config(identity, trust)?;
    tls_client.enable_early_data = false;
    let quic_server = QuicServerConfig::try_from(Arc::new(tls_server))
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let quic_client = QuicClientConfig::try_from(Arc::new(tls_client))
        .map_err(|e| TransportError::Quic(e.to_string()))?;

    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic_server));
    server.transport_config(Arc::new(transport(limits, Role::Server)?));
    // Peers are fixed hosts on a closed network; a path change is more likely an attack.
    server.migration(false);

    let mut client = quinn::ClientConfig::new(Arc::new(quic_client));
    client.transport_config(Arc::new(transport(limits, Role::Client)?));
    Ok((server, client))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// Bytes a peer may send on one stream ahead of what the node has read.
const STREAM_RECEIVE_WINDOW: u32 = 256 * 1024;

fn transport(limits: &Limits, role: Role) -> Result<TransportConfig, TransportError> {
    let mut t = TransportConfig::default();
    let idle =
        IdleTimeout::try_from(limits.idle_timeout).map_err(|_| TransportError::BadLimit {
            field: "idle_timeout",
            rule: "must be below 2^62 milliseconds",
        })?;
    t.max_idle_timeout(Some(idle));
    // Streams are opened by clients only: a server gets up to the per-peer limit, a client
    // accepts none (a server opening streams towards its client is not pons/1).
    let bidi = match role {
        Role::Server => limits.max_streams_per_peer,
        Role::Client => 0,
    };
    t.max_concurrent_bidi_streams(VarInt::from_u32(bidi));
    // What quinn buffers of a stream the node has not read yet (a request waiting for
    // its share of `Limits::inbound_budget`): at most this much per stream, not quinn's
    // default 1.25 MB, so that many open streams do not mean much memory.
    t.stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.datagram_receive_buffer_size(None);
    if role == Role::Client {
        // The client keeps its one connection per peer alive between records.
        t.keep_alive_interval(Some(limits.keep_alive_interval()));
    }
    Ok(t)
}
