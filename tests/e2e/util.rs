//! The harness: a federation of real `pons` processes talking QUIC on 127.0.0.1.
//!
//! A [`Federation`] owns a temporary directory holding a development CA (made by
//! `pons pki dev-ca`) and one directory per node (made by `pons init`). Nodes are started
//! with `pons node run`; a node serves once it printed its `ready` line. Every wait is a
//! bounded poll ([`Federation::wait_until`]) that fails with the nodes' logs; nothing
//! sleeps a fixed time and nothing asserts on durations.
//!
//! When a test panics, dropping the federation kills its nodes and prints their logs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pons_node::control::{self, Request, Response};
use pons_store::{Options, Store};
use serde_json::Value;

/// The `pons` binary under test.
pub const PONS: &str = env!("CARGO_BIN_EXE_pons");
/// Record class: a report of a minor at risk (adolescence → cuta).
pub const MRR: &str = "minor-risk-report";
/// Record class: a question about a received record (cuta → adolescence).
pub const FUR: &str = "follow-up-request";
/// The upper bound of every wait. Generous: a loaded 2-core CI machine runs several of
/// these tests at once; a passing test returns as soon as its condition holds.
pub const DEADLINE: Duration = Duration::from_secs(120);
/// How often a wait checks its condition.
const POLL: Duration = Duration::from_millis(100);
/// Lines of each node log printed when a test fails.
const LOG_TAIL: usize = 150;

/// The example report shipped in `config/examples/`, as JSON, with its dates moved
/// relative to today (see [`example_report`]).
pub fn example_json() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples/minor-risk-report.json");
    let text = std::fs::read_to_string(&path).expect("read the example report");
    let mut report: Value = serde_json::from_str(&text).expect("the example report is JSON");
    // The shipped example has fixed dates; its review date passes on 2027-05-31. The
    // tests must not expire with it, so the retention dates move relative to today. The
    // subject is kept (tests search for it by its national register number): it comes of
    // age on 2028-05-14, and config/examples/ must get a younger subject before then.
    let today = time::OffsetDateTime::now_utc().date();
    let day = |d: time::Date| Value::from(d.to_string());
    report["review_by"] = day(today + time::Duration::days(180));
    report["erase_by"] = day(today + time::Duration::days(4 * 365));
    report
}

/// A file holding [`example_json`]: a valid minor-risk report as of today, made once per
/// test process in Cargo's temporary directory for integration tests.
pub fn example_report() -> PathBuf {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let today = time::OffsetDateTime::now_utc().date();
        let path = dir.join(format!("e2e-minor-risk-report-{today}.json"));
        // Written under a name of this process, then renamed: concurrent test runs never
        // read a half-written file.
        let partial = dir.join(format!("e2e-minor-risk-report.{}.tmp", std::process::id()));
        std::fs::write(&partial, example_json().to_string()).expect("write the report");
        std::fs::rename(&partial, &path).expect("rename the report");
        path
    })
    .clone()
}

/// A follow-up request about record `refers_to`; dates come from the retention defaults.
pub fn follow_up_json(refers_to: &str) -> Value {
    serde_json::json!({
        "marking": "sensitive-unclassified",
        "tlp": "TLP:AMBER",
        "legal_basis": "cooperation agreement between the Agency for Adolescence and CUTA, art. 4",
        "purpose": "threat assessment of a minor at risk of violent radicalisation",
        "justification": "the report leaves open whether contact with the group continued",
        "body": {
            "refers_to": refers_to,
            "question": "Has the subject been in contact with the group since the report?"
        }
    })
}

/// A free UDP port on 127.0.0.1: bound on port 0, read, released.
///
/// Another process may take it before the node binds it; the odds are small on a test
/// machine and the node then fails to start with a clear error in its log.
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    socket.local_addr().expect("local address").port()
}

/// What `pons init` is told about one node's peers and policy.
#[derive(Clone, Debug, Default)]
pub struct Init {
    peers: Vec<String>,
    send: Vec<(String, String)>,
    receive: Vec<(String, String)>,
    users: Option<String>,
}

impl Init {
    /// No peers, no policy, the current user in every role.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `node` (of the same federation) as a peer.
    pub fn peer(mut self, node: &str) -> Self {
        self.peers.push(node.to_owned());
        self
    }

    /// Allows sending `class` to `node`.
    pub fn send(mut self, node: &str, class: &str) -> Self {
        self.send.push((node.to_owned(), class.to_owned()));
        self
    }

