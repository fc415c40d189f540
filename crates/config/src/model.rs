use raftgres_state::LeaseTiming;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The validated settings of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Cluster name: 1 to 63 characters from `a-z`, `0-9`, `_`, `-`.
    pub scope: String,
    /// This member's name, same character rule as `scope`.
    pub name: String,
    /// This member's Raft id, greater than 0 and present in `members`.
    pub node_id: u64,
    /// Absolute directory for the agent's own state.
    pub data_dir: PathBuf,
    /// Votes in Raft, never runs Postgres, never competes for the lease.
    pub witness: bool,
    /// As the member publishes them; `failover_priority` defaults to 1.
    pub tags: raftgres_state::Tags,
    pub raft: RaftSettings,
    /// The local PostgreSQL instance; `None` exactly when `witness` is true.
    pub postgresql: Option<PostgresSettings>,
    /// The agent's HTTP API; a witness serves it too.
    pub restapi: RestApiSettings,
    /// The pgbouncer beside this member, which the agent keeps pointed at
    /// the primary; `None`: no pgbouncer here.
    pub pgbouncer: Option<PgBouncerSettings>,
    /// The initial voters of the Raft group; never empty, ids, names and
    /// addresses unique.
    pub members: Vec<InitialMember>,
    pub bootstrap: BootstrapSettings,
    pub log: LogSettings,
}

/// `log`: how the agent writes its log and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Default plain text; `json`, one object a line.
    pub kind: LogType,
    /// `tracing`'s filter directives: `level`, then each of `loggers`
    /// (`openraft` at `warn` unless named). `RUST_LOG` replaces them.
    pub filter: String,
    /// Absolute; `None`: standard error (the journal under systemd).
    pub dir: Option<PathBuf>,
    /// Files kept in `dir`, the current one included; at least 1.
    pub file_num: usize,
    pub rotation: LogRotation,
}

/// `log.type`, Patroni's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    #[default]
    Plain,
    Json,
}

/// `log.rotation`: when a new file starts in `log.dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogRotation {
    Hourly,
    #[default]
    Daily,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSettings {
    /// Where the gRPC server binds.
    pub listen: SocketAddr,
    /// `host:port` peers dial; defaults to `listen`.
    pub advertise: String,
    /// Default 100 ms; shorter than `election_timeout_min`.
    pub heartbeat_interval: Duration,
    /// Default 250 ms; shorter than `election_timeout_max`.
    pub election_timeout_min: Duration,
    /// Default 500 ms. The worst election it allows (`worst_election`) must
    /// stay below the primary's renewal budget (`ttl - lease_margin -
    /// loop_wait`), or losing the Raft leader would fail the primary over.
    pub election_timeout_max: Duration,
    /// Default 1000, at least 10: build a snapshot after this many logs since
    /// the last one.
    pub snapshot_every_logs: u64,
    /// Default 1000 ms.
    pub rpc_timeout: Duration,
    /// Mutual TLS with the other members; `None`: plain TCP, open to anyone
    /// who reaches the port (the agent warns).
    pub tls: Option<RaftTls>,
}

/// The files of mutual TLS between members (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTls {
    /// The cluster's CA: a peer's certificate must be signed by it.
    pub ca_file: PathBuf,
    /// This member's certificate, naming `raftgres-member` and
    /// `raftgres-node-<node_id>`.
    pub cert_file: PathBuf,
    /// Its private key, readable by the agent's user only.
    pub key_file: PathBuf,
}

/// The PostgreSQL instance this agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// Where PostgreSQL listens: an IP address, not a hostname, and a fixed
    /// port that differs from `raft.listen`'s when the two could collide.
    pub listen: SocketAddr,
    /// `host:port` other members and clients connect to; defaults to
    /// `listen`, never a wildcard address.
    pub connect_address: String,
    /// Absolute directory of `postgres`, `initdb`, `pg_ctl` and the other
    /// binaries; default `/usr/lib/postgresql/15/bin`.
    pub bin_dir: PathBuf,
    /// Absolute data directory; default `<data_dir>/pgdata`, never the agent's
    /// `data_dir` itself.
    pub data_dir: PathBuf,
    /// Absolute directory for the Unix socket; default `<data_dir>/run`.
    pub socket_dir: PathBuf,
    /// The roles the agent and the members log in as, with their
    /// passwords (Patroni's `authentication` section).
    pub authentication: PgAuthentication,
    /// `pg_hba.conf` lines for clients, after the members' own; empty:
    /// `host all all all scram-sha-256`. Never `trust` on a `host` line.
    pub pg_hba: Vec<String>,
    /// The password file the agent writes for PostgreSQL's tools and the
    /// walreceiver; default `<data_dir>/pgpass`.
    pub pgpass: PathBuf,
    /// Default 2000 ms: how long a primary whose PostgreSQL died may restart
    /// it in place before releasing the lease.
    pub restart_grace: Duration,
    /// Extra PostgreSQL parameters, name -> value as PostgreSQL reads it
    /// (`on`/`off` for booleans). Names are lowercase; none of them is a
    /// parameter the agent sets itself.
    pub parameters: BTreeMap<String, String>,
    /// TLS on every connection to a member's Postgres over TCP.
    pub tls: PgTls,
    /// What to run when Postgres starts, stops, restarts, reloads or
    /// changes role.
    pub callbacks: Callbacks,
    /// Run before every promotion, waited for: a failure vetoes it.
    pub pre_promote: Option<Vec<String>>,
    /// Run before Postgres is stopped cleanly, waited for; its outcome does
    /// not hold the stop back.
    pub before_stop: Option<Vec<String>>,
    /// Default 60 s: a callback, `pre_promote` or `before_stop` still
    /// running after this is killed, with every process it started.
    pub callback_timeout: Duration,
    /// Patroni's `create_replica_methods`: how a replica's data is created,
    /// tried in order until one succeeds; default pg_basebackup alone.
    pub create_replica_methods: Vec<ReplicaMethod>,
}

