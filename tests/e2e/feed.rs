//! The receiving agency's feed: every record cuta accepts reaches its systems through each
//! sink exactly once, in arrival order, across SIGKILLs of the node; consumers that fail
//! recover, poison records become dead letters and can be retried by hand.
//!
//! Each test runs adolescence → cuta with sinks appended to cuta's `node.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use pons_core::journal::{JournalEntry, Operation};
use pons_node::control::{self, Request, Response};
use serde_json::Value;

use crate::util::{example_json, journal, Federation, Init, DEADLINE, FUR, MRR};

/// A federation adolescence → cuta with `sinks` (TOML `[[sink]]` sections) on cuta; both
/// nodes started.
fn federation(sinks: &str) -> Federation {
    let mut fed = Federation::new(&["adolescence", "cuta"]);
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
    let config = fed.config("cuta");
    let mut text = std::fs::read_to_string(&config).expect("read cuta's config");
    text.push('\n');
    text.push_str(sinks);
    std::fs::write(&config, text).expect("write cuta's config");
    fed.start("adolescence");
    fed.start("cuta");
    fed
}

/// The example report, with `marker` in its first statement.
fn report(marker: &str) -> String {
    let mut r = example_json();
    let text = r["body"]["statements"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    r["body"]["statements"][0]["text"] = Value::String(format!("{text} {marker}"));
    r.to_string()
}

/// Submits `n` reports from adolescence to cuta, from `threads` clients at once, through
/// the control socket; returns the record ids.
fn submit_many(fed: &Federation, n: usize, threads: usize, marker: &str) -> Vec<String> {
    let socket = control_socket(fed, "adolescence");
    let report = report(marker);
    let per = n.div_ceil(threads);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let socket = socket.clone();
            let report = report.clone();
            let count = per.min(n.saturating_sub(t * per));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                (0..count)
                    .map(|_| {
                        let request = Request::Submit {
                            to: "cuta".into(),
                            class: MRR.into(),
                            report: report.clone(),
                            purpose: Some("e2e test".into()),
                            justification: Some("e2e test".into()),
                        };
                        match rt.block_on(control::call(&socket, &request)) {
                            Ok(Response::Ok { body }) => {
                                body["id"].as_str().expect("an id").to_owned()
                            }
                            other => panic!("submit refused: {other:?}"),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().expect("submitter thread"))
        .collect()
}

fn control_socket(fed: &Federation, node: &str) -> PathBuf {
    fed.config(node)
        .parent()
        .expect("node dir")
        .join("data/control.sock")
}

/// How many records cuta's inbox holds.
fn inbox_len(fed: &Federation) -> usize {
    fed.control_ok("cuta", Request::InboxList)
        .as_array()
        .map_or(0, Vec::len)
}

fn wait_inbox(fed: &Federation, n: usize) {
    fed.wait_until(&format!("cuta holds {n} records"), || {
        (inbox_len(fed) >= n).then_some(())
    });
}

/// cuta's inbox ids by arrival number (the node must be stopped).
fn arrivals(fed: &Federation) -> BTreeMap<u64, String> {
    let store = fed.store("cuta");
    store
        .inbox_list(usize::MAX)
        .expect("inbox")
        .into_iter()
        .map(|r| (r.arrival_seq, r.id.to_string()))
        .collect()
}

/// Ids of the `disclose` entries journaled for sink `sink`, one per entry.
fn disclosed_to(entries: &[JournalEntry], sink: &str) -> Vec<String> {
    let tag = format!("sink:{sink}");
    entries
        .iter()
        .filter(|e| e.operation == Operation::Disclose && e.justification.as_deref() == Some(&tag))
        .map(|e| e.record_id.expect("a record id").to_string())
        .collect()
}

/// Every `disclose` entry of sink `sink` names the record's purpose and legal basis, the
/// same as the entry of its reception.
fn assert_disclosed_with_basis(entries: &[JournalEntry], sink: &str) {
    let received: BTreeMap<_, _> = entries
        .iter()
        .filter(|e| e.operation == Operation::Receive)
        .map(|e| (e.record_id, (e.purpose.clone(), e.legal_basis.clone())))
        .collect();
    let tag = format!("sink:{sink}");
    let disclosed: Vec<&JournalEntry> = entries
        .iter()
        .filter(|e| e.operation == Operation::Disclose && e.justification.as_deref() == Some(&tag))
        .collect();
    assert!(!disclosed.is_empty(), "no disclose entry for {sink}");
    for e in disclosed {
        let basis = (e.purpose.clone(), e.legal_basis.clone());
        assert!(
            basis.0.is_some() && basis.1.is_some(),
            "{sink}: entry {} has no purpose or legal basis",
            e.seq
        );
        assert_eq!(
            Some(&basis),
            received.get(&e.record_id),
            "{sink}: entry {}",
            e.seq
        );
    }
}

/// Every id at most once, and the set equal to `expected`.
fn assert_exactly(ids: &[String], expected: &BTreeSet<String>, what: &str) {
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "{what}: an id appears twice");
    assert_eq!(&set, expected, "{what}: not the records submitted");
}

/// The records in the spool, by file name (sorted: arrival order).
fn spool_files(dir: &Path) -> Vec<(String, Value)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(&n)).expect("read a spool file");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("spool file {n} is not JSON: {e}"));
            (n, v)
        })
        .collect()
}

