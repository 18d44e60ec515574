//! Loading files: permissions, PEM contents, identity cross-checks, validity.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pons_pki::devca::DevCa;
use pons_pki::pem::{load_certificates, load_crls, load_private_key};
use pons_pki::{
    dev_ca, DevCaFiles, FederationTrust, KeyAlgorithm, NodeFiles, NodeIdentity, PkiError,
};
use time::{Duration, OffsetDateTime};

use crate::util::{node, now};

fn two_nodes(dir: &Path) -> DevCaFiles {
    dev_ca(
        dir,
        &[node("adolescence"), node("cuta")],
        "pons.example",
        KeyAlgorithm::Ed25519,
        now(),
        false,
    )
    .unwrap()
}

#[test]
fn key_readable_by_group_or_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = two_nodes(dir.path());
    let key = &files.nodes[0].1.tls_key;
    for mode in [0o644, 0o640, 0o604, 0o601] {
        fs::set_permissions(key, fs::Permissions::from_mode(mode)).unwrap();
        let err = load_private_key(key).unwrap_err();
        assert!(
            matches!(err, PkiError::KeyPermissions { mode: m, .. } if m == mode),
            "{err}"
        );
        let err = NodeIdentity::load(&files.nodes[0].1, now()).unwrap_err();
        assert!(matches!(err, PkiError::KeyPermissions { .. }), "{err}");
    }
    fs::set_permissions(key, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        load_private_key(key).unwrap_err().to_string(),
        format!(
            "private key {} is readable by group or others (mode 0644): chmod 600",
            key.display()
        )
    );
    for mode in [0o600, 0o400] {
        fs::set_permissions(key, fs::Permissions::from_mode(mode)).unwrap();
        load_private_key(key).unwrap();
    }
}

#[test]
fn pem_files_must_hold_what_they_are_for() {
    let dir = tempfile::tempdir().unwrap();
    let files = two_nodes(dir.path());
    let n = &files.nodes[0].1;

    // A key file given as certificates, a certificate file given as CRLs.
    let err = load_certificates(&n.tls_key).unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::Missing {
                what: "CERTIFICATE",
                ..
            }
        ),
        "{err}"
    );
    let err = load_crls(&n.tls_cert).unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::Missing {
                what: "X509 CRL",
                ..
            }
        ),
        "{err}"
    );

    let cert_as_key = dir.path().join("cert-as-key");
    fs::copy(&n.tls_cert, &cert_as_key).unwrap();
    fs::set_permissions(&cert_as_key, fs::Permissions::from_mode(0o600)).unwrap();
    let err = load_private_key(&cert_as_key).unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::Missing {
                what: "PRIVATE KEY",
                ..
            }
        ),
        "{err}"
    );

    let broken = dir.path().join("broken.pem");
    fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let err = load_certificates(&broken).unwrap_err();
    assert!(matches!(err, PkiError::Pem { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&broken.display().to_string()),
        "{err}"
    );

    let missing = dir.path().join("nope.pem");
    let err = load_certificates(&missing).unwrap_err();
    assert!(matches!(err, PkiError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nope.pem"), "{err}");

    assert_eq!(load_certificates(&files.ca_cert).unwrap().len(), 1);
    assert_eq!(load_crls(&files.crl).unwrap().len(), 1);
}

#[test]
fn tls_key_not_matching_its_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = two_nodes(dir.path());
    let (a, b) = (&files.nodes[0].1, &files.nodes[1].1);
    fs::remove_file(&a.tls_key).unwrap();
    fs::copy(&b.tls_key, &a.tls_key).unwrap();
    let err = NodeIdentity::load(a, now()).unwrap_err();
    match &err {
        PkiError::KeyMismatch { key, cert, .. } => {
            assert_eq!(key, &a.tls_key);
            assert_eq!(cert, &a.tls_cert);
        }
        other => panic!("expected KeyMismatch, got {other}"),
    }
}

#[test]
fn signing_key_not_matching_its_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = two_nodes(dir.path());
    let (a, b) = (&files.nodes[0].1, &files.nodes[1].1);
    fs::remove_file(&a.sign_key).unwrap();
    fs::copy(&b.sign_key, &a.sign_key).unwrap();
    let err = NodeIdentity::load(a, now()).unwrap_err();
    match &err {
        PkiError::KeyMismatch { key, cert, .. } => {
            assert_eq!(key, &a.sign_key);
            assert_eq!(cert, &a.sign_cert);
            assert!(err.to_string().contains("public key differs"), "{err}");
        }
        other => panic!("expected KeyMismatch, got {other}"),
    }
}

