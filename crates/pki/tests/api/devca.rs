//! The development CA: layout, modes, extensions, overwrite rule.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use pons_pki::{dev_ca, FederationTrust, KeyAlgorithm, NodeIdentity, PkiError};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::util::{node, now};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_a_loadable_federation_with_private_keys() {
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        let dir = tempfile::tempdir().unwrap();
        let t0 = now();
        let nodes = [node("adolescence"), node("cuta"), node("nccn")];
        let files = dev_ca(dir.path(), &nodes, "pons.example", algorithm, t0, false).unwrap();
        assert_eq!(files.ca_cert, dir.path().join("ca.pem"));
        assert_eq!(files.ca_key, dir.path().join("ca.key"));
        assert_eq!(files.crl, dir.path().join("ca.crl.pem"));
        assert_eq!(files.nodes.len(), 3);
        assert_eq!(mode(&files.ca_key), 0o600);
        assert_eq!(mode(&files.ca_cert), 0o644);

        let trust = FederationTrust::load("pons.example", &files.ca_cert, &[&files.crl]).unwrap();
        for ((id, paths), expected) in files.nodes.iter().zip(&nodes) {
            assert_eq!(&id.node, expected);
            assert_eq!(
                paths.tls_cert,
                dir.path().join(expected.as_str()).join("tls.pem")
            );
            assert_eq!(mode(&paths.tls_key), 0o600);
            assert_eq!(mode(&paths.sign_key), 0o600);
            assert_eq!(mode(&paths.tls_cert), 0o644);
            let identity = NodeIdentity::load(paths, t0).unwrap();
            assert_eq!(identity.spiffe_id(), id);
            trust.check_identity(&identity, Some(paths), t0).unwrap();
            let alg = identity.signing_key().algorithm();
            let expected_alg = match algorithm {
                KeyAlgorithm::Ed25519 => pons_core::SigningAlgorithm::Ed25519,
                _ => pons_core::SigningAlgorithm::EcdsaP256Sha256,
            };
            assert_eq!(alg, expected_alg);
        }
    }
}

#[test]
fn certificates_carry_the_required_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let files = dev_ca(
        dir.path(),
        &[node("cuta")],
        "pons.example",
        KeyAlgorithm::EcdsaP256,
        now(),
        false,
    )
    .unwrap();
    let ca_der = pons_pki::pem::load_certificates(&files.ca_cert).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der[0]).unwrap();
    assert!(ca.is_ca());
    let ku = ca.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(ca.subject().to_string().contains("DEV ONLY"));
    let ca_years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp())
        / (365 * 86400);
    assert_eq!(ca_years, 10);

    let n = &files.nodes[0].1;
    let tls_der = pons_pki::pem::load_certificates(&n.tls_cert).unwrap();
    let (_, tls) = X509Certificate::from_der(&tls_der[0]).unwrap();
    let eku = tls.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let san = tls.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san.general_names.iter().map(|g| g.to_string()).collect();
    assert!(
        names.contains(&"URI(spiffe://pons.example/node/cuta)".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"DNSName(localhost)".to_owned()),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "IPAddress(7f:00:00:01)"),
        "{names:?}"
    );
    assert!(!tls.is_ca());

    let sign_der = pons_pki::pem::load_certificates(&n.sign_cert).unwrap();
    let (_, sign) = X509Certificate::from_der(&sign_der[0]).unwrap();
    let eku = sign.extended_key_usage().unwrap().unwrap().value;
    let oids: Vec<String> = eku.other.iter().map(|o| o.to_id_string()).collect();
    assert_eq!(oids, vec!["1.3.6.1.5.5.7.3.36".to_owned()]);
    assert!(!eku.server_auth && !eku.client_auth);
    let ku = sign.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.non_repudiation());
    assert_eq!(
        pons_core::SpiffeId::from_certificate_der(&sign_der[0])
            .unwrap()
            .to_string(),
        "spiffe://pons.example/node/cuta"
    );
}

#[test]
fn refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = [node("cuta")];
    let first = dev_ca(
        dir.path(),
        &nodes,
        "pons.example",
        KeyAlgorithm::Ed25519,
        now(),
        false,
    )
    .unwrap();
    let before = fs::read(&first.ca_cert).unwrap();
    let err = dev_ca(
        dir.path(),
        &nodes,
        "pons.example",
        KeyAlgorithm::Ed25519,
        now(),
        false,
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(
        fs::read(&first.ca_cert).unwrap(),
        before,
        "nothing may be written"
    );

    // A key left world-readable is replaced by a new 0600 file under force.
    fs::set_permissions(&first.ca_key, fs::Permissions::from_mode(0o644)).unwrap();
    dev_ca(
        dir.path(),
        &nodes,
        "pons.example",
        KeyAlgorithm::Ed25519,
        now(),
        true,
    )
    .unwrap();
    assert_ne!(fs::read(&first.ca_cert).unwrap(), before);
    assert_eq!(mode(&first.ca_key), 0o600);
}

#[test]
fn refuses_a_bad_federation_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = dev_ca(
        dir.path(),
        &[node("cuta")],
        "Pons!",
        KeyAlgorithm::Ed25519,
        now(),
        false,
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::BadName(_)), "{err}");
    assert!(
        fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing may be written"
    );
}

#[test]
fn key_algorithm_parses_its_names() {
    assert_eq!("ed25519".parse::<KeyAlgorithm>(), Ok(KeyAlgorithm::Ed25519));
    assert_eq!(
        "ecdsa-p256".parse::<KeyAlgorithm>(),
        Ok(KeyAlgorithm::EcdsaP256)
    );
    assert!("rsa"
        .parse::<KeyAlgorithm>()
        .unwrap_err()
        .contains("not supported"));
    assert_eq!(KeyAlgorithm::EcdsaP256.to_string(), "ecdsa-p256");
}

#[test]
fn committed_certs_dev_is_consistent() {
    // certs-dev/ as checked out: keys may be 0644 there (git keeps no modes), so load a
    // copy whose keys are made private, as certs-dev/README.md tells developers to do.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs-dev");
    let dir = tempfile::tempdir().unwrap();
    let copy = |rel: &str| {
        let to = dir.path().join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(src.join(rel), &to).unwrap();
        if rel.ends_with(".key") {
            fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).unwrap();
        }
        to
    };
    let ca = copy("ca.pem");
    let crl = copy("ca.crl.pem");
    copy("ca.key");
    let trust = FederationTrust::load("pons.example", &ca, &[&crl]).unwrap();
    let t0 = now();
    for name in ["adolescence", "cuta", "nccn"] {
        for file in ["tls.pem", "tls.key", "sign.pem", "sign.key"] {
            copy(&format!("{name}/{file}"));
        }
        let files = pons_pki::NodeFiles::in_dir(&dir.path().join(name));
        let identity = NodeIdentity::load(&files, t0).unwrap();
        assert_eq!(identity.node().as_str(), name);
        trust.check_identity(&identity, Some(&files), t0).unwrap();
    }
}
