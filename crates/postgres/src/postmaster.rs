//! The postmaster as a child of the calling process.
//!
//! Why not `pg_ctl`: it exits at once, so the postmaster would not be our
//! child. As our child it gets a parent-death signal (the agent dies, so
//! does the postmaster, even on SIGKILL), and we learn of its death by
//! reaping it rather than by guessing from PIDs (a zombie passes
//! `kill(pid, 0)`).

use crate::bootstrap::require_initialized;
use crate::error::{PgError, Result, io_err};
use crate::settings::PgSettings;
use crate::version::{bin, file};
use crate::{files, procfs, spawner, tools};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long a fence may take before it is reported as incomplete: SIGKILL
/// cannot be blocked, so only a process stuck in the kernel lasts this long.
const FENCE_BOUND: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// PostgreSQL's three shutdown modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM: wait for clients to disconnect.
    Smart,
    /// SIGINT: roll back and disconnect clients, then a shutdown checkpoint.
    Fast,
    /// SIGQUIT: exit without a checkpoint; crash recovery at next start.
    Immediate,
}

impl StopMode {
    fn signal(self) -> Signal {
        match self {
            StopMode::Smart => Signal::SIGTERM,
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
        }
    }
}

/// A running postmaster that this process started and will reap.
///
/// Dropping it while the postmaster runs fences it (SIGKILL to it and every
/// process of its data directory, then reap): a postmaster nobody tracks
/// could keep accepting writes.
#[derive(Debug)]
pub struct Postmaster {
    child: Child,
    pid: u32,
    settings: PgSettings,
    log: PathBuf,
    /// Canonical paths, to recognise our processes in `/proc`.
    data_dir: PathBuf,
    exe: PathBuf,
    exited: Option<ExitStatus>,
    /// We asked it to exit, so its exit is news only at info level.
    stopping: bool,
    /// Every process of this server a fence has sent SIGKILL to; the fence
    /// is complete only when each of them is dead.
    killed: Vec<u32>,
}

impl Postmaster {
    /// Starts `bin_dir/postgres -D data_dir` as a child of this process, in
    /// its own process group, with `SIGKILL` as its parent-death signal and
    /// its output appended to [`PgSettings::log_path`]. Returns once the
    /// process exists; use [`Postmaster::wait_ready`] to wait for it to
    /// accept connections.
    ///
    /// The fork happens on a dedicated thread that lives as long as the
    /// process, because the parent-death signal fires when the forking
    /// *thread* exits.
    pub async fn start(settings: &PgSettings) -> Result<Postmaster> {
        settings.validate()?;
        let program = settings.require_binary(bin::POSTGRES)?;
        require_initialized(&settings.data_dir)?;
        crate::version::check_binaries(settings).await?;
        let data_dir = canonical(&settings.data_dir)?;
        let exe = canonical(&program)?;
        let strays = procfs::processes_running_in(&data_dir, &exe);
        if !strays.is_empty() {
            return Err(PgError::AlreadyRunning {
                data_dir,
                pids: strays,
            });
        }
        remove_stale_lock_file(&data_dir.join(file::POSTMASTER_PID))?;
        let socket_lock = format!("{}{}.lock", file::SOCKET_PREFIX, settings.port);
        remove_stale_lock_file(&settings.socket_dir.join(socket_lock))?;
        files::ensure_server_dir(&settings.socket_dir, settings.run_as)?;

        let log = settings.log_path();
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&log)
            .map_err(io_err("open the log", &log))?;
        // Marks where each run begins in a log that outlives many of them.
        let _ = writeln!(
            out,
            "---- raftgres: starting postmaster for {}",
            data_dir.display()
        );
        let err = out.try_clone().map_err(io_err("open the log", &log))?;

