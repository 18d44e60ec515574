//! The node configuration file (TOML).
//!
//! Relative paths are resolved against the directory holding the configuration file, so
//! a node directory made by `pons init` can be moved as a whole.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pons_core::retention::{OnExpiry, RetentionPolicy};
use pons_core::{ClassName, NodeId};
use serde::Deserialize;

/// A node's configuration, as read from its TOML file and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id; must equal the node in its certificates' SPIFFE ID.
    pub node_id: NodeId,
    /// The federation (SPIFFE trust domain), e.g. `pons.example`.
    pub federation: String,
    /// The UDP address the QUIC endpoint listens on.
    pub listen: SocketAddr,
    /// The node's data directory: the database and the control socket.
    pub data_dir: PathBuf,
    /// TLS certificate chain, key, CA and CRLs.
    pub tls: TlsFiles,
    /// The record-signing certificate and key.
    pub signing: SigningFiles,
    /// The federation's subject pseudonym key file, if any.
    pub pseudonym_key: Option<PathBuf>,
    /// The node's master key file (32 bytes, hex, mode 0600), which wraps the data key of
    /// every stored record body; required to run.
    pub master_key: Option<PathBuf>,
    /// The peers this node exchanges records with, by node id.
    pub peers: BTreeMap<NodeId, PeerConfig>,
    /// Who may do what through the control socket.
    pub roles: Roles,
    /// Protocol and resource limits.
    pub limits: Limits,
    /// Storage settings.
    pub storage: Storage,
    /// The feed's sinks (`[[sink]]`): where accepted records go in the agency.
    pub sinks: Vec<crate::feed::SinkConfig>,
    /// The journal's checkpoint schedule (`[journal]`).
    pub journal: crate::journal::JournalConfig,
    /// Retention policies per class (`[retention.<class>]`); a class not listed has
    /// [`RetentionPolicy::default_for`].
    pub retention: BTreeMap<ClassName, RetentionPolicy>,
}

/// TLS files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The federation CA certificate(s), PEM.
    pub ca: PathBuf,
    /// Certificate revocation lists, PEM.
    pub crl: Vec<PathBuf>,
    /// This node's TLS certificate chain, PEM.
    pub cert: PathBuf,
    /// This node's TLS private key, PKCS#8 PEM, mode 0600.
    pub key: PathBuf,
}

/// Record-signing files.
#[derive(Debug, Clone)]
pub struct SigningFiles {
    /// The signing certificate (and chain), PEM.
    pub cert: PathBuf,
    /// The signing private key, PKCS#8 PEM, mode 0600.
    pub key: PathBuf,
}

/// One peer node.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Where the peer's QUIC endpoint listens.
    pub address: SocketAddr,
    /// The TLS server name to ask for (a DNS SAN of the peer's certificate).
    pub server_name: String,
    /// Classes this node may send to the peer.
    pub send: BTreeSet<String>,
    /// Classes the peer may send to this node.
    pub receive: BTreeSet<String>,
}

/// What a caller of the control socket may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Submits, corrects and withdraws records; reads its outbox and the inbox.
    Caseworker,
    /// Verifies, searches and exports the journal; reviews, holds.
    Dpo,
    /// Runs the node: status, retention, holds.
    Operator,
}

impl Role {
    /// The role's name as written in the configuration and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caseworker => "caseworker",
            Self::Dpo => "dpo",
            Self::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// OS users and groups per role.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// Each role with the user names and group names that hold it.
    pub members: BTreeMap<Role, RoleMembers>,
}

/// Who holds a role.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMembers {
    /// OS user names.
    #[serde(default)]
    pub users: BTreeSet<String>,
    /// OS group names: any member holds the role.
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

impl Roles {
    /// The roles a user holds, given the user's name and the names of its groups.
    pub fn of(&self, user: &str, groups: &[String]) -> BTreeSet<Role> {
        self.members
            .iter()
            .filter(|(_, m)| m.users.contains(user) || groups.iter().any(|g| m.groups.contains(g)))
            .map(|(role, _)| *role)
            .collect()
    }
}

