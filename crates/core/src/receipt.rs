//! Signed receipts: a receiver's statement that it holds records durably.
//!
//! A receipt is a COSE_Sign1 envelope ([`RECEIPT_CONTENT_TYPE`]) sealed by the receiver
//! over a CBOR [`Receipt`]. One signature covers many records, so a receiver can batch
//! acknowledgements. A sender marks a record delivered only when a receipt signed by the
//! intended recipient [`covers`](Receipt::covers) the record id **and** the SHA-256 of the
//! exact envelope bytes it sent.

use std::collections::BTreeSet;
use std::io::Cursor;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cose::{self, OpenError, SealError, Signer, RECEIPT_CONTENT_TYPE};
use crate::identity::NodeId;
use crate::trust::Trust;

/// The receipt format version this code writes and reads.
pub const RECEIPT_VERSION: u64 = 1;

/// Most items one receipt may cover.
pub const MAX_RECEIPT_ITEMS: usize = 4096;

/// A receiver's signed acknowledgement of one or more records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Format version, [`RECEIPT_VERSION`].
    pub v: u64,
    /// The node that received the records and signs this receipt.
    pub receiver: NodeId,
    /// The node that sent them.
    pub sender: NodeId,
    /// When the receiver made the records durable (receiver's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The records acknowledged, at least one.
    pub items: Vec<ReceiptItem>,
}

/// One acknowledged record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptItem {
    /// The record's id.
    pub record_id: Uuid,
    /// SHA-256 of the envelope bytes as received (a CBOR bstr of 32 bytes).
    #[serde(with = "bytes32")]
    pub envelope_sha256: [u8; 32],
    /// The receiver's journal sequence number of the `receive` entry.
    pub journal_seq: u64,
    /// For an `erasure-notice` or a `rectification`: what the receiver did to the earlier
    /// record it names (absent for other records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
}

/// What a receiver did to the earlier record that an `erasure-notice` or a `rectification`
/// names, stated in its signed receipt (LED art. 16(6): recipients are told, and the
/// sender learns the outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Effect {
    /// Its content was erased, with a tombstone journal entry.
    Erased,
    /// A legal hold of the receiver keeps it, restricted; it is erased when the hold is
    /// lifted.
    Held,
    /// It had been erased already.
    AlreadyErased,
    /// The receiver holds no record with that id from this sender.
    NotFound,
}

impl Effect {
    /// The effect as written in receipts: `erased`, `held`, `already-erased`, `not-found`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Erased => "erased",
            Effect::Held => "held",
            Effect::AlreadyErased => "already-erased",
            Effect::NotFound => "not-found",
        }
    }
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Receipt {
    /// Seals this receipt with the receiver's signer.
    ///
    /// The receipt is checked first: a receipt that [`Receipt::open`] would refuse is
    /// never signed.
    pub fn seal(&self, signer: &Signer) -> Result<Vec<u8>, ReceiptError> {
        self.check()?;
        if signer.node() != &self.receiver {
            return Err(ReceiptError::SignerNotReceiver {
                signer: signer.node().clone(),
                receiver: self.receiver.clone(),
            });
        }
        let mut payload = Vec::new();
        ciborium::into_writer(self, &mut payload)
            .map_err(|e| ReceiptError::Encode(e.to_string()))?;
        cose::seal(&payload, RECEIPT_CONTENT_TYPE, signer).map_err(ReceiptError::Seal)
    }

    /// Opens a receipt envelope, verifying its signer against `trust` at `now`, and
    /// returns the receipt and its signer (always equal to `receipt.receiver`).
    pub fn open(
        bytes: &[u8],
        trust: &Trust,
        now: OffsetDateTime,
    ) -> Result<(Receipt, NodeId), ReceiptError> {
        let opened =
            cose::open(bytes, RECEIPT_CONTENT_TYPE, trust, now).map_err(ReceiptError::Open)?;
        let mut cursor = Cursor::new(opened.payload.as_slice());
        let receipt: Receipt =
            ciborium::from_reader(&mut cursor).map_err(|e| ReceiptError::Decode(e.to_string()))?;
        // The payload must be exactly one CBOR item: trailing bytes are signed but
        // meaningless, and would give two encodings of one receipt.
        let used = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        if used != opened.payload.len() {
            return Err(ReceiptError::TrailingData);
        }
        receipt.check()?;
        if opened.signer != receipt.receiver {
            return Err(ReceiptError::SignerNotReceiver {
                signer: opened.signer,
                receiver: receipt.receiver,
            });
        }
        Ok((receipt, opened.signer))
    }

    /// The item acknowledging `record_id` with exactly `envelope_sha256`, if any.
    ///
    /// An item for the same id with another hash does not count: the receiver holds
    /// other bytes than the sender sent.
    pub fn covers(&self, record_id: Uuid, envelope_sha256: &[u8; 32]) -> Option<&ReceiptItem> {
        self.items
            .iter()
            .find(|i| i.record_id == record_id && &i.envelope_sha256 == envelope_sha256)
    }

    /// Checks the rules a receipt must meet on its own.
    fn check(&self) -> Result<(), ReceiptError> {
        if self.v != RECEIPT_VERSION {
            return Err(ReceiptError::Version(self.v));
        }
        if self.items.is_empty() {
            return Err(ReceiptError::NoItems);
        }
        if self.items.len() > MAX_RECEIPT_ITEMS {
            return Err(ReceiptError::TooManyItems(self.items.len()));
        }
        let mut seen = BTreeSet::new();
        for item in &self.items {
            if !seen.insert(item.record_id) {
                return Err(ReceiptError::DuplicateRecord(item.record_id));
            }
        }
        Ok(())
    }
}

