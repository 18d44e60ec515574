//! Data protection: record bodies encrypted at rest, the master key kept private.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pons_core::journal::Operation;
use pons_node::control::Request;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::util::{
    counts, example_json, example_report, ids, journaled, Federation, Init, FUR, MRR,
};

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

/// No file of `paths` (of `node`) holds any of `needles` in clear.
fn assert_in_no_file(node: &str, paths: &[PathBuf], needles: &[String]) {
    for path in paths {
        let bytes = std::fs::read(path).expect("read file");
        for n in needles {
            assert!(
                !contains(&bytes, n.as_bytes()),
                "{node}: {} holds {n:?} in clear",
                path.display()
            );
        }
    }
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
        assert_in_no_file(node, &all, &needles);
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

/// `pons retention sweep`'s output, parsed.
fn sweep(fed: &Federation, node: &str) -> Value {
    let config = fed.config(node).display().to_string();
    let out = fed.pons_ok(&["retention", "sweep", "--config", &config]);
    serde_json::from_str(&out).expect("sweep prints JSON")
}

fn review_erase(fed: &Federation, node: &str, id: &str) {
    fed.control_ok(
        node,
        Request::Review {
            id: id.into(),
            decision: "erase".into(),
            justification: "no longer necessary".into(),
        },
    );
}

/// The outbox records of `node` of `class`, as `pons outbox list` shows them.
fn outbox_of(fed: &Federation, node: &str, class: &str) -> Vec<Value> {
    fed.outbox_jsonl(node)
        .into_iter()
        .filter(|r| r["class"] == class)
        .collect()
}

fn delivered(list: &[Value]) -> usize {
    list.iter().filter(|r| r["state"] == "delivered").count()
}

#[test]
fn an_erasure_at_the_sender_reaches_the_recipient_with_a_notice_and_its_answer() {
    let mut fed = pair();
    fed.start("adolescence");
    fed.start("cuta");
    let id = fed.submit("adolescence", "cuta", MRR, &example_report());
    let keep = fed.submit("adolescence", "cuta", MRR, &example_report());
    fed.wait_until("both records are delivered", || {
        (delivered(&outbox_of(&fed, "adolescence", MRR)) == 2).then_some(())
    });
    let config = fed.config("adolescence").display().to_string();
    let plan = fed.pons_ok(&["retention", "plan", "--config", &config]);
    let plan: Value = serde_json::from_str(&plan).expect("plan is JSON");
    assert_eq!(plan["erase"], json!([]), "{plan}");
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
    let plan: Value = serde_json::from_str(&plan).expect("plan is JSON");
    assert_eq!(plan["erase"][0]["id"], id.as_str(), "{plan}");
    let swept = sweep(&fed, "adolescence");
    let erased = swept["erased"].as_array().expect("erased list");
    assert_eq!(erased.len(), 1, "{swept}");
    assert_eq!(erased[0]["id"], id.as_str(), "{swept}");
    assert_eq!(erased[0]["notice"]["to"], "cuta", "{swept}");
    let notice = erased[0]["notice"]["id"]
        .as_str()
        .expect("notice id")
        .to_owned();

    // The recipient erases its copy and says so in its signed receipt.
    let shown = fed.wait_until("the notice's receipt", || {
        let shown = fed.control_ok("adolescence", Request::OutboxShow { id: notice.clone() });
        (shown["state"] == "delivered").then_some(shown)
    });
    assert_eq!(shown["receipt"]["verified"], true, "{shown}");
    assert_eq!(shown["receipt"]["effect"]["effect"], "erased", "{shown}");
    let original = fed.control_ok("adolescence", Request::OutboxShow { id: id.clone() });
    assert_eq!(original["erased"], true, "{original}");
    assert_eq!(shown["erased"], false, "{shown}");
    let show = |rid: &str| inbox_show(&fed, "cuta", rid);
    assert_eq!(
        show(&id).status.code(),
        Some(2),
        "an erased record is not shown"
    );
    assert!(
        show(&keep).status.success(),
        "the other record is untouched"
    );
    assert!(
        show(&notice).status.success(),
        "the notice itself is readable"
    );

    fed.stop_all();
    for node in ["adolescence", "cuta"] {
        let store = fed.store_keyed(node);
        let tombstones: Vec<_> = crate::util::journal(&store)
            .into_iter()
            .filter(|e| e.operation == Operation::Erase)
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
    let uuid = Uuid::parse_str(&id).unwrap();
    let a = fed.store_keyed("adolescence");
    assert!(a.outbox_envelope(uuid).unwrap().is_none());
    assert!(a
        .outbox_envelope(Uuid::parse_str(&keep).unwrap())
        .unwrap()
        .is_some());
    drop(a);
    let c = fed.store_keyed("cuta");
    assert!(
        c.inbox_envelope(uuid).unwrap().is_none(),
        "gone even with the master key"
    );
    let tomb = crate::util::journal(&c)
        .into_iter()
        .find(|e| e.operation == Operation::Erase)
        .unwrap();
    assert!(
        tomb.justification
            .as_deref()
            .unwrap_or_default()
            .contains(&format!("erasure notice {notice} from adolescence")),
        "{tomb:?}"
    );
}

/// Records sent, delivered, then all due for erasure at the sender; the sender is killed
/// in the middle of its sweep. Every record is then either whole or erased with its
/// tombstone and its notice (never half), the restarted node's sweep finishes the rest,
/// and the recipient erases every copy: no content is left on either node.
#[test]
fn a_sweep_killed_mid_way_resumes_and_every_copy_is_erased_on_both_nodes() {
    const N: usize = 600;
    const KILL_AFTER: usize = 1;
    let mut fed = pair();
    fed.start("adolescence");
    fed.start("cuta");
    let report = std::fs::read_to_string(example_report()).unwrap();
    let ids: Vec<String> = (0..N)
        .map(|_| fed.submit_direct("adolescence", "cuta", MRR, &report))
        .collect();
    fed.wait_until("every record is delivered", || {
        (delivered(&outbox_of(&fed, "adolescence", MRR)) == N).then_some(())
    });
    for id in &ids {
        review_erase(&fed, "adolescence", id);
    }
    // The sweep runs in the node; the request's answer never comes, since the node dies.
    let socket = fed
        .config("adolescence")
        .parent()
        .unwrap()
        .join("data/control.sock");
    let sweeper = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = rt.block_on(pons_node::control::call(&socket, &Request::RetentionSweep));
    });
    // Polled tightly: the sweep erases 64 records at a time, so it is quick.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while fed
        .log("adolescence")
        .matches("erasure notice queued")
        .count()
        < KILL_AFTER
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep did not start:\n{}",
            fed.log("adolescence")
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    fed.kill("adolescence");
    sweeper.join().unwrap();

    let store = fed.store_keyed("adolescence");
    let entries = crate::util::journal(&store);
    let tombs = journaled(&entries, Operation::Erase);
    eprintln!("killed after {} of {N} erasures", tombs.len());
    assert!(
        tombs.len() >= KILL_AFTER,
        "{} erased before the kill",
        tombs.len()
    );
    assert!(
        tombs.len() < N,
        "the sweep finished before the kill: the test proves nothing"
    );
    let notices = store
        .outbox_list(&pons_store::OutboxFilter::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.class == "erasure-notice")
        .count();
    assert_eq!(
        notices,
        tombs.len(),
        "one notice per erasure, stored with it"
    );
    for id in &ids {
        let uuid = Uuid::parse_str(id).unwrap();
        let body = store.outbox_envelope(uuid).unwrap().is_some();
        let entry = store.retention_get(uuid).unwrap().is_some();
        let n = tombs.iter().filter(|t| *t == id).count();
        assert!(
            (body && entry && n == 0) || (!body && !entry && n == 1),
            "{id}: half erased (body {body}, retention entry {entry}, {n} tombstones)"
        );
    }
    store
        .verify_journal()
        .expect("journal verifies after the kill");
    drop(store);

    // Restarted, the node's scheduled sweep (at start) finishes; every notice is answered.
    fed.start("adolescence");
    fed.wait_until("every notice is delivered", || {
        let list = outbox_of(&fed, "adolescence", "erasure-notice");
        (list.len() == N && delivered(&list) == N).then_some(())
    });
    fed.stop_all();

    let subject = &example_json()["body"]["subject"];
    let family = subject["family_name"].as_str().unwrap().to_owned();
    for node in ["adolescence", "cuta"] {
        let store = fed.store_keyed(node);
        let entries = crate::util::journal(&store);
        let tombs = journaled(&entries, Operation::Erase);
        let counted = counts(&tombs);
        assert_eq!(counted.len(), N, "{node}: every record erased");
        assert!(
            counted.values().all(|&n| n == 1),
            "{node}: one tombstone each"
        );
        for id in &ids {
            let uuid = Uuid::parse_str(id).unwrap();
            let body = match node {
                "adolescence" => store.outbox_envelope(uuid).unwrap(),
                _ => store.inbox_envelope(uuid).unwrap(),
            };
            assert!(body.is_none(), "{node}: {id} still readable");
        }
        store.verify_journal().expect("journal verifies");
        drop(store);
        let data = files(&node_dir(&fed, node).join("data"));
        assert_in_no_file(node, &data, std::slice::from_ref(&family));
    }
}

