//! The DPO's journal commands against running nodes: verify, search (by subject too),
//! export; the export verified offline by `pons` and by the independent Python script,
//! and tampered copies refused by both.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pons_core::journal::Operation;
use serde_json::Value;

use crate::util::{example_report, journal, Federation, Init, MRR};

/// The Python verifier shipped in tools/.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/verify_journal.py")
}

fn python(file: &Path) -> Output {
    Command::new("python3")
        .arg(script())
        .arg(file)
        .output()
        .expect("run python3 (the e2e tests need it for the independent verifier)")
}

/// adolescence sends two reports to cuta, both delivered.
fn delivered_pair() -> (Federation, Vec<String>) {
    let mut fed = Federation::new(&["adolescence", "cuta"]);
    fed.init("adolescence", &Init::new().peer("cuta").send("cuta", MRR));
    fed.init(
        "cuta",
        &Init::new().peer("adolescence").receive("adolescence", MRR),
    );
    fed.start("adolescence");
    fed.start("cuta");
    let ids: Vec<String> = (0..2)
        .map(|_| fed.submit("adolescence", "cuta", MRR, &example_report()))
        .collect();
    fed.wait_until("both records are delivered", || {
        let outbox = fed.outbox_jsonl("adolescence");
        (outbox.iter().filter(|r| r["state"] == "delivered").count() == 2).then_some(())
    });
    (fed, ids)
}

