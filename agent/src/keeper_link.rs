//! Finding the keeper that owns this member's Postgres, or starting one.
//!
//! Under systemd the keeper is its own unit (`raftgres-keeper.service`), so
//! restarting the agent's unit leaves it running. Elsewhere (the lab, a
//! hand start) the agent starts it, in a session of its own, so that it
//! outlives the agent the same way.

use anyhow::{Context, bail};
use raftgres_config::AgentConfig;
use raftgres_keeper::{KeeperClient, KeeperError, KeeperSettings, KeeperStatus};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a keeper that was just started may take to answer.
const KEEPER_START: Duration = Duration::from_secs(10);

pub fn socket(config: &AgentConfig) -> PathBuf {
    config.data_dir.join("keeper.sock")
}

/// The keeper's status once one answers on the socket, starting it with
/// this binary and `config_path` if none does.
pub async fn attach(config_path: &Path, socket: &Path) -> anyhow::Result<KeeperStatus> {
    let mut client = KeeperClient::new(socket);
    match client.status().await {
        Ok(status) => {
            tracing::info!(keeper_pid = status.keeper_pid, postmaster_pid = ?status.postmaster_pid, armed = ?status.armed, "attached to the running keeper");
            return Ok(status);
        }
        Err(KeeperError::Unreachable { .. }) => {}
        Err(e) => return Err(e).context("the keeper answers but cannot be used"),
    }
    spawn(config_path, socket)?;
    let deadline = Instant::now() + KEEPER_START;
    loop {
        match client.status().await {
            Ok(status) => {
                tracing::info!(keeper_pid = status.keeper_pid, "started a keeper");
                return Ok(status);
            }
            Err(KeeperError::Unreachable { reason, .. }) if Instant::now() < deadline => {
                tracing::debug!(%reason, "keeper not answering yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                let log = socket.with_extension("log");
                bail!(
                    "the keeper did not come up within {KEEPER_START:?}: {e}; see {}",
                    log.display()
                )
            }
        }
    }
}

fn spawn(config_path: &Path, socket: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this agent's binary")?;
    let config_path = std::fs::canonicalize(config_path)
        .with_context(|| format!("cannot resolve {}", config_path.display()))?;
    let log_path = socket.with_extension("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the keeper log {}", log_path.display()))?;
    let err = log.try_clone().context("cannot share the keeper log")?;
    let mut command = Command::new(&exe);
    command
        .arg("keeper")
        .arg("--config")
        .arg(&config_path)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe. A session of its own: no signal
    // for the agent's process group or terminal reaches the keeper.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start the keeper ({})", exe.display()))?;
    tracing::info!(pid = child.id(), socket = %socket.display(), "starting a keeper");
    // Reaped here if it ends while the agent runs; after the agent exits,
    // PID 1 does it.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// `raftgres-agent keeper --config FILE`: the keeper of the member that
/// file describes.
pub fn run_keeper(config_path: &Path) -> anyhow::Result<()> {
    let config = raftgres_config::load(config_path)?;
    let Some(pg) = &config.postgresql else {
        bail!("a witness (no postgresql section in the config) has no Postgres to keep");
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let pg_settings = crate::from_config::pg_settings(&config, pg)?;
    let exe = std::env::current_exe().context("cannot find this agent's binary")?;
    let settings = KeeperSettings {
        guard: raftgres_keeper::GuardCommand {
            program: exe,
            args: vec![
                "keeper-guard".into(),
                "--data-dir".into(),
                pg_settings.data_dir.clone().into(),
                "--exe".into(),
                pg_settings.server_binary().into(),
            ],
        },
        pg: pg_settings,
        socket: socket(&config),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the keeper's runtime")?
        .block_on(raftgres_keeper::serve(settings))?;
    Ok(())
}

/// The arguments of `raftgres-agent keeper-guard`.
#[derive(clap::Args)]
pub struct GuardArgs {
    /// The Postgres data directory whose server to kill.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The `postgres` binary the server runs.
    #[arg(long)]
    pub exe: PathBuf,
}

/// The arguments of `raftgres-agent keeper`.
#[derive(clap::Args)]
pub struct KeeperArgs {
    /// The agent's YAML settings file.
    #[arg(long, short)]
    pub config: PathBuf,
}
