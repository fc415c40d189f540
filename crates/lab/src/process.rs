//! A running lab: the handle on its processes, and what tests do to them.

mod down;
mod health;
mod up;

use crate::daemon;
use crate::haproxy;
use crate::netns::spawn_in_netns;
use crate::pgbouncer;
use crate::spec::{ApiAuth, LabDescription, LabHaproxy, LabMember, PgAuth};
pub(crate) use down::is_running;
use down::{KEEPER_GRACE, is_our_agent, keeper_of, processes_in_lab_member, stop_keepers};
pub use down::{down, running_members};
pub use health::{agent_status, member_channel, pg_query_bool};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::chown;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot find the agent binary {0}; build it first with `cargo build --workspace --bins`"
    )]
    NoAgentBinary(PathBuf),
    #[error(
        "running as root but there is no `postgres` user to run the agents as; install PostgreSQL or create the user"
    )]
    NoPostgresUser,
    #[error("{0}")]
    Setup(String),
    #[error(
        "the cluster did not become healthy within {after:?}: {detail}; see the logs under {dir}"
    )]
    Unhealthy {
        after: Duration,
        detail: String,
        dir: PathBuf,
    },
    #[error("cannot read {path}: {reason}")]
    Description { path: PathBuf, reason: String },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A running lab. Children stay with this handle so tests can reap what
/// they kill; `raftgresctl lab up` simply drops it and leaves them running.
pub struct Lab {
    pub description: LabDescription,
    children: BTreeMap<String, Child>,
    /// Cleared by [`Lab::detach`]: the keepers then outlive this handle too.
    owns_keepers: bool,
    haproxy: Option<Child>,
    /// Each database member's pgbouncer, by member name.
    pgbouncers: BTreeMap<String, Child>,
    run_as: Option<User>,
    /// Dropped after the processes stop (it is the last field), which
    /// unmounts the members' small disks.
    mounts: Mounts,
}

/// Filesystems this lab mounted, unmounted when dropped.
#[derive(Default)]
struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for at in self.0.drain(..) {
            crate::disk::unmount(&at);
        }
    }
}

/// The lab's Postgres roles: the superuser its clients log in as, and the
/// one standbys stream as.
pub(crate) const PG_SUPERUSER: &str = "postgres";
pub(crate) const PG_REPLICATION_USER: &str = "replicator";
/// Environment variables of the test harness, never passed to agents.
const TEST_ENV_PREFIX: &str = "RAFTGRES_TEST_";

/// 16 random bytes as hex: unguessable, and safe unquoted in a URL, a
/// libpq connection string or shell.
pub(crate) fn random_password() -> Result<String, LabError> {
    let source = Path::new("/dev/urandom");
    let mut bytes = [0u8; 16];
    fs::File::open(source)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io(source))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a file only its owner may read: it holds a password.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), LabError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    // `mode` applies only when the file is created; an earlier lab's may not be.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))
}

/// Where ports are picked: below the kernel's ephemeral range. A port the
/// kernel hands out for `bind(0)` lies inside that range, so between our
/// check and the agent's own bind any outgoing connection (tests make many)
/// may take it as its local port, and the agent then fails to listen.
const PORTS_FROM: u16 = 10_000;
const PORTS_BELOW_DEFAULT: u16 = 32_768;
static GIVEN_PORTS: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|low| *low > PORTS_FROM + 1_000)
        .unwrap_or(PORTS_BELOW_DEFAULT)
}

/// A random loopback port outside the ephemeral range that is free now.
pub(crate) fn free_port() -> Result<u16, LabError> {
    let source = Path::new("/dev/urandom");
    let below = ephemeral_low();
    let mut random = fs::File::open(source).map_err(io(source))?;
    for _ in 0..200 {
        let mut bytes = [0u8; 2];
        random.read_exact(&mut bytes).map_err(io(source))?;
        let port = PORTS_FROM + u16::from_le_bytes(bytes) % (below - PORTS_FROM);
        // Never the same port twice from this process: a lab binds its
        // ports only later, so a free check alone could repeat one.
        let mut given = GIVEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    // Fall back on the kernel's choice rather than fail a crowded machine.
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io(Path::new("127.0.0.1:0")))?;
    Ok(listener
        .local_addr()
        .map_err(io(Path::new("127.0.0.1:0")))?
        .port())
}

/// Agents run as `postgres` when started by root, as Postgres itself must.
fn run_as() -> Result<Option<User>, LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(LabError::NoPostgresUser),
    }
}

impl Lab {
    /// Started while the cluster forms, so the checks have marked the
    /// servers by the time it is healthy: HAProxy counts every server as up
    /// until its first check fails.
    fn start_haproxy(
        &mut self,
        bin: &Path,
        config: &Path,
        [write_port, read_port]: [u16; 2],
    ) -> Result<(), LabError> {
        let log = self.description.dir.join("haproxy.log");
        let child = haproxy::start(
            bin,
            config,
            &log,
            self.run_as.as_ref(),
            [write_port, read_port],
        )?;
        self.description.haproxy = Some(LabHaproxy {
            write_port,
            read_port,
            pid: child.id(),
            config: config.to_owned(),
            log,
        });
        self.haproxy = Some(child);
        Ok(())
    }

