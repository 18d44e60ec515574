//! `pons journal verify|search|export`: the DPO's view of the audit journal.
//!
//! Verify, search and export go to the node over the control socket (role dpo; each call
//! is journaled by the node before it reads). `verify --export FILE` works offline, with
//! `pons-core` alone, on a file made by `pons journal export --format jsonl`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressStyle};
use pons_core::journal::{ExportLine, ExportVerifier, ExportedCheckpoint, ExportedEntry};
use pons_node::control::Request;
use pons_node::journal::JournalQuery;
use serde_json::Value;

use crate::client::call;
use crate::exit::{Failure, Outcome, ResultExt};
use crate::flags::{
    JournalCommand, JournalExportArgs, JournalFilterArgs, JournalFormat, JournalSearchArgs,
    JournalVerifyArgs, ListFormat,
};

/// Runs a `pons journal` command.
pub fn run(cmd: JournalCommand) -> Outcome {
    match cmd {
        JournalCommand::Verify(args) => verify(&args),
        JournalCommand::Search(args) => search(&args),
        JournalCommand::Export(args) => export(&args),
        JournalCommand::Prune(args) => {
            let body = call(
                &args.config,
                Request::JournalPrune {
                    before: args.before.clone(),
                    justification: args.justification.clone(),
                },
            )?;
            if body["removed"].as_u64() == Some(0) {
                println!(
                    "nothing pruned: no signed checkpoint before {}",
                    args.before
                );
            } else {
                println!(
                    "{} journal entries removed; the journal now starts at the signed checkpoint of entry {}",
                    body["removed"], body["anchor_seq"]
                );
            }
            Ok(())
        }
    }
}

fn query(f: &JournalFilterArgs) -> JournalQuery {
    JournalQuery {
        subject: f.subject.clone(),
        record: f.record.clone(),
        peer: f.peer.clone(),
        actor: f.actor.clone(),
        operation: f.operation.clone(),
        since: f.since.clone(),
        until: f.until.clone(),
    }
}

