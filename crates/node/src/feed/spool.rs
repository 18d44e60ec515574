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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::tests::item;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_batch_written_again_after_a_crash_leaves_one_file_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::open(spool_dir.clone()).unwrap();
        let items = [item(1, "{\"n\":1}"), item(2, "{\"n\":2}")];
        let first = spool.push(&items).await;
        assert_eq!((first.taken, first.error), (2, None));
        // The node crashed before moving its cursor: the same batch is written again.
        let again = spool.push(&items).await;
        assert_eq!(again.taken, 2);
        let names = listing(&spool_dir);
        assert_eq!(names, vec![file_name(&items[0]), file_name(&items[1])]);
        assert!(names[0] < names[1], "names sort in arrival order");
        let text = std::fs::read_to_string(spool_dir.join(&names[1])).unwrap();
        assert_eq!(text, "{\"n\":2}\n");
    }

    #[tokio::test]
    async fn an_unwritable_spool_takes_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::open(spool_dir.clone()).unwrap();
        std::fs::remove_dir(&spool_dir).unwrap();
        let pushed = spool.push(&[item(1, "{}")]).await;
        assert_eq!(pushed.taken, 0);
        let error = pushed.error.unwrap();
        assert!(error.contains("spool"), "{error}");
    }
}
