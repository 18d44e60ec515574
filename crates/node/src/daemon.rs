//! `pons node run`: start the node, serve until told to stop, drain, stop.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pons_core::NodeId;
use pons_pki::{FederationTrust, NodeFiles, NodeIdentity};
use pons_proto::Frame;
use pons_store::{Durability, Options, Store};
use pons_transport::{Endpoint, Limits, Outbox, PeerDriver, ResponseOutcome};
use uuid::Uuid;

use crate::config::Config;
use crate::control;
use crate::runtime::{Clock, Links, Runtime, DRAIN_DEADLINE};
use crate::secret::{load_master_key, load_pseudonym_key, SecretError};

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A certificate, key or CRL was refused.
    #[error(transparent)]
    Pki(#[from] pons_pki::PkiError),
    /// The pseudonym key or the master key was refused.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The configuration contradicts the certificates.
    #[error("config {field}: {rule}")]
    Config {
        /// The key.
        field: &'static str,
        /// The rule.
        rule: String,
    },
    /// The database could not be opened.
    #[error("database {path}: {source}")]
    Store {
        /// The database directory.
        path: PathBuf,
        /// The store's error.
        source: pons_store::StoreError,
    },
    /// The QUIC endpoint could not start.
    #[error(transparent)]
    Transport(#[from] pons_transport::TransportError),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A started node: its addresses, for the caller to announce.
#[derive(Debug, Clone)]
pub struct Started {
    /// The QUIC endpoint's bound address.
    pub quic: SocketAddr,
    /// The control socket.
    pub control: PathBuf,
    /// Whether an existing database was opened (sled's `was_recovered`), rather than a new
    /// one created.
    pub recovered: bool,
    /// Records resumed from the outbox.
    pub resumed: usize,
}

/// Runs the node until `shutdown` completes, then drains and stops.
///
/// `on_start` is called once the node accepts records and control requests.
pub async fn run(
    config: Config,
    clock: Clock,
    on_start: impl FnOnce(&Started),
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let now = clock();
    let files = NodeFiles {
        tls_cert: config.tls.cert.clone(),
        tls_key: config.tls.key.clone(),
        sign_cert: config.signing.cert.clone(),
        sign_key: config.signing.key.clone(),
    };
    let identity = NodeIdentity::load(&files, now)?;
    if identity.node() != &config.node_id {
        return Err(NodeError::Config {
            field: "node_id",
            rule: format!(
                "is {} but the certificates name node {}",
                config.node_id,
                identity.node()
            ),
        });
    }
    if identity.federation() != config.federation {
        return Err(NodeError::Config {
            field: "federation",
            rule: format!(
                "is {} but the certificates name federation {}",
                config.federation,
                identity.federation()
            ),
        });
    }
    let crls: Vec<&std::path::Path> = config.tls.crl.iter().map(|p| p.as_path()).collect();
    let trust = FederationTrust::load(&config.federation, &config.tls.ca, &crls)?;
    trust.check_identity(&identity, Some(&files), now)?;
    let core_trust = trust.to_core()?;
    let signer = identity.signer()?;
    let key_path = config.pseudonym_key.clone().ok_or(NodeError::Config {
        field: "pseudonym_key",
        rule: "is required: the federation's subject pseudonym key file".into(),
    })?;
    let pseudonym_key = load_pseudonym_key(&key_path)?;
    let master_path = config.master_key.clone().ok_or(NodeError::Config {
        field: "master_key",
        rule: "is required: the key file that encrypts record bodies at rest (pons init)".into(),
    })?;
    let master_key = load_master_key(&master_path)?;

    make_private_dir(&config.data_dir)?;
    let db_dir = config.db_dir();
    let durability = if config.storage.sync {
        Durability::FlushAndSync
    } else {
        Durability::Flush
    };
    let mut options = Options::default();
    options.durability = durability;
    options.master_key = Some(master_key);
    let store = Store::open(&db_dir, options).map_err(|source| NodeError::Store {
        path: db_dir.clone(),
        source,
    })?;
    let recovered = store.was_recovered();

    let limits = Limits {
        max_frame: config.limits.max_frame,
        max_streams_per_peer: config.limits.max_streams_per_peer,
        idle_timeout: config.limits.idle_timeout,
        ..Limits::default()
    };
    let endpoint = Endpoint::bind(config.listen, &identity, &trust, limits)?;
    let quic = endpoint.local_addr()?;

    let runtime = Arc::new(Runtime::new(
        config.clone(),
        store,
        signer,
        core_trust,
        pseudonym_key,
        clock,
    ));

    let mut drivers = BTreeMap::new();
    for (peer, conf) in &config.peers {
        let link = endpoint.peer(peer.clone(), conf.address, conf.server_name.clone());
        let sender = pons_proto::Config {
            max_in_flight: config.limits.max_streams_per_peer as usize,
            response_timeout: limits.response_timeout,
            seed: seed(&config.node_id, peer),
            ..pons_proto::Config::default()
        };
        drivers.insert(
            peer.clone(),
            PeerDriver::spawn(link, sender, runtime.clone()),
        );
    }
    let links = Arc::new(DriverLinks {
        drivers: Mutex::new(Some(drivers)),
    });
    runtime.set_links(links.clone());
    // The feed starts before the endpoint serves, so that no arrival goes unannounced.
    let feed = crate::feed::Feed::new(config.sinks.clone(), trust.to_core()?);
    feed.start(runtime.clone())
        .map_err(|rule| NodeError::Config {
            field: "sink",
            rule,
        })?;
    runtime.set_feed(feed.clone());
    endpoint.serve(runtime.clone());
    // Signed journal checkpoints, sent to the peers to be countersigned.
    let checkpoint_links = drivers_links(&links);
    let checkpoint_task = tokio::spawn(crate::journal::checkpoint_loop(
        runtime.clone(),
        Arc::new(crate::journal::LinkPeers::new(checkpoint_links)),
    ));

    // Retention: records past their erasure date are erased (LED art. 5).
    let sweep_task = tokio::spawn(crate::retention::sweep_loop(runtime.clone()));

    // Everything not yet delivered or rejected resumes: nothing acknowledged is lost.
    let pending = runtime.pending().map_err(|source| NodeError::Store {
        path: db_dir.clone(),
        source,
    })?;
    for (id, peer) in &pending {
        links.enqueue(peer, *id);
    }

    let socket = config.control_socket();
    let listener = control::bind(&socket).map_err(|source| NodeError::Io {
        what: format!("control socket {}", socket.display()),
        source,
    })?;
    let control_task = tokio::spawn(control::serve(
        listener,
        config.roles.clone(),
        runtime.clone(),
    ));

    let started = Started {
        quic,
        control: socket.clone(),
        recovered,
        resumed: pending.len(),
    };
    tracing::info!(
        node = %config.node_id,
        quic = %quic,
        control = %socket.display(),
        recovered,
        resumed = pending.len(),
        "node started"
    );
    on_start(&started);

    shutdown.await;
    tracing::info!(node = %config.node_id, "stopping: draining deliveries");
    // No new control requests; in-flight deliveries finish or are retried after restart.
    control_task.abort();
    checkpoint_task.abort();
    sweep_task.abort();
    let _ = std::fs::remove_file(&socket);
    let drivers = links
        .drivers
        .lock()
        .ok()
        .and_then(|mut d| d.take())
        .unwrap_or_default();
    let drain = async {
        for (_, driver) in drivers {
            driver.shutdown().await;
        }
    };
    if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
        tracing::warn!("drain deadline passed; unfinished deliveries resume at the next start");
    }
    endpoint.close().await;
    // A hand-over cut short here is repeated at the next start: its cursor did not move.
    feed.shutdown(DRAIN_DEADLINE).await;
    runtime
        .store
        .flush()
        .await
        .map_err(|source| NodeError::Store {
            path: db_dir.clone(),
            source,
        })?;
    tracing::info!(node = %config.node_id, "stopped");
    Ok(())
}

/// Makes a node directory (its own, `certs/`, `data/`) that does not exist with mode 0750,
/// whatever the process's umask: the control socket's group must be able to enter it (a
/// systemd unit's `UMask=0077` would make it 0700). One that exists keeps the mode its
/// operator gave it.
pub fn make_group_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
}

