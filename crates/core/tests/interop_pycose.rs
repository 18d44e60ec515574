//! Interoperability with pycose, an independent COSE implementation in Python.
//!
//! The test makes its own virtual environment under `target/tmp/pycose-venv` with pinned
//! versions ([`REQUIREMENTS`]) and reuses it while its marker file matches, so repeat runs
//! cost no download. If the environment cannot be made, the test **fails**: CI must not
//! pass silently without the independent check. Set `PONS_SKIP_INTEROP=1` to skip it
//! explicitly (it then says so). `PONS_PYTHON` chooses the interpreter (default
//! `python3`).
//!
//! pycose does not validate certificate chains, so the script verifies Pons envelopes
//! with the public key of the signing certificate, and checks that x5chain (label 33) in
//! the protected header carries that certificate. Envelopes made by pycose carry x5chain
//! (pycose knows label 33) in the protected header, or the unprotected one, so that Pons
//! opens them with its full rules: chain, kid, content type.

#[path = "cose/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pons_core::cose::{self, open, seal, OpenError, Signer, RECORD_CONTENT_TYPE};
use pons_core::{NodeId, SigningAlgorithm, SigningKey, Trust};

use pki::{Alg, Ca, Node, NodeOpts, NOW};

/// Exact versions installed in the virtual environment (cbor2 below 6 for pycose 1.1).
const REQUIREMENTS: &[&str] = &["pycose==1.1.0", "cbor2==5.9.0"];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/pycose_interop.py")
}

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pycose-interop")
        .join(name);
    std::fs::create_dir_all(&dir).expect("create work dir");
    dir
}

fn run(cmd: &mut Command) -> Result<String, String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!(
            "{:?} exited with {}\nstdout: {}\nstderr: {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("{cmd:?} could not start: {e}")),
    }
}

/// The venv's python, made once per process; `None` only when skipped explicitly.
fn python() -> Option<&'static Path> {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        if std::env::var("PONS_SKIP_INTEROP").as_deref() == Ok("1") {
            eprintln!("pycose interop SKIPPED: PONS_SKIP_INTEROP=1");
            return None;
        }
        match make_venv() {
            Ok(py) => Some(py),
            Err(e) => panic!(
                "pycose interop: could not prepare the Python environment \
                 (set PONS_SKIP_INTEROP=1 to skip explicitly):\n{e}"
            ),
        }
    })
    .as_deref()
}

fn make_venv() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pycose-venv");
    let py = venv.join("bin").join("python");
    let marker = venv.join(".pons-requirements");
    let wanted = REQUIREMENTS.join("\n");
    if py.exists() && std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(py);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let python = std::env::var("PONS_PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&python).arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(REQUIREMENTS))?;
    std::fs::write(&marker, wanted).map_err(|e| format!("write {marker:?}: {e}"))?;
    Ok(py)
}

struct Fed {
    root: Ca,
    sub: Ca,
    trust: Trust,
    ed: Node,
    p256: Node,
}

fn fed() -> Fed {
    let root = Ca::root("Interop Root", Alg::P256);
    let sub = root.intermediate("Interop Sub", Alg::Ed25519);
    let ed = root.node(Alg::Ed25519, &NodeOpts::signing("cuta"));
    let p256 = sub.node(Alg::P256, &NodeOpts::signing("adolescence"));
    let trust = Trust::new("pons.example", &[&root.der], &[] as &[&[u8]]).unwrap();
    Fed {
        root,
        sub,
        trust,
        ed,
        p256,
    }
}

fn pycose_verify(
    py: &Path,
    dir: &Path,
    envelope: &[u8],
    cert: &[u8],
    payload: &[u8],
) -> Result<String, String> {
    std::fs::write(dir.join("env.cose"), envelope).unwrap();
    std::fs::write(dir.join("cert.der"), cert).unwrap();
    std::fs::write(dir.join("payload.bin"), payload).unwrap();
    run(Command::new(py)
        .arg(script())
        .arg("verify")
        .arg("--envelope")
        .arg(dir.join("env.cose"))
        .arg("--cert")
        .arg(dir.join("cert.der"))
        .args(["--content-type", RECORD_CONTENT_TYPE])
        .arg("--payload")
        .arg(dir.join("payload.bin")))
}

#[test]
fn pons_envelopes_verify_in_pycose() {
    let Some(py) = python() else { return };
    let f = fed();
    let dir = work_dir("pons-to-pycose");
    let payload = b"\xa2avb\x01bidx\x1aminor-risk-report test payload".to_vec();
    let cases = [
        (&f.ed, "cuta", vec![f.ed.cert.clone()]),
        (
            &f.p256,
            "adolescence",
            vec![f.p256.cert.clone(), f.sub.der.clone()],
        ),
    ];
    for (node, id, chain) in cases {
        let key = SigningKey::from_pkcs8_der(&node.key).unwrap();
        let signer = Signer::new(key, NodeId::new(id).unwrap(), chain).unwrap();
        let env = seal(&payload, RECORD_CONTENT_TYPE, &signer).unwrap();
        let out = pycose_verify(py, &dir, &env, &node.cert, &payload)
            .unwrap_or_else(|e| panic!("pycose refused a pons envelope of {id}: {e}"));
        assert!(out.starts_with("ok"), "{out}");

        // A changed byte in the payload, in the protected header (kid) and in the
        // signature: pycose must refuse each.
        let kid_at = env
            .windows(id.len())
            .position(|w| w == id.as_bytes())
            .expect("kid in envelope");
        let payload_at = env
            .windows(payload.len())
            .position(|w| w == payload.as_slice())
            .expect("payload in envelope");
        for at in [payload_at + 3, kid_at, env.len() - 1] {
            let mut bad = env.clone();
            bad[at] ^= 0x01;
            // The payload file holds the changed payload when the change is in it, so
            // only the signature can catch it.
            let expect = if (payload_at..payload_at + payload.len()).contains(&at) {
                bad[payload_at..payload_at + payload.len()].to_vec()
            } else {
                payload.clone()
            };
            let err = pycose_verify(py, &dir, &bad, &node.cert, &expect).expect_err(&format!(
                "pycose accepted {id} envelope with byte {at} changed"
            ));
            eprintln!("{id} byte {at}: {}", err.lines().last().unwrap_or(""));
            // Refused by the signature check, not by a crash of the script.
            assert!(
                err.contains("signature does not verify") || err.contains("InvalidSignature"),
                "{err}"
            );
        }
    }
}

