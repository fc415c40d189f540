//! The keeper process: owns the postmaster and enforces the lease deadline,
//! so the agent can die, hang or be replaced without either leaving a
//! writable Postgres behind or restarting it.
//!
//! It serves [`Request`]s on its socket (any number of agent connections:
//! the Postgres loop and the lease loop each keep one), kills every
//! process of the server when an armed deadline passes, refuses to disarm
//! while any of them lives, and refuses a primary start without a deadline
//! ahead. Its guard ([`crate::guard`]) kills the server if the keeper itself
//! dies or stops.

use crate::clock::mono_ns;
use crate::error::{KeeperError, Result};
use crate::protocol::{Arming, KeeperStatus, PROTOCOL, Reply, Request, StopMode};
use raftgres_postgres::{PgSettings, Postmaster, server_processes};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// A request line longer than this is refused: nothing legitimate is close.
const MAX_LINE: usize = 4096;
/// How often the keeper looks for a postmaster that exited by itself and for
/// a dead guard.
const MONITOR_EVERY: Duration = Duration::from_millis(50);
/// While armed past the deadline, look for server processes this often.
const ENFORCE_EVERY: Duration = Duration::from_millis(100);
/// A clean stop when the keeper is told to end.
const SHUTDOWN_STOP: Duration = Duration::from_secs(20);

/// How the keeper starts its guard: the program and its arguments (the
/// agent binary's hidden `keeper-guard` subcommand in production).
#[derive(Debug, Clone)]
pub struct GuardCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

#[derive(Debug, Clone)]
pub struct KeeperSettings {
    pub pg: PgSettings,
    pub socket: PathBuf,
    pub guard: GuardCommand,
}

impl KeeperSettings {
    /// Where the keeper records its PID, beside its socket.
    pub fn pid_file(socket: &Path) -> PathBuf {
        socket.with_extension("pid")
    }
}

#[derive(Debug, Default)]
struct Record {
    postmaster_pid: Option<u32>,
    exits: u64,
    last_exit: Option<String>,
    deadline_fences: u64,
}

struct Guard {
    child: Child,
    stdin: ChildStdin,
}

struct Keeper {
    pg: PgSettings,
    exe: PathBuf,
    guard_command: GuardCommand,
    postmaster: tokio::sync::Mutex<Option<Postmaster>>,
    record: Mutex<Record>,
    armed: watch::Sender<Option<Arming>>,
    guard: Mutex<Option<Guard>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Keeper {
    fn server_pids(&self) -> Vec<u32> {
        server_processes(&self.pg.data_dir, &self.exe)
    }

    fn status(&self) -> KeeperStatus {
        let record = locked(&self.record);
        KeeperStatus {
            protocol: PROTOCOL,
            keeper_pid: std::process::id(),
            postmaster_pid: record.postmaster_pid,
            exits: record.exits,
            last_exit: record.last_exit.clone(),
            server_alive: record.postmaster_pid.is_some() || !self.server_pids().is_empty(),
            armed: *self.armed.borrow(),
            deadline_fences: record.deadline_fences,
        }
    }

    fn note_exit(&self, status: std::process::ExitStatus) {
        let mut record = locked(&self.record);
        record.postmaster_pid = None;
        record.exits += 1;
        record.last_exit = Some(status.to_string());
    }

    /// Starts the guard, or tells a running one the current arming. A
    /// guard that cannot be fed is replaced.
    fn feed_guard(&self) -> std::io::Result<()> {
        let line = match *self.armed.borrow() {
            Some(a) => format!("arm {}\n", a.deadline_ns),
            None => "disarm\n".to_owned(),
        };
        let mut slot = locked(&self.guard);
        if let Some(guard) = slot.as_mut() {
            let alive = matches!(guard.child.try_wait(), Ok(None));
            if alive && guard.stdin.write_all(line.as_bytes()).is_ok() {
                return Ok(());
            }
            tracing::warn!(
                pid = guard.child.id(),
                "keeper guard is gone; starting another"
            );
            let _ = guard.child.kill();
            let _ = guard.child.wait();
            *slot = None;
        }
        let mut command = Command::new(&self.guard_command.program);
        command
            .args(&self.guard_command.args)
            .stdin(Stdio::piped())
            // Whatever signals the keeper's group must not reach the guard.
            .process_group(0);
        let mut child = command.spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("the guard has no stdin"))?;
        stdin.write_all(line.as_bytes())?;
        tracing::info!(pid = child.id(), "started the keeper guard");
        *slot = Some(Guard { child, stdin });
        Ok(())
    }

    fn refused(&self, reason: impl Into<String>) -> Reply {
        Reply::Refused {
            reason: reason.into(),
            status: self.status(),
        }
    }

    fn done(&self) -> Reply {
        Reply::Done {
            status: self.status(),
        }
    }

