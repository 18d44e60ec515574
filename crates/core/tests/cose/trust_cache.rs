//! The cache of verified chains in `Trust`: hits are real, and never outlive the
//! chain's validity, another usage, the exact bytes or the `Trust` (its CRLs).

use coset::{iana, Header};
use pons_core::cose::{open, seal, OpenError, RECORD_CONTENT_TYPE};
use pons_core::{CertUsage, Trust, TrustError};
use time::macros::datetime;
use time::Duration;

use crate::fed::{pons_header, raw_seal};
use crate::pki::{Alg, Ca, NodeOpts, NOT_AFTER, NOT_BEFORE, NOW};

const NONE: &[&[u8]] = &[];

/// A record envelope that names `cuta` and carries `cert`, signed with `key` under `alg`.
fn sealed_as_cuta(key: &[u8], alg: iana::Algorithm, cert: &[u8], payload: &[u8]) -> Vec<u8> {
    let header = pons_header(alg, RECORD_CONTENT_TYPE, "cuta", cert);
    raw_seal(key, header.build(), Header::default(), Some(payload), true)
}

fn trust(ca: &Ca) -> Trust {
    Trust::new("pons.example", &[&ca.der], NONE).expect("trust")
}

#[test]
fn trust_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Trust>();
}

#[test]
fn a_second_verification_is_a_hit() {
    let ca = Ca::root("CA", Alg::P256);
    let node = ca.node(Alg::Ed25519, &NodeOpts::signing("cuta"));
    let trust = trust(&ca);
    assert_eq!((trust.cache_len(), trust.cache_hits()), (0, 0));

    let first = trust
        .verify_chain(&node.cert, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap();
    assert_eq!((trust.cache_len(), trust.cache_hits()), (1, 0));
    let second = trust
        .verify_chain(
            &node.cert,
            NONE,
            NOW + Duration::days(30),
            CertUsage::DocumentSigning,
        )
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(second.to_string(), "spiffe://pons.example/node/cuta");
    assert_eq!((trust.cache_len(), trust.cache_hits()), (1, 1));
    // The window's bounds are inside it, as for webpki.
    for at in [NOT_BEFORE, NOT_AFTER] {
        trust
            .verify_chain(&node.cert, NONE, at, CertUsage::DocumentSigning)
            .unwrap();
    }
    assert_eq!(trust.cache_hits(), 3);
}

#[test]
fn a_cached_chain_still_expires_and_is_not_yet_valid_before_its_start() {
    let ca = Ca::root("CA", Alg::P256);
    let node = ca.node(Alg::P256, &NodeOpts::signing("cuta"));
    let trust = trust(&ca);
    trust
        .verify_chain(&node.cert, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap();

    let late = NOT_AFTER + Duration::days(1);
    let err = trust
        .verify_chain(&node.cert, NONE, late, CertUsage::DocumentSigning)
        .unwrap_err();
    assert!(
        matches!(err, TrustError::Expired { not_after, now, .. } if not_after == NOT_AFTER && now == late),
        "{err}"
    );
    let early = NOT_BEFORE - Duration::seconds(1);
    let err = trust
        .verify_chain(&node.cert, NONE, early, CertUsage::DocumentSigning)
        .unwrap_err();
    assert!(matches!(err, TrustError::NotYetValid { .. }), "{err}");
    assert_eq!(trust.cache_hits(), 0);
    // Still valid inside the window afterwards: failures evicted nothing.
    trust
        .verify_chain(&node.cert, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap();
    assert_eq!(trust.cache_hits(), 1);
}

#[test]
fn the_window_is_bounded_by_the_intermediates_too() {
    let root = Ca::root("Root", Alg::P256);
    let sub = root.intermediate("Agency CA", Alg::P256);
    // The leaf outlives its issuer (NOT_AFTER); webpki checks each certificate's own.
    let mut opts = NodeOpts::signing("cuta");
    opts.not_after = datetime!(2029-01-01 00:00 UTC);
    let node = sub.node(Alg::Ed25519, &opts);
    let trust = trust(&root);
    let chain = [sub.der.as_slice()];
    trust
        .verify_chain(&node.cert, &chain, NOW, CertUsage::DocumentSigning)
        .unwrap();
    assert_eq!(trust.cache_len(), 1);

    let late = datetime!(2028-06-01 00:00 UTC);
    let err = trust
        .verify_chain(&node.cert, &chain, late, CertUsage::DocumentSigning)
        .unwrap_err();
    assert!(
        matches!(err, TrustError::Expired { not_after, .. } if not_after == NOT_AFTER),
        "{err}"
    );
    assert_eq!(trust.cache_hits(), 0);

    // Other intermediates make another key: no hit, a full verification.
    let other = root.intermediate("Other CA", Alg::P256);
    let longer = [sub.der.as_slice(), other.der.as_slice()];
    trust
        .verify_chain(&node.cert, &longer, NOW, CertUsage::DocumentSigning)
        .unwrap();
    assert_eq!((trust.cache_len(), trust.cache_hits()), (2, 0));
}

#[test]
fn one_usage_is_not_served_from_another_usage_cache() {
    let ca = Ca::root("CA", Alg::P256);
    let mut opts = NodeOpts::signing("cuta");
    opts.ekus = vec![vec![1, 3, 6, 1, 5, 5, 7, 3, 2]]; // clientAuth only
    let tls = ca.node(Alg::P256, &opts);
    let signing = ca.node(Alg::P256, &NodeOpts::signing("cuta"));
    let trust = trust(&ca);

    trust
        .verify_chain(&tls.cert, NONE, NOW, CertUsage::TlsClient)
        .unwrap();
    trust
        .verify_chain(&tls.cert, NONE, NOW, CertUsage::TlsClient)
        .unwrap();
    assert_eq!((trust.cache_len(), trust.cache_hits()), (1, 1));
    for usage in [CertUsage::DocumentSigning, CertUsage::TlsServer] {
        let err = trust.verify_chain(&tls.cert, NONE, NOW, usage).unwrap_err();
        assert!(
            matches!(err, TrustError::BadUsage { usage: u, .. } if u == usage),
            "{err}"
        );
    }

    trust
        .verify_chain(&signing.cert, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap();
    let err = trust
        .verify_chain(&signing.cert, NONE, NOW, CertUsage::TlsServer)
        .unwrap_err();
    assert!(matches!(err, TrustError::BadUsage { .. }), "{err}");
    // Failures are not cached, hits stayed where they were.
    assert_eq!((trust.cache_len(), trust.cache_hits()), (2, 1));
}

#[test]
fn a_tampered_leaf_misses_the_cache_and_fails() {
    let ca = Ca::root("CA", Alg::P256);
    let node = ca.node(Alg::Ed25519, &NodeOpts::signing("cuta"));
    let trust = trust(&ca);
    trust
        .verify_chain(&node.cert, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap();

    // The last bytes are the CA's signature: flip one bit of it.
    let mut bad_signature = node.cert.clone();
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 0x01;
    let err = trust
        .verify_chain(&bad_signature, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap_err();
    assert!(matches!(err, TrustError::BadCertSignature { .. }), "{err}");

    // The SPIFFE ID changed in the signed part (cuta -> cutb).
    let mut bad_id = node.cert.clone();
    let at = bad_id
        .windows(4)
        .position(|w| w == b"cuta")
        .expect("SPIFFE ID in the certificate");
    bad_id[at + 3] = b'b';
    let err = trust
        .verify_chain(&bad_id, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap_err();
    assert!(matches!(err, TrustError::BadCertSignature { .. }), "{err}");

    assert_eq!((trust.cache_len(), trust.cache_hits()), (1, 0));
    trust
        .verify_chain(&node.cert, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap();
    assert_eq!(trust.cache_hits(), 1);
}

#[test]
fn a_new_trust_with_a_new_crl_starts_with_an_empty_cache() {
    let ca = Ca::root("CA", Alg::P256);
    let node = ca.node(Alg::P256, &NodeOpts::signing("cuta"));
    let before = Trust::new("pons.example", &[&ca.der], &[ca.crl(&[])]).unwrap();
    before
        .verify_chain(&node.cert, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap();
    before
        .verify_chain(&node.cert, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap();
    assert_eq!(before.cache_hits(), 1);

    let after = Trust::new("pons.example", &[&ca.der], &[ca.crl(&[node.serial])]).unwrap();
    assert_eq!(after.cache_len(), 0);
    let err = after
        .verify_chain(&node.cert, NONE, NOW, CertUsage::DocumentSigning)
        .unwrap_err();
    assert!(matches!(err, TrustError::Revoked { .. }), "{err}");
    assert_eq!((after.cache_len(), after.cache_hits()), (0, 0));
}

#[test]
fn a_signer_key_read_once_per_chain_still_checks_every_signature() {
    let fed = crate::fed::Fed::new();
    let signer = crate::fed::Fed::signer(&fed.ed, "cuta");
    let first = seal(b"first", RECORD_CONTENT_TYPE, &signer).unwrap();
    let second = seal(b"second", RECORD_CONTENT_TYPE, &signer).unwrap();
    assert_eq!(
        open(&first, RECORD_CONTENT_TYPE, &fed.trust, NOW)
            .unwrap()
            .payload,
        b"first"
    );
    assert_eq!(fed.trust.cache_hits(), 0);
    // The chain and the key come from the cache; the signature is checked all the same.
    let opened = open(&second, RECORD_CONTENT_TYPE, &fed.trust, NOW).unwrap();
    assert_eq!(
        (opened.payload.as_slice(), fed.trust.cache_hits()),
        (&b"second"[..], 1)
    );

    // The same (cached) certificate, signed by another Ed25519 key: refused.
    let other = fed.ca.node(Alg::Ed25519, &NodeOpts::signing("cuta"));
    let forged = sealed_as_cuta(&other.key, iana::Algorithm::EdDSA, &fed.ed.cert, b"forged");
    assert_eq!(
        open(&forged, RECORD_CONTENT_TYPE, &fed.trust, NOW),
        Err(OpenError::BadSignature)
    );
    // A signature over other bytes than the payload it carries: refused.
    let mut tampered = second.clone();
    let at = tampered
        .windows(6)
        .position(|w| w == b"second")
        .expect("payload in the envelope");
    tampered[at] = b'S';
    assert_eq!(
        open(&tampered, RECORD_CONTENT_TYPE, &fed.trust, NOW),
        Err(OpenError::BadSignature)
    );
    // The key is the leaf's own: an ES256 header over the cached Ed25519 key is refused.
    let mismatched = sealed_as_cuta(&fed.p256.key, iana::Algorithm::ES256, &fed.ed.cert, b"x");
    assert!(matches!(
        open(&mismatched, RECORD_CONTENT_TYPE, &fed.trust, NOW),
        Err(OpenError::AlgorithmKeyMismatch { .. })
    ));
    assert_eq!(fed.trust.cache_len(), 1);
}