        let mut command = std::process::Command::new(&program);
        command
            .arg("-D")
            .arg(&data_dir)
            .env_clear()
            .envs(tools::safe_env())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Signals for the terminal's process group (Ctrl-C on a lab run
            // in the foreground) must not reach it; we stop it ourselves.
            .process_group(0);
        if let Some(run_as) = settings.run_as {
            command.uid(run_as.uid).gid(run_as.gid);
        }
        let parent = nix::unistd::getpid();
        // SAFETY: between fork and exec only async-signal-safe calls: prctl,
        // getppid, and an error built from an errno without allocating.
        // std runs this after setuid/setgid, which matters: a credential
        // change clears the parent-death signal.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                // The parent may have died before the line above; then no
                // signal will ever come, so do not become a postmaster.
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(Errno::ESRCH as i32));
                }
                Ok(())
            });
        }
        let child = spawner::spawn(command)
            .await
            .map_err(|source| PgError::Spawn { program, source })?;
        let pid = child.id();
        tracing::info!(pid, data_dir = %data_dir.display(), log = %log.display(), "started postmaster");
        Ok(Postmaster {
            child,
            pid,
            settings: settings.clone(),
            log,
            data_dir,
            exe,
            exited: None,
            stopping: false,
            killed: Vec::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits until the server answers a query (for a standby: accepts
    /// read-only connections, i.e. has reached a consistent state), the
    /// postmaster exits, or `timeout` passes. Checks that the server
    /// answering on the port is this one, by its data directory.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = "no answer yet".to_owned();
        let tls = self.settings.tls.connector()?;
        loop {
            self.fail_if_exited()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(PgError::NotReady {
                    pid: self.pid,
                    after: timeout,
                    last,
                    log: self.log.clone(),
                });
            }
            let mut probe = self.settings.clone();
            probe.connect_timeout = probe.connect_timeout.min(deadline - now);
            match self.probe(&probe, tls.clone()).await {
                Ok(found) if canonical(Path::new(&found)).is_ok_and(|f| f == self.data_dir) => {
                    tracing::info!(pid = self.pid, "postmaster accepts connections");
                    return Ok(());
                }
                Ok(found) => {
                    self.fail_if_exited()?;
                    return Err(PgError::PortTaken {
                        addr: format!("{}:{}", probe.control_host(), probe.port),
                        found,
                        expected: self.data_dir.clone(),
                    });
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn probe(&self, settings: &PgSettings, tls: Option<MakeRustlsConnect>) -> Result<String> {
        let client = crate::session::connect_local(settings, async || Ok(tls)).await?;
        let query = client.query_one("SELECT current_setting('data_directory')", &[]);
        let row = tokio::time::timeout(settings.query_timeout, query)
            .await
            .map_err(|_| PgError::Timeout {
                operation: "the readiness probe",
                after: settings.query_timeout,
            })?
            .map_err(|e| PgError::Query {
                operation: "the readiness probe",
                reason: crate::error::describe(&e),
            })?;
        row.try_get(0).map_err(|e| PgError::Query {
            operation: "the readiness probe",
            reason: crate::error::describe(&e),
        })
    }

    fn fail_if_exited(&mut self) -> Result<()> {
        match self.try_exited() {
            None => Ok(()),
            Some(status) => Err(PgError::PostmasterExited {
                pid: self.pid,
                status: status.to_string(),
                log: self.log.clone(),
                log_tail: files::tail(&self.log, 2000),
            }),
        }
    }

    /// `Some` once the postmaster has exited (and has been reaped). Any of
    /// its processes left behind (after a SIGKILL from outside, its backends
    /// live on until they notice) are killed, so none keeps serving writes
    /// and a restart is not blocked by their shared memory.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        // WNOWAIT: look without reaping, so the PID cannot be reused while
        // we still act on it.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(self.pid_t()), flags) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(_) | Err(_) => {
                self.kill_strays();
                let status = match self.child.wait() {
                    Ok(status) => status,
                    Err(e) => {
                        // Only if something else in this process reaped our
                        // child; it is gone, but its status is lost.
                        tracing::error!(pid = self.pid, error = %e, "postmaster was reaped elsewhere");
                        ExitStatus::from_raw(255 << 8)
                    }
                };
                if self.stopping {
                    tracing::info!(pid = self.pid, %status, "postmaster exited");
                } else {
                    tracing::warn!(pid = self.pid, %status, "postmaster exited unexpectedly");
                }
                self.exited = Some(status);
                self.exited
            }
        }
    }

    /// Asks the postmaster to shut down in `mode`, waits up to `timeout`
    /// for it to exit, and fences it if it does not.
    pub async fn stop(&mut self, mode: StopMode, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_exited() {
            return Ok(status);
        }
        tracing::info!(pid = self.pid, ?mode, "stopping postmaster");
        self.stopping = true;
        self.signal(mode.signal())?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exited() {
                return Ok(status);
            }
            tokio::time::sleep(POLL).await;
        }
        tracing::warn!(
            pid = self.pid,
            ?mode,
            ?timeout,
            "postmaster did not stop in time; fencing it"
        );
        self.fence().await
    }

    /// Stops writes as fast as the kernel allows: SIGKILL to the postmaster
    /// (and its process group) and to every process running from its data
    /// directory, repeated until none is left, then reaps the postmaster.
    /// When this returns `Ok`, no process of this server is alive.
    pub async fn fence(&mut self) -> Result<ExitStatus> {
        let deadline = Instant::now() + FENCE_BOUND;
        if self.exited.is_none() {
            tracing::warn!(pid = self.pid, "fencing postmaster (SIGKILL)");
        }
        self.stopping = true;
        loop {
            match self.fence_step() {
                Ok(status) => return Ok(status),
                Err(pids) if Instant::now() >= deadline => {
                    return Err(PgError::FenceIncomplete {
                        pids,
                        after: FENCE_BOUND,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// One round of killing; `Err` lists what still lives.
    fn fence_step(&mut self) -> Result<ExitStatus, Vec<u32>> {
        if self.exited.is_none() {
            let _ = killpg(self.pid_t(), Signal::SIGKILL);
            let _ = kill(self.pid_t(), Signal::SIGKILL);
        }
        self.kill_strays();
        self.killed.retain(|&pid| procfs::is_alive(pid));
        match self.try_exited() {
            Some(status) if self.killed.is_empty() => Ok(status),
            Some(_) => Err(self.killed.clone()),
            None => Err(vec![self.pid]),
        }
    }

    /// SIGKILLs every process of this server other than the postmaster,
    /// and its process group (a backend is its own group leader, and a
    /// program it runs, like `archive_command`, is in it).
    fn kill_strays(&mut self) {
        let strays: Vec<u32> = procfs::processes_running_in(&self.data_dir, &self.exe)
            .into_iter()
            .filter(|&p| p != self.pid)
            .collect();
        sigkill_with_groups(&strays);
        for pid in strays {
            if !self.killed.contains(&pid) {
                self.killed.push(pid);
            }
        }
    }

    /// Makes the postmaster re-read its configuration files (SIGHUP), e.g.
    /// a standby's new `primary_conninfo`.
    pub fn reload(&mut self) -> Result<()> {
        self.signal(Signal::SIGHUP)
    }

    fn signal(&mut self, signal: Signal) -> Result<()> {
        // Signalling an unreaped child is safe: even as a zombie its PID
        // cannot belong to anyone else.
        if self.try_exited().is_some() {
            return Err(PgError::Signal {
                pid: self.pid,
                signal: signal.as_str(),
                errno: Errno::ESRCH,
            });
        }
        kill(self.pid_t(), signal).map_err(|errno| PgError::Signal {
            pid: self.pid,
            signal: signal.as_str(),
            errno,
        })
    }

    fn pid_t(&self) -> Pid {
        // Linux PIDs fit in i32 (pid_max is at most 2^22).
        Pid::from_raw(self.pid as i32)
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        tracing::warn!(
            pid = self.pid,
            "postmaster handle dropped while it runs; fencing it"
        );
        let deadline = Instant::now() + FENCE_BOUND;
        while let Err(pids) = self.fence_step() {
            if Instant::now() >= deadline {
                tracing::error!(?pids, "processes survived SIGKILL; Postgres may still run");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Kills every process running the server binary from the data directory:
/// leftovers of a postmaster this process does not own (one started by a
/// previous agent that died, or its backends, which outlive it briefly).
/// [`Postmaster::start`] refuses to start while any exist. Returns the PIDs
/// that were killed.
pub async fn kill_strays(settings: &PgSettings, timeout: Duration) -> Result<Vec<u32>> {
    settings.validate()?;
    let exe = canonical(&settings.require_binary(bin::POSTGRES)?)?;
    let data_dir = match canonical(&settings.data_dir) {
        Ok(dir) => dir,
        Err(_) => return Ok(Vec::new()),
    };
    let deadline = Instant::now() + timeout;
    let mut killed = Vec::new();
    loop {
        let strays = procfs::processes_running_in(&data_dir, &exe);
        let dying: Vec<u32> = killed
            .iter()
            .copied()
            .filter(|&p| procfs::is_alive(p))
            .collect();
        if strays.is_empty() && dying.is_empty() {
            if !killed.is_empty() {
                tracing::warn!(pids = ?killed, data_dir = %data_dir.display(), "killed stray PostgreSQL processes");
            }
            return Ok(killed);
        }
        if Instant::now() >= deadline {
            return Err(PgError::FenceIncomplete {
                pids: if strays.is_empty() { dying } else { strays },
                after: timeout,
            });
        }
        sigkill_with_groups(&strays);
        for pid in strays {
            if !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every live process running `exe` (by name, so a replaced binary counts)
/// from `data_dir`: the server's processes, whoever their parent is now.
pub fn server_processes(data_dir: &Path, exe: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::canonicalize(data_dir) else {
        return Vec::new();
    };
    // Processes are matched by the binary's name, so one whose binary was
    // removed by an upgrade is still found.
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_owned());
    procfs::processes_running_in(&dir, &exe)
}

/// SIGKILLs, once, every live process running `exe` from `data_dir`, with
/// their process groups: the fence for a process that does not own the
/// postmaster (the keeper's guard). Returns the processes signalled; call
/// again until none is left.
pub fn kill_server_processes(data_dir: &Path, exe: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::canonicalize(data_dir) else {
        return Vec::new();
    };
    // Processes are matched by the binary's name, so one whose binary was
    // removed by an upgrade is still found.
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_owned());
    let pids = procfs::processes_running_in(&dir, &exe);
    sigkill_with_groups(&pids);
    pids
}

fn sigkill_with_groups(pids: &[u32]) {
    for &pid in pids {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

/// PostgreSQL judges its lock files (`postmaster.pid`, and one per Unix
/// socket) stale with `kill(pid, 0)`, which a zombie passes: after a
/// postmaster is killed, and until PID 1 reaps it (seconds, on these
/// machines), a new start would fail with "lock file already exists". The
/// state in `/proc` tells a zombie from a live process; a live PID is left
/// for PostgreSQL to judge.
fn remove_stale_lock_file(path: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
    else {
        return Ok(());
    };
    if procfs::is_alive(pid) {
        return Ok(());
    }
    tracing::info!(
        pid,
        "removing the lock file of a postmaster that is dead (or a zombie)"
    );
    files::remove_if_exists(path).map(drop)
}

/// The path as the kernel shows it in `/proc/<pid>/{cwd,exe}`.
fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(io_err("resolve", path))
}