#[test]
fn pons_rectify_replaces_the_record_at_the_recipient() {
    let mut fed = pair();
    fed.start("adolescence");
    fed.start("cuta");
    let id = fed.submit("adolescence", "cuta", MRR, &example_report());
    fed.wait_until("delivered", || {
        (delivered(&outbox_of(&fed, "adolescence", MRR)) == 1).then_some(())
    });
    let mut corrected = example_json();
    corrected["body"]["risk_level"] = json!("high");
    corrected["body"]["statements"][0]["text"] = json!("Shared two videos calling for violence.");
    let file = fed.write_json("corrected.json", &corrected);
    let config = fed.config("adolescence").display().to_string();
    let out = fed.pons_ok(&[
        "rectify",
        &id,
        "--file",
        &file.display().to_string(),
        "--reason",
        "the chat held two videos",
        "--config",
        &config,
    ]);
    assert!(out.contains("the original was erased"), "{out}");
    let rect = out.lines().last().unwrap().trim().to_owned();
    Uuid::parse_str(&rect).expect("the rectification's id is the last line");
    let shown = fed.wait_until("the rectification's receipt", || {
        let shown = fed.control_ok("adolescence", Request::OutboxShow { id: rect.clone() });
        (shown["state"] == "delivered").then_some(shown)
    });
    assert_eq!(shown["receipt"]["effect"]["effect"], "erased", "{shown}");
    let show = |rid: &str| inbox_show(&fed, "cuta", rid);
    assert_eq!(show(&id).status.code(), Some(2), "the original is gone");
    let new = show(&rect);
    let text = String::from_utf8_lossy(&new.stdout);
    assert!(
        new.status.success() && text.contains("Shared two videos") && text.contains(&id),
        "{text}"
    );

    // Bad input changes nothing: a blank reason, a report that does not validate.
    let before = outbox_of(&fed, "adolescence", "rectification").len();
    let bad = fed.write_json("bad.json", &json!({ "marking": "GEHEIM" }));
    for (file, reason, needle) in [(&file, " ", "reason"), (&bad, "x", "marking")] {
        let out = fed.pons(&[
            "rectify",
            &rect,
            "--file",
            &file.display().to_string(),
            "--reason",
            reason,
            "--config",
            &config,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(
        outbox_of(&fed, "adolescence", "rectification").len(),
        before
    );
}

/// `pons inbox show ID` on `node`, with a justification.
fn inbox_show(fed: &Federation, node: &str, id: &str) -> std::process::Output {
    let config = fed.config(node).display().to_string();
    fed.pons(&[
        "inbox",
        "show",
        id,
        "--config",
        &config,
        "--justification",
        "assessment",
    ])
}
