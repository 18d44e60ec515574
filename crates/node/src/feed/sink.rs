//! The `[[sink]]` sections of the node configuration.
//!
//! ```toml
//! [[sink]]
//! name = "cuta-spool"          # lower-case letters, digits, '-' and '_'; unique
//! kind = "spool"
//! dir = "feed/spool"           # relative to the configuration file
//!
//! [[sink]]
//! name = "ingest"
//! kind = "exec"
//! command = ["/usr/local/bin/ingest", "--from-pons"]   # argv: no shell
//! max_attempts = 5             # then the record becomes a dead letter
//! retry_initial_ms = 1000      # backoff: doubling from here ...
//! retry_max_ms = 60000         # ... up to here
//! timeout_secs = 60            # a run that takes longer is killed and counts as failed
//!
//! [[sink]]
//! name = "cli"
//! kind = "stream"              # read with `pons feed`, acknowledged with `pons feed ack`
//!
//! [[sink]]
//! name = "bus"
//! kind = "nats"
//! url = "nats://127.0.0.1:4222"
//! stream = "PONS"              # JetStream stream, made if missing
//! subject = "pons.records"
//! duplicate_window_secs = 86400
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// One sink of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// The sink's name: in its cursor, its journal entries (`sink:<name>`) and its files.
    pub name: String,
    /// Where records go.
    pub kind: SinkKind,
}

/// The kinds of sink.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkKind {
    /// One JSON file per record in a directory, written atomically.
    Spool {
        /// The directory.
        dir: PathBuf,
    },
    /// A command run per record with the JSON on its standard input.
    Exec(ExecSink),
    /// Read through the control socket (`pons feed`), acknowledged by the reader.
    Stream,
    /// Published to a NATS JetStream stream.
    Nats(NatsSink),
}

impl SinkKind {
    /// The kind's name as written in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Spool { .. } => "spool",
            Self::Exec(_) => "exec",
            Self::Stream => "stream",
            Self::Nats(_) => "nats",
        }
    }
}

/// An `exec` sink's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSink {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// Consecutive failures after which a record becomes a dead letter.
    pub max_attempts: u32,
    /// Backoff ceiling after the first failure.
    pub retry_initial: Duration,
    /// Largest backoff.
    pub retry_max: Duration,
    /// A run taking longer is killed and counts as a failure.
    pub timeout: Duration,
}

/// A `nats` sink's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSink {
    /// The server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream; made (with `subject` and the duplicate window) if missing.
    pub stream: String,
    /// The subject records are published on.
    pub subject: String,
    /// JetStream's duplicate window for `Nats-Msg-Id`, when the sink makes the stream.
    pub duplicate_window: Duration,
    /// Backoff ceiling after the first failure.
    pub retry_initial: Duration,
    /// Largest backoff.
    pub retry_max: Duration,
}

/// A `[[sink]]` as written.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum RawSink {
    Spool {
        name: String,
        dir: PathBuf,
    },
    Exec {
        name: String,
        command: Vec<String>,
        max_attempts: Option<u32>,
        retry_initial_ms: Option<u64>,
        retry_max_ms: Option<u64>,
        timeout_secs: Option<u64>,
    },
    Stream {
        name: String,
    },
    Nats {
        name: String,
        url: String,
        stream: String,
        subject: String,
        duplicate_window_secs: Option<u64>,
        retry_initial_ms: Option<u64>,
        retry_max_ms: Option<u64>,
    },
}