#[test]
fn tls_and_signing_certificates_must_name_the_same_node() {
    let dir = tempfile::tempdir().unwrap();
    let files = two_nodes(dir.path());
    let (a, b) = (&files.nodes[0].1, &files.nodes[1].1);
    let mixed = NodeFiles {
        tls_cert: a.tls_cert.clone(),
        tls_key: a.tls_key.clone(),
        sign_cert: b.sign_cert.clone(),
        sign_key: b.sign_key.clone(),
    };
    let err = NodeIdentity::load(&mixed, now()).unwrap_err();
    assert!(matches!(err, PkiError::SpiffeIdMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "TLS certificate names spiffe://pons.example/node/adolescence but signing certificate \
         names spiffe://pons.example/node/cuta: both must name the same node"
    );
}

#[test]
fn certificate_without_spiffe_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = two_nodes(dir.path());
    let a = &files.nodes[0].1;
    // The CA certificate is a valid certificate that names no node.
    let no_id = NodeFiles {
        tls_cert: files.ca_cert.clone(),
        ..a.clone()
    };
    let err = NodeIdentity::load(&no_id, now()).unwrap_err();
    match &err {
        PkiError::Identity { path, source } => {
            assert_eq!(path, &files.ca_cert);
            assert!(matches!(
                source,
                pons_core::IdentityError::NoSpiffeId { .. }
            ));
        }
        other => panic!("expected Identity, got {other}"),
    }
    assert!(err.to_string().contains("has no SPIFFE ID"), "{err}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused_with_dates() {
    let ca = DevCa::new("pons.example", KeyAlgorithm::EcdsaP256, now()).unwrap();
    let t0 = now();
    let past = ca
        .issue_valid(
            &node("cuta"),
            t0 - Duration::days(30),
            t0 - Duration::days(1),
        )
        .unwrap();
    let err = past.identity(t0).unwrap_err();
    match &err {
        PkiError::Expired { not_after, now, .. } => {
            assert!(*not_after < *now);
            assert_eq!(*now, t0);
        }
        other => panic!("expected Expired, got {other}"),
    }
    assert!(err.to_string().contains(" expired on "), "{err}");
    assert!(err.to_string().contains(&t0.year().to_string()), "{err}");

    let future = ca
        .issue_valid(
            &node("cuta"),
            t0 + Duration::days(1),
            t0 + Duration::days(30),
        )
        .unwrap();
    let err = future.identity(t0).unwrap_err();
    assert!(matches!(err, PkiError::NotYetValid { .. }), "{err}");
    assert!(err.to_string().contains("is not valid before"), "{err}");

    // The same certificates are fine at a time inside their validity: `now` is the input.
    past.identity(t0 - Duration::days(2)).unwrap();
    future.identity(t0 + Duration::days(2)).unwrap();
}

#[test]
fn identity_gives_a_signer_and_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let files = two_nodes(dir.path());
    let id = NodeIdentity::load(&files.nodes[1].1, t0).unwrap();
    assert_eq!(
        id.spiffe_id().to_string(),
        "spiffe://pons.example/node/cuta"
    );
    assert_eq!(id.node().as_str(), "cuta");
    assert_eq!(id.federation(), "pons.example");
    assert!(id.not_after() > t0 + Duration::days(4 * 365));
    let signer = id.signer().unwrap();
    assert_eq!(signer.node().as_str(), "cuta");
    assert_eq!(signer.chain().len(), 1);
    let sig = id.signing_key().sign(b"record").unwrap();
    id.signing_key()
        .algorithm()
        .verify(id.signing_key().public_key(), b"record", &sig)
        .unwrap();
    // No key material in Debug output.
    let debug = format!("{id:?}");
    assert!(
        debug.contains("cuta") && !debug.contains("PRIVATE"),
        "{debug}"
    );
}