/// Protocol and resource limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest frame accepted or sent, in bytes.
    pub max_frame: usize,
    /// Concurrent streams (records in flight) per peer.
    pub max_streams_per_peer: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Allowed clock difference between nodes when checking dates.
    pub clock_skew: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 1024 * 1024,
            max_streams_per_peer: 256,
            idle_timeout: Duration::from_secs(30),
            clock_skew: Duration::from_secs(300),
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone)]
pub struct Storage {
    /// fdatasync the store's write-ahead log before acknowledging a write (closes the
    /// power-loss window, at a cost measured by `pons bench`); without it a write is
    /// acknowledged once written to the kernel, which survives a process crash. On unless
    /// `[storage] sync = false`.
    pub sync: bool,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            sync: sync_by_default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or missing keys.
    #[error("config {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A value breaks a rule.
    #[error("config {path}: {field}: {rule}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `peer.cuta.address`.
        field: String,
        /// The rule it breaks.
        rule: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node_id: String,
    federation: String,
    listen: String,
    data_dir: PathBuf,
    tls: RawTls,
    signing: RawSigning,
    pseudonym_key: Option<PathBuf>,
    master_key: Option<PathBuf>,
    #[serde(default, rename = "peer")]
    peers: Vec<RawPeer>,
    #[serde(default)]
    roles: BTreeMap<String, RoleMembers>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default, rename = "sink")]
    sinks: Vec<crate::feed::RawSink>,
    #[serde(default)]
    journal: crate::journal::RawJournal,
    #[serde(default)]
    retention: BTreeMap<String, RawRetention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    review_every: Option<String>,
    keep_for: Option<String>,
    review_grace: Option<String>,
    on_expiry: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: PathBuf,
    #[serde(default)]
    crl: Vec<PathBuf>,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    node_id: String,
    address: String,
    #[serde(default = "default_server_name")]
    server_name: String,
    #[serde(default)]
    send: BTreeSet<String>,
    #[serde(default)]
    receive: BTreeSet<String>,
}

fn default_server_name() -> String {
    "localhost".to_owned()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_frame: Option<usize>,
    max_streams_per_peer: Option<u32>,
    idle_timeout_secs: Option<u64>,
    clock_skew_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    #[serde(default = "sync_by_default")]
    sync: bool,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            sync: sync_by_default(),
        }
    }
}

/// A node fdatasyncs unless told not to: "acknowledged is never lost" holds through a power
/// loss only with it, and it costs one fdatasync per group of commits.
fn sync_by_default() -> bool {
    true
}

