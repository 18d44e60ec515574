//! Encryption of record bodies at rest.
//!
//! Every stored envelope is encrypted (AES-256-GCM) with its own random data key; the data
//! key is wrapped (AES-256-GCM) by the node's master key and kept in sled with the body's
//! reference (`bodies.rs`; in the `body_keys` tree for bodies older stores wrote), apart
//! from the ciphertext, which is in the body log. Erasing a record deletes both in one transaction,
//! so a copy of the ciphertext left in a backup cannot be read without a key that no longer
//! exists (crypto-shredding; LED 2016/680 art. 16(2), GDPR art. 17).
//!
//! Both encryptions bind the tree and the record id as additional authenticated data: a
//! body or a wrapped key copied onto another record, or from the outbox to the inbox, does
//! not decrypt.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

use crate::codec;
use crate::error::StoreError;

/// Length of a master key and of a data key, in bytes.
pub const KEY_LEN: usize = 32;

/// Prefix byte of a stored envelope in clear (stores written before encryption, or opened
/// without a master key).
pub(crate) const BODY_PLAIN: u8 = 0x00;
/// Prefix byte of an envelope encrypted under a data key: `0x01 || nonce || ciphertext+tag`.
pub(crate) const BODY_SEALED: u8 = 0x01;

const TAG_LEN: usize = 16;
const BODY_AAD: &[u8] = b"pons body v1";
const KEY_AAD: &[u8] = b"pons data key v1";

/// Which tree a body belongs to; part of the key of its data key and of the AAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyTree {
    Outbox,
    Inbox,
}

impl BodyTree {
    fn tag(self) -> u8 {
        match self {
            BodyTree::Outbox => b'o',
            BodyTree::Inbox => b'i',
        }
    }

    /// Key of the record's wrapped data key in the `body_keys` tree.
    pub(crate) fn key_of(self, id: Uuid) -> [u8; 17] {
        let mut k = [0u8; 17];
        k[0] = self.tag();
        k[1..].copy_from_slice(id.as_bytes());
        k
    }

    fn aad(self, label: &[u8], id: Uuid) -> Vec<u8> {
        let mut a = Vec::with_capacity(label.len() + 17);
        a.extend_from_slice(label);
        a.extend_from_slice(&self.key_of(id));
        a
    }

    fn what(self) -> &'static str {
        match self {
            BodyTree::Outbox => "outbox envelope",
            BodyTree::Inbox => "inbox envelope",
        }
    }
}

/// A node's master key: 32 secret bytes that wrap every record's data key.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    /// A master key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey, StoreError> {
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| StoreError::MasterKey {
            reason: format!("must be {KEY_LEN} bytes, found {}", bytes.len()),
        })?;
        Ok(MasterKey(key))
    }

    /// A new random master key from the system's secure random source.
    pub fn generate() -> Result<MasterKey, StoreError> {
        Ok(MasterKey(random()?))
    }

    /// The key as lower-case hex, the form of the key file.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.write_str("MasterKey(..)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0 = [0; KEY_LEN];
    }
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| StoreError::MasterKey {
            reason: "the system random source failed".into(),
        })?;
    Ok(out)
}

/// A body's data key and the nonces of its two encryptions (the body, the wrapped key).
struct BodyRandom {
    data_key: [u8; KEY_LEN],
    body_nonce: [u8; NONCE_LEN],
    key_nonce: [u8; NONCE_LEN],
}

impl BodyRandom {
    /// All three from one read of the system's random source.
    fn new() -> Result<BodyRandom, StoreError> {
        let r: [u8; KEY_LEN + 2 * NONCE_LEN] = random()?;
        let mut fresh = BodyRandom {
            data_key: [0; KEY_LEN],
            body_nonce: [0; NONCE_LEN],
            key_nonce: [0; NONCE_LEN],
        };
        fresh.data_key.copy_from_slice(&r[..KEY_LEN]);
        fresh
            .body_nonce
            .copy_from_slice(&r[KEY_LEN..KEY_LEN + NONCE_LEN]);
        fresh.key_nonce.copy_from_slice(&r[KEY_LEN + NONCE_LEN..]);
        Ok(fresh)
    }
}

