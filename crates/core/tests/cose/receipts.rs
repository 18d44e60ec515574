//! Receipts: round trip, `covers`, and the receiver-signs rule.

use coset::cbor::Value;
use pons_core::cose::{self, open, OpenError, RECEIPT_CONTENT_TYPE, RECORD_CONTENT_TYPE};
use pons_core::{NodeId, Receipt, ReceiptError, ReceiptItem};
use time::macros::datetime;
use uuid::Uuid;

use crate::fed::Fed;
use crate::pki::NOW;

fn receipt(receiver: &str, n: usize) -> Receipt {
    Receipt {
        v: 1,
        receiver: NodeId::new(receiver).unwrap(),
        sender: NodeId::new("adolescence").unwrap(),
        received_at: datetime!(2026-06-01 12:00:01.5 UTC),
        items: (0..n)
            .map(|i| ReceiptItem {
                record_id: Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 + i as u128),
                envelope_sha256: cose::envelope_sha256(&[i as u8]),
                journal_seq: 40 + i as u64,
                effect: None,
            })
            .collect(),
    }
}

#[test]
fn round_trip_and_covers() {
    let fed = Fed::new();
    let cuta = Fed::signer(&fed.ed, "cuta");
    let r = receipt("cuta", 3);
    let bytes = r.seal(&cuta).unwrap();
    let (back, signer) = Receipt::open(&bytes, &fed.trust, NOW).unwrap();
    assert_eq!(back, r);
    assert_eq!(signer.as_str(), "cuta");

    let item = &r.items[1];
    assert_eq!(
        back.covers(item.record_id, &item.envelope_sha256),
        Some(item)
    );
    // Same id, other bytes: not covered.
    assert_eq!(
        back.covers(item.record_id, &cose::envelope_sha256(b"other")),
        None
    );
    // Another id with a listed hash: not covered.
    assert_eq!(back.covers(Uuid::nil(), &item.envelope_sha256), None);
}

#[test]
fn payload_encoding() {
    // The hash is a CBOR byte string of 32 bytes, not an array of integers.
    let fed = Fed::new();
    let bytes = receipt("cuta", 1)
        .seal(&Fed::signer(&fed.ed, "cuta"))
        .unwrap();
    let opened = open(&bytes, RECEIPT_CONTENT_TYPE, &fed.trust, NOW).unwrap();
    let v: Value = ciborium::from_reader(opened.payload.as_slice()).unwrap();
    let map = v.as_map().unwrap();
    let items = map
        .iter()
        .find(|(k, _)| k.as_text() == Some("items"))
        .unwrap()
        .1
        .as_array()
        .unwrap();
    let hash = items[0]
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some("envelope_sha256"))
        .unwrap()
        .1
        .as_bytes()
        .unwrap();
    assert_eq!(hash.len(), 32);
}

#[test]
fn only_the_receiver_signs() {
    let fed = Fed::new();
    let cuta = Fed::signer(&fed.ed, "cuta");
    // seal refuses to sign a receipt naming another receiver ...
    let r = receipt("police", 1);
    assert!(matches!(
        r.seal(&cuta),
        Err(ReceiptError::SignerNotReceiver { .. })
    ));
    // ... and open refuses one made by hand.
    let mut payload = Vec::new();
    ciborium::into_writer(&r, &mut payload).unwrap();
    let bytes = cose::seal(&payload, RECEIPT_CONTENT_TYPE, &cuta).unwrap();
    let err = Receipt::open(&bytes, &fed.trust, NOW).unwrap_err();
    assert!(
        matches!(&err, ReceiptError::SignerNotReceiver { signer, receiver }
            if signer.as_str() == "cuta" && receiver.as_str() == "police"),
        "{err}"
    );
}

#[test]
fn refusals() {
    let fed = Fed::new();
    let cuta = Fed::signer(&fed.ed, "cuta");
    let seal_raw = |payload: &[u8]| cose::seal(payload, RECEIPT_CONTENT_TYPE, &cuta).unwrap();
    let encode = |r: &Receipt| {
        let mut p = Vec::new();
        ciborium::into_writer(r, &mut p).unwrap();
        p
    };

    // A record envelope is not a receipt.
    let rec = cose::seal(b"x", RECORD_CONTENT_TYPE, &cuta).unwrap();
    assert!(matches!(
        Receipt::open(&rec, &fed.trust, NOW),
        Err(ReceiptError::Open(OpenError::ContentTypeMismatch { .. }))
    ));
    // Not CBOR of a receipt.
    assert!(matches!(
        Receipt::open(&seal_raw(b"\xa0"), &fed.trust, NOW),
        Err(ReceiptError::Decode(_))
    ));
    // Trailing bytes after the receipt.
    let mut p = encode(&receipt("cuta", 1));
    p.push(0);
    assert_eq!(
        Receipt::open(&seal_raw(&p), &fed.trust, NOW),
        Err(ReceiptError::TrailingData)
    );
    // Version, empty, duplicate: refused by seal and by open.
    let mut r = receipt("cuta", 1);
    r.v = 2;
    assert_eq!(r.seal(&cuta), Err(ReceiptError::Version(2)));
    assert_eq!(
        Receipt::open(&seal_raw(&encode(&r)), &fed.trust, NOW),
        Err(ReceiptError::Version(2))
    );
    let r = receipt("cuta", 0);
    assert_eq!(r.seal(&cuta), Err(ReceiptError::NoItems));
    assert_eq!(
        Receipt::open(&seal_raw(&encode(&r)), &fed.trust, NOW),
        Err(ReceiptError::NoItems)
    );
    let mut r = receipt("cuta", 2);
    r.items[1].record_id = r.items[0].record_id;
    let id = r.items[0].record_id;
    assert_eq!(r.seal(&cuta), Err(ReceiptError::DuplicateRecord(id)));
    assert_eq!(
        Receipt::open(&seal_raw(&encode(&r)), &fed.trust, NOW),
        Err(ReceiptError::DuplicateRecord(id))
    );
}

#[test]
fn batch_of_many() {
    let fed = Fed::new();
    let r = receipt("adolescence", 500);
    let bytes = r.seal(&Fed::signer(&fed.p256, "adolescence")).unwrap();
    let (back, _) = Receipt::open(&bytes, &fed.trust, NOW).unwrap();
    assert_eq!(back.items.len(), 500);
    for item in &r.items {
        assert!(back.covers(item.record_id, &item.envelope_sha256).is_some());
    }
}