/// The largest frame a node may be configured to accept: 16 MiB.
pub const MAX_FRAME_CEILING: usize = 16 * 1024 * 1024;

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |field: &str, rule: String| ConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            rule,
        };
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let node_id = NodeId::new(&raw.node_id).map_err(|e| invalid("node_id", e.to_string()))?;
        if raw.federation.is_empty()
            || !raw.federation.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            })
        {
            return Err(invalid(
                "federation",
                format!(
                    "{:?} is not a SPIFFE trust domain (lower-case letters, digits, '.', '-', '_')",
                    raw.federation
                ),
            ));
        }
        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{:?} is not an address like \"127.0.0.1:7443\"", raw.listen),
            )
        })?;

        let mut peers = BTreeMap::new();
        for (i, p) in raw.peers.into_iter().enumerate() {
            let field = |k: &str| format!("peer[{i}].{k}");
            let id =
                NodeId::new(&p.node_id).map_err(|e| invalid(&field("node_id"), e.to_string()))?;
            if id == node_id {
                return Err(invalid(
                    &field("node_id"),
                    format!("{id} is this node itself"),
                ));
            }
            let address: SocketAddr = p.address.parse().map_err(|_| {
                invalid(
                    &field("address"),
                    format!("{:?} is not an address like \"127.0.0.1:7444\"", p.address),
                )
            })?;
            let peer = PeerConfig {
                address,
                server_name: p.server_name,
                send: p.send,
                receive: p.receive,
            };
            if peers.insert(id.clone(), peer).is_some() {
                return Err(invalid(
                    &field("node_id"),
                    format!("peer {id} is listed twice"),
                ));
            }
        }

        let mut roles = Roles::default();
        for (name, members) in raw.roles {
            let role = match name.as_str() {
                "caseworker" => Role::Caseworker,
                "dpo" => Role::Dpo,
                "operator" => Role::Operator,
                other => {
                    return Err(invalid(
                        &format!("roles.{other}"),
                        "unknown role: use caseworker, dpo or operator".to_owned(),
                    ))
                }
            };
            roles.members.insert(role, members);
        }

        let defaults = Limits::default();
        let limits = Limits {
            max_frame: raw.limits.max_frame.unwrap_or(defaults.max_frame),
            max_streams_per_peer: raw
                .limits
                .max_streams_per_peer
                .unwrap_or(defaults.max_streams_per_peer),
            idle_timeout: raw
                .limits
                .idle_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.idle_timeout),
            clock_skew: raw
                .limits
                .clock_skew_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.clock_skew),
        };
        if limits.max_frame < 4096 || limits.max_frame > MAX_FRAME_CEILING {
            return Err(invalid(
                "limits.max_frame",
                format!(
                    "{} is outside 4096..={MAX_FRAME_CEILING} bytes",
                    limits.max_frame
                ),
            ));
        }
        if limits.max_streams_per_peer == 0 || limits.max_streams_per_peer > 10_000 {
            return Err(invalid(
                "limits.max_streams_per_peer",
                format!("{} is outside 1..=10000", limits.max_streams_per_peer),
            ));
        }
        if limits.idle_timeout < Duration::from_secs(1) {
            return Err(invalid(
                "limits.idle_timeout_secs",
                "must be at least 1".to_owned(),
            ));
        }

        let sinks = crate::feed::resolve_sinks(raw.sinks, &base)
            .map_err(|(field, rule)| invalid(&field, rule))?;
        let retention = resolve_retention(raw.retention).map_err(|(f, r)| invalid(&f, r))?;

        Ok(Self {
            node_id,
            federation: raw.federation,
            listen,
            data_dir: resolve(raw.data_dir),
            tls: TlsFiles {
                ca: resolve(raw.tls.ca),
                crl: raw.tls.crl.into_iter().map(resolve).collect(),
                cert: resolve(raw.tls.cert),
                key: resolve(raw.tls.key),
            },
            signing: SigningFiles {
                cert: resolve(raw.signing.cert),
                key: resolve(raw.signing.key),
            },
            pseudonym_key: raw.pseudonym_key.map(resolve),
            master_key: raw.master_key.map(resolve),
            peers,
            roles,
            limits,
            storage: Storage {
                sync: raw.storage.sync,
            },
            sinks,
            journal: crate::journal::JournalConfig::resolve(&raw.journal)
                .map_err(|rule| invalid("journal", rule))?,
            retention,
        })
    }

    /// The retention policy of `class` on this node.
    pub fn retention(&self, class: ClassName) -> RetentionPolicy {
        self.retention
            .get(&class)
            .copied()
            .unwrap_or_else(|| RetentionPolicy::default_for(class))
    }

    /// The retention policy of a stored record's class, by name; the fallback policy
    /// (erased at its own `erase_by`, no review restriction) for a class this node does
    /// not know.
    pub fn retention_of(&self, class: &str) -> RetentionPolicy {
        ClassName::parse(class)
            .map(|c| self.retention(c))
            .unwrap_or_else(|_| RetentionPolicy::fallback())
    }

    /// Whether policy lets this node send `class` to `peer`.
    ///
    /// Besides the classes listed in `send`, a node may always tell a peer it sends records
    /// to that one was erased (`erasure-notice`), and correct a record of a class that can
    /// be rectified (`rectification`): LED art. 16(6) requires recipients to be told.
    pub fn may_send(&self, peer: &NodeId, class: &str) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| allowed(&p.send, class))
    }

    /// Whether policy lets `peer` send `class` to this node: the classes listed in
    /// `receive`, and the erasure notices and rectifications of those (see
    /// [`Config::may_send`]).
    pub fn may_receive(&self, peer: &NodeId, class: &str) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| allowed(&p.receive, class))
    }

    /// The control socket's path.
    pub fn control_socket(&self) -> PathBuf {
        self.data_dir.join("control.sock")
    }

    /// The database directory.
    pub fn db_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }
}