    async fn handle(&self, request: Request) -> Reply {
        match request {
            Request::Status => self.done(),
            Request::Arm(arming) => {
                let now = mono_ns();
                if arming.deadline_ns <= now {
                    return self.refused(format!(
                        "deadline {} has already passed (now {now}); renew the lease first",
                        arming.deadline_ns
                    ));
                }
                self.armed.send_modify(|current| {
                    *current = Some(match *current {
                        // A late reply of an older renewal never shortens it.
                        Some(c) if c.epoch == arming.epoch => Arming {
                            epoch: c.epoch,
                            deadline_ns: c.deadline_ns.max(arming.deadline_ns),
                        },
                        _ => arming,
                    })
                });
                match self.feed_guard() {
                    Ok(()) => self.done(),
                    Err(e) => self.refused(format!(
                        "cannot start or feed the keeper guard: {e}; the fence is not complete, so the lease must not be used"
                    )),
                }
            }
            Request::Disarm => {
                let pids = self.server_pids();
                if locked(&self.record).postmaster_pid.is_some() || !pids.is_empty() {
                    return self.refused(format!(
                        "the Postgres server is still alive (processes {pids:?}); stop or fence it before disarming"
                    ));
                }
                self.armed.send_replace(None);
                match self.feed_guard() {
                    Ok(()) => self.done(),
                    Err(e) => self.refused(format!("cannot reach the keeper guard: {e}")),
                }
            }
            Request::Start { primary } => {
                let armed = *self.armed.borrow();
                let now = mono_ns();
                match armed {
                    Some(a) if a.deadline_ns <= now => {
                        return self.refused(
                            "the lease deadline passed; disarm (with the server stopped) before starting again",
                        );
                    }
                    None if primary => {
                        return self.refused(
                            "no lease deadline is armed; a primary starts only under a held lease",
                        );
                    }
                    _ => {}
                }
                let mut slot = self.postmaster.lock().await;
                if slot.is_some() {
                    return self.refused("the postmaster is already running; stop it first");
                }
                match Postmaster::start(&self.pg).await {
                    Ok(pm) => {
                        locked(&self.record).postmaster_pid = Some(pm.pid());
                        *slot = Some(pm);
                        drop(slot);
                        self.done()
                    }
                    Err(e) => self.refused(format!("cannot start Postgres: {e}")),
                }
            }
            Request::Stop { mode, timeout_ms } => {
                let mut slot = self.postmaster.lock().await;
                let Some(pm) = slot.as_mut() else {
                    return self.done();
                };
                let mode = match mode {
                    StopMode::Fast => raftgres_postgres::StopMode::Fast,
                    StopMode::Immediate => raftgres_postgres::StopMode::Immediate,
                };
                match pm.stop(mode, Duration::from_millis(timeout_ms)).await {
                    Ok(status) => {
                        *slot = None;
                        drop(slot);
                        self.note_exit(status);
                        self.done()
                    }
                    Err(e) => self.refused(format!("cannot stop Postgres: {e}")),
                }
            }
            Request::Fence => {
                let mut slot = self.postmaster.lock().await;
                if let Some(pm) = slot.as_mut() {
                    match pm.fence().await {
                        Ok(status) => {
                            *slot = None;
                            drop(slot);
                            self.note_exit(status);
                        }
                        Err(e) => return self.refused(format!("fence incomplete: {e}")),
                    }
                } else {
                    drop(slot);
                    crate::guard::fence(&self.pg.data_dir, &self.exe);
                }
                let left = self.server_pids();
                if left.is_empty() {
                    self.done()
                } else {
                    self.refused(format!("processes {left:?} survived SIGKILL"))
                }
            }
            Request::Reload => {
                let mut slot = self.postmaster.lock().await;
                match slot.as_mut() {
                    Some(pm) => match pm.reload() {
                        Ok(()) => self.done(),
                        Err(e) => self.refused(format!("cannot reload Postgres: {e}")),
                    },
                    None => self.refused("Postgres is not running"),
                }
            }
        }
    }

