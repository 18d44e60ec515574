//! Pons transport: the one crate that speaks QUIC (quinn).
//!
//! It moves bytes and timers and decides nothing beyond identity checks and limits:
//!
//! - [`Endpoint`]: one QUIC endpoint per node, server and client at once, mutual TLS from
//!   `pons-pki`'s rustls configurations, ALPN `pons/1`, 0-RTT off.
//! - Inbound ([`Endpoint::serve`]): every connection is named by the SPIFFE ID of its client
//!   certificate; every bidirectional stream carries one `Deliver` frame, handed to the
//!   node's [`InboundHandler`], whose answer frame is written back. Framing errors are
//!   answered here with a `Reject` frame, using `pons-proto`'s codes.
//! - Outbound ([`Endpoint::peer`] → [`PeerLink`]): one connection per peer, made lazily, the
//!   server's SPIFFE ID checked against the node meant; one stream per record.
//! - [`PeerDriver`]: runs `pons_proto::Sender` for one peer against a [`PeerLink`], reading
//!   the clock and sleeping for it; the node's [`Outbox`] supplies envelopes and judges
//!   each response (receipt verification and persistence are the node's).
//!
//! Architecture invariant: only this crate imports quinn. What to answer to a record, what
//! counts as a valid receipt and what is persisted are decided elsewhere (`pons-proto`,
//! `pons-core`, the node); this crate must not grow policy.

#![forbid(unsafe_code)]

pub mod code;
mod driver;
mod endpoint;
mod error;
mod inbound;
mod limits;
mod link;
mod stream;

pub use driver::{Outbox, PeerDriver, ResponseOutcome};

pub use endpoint::Endpoint;
pub use error::TransportError;
pub use inbound::InboundHandler;
pub use limits::Limits;
pub use link::{PeerLink, PeerState};
