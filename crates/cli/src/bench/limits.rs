//! The machine's limits, measured in the same run as the exchange: how fast this machine
//! signs, verifies and makes writes durable, one core and one file at a time.
//!
//! Each figure is a rate over a short, fixed window; the window is long enough for
//! thousands of operations (signatures) or hundreds (fdatasync), short enough to keep
//! `pons bench` near ten seconds. The rates are per core: the exchange has every core.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use pons_core::{SigningAlgorithm, SigningKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Serialize;

/// How long each rate is measured.
const WINDOW: Duration = Duration::from_millis(400);

/// Appends per fdatasync in the grouped measurement (what group commit could reach).
pub const GROUP: usize = 64;

/// The size of each write in the synced-bandwidth measurement (64 KiB).
pub const SYNCED_BLOCK: usize = 64 * 1024;

/// What the machine can do, per second, on one core.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// Ed25519 signatures per second (one core).
    pub ed25519_sign_per_s: f64,
    /// Ed25519 verifications per second (one core).
    pub ed25519_verify_per_s: f64,
    /// ECDSA P-256 signatures per second (one core).
    pub p256_sign_per_s: f64,
    /// ECDSA P-256 verifications per second (one core).
    pub p256_verify_per_s: f64,
    /// Append-then-fdatasync cycles per second, one append per fdatasync.
    pub fdatasync_per_s: f64,
    /// Appends per second when [`GROUP`] appends share one fdatasync.
    pub appends_per_s_group_64: f64,
    /// Bytes per second written in [`SYNCED_BLOCK`]-byte writes, each followed by an
    /// fdatasync: what the disk takes when every write must reach it before the next (a
    /// database's log writes, each synced).
    pub synced_write_bytes_per_s: f64,
    /// CPU cores available to this process.
    pub cores: usize,
}

/// Measures every limit; `dir` is where the fdatasync files go (the nodes' file system),
/// `size` the bytes signed and appended per operation (about one record).
pub fn measure(dir: &Path, size: usize) -> anyhow::Result<Limits> {
    let rng = SystemRandom::new();
    let msg = vec![0x5a_u8; size.max(1)];
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow!("cannot make a key"))?;
    let ed = SigningKey::from_pkcs8_der(ed.as_ref()).context("Ed25519 key")?;
    let p256 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow!("cannot make a key"))?;
    let p256 = SigningKey::from_pkcs8_der(p256.as_ref()).context("P-256 key")?;
    let (ed25519_sign_per_s, ed25519_verify_per_s) = signatures(&ed, &msg)?;
    let (p256_sign_per_s, p256_verify_per_s) = signatures(&p256, &msg)?;
    let fdatasync_per_s = appends(dir, size, 1)?;
    let appends_per_s_group_64 = appends(dir, size, GROUP)?;
    let synced_write_bytes_per_s = appends(dir, SYNCED_BLOCK, 1)? * SYNCED_BLOCK as f64;
    Ok(Limits {
        ed25519_sign_per_s,
        ed25519_verify_per_s,
        p256_sign_per_s,
        p256_verify_per_s,
        fdatasync_per_s,
        appends_per_s_group_64,
        synced_write_bytes_per_s,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

impl Limits {
    /// Signatures and verifications per second of the algorithm the nodes use.
    pub fn of(&self, algorithm: SigningAlgorithm) -> (f64, f64) {
        match algorithm {
            SigningAlgorithm::EcdsaP256Sha256 => (self.p256_sign_per_s, self.p256_verify_per_s),
            _ => (self.ed25519_sign_per_s, self.ed25519_verify_per_s),
        }
    }
}

/// Signs, then verifies, `msg` for one window each; returns (signs/s, verifies/s).
fn signatures(key: &SigningKey, msg: &[u8]) -> anyhow::Result<(f64, f64)> {
    let sig = key.sign(msg).context("sign")?;
    let sign = rate(|| key.sign(msg).map(drop).context("sign"))?;
    let alg = key.algorithm();
    let public = key.public_key();
    let verify = rate(|| alg.verify(public, msg, &sig).context("verify"))?;
    Ok((sign, verify))
}

/// Appends `size` bytes `group` times, then fdatasync, for one window; returns appends/s.
fn appends(dir: &Path, size: usize, group: usize) -> anyhow::Result<f64> {
    let path = dir.join(format!("fdatasync-{group}.bin"));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = vec![0xa5_u8; size.max(1)];
    // The first sync pays for the file's creation; it is not a steady-state cost.
    file.write_all(&block)?;
    file.sync_all()?;
    let per_cycle = rate(|| {
        for _ in 0..group {
            file.write_all(&block)?;
        }
        file.sync_data()?;
        Ok(())
    });
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(per_cycle.with_context(|| format!("fdatasync on {}", dir.display()))? * group as f64)
}

/// Runs `op` repeatedly for [`WINDOW`] (at least 10 times); returns operations per second.
fn rate(mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut n = 0_u64;
    while n < 10 || start.elapsed() < WINDOW {
        // Check the clock every few operations only: a signature takes tens of µs.
        for _ in 0..8 {
            op()?;
            n += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_measured_and_positive() {
        let dir = tempfile::tempdir().unwrap();
        let l = measure(dir.path(), 256).unwrap();
        for (name, v) in [
            ("ed25519 sign", l.ed25519_sign_per_s),
            ("ed25519 verify", l.ed25519_verify_per_s),
            ("p256 sign", l.p256_sign_per_s),
            ("p256 verify", l.p256_verify_per_s),
            ("fdatasync", l.fdatasync_per_s),
            ("group", l.appends_per_s_group_64),
            ("synced bytes", l.synced_write_bytes_per_s),
        ] {
            assert!(v.is_finite() && v > 0.0, "{name}: {v}");
        }
        // The measurement files are removed.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
