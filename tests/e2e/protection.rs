//! Data protection: record bodies encrypted at rest, the master key kept private.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::{example_json, example_report, ids, Federation, Init, FUR, MRR};

/// adolescence sends minor-risk reports to cuta, cuta sends follow-up requests back.
fn pair() -> Federation {
    let fed = Federation::new(&["adolescence", "cuta"]);
    fed.init(
        "adolescence",
        &Init::new()
            .peer("cuta")
            .send("cuta", MRR)
            .receive("cuta", FUR),
    );
    fed.init(
        "cuta",
        &Init::new()
            .peer("adolescence")
            .receive("adolescence", MRR)
            .send("adolescence", FUR),
    );
    fed
}

fn node_dir(fed: &Federation, node: &str) -> PathBuf {
    fed.config(node)
        .parent()
        .expect("node.toml is in the node directory")
        .to_path_buf()
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let e = e.expect("dir entry");
            let kind = e.file_type().expect("file type");
            if kind.is_dir() {
                todo.push(e.path());
            } else if kind.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_subject_identity_in_any_file_of_either_data_directory() {
    let mut fed = pair();
    fed.start("adolescence");
    fed.start("cuta");
    let mut sent = Vec::new();
    for _ in 0..3 {
        sent.push(fed.submit("adolescence", "cuta", MRR, &example_report()));
    }
    fed.wait_until("every record is received", || {
        let got = ids(&fed.inbox_jsonl("cuta"));
        sent.iter().all(|id| got.contains(id)).then_some(())
    });

    let subject = &example_json()["body"]["subject"];
    let needles: Vec<String> = ["given_names", "family_name", "national_register_number"]
        .iter()
        .map(|k| {
            subject[k]
                .as_str()
                .expect("example subject field")
                .to_owned()
        })
        .collect();
    // The record carries the national register number as 11 digits.
    let digits: String = needles[2].chars().filter(char::is_ascii_digit).collect();
    assert_eq!(digits.len(), 11);
    let needles = [needles[0].clone(), needles[1].clone(), digits];
    // Positive control: the receiver can read the content, so it is really stored there.
    let config = fed.config("cuta").display().to_string();
    let shown = fed.pons_ok(&[
        "inbox",
        "show",
        &sent[0],
        "--config",
        &config,
        "--justification",
        "assessment meeting",
    ]);
    for n in &needles {
        assert!(shown.contains(n.as_str()), "inbox show lacks {n}: {shown}");
    }

    // Stopped, so sled has written everything it holds.
    fed.stop_all();
    for node in ["adolescence", "cuta"] {
        let data = node_dir(&fed, node).join("data");
        let all = files(&data);
        assert!(all.len() > 1, "{node}: no database in {}", data.display());
        for path in all {
            let bytes = std::fs::read(&path).expect("read file");
            for n in &needles {
                assert!(
                    !contains(&bytes, n.as_bytes()),
                    "{node}: {} holds {n:?} in clear",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn master_key_is_made_private_and_a_readable_one_stops_the_node() {
    let fed = Federation::new(&["cuta"]);
    fed.init("cuta", &Init::new());
    let key = node_dir(&fed, "cuta").join("certs/master.key");
    let mode = std::fs::metadata(&key)
        .expect("master.key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "master.key mode {mode:o}");
    let before = std::fs::read(&key).expect("read master.key");
    assert_eq!(before.len(), 65, "64 hex digits and a newline");

    // `pons init --force` keeps the key: a new one would make every stored body unreadable.
    let out = fed.pons(&[
        "init",
        "--node-id",
        "cuta",
        "--dir",
        &node_dir(&fed, "cuta").display().to_string(),
        "--certs",
        "certs",
        "--force",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&key).expect("read master.key"), before);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let config = fed.config("cuta").display().to_string();
    let out = fed.pons(&["node", "run", "--config", &config]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the node started: {stderr}");
    assert!(
        stderr.contains("master.key") && stderr.contains("readable by group or others"),
        "{stderr}"
    );
}

#[test]
fn a_held_record_is_restricted_on_the_command_line_until_the_hold_is_lifted() {
    let mut fed = pair();
    fed.start("adolescence");
    fed.start("cuta");
    let id = fed.submit("adolescence", "cuta", MRR, &example_report());
    fed.wait_until("the record is received", || {
        ids(&fed.inbox_jsonl("cuta")).contains(&id).then_some(())
    });
    let config = fed.config("cuta").display().to_string();
    let show = [
        "inbox",
        "show",
        &id,
        "--config",
        &config,
        "--justification",
        "assessment",
    ];
    let export = [
        "record",
        "export",
        &id,
        "--config",
        &config,
        "--format",
        "json",
        "--justification",
        "court",
    ];
    fed.pons_ok(&show);

    fed.pons_ok(&[
        "hold",
        "add",
        &id,
        "--reason",
        "inquiry 2026/77",
        "--config",
        &config,
    ]);
    for args in [&show[..], &export[..]] {
        let out = fed.pons(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", args.join(" "));
        assert!(stderr.contains("legal hold"), "{stderr}");
    }
    let status = fed.pons_ok(&["status", "--config", &config]);
    assert!(
        status.contains("restricted records (1)") && status.contains(&id),
        "{status}"
    );
    let plan = fed.pons_ok(&["retention", "plan", "--config", &config]);
    let plan: serde_json::Value = serde_json::from_str(&plan).expect("plan is JSON");
    assert_eq!(plan["restricted"][0]["id"], id.as_str(), "{plan}");
    assert_eq!(plan["restricted"][0]["held"], true, "{plan}");
    // The DPO report lists the open hold with its reason.
    let report = fed.path().join("report-held.html");
    fed.pons_ok(&[
        "dpo",
        "report",
        "--config",
        &config,
        "--out",
        &report.display().to_string(),
        "--justification",
        "hold review",
    ]);
    let html = std::fs::read_to_string(&report).expect("report written");
    let section = html
        .split("open legal holds</h2>")
        .nth(1)
        .expect("the retention section");
    assert!(
        section.contains(&id) && section.contains("inquiry 2026/77"),
        "{section}"
    );

    fed.pons_ok(&[
        "hold",
        "remove",
        &id,
        "--reason",
        "inquiry closed",
        "--config",
        &config,
    ]);
    fed.pons_ok(&show);
    let kept = fed.pons_ok(&[
        "review",
        &id,
        "--decision",
        "keep",
        "--justification",
        "assessment still open",
        "--config",
        &config,
    ]);
    let kept: serde_json::Value = serde_json::from_str(&kept).expect("review is JSON");
    assert_eq!(kept["decision"], "keep", "{kept}");
    let status = fed.pons_ok(&["status", "--config", &config]);
    assert!(!status.contains("restricted records"), "{status}");
    let swept = fed.pons_ok(&["retention", "sweep", "--config", &config]);
    let swept: serde_json::Value = serde_json::from_str(&swept).expect("sweep is JSON");
    assert_eq!(
        swept["erased"],
        serde_json::json!([]),
        "nothing is due: {swept}"
    );

    fed.stop_all();
    let store = fed.store("cuta");
    let ops: Vec<_> = crate::util::journal(&store)
        .into_iter()
        .filter(|e| e.record_id.map(|r| r.to_string()) == Some(id.clone()))
        .map(|e| e.operation.as_str())
        .collect();
    assert_eq!(
        ops,
        ["receive", "consult", "hold", "hold", "consult", "review"],
        "journal of {id}"
    );
}

#[test]
fn a_review_decides_erasure_and_the_sweep_erases_on_both_nodes_with_tombstones() {
    let mut fed = pair();
    fed.start("adolescence");
    fed.start("cuta");
    let id = fed.submit("adolescence", "cuta", MRR, &example_report());
    let keep = fed.submit("adolescence", "cuta", MRR, &example_report());
    fed.wait_until("both records are received", || {
        let got = ids(&fed.inbox_jsonl("cuta"));
        (got.contains(&id) && got.contains(&keep)).then_some(())
    });
    for node in ["adolescence", "cuta"] {
        let config = fed.config(node).display().to_string();
        let plan = fed.pons_ok(&["retention", "plan", "--config", &config]);
        let plan: serde_json::Value = serde_json::from_str(&plan).expect("plan is JSON");
        assert_eq!(plan["erase"], serde_json::json!([]), "{node}: {plan}");
        fed.pons_ok(&[
            "review",
            &id,
            "--decision",
            "erase",
            "--justification",
            "no longer necessary",
            "--config",
            &config,
        ]);
        let plan = fed.pons_ok(&["retention", "plan", "--config", &config]);
        let plan: serde_json::Value = serde_json::from_str(&plan).expect("plan is JSON");
        assert_eq!(plan["erase"][0]["id"], id.as_str(), "{node}: {plan}");
        let swept = fed.pons_ok(&["retention", "sweep", "--config", &config]);
        let swept: serde_json::Value = serde_json::from_str(&swept).expect("sweep is JSON");
        let erased = swept["erased"].as_array().expect("erased list");
        assert_eq!(erased.len(), 1, "{node}: {swept}");
        assert_eq!(erased[0]["id"], id.as_str(), "{node}: {swept}");
    }
    let config = fed.config("cuta").display().to_string();
    let show = |rid: &str| {
        fed.pons(&[
            "inbox",
            "show",
            rid,
            "--config",
            &config,
            "--justification",
            "assessment",
        ])
    };
    assert_eq!(
        show(&id).status.code(),
        Some(2),
        "an erased record is not shown"
    );
    assert!(
        show(&keep).status.success(),
        "the other record is untouched"
    );

    fed.stop_all();
    for node in ["adolescence", "cuta"] {
        let store = fed.store(node);
        let tombstones: Vec<_> = crate::util::journal(&store)
            .into_iter()
            .filter(|e| e.operation.as_str() == "erase")
            .collect();
        assert_eq!(tombstones.len(), 1, "{node}");
        let t = &tombstones[0];
        assert_eq!(t.record_id.map(|r| r.to_string()), Some(id.clone()));
        assert_eq!(t.class.as_deref(), Some(MRR));
        assert!(
            t.subject_ref.is_some(),
            "{node}: the tombstone names the subject pseudonym"
        );
        store.verify_journal().expect("journal verifies");
    }
}
