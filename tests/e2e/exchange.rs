//! The exchange working: records delivered once, receipted and journaled on both sides;
//! records waiting for a receiver that is down; a class the receiver refuses.

use std::collections::BTreeSet;

use pons_core::journal::{Operation, Outcome};
use pons_node::control::Request;

use crate::util::{
    counts, example_report, follow_up_json, ids, journal, journaled, state_of, submit_args,
    Federation, Init, FUR, MRR,
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

/// Records submitted through `pons submit` (the rest go through the control socket
/// directly, as `pons submit` does, to keep the test quick).
const THROUGH_CLI: usize = 25;
const RECORDS: usize = 1_000;

#[test]
fn a_thousand_records_are_delivered_once_receipted_and_journaled_on_both_sides() {
    let mut fed = pair();
    fed.start("adolescence");
    fed.start("cuta");

    let report = std::fs::read_to_string(example_report()).expect("example report");
    let mut sent = Vec::with_capacity(RECORDS);
    for _ in 0..THROUGH_CLI {
        sent.push(fed.submit("adolescence", "cuta", MRR, &example_report()));
    }
    while sent.len() < RECORDS {
        sent.push(fed.submit_direct("adolescence", "cuta", MRR, &report));
    }
    let sent_set: BTreeSet<&String> = sent.iter().collect();
    assert_eq!(
        sent_set.len(),
        RECORDS,
        "submit handed out a record id twice"
    );

    let outbox = fed.wait_until("every record is delivered", || {
        let outbox = fed.outbox_jsonl("adolescence");
        let delivered = outbox.iter().filter(|r| r["state"] == "delivered").count();
        (delivered == RECORDS).then_some(outbox)
    });
    assert_eq!(
        outbox.len(),
        RECORDS,
        "the outbox holds exactly the records submitted"
    );
    assert_eq!(ids(&outbox).iter().collect::<BTreeSet<_>>(), sent_set);

    // A receipt is shown verified, signed by the recipient.
    let config = fed.config("adolescence").display().to_string();
    let shown = fed.pons_ok(&["outbox", "show", &sent[0], "--config", &config]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("outbox show is JSON");
    assert_eq!(shown["state"], "delivered", "{shown}");
    assert_eq!(shown["receipt"]["verified"], true, "{shown}");
    assert!(
        shown["receipt"]["signed_by"]
            .as_str()
            .is_some_and(|s| s.contains("cuta")),
        "{shown}"
    );

    let inbox = fed.inbox_jsonl("cuta");
    let received = ids(&inbox);
    let per_id = counts(&received);
    assert_eq!(
        received.len(),
        RECORDS,
        "inbox has {} records",
        received.len()
    );
    assert!(per_id.values().all(|&n| n == 1), "an id was received twice");
    assert_eq!(received.iter().collect::<BTreeSet<_>>(), sent_set);
    assert!(inbox
        .iter()
        .all(|r| r["from"] == "adolescence" && r["class"] == MRR));
    // Arrival order is a sequence without gaps or repeats.
    let mut arrivals: Vec<u64> = inbox
        .iter()
        .map(|r| r["arrival_seq"].as_u64().expect("arrival_seq"))
        .collect();
    arrivals.sort_unstable();
    assert_eq!(arrivals, (1..=RECORDS as u64).collect::<Vec<_>>());

    fed.stop_all();

    let sender = fed.store("adolescence");
    sender
        .verify_journal()
        .expect("the sender's journal verifies");
    let entries = journal(&sender);
    for op in [Operation::Collect, Operation::Disclose] {
        let listed = journaled(&entries, op);
        assert_eq!(listed.len(), RECORDS, "{op:?} entries on the sender");
        assert_eq!(
            listed.iter().collect::<BTreeSet<_>>(),
            sent_set,
            "one {op:?} entry per record on the sender"
        );
    }
    assert!(entries
        .iter()
        .filter(|e| e.operation == Operation::Disclose)
        .all(|e| e.counterpart.as_ref().map(|c| c.as_str()) == Some("cuta")));

    let receiver = fed.store("cuta");
    receiver
        .verify_journal()
        .expect("the receiver's journal verifies");
    let entries = journal(&receiver);
    let listed = journaled(&entries, Operation::Receive);
    assert_eq!(listed.len(), RECORDS, "receive entries on the receiver");
    assert_eq!(listed.iter().collect::<BTreeSet<_>>(), sent_set);
    assert!(
        journaled(&entries, Operation::Reject).is_empty(),
        "nothing was refused"
    );
}

#[test]
fn records_wait_while_the_receiver_is_down_and_are_delivered_once_it_starts() {
    let mut fed = pair();
    fed.start("adolescence");
    let began = std::time::Instant::now();
    let sent: Vec<String> = (0..5)
        .map(|_| fed.submit("adolescence", "cuta", MRR, &example_report()))
        .collect();

    // The sender tried and failed to reach cuta: the records are still waiting.
    fed.wait_until("the sender failed to connect to cuta", || {
        fed.log("adolescence")
            .lines()
            .any(|l| l.contains("connecting failed") && l.contains("cuta"))
            .then_some(())
    });
    let outbox = fed.outbox_jsonl("adolescence");
    assert_eq!(outbox.len(), sent.len());
    // Status counts the queue and ages its oldest record (the first submitted).
    let status = fed.control_ok("adolescence", Request::Status);
    let peer = &status["peers"][0];
    assert_eq!(peer["queue"], sent.len(), "{status}");
    let oldest = peer["oldest_pending_secs"].as_i64().expect("an age");
    assert!(
        (0..=began.elapsed().as_secs() as i64 + 1).contains(&oldest),
        "oldest pending {oldest} s: {status}"
    );
    for id in &sent {
        let state = state_of(&outbox, id);
        assert!(
            matches!(state, Some("pending" | "in-flight")),
            "record {id} is {state:?} while its receiver is down"
        );
    }

    // The waiting records survive a clean restart of the sender and are resumed.
    fed.stop("adolescence");
    let ready = fed.start("adolescence");
    assert_eq!(ready.resumed, sent.len(), "{}", ready.line);
    // Not asserted: `recovered` is false after a clean stop. It is sled's `was_recovered`,
    // true whenever an existing database is opened (reported as a product bug).

    fed.start("cuta");
    fed.wait_until("the waiting records are delivered", || {
        let outbox = fed.outbox_jsonl("adolescence");
        sent.iter()
            .all(|id| state_of(&outbox, id) == Some("delivered"))
            .then_some(())
    });
    let received = ids(&fed.inbox_jsonl("cuta"));
    assert_eq!(
        received.iter().collect::<BTreeSet<_>>(),
        sent.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(received.len(), sent.len(), "a record was received twice");
}

#[test]
fn a_class_the_receiver_does_not_allow_is_rejected_once_and_not_retried() {
    let mut fed = Federation::new(&["adolescence", "cuta"]);
    // adolescence may send reports and follow-up requests to cuta; cuta takes reports only.
    fed.init(
        "adolescence",
        &Init::new().peer("cuta").send("cuta", MRR).send("cuta", FUR),
    );
    fed.init(
        "cuta",
        &Init::new().peer("adolescence").receive("adolescence", MRR),
    );
    fed.start("adolescence");
    fed.start("cuta");

    let report = fed.submit("adolescence", "cuta", MRR, &example_report());
    fed.wait_until("the report is delivered", || {
        (state_of(&fed.outbox_jsonl("adolescence"), &report) == Some("delivered")).then_some(())
    });
    let id = fed.submit(
        "adolescence",
        "cuta",
        FUR,
        &fed.write_json("fur.json", &follow_up_json(&report)),
    );
    let record = fed.wait_until("the follow-up request is rejected", || {
        let outbox = fed.outbox_jsonl("adolescence");
        outbox
            .into_iter()
            .find(|r| r["id"] == id.as_str() && r["state"] == "rejected")
    });
    assert_eq!(record["detail"]["code"], "policy-denied", "{record}");
    assert_eq!(record["attempts"], 1, "{record}");
    assert_eq!(
        ids(&fed.inbox_jsonl("cuta")),
        vec![report.clone()],
        "cuta stored a refused record"
    );

    let status = fed.control_ok("adolescence", Request::Status);
    let peer = &status["peers"][0];
    assert_eq!(peer["delivered"], 1, "{status}");
    assert_eq!(peer["rejected"], 1, "{status}");
    assert_eq!(
        peer["queue"], 0,
        "a rejected record is not retried: {status}"
    );

    fed.stop_all();
    let sender = fed.store("adolescence");
    sender
        .verify_journal()
        .expect("the sender's journal verifies");
    let entries = journal(&sender);
    assert_eq!(journaled(&entries, Operation::Reject), vec![id.clone()]);
    assert_eq!(
        journaled(&entries, Operation::Disclose),
        vec![report.clone()]
    );

    let receiver = fed.store("cuta");
    receiver
        .verify_journal()
        .expect("the receiver's journal verifies");
    let entries = journal(&receiver);
    let rejects: Vec<_> = entries
        .iter()
        .filter(|e| e.operation == Operation::Reject)
        .collect();
    assert_eq!(
        rejects.len(),
        1,
        "cuta journaled {} refusals",
        rejects.len()
    );
    let reject = rejects[0];
    assert_eq!(reject.record_id.map(|u| u.to_string()), Some(id));
    assert_eq!(reject.class.as_deref(), Some(FUR));
    assert_eq!(reject.outcome, Outcome::Refused);
    assert_eq!(
        reject.counterpart.as_ref().map(|c| c.as_str()),
        Some("adolescence")
    );
    assert!(
        reject
            .justification
            .as_deref()
            .is_some_and(|j| j.contains("policy-denied")),
        "{reject:?}"
    );
    assert_eq!(journaled(&entries, Operation::Receive), vec![report]);
    assert_eq!(receiver.inbox_list(usize::MAX).expect("inbox").len(), 1);
}

#[test]
fn a_follow_up_request_goes_back_about_the_subject_of_the_record_it_refers_to() {
    let mut fed = pair();
    fed.start("adolescence");
    fed.start("cuta");
    let report = fed.submit("adolescence", "cuta", MRR, &example_report());
    fed.wait_until("the report is received", || {
        ids(&fed.inbox_jsonl("cuta"))
            .contains(&report)
            .then_some(())
    });

    // cuta asks adolescence about the report it received.
    let question = fed.write_json("fur.json", &follow_up_json(&report));
    let id = fed.submit("cuta", "adolescence", FUR, &question);
    let received = fed.wait_until("adolescence received the follow-up request", || {
        fed.inbox_jsonl("adolescence")
            .into_iter()
            .find(|r| r["id"] == id.as_str())
    });
    assert_eq!(received["from"], "cuta", "{received}");
    assert_eq!(received["class"], FUR, "{received}");
    // Journals stay searchable by subject: the question carries the report's subject.
    let sent = fed
        .outbox_jsonl("adolescence")
        .into_iter()
        .find(|r| r["id"] == report.as_str())
        .expect("the report in the outbox");
    assert!(sent["subject_ref"].is_string(), "{sent}");
    assert_eq!(received["subject_ref"], sent["subject_ref"]);

    // A follow-up about a record never exchanged with the recipient is refused.
    let stranger = fed.write_json(
        "stranger.json",
        &follow_up_json("01a20ae9-4548-71c8-9b27-2676ed189e58"),
    );
    let config = fed.config("cuta");
    let out = fed.pons(&submit_args(&config, "adolescence", FUR, &stranger));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was not exchanged"),
        "{out:?}"
    );
}

#[test]
fn a_received_record_is_shown_and_exported_with_a_journaled_justification() {
    let mut fed = pair();
    fed.start("adolescence");
    fed.start("cuta");
    let id = fed.submit("adolescence", "cuta", MRR, &example_report());
    fed.wait_until("the record is received", || {
        ids(&fed.inbox_jsonl("cuta")).contains(&id).then_some(())
    });

    let config = fed.config("cuta").display().to_string();
    let shown = fed.pons_ok(&[
        "inbox",
        "show",
        &id,
        "--config",
        &config,
        "--justification",
        "assessment meeting",
    ]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("inbox show is JSON");
    assert_eq!(shown["record"]["id"], id.as_str(), "{shown}");
    assert_eq!(shown["record"]["from"], "adolescence", "{shown}");

    // The exported envelope verifies offline against the federation CA alone.
    let out = fed.path().join("exported.cose");
    let out = out.display().to_string();
    fed.pons_ok(&[
        "record",
        "export",
        &id,
        "--config",
        &config,
        "--format",
        "cose",
        "--justification",
        "handed to the analyst",
        "--out",
        &out,
    ]);
    let ca = fed.certs().join("ca.pem").display().to_string();
    let opened = fed.pons_ok(&["record", "open", "--file", &out, "--ca", &ca]);
    assert!(opened.contains(&id), "{opened}");

    // No justification: refused, exit 2.
    let refused = fed.pons(&[
        "inbox",
        "show",
        &id,
        "--config",
        &config,
        "--justification",
        " ",
    ]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");

    fed.stop_all();
    let receiver = fed.store("cuta");
    receiver.verify_journal().expect("journal verifies");
    let entries = journal(&receiver);
    let consult: Vec<_> = entries
        .iter()
        .filter(|e| e.operation == Operation::Consult)
        .collect();
    assert_eq!(consult.len(), 1, "one consultation journaled");
    assert_eq!(
        consult[0].justification.as_deref(),
        Some("assessment meeting")
    );
    let export: Vec<_> = entries
        .iter()
        .filter(|e| e.operation == Operation::Export)
        .collect();
    assert_eq!(export.len(), 1, "one export journaled");
    assert_eq!(
        export[0].justification.as_deref(),
        Some("handed to the analyst")
    );
    assert_eq!(export[0].record_id.map(|u| u.to_string()), Some(id));
}
