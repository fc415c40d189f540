//! What moves with time alone or with every Raft message: read from the
//! [`crate::HealthSource`] when a `/metrics` scrape or a `GET /patroni`
//! asks, never kept in a [`crate::HealthSnapshot`], which would then be
//! rendered again at every heartbeat for the health checks' sake.

use std::time::Duration;

/// This member's view of the lease and of its Raft group at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveFacts {
    /// How long the lease stays valid as this member judges it: the
    /// holder's own deadline on the holder, `ttl` after the current
    /// renewal was first seen elsewhere. Zero once that has passed or when
    /// no one holds the lease; `None` while this member has not seen the
    /// current lease yet.
    pub lease_left: Option<Duration>,
    /// Patroni's `dcs_last_seen`, in Unix milliseconds: when this member
    /// last knew its copy of the cluster state current (as Raft leader, a
    /// quorum acknowledged it; as follower, it accepted an AppendEntries
    /// from its leader). `None` before it ever did.
    pub last_current_unix_ms: Option<i64>,
    /// `None` from a source without a Raft group.
    pub raft: Option<RaftFacts>,
}

impl LiveFacts {
    /// `dcs_last_seen` as Patroni gives it: whole Unix seconds, 0 before
    /// the first contact.
    pub(crate) fn dcs_last_seen(&self) -> i64 {
        self.last_current_unix_ms
            .map_or(0, |ms| ms.div_euclid(1000))
    }
}

/// The Raft figures `/metrics` exports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RaftFacts {
    pub term: u64,
    /// The Raft node id of the leader this member follows or is; `None`
    /// while it knows none.
    pub leader: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    /// How long this member's committed proposals took.
    pub proposal_latency: Histogram,
}

/// A classic Prometheus histogram's figures.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Each bucket's upper bound in seconds with its own count (not
    /// cumulative); the last bound is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// The buckets' total.
    pub count: u64,
    pub sum_seconds: f64,
}
