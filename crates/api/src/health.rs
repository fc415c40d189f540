//! The snapshot the agent hands the API, and the trait it hands it through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;

use crate::live::LiveFacts;

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
    /// agent's monotonic clock, judged against [`HealthSnapshot`]'s deadline per request.
    pub holds_valid_lease: bool,
    pub postgres_running: bool,
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// The WAL receiver is streaming from the primary.
    pub streaming: bool,
    /// Bytes behind the primary; replicas only, `None` when unknown.
    pub lag_bytes: Option<u64>,
    /// The same for the WAL received rather than replayed (`/readiness?mode=write`).
    pub receive_lag_bytes: Option<u64>,
    /// The cluster's `maximum_lag_on_failover`, `/readiness`'s default
    /// limit; `None` before the config is known.
    pub maximum_lag_on_failover: Option<u64>,
    /// The cluster's `ttl`: `/liveness` fails once the agent's loops have
    /// made no progress for a ttl on a primary, two on any other member (as
    /// Patroni). `None` before the config is known.
    pub ttl: Option<Duration>,
    pub timeline: Option<u32>,
    /// The cluster is in maintenance mode (Patroni's `pause`).
    pub paused: bool,
    /// Member tags, e.g. `nofailover=false`, `noloadbalance=true`,
    /// `failover_priority=1`.
    pub tags: BTreeMap<String, String>,
    /// The WAL position: written on a primary, replayed on a replica.
    pub xlog_location: Option<u64>,
    /// Patroni's `state` of Postgres: `running`, `starting`, `stopped`,
    /// `crashed`, `creating replica`, `rewinding`, ...
    pub pg_state: &'static str,
    /// What the last look at the running server saw, for the status
    /// document only: no health check reads it.
    pub server: ServerFacts,
    /// The Raft state names this member a synchronous standby of the
    /// holder (synchronous mode on).
    pub sync_standby: bool,
    /// The Raft state names this member a quorum standby of the holder
    /// (quorum mode).
    pub quorum_standby: bool,
    /// Settings the running server waits for a restart to apply.
    pub pending_restart: BTreeMap<String, raftgres_state::PendingRestart>,
    /// A restart of this member's Postgres set for a later time, as its
    /// record in the cluster state holds it.
    pub scheduled_restart: Option<raftgres_state::ScheduledRestart>,
}

/// Facts about the running server that only the status document reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerFacts {
    /// `server_version_num`, e.g. `150004`.
    pub server_version: Option<u32>,
    /// `pg_control_system()`'s system identifier.
    pub system_identifier: Option<String>,
    /// `pg_postmaster_start_time()` as the server prints it, and in Unix
    /// milliseconds.
    pub postmaster_start_time: Option<String>,
    pub postmaster_start_unix_ms: Option<i64>,
    /// `pg_conf_load_time()` as the server prints it: when it last read
    /// its configuration files, which a reload moves.
    pub conf_load_time: Option<String>,
    /// Standby only: WAL received and flushed, and replayed.
    pub received_lsn: Option<u64>,
    pub replayed_lsn: Option<u64>,
    /// Standby only: commit time of the last replayed transaction, as the
    /// server prints it and in Unix milliseconds.
    pub replayed_timestamp: Option<String>,
    pub replayed_unix_ms: Option<i64>,
    /// Standby only: replay is paused (`pg_wal_replay_pause()`).
    pub replay_paused: bool,
    /// Primary only: the standbys connected to it.
    pub replication: Vec<Standby>,
    /// A clone or rewind under way.
    pub progress: Option<CopyProgress>,
}

/// How far a clone or rewind has come, as `/patroni` shows it in
/// `progress` (Patroni has no such field).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CopyProgress {
    /// `clone` or `rewind`.
    pub action: &'static str,
    /// The `create_replica_methods` entry making a clone (`basebackup`,
    /// or the operator's method).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Since the copy's first report; 0 until a second has passed.
    pub bytes_per_second: u64,
}

/// One row of `pg_stat_replication`, in Patroni's `replication[]` shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Standby {
    pub usename: Option<String>,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: String,
    pub sync_state: String,
    pub sync_priority: i32,
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

