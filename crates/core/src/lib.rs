//! Pons core: the rules of the exchange, with no I/O.
//!
//! This crate holds the record classes and their validation, the CBOR payload codec,
//! sealing and opening of COSE_Sign1 envelopes and receipts, node identities and the
//! subject pseudonym. It reads no file, opens no socket, reads no clock and spawns
//! nothing: time is always an argument, so every rule can be tested with simulated time
//! and an exported envelope or journal can be verified with this crate alone.

pub mod checkpoint;
pub mod class;
pub mod cose;
pub mod envelope;
pub mod identity;
pub mod journal;
pub mod key;
pub mod pseudonym;
pub mod receipt;
pub mod record;
pub mod retention;
pub mod trust;
pub mod validate;

pub use cose::{OpenError, Opened, SealError, Signer, SignerError};
pub use envelope::{open_record, seal_record, EnvelopeError, OpenedRecord};
pub use identity::{IdentityError, NodeId, SpiffeId};
pub use key::{KeyError, SigningAlgorithm, SigningKey};
pub use pseudonym::{PseudonymKey, SubjectRef};
pub use receipt::{Effect, Receipt, ReceiptError, ReceiptItem};
pub use record::{Body, ClassName, DecodeError, Marking, Record, RecordId, Tlp};
pub use trust::{CertUsage, Trust, TrustError};
pub use validate::{Draft, DraftContext, Rule, ValidationError, ValidationErrors};
