//! Interop: certificates, keys and CRLs made by the `openssl` command line tool load
//! unchanged, and nodes holding them complete a mutual TLS handshake.
//!
//! This is the path of an agency that runs its own PKI: nothing here uses rcgen.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pons_pki::{
    client_config, peer_spiffe_id, server_config, FederationTrust, NodeFiles, NodeIdentity,
    PkiError,
};
use rustls::CertificateError;
use time::Duration;

use crate::util::{handshake, now, Side};

/// Runs `openssl` in `dir`; fails the test with its stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line tool must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `openssl ca` configuration: a database for revocation and CRLs, and the extension
/// sections of the CA, TLS and signing certificates.
const CONFIG: &str = r#"
[ ca ]
default_ca = agency_ca

[ agency_ca ]
dir = .
database = ./index.txt
crlnumber = ./crlnumber
certificate = ./ca.pem
private_key = ./ca.key
new_certs_dir = .
serial = ./serial
default_md = sha256
default_days = 365
default_crl_days = 30
crl_extensions = crl_ext
policy = policy_any

[ policy_any ]
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = Agency Root CA

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ crl_ext ]
authorityKeyIdentifier = keyid:always
"#;

fn leaf_ext(node: &str, signing: bool) -> String {
    if signing {
        format!(
            "keyUsage = critical, digitalSignature, nonRepudiation\n\
             extendedKeyUsage = 1.3.6.1.5.5.7.3.36\n\
             subjectAltName = URI:spiffe://agency.example/node/{node}\n\
             authorityKeyIdentifier = keyid\n\
             subjectKeyIdentifier = hash\n"
        )
    } else {
        format!(
            "keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth, clientAuth\n\
             subjectAltName = URI:spiffe://agency.example/node/{node}, DNS:localhost, IP:127.0.0.1\n\
             authorityKeyIdentifier = keyid\n\
             subjectKeyIdentifier = hash\n"
        )
    }
}

struct OpensslPki {
    dir: tempfile::TempDir,
    serial: u32,
}

impl OpensslPki {
    /// An ECDSA P-256 CA with an empty v2 CRL.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("openssl.cnf"), CONFIG).unwrap();
        fs::write(d.join("index.txt"), "").unwrap();
        fs::write(d.join("crlnumber"), "01\n").unwrap();
        fs::write(d.join("serial"), "01\n").unwrap();
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ca.key",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-config",
                "openssl.cnf",
                "-new",
                "-x509",
                "-key",
                "ca.key",
                "-days",
                "3650",
                "-extensions",
                "v3_ca",
                "-out",
                "ca.pem",
            ],
        );
        let pki = Self { dir, serial: 100 };
        pki.gencrl();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn gencrl(&self) {
        openssl(
            self.dir.path(),
            &[
                "ca",
                "-config",
                "openssl.cnf",
                "-gencrl",
                "-out",
                "ca.crl.pem",
            ],
        );
    }

    /// A PKCS#8 key (`openssl genpkey`): `ed25519` or `p256`.
    fn key(&self, name: &str, algorithm: &str) -> PathBuf {
        let args: &[&str] = match algorithm {
            "ed25519" => &["genpkey", "-algorithm", "ED25519", "-out", name],
            _ => &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                name,
            ],
        };
        openssl(self.dir.path(), args);
        let path = self.path(name);
        chmod(&path, 0o600);
        path
    }

    /// A certificate for `key` signed by the CA, with the extensions in `ext`.
    fn cert(&mut self, name: &str, key: &Path, cn: &str, ext: &str) -> PathBuf {
        let d = self.dir.path();
        let csr = format!("{name}.csr");
        let ext_file = format!("{name}.ext");
        fs::write(d.join(&ext_file), ext).unwrap();
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                key.to_str().unwrap(),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &csr,
            ],
        );
        self.serial += 1;
        let serial = self.serial.to_string();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                "365",
                "-extfile",
                &ext_file,
                "-out",
                name,
            ],
        );
        self.path(name)
    }

    /// A node's four files: TLS and signing keys of `algorithm`.
    fn node(&mut self, node: &str, algorithm: &str) -> NodeFiles {
        let tls_key = self.key(&format!("{node}-tls.key"), algorithm);
        let sign_key = self.key(&format!("{node}-sign.key"), algorithm);
        let tls_cert = self.cert(
            &format!("{node}-tls.pem"),
            &tls_key,
            &format!("{node} TLS"),
            &leaf_ext(node, false),
        );
        let sign_cert = self.cert(
            &format!("{node}-sign.pem"),
            &sign_key,
            &format!("{node} signing"),
            &leaf_ext(node, true),
        );
        NodeFiles {
            tls_cert,
            tls_key,
            sign_cert,
            sign_key,
        }
    }

    fn revoke(&self, cert: &Path) {
        openssl(
            self.dir.path(),
            &[
                "ca",
                "-config",
                "openssl.cnf",
                "-revoke",
                cert.to_str().unwrap(),
            ],
        );
        self.gencrl();
    }

    fn trust(&self) -> FederationTrust {
        FederationTrust::load(
            "agency.example",
            &self.path("ca.pem"),
            &[&self.path("ca.crl.pem")],
        )
        .unwrap()
    }
}