    /// Allows receiving `class` from `node`.
    pub fn receive(mut self, node: &str, class: &str) -> Self {
        self.receive.push((node.to_owned(), class.to_owned()));
        self
    }

    /// Gives every role to `users` (comma-separated) instead of the current user.
    pub fn users(mut self, users: &str) -> Self {
        self.users = Some(users.to_owned());
        self
    }
}

/// The `ready` line of a started node.
#[derive(Clone, Debug)]
pub struct Ready {
    /// The whole line.
    pub line: String,
    /// Records resumed from the outbox.
    pub resumed: usize,
}

struct Node {
    dir: PathBuf,
    config: PathBuf,
    addr: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

/// A federation of nodes in a temporary directory.
pub struct Federation {
    dir: tempfile::TempDir,
    nodes: BTreeMap<String, Node>,
    rt: tokio::runtime::Runtime,
}

impl Federation {
    /// A development CA for `nodes` (`pons pki dev-ca`) and a free UDP port per node. No
    /// node is initialised yet: see [`Federation::init`].
    pub fn new(nodes: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("make a temporary directory");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("start a tokio runtime");
        let mut fed = Self {
            dir,
            nodes: BTreeMap::new(),
            rt,
        };
        for node in nodes {
            let dir = fed.path().join(node);
            let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
            fed.nodes.insert(
                (*node).to_owned(),
                Node {
                    config: dir.join("node.toml"),
                    log: fed.path().join(format!("{node}.log")),
                    dir,
                    addr,
                    child: None,
                },
            );
        }
        fed.pons_ok(&[
            "pki",
            "dev-ca",
            "--out",
            "certs",
            "--nodes",
            &nodes.join(","),
        ]);
        fed
    }

    /// The federation's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The dev CA's directory (`ca.pem`, `pseudonym.key`, `<node>/{tls,sign}.{pem,key}`).
    pub fn certs(&self) -> PathBuf {
        self.path().join("certs")
    }

    fn node(&self, node: &str) -> &Node {
        self.nodes
            .get(node)
            .unwrap_or_else(|| panic!("{node} is not a node of this federation"))
    }

    /// The node's directory (`node.toml`, `certs/`, `data/`, as `pons init` makes them).
    pub fn dir(&self, node: &str) -> PathBuf {
        self.node(node).dir.clone()
    }

    /// The node's configuration file.
    pub fn config(&self, node: &str) -> PathBuf {
        self.node(node).config.clone()
    }

    /// The node's QUIC address.
    pub fn addr(&self, node: &str) -> SocketAddr {
        self.node(node).addr
    }

