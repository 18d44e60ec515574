//! The control socket: how the `pons` CLI talks to a running node.
//!
//! A Unix stream socket in the node's data directory, mode 0660. A request is one line of
//! JSON, its response one line of JSON; a connection carries requests one after the other
//! until the caller closes its side (the CLI sends one; an agency's system or `pons bench`
//! keeps a [`Connection`] open). The caller's uid
//! comes from the socket's peer credentials (`SO_PEERCRED`), never from the request: it is
//! the actor written in the journal and it decides the caller's roles.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::{Role, Roles};

/// The largest request accepted on the control socket: a report plus its envelope fields.
pub const MAX_REQUEST: usize = 2 * 1024 * 1024;

/// A request from the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Request {
    /// Validate, seal and store a report for delivery.
    Submit {
        /// The recipient node.
        to: String,
        /// The record class.
        class: String,
        /// The report as the caseworker wrote it (JSON text).
        report: String,
        /// Why the record is sent, if not in the report.
        purpose: Option<String>,
        /// Why the disclosure is necessary, if not in the report.
        justification: Option<String>,
    },
    /// List the outbox.
    OutboxList,
    /// Show one outbox record's delivery state.
    OutboxShow {
        /// The record id.
        id: String,
    },
    /// List the inbox (metadata only: no content).
    InboxList,
    /// Show a received record: a consultation, journaled with its justification.
    InboxShow {
        /// The record id.
        id: String,
        /// Why the caller consults the record.
        justification: String,
    },
    /// Export a record as its COSE envelope (base64) or as JSON.
    RecordExport {
        /// The record id.
        id: String,
        /// `cose` or `json`.
        format: String,
        /// Why the caller exports the record.
        justification: String,
    },
    /// Peers, queues and errors.
    Status,
    /// Read a `stream` sink of the feed: records after `from` (default: its cursor).
    FeedRead {
        /// The sink; may be left out when the node has one stream sink.
        sink: Option<String>,
        /// Read after this arrival number instead of after the sink's cursor.
        from: Option<u64>,
        /// The most records to return (default 100, at most 1000).
        limit: Option<usize>,
        /// When nothing is there, wait up to this long for a record (at most 60 s).
        wait_ms: Option<u64>,
    },
    /// Acknowledge a `stream` sink's records up to `cursor` (journaled as disclosures).
    FeedAck {
        /// The sink; may be left out when the node has one stream sink.
        sink: Option<String>,
        /// The arrival number of the last record taken.
        cursor: u64,
    },
    /// Records the feed's sinks set aside.
    FeedDeadLetters {
        /// Only this sink's.
        sink: Option<String>,
    },
    /// Hand a dead letter over again.
    FeedRetry {
        /// The sink; found from the record when left out.
        sink: Option<String>,
        /// The record id.
        id: String,
    },
    /// Verify the journal chain and checkpoints (role dpo; journaled as `journal-read`).
    JournalVerify {
        /// Why the caller reads the journal.
        justification: String,
    },
    /// Search the journal (role dpo; journaled as `journal-read`).
    JournalSearch {
        /// The filters.
        query: crate::journal::JournalQuery,
        /// Why the caller reads the journal.
        justification: String,
    },
    /// Export the journal as export lines (role dpo; journaled as `export`).
    JournalExport {
        /// The filters.
        query: crate::journal::JournalQuery,
        /// Why the caller exports the journal.
        justification: String,
    },
    /// Prune journal entries older than a date, back to a signed checkpoint (role operator
    /// or dpo; journaled as `erase`).
    JournalPrune {
        /// Entries before this date or time may go.
        before: String,
        /// Why.
        justification: String,
    },
    /// The DPO report's figures (role dpo; journaled as `journal-read`).
    DpoReport {
        /// From this date or time.
        since: Option<String>,
        /// Until this date (included) or time.
        until: Option<String>,
        /// Why the caller reads the journal.
        justification: String,
    },
    /// Rectify a record this node sent: the full corrected report goes to its recipient as
    /// a `rectification`, and the original is erased here and there (role caseworker).
    Rectify {
        /// The record to correct.
        id: String,
        /// The corrected report, JSON, of the original's class.
        report: String,
        /// What was wrong.
        reason: String,
    },
    /// Place (`add`) or lift a legal hold on a record (role operator or dpo; journaled as
    /// `hold`). A held record is restricted and never erased.
    Hold {
        /// The record id.
        id: String,
        /// Why (e.g. a case reference).
        reason: String,
        /// Place the hold (`true`) or lift it.
        add: bool,
    },
    /// Review a record: `keep` or `erase` (role dpo or operator; journaled as `review`).
    Review {
        /// The record id.
        id: String,
        /// `keep` or `erase`.
        decision: String,
        /// Why.
        justification: String,
    },
    /// What a retention sweep would erase and what is restricted, and why; changes nothing.
    RetentionPlan,
    /// Erase every record due for erasure now (journaled as `erase`, one tombstone each).
    RetentionSweep,
}

