//! `pons bench --json` runs end to end and prints the figures it promises.
//!
//! No figure is compared with a threshold: benchmarks are benchmarks, not timed assertions.
//! What is checked is that every figure is there, is a number, and is consistent with the
//! run (the record count, the latency order, positive rates).

use std::process::Command;

use serde_json::Value;

fn number(v: &Value, path: &str) -> f64 {
    let mut at = v;
    for key in path.split('.') {
        at = &at[key];
    }
    at.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {at}"))
}

#[test]
fn bench_json_has_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_pons"))
        .args([
            "bench",
            "--records",
            "20",
            "--concurrency",
            "4",
            "--journal-entries",
            "3000",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pons bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["records"], 20);
    assert_eq!(v["concurrency"], 4);
    for key in [
        "elapsed_s",
        "records_per_s",
        "cpu_s_per_record",
        "data_dir_bytes_per_record",
        "peak_rss_bytes",
        "report_bytes",
        "limits.ed25519_sign_per_s",
        "limits.ed25519_verify_per_s",
        "limits.p256_sign_per_s",
        "limits.p256_verify_per_s",
        "limits.fdatasync_per_s",
        "limits.appends_per_s_group_64",
        "limits.synced_write_bytes_per_s",
        "bounds.crypto_records_per_s",
        "bounds.group_64_records_per_s",
        "bounds.ratio",
        "feed.spool_records_per_s",
        "feed.exec_records_per_s",
        "feed.stream_records_per_s",
        "journal.append_per_s",
        "journal.append_batch_1000_per_s",
        "journal.verify_store_per_s",
        "journal.verify_chain_memory_per_s",
    ] {
        assert!(number(&v, key) > 0.0, "{key} is not positive: {v:#}");
    }
    // The nats sink is measured when a nats-server is on PATH, and reported as null
    // otherwise: never absent, never zero.
    let nats = &v["feed"]["nats_records_per_s"];
    assert!(
        nats.is_null() || nats.as_f64().is_some_and(|r| r > 0.0),
        "feed.nats_records_per_s: {nats}"
    );
    assert!(
        v["feed"]
            .as_object()
            .is_some_and(|f| f.contains_key("nats_records_per_s")),
        "feed.nats_records_per_s is missing: {v:#}"
    );
    let lat = &v["latency_ms"];
    let (p50, p90, p99, max) = (
        number(lat, "p50"),
        number(lat, "p90"),
        number(lat, "p99"),
        number(lat, "max"),
    );
    assert!(
        0.0 <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "{lat}"
    );
    // Every entry appended (single calls, then whole batches of 1000) was verified.
    assert!(
        number(&v, "journal.verified_entries") >= 3000.0,
        "{}",
        v["journal"]
    );
    assert!(["crypto", "group-64"].contains(&v["bounds"]["binding"].as_str().unwrap()));
    // The bytes written come from the device where there is one, else from the process's
    // write_bytes, absent where the kernel accounts neither; never a wrong type.
    let disk = &v["disk_write_bytes_per_record"];
    let source = v["disk_write_source"].as_str().unwrap();
    match source {
        "device" | "process" => assert!(disk.is_number(), "{disk}"),
        "none" => assert!(disk.is_null(), "{disk}"),
        other => panic!("disk_write_source {other:?}"),
    }
    if source == "process" {
        assert_eq!(disk, &v["process_write_bytes_per_record"]);
    }
    // The disk bound exists exactly when the bytes written are known, and what binds this
    // code is the lower of its CPU and disk bounds.
    let bounds = &v["bounds"];
    let cpu = number(bounds, "cpu_records_per_s");
    let code = bounds["code_binding"].as_str().unwrap();
    match bounds["disk_records_per_s"].as_f64() {
        Some(d) => {
            assert!(disk.as_f64().is_some_and(|b| b > 0.0), "{bounds}");
            assert_eq!(
                code,
                if d < cpu { "disk-writes" } else { "cpu" },
                "{bounds}"
            );
        }
        None => assert_eq!(code, "cpu", "{bounds}"),
    }
    assert!(number(bounds, "code_ratio") > 0.0, "{bounds}");
}