    /// Writes `value` as `name` in the federation's directory; returns the path.
    pub fn write_json(&self, name: &str, value: &Value) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, value.to_string()).expect("write a JSON file");
        path
    }

    /// `pons init` for `node` with its peers and policy.
    pub fn init(&self, node: &str, init: &Init) {
        let n = self.node(node);
        let mut args: Vec<String> = vec![
            "init".into(),
            "--node-id".into(),
            node.into(),
            "--dir".into(),
            n.dir.display().to_string(),
            "--certs".into(),
            "certs".into(),
            "--listen".into(),
            n.addr.to_string(),
        ];
        for peer in &init.peers {
            args.push("--peer".into());
            args.push(format!("{peer}={}", self.addr(peer)));
        }
        for (peer, class) in &init.send {
            args.push("--send".into());
            args.push(format!("{peer}:{class}"));
        }
        for (peer, class) in &init.receive {
            args.push("--receive".into());
            args.push(format!("{peer}:{class}"));
        }
        if let Some(users) = &init.users {
            args.push("--users".into());
            args.push(users.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.pons_ok(&args);
    }

    /// Starts `pons node run` for `node` and waits for its `ready` line.
    pub fn start(&mut self, node: &str) -> Ready {
        let mut command = Command::new(PONS);
        command
            .args(["node", "run", "--config"])
            .arg(&self.node(node).config);
        self.start_with(node, command)
    }

    /// Starts `node` with `command` (which must end in `pons node run` for the node's
    /// directory, as an entrypoint script does) and waits for its `ready` line.
    pub fn start_with(&mut self, node: &str, mut command: Command) -> Ready {
        let n = self.node(node);
        assert!(n.child.is_none(), "{node} is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("open the node log");
        let mut child = command
            .current_dir(self.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn the node");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Drains stdout for the node's whole life, so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining.
                    continue;
                }
            }
        });
        self.nodes.get_mut(node).expect("node").child = Some(child);
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match rx.recv_timeout(left.min(POLL)) {
                Ok(line) if line.starts_with("ready ") => return parse_ready(&line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.reap(node);
                    panic!("{node} exited before it was ready ({status})");
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                    panic!("{node} printed no ready line within {DEADLINE:?}")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Waits (bounded) for the exited child of `node` and describes its exit.
    fn reap(&mut self, node: &str) -> String {
        let Some(mut child) = self.nodes.get_mut(node).and_then(|n| n.child.take()) else {
            return "not running".into();
        };
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if start.elapsed() > DEADLINE => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return format!("did not exit within {DEADLINE:?}; killed");
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(e) => return format!("cannot wait: {e}"),
            }
        }
    }

    fn signal(&mut self, node: &str, signal: Signal) -> std::process::ExitStatus {
        let n = self.nodes.get_mut(node).expect("node");
        let mut child = n
            .child
            .take()
            .unwrap_or_else(|| panic!("{node} is not running"));
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        kill(pid, signal).expect("signal the node");
        let start = Instant::now();
        loop {
            match child.try_wait().expect("wait for the node") {
                Some(status) => return status,
                None if start.elapsed() > DEADLINE => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{node} did not exit within {DEADLINE:?} of {signal}");
                }
                None => std::thread::sleep(POLL),
            }
        }
    }

    /// Stops `node` with SIGTERM and waits until it exited; it must exit 0.
    pub fn stop(&mut self, node: &str) {
        let status = self.signal(node, Signal::SIGTERM);
        assert!(status.success(), "{node} stopped with {status}");
    }

    /// Kills `node` with SIGKILL and waits until it is gone.
    pub fn kill(&mut self, node: &str) {
        let _ = self.signal(node, Signal::SIGKILL);
    }

    /// Stops every running node with SIGTERM.
    pub fn stop_all(&mut self) {
        let running: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.child.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for node in running {
            self.stop(&node);
        }
    }

    /// Runs `pons ARGS` in the federation's directory.
    pub fn pons(&self, args: &[&str]) -> Output {
        Command::new(PONS)
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .expect("run pons")
    }

    /// Runs `pons ARGS`, which must exit 0; returns its stdout.
    pub fn pons_ok(&self, args: &[&str]) -> String {
        let out = self.pons(args);
        assert!(
            out.status.success(),
            "pons {} exited with {}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// `pons submit` of `file` from `node` to `to`; returns the record id printed on the
    /// last line.
    pub fn submit(&self, node: &str, to: &str, class: &str, file: &Path) -> String {
        let config = self.config(node);
        let out = self.pons_ok(&submit_args(&config, to, class, file));
        let id = out.lines().last().unwrap_or_default().trim().to_owned();
        uuid::Uuid::parse_str(&id)
            .unwrap_or_else(|e| panic!("submit printed {id:?} as its last line: {e}"));
        id
    }

    /// Submits a report through the control socket, as `pons submit` does; returns the id.
    pub fn submit_direct(&self, node: &str, to: &str, class: &str, report: &str) -> String {
        let body = self.control_ok(
            node,
            Request::Submit {
                to: to.into(),
                class: class.into(),
                report: report.into(),
                purpose: Some("e2e test".into()),
                justification: Some("e2e test".into()),
            },
        );
        body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("submit answered without an id: {body}"))
            .to_owned()
    }

    /// Sends one request to the node's control socket.
    pub fn control(&self, node: &str, request: Request) -> Response {
        let socket = self.node(node).dir.join("data/control.sock");
        self.rt
            .block_on(control::call(&socket, &request))
            .unwrap_or_else(|e| panic!("control socket of {node}: {e}"))
    }

    /// Sends one request to the node's control socket; it must succeed.
    pub fn control_ok(&self, node: &str, request: Request) -> Value {
        match self.control(node, request) {
            Response::Ok { body } => body,
            other => panic!("{node} refused a control request: {other:?}"),
        }
    }

    /// Runs a future on the federation's (current-thread) tokio runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// `pons outbox list --format jsonl`, parsed.
    pub fn outbox_jsonl(&self, node: &str) -> Vec<Value> {
        self.list(node, "outbox")
    }

    /// `pons inbox list --format jsonl`, parsed.
    pub fn inbox_jsonl(&self, node: &str) -> Vec<Value> {
        self.list(node, "inbox")
    }

    fn list(&self, node: &str, what: &str) -> Vec<Value> {
        let config = self.config(node);
        let config = config.display().to_string();
        let out = self.pons_ok(&[what, "list", "--config", &config, "--format", "jsonl"]);
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what} line {l:?}: {e}")))
            .collect()
    }

    /// Opens the node's store; the node must be stopped (sled locks the database).
    pub fn store(&self, node: &str) -> Store {
        let n = self.node(node);
        assert!(
            n.child.is_none(),
            "{node} must be stopped to open its store"
        );
        Store::open(n.dir.join("data/db"), Options::default())
            .unwrap_or_else(|e| panic!("open the store of {node}: {e}"))
    }

    /// Opens the node's store with its master key, so that bodies can be read; the node
    /// must be stopped.
    pub fn store_keyed(&self, node: &str) -> Store {
        let n = self.node(node);
        assert!(
            n.child.is_none(),
            "{node} must be stopped to open its store"
        );
        let config = pons_node::Config::load(&n.config).expect("node config");
        let key = config.master_key.expect("pons init sets master_key");
        let mut options = Options::default();
        options.master_key =
            Some(pons_node::secret::load_master_key(&key).expect("load the master key"));
        Store::open(n.dir.join("data/db"), options)
            .unwrap_or_else(|e| panic!("open the store of {node}: {e}"))
    }

    /// Polls `check` until it returns `Some`, for at most [`DEADLINE`]; then fails saying
    /// what was awaited (and, through `Drop`, showing the node logs).
    pub fn wait_until<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            if start.elapsed() > DEADLINE {
                panic!("gave up after {DEADLINE:?} waiting until {what}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// The log of `node` (its stderr over every run).
    pub fn log(&self, node: &str) -> String {
        std::fs::read_to_string(&self.node(node).log).unwrap_or_default()
    }

    /// The last lines of every node's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for id in self.nodes.keys() {
            let log = self.log(id);
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(LOG_TAIL);
            let _ = writeln!(
                out,
                "----- {id} log (last {} of {} lines) -----",
                lines.len() - from,
                lines.len()
            );
            for line in &lines[from..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("federation in {}", self.path().display());
            eprintln!("{}", self.logs());
        }
    }
}