/// One way of creating a replica's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaMethod {
    /// pg_basebackup with the operator's `postgresql.basebackup` options,
    /// each already `--key=value` or `--flag`.
    Basebackup { options: Vec<String> },
    /// The operator's program (`postgresql.<name>.command`), split into
    /// words; it gets `--scope`, `--datadir`, `--role` and `--connstring`
    /// unless `no_params`, then each other key of its section as
    /// `--key=value`.
    Command {
        name: String,
        command: Vec<String>,
        no_params: bool,
        options: Vec<(String, String)>,
    },
}

/// `postgresql.callbacks`, as Patroni's: each a program and its arguments,
/// split as a shell would without running one; the agent appends the
/// event, the role and the scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Callbacks {
    pub on_start: Option<Vec<String>>,
    pub on_stop: Option<Vec<String>>,
    pub on_restart: Option<Vec<String>>,
    pub on_reload: Option<Vec<String>>,
    pub on_role_change: Option<Vec<String>>,
}

/// `postgresql.tls`: libpq's `sslmode` and `sslrootcert`, for the agent's
/// own connections, the walreceiver, `pg_basebackup` and `pg_rewind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// Default `prefer`, libpq's.
    pub sslmode: PgSslMode,
    /// The CA file the verifying modes check servers' certificates against.
    pub sslrootcert: Option<PathBuf>,
}

/// libpq's `sslmode`, without `allow`; written as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgSslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl PgSslMode {
    pub const ALL: [PgSslMode; 5] = [
        PgSslMode::Disable,
        PgSslMode::Prefer,
        PgSslMode::Require,
        PgSslMode::VerifyCa,
        PgSslMode::VerifyFull,
    ];

    pub fn as_libpq(self) -> &'static str {
        match self {
            PgSslMode::Disable => "disable",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }

    /// No connection without TLS.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
        )
    }

    /// The server's certificate must chain to `sslrootcert`.
    pub fn verifies(self) -> bool {
        matches!(self, PgSslMode::VerifyCa | PgSslMode::VerifyFull)
    }
}

impl Serialize for PgSslMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_libpq())
    }
}

impl<'de> Deserialize<'de> for PgSslMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PgSslMode::ALL
            .into_iter()
            .find(|mode| mode.as_libpq() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = PgSslMode::ALL.iter().map(|m| m.as_libpq()).collect();
                let allow = if text == "allow" {
                    " (`allow` tries plain first and protects nothing `prefer` does not)"
                } else {
                    ""
                };
                de::Error::custom(format!(
                    "is {text:?}; expected one of {}{allow}",
                    names.join(", ")
                ))
            })
    }
}

/// Patroni's `postgresql.authentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgAuthentication {
    /// The role the agent connects as; default user name `postgres`.
    pub superuser: PgLogin,
    /// The role replicas stream as; default user name `replicator`.
    pub replication: PgLogin,
    /// A role that may only rewind; `None`: the superuser rewinds.
    pub rewind: Option<PgLogin>,
}

/// One role: a plain identifier (1 to 63 characters from `a-z`, `0-9`,
/// `_`, not starting with a digit) and its password, given in the file, in
/// the environment, or in a private file of its own.
#[derive(Clone, PartialEq, Eq)]
pub struct PgLogin {
    pub username: String,
    pub password: String,
    /// Where the password was read from, when from `password_file`.
    pub password_file: Option<PathBuf>,
}