/// Whether a peer's `send` or `receive` list lets `class` through: see
/// [`Config::may_send`].
fn allowed(listed: &BTreeSet<String>, class: &str) -> bool {
    if listed.contains(class) {
        return true;
    }
    match ClassName::parse(class) {
        Ok(ClassName::ErasureNotice) => !listed.is_empty(),
        Ok(ClassName::Rectification) => listed.iter().any(|c| {
            matches!(
                ClassName::parse(c),
                Ok(ClassName::MinorRiskReport | ClassName::ProtectionFile)
            )
        }),
        _ => false,
    }
}

/// The longest review period the law of 29 March 2024 allows for records about minors:
/// review at least twice a year.
pub const MAX_MINOR_REVIEW_DAYS: i64 = 183;

fn resolve_retention(
    raw: BTreeMap<String, RawRetention>,
) -> Result<BTreeMap<ClassName, RetentionPolicy>, (String, String)> {
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        let field = |k: &str| format!("retention.{name}.{k}");
        let class = ClassName::parse(&name).map_err(|e| (format!("retention.{name}"), e))?;
        let mut p = RetentionPolicy::default_for(class);
        let days = |k: &str, v: &Option<String>, into: &mut time::Duration| match v {
            None => Ok(()),
            Some(v) => parse_days(v)
                .map(|d| *into = d)
                .map_err(|rule| (field(k), rule)),
        };
        days("review_every", &r.review_every, &mut p.review_every)?;
        days("keep_for", &r.keep_for, &mut p.keep_for)?;
        days("review_grace", &r.review_grace, &mut p.review_grace)?;
        if let Some(v) = &r.on_expiry {
            p.on_expiry = OnExpiry::parse(v).ok_or_else(|| {
                (
                    field("on_expiry"),
                    format!("{v:?} is not erase or restrict"),
                )
            })?;
        }
        if p.review_every < time::Duration::days(1) {
            return Err((field("review_every"), "must be at least 1d".into()));
        }
        if class == ClassName::MinorRiskReport
            && p.review_every > time::Duration::days(MAX_MINOR_REVIEW_DAYS)
        {
            return Err((
                field("review_every"),
                format!(
                    "{} days is longer than {MAX_MINOR_REVIEW_DAYS}: records about minors are \
                     reviewed at least twice a year (law of 29 March 2024)",
                    p.review_every.whole_days()
                ),
            ));
        }
        if p.keep_for < p.review_every {
            return Err((
                field("keep_for"),
                format!(
                    "{} days is shorter than review_every ({} days)",
                    p.keep_for.whole_days(),
                    p.review_every.whole_days()
                ),
            ));
        }
        out.insert(class, p);
    }
    Ok(out)
}

/// A period in whole days, weeks or years: `182d`, `26w`, `5y` (a year is 365 days).
fn parse_days(s: &str) -> Result<time::Duration, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let per = match unit {
        "d" => 1,
        "w" => 7,
        "y" => 365,
        _ => {
            return Err(format!(
                "{s:?} is not a period like \"182d\", \"26w\" or \"5y\""
            ))
        }
    };
    let n: i64 = n
        .parse()
        .ok()
        .filter(|n| (0..=100_000).contains(n))
        .ok_or_else(|| format!("{s:?} is not a period like \"182d\", \"26w\" or \"5y\""))?;
    Ok(time::Duration::days(n * per))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = "adolescence"