    /// Kills the server whenever an armed deadline has passed, and keeps
    /// doing so while the arming stays expired: the fence never disarms
    /// itself.
    async fn enforce(self: Arc<Self>) {
        let mut armed = self.armed.subscribe();
        loop {
            let current = *armed.borrow_and_update();
            let wait = match current {
                None => None,
                Some(a) => {
                    let now = mono_ns();
                    if now >= a.deadline_ns {
                        let keeper = self.clone();
                        let killed = tokio::task::spawn_blocking(move || {
                            crate::guard::fence(&keeper.pg.data_dir, &keeper.exe)
                        })
                        .await
                        .unwrap_or(0);
                        if killed > 0 {
                            locked(&self.record).deadline_fences += 1;
                            tracing::warn!(
                                epoch = a.epoch,
                                killed,
                                "lease deadline passed unrenewed; killed the Postgres server"
                            );
                        }
                        Some(ENFORCE_EVERY)
                    } else {
                        Some(Duration::from_nanos(a.deadline_ns - now))
                    }
                }
            };
            match wait {
                Some(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        changed = armed.changed() => if changed.is_err() { return },
                    }
                }
                None => {
                    if armed.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Reaps a postmaster that exited by itself, and replaces a dead guard.
    async fn monitor(self: Arc<Self>) {
        loop {
            tokio::time::sleep(MONITOR_EVERY).await;
            if let Ok(mut slot) = self.postmaster.try_lock()
                && let Some(pm) = slot.as_mut()
                && let Some(status) = pm.try_exited()
            {
                *slot = None;
                drop(slot);
                self.note_exit(status);
            }
            let guard_dead = locked(&self.guard)
                .as_mut()
                .is_none_or(|g| !matches!(g.child.try_wait(), Ok(None)));
            if guard_dead && let Err(e) = self.feed_guard() {
                tracing::error!(error = %e, "cannot restart the keeper guard");
            }
        }
    }

    async fn serve_connection(self: Arc<Self>, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let mut line = String::new();
        loop {
            line.clear();
            match (&mut lines)
                .take(MAX_LINE as u64 + 1)
                .read_line(&mut line)
                .await
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let reply = if line.len() > MAX_LINE || !line.ends_with('\n') {
                Reply::BadRequest {
                    reason: format!(
                        "request longer than {MAX_LINE} bytes or not ended by a newline"
                    ),
                }
            } else {
                match serde_json::from_str::<Request>(line.trim_end()) {
                    Ok(request) => self.handle(request).await,
                    Err(e) => Reply::BadRequest {
                        reason: format!("cannot read the request: {e}"),
                    },
                }
            };
            let Ok(mut text) = serde_json::to_string(&reply) else {
                return;
            };
            text.push('\n');
            if write.write_all(text.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    async fn shutdown(&self) {
        let mut slot = self.postmaster.lock().await;
        if let Some(pm) = slot.as_mut() {
            match pm
                .stop(raftgres_postgres::StopMode::Fast, SHUTDOWN_STOP)
                .await
            {
                Ok(status) => tracing::info!(%status, "stopped Postgres"),
                Err(e) => tracing::error!(error = %e, "Postgres did not stop cleanly"),
            }
        }
        *slot = None;
    }
}

/// Binds the socket, refusing if another keeper answers on it.
async fn bind(socket: &Path) -> Result<UnixListener> {
    if UnixStream::connect(socket).await.is_ok() {
        return Err(KeeperError::AlreadyRunning {
            socket: socket.to_owned(),
        });
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(KeeperError::io("remove the stale socket", socket, e)),
    }
    let listener =
        UnixListener::bind(socket).map_err(|e| KeeperError::io("listen on", socket, e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| KeeperError::io("restrict", socket, e))?;
    Ok(listener)
}

/// Runs the keeper until SIGTERM or SIGINT, which stop Postgres cleanly.
pub async fn serve(settings: KeeperSettings) -> Result<()> {
    settings.pg.validate().map_err(KeeperError::Postgres)?;
    let listener = bind(&settings.socket).await?;
    let pid_file = KeeperSettings::pid_file(&settings.socket);
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .map_err(|e| KeeperError::io("write", &pid_file, e))?;
    let exe = settings.pg.server_binary();
    // A server no keeper owns (its keeper and guard both died) is killed
    // before this one takes over.
    let strays = raftgres_postgres::kill_strays(&settings.pg, SHUTDOWN_STOP)
        .await
        .map_err(KeeperError::Postgres)?;
    if !strays.is_empty() {
        tracing::warn!(pids = ?strays, "killed a Postgres server that no keeper owned");
    }
    let (armed, _) = watch::channel(None);
    let keeper = Arc::new(Keeper {
        pg: settings.pg.clone(),
        exe,
        guard_command: settings.guard.clone(),
        postmaster: tokio::sync::Mutex::new(None),
        record: Mutex::new(Record::default()),
        armed,
        guard: Mutex::new(None),
    });
    keeper
        .feed_guard()
        .map_err(|e| KeeperError::io("start the guard", &settings.guard.program, e))?;
    tokio::spawn(keeper.clone().enforce());
    tokio::spawn(keeper.clone().monitor());
    tracing::info!(socket = %settings.socket.display(), pid = std::process::id(), "keeper listening");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| KeeperError::io("handle SIGTERM in", &settings.socket, e))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| KeeperError::io("handle SIGINT in", &settings.socket, e))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { tokio::spawn(keeper.clone().serve_connection(stream)); }
                Err(e) => tracing::warn!(error = %e, "keeper: accept failed"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("keeper stopping: stopping Postgres");
    keeper.shutdown().await;
    let _ = std::fs::remove_file(&settings.socket);
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}
