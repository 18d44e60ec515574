//! Crashes: a sender killed with SIGKILL in the middle of a batch loses no acknowledged
//! record and duplicates none.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pons_core::journal::Operation;

use crate::util::{
    counts, example_report, ids, journal, journaled, submit_args, Federation, Init, FUR, MRR, PONS,
};

/// Submitters running `pons submit` at once.
const SUBMITTERS: usize = 4;
/// Ids printed before the sender is killed.
const BEFORE_KILL: usize = 60;

#[test]
fn a_sender_killed_mid_batch_delivers_every_printed_id_exactly_once_after_restart() {
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
    fed.start("adolescence");
    fed.start("cuta");

    // Caseworkers keep submitting while the sender is delivering; each id a `pons submit`
    // printed is one the node acknowledged as durable.
    let printed = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let config = fed.config("adolescence");
    let dir = fed.path().to_owned();
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let printed = printed.clone();
            let stop = stop.clone();
            let config = config.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                let report = example_report();
                while !stop.load(Ordering::SeqCst) {
                    let out = Command::new(PONS)
                        .args(submit_args(&config, "cuta", MRR, &report))
                        .current_dir(&dir)
                        .stdin(Stdio::null())
                        .output()
                        .expect("run pons submit");
                    if out.status.success() {
                        let stdout = String::from_utf8_lossy(&out.stdout);
                        let id = stdout.lines().last().unwrap_or_default().trim().to_owned();
                        uuid::Uuid::parse_str(&id).expect("submit printed a record id");
                        printed.lock().expect("lock").push(id);
                    } else {
                        // The node is gone: submit says so and prints no id.
                        assert_eq!(out.status.code(), Some(1), "{out:?}");
                        let stdout = String::from_utf8_lossy(&out.stdout);
                        assert!(
                            !stdout
                                .lines()
                                .any(|l| uuid::Uuid::parse_str(l.trim()).is_ok()),
                            "a failed submit printed an id: {out:?}"
                        );
                    }
                }
            })
        })
        .collect();

    fed.wait_until("enough records were submitted", || {
        (printed.lock().expect("lock").len() >= BEFORE_KILL).then_some(())
    });
    fed.kill("adolescence");
    // Submissions keep failing against the dead node for a moment, then stop.
    stop.store(true, Ordering::SeqCst);
    for s in submitters {
        s.join().expect("a submitter panicked");
    }
    let printed: Vec<String> = printed.lock().expect("lock").clone();
    let printed_set: BTreeSet<&String> = printed.iter().collect();
    assert_eq!(printed_set.len(), printed.len(), "an id was printed twice");

    fed.start("adolescence");

    // Every printed id is durable in the restarted sender's outbox and gets delivered;
    // records whose id was never printed may exist and are delivered too.
    let outbox = fed.wait_until("every record in the outbox is delivered", || {
        let outbox = fed.outbox_jsonl("adolescence");
        outbox
            .iter()
            .all(|r| r["state"] == "delivered")
            .then_some(outbox)
    });
    let in_outbox = ids(&outbox);
    for id in &printed {
        assert!(
            in_outbox.contains(id),
            "printed id {id} was lost by the crash"
        );
    }

    let received = ids(&fed.inbox_jsonl("cuta"));
    let per_id = counts(&received);
    for id in &printed {
        assert_eq!(per_id.get(id.as_str()), Some(&1), "printed id {id}");
    }
    for (id, n) in &per_id {
        assert_eq!(*n, 1, "id {id} received {n} times");
    }
    assert_eq!(
        received.iter().collect::<BTreeSet<_>>(),
        in_outbox.iter().collect::<BTreeSet<_>>(),
        "the inbox holds exactly the sender's records"
    );

    fed.stop_all();
    let sender = fed.store("adolescence");
    sender
        .verify_journal()
        .expect("the killed sender's journal verifies");
    let entries = journal(&sender);
    let collected = journaled(&entries, Operation::Collect);
    let disclosed = journaled(&entries, Operation::Disclose);
    assert!(counts(&collected).values().all(|&n| n == 1));
    assert!(counts(&disclosed).values().all(|&n| n == 1));
    assert_eq!(
        collected.iter().collect::<BTreeSet<_>>(),
        in_outbox.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        disclosed.iter().collect::<BTreeSet<_>>(),
        in_outbox.iter().collect::<BTreeSet<_>>()
    );

    let receiver = fed.store("cuta");
    receiver
        .verify_journal()
        .expect("the receiver's journal verifies");
    let entries = journal(&receiver);
    let receives = journaled(&entries, Operation::Receive);
    assert!(counts(&receives).values().all(|&n| n == 1));
    assert_eq!(receives.len(), in_outbox.len());
}