/// The top-level fields the JSON Schema in docs/ names (it allows no others).
fn schema_fields() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/feed-record.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the schema"))
            .expect("the schema is JSON");
    assert_eq!(schema["additionalProperties"], false);
    let properties: BTreeSet<String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .map(|k| k.as_str().expect("a key").to_owned())
        .collect();
    assert_eq!(
        properties, required,
        "every documented field is always present"
    );
    required
}

/// Checks one feed record against what the schema promises and the record it carries.
fn check_feed_record(v: &Value, sink: &str) {
    let fields: BTreeSet<String> = v.as_object().expect("an object").keys().cloned().collect();
    assert_eq!(
        fields,
        schema_fields(),
        "feed record fields differ from the schema"
    );
    assert_eq!(v["format"], "pons-feed-record/1");
    assert_eq!(v["sink"], sink);
    assert_eq!(v["from"], "adolescence");
    assert_eq!(v["class"], MRR);
    assert_eq!(v["verification"]["verified"], true, "{v}");
    assert_eq!(v["verification"]["signer"], "adolescence");
    assert_eq!(v["record"]["id"], v["id"]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let cose = b64
        .decode(v["cose_base64"].as_str().expect("cose_base64"))
        .expect("cose_base64 is base64");
    let digest = ring::digest::digest(&ring::digest::SHA256, &cose);
    assert_eq!(v["envelope_sha256"], hex::encode(digest.as_ref()));
    let receipt = b64
        .decode(v["receipt_base64"].as_str().expect("receipt_base64"))
        .expect("receipt_base64 is base64");
    assert!(!receipt.is_empty());
}

#[test]
fn spool_writes_each_record_once_across_a_kill_of_the_node() {
    let mut fed = federation("[[sink]]\nname = \"spool\"\nkind = \"spool\"\ndir = \"spool\"\n");
    let spool = fed.path().join("cuta/spool");

    let mut ids = submit_many(&fed, 30, 3, "");
    fed.wait_until("30 files in the spool", || {
        (spool_files(&spool).len() >= 30).then_some(())
    });
    // More records; cuta is killed while it receives and writes them.
    ids.extend(submit_many(&fed, 40, 4, ""));
    fed.kill("cuta");
    fed.start("cuta");
    wait_inbox(&fed, ids.len());
    fed.wait_until("70 files in the spool", || {
        (spool_files(&spool).len() >= ids.len()).then_some(())
    });
    fed.stop_all();

    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    let files = spool_files(&spool);
    let spooled: Vec<String> = files
        .iter()
        .map(|(_, v)| v["id"].as_str().expect("id").to_owned())
        .collect();
    assert_exactly(&spooled, &expected, "spool files");
    for (name, v) in &files {
        check_feed_record(v, "spool");
        assert_eq!(
            name,
            &format!(
                "{:020}-{}.json",
                v["cursor"].as_u64().expect("cursor"),
                v["id"].as_str().expect("id")
            )
        );
    }
    // File names sort in arrival order.
    let by_arrival: Vec<String> = arrivals(&fed).into_values().collect();
    assert_eq!(spooled, by_arrival, "spool order is not arrival order");
    let leftovers: Vec<_> = std::fs::read_dir(&spool)
        .expect("spool dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let store = fed.store("cuta");
    store.verify_journal().expect("cuta's journal verifies");
    let entries = journal(&store);
    assert_exactly(
        &disclosed_to(&entries, "spool"),
        &expected,
        "disclose entries",
    );
    // With the record's purpose and legal basis (a push sink: from the items handed over).
    assert_disclosed_with_basis(&entries, "spool");
    assert_eq!(
        store.feed_cursor("spool").expect("cursor"),
        ids.len() as u64
    );
}

/// A consumer for the exec sinks: `sh consumer.sh DIR [strict]`. Fails while `DIR/down`
/// exists; in strict mode refuses records holding POISON-PILL unless `DIR/accept-poison`
/// exists. Idempotent by record id: `DIR/consumed` gets `cursor id` once per id.
const CONSUMER: &str = r#"#!/bin/sh
d="$1"
input=$(cat)
echo "$PONS_RECORD_ID" >> "$d/calls"
if [ -e "$d/down" ]; then echo "consumer is down" >&2; exit 1; fi
if [ "$2" = strict ] && [ ! -e "$d/accept-poison" ]; then
  case "$input" in *POISON-PILL*) echo "poison refused" >&2; exit 3 ;; esac
fi
case "$input" in *"\"id\":\"$PONS_RECORD_ID\""*) ;; *) echo "record id not in input" >&2; exit 4 ;; esac
grep -q " $PONS_RECORD_ID\$" "$d/consumed" 2>/dev/null || echo "$PONS_FEED_CURSOR $PONS_RECORD_ID" >> "$d/consumed"
"#;

