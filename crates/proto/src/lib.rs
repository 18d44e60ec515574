//! Pons protocol `pons/1`: frames and state machines, with no I/O.
//!
//! One bidirectional QUIC stream carries one record: the sender writes a
//! [`Frame::Deliver`], the receiver answers with one [`Frame::Receipt`] or
//! [`Frame::Reject`]. This crate decides; `pons-transport` carries out:
//!
//! - [`frame`]: the wire format (4-byte big-endian length, then a CBOR map) and an
//!   incremental [`FrameDecoder`] that enforces the frame size limit before buffering.
//! - [`sender`]: per peer, which record to send next, when to retry and what happened to
//!   each record ([`Sender`]).
//! - [`receiver`]: what to answer to a `Deliver`, given what the caller learnt from
//!   opening the envelope, the TLS peer, the policy and the inbox ([`receiver::decide`]).
//! - [`backoff`]: the retry schedule, exponential with deterministic jitter.
//!
//! Architecture invariant: this crate opens no socket and no file, reads no clock
//! (`now` is always an argument, never read here) and has no source of randomness (jitter
//! is derived from a seed). That is what lets `tests/` run a sender against a receiver on
//! a simulated network with simulated time.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod frame;
pub mod receiver;
pub mod reject;
pub mod sender;

pub use backoff::Backoff;
pub use frame::{Frame, FrameDecoder, FrameError, DEFAULT_MAX_FRAME_LEN};
pub use receiver::{Checked, Decision, Policy, Refusal, Stored, Verified};
pub use reject::RejectCode;
pub use sender::{Config, Event, RetryCause, Sender};

/// The ALPN protocol name of this version of the exchange protocol.
pub const ALPN: &[u8] = b"pons/1";

/// A record's id: the UUIDv7 in its envelope.
pub type RecordId = uuid::Uuid;
