//! The `exec` sink: a command run once per record, with the feed record (one line of JSON)
//! on its standard input.
//!
//! Exit status 0 acknowledges the record; anything else — another status, a signal, a run
//! longer than `timeout_secs`, a command that cannot start — is a failure, retried with
//! backoff; after `max_attempts` consecutive failures the record becomes a dead letter and
//! the records after it go on. The command also gets `PONS_FEED_SINK`, `PONS_RECORD_ID` and
//! `PONS_FEED_CURSOR` in its environment, so that it can be idempotent by record id: a node
//! crash after a run exited 0 but before the cursor moved runs it again for that record.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{ExecSink, Item, Push, Pushed};

/// The most of a failed command's standard error kept in its error message.
const STDERR_KEPT: usize = 400;

/// The exec sink.
pub(crate) struct Exec {
    sink: String,
    conf: ExecSink,
}

impl Exec {
    /// An exec sink named `sink`.
    pub(crate) fn new(sink: &str, conf: ExecSink) -> Self {
        Self {
            sink: sink.to_owned(),
            conf,
        }
    }

    async fn run(&self, item: &Item) -> Result<(), String> {
        let (program, args) = self
            .conf
            .command
            .split_first()
            .ok_or_else(|| "no command configured".to_owned())?;
        let mut child = Command::new(program)
            .args(args)
            .env("PONS_FEED_SINK", &self.sink)
            .env("PONS_RECORD_ID", item.rec.id.to_string())
            .env("PONS_FEED_CURSOR", item.rec.arrival_seq.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let mut stdin = child.stdin.take();
        let mut stderr = child.stderr.take();
        let json = item.json.clone();
        let run = async move {
            // A command that exits without reading its input is judged by its exit status.
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(&json).await;
                let _ = stdin.write_all(b"\n").await;
                let _ = stdin.shutdown().await;
            }
            drop(stdin);
            let mut err = Vec::new();
            if let Some(stderr) = stderr.as_mut() {
                let _ = stderr.take(64 * 1024).read_to_end(&mut err).await;
            }
            let status = child.wait().await;
            (status, err)
        };
        let (status, err) = tokio::time::timeout(self.conf.timeout, run)
            .await
            .map_err(|_| {
                format!(
                    "{program} took longer than {}s and was killed",
                    self.conf.timeout.as_secs()
                )
            })?;
        let status = status.map_err(|e| format!("cannot wait for {program}: {e}"))?;
        if status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&err);
        let err = err.trim();
        let tail: String = err
            .chars()
            .rev()
            .take(STDERR_KEPT)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(if tail.is_empty() {
            format!("{program} exited with {status}")
        } else {
            format!(
                "{program} exited with {status}: {}",
                tail.replace('\n', " | ")
            )
        })
    }
}

impl Push for Exec {
    async fn push(&mut self, items: &[Item]) -> Pushed {
        let mut taken = 0;
        for item in items {
            if let Err(e) = self.run(item).await {
                return Pushed {
                    taken,
                    error: Some(e),
                };
            }
            taken += 1;
        }
        Pushed { taken, error: None }
    }

    fn max_attempts(&self) -> Option<u32> {
        Some(self.conf.max_attempts)
    }

    /// One record per hand-over: each run that exited 0 moves the cursor at once, so a
    /// crash repeats at most one run.
    fn batch(&self) -> usize {
        1
    }

    fn backoff(&self) -> pons_proto::Backoff {
        pons_proto::Backoff {
            initial: self.conf.retry_initial,
            multiplier: 2,
            max: self.conf.retry_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::feed::tests::item;

    fn exec(script: &str, timeout: Duration) -> Exec {
        Exec::new(
            "test",
            ExecSink {
                command: vec!["/bin/sh".into(), "-c".into(), script.into()],
                max_attempts: 3,
                retry_initial: Duration::from_millis(10),
                retry_max: Duration::from_millis(10),
                timeout,
            },
        )
    }

    #[tokio::test]
    async fn exit_zero_takes_the_record_and_the_input_and_environment_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "cat > {o}; echo \"$PONS_FEED_SINK $PONS_RECORD_ID $PONS_FEED_CURSOR\" >> {o}",
            o = out.display()
        );
        let mut sink = exec(&script, Duration::from_secs(30));
        let it = item(7, "{\"x\":1}");
        let pushed = sink.push(std::slice::from_ref(&it)).await;
        assert_eq!((pushed.taken, pushed.error), (1, None));
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text, format!("{{\"x\":1}}\ntest {} 7\n", it.rec.id));
    }

    #[tokio::test]
    async fn a_failure_stops_the_batch_with_the_status_and_stderr() {
        let mut sink = exec(
            "cat >/dev/null; echo refused >&2; exit 3",
            Duration::from_secs(30),
        );
        let pushed = sink.push(&[item(1, "{}"), item(2, "{}")]).await;
        assert_eq!(pushed.taken, 0);
        let error = pushed.error.unwrap();
        assert!(
            error.contains("exit status: 3") && error.contains("refused"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_run_past_its_timeout_is_killed_and_fails() {
        let mut sink = exec("sleep 30", Duration::from_millis(300));
        let pushed = sink.push(&[item(1, "{}")]).await;
        assert_eq!(pushed.taken, 0);
        let error = pushed.error.unwrap();
        assert!(error.contains("took longer"), "{error}");
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_fails() {
        let mut sink = Exec::new(
            "test",
            ExecSink {
                command: vec!["/nonexistent/ingest".into()],
                max_attempts: 1,
                retry_initial: Duration::from_millis(10),
                retry_max: Duration::from_millis(10),
                timeout: Duration::from_secs(1),
            },
        );
        let pushed = sink.push(&[item(1, "{}")]).await;
        assert_eq!(pushed.taken, 0);
        assert!(pushed.error.unwrap().contains("cannot start"));
    }
}
