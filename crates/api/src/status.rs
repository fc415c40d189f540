//! Which status code each health endpoint answers: a pure function of the
//! snapshot and the query, with Patroni's meaning.

use std::time::Duration;

use axum::http::StatusCode;

use crate::health::{NodeHealth, Role};
use crate::query::HealthQuery;

/// A health endpoint, independent of which alias was used to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/primary`, `/`, `/read-write`, `/master`: writable now.
    Primary,
    /// `/leader`: holds a valid lease, whatever its Postgres does now, as
    /// Patroni's `/leader` means "holds the leader key".
    Leader,
    /// `/replica`.
    Replica,
    /// `/read-only`: a primary or a replica.
    ReadOnly,
    /// `/standby-leader`, `/standby_leader`: no standby clusters yet.
    StandbyLeader,
    /// `/sync`, `/synchronous`: a running synchronous standby.
    Sync,
    /// `/async`, `/asynchronous`: a running replica that is not one.
    Async,
    /// `/read-only-sync`: the primary or a synchronous standby.
    ReadOnlySync,
    /// `/quorum`: a running quorum standby.
    Quorum,
    /// `/read-only-quorum`: the primary or a quorum standby.
    ReadOnlyQuorum,
    /// `/health`: Postgres is running.
    Health,
    /// `/liveness`: the agent's loops make progress (or it is paused).
    Liveness,
    /// `/readiness`: a primary, or a streaming replica within `?lag=`,
    /// by default within `maximum_lag_on_failover`.
    Readiness,
    /// `/patroni`: the status document, always 200.
    Patroni,
}

/// Every path the router serves, with the endpoint it answers as.
pub const ROUTES: &[(&str, Endpoint)] = &[
    ("/", Endpoint::Primary),
    ("/primary", Endpoint::Primary),
    ("/leader", Endpoint::Leader),
    ("/read-write", Endpoint::Primary),
    ("/master", Endpoint::Primary),
    ("/replica", Endpoint::Replica),
    ("/read-only", Endpoint::ReadOnly),
    ("/standby-leader", Endpoint::StandbyLeader),
    ("/standby_leader", Endpoint::StandbyLeader),
    ("/sync", Endpoint::Sync),
    ("/synchronous", Endpoint::Sync),
    ("/async", Endpoint::Async),
    ("/asynchronous", Endpoint::Async),
    ("/read-only-sync", Endpoint::ReadOnlySync),
    ("/quorum", Endpoint::Quorum),
    ("/read-only-quorum", Endpoint::ReadOnlyQuorum),
    ("/health", Endpoint::Health),
    ("/liveness", Endpoint::Liveness),
    ("/readiness", Endpoint::Readiness),
    ("/patroni", Endpoint::Patroni),
];

impl Endpoint {
    /// Every endpoint, once.
    pub const ALL: [Endpoint; 14] = [
        Endpoint::Primary,
        Endpoint::Leader,
        Endpoint::Replica,
        Endpoint::ReadOnly,
        Endpoint::StandbyLeader,
        Endpoint::Sync,
        Endpoint::Async,
        Endpoint::ReadOnlySync,
        Endpoint::Quorum,
        Endpoint::ReadOnlyQuorum,
        Endpoint::Health,
        Endpoint::Liveness,
        Endpoint::Readiness,
        Endpoint::Patroni,
    ];

    /// Patroni applies `?tag_<key>=<value>` filters on these and ignores them
    /// on the leader checks, `/liveness`, `/readiness` and `/patroni`.
    fn filters_tags(self) -> bool {
        matches!(
            self,
            Endpoint::Replica
                | Endpoint::ReadOnly
                | Endpoint::Sync
                | Endpoint::Async
                | Endpoint::ReadOnlySync
                | Endpoint::Quorum
                | Endpoint::ReadOnlyQuorum
                | Endpoint::Health
        )
    }
}