/// This member's health as of its last change, rendered once: what every
/// health request answers from, so a request costs a clock read and a
/// reference count, not a rebuild. The one thing that changes with time
/// alone, the lease's validity, is judged per request against `valid_until`.
#[derive(Debug)]
pub struct HealthSnapshot {
    /// The lease deadline on the source's monotonic clock, and the health
    /// to answer until then.
    holding: Option<(Duration, Rendered)>,
    /// The health to answer without a valid lease.
    lapsed: Rendered,
}

/// One judged [`NodeHealth`] and its `GET` body.
#[derive(Debug)]
pub struct Rendered {
    pub health: NodeHealth,
    pub(crate) body: Bytes,
}

impl Rendered {
    fn new(health: NodeHealth) -> Self {
        let body = Bytes::from(crate::body::document(&health, None));
        Rendered { health, body }
    }
}

impl HealthSnapshot {
    /// `judge(holds)` is the member's health while it holds a valid lease
    /// (`true`) and without one (`false`); `valid_until` is the deadline of
    /// the lease it holds, on the clock [`HealthSource::snapshot`] reads,
    /// or `None` when it holds none.
    pub fn new(valid_until: Option<Duration>, judge: impl Fn(bool) -> NodeHealth) -> Self {
        HealthSnapshot {
            holding: valid_until.map(|until| (until, Rendered::new(judge(true)))),
            lapsed: Rendered::new(judge(false)),
        }
    }

    /// A health judged already, valid whatever the clock says.
    pub fn fixed(health: NodeHealth) -> Self {
        HealthSnapshot {
            holding: None,
            lapsed: Rendered::new(health),
        }
    }

    /// The health at `now`: the holding one strictly before the deadline,
    /// as `HolderLease::is_valid` judges it.
    pub fn at(&self, now: Duration) -> &Rendered {
        match &self.holding {
            Some((until, rendered)) if now < *until => rendered,
            _ => &self.lapsed,
        }
    }
}

/// Where the router gets its snapshot. Called once per request, so it must
/// be cheap: no I/O, no Raft round trip, no rebuild. It returns the latest
/// snapshot and the current instant on the clock of its deadline.
pub trait HealthSource: Send + Sync + 'static {
    fn snapshot(&self) -> (Arc<HealthSnapshot>, Duration);

    /// How long the agent's slowest loop has gone without progress, for
    /// `/liveness`. A source without loops never stalls.
    fn loops_quiet(&self) -> Duration {
        Duration::ZERO
    }

    /// The figures that move with time, judged now. Only `/metrics` and
    /// `GET /patroni` ask, never a health check. A source without a lease
    /// or a Raft group knows none.
    fn live(&self) -> LiveFacts {
        LiveFacts::default()
    }
}

/// Any `Fn() -> NodeHealth` is a source that judges on every call.
impl<F> HealthSource for F
where
    F: Fn() -> NodeHealth + Send + Sync + 'static,
{
    fn snapshot(&self) -> (Arc<HealthSnapshot>, Duration) {
        (Arc::new(HealthSnapshot::fixed(self())), Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(holds: bool) -> NodeHealth {
        NodeHealth {
            role: if holds { Role::Primary } else { Role::Unknown },
            holds_valid_lease: holds,
            postgres_running: true,
            ..NodeHealth::default()
        }
    }

    #[test]
    fn the_holding_health_is_answered_strictly_before_the_deadline() {
        let deadline = Duration::from_secs(100);
        let snapshot = HealthSnapshot::new(Some(deadline), judged);
        let at = |now| snapshot.at(now).health.holds_valid_lease;
        assert!(at(Duration::ZERO));
        assert!(at(deadline - Duration::from_nanos(1)));
        assert!(
            !at(deadline),
            "valid means now < deadline, as HolderLease::is_valid"
        );
        assert!(!at(deadline + Duration::from_secs(1)));
    }

    #[test]
    fn without_a_lease_only_the_lapsed_health_exists() {
        let snapshot = HealthSnapshot::new(None, judged);
        assert!(!snapshot.at(Duration::ZERO).health.holds_valid_lease);
    }

    #[test]
    fn each_health_carries_its_own_body() {
        let snapshot = HealthSnapshot::new(Some(Duration::from_secs(1)), judged);
        let body = |now| String::from_utf8(snapshot.at(now).body.to_vec()).expect("utf-8");
        assert!(body(Duration::ZERO).contains(r#""role":"primary""#));
        assert!(body(Duration::from_secs(2)).contains(r#""role":"unknown""#));
    }
}