impl fmt::Debug for PgLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLogin")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// The agent's HTTP API (health and status), under Patroni's name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestApiSettings {
    /// Where the HTTP server binds; default `127.0.0.1:8008`. An IP address,
    /// not a hostname, and a fixed port that differs from `raft.listen`'s and
    /// `postgresql.listen`'s when they could collide.
    pub listen: SocketAddr,
    /// `host:port` other members and tools connect to; defaults to `listen`,
    /// never a wildcard address. IPv6 addresses are in brackets.
    pub connect_address: String,
    /// HTTP basic auth for the mutating endpoints; `None` disables them.
    pub authentication: Option<ApiCredentials>,
    /// HTTPS instead of HTTP; `None`: plain HTTP.
    pub tls: Option<RestApiTls>,
    /// Addresses and CIDR networks that may call the mutating endpoints
    /// (Patroni's `allowlist`); empty, with `allowlist_include_members`
    /// false: any. The agent parses them, naming a bad entry.
    pub allowlist: Vec<String>,
    /// The members' own API addresses may call them too.
    pub allowlist_include_members: bool,
    /// Every read (health checks included) needs the credentials too.
    pub authenticate_reads: bool,
}

/// The REST API's TLS, as Patroni's `restapi` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestApiTls {
    /// The server's certificate (chain), PEM.
    pub certfile: PathBuf,
    /// Its private key, PEM, readable by the agent's user only.
    pub keyfile: PathBuf,
    /// The CA that signs client certificates; required unless
    /// `verify_client` is `None`.
    pub cafile: Option<PathBuf>,
    pub verify_client: VerifyClient,
}

/// Patroni's `restapi.verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyClient {
    #[default]
    None,
    Optional,
    Required,
}

/// What a client sends with HTTP basic auth to call a mutating endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiCredentials {
    /// Not empty, no `:` (basic auth splits user and password at the first
    /// one), no control characters.
    pub username: String,
    /// Not empty, no control characters.
    pub password: String,
}

// Settings are logged at start, and a password must never reach a log.
impl fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RestApiSettings {
    /// The base URL others reach the API at: `http://<connect_address>`,
    /// without a trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.connect_address)
    }
}

/// The local pgbouncer the agent manages: the databases file its main
/// `pgbouncer.ini` includes, and its admin console.
#[derive(Clone, PartialEq, Eq)]
pub struct PgBouncerSettings {
    /// Absolute path of the `[databases]` file the agent owns and rewrites
    /// (pgbouncer 1.18 resolves a relative `%include` against its working
    /// directory, so only an absolute one is safe).
    pub databases_file: PathBuf,
    /// Where pgbouncer listens; the agent reaches its admin console there.
    pub listen: SocketAddr,
    /// A user in pgbouncer's `admin_users`; default `pgbouncer_admin`, never
    /// the Postgres superuser.
    pub admin_user: String,
    pub admin_password: Option<String>,
    /// The real database clients use; default `postgres`.
    pub dbname: String,
    /// The name clients connect to for writes; default `dbname`.
    pub write_db: String,
    /// A second name that reaches the replicas, e.g. `app_ro`; default none.
    pub read_db: Option<String>,
}

impl fmt::Debug for PgBouncerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncerSettings")
            .field("databases_file", &self.databases_file)
            .field("listen", &self.listen)
            .field("admin_user", &self.admin_user)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field("dbname", &self.dbname)
            .field("write_db", &self.write_db)
            .field("read_db", &self.read_db)
            .finish()
    }
}

/// One initial voter of the Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub id: u64,
    pub name: String,
    /// `host:port` with a port from 1 to 65535.
    pub raft_addr: String,
}

impl RaftSettings {
    /// The longest the Raft group may go without a commit after losing its
    /// leader, by openraft 0.9's rules (docs/lease.md, "What the margin
    /// covers"). The last heartbeat may have left one interval before the
    /// loss. A follower that knew a leader refuses votes for
    /// `election_timeout_max` after its last heartbeat (the leader lease)
    /// and campaigns at the first election tick (every 1.5 heartbeats) after
    /// that plus its own election timeout, drawn once below
    /// `election_timeout_max`. That round can fail when a partition cut
    /// replication mid-entry: the candidate with the shorter log is refused,
    /// and if it has the higher node id it also refuses the other one in
    /// the same term (votes of one term are ordered by node id), whose next
    /// round comes one timeout and one tick later. One more heartbeat covers
    /// the new leader's first commit. A leader whose disk stalls keeps its
    /// followers from campaigning for half an `election_timeout_max` more
    /// (the consensus crate's `Settings::flush_stall_bridged`), so a disk
    /// that stays stalled elects that much later.
    pub fn worst_election(&self) -> Duration {
        self.election_timeout_max * 7 / 2 + self.heartbeat_interval * 5
    }
}

/// Dynamic settings written once into the replicated state when the cluster
/// is first formed; later changes go through the cluster, not this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapSettings {
    /// Defaults: ttl 3000 ms (the lease's time to live), loop_wait 250 ms
    /// (renew interval and loop period), margin 400 ms (the holder's
    /// deadline is sent + ttl - margin).
    pub timing: LeaseTiming,
    /// Default 1000 ms: how long a single Raft operation may take before the
    /// holder stops trying.
    pub retry_timeout: Duration,
    /// Default 1 MiB: bytes a replica may lag and still be promoted.
    pub maximum_lag_on_failover: u64,
}