    /// One pgbouncer per database member, each with the databases file the
    /// lab wrote (no primary) until its agent manages it, and in the
    /// member's network namespace when it has one.
    fn start_pgbouncers(&mut self, bin: &Path) -> Result<(), LabError> {
        let dir = self.description.dir.clone();
        for i in 0..self.description.members.len() {
            let member = &self.description.members[i];
            let Some(listen) = member.pgbouncer_listen() else {
                continue;
            };
            let name = member.name.clone();
            let files = pgbouncer::Files::of(&dir, &name);
            let run_as = self.run_as.as_ref();
            let child = match &member.netns {
                None => pgbouncer::start(bin, &files, run_as, listen.port())?,
                Some(ns) => pgbouncer::start_on(bin, &files, run_as, listen, Some(ns))?,
            };
            self.description.members[i].pgbouncer_pid = Some(child.id());
            self.pgbouncers.insert(name, child);
        }
        Ok(())
    }

    /// The lab's Postgres and pgbouncer passwords.
    pub fn pg_auth(&self) -> Option<&PgAuth> {
        self.description.pg_auth.as_ref()
    }

    /// The member's credentials for the agents' mutating REST endpoints.
    pub fn api_auth(&self) -> Option<&ApiAuth> {
        self.description.api_auth.as_ref()
    }

    /// A libpq connection string through HAProxy: to the writable primary
    /// (`write`, as the one each member's `dsn` names, so it may create
    /// tables) or to a streaming replica; `None` without HAProxy.
    pub fn haproxy_dsn(&self, write: bool) -> Option<String> {
        let haproxy = self.description.haproxy.as_ref()?;
        let port = if write {
            haproxy.write_port
        } else {
            haproxy.read_port
        };
        let password = &self.description.pg_auth.as_ref()?.superuser;
        Some(format!(
            "host={} port={port} user={PG_SUPERUSER} password={password} dbname=postgres",
            haproxy::LISTEN_ADDRESS
        ))
    }

