//! The one error type of this crate.

use std::net::SocketAddr;
use std::time::Duration;

use pons_core::{NodeId, SpiffeId};
use pons_pki::PkiError;

/// Why an endpoint could not be built, or a link could not deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The UDP socket could not be bound.
    #[error("binding UDP address {addr} failed: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The node's certificates or trust store could not make a TLS configuration.
    #[error("TLS configuration: {0}")]
    Pki(#[from] PkiError),
    /// The rustls configuration cannot be used for QUIC (no TLS 1.3 AES-128-GCM suite).
    #[error("TLS configuration is not usable for QUIC: {0}")]
    Quic(String),
    /// The transport limits are inconsistent.
    #[error("transport limit {field} is invalid: {rule}")]
    BadLimit {
        /// The field of [`crate::Limits`].
        field: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The local endpoint is closed.
    #[error("endpoint is closed")]
    Closed,
    /// Connecting to the peer failed (unreachable, refused, handshake failure).
    #[error("connecting to {peer} at {addr} failed: {reason}")]
    Connect {
        /// The node meant.
        peer: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// What QUIC or TLS reported.
        reason: String,
    },
    /// Connecting to the peer took longer than the connect timeout.
    #[error("connecting to {peer} at {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The node meant.
        peer: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The connect timeout.
        after: Duration,
    },
    /// The server's certificate does not name the node meant (or names no node).
    #[error("server at {addr} is {found}, not the expected {expected}")]
    UnexpectedPeer {
        /// Its address.
        addr: SocketAddr,
        /// The SPIFFE ID expected.
        expected: SpiffeId,
        /// The SPIFFE ID the certificate names, or why it names none.
        found: String,
    },
    /// The peer closed the connection because it refused our certificate (a TLS alert
    /// after our handshake finished) or our identity.
    #[error("{peer} refused the connection: {reason}")]
    Refused {
        /// The node meant.
        peer: NodeId,
        /// The peer's close reason.
        reason: String,
    },
    /// The connection was lost while a stream was open (closed, reset or timed out).
    #[error("connection to {peer} lost: {reason}")]
    ConnectionLost {
        /// The node meant.
        peer: NodeId,
        /// What QUIC reported.
        reason: String,
    },
    /// The stream was reset or stopped by the peer, or ended without a response.
    #[error("stream to {peer} failed: {reason}")]
    StreamFailed {
        /// The node meant.
        peer: NodeId,
        /// What happened.
        reason: String,
    },
    /// No complete response arrived within the response timeout.
    #[error("no response from {peer} within {after:?}")]
    TimedOut {
        /// The node meant.
        peer: NodeId,
        /// The response timeout.
        after: Duration,
    },
    /// The response is not exactly one well-formed `pons/1` frame within the size limit.
    #[error("response from {peer} is not one valid pons/1 frame: {reason}")]
    BadResponse {
        /// The node meant.
        peer: NodeId,
        /// The framing rule broken.
        reason: String,
    },
    /// The envelope does not fit in a frame within the size limit.
    #[error("envelope of {len} bytes does not fit a frame of at most {max} bytes")]
    EnvelopeTooLarge {
        /// The envelope's length.
        len: usize,
        /// The frame size limit.
        max: usize,
    },
}

impl TransportError {
    /// Whether the error ended the connection (rather than one stream): the caller should
    /// count it against the peer, not the record.
    pub fn is_connection_level(&self) -> bool {
        matches!(
            self,
            TransportError::Closed
                | TransportError::Connect { .. }
                | TransportError::ConnectTimeout { .. }
                | TransportError::UnexpectedPeer { .. }
                | TransportError::Refused { .. }
                | TransportError::ConnectionLost { .. }
        )
    }
}
