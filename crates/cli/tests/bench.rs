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
    // write_bytes is absent where the kernel does not account it; never a wrong type.
    let disk = &v["disk_write_bytes_per_record"];
    assert!(disk.is_null() || disk.is_number(), "{disk}");
}
