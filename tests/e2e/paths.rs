//! Issue 4, item 1: every code path that touches personal data writes exactly one journal
//! entry (per record where a request covers several), in the same store transaction as
//! the access; requests refused for want of a role or a justification write nothing.
//!
//! [`ROWS`] lists every control request (by its `op`) and every network event with the
//! journal operation it must write. [`every_request_has_a_row`] fails when `Request` gains
//! a variant without a row: the variants are read from serde's own list of tags (the
//! "expected one of" of an unknown `op`), so nothing here has to be kept in step by hand.
//! [`each_path_writes_exactly_one_entry`] performs each row once against running nodes and
//! compares the entries written since the previous request, field by field.
//!
//! The entries written are read with `journal search` (role dpo): a search answers the
//! entries before its own `journal-read` entry and tells its own seq, so the entries
//! between two searches are exactly what happened between them.

use std::collections::BTreeSet;

use pons_node::control::{Request, Response};
use pons_node::journal::JournalQuery;
use serde_json::Value;

use crate::util::{example_json, follow_up_json, journal, Federation, Init, FUR, MRR};

/// What each path must journal: (control request `op`, or network event; operation, or
/// `-` for nothing because it shows no personal data).
const ROWS: &[(&str, &str)] = &[
    ("submit", "collect"),
    ("outbox-list", "-"),
    ("outbox-show", "-"),
    ("inbox-list", "-"),
    ("inbox-show", "consult"),
    ("record-export", "export"),
    ("status", "-"),
    ("feed-read", "consult (per record read)"),
    ("feed-ack", "disclose (per record acknowledged)"),
    ("feed-dead-letters", "-"),
    ("feed-retry", "disclose (when handed over)"),
    ("journal-verify", "journal-read"),
    ("journal-search", "journal-read"),
    ("journal-export", "export"),
    (
        "journal-prune",
        "erase (when entries are removed; - otherwise)",
    ),
    ("dpo-report", "journal-read"),
    ("hold", "hold (placed or lifted)"),
    ("review", "review"),
    (
        "rectify",
        "collect (the rectification) and erase (the original), then the delivery's",
    ),
    ("retention-plan", "-"),
    ("retention-sweep", "erase (per record erased)"),
    ("event: delivery, at the sender", "disclose"),
    ("event: delivery, at the receiver", "receive"),
    ("event: feed hand-over (spool, exec, nats)", "disclose"),
    ("event: refused delivery, at the receiver", "reject"),
    ("event: refused delivery, at the sender", "reject"),
];

/// Every `op` tag `Request` deserializes, from serde's error for an unknown one.
fn request_ops() -> BTreeSet<String> {
    let err = serde_json::from_str::<Request>(r#"{"op":"no-such-op"}"#)
        .expect_err("an unknown op is refused")
        .to_string();
    let (_, list) = err
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("serde's error does not list the ops: {err}"));
    list.split(',')
        .map(|s| s.split('`').nth(1).unwrap_or_default().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn every_request_has_a_row() {
    let ops = request_ops();
    assert!(
        ops.contains("submit") && ops.contains("dpo-report"),
        "{ops:?}"
    );
    let rows: BTreeSet<String> = ROWS
        .iter()
        .map(|(p, _)| p.to_string())
        .filter(|p| !p.starts_with("event: "))
        .collect();
    let missing: Vec<_> = ops.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&ops).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "control requests without a row in tests/e2e/paths.rs: {missing:?}; rows of no request: {stale:?}"
    );
}

/// One expected journal entry.
#[derive(Debug, Clone)]
struct Want {
    op: &'static str,
    actor: String,
    role: Option<&'static str>,
    /// The justification, or its beginning when it ends with `*`.
    justification: String,
    counterpart: Option<&'static str>,
    record: Option<String>,
}

impl Want {
    fn matches(&self, e: &Value) -> bool {
        let just = e["justification"].as_str().unwrap_or_default();
        let just_ok = match self.justification.strip_suffix('*') {
            Some(prefix) => just.starts_with(prefix),
            None => just == self.justification,
        };
        e["operation"] == self.op
            && e["actor"] == self.actor.as_str()
            && e["role"].as_str() == self.role
            && just_ok
            && e["counterpart"].as_str() == self.counterpart
            && e["record_id"].as_str() == self.record.as_deref()
    }
}