fn aead_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // AES_256_GCM takes any 32-byte key; a failure here is impossible by type.
    match UnboundKey::new(&AES_256_GCM, bytes) {
        Ok(k) => LessSafeKey::new(k),
        Err(_) => unreachable!("AES-256-GCM accepts every 32-byte key"),
    }
}

/// `prefix || nonce || ciphertext+tag` of `plain` under `key`: one buffer, `plain` copied
/// into it once and encrypted there.
fn seal(
    key: &[u8; KEY_LEN],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    prefix: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let start = prefix.len() + NONCE_LEN;
    let mut out = Vec::with_capacity(start + plain.len() + TAG_LEN);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = aead_key(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[start..],
        )
        .map_err(|_| StoreError::MasterKey {
            reason: "encryption failed".into(),
        })?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// The plaintext of `nonce || ciphertext+tag`, or `None` if it does not authenticate.
fn open(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ct.to_vec();
    let len = aead_key(key)
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .ok()?
        .len();
    // The plaintext is the start of the buffer; the tag is cut off.
    buf.truncate(len);
    Some(buf)
}

/// A body ready to store: the body for the body log and, when encrypted, the wrapped data
/// key for its reference (`Tx::put_body`).
pub(crate) struct SealedBody {
    pub(crate) body: Vec<u8>,
    pub(crate) wrapped_key: Option<Vec<u8>>,
}

/// Encrypt `envelope` of record `id` under a fresh data key wrapped by `master`; without a
/// master key, store it in clear (format 0x00).
pub(crate) fn encode_body(
    master: Option<&MasterKey>,
    tree: BodyTree,
    id: Uuid,
    envelope: &[u8],
) -> Result<SealedBody, StoreError> {
    let Some(master) = master else {
        let mut body = Vec::with_capacity(envelope.len() + 1);
        body.push(BODY_PLAIN);
        body.extend_from_slice(envelope);
        return Ok(SealedBody {
            body,
            wrapped_key: None,
        });
    };
    let fresh = BodyRandom::new()?;
    let body = seal(
        &fresh.data_key,
        fresh.body_nonce,
        &tree.aad(BODY_AAD, id),
        &[BODY_SEALED],
        envelope,
    )?;
    let wrapped = seal(
        &master.0,
        fresh.key_nonce,
        &tree.aad(KEY_AAD, id),
        &[],
        &fresh.data_key,
    )?;
    Ok(SealedBody {
        body,
        wrapped_key: Some(wrapped),
    })
}

/// The envelope of record `id` from its stored body and wrapped data key.
pub(crate) fn decode_body(
    master: Option<&MasterKey>,
    tree: BodyTree,
    id: Uuid,
    stored: &[u8],
    wrapped_key: Option<&[u8]>,
) -> Result<Vec<u8>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: tree.what(),
        key: codec::hex(id.as_bytes()),
        reason,
    };
    match stored.split_first() {
        Some((&BODY_PLAIN, rest)) => Ok(rest.to_vec()),
        Some((&BODY_SEALED, rest)) => {
            let Some(master) = master else {
                return Err(StoreError::NoMasterKey {
                    what: tree.what(),
                    id,
                });
            };
            let wrapped = wrapped_key
                .ok_or_else(|| corrupt("encrypted, but its data key is missing".into()))?;
            let key = open(&master.0, &tree.aad(KEY_AAD, id), wrapped).ok_or_else(|| {
                corrupt("its data key does not unwrap under this node's master key".into())
            })?;
            let key: [u8; KEY_LEN] = key
                .as_slice()
                .try_into()
                .map_err(|_| corrupt(format!("data key is {} bytes, not {KEY_LEN}", key.len())))?;
            open(&key, &tree.aad(BODY_AAD, id), rest).ok_or_else(|| {
                corrupt("does not decrypt: altered, or moved from another record".into())
            })
        }
        Some((other, _)) => Err(corrupt(format!("unknown body format 0x{other:02x}"))),
        None => Err(corrupt("empty value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVELOPE: &[u8] = b"subject Jan Janssens 08.05.12-345.67";

    #[test]
    fn round_trip_and_no_plaintext() {
        let master = MasterKey::generate().unwrap();
        let id = Uuid::from_u128(7);
        let s = encode_body(Some(&master), BodyTree::Inbox, id, ENVELOPE).unwrap();
        assert_eq!(s.body[0], BODY_SEALED);
        assert!(!s.body.windows(7).any(|w| w == b"Janssen"));
        let wrapped = s.wrapped_key.as_deref();
        let back = decode_body(Some(&master), BodyTree::Inbox, id, &s.body, wrapped).unwrap();
        assert_eq!(back, ENVELOPE);
    }

    #[test]
    fn the_stored_layout_and_fresh_nonces() {
        let master = MasterKey::generate().unwrap();
        let id = Uuid::from_u128(7);
        let a = encode_body(Some(&master), BodyTree::Inbox, id, ENVELOPE).unwrap();
        let b = encode_body(Some(&master), BodyTree::Inbox, id, ENVELOPE).unwrap();
        // 0x01 || nonce || ciphertext+tag, and nonce || wrapped key+tag.
        assert_eq!(a.body.len(), 1 + NONCE_LEN + ENVELOPE.len() + TAG_LEN);
        let (wa, wb) = (a.wrapped_key.unwrap(), b.wrapped_key.unwrap());
        assert_eq!(wa.len(), NONCE_LEN + KEY_LEN + TAG_LEN);
        let nonces = [
            &a.body[1..1 + NONCE_LEN],
            &b.body[1..1 + NONCE_LEN],
            &wa[..NONCE_LEN],
            &wb[..NONCE_LEN],
        ];
        for (i, x) in nonces.iter().enumerate() {
            for y in &nonces[i + 1..] {
                assert_ne!(x, y, "a nonce used twice");
            }
        }
        assert_ne!(a.body, b.body, "each body has its own data key");
    }

    #[test]
    fn bodies_do_not_move_between_records_trees_or_keys() {
        let master = MasterKey::generate().unwrap();
        let id = Uuid::from_u128(7);
        let s = encode_body(Some(&master), BodyTree::Inbox, id, ENVELOPE).unwrap();
        let wrapped = s.wrapped_key.as_deref();
        let other = Uuid::from_u128(8);
        for (m, tree, id, w) in [
            (&master, BodyTree::Inbox, other, wrapped),
            (&master, BodyTree::Outbox, id, wrapped),
            (
                &MasterKey::generate().unwrap(),
                BodyTree::Inbox,
                id,
                wrapped,
            ),
            (&master, BodyTree::Inbox, id, None),
        ] {
            let err = decode_body(Some(m), tree, id, &s.body, w).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        }
        // Another record's data key (a body swapped together with its key) fails too.
        let t = encode_body(Some(&master), BodyTree::Inbox, other, ENVELOPE).unwrap();
        let err = decode_body(
            Some(&master),
            BodyTree::Inbox,
            id,
            &t.body,
            t.wrapped_key.as_deref(),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        let err = decode_body(None, BodyTree::Inbox, id, &s.body, wrapped).unwrap_err();
        assert!(matches!(err, StoreError::NoMasterKey { .. }), "{err}");
    }

    #[test]
    fn plain_bodies_still_read_and_garbage_is_refused() {
        let id = Uuid::from_u128(1);
        let s = encode_body(None, BodyTree::Outbox, id, ENVELOPE).unwrap();
        assert_eq!(s.body[0], BODY_PLAIN);
        assert!(s.wrapped_key.is_none());
        let master = MasterKey::generate().unwrap();
        let back = decode_body(Some(&master), BodyTree::Outbox, id, &s.body, None).unwrap();
        assert_eq!(back, ENVELOPE);
        for bad in [&[][..], &[0x02, 1, 2], &[0x01, 1, 2]] {
            let r = decode_body(Some(&master), BodyTree::Outbox, id, bad, Some(&[0; 60]));
            assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{bad:?}");
        }
    }

    #[test]
    fn master_key_length_and_debug() {
        assert!(MasterKey::from_bytes(&[0; 31]).is_err());
        let k = MasterKey::from_bytes(&[0xab; 32]).unwrap();
        assert_eq!(k.to_hex(), "ab".repeat(32));
        assert_eq!(format!("{k:?}"), "MasterKey(..)");
    }
}