#[test]
fn openssl_made_ecdsa_and_ed25519_nodes_load_and_shake_hands() {
    let mut pki = OpensslPki::new();
    let p256 = pki.node("police", "p256");
    let ed = pki.node("nccn", "ed25519");
    let trust = pki.trust();
    assert_eq!(trust.crls().len(), 1);

    let t0 = now();
    let police = NodeIdentity::load(&p256, t0).unwrap();
    let nccn = NodeIdentity::load(&ed, t0).unwrap();
    assert_eq!(
        police.spiffe_id().to_string(),
        "spiffe://agency.example/node/police"
    );
    assert_eq!(
        police.signing_key().algorithm(),
        pons_core::SigningAlgorithm::EcdsaP256Sha256
    );
    assert_eq!(
        nccn.signing_key().algorithm(),
        pons_core::SigningAlgorithm::Ed25519
    );
    trust.check_identity(&police, Some(&p256), t0).unwrap();
    trust.check_identity(&nccn, Some(&ed), t0).unwrap();
    nccn.signer().unwrap();

    // Each way round: ECDSA client to Ed25519 server and back.
    for (client, server) in [(&police, &nccn), (&nccn, &police)] {
        let (c, s) = handshake(
            client_config(client, &trust).unwrap(),
            server_config(server, &trust).unwrap(),
        )
        .unwrap();
        assert_eq!(
            &peer_spiffe_id(c.peer_certificates().unwrap()).unwrap(),
            server.spiffe_id()
        );
        assert_eq!(
            &peer_spiffe_id(s.peer_certificates().unwrap()).unwrap(),
            client.spiffe_id()
        );
    }
}

#[test]
fn openssl_crl_revokes_a_client() {
    let mut pki = OpensslPki::new();
    let client_files = pki.node("police", "p256");
    let server_files = pki.node("nccn", "ed25519");
    pki.revoke(&client_files.tls_cert);
    let trust = pki.trust();
    let t0 = now();
    let client = NodeIdentity::load(&client_files, t0).unwrap();
    let server = NodeIdentity::load(&server_files, t0).unwrap();

    // The node's own start-up check already sees it.
    let err = trust
        .check_identity(&client, Some(&client_files), t0)
        .unwrap_err();
    assert!(matches!(err, PkiError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("revoked"), "{err}");

    let (side, err, _) = handshake(
        client_config(&client, &trust).unwrap(),
        server_config(&server, &trust).unwrap(),
    )
    .unwrap_err();
    assert_eq!(side, Side::Server);
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
}

#[test]
fn openssl_key_with_mode_0644_is_refused() {
    let mut pki = OpensslPki::new();
    let files = pki.node("police", "p256");
    chmod(&files.sign_key, 0o644);
    let err = NodeIdentity::load(&files, now()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "private key {} is readable by group or others (mode 0644): chmod 600",
            files.sign_key.display()
        )
    );
}

#[test]
fn openssl_certificate_without_spiffe_id_is_refused() {
    let mut pki = OpensslPki::new();
    let mut files = pki.node("police", "p256");
    let ext = "keyUsage = critical, digitalSignature\n\
               extendedKeyUsage = serverAuth, clientAuth\n\
               subjectAltName = DNS:police.agency.example\n";
    files.tls_cert = pki.cert("plain.pem", &files.tls_key, "police", ext);
    let err = NodeIdentity::load(&files, now()).unwrap_err();
    assert!(
        matches!(&err, PkiError::Identity { path, .. } if path == &files.tls_cert),
        "{err}"
    );
    assert!(err.to_string().contains("has no SPIFFE ID"), "{err}");
}

#[test]
fn openssl_key_not_matching_certificate_is_refused() {
    let mut pki = OpensslPki::new();
    let mut files = pki.node("police", "ed25519");
    files.tls_key = pki.key("other.key", "ed25519");
    let err = NodeIdentity::load(&files, now()).unwrap_err();
    assert!(
        matches!(&err, PkiError::KeyMismatch { key, .. } if key == &files.tls_key),
        "{err}"
    );
}

#[test]
fn openssl_certificate_checked_against_the_time_given() {
    // OpenSSL 3.0's `x509 -req` cannot backdate; `now` is an argument, so move it instead.
    let mut pki = OpensslPki::new();
    let files = pki.node("police", "p256");
    let err = NodeIdentity::load(&files, now() + Duration::days(400)).unwrap_err();
    assert!(
        matches!(&err, PkiError::Expired { path, .. } if path == &files.tls_cert),
        "{err}"
    );
    let err = NodeIdentity::load(&files, now() - Duration::days(2)).unwrap_err();
    assert!(matches!(&err, PkiError::NotYetValid { .. }), "{err}");
}

#[test]
fn traditional_ec_key_is_refused_as_not_pkcs8() {
    let mut pki = OpensslPki::new();
    let mut files = pki.node("police", "p256");
    let sec1 = pki.path("sec1.key");
    openssl(
        pki.dir.path(),
        &[
            "ec",
            "-in",
            files.tls_key.to_str().unwrap(),
            "-out",
            "sec1.key",
        ],
    );
    chmod(&sec1, 0o600);
    files.tls_key = sec1;
    let err = NodeIdentity::load(&files, now()).unwrap_err();
    assert!(matches!(err, PkiError::NotPkcs8 { .. }), "{err}");
    assert!(
        err.to_string().contains("openssl pkcs8 -topk8 -nocrypt"),
        "{err}"
    );
}