/// The answer to a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// Done; the body depends on the request.
    Ok {
        /// The result.
        body: serde_json::Value,
    },
    /// Refused or failed.
    Err {
        /// The CLI's exit code: 1 runtime failure, 2 usage or validation, 3 integrity.
        code: u8,
        /// One line saying what went wrong.
        message: String,
        /// Every individual problem, e.g. each validation error.
        #[serde(default)]
        details: Vec<String>,
    },
}

impl Response {
    /// A success.
    pub fn ok(body: impl Serialize) -> Self {
        match serde_json::to_value(body) {
            Ok(body) => Self::Ok { body },
            Err(e) => Self::runtime(format!("cannot encode the response: {e}")),
        }
    }

    /// A runtime failure (exit 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::Err {
            code: 1,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Refused input (exit 2).
    pub fn invalid(message: impl Into<String>, details: Vec<String>) -> Self {
        Self::Err {
            code: 2,
            message: message.into(),
            details,
        }
    }

    /// An integrity failure (exit 3).
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::Err {
            code: 3,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

/// Who is calling, from the socket's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The OS user id.
    pub uid: u32,
    /// The OS user name, or `uid:<n>` when the uid has no name.
    pub user: String,
    /// The roles the user holds under the node's configuration.
    pub roles: BTreeSet<Role>,
}

impl Caller {
    /// Resolves a uid and gid to a user, its groups and its roles.
    pub fn resolve(uid: u32, gid: u32, roles: &Roles) -> Self {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten();
        let (name, groups) = match user {
            Some(u) => {
                let groups = CString::new(u.name.clone())
                    .ok()
                    .and_then(|c| {
                        nix::unistd::getgrouplist(&c, nix::unistd::Gid::from_raw(gid)).ok()
                    })
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|g| nix::unistd::Group::from_gid(g).ok().flatten())
                    .map(|g| g.name)
                    .collect::<Vec<_>>();
                (u.name, groups)
            }
            None => (format!("uid:{uid}"), Vec::new()),
        };
        let roles = roles.of(&name, &groups);
        Self {
            uid,
            user: name,
            roles,
        }
    }

    /// The role the caller acts in for an operation allowed to `roles`: the first of
    /// `roles` (in the order given) that the caller holds. The journal records this role,
    /// not merely any role of the caller's.
    pub fn acting_role(&self, roles: &[Role]) -> Option<Role> {
        roles.iter().copied().find(|r| self.roles.contains(r))
    }

    /// Whether the caller holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }
}

/// What serves control requests: the node runtime.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `caller`.
    fn handle(
        &self,
        caller: Caller,
        request: Request,
    ) -> impl std::future::Future<Output = Response> + Send;
}

/// Binds the control socket at `path` with mode 0660, replacing a stale socket file.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // The data directory is 0750, so no other user can reach the socket in the moment
    // between bind and chmod.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// How long a resolved caller (user name, groups, roles) is reused for later connections
/// from the same uid and gid: a group change on the host takes effect within this time.
pub const CALLER_TTL: Duration = Duration::from_secs(1);

/// The callers resolved recently, by (uid, gid): the user and group lookups (`getpwuid`,
/// `getgrouplist`, one `getgrgid` per group) cost more than a small request's own work
/// (issue 7). Entries are reused for [`CALLER_TTL`] only; the map is emptied when it holds
/// [`CallerCache::MAX`] of them.
struct CallerCache {
    roles: Roles,
    entries: Mutex<HashMap<(u32, u32), (Instant, Caller)>>,
}