#[test]
fn trust_loads_and_checks_identities() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let files = two_nodes(dir.path());
    let trust = FederationTrust::load("pons.example", &files.ca_cert, &[&files.crl]).unwrap();
    assert_eq!(trust.ca_certificates().len(), 1);
    assert_eq!(trust.crls().len(), 1);
    let core = trust.to_core().unwrap();
    assert_eq!(core.federation(), "pons.example");
    let id = NodeIdentity::load(&files.nodes[0].1, t0).unwrap();
    trust
        .check_identity(&id, Some(&files.nodes[0].1), t0)
        .unwrap();

    // An identity from another CA of the same federation name is not trusted.
    let other_dir = tempfile::tempdir().unwrap();
    let other = two_nodes(other_dir.path());
    let stranger = NodeIdentity::load(&other.nodes[0].1, t0).unwrap();
    let err = trust
        .check_identity(&stranger, Some(&other.nodes[0].1), t0)
        .unwrap_err();
    assert!(matches!(err, PkiError::Untrusted { .. }), "{err}");
    // Same CA name, other key: the path is found by name and fails on the signature.
    assert!(err.to_string().contains("bad signature"), "{err}");

    // A wrong federation name, no CA, a CRL that is no CRL.
    let err = FederationTrust::load("Pons Example", &files.ca_cert, &[]).unwrap_err();
    assert!(matches!(err, PkiError::BadName(_)), "{err}");
    let err = FederationTrust::from_der("pons.example", vec![], vec![]).unwrap_err();
    assert!(matches!(err, PkiError::NoCa), "{err}");
    let fake_crl = dir.path().join("fake.crl.pem");
    let cert_pem = fs::read_to_string(&files.ca_cert).unwrap();
    fs::write(&fake_crl, cert_pem.replace("CERTIFICATE", "X509 CRL")).unwrap();
    let err = FederationTrust::load("pons.example", &files.ca_cert, &[&fake_crl]).unwrap_err();
    assert!(matches!(err, PkiError::BadCrl { .. }), "{err}");
    assert!(err.to_string().contains("fake.crl.pem"), "{err}");
}

#[test]
fn identity_check_uses_the_time_given() {
    let dir = tempfile::tempdir().unwrap();
    let files = two_nodes(dir.path());
    let later = OffsetDateTime::now_utc() + Duration::days(6 * 365);
    let err = NodeIdentity::load(&files.nodes[0].1, later).unwrap_err();
    assert!(matches!(err, PkiError::Expired { .. }), "{err}");
}

#[test]
fn tls_certificate_is_not_a_signing_certificate() {
    // Both certificates name the node and match their keys, so the identity loads; but
    // the start-up trust check refuses a TLS certificate (serverAuth/clientAuth EKU) as
    // the record-signing certificate, which needs id-kp-documentSigning.
    let dir = tempfile::tempdir().unwrap();
    let files = two_nodes(dir.path());
    let trust = FederationTrust::load("pons.example", &files.ca_cert, &[&files.crl]).unwrap();
    let a = &files.nodes[0].1;
    let tls_as_sign = NodeFiles {
        sign_cert: a.tls_cert.clone(),
        sign_key: a.tls_key.clone(),
        ..a.clone()
    };
    let id = NodeIdentity::load(&tls_as_sign, now()).unwrap();
    let err = trust
        .check_identity(&id, Some(&tls_as_sign), now())
        .unwrap_err();
    match &err {
        PkiError::Untrusted { usage, .. } => {
            assert_eq!(*usage, pons_core::CertUsage::DocumentSigning)
        }
        other => panic!("expected Untrusted, got {other}"),
    }
}