fn consumed(dir: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(dir.join("consumed"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (c, id) = l.split_once(' ').expect("cursor id");
            (c.parse().expect("cursor"), id.to_owned())
        })
        .collect()
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn exec_recovers_from_a_failing_consumer_survives_a_kill_and_sets_poison_aside() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = tmp.path().join("consumer.sh");
    std::fs::write(&script, CONSUMER).expect("write the consumer");
    let (flaky, strict) = (tmp.path().join("flaky"), tmp.path().join("strict"));
    std::fs::create_dir_all(&flaky).expect("mkdir");
    std::fs::create_dir_all(&strict).expect("mkdir");
    let sinks = format!(
        r#"[[sink]]
name = "flaky"
kind = "exec"
command = ["/bin/sh", "{script}", "{flaky}"]
max_attempts = 100000
retry_initial_ms = 20
retry_max_ms = 200

[[sink]]
name = "strict"
kind = "exec"
command = ["/bin/sh", "{script}", "{strict}", "strict"]
max_attempts = 3
retry_initial_ms = 20
retry_max_ms = 100
"#,
        script = script.display(),
        flaky = flaky.display(),
        strict = strict.display(),
    );
    // The flaky consumer is down from the start.
    std::fs::write(flaky.join("down"), "").expect("down flag");
    let mut fed = federation(&sinks);

    let mut ids = submit_many(&fed, 5, 1, "");
    let poison = submit_many(&fed, 1, 1, "POISON-PILL");
    ids.extend(submit_many(&fed, 5, 1, ""));
    let all: BTreeSet<String> = ids.iter().chain(&poison).cloned().collect();
    wait_inbox(&fed, all.len());

    // The flaky consumer fails, and is tried again and again.
    fed.wait_until("the flaky consumer failed 5 times", || {
        (calls(&flaky).len() >= 5).then_some(())
    });
    assert!(consumed(&flaky).is_empty());
    // The strict consumer set the poison record aside and took the others.
    fed.wait_until("the strict consumer took the 10 good records", || {
        (consumed(&strict).len() >= 10).then_some(())
    });
    let letters = fed.control_ok("cuta", Request::FeedDeadLetters { sink: None });
    let letters = letters.as_array().expect("a list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["id"], poison[0].as_str());
    assert_eq!(letters[0]["sink"], "strict");
    assert_eq!(letters[0]["attempts"], 3);
    assert!(
        letters[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("poison refused")),
        "{letters:?}"
    );
    let config = fed.config("cuta").display().to_string();
    // `pons status` shows the dead letter on the strict sink's row.
    let status = fed.pons_ok(&["status", "--config", &config]);
    let row: Vec<&str> = status
        .lines()
        .find(|l| l.starts_with("strict "))
        .unwrap_or_else(|| panic!("no row for sink strict in:\n{status}"))
        .split_whitespace()
        .collect();
    assert_eq!((row[1], row[4]), ("exec", "1"), "{status}");
    let listed = fed.pons_ok(&["feed", "dead-letters", "--config", &config]);
    assert!(listed.contains(&poison[0]), "{listed}");

    // The flaky consumer comes back: everything reaches it.
    std::fs::remove_file(flaky.join("down")).expect("remove the down flag");
    fed.wait_until("the flaky consumer took all 11 records", || {
        (consumed(&flaky).len() >= all.len()).then_some(())
    });

    // More records, and cuta is killed while both consumers run.
    let more = submit_many(&fed, 20, 2, "");
    fed.kill("cuta");
    fed.start("cuta");
    let mut all = all;
    all.extend(more.iter().cloned());
    wait_inbox(&fed, all.len());
    fed.wait_until("the flaky consumer took all 31 records", || {
        (consumed(&flaky).len() >= all.len()).then_some(())
    });
    fed.wait_until("the strict consumer took the 30 good records", || {
        (consumed(&strict).len() >= all.len() - 1).then_some(())
    });

    // The operator fixes the strict consumer and retries the dead letter by hand.
    std::fs::write(strict.join("accept-poison"), "").expect("flag");
    let out = fed.pons_ok(&["feed", "retry", "--config", &config, &poison[0]]);
    assert!(out.contains("retry requested"), "{out}");
    fed.wait_until(
        "the strict consumer took the poison record on retry",
        || (consumed(&strict).len() >= all.len()).then_some(()),
    );
    fed.wait_until("no dead letters remain", || {
        let letters = fed.control_ok("cuta", Request::FeedDeadLetters { sink: None });
        letters.as_array().is_some_and(Vec::is_empty).then_some(())
    });
    fed.stop_all();

    let order: Vec<u64> = arrivals(&fed).into_keys().collect();
    for (dir, name) in [(&flaky, "flaky"), (&strict, "strict")] {
        let got = consumed(dir);
        let got_ids: Vec<String> = got.iter().map(|(_, id)| id.clone()).collect();
        assert_exactly(&got_ids, &all, name);
        // Arrival order per sink, apart from the dead letter handed over last.
        let cursors: Vec<u64> = got
            .iter()
            .filter(|(_, id)| name != "strict" || id != &poison[0])
            .map(|(c, _)| *c)
            .collect();
        let mut sorted = cursors.clone();
        sorted.sort_unstable();
        assert_eq!(cursors, sorted, "{name}: not in arrival order");
        assert!(cursors.iter().all(|c| order.contains(c)));
    }
    let store = fed.store("cuta");
    store.verify_journal().expect("cuta's journal verifies");
    let entries = journal(&store);
    assert_exactly(
        &disclosed_to(&entries, "flaky"),
        &all,
        "flaky disclose entries",
    );
    assert_exactly(
        &disclosed_to(&entries, "strict"),
        &all,
        "strict disclose entries",
    );
}

/// `pons feed` on cuta's stream sink; returns the records printed.
fn feed_read(fed: &Federation, extra: &[&str]) -> Vec<Value> {
    let config = fed.config("cuta").display().to_string();
    let mut args = vec!["feed", "--config", &config, "--format", "jsonl"];
    args.extend_from_slice(extra);
    fed.pons_ok(&args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn ids_of(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn stream_redelivers_what_was_not_acknowledged_across_a_kill() {
    let mut fed = federation("[[sink]]\nname = \"cli\"\nkind = \"stream\"\n");
    let ids = submit_many(&fed, 10, 2, "");
    wait_inbox(&fed, 10);

    let first = feed_read(&fed, &[]);
    assert_eq!(first.len(), 10);
    for r in &first {
        check_feed_record(r, "cli");
    }
    let cursors: Vec<u64> = first
        .iter()
        .map(|r| r["cursor"].as_u64().expect("cursor"))
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    // Nothing acknowledged: the same records again.
    assert_eq!(ids_of(&feed_read(&fed, &[])), ids_of(&first));
    // --from skips.
    let from = cursors[2].to_string();
    assert_eq!(
        ids_of(&feed_read(&fed, &["--from", &from])),
        ids_of(&first[3..])
    );

    let config = fed.config("cuta").display().to_string();
    let ack = cursors[5].to_string();
    fed.pons_ok(&["feed", "ack", "--config", &config, &ack]);
    // Repeating an acknowledgement is harmless.
    fed.pons_ok(&["feed", "ack", "--config", &config, &ack]);
    let rest = feed_read(&fed, &[]);
    assert_eq!(ids_of(&rest), ids_of(&first[6..]));

    // An acknowledgement beyond the inbox is refused (exit 2).
    let out = fed.pons(&["feed", "ack", "--config", &config, "999"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // --follow prints records as they arrive.
    let last = cursors[9].to_string();
    let mut follow = Command::new(crate::util::PONS)
        .args(["feed", "--config", &config, "--follow", "--from", &last])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pons feed --follow");
    let later = submit_many(&fed, 3, 1, "");
    let lines = read_lines(&mut follow, 3);
    let _ = follow.kill();
    let _ = follow.wait();
    let lines = lines.unwrap_or_else(|| panic!("pons feed --follow printed fewer than 3 lines"));
    let printed: BTreeSet<String> = ids_of(&lines).into_iter().collect();
    let later_set: BTreeSet<String> = later.iter().cloned().collect();
    assert_eq!(printed, later_set);

    // A crash of the node: what was not acknowledged comes again, in arrival order.
    fed.kill("cuta");
    fed.start("cuta");
    let again = feed_read(&fed, &[]);
    assert_eq!(ids_of(&again[..4]), ids_of(&first[6..]));
    let again_later: BTreeSet<String> = ids_of(&again[4..]).into_iter().collect();
    assert_eq!(again_later, later_set);

    // --auto-ack acknowledges what it printed.
    let auto = feed_read(&fed, &["--auto-ack", "--batch", "3"]);
    assert_eq!(ids_of(&auto), ids_of(&again));
    assert!(feed_read(&fed, &[]).is_empty());

    fed.stop_all();

    let mut all: BTreeSet<String> = ids.into_iter().collect();
    all.extend(later);
    let store = fed.store("cuta");
    let entries = journal(&store);
    assert_exactly(&disclosed_to(&entries, "cli"), &all, "cli disclose entries");
    // With the record's purpose and legal basis (read back from the store for a stream).
    assert_disclosed_with_basis(&entries, "cli");
    // Every read was journaled as a consultation by the reader, before it was shown.
    let reads: Vec<&JournalEntry> = entries
        .iter()
        .filter(|e| {
            e.operation == Operation::Consult && e.justification.as_deref() == Some("sink:cli read")
        })
        .collect();
    let read_ids: BTreeSet<String> = reads
        .iter()
        .map(|e| e.record_id.expect("a record id").to_string())
        .collect();
    assert_eq!(read_ids, all);
    // 10 + 10 + 7 (--from) + 4 + 3 (--follow) + 7 (after the kill) + 7 (--auto-ack).
    assert_eq!(reads.len(), 48);
    assert!(reads
        .iter()
        .all(|e| e.actor != "system" && e.role.as_deref() == Some("operator")));
}

/// Reads `n` lines from a child's stdout, waiting at most [`DEADLINE`] for them.
fn read_lines(child: &mut Child, n: usize) -> Option<Vec<Value>> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().take(n) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        let left = DEADLINE.checked_sub(start.elapsed())?;
        let line = rx.recv_timeout(left).ok()?;
        out.push(serde_json::from_str(&line).expect("a JSON line"));
    }
    Some(out)
}

/// Records the nats test sends through the feed.
const NATS_RECORDS: usize = 10_000;

/// A `nats-server` with JetStream on 127.0.0.1 and a temporary store; killed on drop.
struct NatsServer {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server on a free port with a new store.
    fn start(binary: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free TCP port")
            .port();
        let mut server = Self {
            binary: binary.to_owned(),
            child: None,
            port,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        server.run();
        server
    }

    /// Starts the server (again) on its port and store; returns once it listens.
    fn run(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .expect("nats log");
        let child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < DEADLINE,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGKILLs the server.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `nats-server` on PATH, installed from the Debian package `nats-server` when missing.
/// Returns `None` (after saying so loudly) when it cannot be had; under `CI=true` that is
/// a failure instead.
fn nats_server_binary() -> Option<PathBuf> {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("nats-server"))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let mut log = String::new();
    for attempt in [
        &["install", "-y", "nats-server"][..],
        &["update"][..],
        &["install", "-y", "nats-server"][..],
    ] {
        match apt(attempt) {
            Ok(out) => {
                log.push_str(&String::from_utf8_lossy(&out.stderr));
                if attempt[0] == "install" && out.status.success() {
                    break;
                }
            }
            Err(e) => log.push_str(&format!("apt-get {}: {e}\n", attempt.join(" "))),
        }
    }
    if let Some(p) = find() {
        return Some(p);
    }
    let message = format!(
        "NATS TEST NOT RUN: nats-server is not on PATH and `apt-get install -y nats-server` \
         failed:\n{log}"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!!!!\n{message}\n!!!!!!!!!!\n");
    None
}

/// Submits `n` reports to cuta through adolescence's control socket from `threads` clients.
fn submit_to(socket: PathBuf, report: String, n: usize, threads: usize) -> Vec<String> {
    let per = n.div_ceil(threads);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let socket = socket.clone();
            let report = report.clone();
            let count = per.min(n.saturating_sub(t * per));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                (0..count)
                    .map(|_| {
                        let request = Request::Submit {
                            to: "cuta".into(),
                            class: MRR.into(),
                            report: report.clone(),
                            purpose: Some("e2e test".into()),
                            justification: Some("e2e test".into()),
                        };
                        match rt.block_on(control::call(&socket, &request)) {
                            Ok(Response::Ok { body }) => {
                                body["id"].as_str().expect("an id").to_owned()
                            }
                            other => panic!("submit refused: {other:?}"),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().expect("submitter thread"))
        .collect()
}

/// Messages in the JetStream stream `PONS`, in stream order: (Nats-Msg-Id, payload).
async fn stream_messages(port: u16) -> Vec<(String, Value)> {
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("PONS").await.expect("stream PONS");
    let info = stream.info().await.expect("stream info");
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    for seq in first..=last {
        let m = stream.get_raw_message(seq).await.expect("a stream message");
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| panic!("no Nats-Msg-Id header in {:?}", m.headers));
        let payload: Value = serde_json::from_slice(&m.payload).expect("a JSON payload");
        out.push((id, payload));
    }
    out
}

async fn stream_len(port: u16) -> u64 {
    let Ok(client) = async_nats::connect(format!("127.0.0.1:{port}")).await else {
        return 0;
    };
    let js = async_nats::jetstream::new(client);
    let Ok(mut stream) = js.get_stream("PONS").await else {
        return 0;
    };
    stream.info().await.map_or(0, |i| i.state.messages)
}

#[test]
fn nats_receives_ten_thousand_records_exactly_once_across_kills_of_the_node_and_of_jetstream() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let mut nats = NatsServer::start(&binary);
    let sinks = format!(
        "[[sink]]\nname = \"bus\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\n\
         stream = \"PONS\"\nsubject = \"pons.records\"\nretry_initial_ms = 50\nretry_max_ms = 1000\n",
        nats.port
    );
    let mut fed = federation(&sinks);
    let socket = control_socket(&fed, "adolescence");
    let report = report("");
    let submitter = std::thread::spawn(move || submit_to(socket, report, NATS_RECORDS, 8));

    // Kill cuta while records flow into it and out to JetStream.
    fed.wait_until("JetStream holds a fifth of the records", || {
        (fed.block_on(stream_len(nats.port)) >= (NATS_RECORDS / 5) as u64).then_some(())
    });
    fed.kill("cuta");
    fed.start("cuta");
    // The consumer fails: JetStream is killed while records flow; the sink retries until
    // it is back (same port, same store).
    fed.wait_until("JetStream holds two fifths of the records", || {
        (fed.block_on(stream_len(nats.port)) >= (2 * NATS_RECORDS / 5) as u64).then_some(())
    });
    nats.kill();
    fed.wait_until("the bus sink noticed that JetStream is gone", || {
        let status = fed.control_ok("cuta", Request::Status);
        let sink = status["feed"].as_array()?.first()?.clone();
        sink["last_error"].as_str().map(|_| ())
    });
    nats.run();
    let ids = submitter.join().expect("submitters");
    assert_eq!(ids.len(), NATS_RECORDS);
    fed.wait_until("JetStream holds every record", || {
        (fed.block_on(stream_len(nats.port)) >= NATS_RECORDS as u64).then_some(())
    });
    fed.wait_until("the bus sink's cursor reached the last record", || {
        let status = fed.control_ok("cuta", Request::Status);
        let feed = status["feed"].as_array()?.first()?.clone();
        (feed["behind"] == 0 && status["inbox"] == NATS_RECORDS).then_some(())
    });
    let messages = fed.block_on(stream_messages(nats.port));
    fed.stop_all();

    let expected: BTreeSet<String> = ids.into_iter().collect();
    let msg_ids: Vec<String> = messages.iter().map(|(id, _)| id.clone()).collect();
    assert_exactly(&msg_ids, &expected, "JetStream messages");
    for (id, payload) in &messages {
        assert_eq!(payload["id"], id.as_str());
    }
    check_feed_record(&messages[0].1, "bus");
    let cursors: Vec<u64> = messages
        .iter()
        .map(|(_, p)| p["cursor"].as_u64().expect("cursor"))
        .collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "JetStream order is not arrival order"
    );
    let store = fed.store("cuta");
    let entries = journal(&store);
    assert_exactly(
        &disclosed_to(&entries, "bus"),
        &expected,
        "bus disclose entries",
    );
}
