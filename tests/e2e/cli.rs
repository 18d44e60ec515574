//! The caseworker's CLI against a running node: refusals that store nothing.

use pons_core::journal::Operation;
use pons_store::OutboxFilter;

use crate::util::{example_json, journal, submit_args, Federation, Init, MRR};

/// A running adolescence node (its peer cuta is not running: nothing here is delivered).
fn sender(init: Init) -> Federation {
    let mut fed = Federation::new(&["adolescence", "cuta"]);
    fed.init("adolescence", &init.peer("cuta").send("cuta", MRR));
    fed.start("adolescence");
    fed
}

#[test]
fn a_user_without_the_role_is_refused_on_the_control_socket() {
    // Every role belongs to another user: the one running the test holds none.
    let mut fed = sender(Init::new().users("someone-else"));
    let config = fed.config("adolescence");
    let report = crate::util::example_report();

    let out = fed.pons(&submit_args(&config, "cuta", MRR, &report));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr.contains("submit needs the role caseworker"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{out:?}"
    );

    let config = config.display().to_string();
    for what in ["outbox", "inbox"] {
        let out = fed.pons(&[what, "list", "--config", &config]);
        assert_eq!(out.status.code(), Some(2), "{what} list: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("needs the role"),
            "{what} list: {out:?}"
        );
    }

    fed.stop("adolescence");
    let store = fed.store("adolescence");
    assert!(
        store
            .outbox_list(&OutboxFilter::default())
            .expect("outbox")
            .is_empty(),
        "a record was stored"
    );
    assert!(
        journal(&store).is_empty(),
        "a refused request was journaled as an operation"
    );
}

#[test]
fn an_invalid_report_is_refused_with_every_reason_and_nothing_is_stored() {
    let mut fed = sender(Init::new());
    let config = fed.config("adolescence");

    // Three rule violations in one report: all three are reported at once.
    let mut report = example_json();
    report["review_by"] = "2020-01-01".into();
    report["body"]["subject"]["date_of_birth"] = "1990-01-01".into();
    let subject = report["body"]["subject"]
        .as_object_mut()
        .expect("subject is an object");
    subject.remove("national_register_number");
    report["body"]["statements"][2]
        .as_object_mut()
        .expect("statement is an object")
        .remove("assessing_authority");
    let invalid = fed.path().join("invalid.json");
    std::fs::write(&invalid, report.to_string()).expect("write the report");

    let out = fed.pons(&submit_args(&config, "cuta", MRR, &invalid));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    for reason in [
        "review_by",
        "body.subject.date_of_birth",
        "body.statements[2].assessing_authority",
        "nothing was stored",
    ] {
        assert!(stderr.contains(reason), "no {reason:?} in:\n{stderr}");
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{out:?}"
    );

    // A classified marking is refused outright.
    let mut classified = example_json();
    classified["marking"] = "SECRET".into();
    let classified_file = fed.path().join("classified.json");
    std::fs::write(&classified_file, classified.to_string()).expect("write the report");
    let out = fed.pons(&submit_args(&config, "cuta", MRR, &classified_file));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("classified"),
        "{out:?}"
    );

    // A recipient that is not a peer, and a class the policy does not allow.
    let valid = crate::util::example_report();
    let out = fed.pons(&submit_args(&config, "nccn", MRR, &valid));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nccn is not a peer"),
        "{out:?}"
    );
    let out = fed.pons(&submit_args(&config, "cuta", "protection-file", &valid));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("policy does not allow"),
        "{out:?}"
    );

    assert!(
        fed.outbox_jsonl("adolescence").is_empty(),
        "the outbox is not empty"
    );
    fed.stop("adolescence");
    let store = fed.store("adolescence");
    assert!(store
        .outbox_list(&OutboxFilter::default())
        .expect("outbox")
        .is_empty());
    let entries = journal(&store);
    assert!(
        entries.iter().all(|e| e.operation != Operation::Collect),
        "a refused report was journaled as collected: {entries:#?}"
    );
    assert!(entries.is_empty(), "{entries:#?}");
}

/// The README's main job: `pons demo` runs two real nodes, and its output shows every
/// step done (delivered with verified receipts, ingested by CUTA's feed, an erasure
/// reaching CUTA, both journals verified).
#[test]
fn pons_demo_runs_end_to_end() {
    let keep = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(crate::util::PONS)
        .args(["demo", "--keep"])
        .arg(keep.path())
        .output()
        .expect("run pons demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pons demo failed: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "delivered: receipt signed by cuta, verified true",
        "CUTA's feed ingested 3 records",
        "delivered after 1 attempts, receipt verified true",
        "signature verified",
        "cuta's signed receipt for the notice: erased",
        "adolescence: 12 entries, chain verified",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    // cuta's count depends on whether its feed handed the notice over before the stop.
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("cuta: ") && l.contains("entries, chain verified")),
        "cuta's journal not verified:\n{text}"
    );
    let spooled = std::fs::read_dir(keep.path().join("cuta/feed/analysis"))
        .expect("the spool directory")
        .count();
    assert!(spooled >= 4, "the analysis spool holds {spooled} records");
}

/// `pons bench` runs each node as `pons node run`, delivers every record and
/// reports each node's peak memory and the CPU of all three processes. Only what the run
/// did is checked, never how fast (speed is measured by `pons bench`, not by tests).
#[test]
fn pons_bench_runs_node_processes_and_reports_each_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(crate::util::PONS)
        .args([
            "bench",
            "--no-feed",
            "--json",
            "--records",
            "20",
            "--concurrency",
            "4",
            "--journal-entries",
            "100",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run pons bench");
    assert!(
        out.status.success(),
        "pons bench failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["records"], 20, "{report:#}");
    assert_eq!(report["processes"], true);
    let nodes = report["node_peak_rss_bytes"]
        .as_object()
        .expect("a peak RSS per node");
    let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
    assert_eq!(names, ["adolescence", "cuta"]);
    for (node, rss) in nodes {
        // A node holds at least its binary's pages and its runtime: more than a MiB.
        assert!(rss.as_u64().unwrap_or(0) > 1 << 20, "{node}: {rss}");
    }
    // The CPU figure is there (the nodes' share is read from /proc/PID/stat, 10 ms ticks).
    assert!(
        report["cpu_s_per_record"].as_f64().unwrap_or(0.0) > 0.0,
        "{report:#}"
    );
    // It is split by process, and the parts add up to it.
    let by = report["cpu_s_per_record_by_process"]
        .as_object()
        .expect("the CPU per record of each process");
    let names: Vec<&str> = by.keys().map(String::as_str).collect();
    assert_eq!(names, ["adolescence", "clients", "cuta"]);
    let sum: f64 = by.values().filter_map(serde_json::Value::as_f64).sum();
    let total = report["cpu_s_per_record"].as_f64().unwrap_or(0.0);
    assert!((sum - total).abs() <= total * 1e-9, "{sum} != {total}");
    // No node process outlives the run.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| c.contains(&*dir.path().to_string_lossy()))
        .collect();
    assert!(left.is_empty(), "node processes left running: {left:?}");
}
