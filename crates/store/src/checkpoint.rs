//! Signed journal checkpoints: this node's own, and countersignatures.
//!
//! Two trees, outside the record transactions (a checkpoint changes no personal data):
//! - `checkpoints`: this node's signed checkpoints, key = seq (big-endian), value = the
//!   COSE_Sign1 envelope;
//! - `cosigned`: countersignatures, key = owner node id, 0x00, seq (big-endian), 0x00,
//!   cosigner node id; value = the cosigned envelope. The owner is this node for its own
//!   checkpoints countersigned by peers, or a peer for the peer's checkpoints this node
//!   countersigned (this node's copy, which the peer cannot alter).
//!
//! The envelopes are stored as received; their meaning is `pons_core::checkpoint`'s.

use pons_core::NodeId;

use crate::{codec, Store, StoreError};

const CHECKPOINTS: &str = "checkpoints";
const COSIGNED: &str = "cosigned";

/// A stored countersignature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCosigned {
    /// The node whose journal the checkpoint covers.
    pub owner: String,
    /// Entries the checkpoint covers.
    pub seq: u64,
    /// The peer that countersigned.
    pub cosigner: String,
    /// The cosigned envelope.
    pub envelope: Vec<u8>,
}

fn cosigned_key(owner: &NodeId, seq: u64, cosigner: &NodeId) -> Vec<u8> {
    let mut k = Vec::with_capacity(owner.as_str().len() + cosigner.as_str().len() + 10);
    k.extend_from_slice(owner.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k.push(0);
    k.extend_from_slice(cosigner.as_str().as_bytes());
    k
}

impl Store {
    /// Keeps one of this node's signed checkpoints (durable on return).
    pub async fn put_checkpoint(&self, seq: u64, envelope: &[u8]) -> Result<(), StoreError> {
        self.db
            .open_tree(CHECKPOINTS)?
            .insert(seq.to_be_bytes(), envelope)?;
        self.flush_db().await
    }

    /// This node's checkpoints, oldest first: (seq, envelope).
    pub fn checkpoints(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.open_tree(CHECKPOINTS)?.iter() {
            let (k, v) = item?;
            out.push((codec::be_u64("checkpoint key", &k)?, v.to_vec()));
        }
        Ok(out)
    }

    /// This node's latest checkpoint, if any.
    pub fn last_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        match self.db.open_tree(CHECKPOINTS)?.last()? {
            None => Ok(None),
            Some((k, v)) => Ok(Some((codec::be_u64("checkpoint key", &k)?, v.to_vec()))),
        }
    }

    /// Keeps a countersignature of `owner`'s checkpoint at `seq` by `cosigner` (durable on
    /// return). A second one for the same key replaces the first.
    pub async fn put_cosigned(
        &self,
        owner: &NodeId,
        seq: u64,
        cosigner: &NodeId,
        envelope: &[u8],
    ) -> Result<(), StoreError> {
        self.db
            .open_tree(COSIGNED)?
            .insert(cosigned_key(owner, seq, cosigner), envelope)?;
        self.flush_db().await
    }

    /// Countersignatures of `owner`'s checkpoints, by seq then cosigner.
    pub fn cosigned(&self, owner: &NodeId) -> Result<Vec<StoredCosigned>, StoreError> {
        let mut prefix = owner.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.db.open_tree(COSIGNED)?.scan_prefix(&prefix) {
            let (k, v) = item?;
            let rest = &k[prefix.len()..];
            let corrupt = || StoreError::Corrupt {
                what: "cosigned checkpoint key",
                key: codec::hex(&k),
                reason: "expected owner, 0, seq, 0, cosigner".into(),
            };
            if rest.len() < 9 || rest[8] != 0 {
                return Err(corrupt());
            }
            let seq = codec::be_u64("cosigned checkpoint key", &rest[..8])?;
            let cosigner = String::from_utf8(rest[9..].to_vec()).map_err(|_| corrupt())?;
            out.push(StoredCosigned {
                owner: owner.as_str().to_owned(),
                seq,
                cosigner,
                envelope: v.to_vec(),
            });
        }
        Ok(out)
    }
}
