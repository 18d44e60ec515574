//! The client side: one connection per peer, one stream per record.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pons_core::{NodeId, SpiffeId};
use pons_proto::Frame;
use quinn::{
    ConnectError, Connection, ConnectionError, ReadError, RecvStream, SendStream, VarInt,
    WriteError,
};
use rustls_pki_types::CertificateDer;

use crate::stream::read_frame;
use crate::{code, Limits, TransportError};

/// What a link knows about its peer, for status displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerState {
    /// A QUIC connection to the peer is open (the handshake finished on our side).
    pub connected: bool,
    /// A response frame arrived on the current connection: the peer accepted our
    /// certificate (a finished handshake alone does not prove it under TLS 1.3).
    pub confirmed: bool,
    /// The last error met connecting or delivering, until a response arrives.
    pub last_error: Option<String>,
    /// When `connected`, `confirmed` or `last_error` last changed.
    pub last_change: Instant,
    /// How many times the state changed (to notice flapping between two polls).
    pub changes: u64,
}

/// The link to one peer: a lazily (re)made connection whose server is checked to be the
/// node meant. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct PeerLink {
    shared: Arc<LinkShared>,
}

struct LinkShared {
    quic: quinn::Endpoint,
    client: quinn::ClientConfig,
    expected: SpiffeId,
    addr: SocketAddr,
    server_name: String,
    limits: Limits,
    /// The current connection. Held across connecting, so that one attempt runs at a time
    /// and every caller shares its result: one connection per peer.
    conn: tokio::sync::Mutex<Option<Connection>>,
    state: Mutex<PeerState>,
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("peer", &self.shared.expected.to_string())
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl PeerLink {
    pub(crate) fn new(
        quic: quinn::Endpoint,
        client: quinn::ClientConfig,
        expected: SpiffeId,
        addr: SocketAddr,
        server_name: String,
        limits: Limits,
    ) -> Self {
        Self {
            shared: Arc::new(LinkShared {
                quic,
                client,
                expected,
                addr,
                server_name,
                limits,
                conn: tokio::sync::Mutex::new(None),
                state: Mutex::new(PeerState {
                    connected: false,
                    confirmed: false,
                    last_error: None,
                    last_change: Instant::now(),
                    changes: 0,
                }),
            }),
        }
    }

    /// The peer's node id.
    pub fn node(&self) -> &NodeId {
        &self.shared.expected.node
    }

    /// The SPIFFE ID the peer's server certificate must carry.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.shared.expected
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The limits of the endpoint this link belongs to.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// The connection state, for status displays.
    pub fn state(&self) -> PeerState {
        match self.shared.state.lock() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Connects now if not connected, and checks the server's identity.
    pub async fn connect(&self) -> Result<(), TransportError> {
        self.connection().await.map(drop)
    }

    /// Delivers one envelope: opens a stream (connecting first if needed), writes the
    /// `Deliver` frame, finishes, and reads one response frame within the response
    /// timeout. The response is returned as is: judging a receipt is the caller's job.
    pub async fn deliver(&self, envelope: &[u8]) -> Result<Frame, TransportError> {
        let conn = self.connection().await?;
        self.deliver_on(&conn, envelope).await
    }

    /// Sends one signed journal checkpoint for countersigning and reads the answer (a
    /// `Cosigned` or a `Reject` frame), within the response timeout.
    pub async fn cosign(&self, checkpoint: &[u8]) -> Result<Frame, TransportError> {
        let conn = self.connection().await?;
        let limits = &self.shared.limits;
        let bytes = Frame::Checkpoint {
            checkpoint: checkpoint.to_vec(),
        }
        .encode()
        .ok()
        .filter(|b| b.len().saturating_sub(4) <= limits.max_frame)
        .ok_or(TransportError::EnvelopeTooLarge {
            len: checkpoint.len(),
            max: limits.max_frame,
        })?;
        match tokio::time::timeout(limits.response_timeout, self.exchange(&conn, &bytes)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::TimedOut {
                peer: self.node().clone(),
                after: limits.response_timeout,
            }),
        }
    }

    /// Closes the current connection, if any, with [`code::SHUTDOWN`]. The next use of
    /// the link connects again.
    pub async fn close(&self) {
        if let Some(conn) = self.shared.conn.lock().await.take() {
            conn.close(VarInt::from_u32(code::SHUTDOWN), b"link closed");
            self.update(|s| {
                s.connected = false;
                s.confirmed = false;
            });
        }
    }

    /// The open connection to the peer, made (and its server checked) if needed.
    pub(crate) async fn connection(&self) -> Result<Connection, TransportError> {
        let mut slot = self.shared.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            match conn.close_reason() {
                None => return Ok(conn.clone()),
                Some(reason) => {
                    // Closed while idle (idle timeout, peer restart): connect again.
                    tracing::debug!(peer = %self.node(), %reason, "connection gone; reconnecting");
                    *slot = None;
                }
            }
        }
        match self.connect_new().await {
            Ok(conn) => {
                *slot = Some(conn.clone());
                self.update(|s| {
                    s.connected = true;
                    s.confirmed = false;
                });
                Ok(conn)
            }
            Err(e) => {
                let text = e.to_string();
                self.update(|s| {
                    s.connected = false;
                    s.confirmed = false;
                    s.last_error = Some(text);
                });
                Err(e)
            }
        }
    }