    pub fn names(&self) -> Vec<String> {
        self.description
            .members
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    pub fn member(&self, name: &str) -> Result<&LabMember, LabError> {
        self.description
            .member(name)
            .ok_or_else(|| LabError::Setup(format!("no lab member named {name}")))
    }

    fn write_description(&self) -> Result<(), LabError> {
        let path = LabDescription::path(&self.description.dir);
        let text = serde_json::to_string_pretty(&self.description)
            .map_err(|e| LabError::Setup(format!("cannot encode lab.json: {e}")))?;
        let tmp = path.with_extension("json.tmp");
        write_private(&tmp, &text)?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Starts (or restarts) one member's agent from its config and data.
    pub fn start(&mut self, name: &str) -> Result<u32, LabError> {
        let member = self.member(name)?.clone();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .map_err(io(&member.log))?;
        if let Some(user) = &self.run_as {
            chown(
                &member.log,
                Some(user.uid.as_raw()),
                Some(user.gid.as_raw()),
            )
            .map_err(|e| LabError::Setup(format!("cannot chown {}: {e}", member.log.display())))?;
        }
        let err_log = log.try_clone().map_err(io(&member.log))?;
        let mut command = Command::new(&self.description.agent_bin);
        command
            .arg("--config")
            .arg(&member.config)
            .current_dir(&self.description.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            // Its own process group: a terminal's Ctrl-C reaches `lab up`, not the agents.
            .process_group(0);
        // The agent reads every `RAFTGRES_*` variable as a setting and
        // refuses unknown ones; the test harness's own (`RAFTGRES_TEST_*`,
        // such as the Postgres bin dir, which the lab has already put in
        // the settings file) are none.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with(TEST_ENV_PREFIX) {
                command.env_remove(name);
            }
        }
        if let Some(user) = &self.run_as {
            // With the user's home, as systemd gives it: libpq in the tools
            // and the walreceiver looks there for a client certificate, and
            // fails on a home it may not read.
            command
                .uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .env("HOME", &user.dir);
        }
        if let Some(library) = &self.description.agent_preload {
            command
                .env("LD_PRELOAD", library)
                .env("LAB_FAULT_DIR", &member.data_dir);
        }
        let child = match &member.netns {
            None => command.spawn().map_err(io(&self.description.agent_bin))?,
            Some(ns) => spawn_in_netns(ns, &mut command)?,
        };
        let pid = child.id();
        self.children.insert(name.to_owned(), child);
        if let Some(m) = self.description.members.iter_mut().find(|m| m.name == name) {
            m.agent_pid = pid;
        }
        self.write_description()?;
        Ok(pid)
    }

    pub fn signal(&self, name: &str, signal: Signal) -> Result<(), LabError> {
        let pid = self.member(name)?.agent_pid;
        kill(Pid::from_raw(pid as i32), signal).map_err(|e| {
            LabError::Setup(format!("cannot send {signal} to {name} (pid {pid}): {e}"))
        })
    }

    /// SIGKILLs a member's agent and reaps it, so it is truly gone on return.
    pub fn kill(&mut self, name: &str) -> Result<(), LabError> {
        self.signal(name, Signal::SIGKILL)?;
        if let Some(mut child) = self.children.remove(name) {
            child.wait().map_err(io(&self.description.agent_bin))?;
        }
        Ok(())
    }

    /// Waits up to `within` for a member's agent to exit and reaps it.
    pub fn wait_exit(&mut self, name: &str, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.children.get_mut(name)?;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.children.remove(name);
                    return Some(status);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => return None,
            }
        }
        None
    }

    /// A handle on the lab already running in `dir` (one `lab up` left),
    /// which owns none of its processes: dropping it stops nothing.
    pub fn open(dir: &Path) -> Result<Lab, LabError> {
        Ok(Lab {
            description: read_description(dir)?,
            children: BTreeMap::new(),
            owns_keepers: false,
            haproxy: None,
            pgbouncers: BTreeMap::new(),
            run_as: run_as()?,
            mounts: Mounts::default(),
        })
    }

    /// Restarts one member's agent as `systemctl restart` would: SIGTERM,
    /// wait for it to exit, then the same binary with the same config. Its
    /// keeper, and so Postgres, keeps running; the new agent attaches.
    pub fn restart_agent(&mut self, name: &str, grace: Duration) -> Result<u32, LabError> {
        let pid = self.member(name)?.agent_pid;
        if is_our_agent(pid, &self.description.agent_bin) {
            self.signal(name, Signal::SIGTERM)?;
            let deadline = Instant::now() + grace;
            while is_our_agent(pid, &self.description.agent_bin) && Instant::now() < deadline {
                if let Some(child) = self.children.get_mut(name)
                    && let Ok(Some(_)) = child.try_wait()
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if is_our_agent(pid, &self.description.agent_bin) {
                return Err(LabError::Setup(format!(
                    "{name}'s agent (pid {pid}) did not exit within {grace:?} of SIGTERM"
                )));
            }
            if let Some(mut child) = self.children.remove(name) {
                let _ = child.wait();
            }
        }
        self.start(name)
    }

    /// The member's keeper (the process that owns its postmaster), if it runs.
    pub fn keeper_pid(&self, name: &str) -> Result<Option<u32>, LabError> {
        Ok(keeper_of(self.member(name)?, &self.description.agent_bin))
    }

    /// The loss of a member's host: SIGKILL to its agent, its keeper, the
    /// keeper's guard and every process of its Postgres, all at once.
    pub fn kill_host(&mut self, name: &str) -> Result<(), LabError> {
        let member = self.member(name)?.clone();
        let mut pids = vec![member.agent_pid];
        pids.extend(keeper_of(&member, &self.description.agent_bin));
        pids.extend(processes_in_lab_member(
            &member,
            &self.description.agent_bin,
        ));
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGSTOP);
        }
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        if let Some(mut child) = self.children.remove(name) {
            let _ = child.wait();
        }
        Ok(())
    }

    /// Stops every agent this handle started: SIGTERM, then SIGKILL after
    /// `grace`; then their keepers, which stop Postgres.
    pub fn stop_all(&mut self, grace: Duration) {
        self.children.values().for_each(daemon::terminate);
        let deadline = Instant::now() + grace;
        for child in self.children.values_mut() {
            daemon::reap_by(child, deadline);
        }
        self.children.clear();
        if !self.owns_keepers {
            return;
        }
        let keepers: Vec<u32> = self
            .description
            .members
            .iter()
            .filter_map(|m| keeper_of(m, &self.description.agent_bin))
            .collect();
        stop_keepers(&keepers, &self.description.agent_bin, KEEPER_GRACE);
    }

    /// Gives up ownership: the agents, pgbouncers and HAProxy keep running
    /// after this process exits.
    pub fn detach(mut self) -> LabDescription {
        self.children.clear();
        self.owns_keepers = false;
        self.haproxy = None;
        self.pgbouncers.clear();
        self.mounts.0.clear();
        self.description.clone()
    }

    /// SIGTERM (HAProxy's immediate stop), then SIGKILL after `grace`.
    fn stop_haproxy(&mut self, grace: Duration) {
        if let Some(mut child) = self.haproxy.take() {
            daemon::stop(&mut child, grace);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_all(Duration::from_secs(5));
        self.stop_haproxy(Duration::from_secs(5));
        for child in self.pgbouncers.values_mut() {
            daemon::stop(child, Duration::from_secs(5));
        }
    }
}

pub fn read_description(dir: &Path) -> Result<LabDescription, LabError> {
    let path = LabDescription::path(dir);
    let text = fs::read_to_string(&path).map_err(|e| LabError::Description {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| LabError::Description {
        path,
        reason: e.to_string(),
    })
}
