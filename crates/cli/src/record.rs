//! `pons record …`: offline work with reports and envelopes.

use std::path::Path;

use anyhow::{anyhow, Context};
use pons_core::envelope::{open_record, seal_record, EnvelopeError};
use pons_core::pseudonym::PseudonymKey;
use pons_core::record::RecordId;
use pons_core::retention::RetentionPolicy;
use pons_core::validate::{Draft, DraftContext, ValidationErrors};
use pons_core::{NodeId, Signer, SigningKey, SpiffeId};
use pons_pki::FederationTrust;
use time::OffsetDateTime;

use crate::exit::{Failure, Outcome, ResultExt};
use crate::flags::{CheckArgs, OpenArgs, RecordCommand, SealArgs};

/// Clock difference tolerated between the caseworker's machine and the nodes.
pub const CLOCK_SKEW: time::Duration = time::Duration::seconds(300);

/// The development pseudonym key, used when no key file is given to an offline command.
/// Never used by a node: a node's configuration names its federation key file.
const DEV_PSEUDONYM_KEY: &[u8; 32] = b"pons development pseudonym key!!";

pub fn run(cmd: RecordCommand) -> Outcome {
    match cmd {
        RecordCommand::Check(args) => check(&args),
        RecordCommand::Seal(args) => seal(&args),
        RecordCommand::Open(args) => open(&args),
        RecordCommand::Export(args) => crate::client::export(&args),
    }
}

fn check(args: &CheckArgs) -> Outcome {
    let bytes = read_report(&args.file)?;
    let draft =
        Draft::parse_json(&args.class, &bytes).map_err(|e| validation_failure(&args.file, e))?;
    // A draft is checked as the node will check it: as a record between placeholder
    // nodes, created now, with the development pseudonym key.
    let key = PseudonymKey::from_bytes(DEV_PSEUDONYM_KEY).map_err(|e| anyhow!("{e}"))?;
    let now = OffsetDateTime::now_utc();
    let from = NodeId::new("sender").map_err(|e| anyhow!("{e}"))?;
    let to = NodeId::new("recipient").map_err(|e| anyhow!("{e}"))?;
    let ctx = draft_context(&draft, now, from, to, &key, None, None)?;
    draft
        .into_record(&ctx)
        .map_err(|e| validation_failure(&args.file, e))?;
    println!("{}: valid {} report", args.file.display(), args.class);
    Ok(())
}

fn seal(args: &SealArgs) -> Outcome {
    let now = OffsetDateTime::now_utc();
    let to = NodeId::new(&args.to).context("--to").invalid()?;
    let signer = load_signer(&args.key, &args.cert, args.chain.as_deref())?;
    let key = match &args.pseudonym_key {
        Some(path) => load_pseudonym_key(path)?,
        None => {
            eprintln!("pons: warning: no --pseudonym-key: using the DEVELOPMENT pseudonym key");
            PseudonymKey::from_bytes(DEV_PSEUDONYM_KEY).map_err(|e| anyhow!("{e}"))?
        }
    };
    let bytes = read_report(&args.file)?;
    let draft =
        Draft::parse_json(&args.class, &bytes).map_err(|e| validation_failure(&args.file, e))?;
    let ctx = draft_context(
        &draft,
        now,
        signer.node().clone(),
        to,
        &key,
        args.purpose.clone(),
        args.justification.clone(),
    )?;
    let record = draft
        .into_record(&ctx)
        .map_err(|e| validation_failure(&args.file, e))?;
    let envelope = seal_record(&record, &signer).context("cannot seal the record")?;
    std::fs::write(&args.out, &envelope)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "sealed record {} ({}, {} bytes, signed by {} with {})",
        record.id,
        record.class,
        envelope.len(),
        signer.node(),
        signer.algorithm()
    );
    println!("{}", record.id);
    Ok(())
}