    async fn connect_new(&self) -> Result<Connection, TransportError> {
        let shared = &*self.shared;
        let connecting = shared
            .quic
            .connect_with(shared.client.clone(), shared.addr, &shared.server_name)
            .map_err(|e| match e {
                ConnectError::EndpointStopping => TransportError::Closed,
                other => self.connect_error(other.to_string()),
            })?;
        let conn = match tokio::time::timeout(shared.limits.connect_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(self.connect_error(e.to_string())),
            Err(_) => {
                return Err(TransportError::ConnectTimeout {
                    peer: self.node().clone(),
                    addr: shared.addr,
                    after: shared.limits.connect_timeout,
                })
            }
        };
        // The server's chain was verified against the federation CA; it must also be the
        // node meant, or a node could answer for another one it holds a certificate of.
        let found = conn
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .ok_or_else(|| "a server without certificate".to_owned())
            .and_then(|certs| pons_pki::peer_spiffe_id(&certs).map_err(|e| e.to_string()));
        match found {
            Ok(id) if id == shared.expected => Ok(conn),
            other => {
                let found = match other {
                    Ok(id) => id.to_string(),
                    Err(reason) => reason,
                };
                conn.close(
                    VarInt::from_u32(code::UNEXPECTED_PEER),
                    b"server is not the node expected",
                );
                Err(TransportError::UnexpectedPeer {
                    addr: shared.addr,
                    expected: shared.expected.clone(),
                    found,
                })
            }
        }
    }

    fn connect_error(&self, reason: String) -> TransportError {
        TransportError::Connect {
            peer: self.node().clone(),
            addr: self.shared.addr,
            reason,
        }
    }

    /// [`Self::deliver`] on a given connection.
    pub(crate) async fn deliver_on(
        &self,
        conn: &Connection,
        envelope: &[u8],
    ) -> Result<Frame, TransportError> {
        let limits = &self.shared.limits;
        let bytes = Frame::Deliver {
            envelope: envelope.to_vec(),
        }
        .encode()
        .ok()
        .filter(|b| b.len().saturating_sub(4) <= limits.max_frame)
        .ok_or(TransportError::EnvelopeTooLarge {
            len: envelope.len(),
            max: limits.max_frame,
        })?;
        let result = match tokio::time::timeout(
            limits.response_timeout,
            self.exchange(conn, &bytes),
        )
        .await
        {
            Ok(result) => result,
            // The exchange future is dropped, and its guard resets the stream.
            Err(_) => Err(TransportError::TimedOut {
                peer: self.node().clone(),
                after: limits.response_timeout,
            }),
        };
        match &result {
            Ok(_) => self.update(|s| {
                s.confirmed = true;
                s.last_error = None;
            }),
            Err(e) => {
                let text = e.to_string();
                let lost = e.is_connection_level();
                self.update(|s| {
                    if lost {
                        s.connected = false;
                        s.confirmed = false;
                    }
                    s.last_error = Some(text);
                });
            }
        }
        result
    }

    async fn exchange(&self, conn: &Connection, bytes: &[u8]) -> Result<Frame, TransportError> {
        let (send, recv) = conn.open_bi().await.map_err(|e| self.lost(e))?;
        let mut stream = Cancel {
            send,
            recv,
            done: false,
        };
        match stream.send.write_all(bytes).await {
            Ok(()) => {
                let _ = stream.send.finish();
            }
            // The receiver stopped reading (e.g. our frame is over its limit): its answer
            // may still explain why, so read it.
            Err(WriteError::Stopped(_)) => {}
            Err(WriteError::ConnectionLost(e)) => return Err(self.lost(e)),
            Err(e) => return Err(self.stream_failed(e.to_string())),
        }
        let framing = read_frame(&mut stream.recv, self.shared.limits.max_frame)
            .await
            .map_err(|e| match e {
                ReadError::ConnectionLost(e) => self.lost(e),
                other => self.stream_failed(other.to_string()),
            })?;
        stream.done = true;
        framing
            .into_response()
            .map_err(|reason| TransportError::BadResponse {
                peer: self.node().clone(),
                reason,
            })
    }

    fn stream_failed(&self, reason: String) -> TransportError {
        TransportError::StreamFailed {
            peer: self.node().clone(),
            reason,
        }
    }

    /// Classifies a connection error met on a stream.
    fn lost(&self, e: ConnectionError) -> TransportError {
        let peer = self.node().clone();
        match &e {
            // A TLS alert after our handshake finished: the server refused our certificate.
            ConnectionError::ConnectionClosed(close)
                if (0x100..0x200).contains(&u64::from(close.error_code)) =>
            {
                TransportError::Refused {
                    peer,
                    reason: e.to_string(),
                }
            }
            ConnectionError::ApplicationClosed(close)
                if close.error_code == VarInt::from_u32(code::PEER_IDENTITY) =>
            {
                TransportError::Refused {
                    peer,
                    reason: e.to_string(),
                }
            }
            ConnectionError::LocallyClosed => TransportError::Closed,
            _ => TransportError::ConnectionLost {
                peer,
                reason: e.to_string(),
            },
        }
    }

    fn update(&self, change: impl FnOnce(&mut PeerState)) {
        let mut state = match self.shared.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = state.clone();
        change(&mut state);
        if (state.connected, state.confirmed, &state.last_error)
            != (before.connected, before.confirmed, &before.last_error)
        {
            state.last_change = Instant::now();
            state.changes = state.changes.saturating_add(1);
        }
    }
}

/// A request stream that is reset (both directions) if dropped before its response was
/// read: on timeout, or when the caller gives the record up.
struct Cancel {
    send: SendStream,
    recv: RecvStream,
    done: bool,
}

impl Drop for Cancel {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.send.reset(VarInt::from_u32(code::STREAM_CANCELLED));
            let _ = self.recv.stop(VarInt::from_u32(code::STREAM_CANCELLED));
        }
    }
}