/// A spinner on stderr while the node works, only when stderr is a terminal.
fn spinner(message: &'static str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

/// A progress bar of `len` steps on stderr, only when stderr is a terminal.
fn progress(len: u64, what: &'static str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len).with_message(what);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

fn verify(args: &JournalVerifyArgs) -> Outcome {
    if let Some(file) = &args.export {
        let trust = match &args.ca {
            None => None,
            Some(ca) => Some(
                pons_pki::trust::FederationTrust::load(&args.federation, ca, &[])
                    .invalid()?
                    .to_core()
                    .invalid()?,
            ),
        };
        return verify_export(file, args.cert.as_deref(), trust);
    }
    let justification = args
        .justification
        .clone()
        .ok_or_else(|| anyhow!("--justification is required to verify a node's journal"))
        .invalid()?;
    let bar = spinner("verifying the journal");
    let body = call(&args.config, Request::JournalVerify { justification });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let body = body?;
    println!(
        "journal verified: {} entries, head {}",
        body["entries"],
        body["head_hash"].as_str().unwrap_or("?")
    );
    println!(
        "checkpoints: {} signed by this node, {} countersigned by peers, all agree with the journal",
        body["checkpoints"], body["cosigned"]
    );
    Ok(())
}

/// Verifies an export offline; exit 3 naming the first bad line and entry.
pub fn verify_export(file: &Path, cert: Option<&Path>, trust: Option<pons_core::Trust>) -> Outcome {
    let mut checker = Checker::new(cert)?;
    checker.trust = trust;
    let f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress(size, "verifying");
    let mut reader = BufReader::new(f);
    let mut verifier = ExportVerifier::new();
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if read == 0 {
            break;
        }
        n += 1;
        if let Some(b) = &bar {
            b.inc(read as u64);
        }
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ExportLine = serde_json::from_str(&line).map_err(|e| {
            Failure::integrity(anyhow!(
                "{}: line {n}: not an export line: {e}",
                file.display()
            ))
        })?;
        verifier
            .push(&parsed, &mut |c| checker.check(c))
            .map_err(|e| Failure::integrity(anyhow!("{}: {e}", file.display())))?;
        if let ExportLine::Entry(e) = &parsed {
            checker.entry(e);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let start_seq = verifier.header().map_or(0, |h| h.start_seq);
    let summary = verifier
        .finish()
        .map_err(|e| Failure::integrity(anyhow!("{}: {e}", file.display())))?;
    let tail = checker
        .finish(summary.head, summary.filtered, start_seq)
        .map_err(|e| Failure::integrity(anyhow!("{}: {e}", file.display())))?;
    println!(
        "export verified: node {}, {} entries{}, head {}, {} checkpoints{}",
        summary.node,
        summary.entries,
        if summary.filtered { " (filtered)" } else { "" },
        summary
            .head
            .map(|h| format!("{} {}", h.seq, hex::encode(h.hash)))
            .unwrap_or_else(|| "-".into()),
        summary.checkpoints,
        tail
    );
    Ok(())
}

fn search(args: &JournalSearchArgs) -> Outcome {
    let bar = spinner("searching the journal");
    let body = call(
        &args.config,
        Request::JournalSearch {
            query: query(&args.filter),
            justification: args.justification.clone(),
        },
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let body = body?;
    let entries = body["entries"].as_array().cloned().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    match args.format {
        ListFormat::Jsonl => {
            for e in &entries {
                writeln!(out, "{}", serde_json::to_string(e)?)?;
            }
        }
        ListFormat::Table => {
            let cols = [
                "seq",
                "time",
                "actor",
                "operation",
                "record_id",
                "counterpart",
                "outcome",
                "justification",
            ];
            let mut rows = vec![cols.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
            for e in &entries {
                rows.push(cols.iter().map(|c| cell(&e[*c])).collect());
            }
            write_table(&mut out, &rows)?;
            writeln!(out, "{} entries", entries.len())?;
        }
    }
    Ok(())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => {
            // One line per row, whatever the justification holds.
            let s: String = s
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(59).collect::<String>())
            } else {
                s
            }
        }
        other => other.to_string(),
    }
}

fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let widths: Vec<usize> = (0..rows.first().map_or(0, |r| r.len()))
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// The CSV columns: every field of an exported entry, in canonical order.
pub const CSV_COLUMNS: [&str; 19] = [
    "seq",
    "time",
    "time_unix",
    "time_nanos",
    "time_offset",
    "node",
    "actor",
    "role",
    "operation",
    "record_id",
    "class",
    "subject_ref",
    "counterpart",
    "purpose",
    "justification",
    "legal_basis",
    "outcome",
    "prev_hash",
    "hash",
];

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A field
/// starting with `=`, `+`, `-` or `@` is prefixed with `'` so a spreadsheet does not run
/// it as a formula (justifications are free text).
fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => {
            if s.starts_with(['=', '+', '-', '@']) {
                format!("'{s}")
            } else {
                s.clone()
            }
        }
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn export(args: &JournalExportArgs) -> Outcome {
    let bar = spinner("exporting the journal");
    let body = call(
        &args.config,
        Request::JournalExport {
            query: query(&args.filter),
            justification: args.justification.clone(),
        },
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let body = body?;
    let lines = body["lines"].as_array().cloned().unwrap_or_default();
    let file =
        File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    let bar = progress(lines.len() as u64, "writing");
    let mut entries = 0u64;
    if matches!(args.format, JournalFormat::Csv) {
        writeln!(out, "{}", CSV_COLUMNS.join(","))?;
    }
    for line in &lines {
        if let Some(b) = &bar {
            b.inc(1);
        }
        match args.format {
            JournalFormat::Jsonl => {
                // Re-parse so that only well-formed export lines are written.
                let parsed: ExportLine = serde_json::from_value(line.clone())
                    .map_err(|e| anyhow!("the node answered a malformed export line: {e}"))?;
                if matches!(parsed, ExportLine::Entry(_)) {
                    entries += 1;
                }
                writeln!(out, "{}", serde_json::to_string(&parsed)?)?;
            }
            JournalFormat::Csv => {
                if line["type"] != "entry" {
                    continue;
                }
                let entry: ExportedEntry = {
                    let mut l = line.clone();
                    l.as_object_mut().map(|o| o.remove("type"));
                    serde_json::from_value(l)
                        .map_err(|e| anyhow!("the node answered a malformed entry: {e}"))?
                };
                let v = serde_json::to_value(&entry)?;
                let row: Vec<String> = CSV_COLUMNS.iter().map(|c| csv_field(&v[*c])).collect();
                writeln!(out, "{}", row.join(","))?;
                entries += 1;
            }
        }
    }
    out.flush()
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "{} entries exported to {} (journaled as entry {})",
        entries,
        args.out.display(),
        body["journal_seq"]
    );
    Ok(())
}

/// Checks the checkpoint lines of an export: each names an entry the export holds with the
/// same hash, none covers more entries than the export has (truncation), and, with the
/// node's signing certificate, each signature verifies.
struct Checker {
    cert: Option<Vec<u8>>,
    /// Hash of every entry seen, by seq (checkpoint lines come after the entries).
    hashes: std::collections::HashMap<u64, [u8; 32]>,
    /// Highest checkpoint seen: (seq, head hex).
    max: Option<(u64, String)>,
    /// The federation trust, to verify countersignatures.
    trust: Option<pons_core::Trust>,
    /// Checkpoint seqs seen (and, with a certificate, verified).
    seen: std::collections::HashSet<u64>,
    cosigned: u64,
    cosigned_verified: bool,
}

impl Checker {
    fn new(cert: Option<&Path>) -> Result<Checker, Failure> {
        let cert = match cert {
            None => None,
            Some(path) => {
                let certs = pons_pki::pem::load_certificates(path).invalid()?;
                let first = certs
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow!("{}: no certificate", path.display()))
                    .invalid()?;
                Some(first.as_ref().to_vec())
            }
        };
        Ok(Checker {
            cert,
            hashes: Default::default(),
            max: None,
            trust: None,
            seen: Default::default(),
            cosigned: 0,
            cosigned_verified: false,
        })
    }

    fn entry(&mut self, e: &ExportedEntry) {
        let mut h = [0u8; 32];
        if hex::decode_to_slice(&e.hash, &mut h).is_ok() {
            self.hashes.insert(e.seq, h);
        }
    }

    fn check(&mut self, c: &ExportedCheckpoint) -> Result<(), String> {
        if let Some(cert) = &self.cert {
            let env = hex::decode(&c.cose).map_err(|_| "cose is not hex".to_owned())?;
            let cp = pons_core::checkpoint::open_with_certificate(&env, cert)
                .map_err(|e| format!("entry {}: {e}", c.seq))?;
            if cp.seq != c.seq || hex::encode(cp.head) != c.head {
                return Err(format!(
                    "line says entry {} head {}, the signed checkpoint says entry {} head {}",
                    c.seq,
                    c.head,
                    cp.seq,
                    hex::encode(cp.head)
                ));
            }
        }
        if let Some(h) = self.hashes.get(&c.seq) {
            if hex::encode(h) != c.head {
                return Err(format!(
                    "rewritten: checkpoint at entry {} names head {}, the entry's hash is {}",
                    c.seq,
                    c.head,
                    hex::encode(h)
                ));
            }
        }
        if let Some(trust) = &self.trust {
            let env = hex::decode(&c.cose).map_err(|_| "cose is not hex".to_owned())?;
            let now = time::OffsetDateTime::now_utc();
            let cp = pons_core::checkpoint::Checkpoint::open(&env, trust, now)
                .map_err(|e| format!("entry {}: {e}", c.seq))?;
            for cs in &c.cosigned {
                let cs = hex::decode(cs).map_err(|_| "cosigned is not hex".to_owned())?;
                let (by, inner) = pons_core::checkpoint::Cosigned::open(&cs, trust, now)
                    .map_err(|e| format!("entry {}: countersignature: {e}", c.seq))?;
                if inner != cp {
                    return Err(format!(
                        "entry {}: {} countersigned another checkpoint",
                        c.seq, by.cosigner
                    ));
                }
            }
            self.cosigned_verified = true;
        }
        self.seen.insert(c.seq);
        self.cosigned += c.cosigned.len() as u64;
        if self.max.as_ref().is_none_or(|(s, _)| c.seq > *s) {
            self.max = Some((c.seq, c.head.clone()));
        }
        Ok(())
    }

    /// Truncation against the highest checkpoint; returns a note for the summary.
    fn finish(
        &self,
        head: Option<pons_core::journal::ChainHead>,
        filtered: bool,
        start_seq: u64,
    ) -> Result<String, String> {
        let len = head.map_or(0, |h| h.seq);
        if start_seq > 0 && !self.seen.contains(&(start_seq + 1)) {
            return Err(format!(
                "the export starts after entry {start_seq} (a pruned journal) but has no signed anchor checkpoint at entry {}",
                start_seq + 1
            ));
        }
        if let Some((seq, hash)) = &self.max {
            if !filtered && *seq > len {
                return Err(format!(
                    "truncated: node signed size {seq} with head {hash}, export has {len} entries"
                ));
            }
        }
        Ok(
            match (&self.cert, self.cosigned_verified, self.max.is_some()) {
                (_, _, false) => String::new(),
                (_, true, true) => format!(
                    " (signatures and {} countersignatures verified against the federation CA)",
                    self.cosigned
                ),
                (Some(_), false, true) => format!(
                    " (signatures verified; {} countersignatures not checked: give --ca)",
                    self.cosigned
                ),
                (None, false, true) => " (signatures not checked: give --cert or --ca)".into(),
            },
        )
    }
}
