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
//! A whole exchange, with the envelope, the receipt and the checks reduced to stand-ins:
//!
//! ```
//! use std::time::Instant;
//! use pons_core::SpiffeId;
//! use pons_proto::receiver::{decide, refusal_for_frame};
//! use pons_proto::{Config, Decision, Event, Frame, FrameDecoder, Policy, RecordId, Sender, Verified};
//!
//! let now = Instant::now(); // the caller's clock; pons-proto never reads one
//! let vaj = SpiffeId::parse("spiffe://pons.example/node/vaj")?;
//! let record = RecordId::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
//!
//! let mut sender = Sender::new(Config::default());
//! sender.enqueue(record, now);
//! let to_send = sender.poll_transmit(now).expect("ready now");
//! let request = Frame::Deliver { envelope: b"sealed COSE_Sign1".to_vec() }.encode()?;
//!
//! // Receiving node: decode the stream, open the envelope (pons-core), decide.
//! let mut decoder = FrameDecoder::default();
//! decoder.push(&request);
//! let envelope = refusal_for_frame(decoder.next_frame()).expect("a deliver frame");
//! let opened = Ok(Verified { record_id: to_send, signer: vaj.clone(), envelope_sha256: [0; 32] });
//! let decision = decide(opened, &vaj, Policy::Allowed, |_id| None);
//! assert!(matches!(decision, Decision::Accept { .. }));
//! // ... store the record durably, then build and send the receipt:
//! let response = Frame::Receipt { receipt: b"sealed receipt".to_vec() }.encode()?;
//!
//! // Sending node: read the response, verify the receipt (pons-core), report it.
//! let mut decoder = FrameDecoder::default();
//! decoder.push(&response);
//! assert!(matches!(decoder.next_frame()?, Some(Frame::Receipt { .. })));
//! sender.on_receipt(to_send, now);
//! assert_eq!(sender.poll_event(), Some(Event::Delivered { record_id: record, attempts: 1 }));
//! # let _ = envelope;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