impl CallerCache {
    const MAX: usize = 1024;

    fn new(roles: Roles) -> Self {
        Self {
            roles,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn resolve(&self, uid: u32, gid: u32) -> Caller {
        let now = Instant::now();
        if let Some((at, caller)) = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(uid, gid))
        {
            if now.duration_since(*at) < CALLER_TTL {
                return caller.clone();
            }
        }
        let caller = Caller::resolve(uid, gid, &self.roles);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= Self::MAX {
            entries.clear();
        }
        entries.insert((uid, gid), (now, caller.clone()));
        caller
    }
}

/// Serves requests until the listener fails; each connection runs in its own task.
pub async fn serve<H: Handler>(listener: UnixListener, roles: Roles, handler: Arc<H>) {
    serve_within(listener, roles, handler, ConnectionLimits::default()).await;
}

/// How many control connections may be open at once, and how long one may stay silent.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    /// Past this many, a new connection is answered with a refusal and closed.
    max_open: usize,
    /// A connection that sends no complete request for this long is closed (longer than
    /// the longest `feed-read` wait, 60 s).
    idle: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_open: MAX_CONNECTIONS,
            idle: IDLE_TIMEOUT,
        }
    }
}

/// The most control connections open at once: a local user who may reach the socket
/// cannot hold the node's memory or tasks with idle ones.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long a control connection may go without sending a whole request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

async fn serve_within<H: Handler>(
    listener: UnixListener,
    roles: Roles,
    handler: Arc<H>,
    limits: ConnectionLimits,
) {
    let callers = Arc::new(CallerCache::new(roles));
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_open));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_open,
                "control connection refused: too many open"
            );
            tokio::spawn(refuse(stream, limits.max_open));
            continue;
        };
        let handler = handler.clone();
        let callers = Arc::clone(&callers);
        tokio::spawn(async move {
            if let Err(e) = serve_one(stream, &callers, &*handler, limits.idle).await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Answers a connection past the limit with why, and closes it.
async fn refuse(mut stream: UnixStream, max_open: usize) {
    let refusal = Response::runtime(format!(
        "the node has {max_open} control connections open, its limit; close one and retry"
    ));
    if let Ok(mut out) = serde_json::to_vec(&refusal) {
        out.push(b'\n');
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.shutdown().await;
    // Closing with the caller's request unread would reset the connection before the caller
    // read the refusal: read what it sent (bounded) first.
    let mut request = (&mut stream).take(MAX_REQUEST as u64);
    let mut sink = tokio::io::sink();
    let drain = tokio::io::copy(&mut request, &mut sink);
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

async fn serve_one<H: Handler>(
    stream: UnixStream,
    callers: &CallerCache,
    handler: &H,
    idle: Duration,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut read).take(MAX_REQUEST as u64 + 1);
        let request = limited.read_until(b'\n', &mut line);
        let Ok(n) = tokio::time::timeout(idle, request).await else {
            tracing::debug!(uid = cred.uid(), "control connection closed: idle");
            break;
        };
        let n = n?;
        if n == 0 {
            break;
        }
        // Roles are looked up for every request (cached for a second), so a long-lived
        // connection does not keep a role its user has lost.
        let caller = callers.resolve(cred.uid(), cred.gid());
        let (response, go_on) = if n > MAX_REQUEST && !line.ends_with(b"\n") {
            // The rest of an oversized line cannot be told from the next request: answer
            // and close.
            let refusal = Response::invalid(
                format!("request is larger than {MAX_REQUEST} bytes"),
                Vec::new(),
            );
            (refusal, false)
        } else {
            let response = match serde_json::from_slice::<Request>(&line) {
                Ok(request) => handler.handle(caller, request).await,
                Err(e) => Response::invalid(format!("malformed control request: {e}"), Vec::new()),
            };
            (response, true)
        };
        let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
        out.push(b'\n');
        write.write_all(&out).await?;
        if !go_on {
            break;
        }
    }
    write.shutdown().await
}

/// Sends one request to the node listening at `path` and reads its response.
pub async fn call(path: &Path, request: &Request) -> std::io::Result<Response> {
    let mut stream = UnixStream::connect(path).await?;
    stream.write_all(&request_line(request)?).await?;
    // Our only request: the node answers it and closes.
    stream.shutdown().await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    parse_response(&out)
}

/// A connection to a node's control socket that carries many requests, one at a time.
#[derive(Debug)]
pub struct Connection {
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: tokio::net::unix::OwnedWriteHalf,
    line: Vec<u8>,
}

impl Connection {
    /// Connects to the node listening at `path`.
    pub async fn open(path: &Path) -> std::io::Result<Connection> {
        let (read, write) = UnixStream::connect(path).await?.into_split();
        Ok(Connection {
            read: BufReader::new(read),
            write,
            line: Vec::new(),
        })
    }

    /// Sends `request` and reads its response.
    pub async fn call(&mut self, request: &Request) -> std::io::Result<Response> {
        self.write.write_all(&request_line(request)?).await?;
        self.line.clear();
        if self.read.read_until(b'\n', &mut self.line).await? == 0 {
            return Err(closed());
        }
        parse_response(&self.line)
    }
}

/// [`Connection`] with blocking reads and writes, for a caller on a thread of its own: one
/// that must start a request at a given moment without waiting for an async runtime to
/// wake its task (`pons bench`'s open loop).
#[derive(Debug)]
pub struct BlockingConnection {
    read: std::io::BufReader<std::os::unix::net::UnixStream>,
    write: std::os::unix::net::UnixStream,
    line: Vec<u8>,
}

impl BlockingConnection {
    /// Connects to the node listening at `path`.
    pub fn open(path: &Path) -> std::io::Result<BlockingConnection> {
        let write = std::os::unix::net::UnixStream::connect(path)?;
        Ok(BlockingConnection {
            read: std::io::BufReader::new(write.try_clone()?),
            write,
            line: Vec::new(),
        })
    }

    /// Sends `request` and reads its response.
    pub fn call(&mut self, request: &Request) -> std::io::Result<Response> {
        use std::io::{BufRead, Write};
        self.write.write_all(&request_line(request)?)?;
        self.line.clear();
        if self.read.read_until(b'\n', &mut self.line)? == 0 {
            return Err(closed());
        }
        parse_response(&self.line)
    }
}

/// `request` as the line the socket takes: its JSON and a newline.
fn request_line(request: &Request) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

fn closed() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the node closed the control connection",
    )
}

