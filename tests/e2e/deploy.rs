//! The files in `deploy/`: the systemd unit is valid and confined, and the container's
//! entrypoint makes nodes that exchange a record.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{example_report, ids, state_of, Federation, FUR, MRR, PONS};

/// The repository's `deploy/` directory.
fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// `systemd-analyze`, which the unit's checks need: Debian's package `systemd`, installed
/// here when it is missing and the tests run as root (as in CI); otherwise the test fails
/// saying so.
fn systemd_analyze(args: &[&str]) -> std::process::Output {
    static PRESENT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    PRESENT.get_or_init(|| {
        let found = Command::new("systemd-analyze").arg("--version").output();
        if found.is_ok_and(|o| o.status.success()) {
            return;
        }
        let installed = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "systemd"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        assert!(
            installed.is_ok_and(|s| s.success()),
            "systemd-analyze is missing and `apt-get install systemd` failed: install the \
             package systemd to run the deploy/ checks"
        );
    });
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("run systemd-analyze")
}

/// The unit as shipped, and a copy of it that runs `binary`, in a temporary directory: its
/// template file and an instance of it (`pons-node@cuta.service`) to verify.
fn unit_running(binary: &str) -> (String, tempfile::TempDir, PathBuf, PathBuf) {
    let unit = std::fs::read_to_string(deploy().join("systemd/pons-node@.service"))
        .expect("read deploy/systemd/pons-node@.service");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let template = dir.path().join("pons-node@.service");
    std::fs::write(&template, unit.replace("/usr/local/bin/pons", binary)).expect("write the unit");
    let instance = dir.path().join("pons-node@cuta.service");
    (unit, dir, template, instance)
}

/// The exposure `systemd-analyze security` may report at most, in tenths (2.0 "OK").
const MAX_EXPOSURE_TENTHS: &str = "20";

#[test]
fn the_systemd_unit_is_valid_runs_the_node_and_is_confined() {
    // Checked where the binary is: verify refuses an ExecStart that is not executable.
    let (unit, _dir, template, instance) = unit_running(PONS);
    const EXEC: &str = "ExecStart=/usr/local/bin/pons node run --config /var/lib/pons/%i/node.toml";
    assert!(unit.lines().any(|l| l == EXEC), "the unit runs {EXEC:?}");
    for line in [
        "User=pons",
        "StateDirectory=pons/%i",
        "LimitCORE=0",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has {line:?}");
    }
    // The command the unit runs is this binary's.
    let help = Command::new(PONS)
        .args(["node", "run", "--help"])
        .output()
        .expect("run pons");
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("--config"));

    let verify = systemd_analyze(&["verify", instance.to_str().expect("utf-8 path")]);
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {} {said}",
        verify.status
    );

    let security = systemd_analyze(&[
        "security",
        "--offline=yes",
        &format!("--threshold={MAX_EXPOSURE_TENTHS}"),
        template.to_str().expect("utf-8 path"),
    ]);
    let report = String::from_utf8_lossy(&security.stdout);
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("no overall exposure line");
    assert!(
        security.status.success(),
        "exposure above {MAX_EXPOSURE_TENTHS} tenths: {overall}\n{report}"
    );
}

/// A unit that names a binary that is not there is refused: the check above can fail.
#[test]
fn systemd_analyze_refuses_a_unit_whose_command_is_missing() {
    let (_, _dir, _, instance) = unit_running("/nonexistent/pons");
    let verify = systemd_analyze(&["verify", instance.to_str().expect("utf-8 path")]);
    assert!(
        !verify.status.success(),
        "verify accepted a missing ExecStart"
    );
}

/// The entrypoint as the compose file runs it, for `node` in `fed`.
fn entrypoint(fed: &Federation, node: &str, peer: &str, send: &str, receive: &str) -> Command {
    let mut command = Command::new("sh");
    command
        .arg(deploy().join("pons-entrypoint.sh"))
        .env("PONS", PONS)
        .env("PONS_NODE_ID", node)
        .env("PONS_DIR", fed.dir(node))
        .env("PONS_CERTS", fed.certs())
        .env("PONS_LISTEN", fed.addr(node).to_string())
        .env("PONS_PEERS", format!("{peer}={}", fed.addr(peer)))
        .env("PONS_SEND", send)
        .env("PONS_RECEIVE", receive);
    command
}