/// Checks the `[[sink]]` sections; relative spool directories are resolved against `base`.
/// An error names the field (`sink[1].name`) and the rule.
pub(crate) fn resolve_sinks(
    raw: Vec<RawSink>,
    base: &Path,
) -> Result<Vec<SinkConfig>, (String, String)> {
    let mut out: Vec<SinkConfig> = Vec::new();
    for (i, sink) in raw.into_iter().enumerate() {
        let field = |k: &str| format!("sink[{i}].{k}");
        let retry = |initial: Option<u64>, max: Option<u64>| {
            let initial = Duration::from_millis(initial.unwrap_or(1000));
            let max = Duration::from_millis(max.unwrap_or(60_000));
            if initial.is_zero() || max < initial {
                return Err((
                    field("retry_initial_ms"),
                    "must be at least 1 and at most retry_max_ms".to_owned(),
                ));
            }
            Ok((initial, max))
        };
        let (name, kind) = match sink {
            RawSink::Spool { name, dir } => {
                let dir = if dir.is_absolute() {
                    dir
                } else {
                    base.join(dir)
                };
                (name, SinkKind::Spool { dir })
            }
            RawSink::Exec {
                name,
                command,
                max_attempts,
                retry_initial_ms,
                retry_max_ms,
                timeout_secs,
            } => {
                if command.first().is_none_or(|p| p.is_empty()) {
                    return Err((
                        field("command"),
                        "must name a program: [\"/path/to/program\", \"arg\", …]".to_owned(),
                    ));
                }
                let max_attempts = max_attempts.unwrap_or(5);
                if max_attempts == 0 {
                    return Err((field("max_attempts"), "must be at least 1".to_owned()));
                }
                let timeout = Duration::from_secs(timeout_secs.unwrap_or(60));
                if timeout.is_zero() {
                    return Err((field("timeout_secs"), "must be at least 1".to_owned()));
                }
                let (retry_initial, retry_max) = retry(retry_initial_ms, retry_max_ms)?;
                (
                    name,
                    SinkKind::Exec(ExecSink {
                        command,
                        max_attempts,
                        retry_initial,
                        retry_max,
                        timeout,
                    }),
                )
            }
            RawSink::Stream { name } => (name, SinkKind::Stream),
            RawSink::Nats {
                name,
                url,
                stream,
                subject,
                duplicate_window_secs,
                retry_initial_ms,
                retry_max_ms,
            } => {
                if stream.is_empty()
                    || !stream
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                {
                    return Err((
                        field("stream"),
                        format!(
                            "{stream:?} is not a JetStream stream name (letters, digits, '-', '_')"
                        ),
                    ));
                }
                if subject.is_empty()
                    || subject
                        .bytes()
                        .any(|b| b.is_ascii_whitespace() || b == b'*' || b == b'>')
                {
                    return Err((
                        field("subject"),
                        format!("{subject:?} is not a NATS subject to publish on (no spaces or wildcards)"),
                    ));
                }
                let (retry_initial, retry_max) = retry(retry_initial_ms, retry_max_ms)?;
                (
                    name,
                    SinkKind::Nats(NatsSink {
                        url,
                        stream,
                        subject,
                        duplicate_window: Duration::from_secs(
                            duplicate_window_secs.unwrap_or(24 * 3600),
                        ),
                        retry_initial,
                        retry_max,
                    }),
                )
            }
        };
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
        {
            return Err((
                field("name"),
                format!("{name:?} is not 1 to 64 lower-case letters, digits, '-' or '_'"),
            ));
        }
        if out.iter().any(|s| s.name == name) {
            return Err((field("name"), format!("sink {name} is listed twice")));
        }
        out.push(SinkConfig { name, kind });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        sink: Vec<RawSink>,
    }

    fn parse(text: &str) -> Result<Vec<SinkConfig>, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        resolve_sinks(f.sink, Path::new("/etc/pons")).map_err(|(f, r)| format!("{f}: {r}"))
    }

    #[test]
    fn every_kind_parses_with_defaults_and_paths_resolved() {
        let sinks = parse(
            r#"
[[sink]]
name = "spool"
kind = "spool"
dir = "feed"
[[sink]]
name = "ingest"
kind = "exec"
command = ["/bin/true"]
[[sink]]
name = "cli"
kind = "stream"
[[sink]]
name = "bus"
kind = "nats"
url = "nats://127.0.0.1:4222"
stream = "PONS"
subject = "pons.records"
"#,
        )
        .unwrap();
        assert_eq!(sinks.len(), 4);
        assert_eq!(
            sinks[0].kind,
            SinkKind::Spool {
                dir: PathBuf::from("/etc/pons/feed")
            }
        );
        let SinkKind::Exec(exec) = &sinks[1].kind else {
            panic!("{:?}", sinks[1])
        };
        assert_eq!(exec.max_attempts, 5);
        assert_eq!(exec.timeout, Duration::from_secs(60));
        assert_eq!(sinks[2].kind, SinkKind::Stream);
        assert_eq!(sinks[3].kind.as_str(), "nats");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "name = \"Spool\"\nkind = \"spool\"\ndir = \"x\"",
                "sink[0].name",
            ),
            (
                "name = \"e\"\nkind = \"exec\"\ncommand = []",
                "sink[0].command",
            ),
            (
                "name = \"e\"\nkind = \"exec\"\ncommand = [\"x\"]\nmax_attempts = 0",
                "sink[0].max_attempts",
            ),
            (
                "name = \"n\"\nkind = \"nats\"\nurl = \"u\"\nstream = \"a b\"\nsubject = \"s\"",
                "sink[0].stream",
            ),
            (
                "name = \"n\"\nkind = \"nats\"\nurl = \"u\"\nstream = \"S\"\nsubject = \"a.>\"",
                "sink[0].subject",
            ),
        ];
        for (body, field) in cases {
            let err = parse(&format!("[[sink]]\n{body}\n")).unwrap_err();
            assert!(err.starts_with(field), "expected {field}, got {err}");
        }
        let twice = "[[sink]]\nname = \"a\"\nkind = \"stream\"\n[[sink]]\nname = \"a\"\nkind = \"stream\"\n";
        assert!(parse(twice).unwrap_err().starts_with("sink[1].name"));
        let unknown = parse("[[sink]]\nname = \"a\"\nkind = \"stream\"\ncolour = 1\n").unwrap_err();
        assert!(unknown.contains("colour"), "{unknown}");
        let kind = parse("[[sink]]\nname = \"a\"\nkind = \"kafka\"\n").unwrap_err();
        assert!(kind.contains("kafka"), "{kind}");
    }
}