/// The arguments of `pons submit` (for tests that run it themselves).
pub fn submit_args<'a>(
    config: &'a Path,
    to: &'a str,
    class: &'a str,
    file: &'a Path,
) -> Vec<&'a str> {
    vec![
        "submit",
        "--config",
        config.to_str().expect("UTF-8 path"),
        "--to",
        to,
        "--class",
        class,
        "--file",
        file.to_str().expect("UTF-8 path"),
        "--purpose",
        "e2e test",
        "--justification",
        "e2e test",
    ]
}

fn parse_ready(line: &str) -> Ready {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_else(|| panic!("ready line {line:?} has no {name}"))
            .to_owned()
    };
    Ready {
        line: line.to_owned(),
        resumed: field("resumed").parse().expect("resumed is a number"),
    }
}

/// The `id` of each listed record.
pub fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|r| r["id"].as_str().expect("record id").to_owned())
        .collect()
}

/// The `state` of the listed record `id`, if listed.
pub fn state_of<'a>(list: &'a [Value], id: &str) -> Option<&'a str> {
    list.iter()
        .find(|r| r["id"] == id)
        .and_then(|r| r["state"].as_str())
}

/// Counts of each id in `ids`.
pub fn counts<'a>(ids: impl IntoIterator<Item = &'a String>) -> BTreeMap<&'a str, usize> {
    let mut out = BTreeMap::new();
    for id in ids {
        *out.entry(id.as_str()).or_insert(0) += 1;
    }
    out
}

/// Every journal entry of a store, in order.
pub fn journal(store: &Store) -> Vec<pons_core::journal::JournalEntry> {
    store
        .journal_iter(0)
        .collect::<Result<Vec<_>, _>>()
        .expect("read the journal")
}

/// Ids of the journal entries with operation `op`, one per entry (duplicates kept).
pub fn journaled(
    entries: &[pons_core::journal::JournalEntry],
    op: pons_core::journal::Operation,
) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.operation == op)
        .map(|e| {
            e.record_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "<no record>".into())
        })
        .collect()
}