/// Why a receipt could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The envelope failed to open.
    #[error("receipt: {0}")]
    Open(OpenError),
    /// The envelope could not be sealed.
    #[error("receipt: {0}")]
    Seal(SealError),
    /// The payload is not a CBOR receipt.
    #[error("receipt payload is not a valid receipt: {0}")]
    Decode(String),
    /// The payload has bytes after the receipt.
    #[error("receipt payload has trailing bytes after the receipt")]
    TrailingData,
    /// The receipt could not be encoded.
    #[error("receipt could not be encoded: {0}")]
    Encode(String),
    /// The version is not [`RECEIPT_VERSION`].
    #[error("receipt v {0} is not supported: expected 1")]
    Version(u64),
    /// The receipt lists no record.
    #[error("receipt items is empty: at least one record is required")]
    NoItems,
    /// The receipt lists too many records.
    #[error("receipt items has {0} entries: at most {MAX_RECEIPT_ITEMS} are allowed")]
    TooManyItems(usize),
    /// The same record id appears twice.
    #[error("receipt items lists record {0} twice: each record at most once")]
    DuplicateRecord(Uuid),
    /// The signer is not the receiver the receipt names.
    #[error("receipt signer {signer} is not its receiver {receiver}: only the receiver may sign")]
    SignerNotReceiver {
        /// Who signed.
        signer: NodeId,
        /// Who the receipt says received.
        receiver: NodeId,
    },
}

/// `[u8; 32]` as a CBOR byte string (serde would otherwise write an array of integers).
mod bytes32 {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = [u8; 32];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string of 32 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                <[u8; 32]>::try_from(v).map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct H(#[serde(with = "bytes32")] [u8; 32]);

    #[test]
    fn bytes32_is_a_cbor_bstr() {
        let mut out = Vec::new();
        ciborium::into_writer(&H([7; 32]), &mut out).unwrap();
        // 0x58 0x20: byte string of 32 bytes.
        assert_eq!(&out[..2], &[0x58, 0x20]);
        let back: H = ciborium::from_reader(out.as_slice()).unwrap();
        assert_eq!(back, H([7; 32]));

        let mut short = Vec::new();
        ciborium::into_writer(&ciborium::Value::Bytes(vec![1; 31]), &mut short).unwrap();
        assert!(ciborium::from_reader::<H, _>(short.as_slice()).is_err());
        let mut ints = Vec::new();
        ciborium::into_writer(&vec![1u8; 32], &mut ints).unwrap();
        assert!(ciborium::from_reader::<H, _>(ints.as_slice()).is_err());
    }
}
