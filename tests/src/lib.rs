//! Shared helpers for the real-process tests: they start real agents through
//! the same lab code as `raftgresctl lab`, and kill them with real signals.

use raftgres_lab::{Lab, LabSpec, agent_status};
use raftgres_proto::v1::AgentStatusReply;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Real clusters share two cores; running them one at a time keeps timing sane.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `target/<profile>/raftgres-agent`, built by `cargo build --workspace --bins`.
pub fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("raftgres-agent"))
        .expect("target directory");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` before the tests (scripts/test-all does)",
        bin.display()
    );
    bin
}

/// A lab directory under /tmp, which the postgres user can always reach.
pub fn lab_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("raftgres-test-")
        .tempdir_in("/tmp")
        .expect("temporary lab directory")
}

pub async fn start_lab(dir: &tempfile::TempDir, members: usize, witness: bool) -> (Lab, String) {
    let spec = LabSpec {
        dir: dir.path().to_owned(),
        members,
        witness,
        ports: None,
        agent_bin: agent_bin(),
    };
    let lab = Lab::up(&spec).expect("lab up");
    let holder = lab
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("lab healthy");
    (lab, holder)
}

pub async fn status(lab: &Lab, name: &str) -> Result<AgentStatusReply, String> {
    agent_status(&lab.member(name).expect("member").raft_addr).await
}

/// Polls `check` until it returns Some, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The members (among `names`) that report holding a valid lease right now.
pub async fn holders(lab: &Lab, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        if status(lab, name).await.is_ok_and(|s| s.holds_lease) {
            out.push(name.clone());
        }
    }
    out
}