fn bench_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pons"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pons bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn fan_in_json_counts_every_sender_and_its_memory() {
    let v = bench_json(&[
        "--scenario",
        "fan-in",
        "--senders",
        "3",
        "--records",
        "7",
        "--concurrency",
        "3",
    ]);
    assert_eq!(v["senders"], 3);
    // Every measured record was delivered and timed (the warm-up ones are not counted).
    assert_eq!(v["records"], 7);
    for key in [
        "elapsed_s",
        "records_per_s",
        "cpu_s_per_record",
        "rss_receiver_bytes",
        "rss_idle_bytes",
        "rss_connected_bytes",
        "peak_rss_bytes",
        "sender_data_dir_bytes",
        "receiver_data_dir_bytes",
    ] {
        assert!(number(&v, key) > 0.0, "{key} is not positive: {v:#}");
    }
    assert!(number(&v, "rss_per_sender_bytes") >= 0.0, "{v:#}");
    // Delivery errors are counted (retried until delivered); one is shown when there are any.
    let errors = number(&v, "senders_with_errors");
    assert!((0.0..=3.0).contains(&errors), "{v:#}");
    assert_eq!(v["sample_error"].is_string(), errors > 0.0, "{v:#}");
    assert!(number(&v, "peak_rss_bytes") >= number(&v, "rss_connected_bytes"));
    let lat = &v["latency_ms"];
    assert!(number(lat, "p50") <= number(lat, "max"), "{lat}");
}

#[test]
fn sweep_json_erases_exactly_the_due_records_at_each_size() {
    for scattered in [false, true] {
        let mut args = vec![
            "--scenario",
            "sweep",
            "--sweep-records",
            "1200,300",
            "--sweep-expiring",
            "40",
        ];
        if scattered {
            args.push("--sweep-scattered");
        }
        let v = bench_json(&args);
        assert_eq!(v["scattered"], scattered);
        check_sweep(&v);
    }
}

fn check_sweep(v: &Value) {
    let cases = v["cases"].as_array().expect("cases");
    // Smallest first, whatever the order asked.
    let stored: Vec<_> = cases
        .iter()
        .map(|c| c["stored"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, [300, 1200]);
    for c in cases {
        assert_eq!(c["expiring"], 40, "{c}");
        assert_eq!(c["erased"], 40, "{c}");
        for key in [
            "sweep_s",
            "index_read_s",
            "load_s",
            "store_bytes",
            "erased_per_s",
        ] {
            assert!(number(c, key) > 0.0, "{key} is not positive: {c}");
        }
    }
    assert!(number(v, "sweep_time_ratio") > 0.0, "{v:#}");
    assert!(number(v, "index_read_ratio") > 0.0, "{v:#}");
}

#[test]
fn sweep_refuses_more_expiring_than_stored() {
    let out = Command::new(env!("CARGO_BIN_EXE_pons"))
        .args([
            "bench",
            "--scenario",
            "sweep",
            "--sweep-records",
            "10",
            "--sweep-expiring",
            "20",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--sweep-records 10: must be at least --sweep-expiring (20)"),
        "{err}"
    );
}

/// `--rate`: each record is due 1/rate after the one before, and none is submitted before it
/// is due (the clients pace themselves, they do not run ahead of the schedule).
#[test]
fn open_loop_submits_each_record_at_its_due_time_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    let v = bench_json(&[
        "--no-feed",
        "--rate",
        "200",
        "--records",
        "40",
        "--concurrency",
        "4",
        "--journal-entries",
        "1000",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(v["records"], 40);
    assert_eq!(v["offered_rate"], 200.0);
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut rows: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("id,"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 40, "{text}");
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in rows.windows(2) {
        // 5 ms apart, written with three decimals.
        let gap = pair[1].0 - pair[0].0;
        assert!((gap - 5.0).abs() < 0.002, "due times {pair:?}");
    }
    for (due, started) in &rows {
        assert!(
            started >= &(due - 0.001),
            "started {started} ms, due {due} ms"
        );
    }
}
