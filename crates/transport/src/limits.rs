//! Size and time limits of an [`crate::Endpoint`].

use std::time::Duration;

use pons_proto::DEFAULT_MAX_FRAME_LEN;

/// How many of the largest frames one peer's requests may hold at once
/// ([`Limits::inbound_budget`]).
const INBOUND_FRAMES: usize = 8;

/// Size and time limits applied to every connection and stream of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest frame accepted or sent, after its 4-byte length prefix.
    pub max_frame: usize,
    /// Most bidirectional streams one peer may have open towards this node at once.
    pub max_streams_per_peer: u32,
    /// A connection with no traffic for this long is dropped; the client side sends
    /// keep-alives at a third of it so that a connection to a quiet peer stays up.
    pub idle_timeout: Duration,
    /// Outbound: how long a `Deliver` waits for its response. Inbound: how long a peer has
    /// to send its whole request, and then to take the response (against slow-loris).
    pub response_timeout: Duration,
    /// How long connecting (QUIC + TLS handshake) may take, in either role.
    pub connect_timeout: Duration,
}

impl Default for Limits {
    /// 1 MiB frames, 32 streams per peer, 30 s idle, 30 s response, 10 s connect.
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME_LEN,
            max_streams_per_peer: 32,
            idle_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// How many bytes of requests one peer's connection may hold in memory at once,
    /// however many streams it has open: eight of the largest frames (8 MiB with 1 MiB
    /// frames; at most 4 GiB). A request past it waits for earlier ones to be answered.
    pub fn inbound_budget(&self) -> usize {
        self.max_frame
            .saturating_add(4)
            .saturating_mul(INBOUND_FRAMES)
            .min(u32::MAX as usize)
    }

    /// The keep-alive interval derived from the idle timeout.
    pub fn keep_alive_interval(&self) -> Duration {
        (self.idle_timeout / 3).max(Duration::from_millis(100))
    }
}