federation = "pons.example"
listen = "127.0.0.1:7443"
data_dir = "data/adolescence"

[tls]
ca = "../certs-dev/ca.pem"
crl = ["../certs-dev/ca.crl.pem"]
cert = "../certs-dev/adolescence/tls.pem"
key = "../certs-dev/adolescence/tls.key"

[signing]
cert = "../certs-dev/adolescence/sign.pem"
key = "../certs-dev/adolescence/sign.key"

[[peer]]
node_id = "cuta"
address = "127.0.0.1:7444"
send = ["minor-risk-report"]
receive = ["follow-up-request"]

[roles]
caseworker = { users = ["alice"], groups = ["pons-caseworkers"] }
dpo = { users = ["dora"] }
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/pons/adolescence.toml"))
    }

    #[test]
    fn parses_and_resolves_paths() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.node_id.as_str(), "adolescence");
        assert_eq!(c.data_dir, Path::new("/etc/pons/data/adolescence"));
        assert_eq!(c.tls.ca, Path::new("/etc/pons/../certs-dev/ca.pem"));
        let cuta = NodeId::new("cuta").unwrap();
        assert!(c.may_send(&cuta, "minor-risk-report"));
        assert!(!c.may_send(&cuta, "follow-up-request"));
        assert!(c.may_receive(&cuta, "follow-up-request"));
        assert!(!c.may_receive(&NodeId::new("nccn").unwrap(), "follow-up-request"));
        assert_eq!(c.limits.max_frame, 1024 * 1024);
        assert!(c.storage.sync, "fdatasync unless told not to");
        let unsynced = format!("{GOOD}\n[storage]\nsync = false\n");
        assert!(!parse(&unsynced).unwrap().storage.sync);
    }

    #[test]
    fn roles_by_user_and_group() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.roles.of("alice", &[]), BTreeSet::from([Role::Caseworker]));
        assert_eq!(
            c.roles.of("bob", &["pons-caseworkers".into()]),
            BTreeSet::from([Role::Caseworker])
        );
        assert_eq!(c.roles.of("dora", &[]), BTreeSet::from([Role::Dpo]));
        assert!(c.roles.of("mallory", &["staff".into()]).is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                GOOD.replace("\"127.0.0.1:7443\"", "\"localhost\""),
                "listen",
            ),
            (
                GOOD.replace("node_id = \"adolescence\"", "node_id = \"Adolescence\""),
                "node_id",
            ),
            (
                GOOD.replace("\"127.0.0.1:7444\"", "\"nowhere\""),
                "peer[0].address",
            ),
            (
                GOOD.replace("node_id = \"cuta\"", "node_id = \"adolescence\""),
                "peer[0].node_id",
            ),
            (GOOD.replace("dpo = ", "auditor = "), "roles.auditor"),
            (
                format!("{GOOD}\n[limits]\nmax_frame = 10\n"),
                "limits.max_frame",
            ),
        ];
        for (text, field) in cases {
            let err = parse(&text).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { field: f, .. } if f == field),
                "expected an error on {field}, got {err}"
            );
        }
        let err = parse(&format!("{GOOD}\nsurprise = 1\n")).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
        let err = parse(&GOOD.replace("federation = \"pons.example\"\n", "")).unwrap_err();
        assert!(err.to_string().contains("federation"), "{err}");
    }

    #[test]
    fn retention_per_class() {
        let c = parse(&format!(
            "{GOOD}\n[retention.minor-risk-report]\nreview_every = \"26w\"\nkeep_for = \"3y\"\n\
             review_grace = \"14d\"\n[retention.protection-file]\non_expiry = \"restrict\"\n"
        ))
        .unwrap();
        let mrr = c.retention(ClassName::MinorRiskReport);
        assert_eq!(mrr.review_every, time::Duration::days(182));
        assert_eq!(mrr.keep_for, time::Duration::days(3 * 365));
        assert_eq!(mrr.review_grace, time::Duration::days(14));
        assert_eq!(mrr.on_expiry, OnExpiry::Erase);
        let pf = c.retention(ClassName::ProtectionFile);
        assert_eq!(pf.on_expiry, OnExpiry::Restrict);
        assert_eq!(
            pf.review_every,
            RetentionPolicy::default_for(ClassName::ProtectionFile).review_every
        );
        assert_eq!(
            c.retention(ClassName::FollowUpRequest),
            RetentionPolicy::default_for(ClassName::FollowUpRequest)
        );
        assert_eq!(c.retention_of("no-such-class"), RetentionPolicy::fallback());

        for (table, field, words) in [
            (
                "[retention.minor-risk-report]\nreview_every = \"200d\"",
                "retention.minor-risk-report.review_every",
                "twice a year",
            ),
            (
                "[retention.minor-risk-report]\nkeep_for = \"5 years\"",
                "retention.minor-risk-report.keep_for",
                "not a period",
            ),
            (
                "[retention.minor-risk-report]\nkeep_for = \"30d\"",
                "retention.minor-risk-report.keep_for",
                "shorter than review_every",
            ),
            (
                "[retention.protection-file]\non_expiry = \"delete\"",
                "retention.protection-file.on_expiry",
                "erase or restrict",
            ),
            (
                "[retention.memo]\nkeep_for = \"1y\"",
                "retention.memo",
                "memo",
            ),
        ] {
            let err = parse(&format!("{GOOD}\n{table}\n")).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { field: f, rule, .. } if f == field && rule.contains(words)),
                "expected {field} ({words}), got {err}"
            );
        }
        let err = parse(&format!(
            "{GOOD}\n[retention.minor-risk-report]\nkeep = \"1y\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("keep"), "{err}");
    }

    #[test]
    fn notices_and_rectifications_follow_the_classes_exchanged() {
        let c = parse(GOOD).unwrap();
        let cuta = NodeId::new("cuta").unwrap();
        assert!(c.may_send(&cuta, "minor-risk-report"));
        assert!(c.may_send(&cuta, "erasure-notice"));
        assert!(c.may_send(&cuta, "rectification"));
        assert!(!c.may_send(&cuta, "protection-file"));
        // Only follow-up requests come back: their notices may too, not rectifications.
        assert!(c.may_receive(&cuta, "erasure-notice"));
        assert!(!c.may_receive(&cuta, "rectification"));
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    /// The configurations in `config/` parse and carry the documented policy.
    #[test]
    fn shipped_configs_parse_with_the_documented_policy() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let load = |name: &str| Config::load(&dir.join(name)).unwrap();
        let (a, c, n) = (
            load("adolescence.toml"),
            load("cuta.toml"),
            load("nccn.toml"),
        );
        let id = |s: &str| NodeId::new(s).unwrap();
        assert!(a.may_send(&id("cuta"), "minor-risk-report"));
        assert!(c.may_receive(&id("adolescence"), "minor-risk-report"));
        assert!(c.may_send(&id("adolescence"), "follow-up-request"));
        assert!(a.may_receive(&id("cuta"), "follow-up-request"));
        assert!(n.may_send(&id("cuta"), "protection-file"));
        assert!(c.may_receive(&id("nccn"), "protection-file"));
        assert!(c.may_send(&id("nccn"), "protection-file"));
        assert!(!c.may_receive(&id("nccn"), "minor-risk-report"));
        let ports: BTreeSet<u16> = [a.listen.port(), c.listen.port(), n.listen.port()].into();
        assert_eq!(ports.len(), 3, "one machine: different ports");
        assert_eq!(c.peers[&id("adolescence")].address, a.listen);
        assert_eq!(a.peers[&id("cuta")].address, c.listen);
        assert_eq!(n.peers[&id("cuta")].address, c.listen);
    }
}
