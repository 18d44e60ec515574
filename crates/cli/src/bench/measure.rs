//! What the process used: CPU time and peak memory (`getrusage`), bytes written to storage
//! (`/proc/self/io`), bytes on disk (a directory walk), and latency percentiles.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nix::sys::resource::{getrusage, UsageWho};
use serde::Serialize;

/// A snapshot of the process's resource use.
#[derive(Debug, Clone)]
pub struct Usage {
    /// User plus system CPU time of every thread of the process.
    pub cpu: Duration,
    /// Peak resident set size so far, bytes.
    pub peak_rss: u64,
    /// Bytes this process caused to be sent to the storage layer (`write_bytes`), if the
    /// kernel accounts them (it does not inside some containers).
    pub write_bytes: Option<u64>,
    /// The CPU time of each node process of [`Usage::with_nodes`], by node (included in
    /// `cpu`); empty for [`Usage::now`].
    pub node_cpu: BTreeMap<String, Duration>,
}

impl Usage {
    /// This process's usage now plus that of the node processes `nodes` (name and pid;
    /// `pons bench` without `--in-process`): CPU time and bytes written summed; the peak
    /// RSS is this process's alone (each node's is [`node_peak_rss`]).
    pub fn with_nodes(nodes: &[(String, u32)]) -> anyhow::Result<Self> {
        let mut usage = Usage::now()?;
        for &(ref name, pid) in nodes {
            let cpu = node_cpu(pid)?;
            usage.cpu += cpu;
            usage.node_cpu.insert(name.clone(), cpu);
            usage.write_bytes = match (
                usage.write_bytes,
                proc_io_of(&pid.to_string(), "write_bytes"),
            ) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        Ok(usage)
    }

    /// The process's usage now.
    pub fn now() -> anyhow::Result<Self> {
        let r = getrusage(UsageWho::RUSAGE_SELF)?;
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec().max(0) as u64)
                + Duration::from_micros(t.tv_usec().max(0) as u64)
        };
        Ok(Self {
            cpu: tv(r.user_time()) + tv(r.system_time()),
            // Linux reports ru_maxrss in KiB.
            peak_rss: (r.max_rss().max(0) as u64) * 1024,
            write_bytes: proc_io("write_bytes"),
            node_cpu: BTreeMap::new(),
        })
    }
}

/// The process's resident set size now (`VmRSS` of `/proc/self/status`), bytes; `None`
/// where there is no such file.
pub fn current_rss() -> Option<u64> {
    status_bytes("self", "VmRSS:")
}

/// A size in kB of `/proc/PROC/status`, in bytes.
fn status_bytes(process: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time of every thread of process `pid` so far (`/proc/PID/stat`,
/// in clock ticks: 10 ms here).
fn node_cpu(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    // Field 3 (state) is the first after it; utime and stime are fields 14 and 15.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{path}: field {} is not a number", i + 3))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_nanos(total * 1_000_000_000 / clock_ticks()))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, asked once), 100 where unknown.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&t| t > 0)
            .map_or(100, |t| t as u64)
    })
}

/// Peak resident set size of process `pid` so far (`VmHWM` of `/proc/PID/status`), bytes.
pub fn node_peak_rss(pid: u32) -> Option<u64> {
    status_bytes(&pid.to_string(), "VmHWM:")
}

/// One counter of `/proc/self/io`.
fn proc_io(key: &str) -> Option<u64> {
    proc_io_of("self", key)
}

/// One counter of `/proc/PROC/io`.
fn proc_io_of(process: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{process}/io")).ok()?;
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// Bytes written to the block device that holds `path` since it came up (its `stat` in
/// `/sys/dev/block`), if there is such a device (not on overlay or network file systems).
///
/// The device's count, not the process's: with large page-cache folios the kernel accounts
/// a process (`/proc/self/io` `write_bytes`) for a whole folio, up to 2 MiB, when it
/// dirties one byte of it, while writeback writes only the dirty blocks. Writing over a
/// preallocated file (the store's log) showed 2 MB accounted per fdatasync against 14 KB
/// written to the device. It counts every process's writes to that device.
pub fn device_written(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let stat = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat")).ok()?;
    // The seventh field is sectors written, in 512-byte units whatever the device's.
    let sectors: u64 = stat.split_whitespace().nth(6)?.parse().ok()?;
    Some(sectors * 512)
}

/// The total size of the regular files under `dir`, bytes.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Nearest-rank percentiles of `samples` (milliseconds); all zero when empty.
pub fn percentiles(samples: &mut [f64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        // Nearest rank: the smallest sample with at least p of the samples at or below it.
        let i = (p * samples.len() as f64).ceil() as usize;
        samples[i.clamp(1, samples.len()) - 1]
    };
    Percentiles {
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
        max: samples[samples.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&mut s);
        assert_eq!(
            p,
            Percentiles {
                p50: 50.0,
                p90: 90.0,
                p99: 99.0,
                max: 100.0
            }
        );
        let mut one = vec![7.0];
        assert_eq!(percentiles(&mut one).p50, 7.0);
        assert_eq!(percentiles(&mut []), Percentiles::default());
    }

    #[test]
    fn dir_size_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/x"), [0_u8; 100]).unwrap();
        std::fs::write(dir.path().join("y"), [0_u8; 23]).unwrap();
        assert_eq!(dir_size(dir.path()), 123);
    }

    #[test]
    fn usage_grows_with_work() {
        let before = Usage::now().unwrap();
        let mut x = 0_u64;
        for i in 0..20_000_000_u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = Usage::now().unwrap();
        assert!(after.cpu > before.cpu);
        assert!(after.peak_rss > 0);
        // The peak, read after, is never below the resident size read before.
        let rss = current_rss().expect("Linux has /proc/self/status");
        let peak = Usage::now().unwrap().peak_rss;
        assert!(rss > 0 && rss <= peak, "{rss} > {peak}");
    }
}