/// What the script signs: with whose key, which alg and kid, which x5chain where.
struct PySign<'a> {
    node: &'a Node,
    alg: &'a str,
    kid: &'a str,
    chain: Vec<&'a [u8]>,
    unprotected: bool,
}

fn pycose_sign(py: &Path, dir: &Path, what: &PySign<'_>, payload: &[u8]) -> Vec<u8> {
    let PySign {
        node,
        alg,
        kid,
        chain,
        unprotected,
    } = what;
    std::fs::write(dir.join("key.pem"), &node.key_pem).unwrap();
    std::fs::write(dir.join("payload.bin"), payload).unwrap();
    let mut cmd = Command::new(py);
    cmd.arg(script())
        .arg("sign")
        .arg("--key")
        .arg(dir.join("key.pem"))
        .args([
            "--alg",
            alg,
            "--kid",
            kid,
            "--content-type",
            RECORD_CONTENT_TYPE,
        ])
        .arg("--payload")
        .arg(dir.join("payload.bin"))
        .arg("--out")
        .arg(dir.join("out.cose"));
    for (i, cert) in chain.iter().enumerate() {
        let p = dir.join(format!("chain{i}.der"));
        std::fs::write(&p, cert).unwrap();
        cmd.arg("--cert").arg(p);
    }
    if *unprotected {
        cmd.arg("--x5chain-unprotected");
    }
    run(&mut cmd).unwrap_or_else(|e| panic!("pycose could not sign: {e}"));
    std::fs::read(dir.join("out.cose")).unwrap()
}

#[test]
fn pycose_envelopes_open_in_pons() {
    let Some(py) = python() else { return };
    let f = fed();
    let dir = work_dir("pycose-to-pons");
    let payload = b"made by pycose".to_vec();
    let cases = [
        (
            PySign {
                node: &f.ed,
                alg: "EdDSA",
                kid: "cuta",
                chain: vec![&f.ed.cert],
                unprotected: false,
            },
            SigningAlgorithm::Ed25519,
        ),
        (
            PySign {
                node: &f.p256,
                alg: "ES256",
                kid: "adolescence",
                chain: vec![&f.p256.cert, &f.sub.der],
                unprotected: false,
            },
            SigningAlgorithm::EcdsaP256Sha256,
        ),
    ];
    for (mut what, algorithm) in cases {
        for unprotected in [false, true] {
            what.unprotected = unprotected;
            let env = pycose_sign(py, &dir, &what, &payload);
            let opened = open(&env, RECORD_CONTENT_TYPE, &f.trust, NOW).unwrap_or_else(|e| {
                panic!(
                    "pons refused a pycose envelope ({}, unprotected x5chain {unprotected}): {e}",
                    what.alg
                )
            });
            assert_eq!(opened.payload, payload);
            assert_eq!(opened.signer.as_str(), what.kid);
            assert_eq!(opened.algorithm, algorithm);
            assert_eq!(opened.envelope_sha256, cose::envelope_sha256(&env));

            // Every single changed byte fails in pons too.
            for at in 0..env.len() {
                let mut bad = env.clone();
                bad[at] ^= 0x01;
                assert!(
                    open(&bad, RECORD_CONTENT_TYPE, &f.trust, NOW).is_err(),
                    "pons accepted pycose envelope with byte {at} changed"
                );
            }
        }
        // pycose signs with a kid the certificate contradicts: pons refuses.
        let liar = PySign {
            kid: "police",
            unprotected: false,
            ..what
        };
        let env = pycose_sign(py, &dir, &liar, &payload);
        assert!(matches!(
            open(&env, RECORD_CONTENT_TYPE, &f.trust, NOW),
            Err(OpenError::KidMismatch { .. })
        ));
    }
    // A pycose envelope whose chain lacks the intermediate does not reach the root.
    let short = PySign {
        node: &f.p256,
        alg: "ES256",
        kid: "adolescence",
        chain: vec![&f.p256.cert],
        unprotected: false,
    };
    let env = pycose_sign(py, &dir, &short, &payload);
    assert!(matches!(
        open(&env, RECORD_CONTENT_TYPE, &f.trust, NOW),
        Err(OpenError::Untrusted(_))
    ));
    assert_eq!(f.trust.anchor_count(), 1);
    assert!(!f.root.der.is_empty());
}
