use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What to start.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub dir: PathBuf,
    /// Members that compete for the lease.
    pub members: usize,
    /// Adds one witness member (votes, never holds the lease).
    pub witness: bool,
    /// Raft ports, one per member; `None` picks free loopback ports.
    pub ports: Option<Vec<u16>>,
    /// The `raftgres-agent` binary to copy into the lab.
    pub agent_bin: PathBuf,
    /// Puts each database member's Postgres data directory on a filesystem
    /// of this many MiB that the lab mounts (root only), so that a test can
    /// fill the disk under a server.
    pub data_disk_mib: Option<u64>,
    /// The PostgreSQL binaries the members run (`postgresql.bin_dir`), for
    /// example another major fetched by `scripts/fetch-postgres`; `None`:
    /// the system's PostgreSQL 15. Written into each member's settings
    /// file, so a restarted agent runs the same ones.
    pub pg_bin_dir: Option<PathBuf>,
    /// Runs Postgres from a copy of its binaries (those of `pg_bin_dir`,
    /// with the `lib/` and `share/` beside them) in the lab's directory,
    /// so that a test can replace them as a package upgrade does.
    pub copy_pg_binaries: bool,
    /// A shared library preloaded into every agent (`LD_PRELOAD`), for
    /// faults injected below the agent, such as a slow fsync. The lab
    /// copies it into `DIR/bin` and tells it the member's directory in
    /// `LAB_FAULT_DIR` (not `RAFTGRES_*`: the agent reads those as settings).
    pub agent_preload: Option<PathBuf>,
}

impl LabSpec {
    /// `members` database members (and a witness if asked) in `dir`, on
    /// loopback, with the system's Postgres binaries on the system's disk.
    pub fn new(dir: PathBuf, members: usize, witness: bool, agent_bin: PathBuf) -> LabSpec {
        LabSpec {
            dir,
            members,
            witness,
            ports: None,
            agent_bin,
            data_disk_mib: None,
            pg_bin_dir: None,
            copy_pg_binaries: false,
            agent_preload: None,
        }
    }
}

/// `DIR/lab.json`: what the lab started, for scripts, tests and `lab down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabDescription {
    pub dir: PathBuf,
    pub agent_bin: PathBuf,
    pub members: Vec<LabMember>,
    /// What the agents' mutating REST endpoints accept (HTTP basic auth);
    /// absent only in a lab.json written before the lab enabled it.
    #[serde(default)]
    pub api_auth: Option<ApiAuth>,
    /// `None` when HAProxy is not installed or the members run in network
    /// namespaces.
    #[serde(default)]
    pub haproxy: Option<LabHaproxy>,
    /// The Postgres binaries the members run when they are not the
    /// system's: the lab's own copy when it made one, else the directory
    /// it was given ([`LabSpec::pg_bin_dir`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_bin_dir: Option<PathBuf>,
    /// The library preloaded into every agent, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_preload: Option<PathBuf>,
    /// The lab's CA and the tools' certificate: the agents speak Raft over
    /// mutual TLS. Absent only in a lab.json written before the lab did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::LabTls>,
    /// The lab's Postgres and pgbouncer passwords (each member's `dsn`
    /// carries the superuser's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_auth: Option<PgAuth>,
}

/// The passwords of one lab: random per lab, kept in lab.json (0600) and
/// in the agents' private settings files.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgAuth {
    /// Of `postgres`, the superuser clients of the lab log in as.
    pub superuser: String,
    /// Of `replicator`, which standbys stream as.
    pub replication: String,
    /// Of pgbouncer's console user (`pgbouncer_admin`), which is no
    /// Postgres role at all.
    pub pgbouncer_admin: String,
}

impl std::fmt::Debug for PgAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgAuth { <redacted> }")
    }
}

/// HTTP basic auth credentials, as in every member's
/// `restapi.authentication`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiAuth {
    pub username: String,
    pub password: String,
}

// Test failures print descriptions; the password stays in lab.json.
impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The HAProxy in front of the database members, on loopback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHaproxy {
    /// Reaches the member whose agent answers 200 on `/primary`.
    pub write_port: u16,
    /// Reaches, round-robin, the members whose agents answer 200 on `/replica`.
    pub read_port: u16,
    /// The HAProxy process itself, run in the foreground.
    pub pid: u32,
    /// The rendered `deploy/haproxy/haproxy.cfg.j2`.
    pub config: PathBuf,
    pub log: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabMember {
    pub name: String,
    pub node_id: u64,
    pub witness: bool,
    pub raft_addr: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The agent process itself (no wrapper), so signals reach it.
    pub agent_pid: u32,
    /// Postgres' address; `None` for a witness.
    pub pg_host: Option<String>,
    pub pg_port: Option<u16>,
    /// A libpq connection string a client can write with.
    pub dsn: Option<String>,
    /// The agent's REST API (Patroni-compatible health endpoints).
    pub api_url: String,
    /// The network namespace the agent (and so its Postgres) runs in, when
    /// the lab was started with [`crate::Lab::up_in_netns`]; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The pgbouncer beside this member's Postgres, on loopback, or in the
    /// member's network namespace on its address there (`pg_host`); the
    /// `pgbouncer_*` fields are absent for a witness and when pgbouncer is
    /// not installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer_port: Option<u16>,
    /// A libpq connection string to the write database through this
    /// member's pgbouncer (same user and database as `dsn`). It reaches the
    /// primary once the member's agent keeps the databases file current;
    /// until then the write database points at no server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer_dsn: Option<String>,
    /// A libpq connection string to that pgbouncer's admin console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer_admin_dsn: Option<String>,
    /// The rendered `deploy/pgbouncer/pgbouncer.ini.j2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer_config: Option<PathBuf>,
    /// The `[databases]` file that config includes, which the agent owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer_databases_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer_log: Option<PathBuf>,
    /// The pgbouncer process itself, run in the foreground.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer_pid: Option<u32>,
    /// The small filesystem the lab mounted for this member's Postgres data
    /// directory, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_disk: Option<PathBuf>,
    /// Postgres' data directory when it is not the agent's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_data_dir: Option<PathBuf>,
}

impl LabMember {
    /// Where this member's REST API listens: the address in `api_url`.
    pub fn api_listen(&self) -> Option<SocketAddr> {
        let rest = self
            .api_url
            .strip_prefix("https://")
            .or_else(|| self.api_url.strip_prefix("http://"))?;
        rest.parse().ok()
    }

    /// Where this member's pgbouncer listens; `None` without one.
    pub(crate) fn pgbouncer_listen(&self) -> Option<SocketAddr> {
        let port = self.pgbouncer_port?;
        let netns_addr = match &self.netns {
            None => None,
            Some(_) => Some(self.pg_host.as_deref()?.parse().ok()?),
        };
        Some(SocketAddr::new(
            crate::pgbouncer::listen_host(netns_addr),
            port,
        ))
    }
}

impl LabDescription {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn member(&self, name: &str) -> Option<&LabMember> {
        self.members.iter().find(|m| m.name == name)
    }
}