fn open(args: &OpenArgs) -> Outcome {
    let crls: Vec<&Path> = args.crl.iter().map(|p| p.as_path()).collect();
    let trust = FederationTrust::load(&args.federation, &args.ca, &crls)?.to_core()?;
    let envelope = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let opened = match open_record(&envelope, &trust, OffsetDateTime::now_utc(), CLOCK_SKEW) {
        Ok(opened) => opened,
        // A record that is well signed but breaks a rule is invalid input, not forged.
        Err(e @ EnvelopeError::Invalid { .. }) => return Err(Failure::invalid(e)),
        Err(e) => {
            return Err(Failure::integrity(
                anyhow!(e).context(format!("{} does not verify", args.file.display())),
            ))
        }
    };
    let out = serde_json::json!({
        "signer": opened.signer,
        "envelope_sha256": hex::encode(opened.envelope_sha256),
        "record": opened.record,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Reads a report file, refusing anything over the report size limit before reading it.
pub fn read_report(path: &Path) -> Result<Vec<u8>, Failure> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let limit = pons_core::validate::MAX_REPORT_BYTES as u64;
    if meta.len() > limit {
        return Err(Failure::invalid(anyhow!(
            "{}: report is {} bytes: the limit is {limit}",
            path.display(),
            meta.len()
        )));
    }
    Ok(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
}

/// Every validation error, one per line, under a line naming the file.
pub fn validation_failure(file: &Path, errors: ValidationErrors) -> Failure {
    let mut text = format!(
        "{} is not a valid report ({} problems):",
        file.display(),
        errors.len()
    );
    for e in errors.errors() {
        text.push_str("\n  ");
        text.push_str(&e.to_string());
    }
    Failure::invalid(anyhow!(text))
}

/// A fresh UUIDv7 from the clock and the system random generator (the node's maker).
pub fn new_record_id(now: OffsetDateTime) -> anyhow::Result<RecordId> {
    pons_node::runtime::new_record_id(now).map_err(|e| anyhow!(e))
}

fn draft_context<'a>(
    draft: &Draft,
    now: OffsetDateTime,
    from: NodeId,
    to: NodeId,
    key: &'a PseudonymKey,
    purpose: Option<String>,
    justification: Option<String>,
) -> anyhow::Result<DraftContext<'a>> {
    let (review_by, erase_by) = RetentionPolicy::default_for(draft.class).deadlines(now.date());
    Ok(DraftContext {
        id: new_record_id(now)?,
        from,
        to,
        now,
        purpose,
        justification,
        pseudonym_key: key,
        subject_ref: None,
        default_review_by: Some(review_by),
        default_erase_by: Some(erase_by),
        clock_skew: CLOCK_SKEW,
    })
}

/// A signer from a PKCS#8 key file and its certificate (plus optional intermediates).
pub fn load_signer(key: &Path, cert: &Path, chain: Option<&Path>) -> Result<Signer, Failure> {
    let key_der = pons_pki::pem::load_private_key(key)?;
    let signing_key = SigningKey::from_pkcs8_der(key_der.secret_pkcs8_der())
        .with_context(|| format!("{}", key.display()))?;
    let mut certs = pons_pki::pem::load_certificates(cert)?;
    if let Some(chain) = chain {
        certs.extend(pons_pki::pem::load_certificates(chain)?);
    }
    let leaf = certs
        .first()
        .ok_or_else(|| anyhow!("{}: no certificate", cert.display()))?;
    let spiffe =
        SpiffeId::from_certificate_der(leaf).with_context(|| format!("{}", cert.display()))?;
    let chain = certs.iter().map(|c| c.to_vec()).collect();
    Ok(Signer::new(signing_key, spiffe.node, chain)
        .with_context(|| format!("{} and {}", key.display(), cert.display()))?)
}

/// Reads a federation pseudonym key file: hex, mode 0600.
pub fn load_pseudonym_key(path: &Path) -> Result<PseudonymKey, Failure> {
    pons_node::secret::load_pseudonym_key(path).invalid()
}
