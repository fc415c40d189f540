//! The snapshot the agent hands the API, and the trait it hands it through.

use std::collections::BTreeMap;

/// What this member is, as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Runs (or should run) the one writable Postgres.
    Primary,
    /// Runs a Postgres that follows the primary.
    Replica,
    /// Votes in the Raft group, runs no Postgres.
    Witness,
    /// Not known yet (starting up, or no Postgres observation).
    #[default]
    Unknown,
}

impl Role {
    /// The name Patroni's JSON uses (`"primary"`, `"replica"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Witness => "witness",
            Role::Unknown => "unknown",
        }
    }
}

/// One member's health, judged by the agent at the moment it is asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeHealth {
    /// This member's name (Patroni's `name`).
    pub member: String,
    /// The cluster's name (Patroni's `scope`).
    pub scope: String,
    pub role: Role,
    /// The member holds the lease and its deadline has not passed on the
    /// agent's monotonic clock, judged when [`HealthSource::health`] is called.
    pub holds_valid_lease: bool,
    pub postgres_running: bool,
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// The WAL receiver is streaming from the primary.
    pub streaming: bool,
    /// Bytes behind the primary; replicas only, `None` when unknown.
    pub lag_bytes: Option<u64>,
    pub timeline: Option<u32>,
    /// The cluster is in maintenance mode (Patroni's `pause`).
    pub paused: bool,
    /// Member tags, e.g. `nofailover=false`, `noloadbalance=true`,
    /// `failover_priority=1`.
    pub tags: BTreeMap<String, String>,
    /// The WAL position: written on a primary, replayed on a replica.
    pub xlog_location: Option<u64>,
    /// `server_version_num`, e.g. `150004`.
    pub server_version: Option<u32>,
    /// The Raft state names this member a synchronous standby of the
    /// holder (synchronous mode on).
    pub sync_standby: bool,
    /// The Raft state names this member a quorum standby of the holder
    /// (quorum mode).
    pub quorum_standby: bool,
    /// Settings the running server waits for a restart to apply.
    pub pending_restart: BTreeMap<String, raftgres_state::PendingRestart>,
}

impl NodeHealth {
    /// The tag `key` is set to a true boolean, read as PostgreSQL reads
    /// booleans (`true`, `on`, `yes`, `1`, ...; case-insensitive).
    pub fn tag_is_true(&self, key: &str) -> bool {
        self.tags.get(key).is_some_and(|value| {
            let value = value.trim();
            ["true", "on", "yes", "1", "t", "y"]
                .iter()
                .any(|yes| value.eq_ignore_ascii_case(yes))
        })
    }
}

/// Where the router gets its snapshot. Called once per request, so it must
/// be cheap: no I/O, no Raft round trip. The agent judges lease validity on
/// its monotonic clock inside this call.
pub trait HealthSource: Send + Sync + 'static {
    fn health(&self) -> NodeHealth;
}

/// Any `Fn() -> NodeHealth` is a source.
impl<F> HealthSource for F
where
    F: Fn() -> NodeHealth + Send + Sync + 'static,
{
    fn health(&self) -> NodeHealth {
        self()
    }
}
