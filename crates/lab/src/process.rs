use crate::daemon;
use crate::haproxy;
use crate::netns::{NetnsMember, spawn_in_netns};
use crate::pgbouncer;
use crate::spec::{ApiAuth, LabDescription, LabHaproxy, LabMember, LabSpec, PgAuth, agent_config};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};
use raftgres_proto::v1::{AgentStatusReply, AgentStatusRequest, agent_client::AgentClient};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
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

/// The user name every lab member's `restapi.authentication` accepts.
const API_USERNAME: &str = "raftgres";
/// The lab's Postgres roles: the superuser its clients log in as, and the
/// one standbys stream as.
pub(crate) const PG_SUPERUSER: &str = "postgres";
pub(crate) const PG_REPLICATION_USER: &str = "replicator";

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

fn chown_tree(path: &Path, user: &User) -> Result<(), LabError> {
    chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw())).map_err(|e| {
        LabError::Setup(format!("cannot chown {} to postgres: {e}", path.display()))
    })?;
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(io(path))? {
            chown_tree(&entry.map_err(io(path))?.path(), user)?;
        }
    }
    Ok(())
}

/// Every ancestor of DIR must be enterable by the agents' user (a clone
/// under /root is not); say so instead of failing obscurely later.
fn check_reachable(dir: &Path, user: &User) -> Result<(), LabError> {
    let mut current = PathBuf::new();
    for part in dir.components() {
        current.push(part);
        if current == dir {
            break;
        }
        let meta = fs::metadata(&current).map_err(io(&current))?;
        let mode = meta.permissions().mode();
        use std::os::unix::fs::MetadataExt;
        let ok = mode & 0o001 != 0
            || (meta.uid() == user.uid.as_raw() && mode & 0o100 != 0)
            || (meta.gid() == user.gid.as_raw() && mode & 0o010 != 0);
        if !ok {
            return Err(LabError::Setup(format!(
                "the postgres user cannot enter {}; choose a lab --dir it can reach, e.g. /tmp/raftgres-lab",
                current.display()
            )));
        }
    }
    Ok(())
}