#[test]
fn the_container_entrypoint_makes_nodes_that_exchange_a_record_and_keeps_them_on_restart() {
    let mut fed = Federation::new(&["adolescence", "cuta"]);
    let adolescence = |fed: &Federation| {
        entrypoint(
            fed,
            "adolescence",
            "cuta",
            &format!("cuta:{MRR}"),
            &format!("cuta:{FUR}"),
        )
    };
    let cuta = entrypoint(
        &fed,
        "cuta",
        "adolescence",
        &format!("adolescence:{FUR}"),
        &format!("adolescence:{MRR}"),
    );
    fed.start_with("adolescence", adolescence(&fed));
    fed.start_with("cuta", cuta);
    assert!(fed.config("adolescence").exists() && fed.config("cuta").exists());

    let id = fed.submit("adolescence", "cuta", MRR, &example_report());
    fed.wait_until("the record is delivered", || {
        (state_of(&fed.outbox_jsonl("adolescence"), &id) == Some("delivered")).then_some(())
    });
    assert!(
        ids(&fed.inbox_jsonl("cuta")).contains(&id),
        "cuta holds the record"
    );

    // A second start keeps the node made by the first (no `pons init` again: it would
    // refuse an existing node.toml), with its outbox.
    let master = std::fs::read(fed.dir("adolescence").join("certs/master.key")).expect("key");
    fed.stop("adolescence");
    fed.start_with("adolescence", adolescence(&fed));
    assert_eq!(
        std::fs::read(fed.dir("adolescence").join("certs/master.key")).expect("key"),
        master
    );
    assert_eq!(
        state_of(&fed.outbox_jsonl("adolescence"), &id),
        Some("delivered")
    );
}

#[test]
fn the_entrypoint_without_a_node_id_says_what_is_missing_and_starts_nothing() {
    let fed = Federation::new(&["cuta"]);
    let out = Command::new("sh")
        .arg(deploy().join("pons-entrypoint.sh"))
        .env("PONS", PONS)
        .env("PONS_DIR", fed.dir("cuta"))
        .env_remove("PONS_NODE_ID")
        .output()
        .expect("run the entrypoint");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PONS_NODE_ID"));
    assert!(!fed.config("cuta").exists(), "nothing was made");
}

/// The mode of `path`'s permission bits.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Under the unit's `UMask=0077`, `pons init` and the node still make what the control
/// socket's group needs: directories it can enter, a `node.toml` it can read; secrets stay
/// the owner's.
#[test]
fn under_the_units_strict_umask_the_group_can_still_reach_the_node() {
    let mut fed = Federation::new(&["cuta"]);
    let dir = fed.dir("cuta");
    let init = Command::new("sh")
        .args([
            "-c",
            r#"umask 077; exec "$0" "$@""#,
            PONS,
            "init",
            "--node-id",
            "cuta",
        ])
        .arg("--dir")
        .arg(&dir)
        .arg("--certs")
        .arg(fed.certs())
        .args(["--listen", &fed.addr("cuta").to_string()])
        .output()
        .expect("run pons init");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    // The daemon makes a missing data directory the same way.
    std::fs::remove_dir(dir.join("data")).expect("remove data/");
    let mut run = Command::new("sh");
    run.args(["-c", r#"umask 077; exec "$0" node run --config "$1""#, PONS])
        .arg(fed.config("cuta"));
    fed.start_with("cuta", run);

    for (path, expected) in [
        (dir.clone(), 0o750),
        (dir.join("certs"), 0o750),
        (dir.join("data"), 0o750),
        (dir.join("node.toml"), 0o644),
        (dir.join("certs/ca.pem"), 0o644),
        (dir.join("certs/tls.key"), 0o600),
        (dir.join("certs/master.key"), 0o600),
        (dir.join("data/control.sock"), 0o660),
    ] {
        assert_eq!(
            format!("{:o}", mode(&path)),
            format!("{expected:o}"),
            "the mode of {}",
            path.display()
        );
    }
}