/// The status code `endpoint` answers for `health` and `query`: 200 or 503.
/// `loops_quiet` is how long the agent's slowest loop has made no progress
/// ([`crate::HealthSource::loops_quiet`]).
pub fn status(
    endpoint: Endpoint,
    health: &NodeHealth,
    query: &HealthQuery<'_>,
    loops_quiet: Duration,
) -> StatusCode {
    let up = match endpoint {
        Endpoint::Primary => is_writable_primary(health),
        Endpoint::Leader => health.holds_valid_lease && health.role != Role::Witness,
        Endpoint::Replica => is_balanced_replica(health, query),
        Endpoint::Async => {
            is_balanced_replica(health, query) && !health.sync_standby && !health.quorum_standby
        }
        Endpoint::ReadOnly => is_writable_primary(health) || is_balanced_replica(health, query),
        Endpoint::Sync => is_sync_standby(health, query),
        Endpoint::ReadOnlySync => is_writable_primary(health) || is_sync_standby(health, query),
        Endpoint::StandbyLeader => false,
        Endpoint::Quorum => is_quorum_standby(health, query),
        Endpoint::ReadOnlyQuorum => is_writable_primary(health) || is_quorum_standby(health, query),
        Endpoint::Health => health.postgres_running,
        Endpoint::Liveness => is_live(health, loops_quiet),
        Endpoint::Patroni => true,
        Endpoint::Readiness => {
            // Patroni 4: `mode=write` judges the WAL received, not replayed.
            let lag = if query.lag_by_received {
                health.receive_lag_bytes
            } else {
                health.lag_bytes
            };
            let limit = query.max_lag.or(health.maximum_lag_on_failover);
            is_writable_primary(health)
                || (is_running_replica(health) && health.streaming && within(lag, limit))
        }
    };
    if up && (!endpoint.filters_tags() || tags_match(health, query)) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Patroni's `/liveness`: in maintenance mode a stuck loop is tolerated;
/// else the loops must have made progress within a ttl on a running
/// primary and within two elsewhere, where a stall costs less.
fn is_live(h: &NodeHealth, loops_quiet: Duration) -> bool {
    let Some(ttl) = h.ttl else {
        return true;
    };
    let limit = if is_writable_primary(h) { ttl } else { ttl * 2 };
    h.paused || loops_quiet < limit
}

/// The primary with a lease that is valid now, running and out of recovery.
pub(crate) fn is_writable_primary(h: &NodeHealth) -> bool {
    h.role == Role::Primary && h.holds_valid_lease && h.postgres_running && !h.in_recovery
}

fn is_running_replica(h: &NodeHealth) -> bool {
    h.role == Role::Replica && h.postgres_running && h.in_recovery
}

/// Patroni's `/replica`: running as a replica, not tagged `noloadbalance`,
/// within `?lag=` and, if asked, streaming.
fn is_balanced_replica(h: &NodeHealth, q: &HealthQuery<'_>) -> bool {
    is_running_replica(h)
        && !h.tag_is_true("noloadbalance")
        && lag_within(h, q.max_lag)
        && (!q.require_streaming || h.streaming)
}

/// A running replica the Raft state names synchronous, within `?lag=`.
fn is_quorum_standby(h: &NodeHealth, q: &HealthQuery<'_>) -> bool {
    is_running_replica(h) && h.quorum_standby && lag_within(h, q.max_lag)
}

fn is_sync_standby(h: &NodeHealth, q: &HealthQuery<'_>) -> bool {
    is_running_replica(h) && h.sync_standby && lag_within(h, q.max_lag)
}

/// The replayed lag within `max`, as [`within`] judges.
fn lag_within(h: &NodeHealth, max: Option<u64>) -> bool {
    within(h.lag_bytes, max)
}

/// No limit passes; with a limit, an unknown lag fails.
fn within(lag: Option<u64>, max: Option<u64>) -> bool {
    max.is_none_or(|max| lag.is_some_and(|lag| lag <= max))
}

/// Every `?tag_<key>=<value>` names a tag this member has, with that value.
fn tags_match(h: &NodeHealth, q: &HealthQuery<'_>) -> bool {
    q.tags
        .iter()
        .all(|(key, want)| h.tags.get(key.as_ref()).is_some_and(|have| have == want))
}

#[cfg(test)]
mod tests;
