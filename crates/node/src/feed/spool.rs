//! The `spool` sink: one JSON file per record in a directory the consumer reads.
//!
//! Each file is written atomically: a temporary file `.<id>.tmp` is written and fsync'ed,
//! renamed to `<cursor, 20 digits>-<id>.json`, and the directory is fsync'ed once per batch;
//! only then does the worker move the sink's cursor. A consumer therefore never sees a
//! partial file, and after a crash between the rename and the cursor's move the same file
//! (same name, same bytes) is written again: it replaces itself if the consumer has not
//! taken it yet, and otherwise the consumer recognises the record id it already has.
//! Names sort in arrival order.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Item, Push, Pushed};

/// The spool sink.
pub(crate) struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (and makes, mode 0750) the spool directory.
    pub(crate) fn open(dir: PathBuf) -> std::io::Result<Self> {
        DirBuilder::new().recursive(true).mode(0o750).create(&dir)?;
        Ok(Self { dir })
    }
}

/// The file name of a record in the spool.
pub(crate) fn file_name(item: &Item) -> String {
    format!("{:020}-{}.json", item.rec.arrival_seq, item.rec.id)
}

fn write_one(dir: &Path, item: &Item) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{}.tmp", item.rec.id));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(&item.json)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(file_name(item)))
}

fn write_batch(dir: &Path, items: &[Item]) -> Pushed {
    let mut written = 0;
    let mut error = None;
    for item in items {
        match write_one(dir, item) {
            Ok(()) => written += 1,
            Err(e) => {
                error = Some(format!("spool {}: {e}", dir.display()));
                break;
            }
        }
    }
    if written > 0 {
        // The renames are durable only once the directory is: until then nothing counts.
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            return Pushed {
                taken: 0,
                error: Some(format!(
                    "spool {}: fsync of the directory: {e}",
                    dir.display()
                )),
            };
        }
    }
    Pushed {
        taken: written,
        error,
    }
}

impl Push for Spool {
    async fn push(&mut self, items: &[Item]) -> Pushed {
        let dir = self.dir.clone();
        let items = items.to_vec();
        match tokio::task::spawn_blocking(move || write_batch(&dir, &items)).await {
            Ok(p) => p,
            Err(e) => Pushed {
                taken: 0,
                error: Some(format!("spool writer task: {e}")),
            },
        }
    }

    fn max_attempts(&self) -> Option<u32> {
        None
    }

    fn backoff(&self) -> pons_proto::Backoff {
        pons_proto::Backoff {
            initial: Duration::from_millis(500),
            multiplier: 2,
            max: Duration::from_secs(30),
        }
    }
}