fn jsonl(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Rewrites line `index` (0-based) of the export with `edit`, into a new file.
fn tampered(
    fed: &Federation,
    export: &Path,
    name: &str,
    edit: impl Fn(&mut Vec<String>),
) -> PathBuf {
    let text = std::fs::read_to_string(export).expect("read the export");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    let path = fed.path().join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the tampered export");
    path
}

#[test]
fn a_dpo_verifies_searches_and_exports_and_the_export_verifies_independently() {
    let (mut fed, ids) = delivered_pair();
    let config = fed.config("adolescence").display().to_string();

    // verify: exit 0; a justification is required.
    let out = fed.pons_ok(&[
        "journal",
        "verify",
        "--config",
        &config,
        "--justification",
        "quarterly audit",
    ]);
    assert!(out.contains("journal verified"), "{out}");
    let out = fed.pons(&["journal", "verify", "--config", &config]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = fed.pons(&[
        "journal",
        "verify",
        "--config",
        &config,
        "--justification",
        " ",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("justification"), "{out:?}");

    // search by subject: the node pseudonymises the national register number (or the
    // names and date of birth: the example report's subject has both, the NRN wins).
    let found = jsonl(&fed.pons_ok(&[
        "journal",
        "search",
        "--config",
        &config,
        "--subject",
        "10.05.14-998.20",
        "--justification",
        "subject access request",
        "--format",
        "jsonl",
    ]));
    let ops: Vec<&str> = found
        .iter()
        .map(|e| e["operation"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        ops.iter().filter(|o| **o == "collect").count(),
        2,
        "{ops:?}"
    );
    assert_eq!(
        ops.iter().filter(|o| **o == "disclose").count(),
        2,
        "{ops:?}"
    );
    assert!(
        found
            .iter()
            .all(|e| e["subject_ref"] == found[0]["subject_ref"]),
        "{found:?}"
    );

    // Another subject finds nothing.
    let none = jsonl(&fed.pons_ok(&[
        "journal",
        "search",
        "--config",
        &config,
        "--subject",
        "Jan|Janssens|2011-01-01",
        "--justification",
        "subject access request",
        "--format",
        "jsonl",
    ]));
    assert!(none.is_empty(), "{none:?}");

    // by record, operation and peer
    let by_record = jsonl(&fed.pons_ok(&[
        "journal",
        "search",
        "--config",
        &config,
        "--record",
        &ids[1],
        "--operation",
        "disclose",
        "--peer",
        "cuta",
        "--justification",
        "check a disclosure",
        "--format",
        "jsonl",
    ]));
    assert_eq!(by_record.len(), 1, "{by_record:?}");
    assert_eq!(by_record[0]["record_id"], ids[1].as_str());
    assert_eq!(by_record[0]["counterpart"], "cuta");

    // table output and bad filters
    let table = fed.pons_ok(&[
        "journal",
        "search",
        "--config",
        &config,
        "--operation",
        "collect",
        "--since",
        "2000-01-01",
        "--justification",
        "audit",
    ]);
    assert!(table.contains("2 entries"), "{table}");
    let out = fed.pons(&[
        "journal",
        "search",
        "--config",
        &config,
        "--operation",
        "read",
        "--since",
        "yesterday",
        "--justification",
        "audit",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("operation: \"read\""), "{out:?}");
    assert!(stderr(&out).contains("since:"), "{out:?}");

    // export, verified by pons and by the Python script
    let export = fed.path().join("journal.jsonl");
    let export_s = export.display().to_string();
    let out = fed.pons_ok(&[
        "journal",
        "export",
        "--config",
        &config,
        "--format",
        "jsonl",
        "--out",
        &export_s,
        "--justification",
        "annual review by the supervisory authority",
    ]);
    assert!(out.contains("entries exported"), "{out}");
    let out = fed.pons_ok(&["journal", "verify", "--export", &export_s]);
    assert!(out.contains("export verified"), "{out}");
    let py = python(&export);
    assert_eq!(py.status.code(), Some(0), "{py:?}");
    assert!(
        String::from_utf8_lossy(&py.stdout).contains("export verified"),
        "{py:?}"
    );

    let lines = jsonl(&std::fs::read_to_string(&export).expect("export"));
    assert_eq!(lines[0]["type"], "header");
    let last_entry = lines
        .iter()
        .rposition(|l| l["type"] == "entry")
        .expect("entries");
    let last = &lines[last_entry];
    assert_eq!(
        last["operation"], "export",
        "the export's own entry is in it"
    );
    assert_eq!(
        last["justification"],
        "annual review by the supervisory authority"
    );

    // CSV: a header row and one row per entry
    let csv = fed.path().join("journal.csv");
    let csv_s = csv.display().to_string();
    fed.pons_ok(&[
        "journal",
        "export",
        "--config",
        &config,
        "--format",
        "csv",
        "--out",
        &csv_s,
        "--justification",
        "spreadsheet for the DPO",
    ]);
    let csv_text = std::fs::read_to_string(&csv).expect("csv");
    assert!(csv_text.starts_with("seq,time,time_unix,"), "{csv_text}");
    // Entries only (the CSV has no checkpoints), plus this export's own entry.
    let entry_count = lines.iter().filter(|l| l["type"] == "entry").count();
    assert_eq!(csv_text.lines().count(), 1 + entry_count + 1, "{csv_text}");

    // Tampered copies: each refused by both verifiers with exit 3, naming the entry.
    let entry_line = lines
        .iter()
        .position(|l| l["operation"] == "disclose")
        .expect("a disclose");
    let seq = lines[entry_line]["seq"].as_u64().expect("seq");
    let cases: Vec<(&str, PathBuf, String)> = vec![
        (
            "one byte changed",
            tampered(&fed, &export, "byte.jsonl", |l| {
                l[entry_line] =
                    l[entry_line].replacen("\"actor\":\"system\"", "\"actor\":\"systen\"", 1)
            }),
            format!("journal entry {seq}: hash does not match"),
        ),
        (
            "a field changed",
            tampered(&fed, &export, "field.jsonl", |l| {
                let mut v: Value = serde_json::from_str(&l[entry_line]).expect("json");
                v["counterpart"] = Value::String("nccn".into());
                l[entry_line] = v.to_string();
            }),
            format!("journal entry {seq}: hash does not match"),
        ),
        (
            "an entry removed",
            tampered(&fed, &export, "removed.jsonl", |l| {
                l.remove(entry_line);
            }),
            format!("journal entry {}: seq is not {seq}", seq + 1),
        ),
        (
            "the tail truncated",
            tampered(&fed, &export, "truncated.jsonl", |l| {
                l.remove(last_entry);
            }),
            "export ends at entry".to_owned(),
        ),
    ];
    for (what, path, expected) in &cases {
        let py = python(path);
        assert_eq!(py.status.code(), Some(3), "python, {what}: {py:?}");
        assert!(
            stderr(&py).contains(expected.as_str()),
            "python, {what}: {py:?}"
        );
        let path_s = path.display().to_string();
        let out = fed.pons(&["journal", "verify", "--export", &path_s]);
        assert_eq!(out.status.code(), Some(3), "pons, {what}: {out:?}");
        assert!(
            stderr(&out).contains(expected.as_str()),
            "pons, {what}: {out:?}"
        );
    }

    // Every DPO call is journaled, with its role and justification; refusals are not.
    fed.stop_all();
    let entries = journal(&fed.store("adolescence"));
    let reads: Vec<_> = entries
        .iter()
        .filter(|e| e.operation == Operation::JournalRead)
        .collect();
    // verify + 4 searches; the refused calls left nothing.
    assert_eq!(reads.len(), 5, "{reads:?}");
    assert!(reads.iter().all(|e| e.role.as_deref() == Some("dpo")));
    assert_eq!(reads[0].justification.as_deref(), Some("quarterly audit"));
    assert_eq!(
        reads[1].subject_ref,
        found[0]["subject_ref"].as_str().map(str::to_owned)
    );
    let exports = entries
        .iter()
        .filter(|e| e.operation == Operation::Export)
        .count();
    assert_eq!(exports, 2);
}

#[test]
fn journal_commands_need_the_dpo_role() {
    let mut fed = Federation::new(&["adolescence", "cuta"]);
    fed.init(
        "adolescence",
        &Init::new().peer("cuta").users("someone-else"),
    );
    fed.start("adolescence");
    let config = fed.config("adolescence").display().to_string();
    let out = fed.pons(&[
        "journal",
        "verify",
        "--config",
        &config,
        "--justification",
        "audit",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains("journal verify needs the role dpo"),
        "{out:?}"
    );
    let out = fed.pons(&[
        "journal",
        "export",
        "--config",
        &config,
        "--out",
        "x.jsonl",
        "--justification",
        "audit",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    fed.stop_all();
    assert!(journal(&fed.store("adolescence")).is_empty());
}

/// Appends a `[journal]` section making checkpoints every 3 entries or every second.
fn frequent_checkpoints(fed: &Federation, node: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(fed.config(node))
        .expect("open node.toml");
    writeln!(f, "\n[journal]\ncheckpoint_every = 3\ncheckpoint_secs = 1").expect("write");
}

#[test]
fn checkpoints_are_countersigned_by_the_peer_and_expose_truncation_and_forgery() {
    let mut fed = Federation::new(&["adolescence", "cuta"]);
    fed.init("adolescence", &Init::new().peer("cuta").send("cuta", MRR));
    fed.init(
        "cuta",
        &Init::new().peer("adolescence").receive("adolescence", MRR),
    );
    frequent_checkpoints(&fed, "adolescence");
    frequent_checkpoints(&fed, "cuta");
    fed.start("adolescence");
    fed.start("cuta");
    for _ in 0..2 {
        fed.submit("adolescence", "cuta", MRR, &example_report());
    }
    fed.wait_until("cuta countersigned a checkpoint of adolescence", || {
        fed.log("adolescence")
            .contains("journal checkpoint countersigned by peer")
            .then_some(())
    });
    let config = fed.config("adolescence").display().to_string();
    let out = fed.pons_ok(&[
        "journal",
        "verify",
        "--config",
        &config,
        "--justification",
        "audit",
    ]);
    assert!(out.contains("countersigned by peers"), "{out}");
    assert!(!out.contains(" 0 countersigned"), "{out}");

    let export = fed.path().join("cp.jsonl");
    let export_s = export.display().to_string();
    fed.pons_ok(&[
        "journal",
        "export",
        "--config",
        &config,
        "--out",
        &export_s,
        "--justification",
        "audit",
    ]);
    let cert = fed
        .certs()
        .join("adolescence/sign.pem")
        .display()
        .to_string();
    let out = fed.pons_ok(&["journal", "verify", "--export", &export_s, "--cert", &cert]);
    assert!(out.contains("signatures verified"), "{out}");
    assert_eq!(python(&export).status.code(), Some(0));
    // With the federation CA the peers' countersignatures are verified too.
    let ca = fed.certs().join("ca.pem").display().to_string();
    let out = fed.pons_ok(&["journal", "verify", "--export", &export_s, "--ca", &ca]);
    assert!(out.contains("countersignatures verified"), "{out}");

    let lines = jsonl(&std::fs::read_to_string(&export).expect("export"));
    let checkpoint = lines
        .iter()
        .position(|l| l["type"] == "checkpoint")
        .expect("a checkpoint line");
    assert!(
        lines.iter().any(|l| l["type"] == "checkpoint"
            && l["cosigned"].as_array().is_some_and(|c| !c.is_empty())),
        "no countersigned checkpoint in the export"
    );

    // Forged: one byte of a checkpoint signature changed.
    let forged = tampered(&fed, &export, "forged.jsonl", |l| {
        let mut v: Value = serde_json::from_str(&l[checkpoint]).expect("json");
        let cose = v["cose"].as_str().expect("cose").to_owned();
        let at = cose.len() - 10;
        let flipped = if &cose[at..at + 1] == "0" { "1" } else { "0" };
        v["cose"] = format!("{}{}{}", &cose[..at], flipped, &cose[at + 1..]).into();
        l[checkpoint] = v.to_string();
    });
    let forged_s = forged.display().to_string();
    for key in [["--cert", cert.as_str()], ["--ca", ca.as_str()]] {
        let out = fed.pons(&["journal", "verify", "--export", &forged_s, key[0], key[1]]);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(stderr(&out).contains("checkpoint"), "{out:?}");
    }
    // A forged countersignature.
    let cosigned_line = lines
        .iter()
        .position(|l| {
            l["type"] == "checkpoint" && l["cosigned"].as_array().is_some_and(|c| !c.is_empty())
        })
        .expect("a countersigned checkpoint");
    let forged_cs = tampered(&fed, &export, "forged-cs.jsonl", |l| {
        let mut v: Value = serde_json::from_str(&l[cosigned_line]).expect("json");
        let cs = v["cosigned"][0].as_str().expect("hex").to_owned();
        let at = cs.len() - 10;
        let flipped = if &cs[at..at + 1] == "0" { "1" } else { "0" };
        v["cosigned"][0] = format!("{}{}{}", &cs[..at], flipped, &cs[at + 1..]).into();
        l[cosigned_line] = v.to_string();
    });
    let forged_cs_s = forged_cs.display().to_string();
    let out = fed.pons(&["journal", "verify", "--export", &forged_cs_s, "--ca", &ca]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(stderr(&out).contains("countersignature"), "{out:?}");
    // Another node's certificate does not verify adolescence's checkpoints.
    let other = fed.certs().join("cuta/sign.pem").display().to_string();
    let out = fed.pons(&["journal", "verify", "--export", &export_s, "--cert", &other]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // Truncated so that the chain and the header agree: only the checkpoints show it.
    let entries: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i]["type"] == "entry")
        .collect();
    let keep_last = entries[entries.len() - 3];
    let cut = tampered(&fed, &export, "cut.jsonl", |l| {
        let last: Value = serde_json::from_str(&l[keep_last]).expect("json");
        let mut header: Value = serde_json::from_str(&l[0]).expect("json");
        header["head_seq"] = last["seq"].clone();
        header["head_hash"] = last["hash"].clone();
        l[0] = header.to_string();
        for i in entries[entries.len() - 2..].iter().rev() {
            l.remove(*i);
        }
    });
    let py = python(&cut);
    assert_eq!(py.status.code(), Some(3), "{py:?}");
    assert!(stderr(&py).contains("truncated"), "{py:?}");
    let cut_s = cut.display().to_string();
    let out = fed.pons(&["journal", "verify", "--export", &cut_s]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(stderr(&out).contains("truncated"), "{out:?}");

    // The DPO report: one self-contained HTML file with the figures and the status.
    let report = fed.path().join("report.html");
    let report_s = report.display().to_string();
    let out = fed.pons_ok(&[
        "dpo",
        "report",
        "--config",
        &config,
        "--out",
        &report_s,
        "--justification",
        "annual report",
        "--since",
        "2000-01-01",
    ]);
    assert!(out.contains("journal verified"), "{out}");
    let html = std::fs::read_to_string(&report).expect("report");
    for needle in [
        "Journal verified.",
        "countersignatures by peers agree",
        "Exchanges per month per peer",
        "  cuta</text>",
        "Rejections by reason",
        "Consultations of records by actor",
        "<svg",
    ] {
        assert!(html.contains(needle), "{needle:?} missing from the report");
    }
    assert!(!html.contains("<script"), "the report runs no script");
    assert!(!html.contains("https://"), "the report loads nothing");
    screenshot(&fed, &report);

    // Retention: entries before the latest checkpoint go; that checkpoint is the anchor.
    let out = fed.pons_ok(&[
        "journal",
        "prune",
        "--config",
        &config,
        "--before",
        "2100-01-01",
        "--justification",
        "retention test",
    ]);
    assert!(out.contains("journal entries removed"), "{out}");
    let out = fed.pons_ok(&[
        "journal",
        "verify",
        "--config",
        &config,
        "--justification",
        "after pruning",
    ]);
    assert!(out.contains("journal verified"), "{out}");
    let pruned = fed.path().join("pruned.jsonl");
    let pruned_s = pruned.display().to_string();
    fed.pons_ok(&[
        "journal",
        "export",
        "--config",
        &config,
        "--out",
        &pruned_s,
        "--justification",
        "audit",
    ]);
    let plines = jsonl(&std::fs::read_to_string(&pruned).expect("export"));
    let start = plines[0]["start_seq"].as_u64().expect("start_seq");
    assert!(start > 0, "{:?}", plines[0]);
    let out = fed.pons_ok(&["journal", "verify", "--export", &pruned_s, "--cert", &cert]);
    assert!(out.contains("signatures verified"), "{out}");
    let py = python(&pruned);
    assert_eq!(py.status.code(), Some(0), "{py:?}");
    // Without its anchor checkpoint a pruned export proves nothing about its start.
    let anchor = plines
        .iter()
        .position(|l| l["type"] == "checkpoint" && l["seq"].as_u64() == Some(start + 1))
        .expect("the anchor checkpoint is exported");
    let unanchored = tampered(&fed, &pruned, "unanchored.jsonl", |l| {
        l.remove(anchor);
    });
    let py = python(&unanchored);
    assert_eq!(py.status.code(), Some(3), "{py:?}");
    assert!(stderr(&py).contains("no anchor checkpoint"), "{py:?}");
    let unanchored_s = unanchored.display().to_string();
    let out = fed.pons(&["journal", "verify", "--export", &unanchored_s]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        stderr(&out).contains("no signed anchor checkpoint"),
        "{out:?}"
    );

    // cuta keeps its own copy of what it countersigned.
    fed.stop_all();
    let copies = fed
        .store("cuta")
        .cosigned(&pons_core::NodeId::new("adolescence").expect("id"))
        .expect("cosigned");
    assert!(!copies.is_empty());
    assert!(copies.iter().all(|c| c.cosigner == "cuta"));
}

/// Renders the report once in headless Chromium when it is installed (Debian package
/// `chromium`), keeping the screenshot next to it and, when `PONS_REPORT_SCREENSHOT` names a
/// file, copying it there for a person to look at. Without Chromium nothing is checked here.
fn screenshot(fed: &Federation, report: &Path) {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("chromium not installed: the report was not rendered");
        return;
    };
    let png = fed.path().join("report.png");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1000,1400",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", report.display()))
        .output()
        .expect("run chromium");
    assert!(png.exists(), "chromium made no screenshot: {out:?}");
    if let Ok(dest) = std::env::var("PONS_REPORT_SCREENSHOT") {
        std::fs::copy(&png, dest).expect("copy the screenshot");
    }
}

/// A journal file damaged while the node was stopped (a byte changed, the write-ahead log
/// retired since): the node refuses to start with exit 3 (integrity), naming the file and
/// the rule, and leaves the damaged bytes for the investigation.
#[test]
fn a_node_whose_journal_file_is_damaged_refuses_to_start_with_exit_3() {
    let (mut fed, _) = delivered_pair();
    fed.stop_all();
    // Opened and closed once more: the store's recovery retires its write-ahead log, so the
    // journal files alone hold the entries.
    drop(fed.store("cuta"));
    let dir = fed.dir("cuta").join("data/db/journal");
    let file = std::fs::read_dir(&dir)
        .expect("the journal directory")
        .map(|e| e.expect("entry").path())
        .max()
        .expect("a journal file");
    let mut bytes = std::fs::read(&file).expect("read the journal file");
    // A byte inside the first entry's value (8 bytes of header, 16 of entry head).
    bytes[8 + 16 + 40] ^= 0x01;
    std::fs::write(&file, &bytes).expect("write the journal file");

    let mut child = Command::new(crate::util::PONS)
        .args(["node", "run", "--config"])
        .arg(fed.config("cuta"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pons node run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node started on a damaged journal");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("checksum does not match"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "never ready"
    );
    assert_eq!(
        std::fs::read(&file).expect("read"),
        bytes,
        "nothing was cut"
    );
}
