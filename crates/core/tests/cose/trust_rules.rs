//! `Trust` construction and chain verification outside envelopes.

use pons_core::{CertUsage, Trust, TrustError};

use crate::pki::{Alg, Ca, NodeOpts, NOW};

#[test]
fn build_errors() {
    let ca = Ca::root("CA", Alg::P256);
    let none: &[&[u8]] = &[];
    assert!(matches!(
        Trust::new("Pons Example", &[&ca.der], none),
        Err(TrustError::BadFederation(_))
    ));
    assert_eq!(
        Trust::new("pons.example", none, none).unwrap_err(),
        TrustError::NoTrustAnchor
    );
    assert!(matches!(
        Trust::new("pons.example", &[b"junk".as_slice()], none),
        Err(TrustError::BadCaCertificate { index: 0, .. })
    ));
    assert!(matches!(
        Trust::new("pons.example", &[&ca.der], &[b"junk".as_slice()]),
        Err(TrustError::BadCrl { index: 0, .. })
    ));
    let t = Trust::new("pons.example", &[&ca.der], &[ca.crl(&[])]).unwrap();
    assert_eq!(
        (t.federation(), t.anchor_count(), t.crl_count()),
        ("pons.example", 1, 1)
    );
}

#[test]
fn usages() {
    let ca = Ca::root("CA", Alg::P256);
    let trust = Trust::new("pons.example", &[&ca.der], &[] as &[&[u8]]).unwrap();
    let none: &[&[u8]] = &[];
    let mut opts = NodeOpts::signing("cuta");
    opts.ekus = vec![
        vec![1, 3, 6, 1, 5, 5, 7, 3, 1],
        vec![1, 3, 6, 1, 5, 5, 7, 3, 2],
    ];
    let tls = ca.node(Alg::P256, &opts);
    let id = trust
        .verify_chain(&tls.cert, none, NOW, CertUsage::TlsClient)
        .unwrap();
    assert_eq!(id.to_string(), "spiffe://pons.example/node/cuta");
    trust
        .verify_chain(&tls.cert, none, NOW, CertUsage::TlsServer)
        .unwrap();
    let err = trust
        .verify_chain(&tls.cert, none, NOW, CertUsage::DocumentSigning)
        .unwrap_err();
    assert!(matches!(
        err,
        TrustError::BadUsage {
            usage: CertUsage::DocumentSigning,
            ..
        }
    ));
    assert!(err.to_string().contains("id-kp-documentSigning"), "{err}");

    // A CA certificate is not a leaf.
    let err = trust
        .verify_chain(&ca.der, none, NOW, CertUsage::DocumentSigning)
        .unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::Rejected { .. } | TrustError::UnknownIssuer { .. }
        ),
        "{err}"
    );
    // Garbage leaf.
    assert!(matches!(
        trust.verify_chain(b"junk", none, NOW, CertUsage::DocumentSigning),
        Err(TrustError::BadLeaf(_))
    ));
    // A time before 1970.
    assert!(matches!(
        trust.verify_chain(
            &tls.cert,
            none,
            time::OffsetDateTime::UNIX_EPOCH - time::Duration::seconds(1),
            CertUsage::TlsClient
        ),
        Err(TrustError::BadTime(_))
    ));
}