fn parse_response(bytes: &[u8]) -> std::io::Result<Response> {
    serde_json::from_slice(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed response: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoleMembers;

    struct Echo;

    impl Handler for Echo {
        async fn handle(&self, caller: Caller, request: Request) -> Response {
            match request {
                Request::Status if caller.has_any(&[Role::Operator]) => {
                    Response::ok(serde_json::json!({ "user": caller.user, "uid": caller.uid }))
                }
                Request::Status => Response::invalid("status needs the operator role", vec![]),
                _ => Response::runtime("not in this test"),
            }
        }
    }

    /// The name of the user running the tests.
    fn current_user() -> String {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap()
            .name
    }

    fn roles_for(user: &str) -> Roles {
        let mut roles = Roles::default();
        let members = RoleMembers {
            users: [user.to_owned()].into(),
            groups: Default::default(),
        };
        roles.members.insert(Role::Operator, members);
        roles
    }

    #[tokio::test]
    async fn caller_comes_from_peer_credentials_and_roles_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let me = current_user();

        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let server = tokio::spawn(serve(listener, roles_for(&me), Arc::new(Echo)));
        match call(&path, &Request::Status).await.unwrap() {
            Response::Ok { body } => {
                assert_eq!(body["user"], me.as_str());
                assert_eq!(body["uid"], nix::unistd::getuid().as_raw());
            }
            other => panic!("expected ok, got {other:?}"),
        }
        server.abort();

        // The same user without the role is refused.
        let listener = bind(&path).unwrap();
        let server = tokio::spawn(serve(listener, roles_for("somebody-else"), Arc::new(Echo)));
        let resp = call(&path, &Request::Status).await.unwrap();
        assert!(matches!(resp, Response::Err { code: 2, .. }), "{resp:?}");
        server.abort();
    }

    #[tokio::test]
    async fn malformed_request_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let server = tokio::spawn(serve(
            bind(&path).unwrap(),
            Roles::default(),
            Arc::new(Echo),
        ));
        let mut stream = UnixStream::connect(&path).await.unwrap();
        stream
            .write_all(b"{\"op\":\"launch-missiles\"}\n")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        let resp: Response = serde_json::from_str(&out).unwrap();
        match resp {
            Response::Err { code, message, .. } => {
                assert_eq!(code, 2);
                assert!(message.contains("launch-missiles"), "{message}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        server.abort();
    }

    /// Past the limit a connection is refused with why; a silent one is closed; a slot
    /// freed is taken again.
    #[tokio::test]
    async fn connections_past_the_limit_are_refused_and_silent_ones_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let me = current_user();
        let limits = ConnectionLimits {
            max_open: 2,
            idle: Duration::from_millis(300),
        };
        let server = tokio::spawn(serve_within(
            bind(&path).unwrap(),
            roles_for(&me),
            Arc::new(Echo),
            limits,
        ));
        let mut first = Connection::open(&path).await.unwrap();
        let mut second = Connection::open(&path).await.unwrap();
        assert!(matches!(
            first.call(&Request::Status).await.unwrap(),
            Response::Ok { .. }
        ));
        assert!(matches!(
            second.call(&Request::Status).await.unwrap(),
            Response::Ok { .. }
        ));
        match call(&path, &Request::Status).await.unwrap() {
            Response::Err { message, .. } => {
                assert!(message.contains("2 control connections open"), "{message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Both fall silent and are closed; their slots serve new connections.
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), first.read.read_to_end(&mut rest));
        assert!(closed.await.is_ok(), "a silent connection is closed");
        assert!(rest.is_empty());
        drop((first, second));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let resp = call(&path, &Request::Status).await.unwrap();
        assert!(matches!(resp, Response::Ok { .. }), "{resp:?}");
        server.abort();
    }

    /// The `Echo` handler serving a socket in a fresh directory (kept while its handle
    /// lives), the current user holding every role.
    fn echo_server() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        String,
        tokio::task::JoinHandle<()>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let me = current_user();
        let server = tokio::spawn(serve(bind(&path).unwrap(), roles_for(&me), Arc::new(Echo)));
        (dir, path, me, server)
    }

    /// One connection carries many requests, each answered in turn; a malformed one is
    /// refused without closing it; closing our side ends it.
    #[tokio::test]
    async fn a_connection_carries_requests_one_after_the_other() {
        let (_dir, path, me, server) = echo_server();
        let mut conn = Connection::open(&path).await.unwrap();
        for _ in 0..3 {
            let resp = conn.call(&Request::Status).await.unwrap();
            assert!(
                matches!(&resp, Response::Ok { body } if body["user"] == me.as_str()),
                "{resp:?}"
            );
        }
        let resp = conn.call(&Request::OutboxList).await.unwrap();
        assert!(matches!(resp, Response::Err { .. }), "{resp:?}");
        conn.write.write_all(b"not json\n").await.unwrap();
        let mut line = String::new();
        conn.read.read_line(&mut line).await.unwrap();
        assert!(line.contains("malformed control request"), "{line}");
        let resp = conn.call(&Request::Status).await.unwrap();
        assert!(matches!(resp, Response::Ok { .. }), "{resp:?}");
        conn.write.shutdown().await.unwrap();
        let mut rest = Vec::new();
        conn.read.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing after the last answer");
        server.abort();
    }

    /// The blocking connection speaks the same protocol: requests answered in turn, and a
    /// refused one leaves the connection open.
    #[tokio::test]
    async fn a_blocking_connection_carries_requests_one_after_the_other() {
        let (_dir, path, me, server) = echo_server();
        tokio::task::spawn_blocking(move || {
            let mut conn = BlockingConnection::open(&path).unwrap();
            for _ in 0..3 {
                let resp = conn.call(&Request::Status).unwrap();
                assert!(
                    matches!(&resp, Response::Ok { body } if body["user"] == me.as_str()),
                    "{resp:?}"
                );
            }
            let resp = conn.call(&Request::OutboxList).unwrap();
            assert!(matches!(resp, Response::Err { .. }), "{resp:?}");
            let resp = conn.call(&Request::Status).unwrap();
            assert!(matches!(resp, Response::Ok { .. }), "{resp:?}");
        })
        .await
        .unwrap();
        server.abort();
    }
}
