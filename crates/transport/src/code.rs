//! QUIC application error codes used by `pons/1`, in connection closes and stream resets.
//!
//! They tell the peer's operator why a connection or stream ended; no decision on the
//! other side depends on their exact value beyond "this was deliberate".

/// Connection close: the node is shutting down (or the link was closed deliberately).
pub const SHUTDOWN: u32 = 0;
/// Connection close by a server: the client certificate names no node of the federation.
pub const PEER_IDENTITY: u32 = 1;
/// Connection close by a client: the server is not the node it meant to reach.
pub const UNEXPECTED_PEER: u32 = 2;
/// Stream reset / stop: the request or response did not arrive within the time limit.
pub const STREAM_TIMEOUT: u32 = 0x10;
/// Stream reset / stop: the side that opened the stream gave it up.
pub const STREAM_CANCELLED: u32 = 0x11;
/// Stream stop: the receiver read what it needed and refuses further bytes.
pub const STREAM_REFUSED: u32 = 0x12;