impl Lab {
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        Self::up_with(spec, None)
    }

    /// Like [`Lab::up`], but member `i` (witness last) runs in network
    /// namespace `netns[i].ns`: its agent is started inside it (no wrapper
    /// process; Postgres and the watchdog inherit it), and its Raft and
    /// Postgres addresses use `netns[i].addr` instead of loopback. A
    /// database member's pgbouncer, when installed, is started inside that
    /// namespace too and listens on `netns[i].addr`, so cutting the member
    /// off cuts its pgbouncer off with it. There is no HAProxy. The
    /// namespaces must exist and be reachable from this process (see
    /// [`crate::LabNetwork`]); the lab neither creates nor removes them.
    pub fn up_in_netns(spec: &LabSpec, netns: &[NetnsMember]) -> Result<Lab, LabError> {
        let count = spec.members + usize::from(spec.witness);
        if netns.len() < count {
            return Err(LabError::Setup(format!(
                "{count} members need {count} network namespaces, got {}",
                netns.len()
            )));
        }
        Self::up_with(spec, Some(netns))
    }

    fn up_with(spec: &LabSpec, netns: Option<&[NetnsMember]>) -> Result<Lab, LabError> {
        if !spec.agent_bin.is_file() {
            return Err(LabError::NoAgentBinary(spec.agent_bin.clone()));
        }
        let run_as = run_as()?;
        let dir = spec.dir.clone();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let dir = fs::canonicalize(&dir).map_err(io(&dir))?;
        if let Some(user) = &run_as {
            check_reachable(&dir, user)?;
        }
        let bin_dir = dir.join("bin");
        fs::create_dir_all(&bin_dir).map_err(io(&bin_dir))?;
        let agent_bin = bin_dir.join("raftgres-agent");
        // Copy, since the agents' user may not reach the build tree.
        fs::copy(&spec.agent_bin, &agent_bin).map_err(io(&agent_bin))?;
        fs::set_permissions(&agent_bin, fs::Permissions::from_mode(0o755))
            .map_err(io(&agent_bin))?;

        let count = spec.members + usize::from(spec.witness);
        // A DIR left by an earlier `lab up` holds data whose Raft membership
        // names its ports: start that same cluster again on them.
        let previous = match read_description(&dir) {
            Ok(previous) => Some(previous),
            Err(_) if LabDescription::path(&dir).exists() => {
                return Err(LabError::Setup(format!(
                    "{} holds an unreadable lab.json; remove the directory or choose another --dir",
                    dir.display()
                )));
            }
            Err(_) => None,
        };
        if let Some(previous) = &previous {
            let witnesses = previous.members.iter().filter(|m| m.witness).count();
            if previous.members.len() != count
                || witnesses != usize::from(spec.witness)
                || netns.is_some()
            {
                return Err(LabError::Setup(format!(
                    "{} holds an earlier lab of {} members ({witnesses} witness); start it with the same shape, or remove the directory or choose another --dir",
                    dir.display(),
                    previous.members.len()
                )));
            }
        }
        let port_of = |addr: &str| {
            addr.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
        };
        let reused = |pick: &dyn Fn(&LabMember) -> Option<u16>| -> Option<Vec<u16>> {
            previous.as_ref()?.members.iter().map(pick).collect()
        };
        let ports = match &spec.ports {
            None if previous.is_some() => reused(&|m| port_of(&m.raft_addr))
                .ok_or_else(|| LabError::Setup("the earlier lab.json lacks Raft ports".into()))?,
            Some(ports) if ports.len() >= count => ports.clone(),
            Some(ports) => {
                return Err(LabError::Setup(format!(
                    "{count} members need {count} ports, got {}",
                    ports.len()
                )));
            }
            None => (0..count).map(|_| free_port()).collect::<Result<_, _>>()?,
        };
        let previous_pg_ports = previous.as_ref().and_then(|p| {
            p.members
                .iter()
                .filter(|m| !m.witness)
                .map(|m| m.pg_port)
                .collect::<Option<Vec<u16>>>()
        });
        let pg_ports = match previous_pg_ports {
            Some(ports) if ports.len() == spec.members => ports,
            _ => (0..spec.members)
                .map(|_| free_port())
                .collect::<Result<Vec<_>, _>>()?,
        };
        let api_ports = match reused(&|m| port_of(&m.api_url)) {
            Some(ports) => ports,
            None => (0..count)
                .map(|_| free_port())
                .collect::<Result<Vec<_>, _>>()?,
        };
        // Scripts and tests of the earlier lab keep working with what they read.
        let api_auth = match previous.as_ref().and_then(|p| p.api_auth.clone()) {
            Some(auth) => auth,
            None => ApiAuth {
                username: API_USERNAME.to_owned(),
                password: random_password()?,
            },
        };
        let pg_auth = match previous.as_ref().and_then(|p| p.pg_auth.clone()) {
            Some(auth) => auth,
            None => PgAuth {
                superuser: random_password()?,
                replication: random_password()?,
                pgbouncer_admin: random_password()?,
            },
        };
        let previous_haproxy = previous.as_ref().and_then(|p| p.haproxy.as_ref());
        if let Some(old) = previous_haproxy
            && haproxy::is_ours(old.pid, &old.config)
        {
            return Err(LabError::Setup(format!(
                "HAProxy of the earlier lab in {} still runs (pid {}); run `raftgresctl lab down --dir {}` first",
                dir.display(),
                old.pid,
                dir.display()
            )));
        }
        if let Some(old) = previous.as_ref().and_then(|p| {
            p.members
                .iter()
                .find(|m| match (m.pgbouncer_pid, &m.pgbouncer_config) {
                    (Some(pid), Some(config)) => pgbouncer::is_ours(pid, config),
                    _ => false,
                })
        }) {
            return Err(LabError::Setup(format!(
                "pgbouncer of {} of the earlier lab in {} still runs (pid {}); run `raftgresctl lab down --dir {}` first",
                old.name,
                dir.display(),
                old.pgbouncer_pid.unwrap_or_default(),
                dir.display()
            )));
        }
        let pgbouncer_bin = pgbouncer::binary();
        let previous_pgbouncer_ports = previous.as_ref().and_then(|p| {
            p.members
                .iter()
                .filter(|m| !m.witness)
                .map(|m| m.pgbouncer_port)
                .collect::<Option<Vec<u16>>>()
        });
        // One per database member; witnesses come last and get none.
        let pgbouncer_ports: Vec<Option<u16>> = match (&pgbouncer_bin, previous_pgbouncer_ports) {
            (None, _) => vec![None; spec.members],
            (Some(_), Some(ports)) if ports.len() == spec.members => {
                ports.into_iter().map(Some).collect()
            }
            (Some(_), _) => (0..spec.members)
                .map(|_| free_port().map(Some))
                .collect::<Result<_, _>>()?,
        };
        // Namespaced members are out of loopback's reach by design.
        let haproxy_bin = haproxy::binary().filter(|_| netns.is_none());
        let haproxy_ports = match (&haproxy_bin, previous_haproxy) {
            (None, _) => None,
            (Some(_), Some(old)) => Some([old.write_port, old.read_port]),
            (Some(_), None) => Some([free_port()?, free_port()?]),
        };
        let members: Vec<LabMember> = (0..count)
            .map(|i| {
                let witness = i >= spec.members;
                let name = if witness {
                    "witness".to_owned()
                } else {
                    format!("node{}", i + 1)
                };
                let ns = netns.map(|n| &n[i]);
                let host = ns.map_or_else(|| "127.0.0.1".to_owned(), |n| n.addr.to_string());
                let pgbouncer_port = pgbouncer_ports.get(i).copied().flatten();
                let pgbouncer_files = pgbouncer_port.map(|_| pgbouncer::Files::of(&dir, &name));
                let pgbouncer_host = pgbouncer::listen_host(ns.map(|n| n.addr));
                let pgbouncer_dsn = |db: &str| {
                    pgbouncer_port.map(|port| {
                        let (user, password) = if db == pgbouncer::ADMIN_DB {
                            (pgbouncer::ADMIN_USER, &pg_auth.pgbouncer_admin)
                        } else {
                            (PG_SUPERUSER, &pg_auth.superuser)
                        };
                        format!(
                            "host={pgbouncer_host} port={port} user={user} password={password} \
                             dbname={db}"
                        )
                    })
                };
                LabMember {
                    node_id: i as u64 + 1,
                    witness,
                    raft_addr: match ns {
                        None => format!("127.0.0.1:{}", ports[i]),
                        Some(n) => SocketAddr::new(n.addr, ports[i]).to_string(),
                    },
                    config: dir.join(format!("{name}.yml")),
                    data_dir: dir.join(&name),
                    log: dir.join(format!("{name}.log")),
                    agent_pid: 0,
                    // HTTPS, with a certificate from the lab's CA, as a
                    // deployment's REST API should be.
                    api_url: match ns {
                        None => format!("https://127.0.0.1:{}", api_ports[i]),
                        Some(n) => format!("https://{}", SocketAddr::new(n.addr, api_ports[i])),
                    },
                    pg_host: (!witness).then(|| host.clone()),
                    pg_port: pg_ports.get(i).copied(),
                    dsn: pg_ports.get(i).map(|port| {
                        format!(
                            "host={host} port={port} user={PG_SUPERUSER} password={} \
                             dbname=postgres",
                            pg_auth.superuser
                        )
                    }),
                    netns: ns.map(|n| n.ns.clone()),
                    pgbouncer_port,
                    pgbouncer_dsn: pgbouncer_dsn(pgbouncer::WRITE_DB),
                    pgbouncer_admin_dsn: pgbouncer_dsn(pgbouncer::ADMIN_DB),
                    pgbouncer_config: pgbouncer_files.as_ref().map(|f| f.config.clone()),
                    pgbouncer_databases_file: pgbouncer_files.as_ref().map(|f| f.databases.clone()),
                    pgbouncer_log: pgbouncer_files.map(|f| f.log),
                    pgbouncer_pid: None,
                    pg_disk: (!witness && spec.data_disk_mib.is_some())
                        .then(|| dir.join(&name).join("disk")),
                    pg_data_dir: (!witness && spec.data_disk_mib.is_some())
                        .then(|| dir.join(&name).join("disk").join("pgdata")),
                    name,
                }
            })
            .collect();
        let agent_preload = match &spec.agent_preload {
            Some(library) => {
                let copy = bin_dir.join("agent-preload.so");
                fs::copy(library, &copy).map_err(io(&copy))?;
                fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).map_err(io(&copy))?;
                Some(copy)
            }
            None => None,
        };
        let pg_bin_dir = spec.copy_pg_binaries.then(|| dir.join("pgbin"));
        if let Some(to) = &pg_bin_dir {
            crate::disk::copy_pg_binaries(to)?;
        }
        let (lab_tls, member_tls) = crate::tls::issue(
            &dir,
            &members
                .iter()
                .map(|m| crate::tls::Subject {
                    name: m.name.clone(),
                    node_id: m.node_id,
                    api_host: m
                        .api_listen()
                        .map(|a| a.ip().to_string())
                        .unwrap_or_default(),
                    pg_host: m.pg_host.clone(),
                })
                .collect::<Vec<_>>(),
        )?;
        let mut mounts = Mounts::default();
        for (m, tls) in members.iter().zip(&member_tls) {
            fs::create_dir_all(&m.data_dir).map_err(io(&m.data_dir))?;
            if let (Some(disk), Some(mib)) = (&m.pg_disk, spec.data_disk_mib) {
                let owner = run_as.as_ref().map(|u| (u.uid.as_raw(), u.gid.as_raw()));
                crate::disk::mount_small(disk, mib, owner)?;
                mounts.0.push(disk.clone());
            }
            write_private(
                &m.config,
                &agent_config(
                    m,
                    "lab",
                    &members,
                    &api_auth,
                    &pg_auth,
                    pg_bin_dir.as_deref(),
                    Some((&lab_tls.ca_file, tls)),
                ),
            )?;
        }
        for m in &members {
            let Some(listen) = m.pgbouncer_listen() else {
                continue;
            };
            let files = pgbouncer::Files::of(&dir, &m.name);
            match &m.netns {
                // As the members' own connections: TLS, the server checked.
                None => pgbouncer::write_files(
                    &dir,
                    &files,
                    listen.port(),
                    &pg_auth,
                    Some(&lab_tls.ca_file),
                )?,
                Some(_) => pgbouncer::write_files_on(
                    &dir,
                    &files,
                    listen.ip(),
                    listen.port(),
                    &pg_auth,
                    Some(&lab_tls.ca_file),
                )?,
            }
        }
        let haproxy_config = dir.join("haproxy.cfg");
        if let (Some(bin), Some([write_port, read_port])) = (&haproxy_bin, haproxy_ports) {
            let check_ca = members
                .iter()
                .any(|m| m.api_url.starts_with("https://"))
                .then_some(lab_tls.ca_file.as_path());
            let text = haproxy::render(&members, write_port, read_port, check_ca)?;
            fs::write(&haproxy_config, text).map_err(io(&haproxy_config))?;
            haproxy::check(bin, &haproxy_config)?;
        }
        if let Some(user) = &run_as {
            chown_tree(&dir, user)?;
        }
        let mut lab = Lab {
            description: LabDescription {
                dir,
                agent_bin,
                members,
                api_auth: Some(api_auth),
                haproxy: None,
                pg_bin_dir,
                agent_preload,
                tls: Some(lab_tls),
                pg_auth: Some(pg_auth),
            },
            children: BTreeMap::new(),
            owns_keepers: true,
            haproxy: None,
            pgbouncers: BTreeMap::new(),
            run_as,
            mounts,
        };
        for name in lab.names() {
            lab.start(&name)?;
        }
        if let Some(bin) = &pgbouncer_bin {
            lab.start_pgbouncers(bin)?;
        }
        if let (Some(bin), Some(ports)) = (&haproxy_bin, haproxy_ports) {
            lab.start_haproxy(bin, &haproxy_config, ports)?;
        }
        lab.write_description()?;
        Ok(lab)
    }

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
        for child in self.children.values() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        for child in self.children.values_mut() {
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            let _ = child.kill();
            let _ = child.wait();
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

    /// Polls until exactly one member holds the lease, every running member
    /// sees that holder, the holder's Postgres takes writes and every other
    /// database member's Postgres streams from it; or `within` passes.
    pub async fn wait_healthy(&self, within: Duration) -> Result<String, LabError> {
        let deadline = Instant::now() + within;
        let mut detail = String::from("no status yet");
        while Instant::now() < deadline {
            let mut holders = Vec::new();
            let mut seen = Vec::new();
            for m in &self.description.members {
                match agent_status(&m.raft_addr, self.description.tls.as_ref()).await {
                    Ok(s) => {
                        if s.holds_lease {
                            holders.push(m.name.clone());
                        }
                        seen.push(s.lease_holder_seen);
                    }
                    Err(e) => seen.push(format!("<{} unreachable: {e}>", m.name)),
                }
            }
            let lease_ok =
                matches!(holders.as_slice(), [holder] if seen.iter().all(|s| s == holder));
            if lease_ok {
                let holder = holders[0].clone();
                match self.postgres_problem(&holder).await {
                    None => return Ok(holder),
                    Some(problem) => detail = format!("lease held by {holder}; {problem}"),
                }
            } else {
                detail = format!("valid holders {holders:?}, holders seen {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LabError::Unhealthy {
            after: within,
            detail,
            dir: self.description.dir.clone(),
        })
    }
}

impl Lab {
    /// What keeps the database members from "one primary, replicas streaming".
    async fn postgres_problem(&self, holder: &str) -> Option<String> {
        for m in &self.description.members {
            let Some(dsn) = &m.dsn else { continue };
            let want = if m.name == holder {
                "SELECT NOT pg_is_in_recovery()"
            } else {
                "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
            };
            match pg_query_bool(dsn, want).await {
                Ok(true) => {}
                Ok(false) if m.name == holder => {
                    return Some(format!("{} is not writable yet", m.name));
                }
                Ok(false) => return Some(format!("{} is not streaming yet", m.name)),
                Err(e) => return Some(format!("{}: {e}", m.name)),
            }
        }
        None
    }
}

/// One boolean query, bounded to two seconds.
pub async fn pg_query_bool(dsn: &str, query: &str) -> Result<bool, String> {
    let work = async {
        let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let row = client
            .query_one(query, &[])
            .await
            .map_err(|e| e.to_string());
        drop(client);
        let _ = driver.await;
        row?.try_get::<_, bool>(0).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .map_err(|_| "no answer within 2s".to_owned())?
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

/// A connection to a member's Raft port, over mutual TLS with the tools'
/// certificate when the lab has it (`tls`).
pub async fn member_channel(
    raft_addr: &str,
    tls: Option<&crate::tls::LabTls>,
) -> Result<tonic::transport::Channel, String> {
    let endpoint = match tls {
        Some(tls) => tonic::transport::Endpoint::from_shared(format!("https://{raft_addr}"))
            .map_err(|e| e.to_string())?
            .tls_config(tls.client_config()?)
            .map_err(|e| e.to_string())?,
        None => tonic::transport::Endpoint::from_shared(format!("http://{raft_addr}"))
            .map_err(|e| e.to_string())?,
    };
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// One agent's own view, over its gRPC status service, within one second;
/// over mutual TLS when the lab has it (`tls`).
pub async fn agent_status(
    raft_addr: &str,
    tls: Option<&crate::tls::LabTls>,
) -> Result<AgentStatusReply, String> {
    let call = async {
        let mut client = AgentClient::new(member_channel(raft_addr, tls).await?);
        client
            .status(AgentStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|e| e.message().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .map_err(|_| "no answer within 1s".to_owned())?
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

/// Whether `pid` exists and is not a zombie, which `kill(pid, 0)` cannot tell.
pub(crate) fn is_running(pid: u32) -> bool {
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
        })
        .flatten();
    !matches!(state, Some('Z') | Some('X') | None)
}

/// A PID still names our agent only if its executable is the lab's copy;
/// a zombie or a reused PID does not count.
fn is_our_agent(pid: u32, agent_bin: &Path) -> bool {
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    fs::read_link(exe).is_ok_and(|exe| exe == agent_bin) && is_running(pid)
}

/// The members of the lab in DIR whose agents are still running; none if
/// there is no lab there.
pub fn running_members(dir: &Path) -> Vec<String> {
    match read_description(dir) {
        Ok(description) => description
            .members
            .iter()
            .filter(|m| is_our_agent(m.agent_pid, &description.agent_bin))
            .map(|m| m.name.clone())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A keeper stops Postgres with a fast shutdown, which may take a while
/// under load; after this, SIGKILL (its guard then kills Postgres).
const KEEPER_GRACE: Duration = Duration::from_secs(30);

/// The keeper recorded in the member's data directory, if that PID still
/// runs the lab's agent binary as `keeper`.
fn keeper_of(member: &LabMember, agent_bin: &Path) -> Option<u32> {
    let text = fs::read_to_string(member.data_dir.join("keeper.pid")).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    is_our_keeper(pid, agent_bin).then_some(pid)
}

fn is_our_keeper(pid: u32, agent_bin: &Path) -> bool {
    is_our_agent(pid, agent_bin)
        && fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(b"keeper".as_slice()))
}

/// The guard and Postgres processes of a member: every process running
/// the lab's agent binary as `keeper-guard` for its data directory, and
/// every process whose working directory is inside the member's data
/// directory (Postgres chdirs into its data directory).
fn processes_in_lab_member(member: &LabMember, agent_bin: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let Ok(dir) = fs::canonicalize(&member.data_dir) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let in_member =
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(&dir));
        let guard = is_our_agent(pid, agent_bin)
            && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.get(1) == Some(&b"keeper-guard".as_slice())
                    && args.windows(2).any(|w| {
                        w[0] == b"--data-dir"
                            && Path::new(std::str::from_utf8(w[1]).unwrap_or(""))
                                .starts_with(&member.data_dir)
                    })
            });
        if (in_member || guard) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}

/// SIGTERM to each keeper (a fast shutdown of its Postgres), SIGKILL to
/// those still running after `grace`.
fn stop_keepers(pids: &[u32], agent_bin: &Path, grace: Duration) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|p| is_our_keeper(*p, agent_bin)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        if is_our_keeper(*pid, agent_bin) {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
}

/// What `lab down` stops, by what its PID must still name.
enum Started<'a> {
    /// The lab's copy of the agent binary.
    Agent(&'a Path),
    /// HAProxy, started with this config file.
    Haproxy(&'a Path),
    /// A member's pgbouncer, started with this config file.
    Pgbouncer(&'a Path),
}

impl Started<'_> {
    fn runs_as(&self, pid: u32) -> bool {
        match self {
            Started::Agent(agent_bin) => is_our_agent(pid, agent_bin),
            Started::Haproxy(config) => haproxy::is_ours(pid, config),
            Started::Pgbouncer(config) => pgbouncer::is_ours(pid, config),
        }
    }
}

/// Stops what `lab up` started in DIR, by PID: the agents, pgbouncers and
/// HAProxy. A missing DIR or lab.json, or processes already gone, are not
/// errors. Returns what was stopped: member names, `NAME-pgbouncer`, and
/// `haproxy`.
pub fn down(dir: &Path, grace: Duration) -> Result<Vec<String>, LabError> {
    if !LabDescription::path(dir).exists() {
        return Ok(Vec::new());
    }
    let description = read_description(dir)?;
    let mut running: Vec<(String, u32, Started)> = Vec::new();
    for m in &description.members {
        let started = Started::Agent(&description.agent_bin);
        if started.runs_as(m.agent_pid) {
            running.push((m.name.clone(), m.agent_pid, started));
        }
        if let (Some(pid), Some(config)) = (m.pgbouncer_pid, &m.pgbouncer_config) {
            let started = Started::Pgbouncer(config);
            if started.runs_as(pid) {
                running.push((format!("{}-pgbouncer", m.name), pid, started));
            }
        }
    }
    if let Some(h) = &description.haproxy {
        let started = Started::Haproxy(&h.config);
        if started.runs_as(h.pid) {
            running.push(("haproxy".to_owned(), h.pid, started));
        }
    }
    for (_, pid, _) in &running {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && running
            .iter()
            .any(|(_, pid, started)| started.runs_as(*pid))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (_, pid, started) in &running {
        if started.runs_as(*pid) {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
    // Keepers after their agents, so that no agent restarts what they stop.
    let mut stopped: Vec<String> = running.into_iter().map(|(name, _, _)| name).collect();
    let mut keepers = Vec::new();
    for m in &description.members {
        if let Some(pid) = keeper_of(m, &description.agent_bin) {
            keepers.push(pid);
            stopped.push(format!("{}-keeper", m.name));
        }
    }
    stop_keepers(&keepers, &description.agent_bin, grace.max(KEEPER_GRACE));
    Ok(stopped)
}