/// Makes the data directory (see [`make_group_dir`]) and refuses one open to others.
fn make_private_dir(dir: &std::path::Path) -> Result<(), NodeError> {
    let io = |source| NodeError::Io {
        what: format!("data directory {}", dir.display()),
        source,
    };
    make_group_dir(dir).map_err(io)?;
    let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(NodeError::Config {
            field: "data_dir",
            rule: format!(
                "{} is open to others (mode {mode:04o}): chmod 750",
                dir.display()
            ),
        });
    }
    Ok(())
}

/// A jitter seed per (node, peer) pair, so that two nodes' retries do not fall in step.
fn seed(node: &NodeId, peer: &NodeId) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.hash(&mut h);
    peer.hash(&mut h);
    h.finish()
}

struct DriverLinks {
    drivers: Mutex<Option<BTreeMap<NodeId, PeerDriver>>>,
}

impl Links for DriverLinks {
    fn enqueue(&self, peer: &NodeId, id: Uuid) {
        if let Ok(guard) = self.drivers.lock() {
            if let Some(driver) = guard.as_ref().and_then(|d| d.get(peer)) {
                driver.enqueue(id);
            }
        }
    }

    fn connected(&self, peer: &NodeId) -> Option<bool> {
        let guard = self.drivers.lock().ok()?;
        guard
            .as_ref()?
            .get(peer)
            .map(|d| d.link().state().connected)
    }

    fn transport_error(&self, peer: &NodeId) -> Option<String> {
        let guard = self.drivers.lock().ok()?;
        guard.as_ref()?.get(peer)?.link().state().last_error
    }
}

impl Outbox for Runtime {
    async fn envelope(&self, id: Uuid) -> Option<Vec<u8>> {
        Runtime::envelope(self, id)
    }

    async fn on_response(&self, peer: &NodeId, id: Uuid, frame: Frame) -> ResponseOutcome {
        Runtime::on_response(self, peer, id, frame).await
    }
}

/// The drivers' peer links (shared connections), for checkpoint exchange.
fn drivers_links(links: &DriverLinks) -> BTreeMap<NodeId, pons_transport::PeerLink> {
    links
        .drivers
        .lock()
        .ok()
        .and_then(|d| {
            d.as_ref().map(|d| {
                d.iter()
                    .map(|(peer, driver)| (peer.clone(), driver.link().clone()))
                    .collect()
            })
        })
        .unwrap_or_default()
}