fn want(op: &'static str, actor: &str, role: Option<&'static str>, just: &str) -> Want {
    Want {
        op,
        actor: actor.to_owned(),
        role,
        justification: just.to_owned(),
        counterpart: None,
        record: None,
    }
}

impl Want {
    fn with(mut self, counterpart: &'static str) -> Self {
        self.counterpart = Some(counterpart);
        self
    }
    fn of(mut self, record: &str) -> Self {
        self.record = Some(record.to_owned());
        self
    }
}

/// The journal of each node as last seen, and which rows were performed.
struct Paths {
    fed: Federation,
    seen: std::collections::BTreeMap<&'static str, u64>,
    done: BTreeSet<String>,
    user: String,
}

const PROBE: &str = "paths test: what the last request journaled";

impl Paths {
    /// The entries `node` journaled since the last look (the looks themselves excluded).
    fn new_entries(&mut self, node: &'static str) -> Vec<Value> {
        let body = self.fed.control_ok(
            node,
            Request::JournalSearch {
                query: JournalQuery::default(),
                justification: PROBE.into(),
            },
        );
        let seq = body["journal_seq"].as_u64().expect("journal_seq");
        let last = self.seen.insert(node, seq).unwrap_or(0);
        body["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["seq"].as_u64().unwrap_or(0) > last)
            .cloned()
            .collect()
    }

    /// `node` journaled exactly `wants` (in any order) since the last look, for `row`.
    fn expect(&mut self, row: &str, node: &'static str, wants: &[Want]) {
        assert!(
            ROWS.iter().any(|(p, _)| *p == row),
            "{row} is not a row of ROWS"
        );
        let mut entries = self.new_entries(node);
        let mut unmatched = Vec::new();
        for w in wants {
            match entries.iter().position(|e| w.matches(e)) {
                Some(i) => {
                    entries.remove(i);
                }
                None => unmatched.push(w.clone()),
            }
        }
        assert!(
            unmatched.is_empty() && entries.is_empty(),
            "{row} at {node}: expected entries not written: {unmatched:#?}\nentries not expected: {entries:#?}"
        );
        self.done.insert(row.to_owned());
    }

    /// Sends `request` to `node`; it must succeed. Returns the body and notes the row.
    fn ok(&mut self, node: &'static str, request: Request) -> Value {
        self.done.insert(op_of(&request));
        self.fed.control_ok(node, request)
    }
}

fn op_of(request: &Request) -> String {
    serde_json::to_value(request).expect("a request is JSON")["op"]
        .as_str()
        .expect("op")
        .to_owned()
}

fn is_refused(response: &Response) -> bool {
    matches!(response, Response::Err { .. })
}

fn current_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("run id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn search(justification: &str) -> Request {
    Request::JournalSearch {
        query: JournalQuery::default(),
        justification: justification.into(),
    }
}

/// Every request that shows or changes personal data, with `justification`.
fn personal_requests(id: &str, justification: &str) -> Vec<Request> {
    vec![
        Request::InboxShow {
            id: id.into(),
            justification: justification.into(),
        },
        Request::RecordExport {
            id: id.into(),
            format: "json".into(),
            justification: justification.into(),
        },
        Request::JournalVerify {
            justification: justification.into(),
        },
        search(justification),
        Request::JournalExport {
            query: JournalQuery::default(),
            justification: justification.into(),
        },
        Request::JournalPrune {
            before: "2000-01-01".into(),
            justification: justification.into(),
        },
        Request::DpoReport {
            since: None,
            until: None,
            justification: justification.into(),
        },
        Request::Hold {
            id: id.into(),
            reason: justification.into(),
            add: true,
        },
        Request::Review {
            id: id.into(),
            decision: "keep".into(),
            justification: justification.into(),
        },
    ]
}

/// The single entry of `entries`, checked: operation, actor, a role among `roles`,
/// justification (a prefix when it ends with `*`) and record.
fn only_entry(what: &str, entries: &[Value], want: Want, roles: &[&'static str]) -> Value {
    assert_eq!(entries.len(), 1, "{what}: {entries:#?}");
    let e = &entries[0];
    let role = roles
        .iter()
        .copied()
        .find(|r| e["role"] == *r)
        .unwrap_or_else(|| panic!("{what}: role {} is none of {roles:?}", e["role"]));
    let mut want = want;
    want.role = Some(role);
    assert!(want.matches(e), "{what}: {want:?}\n{e:#}");
    e.clone()
}

/// Holds, reviews and the retention sweep on cuta's received record `id` (erased at the
/// end).
fn retention(p: &mut Paths, id: &str) {
    let user = p.user.clone();
    // Holds, reviews and sweeps need the role operator or dpo, and the journal names the
    // role the caller acted in: one of those two, never another role the caller holds.
    let staff = ["dpo", "operator"];
    for add in [true, false] {
        p.ok(
            "cuta",
            Request::Hold {
                id: id.into(),
                reason: "paths: hold".into(),
                add,
            },
        );
        let entries = p.new_entries("cuta");
        only_entry(
            "hold",
            &entries,
            want("hold", &user, None, "paths: hold")
                .with("adolescence")
                .of(id),
            &staff,
        );
    }
    p.ok(
        "cuta",
        Request::Review {
            id: id.into(),
            decision: "keep".into(),
            justification: "paths: review".into(),
        },
    );
    let entries = p.new_entries("cuta");
    only_entry(
        "review",
        &entries,
        want("review", &user, None, "paths: review")
            .with("adolescence")
            .of(id),
        &staff,
    );
    p.ok("cuta", Request::RetentionPlan);
    p.expect("retention-plan", "cuta", &[]);
    // A review deciding `erase` makes the record due today; the sweep erases it: one
    // `review`, then one `erase` (by the caller, or by the node's own scheduler if it
    // swept first).
    p.ok(
        "cuta",
        Request::Review {
            id: id.into(),
            decision: "erase".into(),
            justification: "paths: review".into(),
        },
    );
    p.ok("cuta", Request::RetentionSweep);
    let entries = p.new_entries("cuta");
    assert_eq!(entries.len(), 2, "review erase, then sweep: {entries:#?}");
    only_entry(
        "review (erase)",
        &entries[..1],
        want("review", &user, None, "paths: review")
            .with("adolescence")
            .of(id),
        &staff,
    );
    let erase = &entries[1];
    assert!(
        erase["operation"] == "erase"
            && (erase["actor"] == user.as_str() || erase["actor"] == "system")
            && erase["record_id"] == id,
        "sweep: {erase:#}"
    );
    p.ok("cuta", Request::RetentionSweep);
    p.expect("retention-sweep", "cuta", &[]);
}

#[test]
fn each_path_writes_exactly_one_entry() {
    let mut fed = Federation::new(&["adolescence", "cuta"]);
    fed.init(
        "adolescence",
        &Init::new().peer("cuta").send("cuta", MRR).send("cuta", FUR),
    );
    // cuta receives reports, not follow-up requests: a follow-up is refused (reject).
    fed.init(
        "cuta",
        &Init::new().peer("adolescence").receive("adolescence", MRR),
    );
    // A stream sink, and an exec sink that fails (one attempt: a dead letter) until the
    // flag exists, so that a hand-over can be retried by hand.
    let flag = fed.path().join("exec-may-succeed");
    let config = fed.config("cuta");
    let mut text = std::fs::read_to_string(&config).expect("read cuta's config");
    text.push_str(&format!(
        r#"
[[sink]]
name = "stream"
kind = "stream"

[[sink]]
name = "exec"
kind = "exec"
command = ["/bin/sh", "-c", "test -e '{}' && exec cat > /dev/null"]
max_attempts = 1
retry_initial_ms = 10
retry_max_ms = 10

# A signed checkpoint after every entry: a prune then has an anchor to keep.
[journal]
checkpoint_every = 1
checkpoint_secs = 1
"#,
        flag.display()
    ));
    std::fs::write(&config, text).expect("write cuta's config");

    fed.start("adolescence");
    let mut p = Paths {
        fed,
        seen: Default::default(),
        done: BTreeSet::new(),
        user: current_user(),
    };
    let user = p.user.clone();
    p.new_entries("adolescence");

    // submit, with cuta down: the collection alone.
    let report = example_json();
    let justification = report["justification"]
        .as_str()
        .expect("the example has a justification")
        .to_owned();
    let id = p.ok(
        "adolescence",
        Request::Submit {
            to: "cuta".into(),
            class: MRR.into(),
            report: report.to_string(),
            purpose: None,
            justification: None,
        },
    )["id"]
        .as_str()
        .expect("id")
        .to_owned();
    p.expect(
        "submit",
        "adolescence",
        &[want("collect", &user, Some("caseworker"), &justification)
            .with("cuta")
            .of(&id)],
    );

    // The delivery: disclose at the sender, receive at the receiver (whose journal was
    // empty before: its first look covers everything since it started).
    p.fed.start("cuta");
    p.fed.wait_until("the record is delivered", || {
        let body = p
            .fed
            .control_ok("adolescence", Request::OutboxShow { id: id.clone() });
        (body.to_string().contains("delivered")).then_some(())
    });
    p.done.insert("outbox-show".into());
    p.fed.wait_until("the exec sink set the record aside", || {
        let body = p
            .fed
            .control_ok("cuta", Request::FeedDeadLetters { sink: None });
        (body.as_array().is_some_and(|l| l.len() == 1)).then_some(())
    });
    p.done.insert("feed-dead-letters".into());
    p.expect(
        "event: delivery, at the sender",
        "adolescence",
        &[want("disclose", "system", None, &justification)
            .with("cuta")
            .of(&id)],
    );
    p.expect(
        "event: delivery, at the receiver",
        "cuta",
        &[want("receive", "system", None, &justification)
            .with("adolescence")
            .of(&id)],
    );

    // Metadata only: nothing journaled.
    for (node, request) in [
        ("adolescence", Request::OutboxList),
        ("adolescence", Request::OutboxShow { id: id.clone() }),
        ("adolescence", Request::Status),
        ("cuta", Request::InboxList),
        ("cuta", Request::Status),
        ("cuta", Request::FeedDeadLetters { sink: None }),
    ] {
        let op = op_of(&request);
        p.ok(node, request);
        p.expect(
            ROWS.iter().find(|(r, _)| *r == op).map_or("?", |r| r.0),
            node,
            &[],
        );
    }

    // Consultation and export of the received record.
    p.ok(
        "cuta",
        Request::InboxShow {
            id: id.clone(),
            justification: "paths: consult".into(),
        },
    );
    // The role journaled is one the caller holds that allows the request.
    let role_of = |e: &Value| match e["role"].as_str() {
        Some("dpo") => "dpo",
        _ => "caseworker",
    };
    let consulted = p.new_entries("cuta");
    assert_eq!(consulted.len(), 1, "inbox show: {consulted:#?}");
    let role = role_of(&consulted[0]);
    assert!(
        want("consult", &user, Some(role), "paths: consult")
            .with("adolescence")
            .of(&id)
            .matches(&consulted[0]),
        "{:#}",
        consulted[0]
    );
    p.done.insert("inbox-show".into());

    p.ok(
        "cuta",
        Request::RecordExport {
            id: id.clone(),
            format: "json".into(),
            justification: "paths: export".into(),
        },
    );
    let exported = p.new_entries("cuta");
    assert_eq!(exported.len(), 1, "record export: {exported:#?}");
    let role = role_of(&exported[0]);
    assert!(
        want("export", &user, Some(role), "paths: export")
            .with("adolescence")
            .of(&id)
            .matches(&exported[0]),
        "{:#}",
        exported[0]
    );

    // The stream sink: a read is a consultation per record, an ack a disclosure per record.
    let read = p.ok(
        "cuta",
        Request::FeedRead {
            sink: Some("stream".into()),
            from: None,
            limit: None,
            wait_ms: None,
        },
    );
    assert_eq!(read["records"].as_array().map(Vec::len), Some(1), "{read}");
    p.expect(
        "feed-read",
        "cuta",
        &[want("consult", &user, Some("operator"), "sink:stream read").of(&id)],
    );
    let next = read["next"].as_u64().expect("next");
    p.ok(
        "cuta",
        Request::FeedAck {
            sink: Some("stream".into()),
            cursor: next,
        },
    );
    p.expect(
        "feed-ack",
        "cuta",
        &[want("disclose", &user, Some("operator"), "sink:stream").of(&id)],
    );

    // The exec sink's dead letter, retried once the command succeeds: the hand-over.
    std::fs::write(&flag, b"").expect("write the flag");
    p.ok(
        "cuta",
        Request::FeedRetry {
            sink: Some("exec".into()),
            id: id.clone(),
        },
    );
    p.fed.wait_until("the retried record is handed over", || {
        let body = p
            .fed
            .control_ok("cuta", Request::FeedDeadLetters { sink: None });
        (body.as_array().is_some_and(Vec::is_empty)).then_some(())
    });
    p.expect(
        "event: feed hand-over (spool, exec, nats)",
        "cuta",
        &[want("disclose", "system", None, "sink:exec").of(&id)],
    );
    p.done.insert("feed-retry".into());

    // The DPO's reads of the journal.
    for (request, op) in [
        (
            Request::JournalVerify {
                justification: "paths: dpo".into(),
            },
            "journal-read",
        ),
        (search("paths: dpo"), "journal-read"),
        (
            Request::JournalExport {
                query: JournalQuery::default(),
                justification: "paths: dpo".into(),
            },
            "export",
        ),
        (
            Request::DpoReport {
                since: None,
                until: None,
                justification: "paths: dpo".into(),
            },
            "journal-read",
        ),
    ] {
        let row = op_of(&request);
        p.ok("cuta", request);
        p.expect(&row, "cuta", &[want(op, &user, Some("dpo"), "paths: dpo")]);
    }
    // Nothing before 2000 to remove: no entry (a prune that removes writes `erase`; see
    // the journal tests).
    p.ok(
        "cuta",
        Request::JournalPrune {
            before: "2000-01-01".into(),
            justification: "paths: prune".into(),
        },
    );
    p.expect("journal-prune", "cuta", &[]);

    // A refused delivery: the collection and the rejection at the sender, the rejection at
    // the receiver.
    let follow_up = p.ok(
        "adolescence",
        Request::Submit {
            to: "cuta".into(),
            class: FUR.into(),
            report: follow_up_json(&id).to_string(),
            purpose: None,
            justification: None,
        },
    )["id"]
        .as_str()
        .expect("id")
        .to_owned();
    p.fed.wait_until("the follow-up is rejected", || {
        let body = p.fed.control_ok(
            "adolescence",
            Request::OutboxShow {
                id: follow_up.clone(),
            },
        );
        (body.to_string().contains("rejected")).then_some(())
    });
    let fu_just = follow_up_json(&id)["justification"]
        .as_str()
        .expect("justification")
        .to_owned();
    p.expect(
        "event: refused delivery, at the sender",
        "adolescence",
        &[
            want("collect", &user, Some("caseworker"), &fu_just)
                .with("cuta")
                .of(&follow_up),
            want("reject", "system", None, "*")
                .with("cuta")
                .of(&follow_up),
        ],
    );
    p.expect(
        "event: refused delivery, at the receiver",
        "cuta",
        &[want("reject", "system", None, "*")
            .with("adolescence")
            .of(&follow_up)],
    );

    // Without a justification: refused, nothing written.
    for request in personal_requests(&id, " ") {
        let what = format!("{request:?}");
        assert!(
            is_refused(&p.fed.control("cuta", request)),
            "{what} was not refused"
        );
        let written = p.new_entries("cuta");
        assert!(written.is_empty(), "refused {what} journaled {written:#?}");
    }

    retention(&mut p, &id);
    rectify(&mut p, &id);
    prune(&mut p);

    let rows: BTreeSet<String> = ROWS.iter().map(|(r, _)| r.to_string()).collect();
    let missing: Vec<_> = rows.difference(&p.done).collect();
    assert!(missing.is_empty(), "rows not performed: {missing:?}");
}

/// `pons rectify` of the record cuta has erased already: at the sender, the correction's
/// `collect` and the original's `erase` (one transaction); once delivered, its `disclose`
/// says what cuta reported, and cuta journals the `receive` (nothing left to erase there)
/// and its feed's hand-over.
fn rectify(p: &mut Paths, id: &str) {
    let user = p.user.clone();
    p.fed.stop("cuta");
    let rect = p.ok(
        "adolescence",
        Request::Rectify {
            id: id.into(),
            report: example_json().to_string(),
            reason: "paths: rectify".into(),
        },
    )["id"]
        .as_str()
        .expect("id")
        .to_owned();
    p.expect(
        "rectify",
        "adolescence",
        &[
            want(
                "collect",
                &user,
                Some("caseworker"),
                &format!("rectification of {id}: paths: rectify"),
            )
            .with("cuta")
            .of(&rect),
            want(
                "erase",
                &user,
                Some("caseworker"),
                "superseded by rectification*",
            )
            .with("cuta")
            .of(id),
        ],
    );
    p.fed.start("cuta");
    p.fed.wait_until("the rectification is delivered", || {
        let body = p
            .fed
            .control_ok("adolescence", Request::OutboxShow { id: rect.clone() });
        (body["state"] == "delivered").then_some(())
    });
    let sent = p.new_entries("adolescence");
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(
        want("disclose", "system", None, "*")
            .with("cuta")
            .of(&rect)
            .matches(&sent[0])
            && sent[0]["justification"]
                .as_str()
                .is_some_and(|j| j.ends_with("cuta reported: had erased its copy already")),
        "{:#}",
        sent[0]
    );
    let got = p.new_entries("cuta");
    // The exec sink hands the rectification over as any record (its own `disclose`).
    let received: Vec<_> = got
        .iter()
        .filter(|e| {
            !(e["operation"] == "disclose"
                && e["justification"]
                    .as_str()
                    .is_some_and(|j| j.starts_with("sink:")))
        })
        .collect();
    assert!(
        received.len() == 1
            && received[0]["operation"] == "receive"
            && received[0]["record_id"] == rect.as_str(),
        "{got:#?}"
    );
}

/// A prune that removes entries (everything before tomorrow, back to the latest signed
/// checkpoint): one `erase` entry naming the caller, what was removed and the anchor.
fn prune(p: &mut Paths) {
    let user = p.user.clone();
    p.fed
        .wait_until("cuta signed a checkpoint of its journal", || {
            let body = p.fed.control_ok(
                "cuta",
                Request::JournalVerify {
                    justification: "paths: checkpoints".into(),
                },
            );
            (body["checkpoints"].as_u64().unwrap_or(0) > 0).then_some(())
        });
    p.new_entries("cuta");
    let tomorrow = time::OffsetDateTime::now_utc().date() + time::Duration::days(1);
    let body = p.ok(
        "cuta",
        Request::JournalPrune {
            before: tomorrow.to_string(),
            justification: "paths: prune".into(),
        },
    );
    assert!(body["removed"].as_u64().unwrap_or(0) > 0, "{body}");
    let entries = p.new_entries("cuta");
    assert_eq!(entries.len(), 1, "prune: {entries:#?}");
    let e = &entries[0];
    assert!(
        e["operation"] == "erase"
            && e["actor"] == user.as_str()
            && e["justification"]
                .as_str()
                .is_some_and(|j| j.starts_with("paths: prune: "))
            && e["record_id"].is_null(),
        "prune: {e:#}"
    );
}

#[test]
fn requests_without_a_role_write_nothing() {
    let mut fed = Federation::new(&["cuta"]);
    // Every role belongs to somebody else.
    fed.init("cuta", &Init::new().users("pons-nobody-here"));
    fed.start("cuta");
    fed.stop("cuta");
    let before = journal(&fed.store("cuta")).len();
    fed.start("cuta");
    let id = uuid::Uuid::now_v7().to_string();
    let mut requests = personal_requests(&id, "paths: no role");
    requests.push(Request::Submit {
        to: "adolescence".into(),
        class: MRR.into(),
        report: example_json().to_string(),
        purpose: None,
        justification: None,
    });
    requests.push(Request::OutboxList);
    requests.push(Request::InboxList);
    requests.push(Request::RetentionPlan);
    requests.push(Request::RetentionSweep);
    for request in requests {
        let what = format!("{request:?}");
        assert!(
            is_refused(&fed.control("cuta", request)),
            "{what} was not refused"
        );
    }
    fed.stop("cuta");
    let after = journal(&fed.store("cuta"));
    assert_eq!(
        after.len(),
        before,
        "refused requests journaled: {:#?}",
        &after[before..]
    );
}
