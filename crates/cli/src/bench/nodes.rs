//! The two nodes of a `pons bench` run: `pons node run` processes of their own, as in
//! production, or (`--in-process`) tasks of the benchmark's process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pons_node::runtime::system_clock;
use pons_node::Config;
use tokio::sync::oneshot;

/// How long a node process may take to say it serves.
const START: Duration = Duration::from_secs(30);

/// The running nodes.
pub enum Nodes {
    /// In this process: each node's stop switch and task.
    Tasks(Vec<(oneshot::Sender<()>, NodeTask)>),
    /// Each in a process of its own.
    Processes(Vec<NodeProcess>),
}

pub type NodeTask = tokio::task::JoinHandle<Result<(), pons_node::daemon::NodeError>>;

impl Nodes {
    /// Starts a node per configuration file, in this process or (`processes`) in its own.
    pub async fn start(configs: &[PathBuf], processes: bool, dir: &Path) -> anyhow::Result<Self> {
        if processes {
            let mut running = Vec::new();
            for config in configs {
                // Those started so far are stopped when `running` drops on an error.
                running.push(NodeProcess::start(config, dir)?);
            }
            return Ok(Nodes::Processes(running));
        }
        let mut running = Vec::new();
        for config in configs {
            running.push(start_task(Config::load(config)?).await?);
        }
        Ok(Nodes::Tasks(running))
    }

    /// Each node's name and process id, if they run in processes of their own (else
    /// none).
    pub fn processes(&self) -> Vec<(String, u32)> {
        match self {
            Nodes::Tasks(_) => Vec::new(),
            Nodes::Processes(p) => p
                .iter()
                .filter_map(|n| Some((n.name.clone(), n.pid()?)))
                .collect(),
        }
    }

    /// Stops every node and waits for it; an error if one stopped with an error.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self {
            Nodes::Tasks(tasks) => {
                let waiting: Vec<NodeTask> = tasks
                    .into_iter()
                    .map(|(stop, task)| {
                        let _ = stop.send(());
                        task
                    })
                    .collect();
                for task in waiting {
                    task.await
                        .context("node task failed")?
                        .context("node stopped with an error")?;
                }
                Ok(())
            }
            Nodes::Processes(processes) => {
                for p in &processes {
                    p.signal(Signal::SIGTERM)?;
                }
                for p in processes {
                    p.wait()?;
                }
                Ok(())
            }
        }
    }
}

/// Starts a node in a task; returns its stop switch and task once it serves.
pub async fn start_task(config: Config) -> anyhow::Result<(oneshot::Sender<()>, NodeTask)> {
    let node = config.node_id.clone();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(pons_node::daemon::run(
        config,
        system_clock(),
        move |_| {
            let _ = ready_tx.send(());
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    match ready_rx.await {
        Ok(()) => Ok((stop_tx, task)),
        // The node returned before it started: its error says why.
        Err(_) => match task.await {
            Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("node {node} did not start"))),
            _ => bail!("node {node} did not start"),
        },
    }
}

/// `pons node run --config CONFIG`, its log in the bench directory; killed if dropped
/// before [`NodeProcess::wait`].
pub struct NodeProcess {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    /// Starts the node and waits until it prints that it serves.
    fn start(config: &Path, dir: &Path) -> anyhow::Result<Self> {
        let name = config
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "node".into());
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let exe = std::env::current_exe().context("cannot find this program to run the nodes")?;
        let mut child = Command::new(exe)
            .args(["node", "run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("cannot start `pons node run`")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no standard output from the node"))?;
        let mut node = NodeProcess {
            name,
            log,
            child: Some(child),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // Drains the node's standard output for its whole life, so that it never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with("ready ") => return Ok(node),
                Ok(_) => continue,
                Err(_) => {
                    node.kill();
                    bail!(
                        "node {} did not start within {START:?}; its log ({}):\n{}",
                        node.name,
                        node.log.display(),
                        node.log_tail()
                    );
                }
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        if let Some(pid) = self.pid() {
            kill(Pid::from_raw(pid as i32), signal)
                .with_context(|| format!("cannot signal node {}", self.name))?;
        }
        Ok(())
    }

    /// Waits for the node to exit; an error if it did not exit cleanly.
    fn wait(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = child
            .wait()
            .with_context(|| format!("cannot wait for node {}", self.name))?;
        if !status.success() {
            bail!(
                "node {} stopped with {status}; its log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of the node's log, for an error.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
