//! `pons demo`: the main job, shown step by step.
//!
//! Until nodes exchange records over the network, the demo is the offline round trip:
//! a development federation, a report validated and sealed by the Agency for Adolescence,
//! opened and verified as CUTA would, a tampered copy refused and a classified report
//! refused.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use pons_core::envelope::{open_record, seal_record};
use pons_core::validate::{Draft, DraftContext};
use pons_core::NodeId;
use pons_pki::{FederationTrust, KeyAlgorithm};
use time::OffsetDateTime;

use crate::exit::Outcome;
use crate::flags::DemoArgs;
use crate::pki::{make_dev_federation, PSEUDONYM_KEY_FILE};
use crate::record::{load_pseudonym_key, load_signer, new_record_id, CLOCK_SKEW};

const SAMPLE_REPORT: &str = include_str!("../../../config/examples/minor-risk-report.json");

pub fn run(args: &DemoArgs) -> Outcome {
    let temp;
    let dir: PathBuf = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let federation = "pons.example";
    let adolescence = NodeId::new("adolescence").map_err(|e| anyhow!("{e}"))?;
    let cuta = NodeId::new("cuta").map_err(|e| anyhow!("{e}"))?;

    step(
        1,
        "make a development federation: a CA, and TLS and signing certificates per node",
    );
    let files = make_dev_federation(
        &dir,
        &[adolescence.clone(), cuta.clone()],
        federation,
        KeyAlgorithm::Ed25519,
        true,
    )?;
    detail(&format!("CA {}", files.ca_cert.display()));

    step(
        2,
        "a caseworker at the Agency for Adolescence writes a minor-risk report and it is validated",
    );
    let key = load_pseudonym_key(&dir.join(PSEUDONYM_KEY_FILE))?;
    let now = OffsetDateTime::now_utc();
    let draft = Draft::parse_json("minor-risk-report", SAMPLE_REPORT.as_bytes())
        .map_err(|e| anyhow!("the sample report is invalid: {e}"))?;
    let ctx = DraftContext {
        id: new_record_id(now)?,
        from: adolescence.clone(),
        to: cuta.clone(),
        now,
        purpose: Some("threat assessment of a reported minor".into()),
        justification: Some("cooperation agreement Agency for Adolescence - CUTA".into()),
        pseudonym_key: &key,
        subject_ref: None,
        default_review_by: None,
        default_erase_by: None,
        clock_skew: CLOCK_SKEW,
    };
    let record = draft
        .into_record(&ctx)
        .map_err(|e| anyhow!("the sample report is invalid: {e}"))?;
    detail(&format!(
        "record {} class {} subject {}",
        record.id, record.class, record.subject_ref
    ));

    step(
        3,
        "the adolescence node seals it: COSE_Sign1 with its signing key and certificate chain",
    );
    let node_dir = dir.join("adolescence");
    let signer = load_signer(&node_dir.join("sign.key"), &node_dir.join("sign.pem"), None)
        .map_err(|f| f.error)?;
    let envelope = seal_record(&record, &signer)?;
    let path = dir.join(format!("{}.cose", record.id));
    std::fs::write(&path, &envelope)?;
    detail(&format!(
        "{} bytes, {}, written to {}",
        envelope.len(),
        signer.algorithm(),
        path.display()
    ));

    step(
        4,
        "CUTA opens it: signature, chain to the federation CA, CRL, signer = sender, rules",
    );
    let ca = files.ca_cert.as_path();
    let trust = FederationTrust::load(federation, ca, &[files.crl.as_path()])?.to_core()?;
    let opened = open_record(&envelope, &trust, OffsetDateTime::now_utc(), CLOCK_SKEW)?;
    detail(&format!(
        "verified: signed by {}, sha-256 {}",
        opened.signer,
        hex::encode(opened.envelope_sha256)
    ));

    step(5, "a copy with one byte changed is refused");
    let mut tampered = envelope.clone();
    let i = tampered.len() / 2;
    tampered[i] ^= 0x01;
    match open_record(&tampered, &trust, OffsetDateTime::now_utc(), CLOCK_SKEW) {
        Ok(_) => return Err(anyhow!("a tampered envelope opened: integrity failure").into()),
        Err(e) => detail(&format!("refused: {e}")),
    }

    step(
        6,
        "a report marked GEHEIM (SECRET) is refused: classified information must not transit Pons",
    );
    let classified = SAMPLE_REPORT.replacen("\"sensitive-unclassified\"", "\"GEHEIM\"", 1);
    match Draft::parse_json("minor-risk-report", classified.as_bytes()) {
        Ok(_) => return Err(anyhow!("a classified report was accepted").into()),
        Err(errors) => {
            for e in errors.errors() {
                detail(&format!("refused: {e}"));
            }
        }
    }

    println!();
    match &args.keep {
        Some(dir) => println!(
            "done; certificates and the envelope are kept in {}",
            dir.display()
        ),
        None => println!("done"),
    }
    Ok(())
}

fn step(n: u32, what: &str) {
    println!("[{n}] {what}");
}

fn detail(what: &str) {
    println!("    {what}");
}
