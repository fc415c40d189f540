//! What the REST API asks of the agent beyond health: [`ReadOps`], the
//! replicated state to report from, and [`WriteOps`], the operations behind
//! the mutating endpoints. The agent implements both; this crate turns HTTP
//! into these calls and their results into Patroni-shaped answers.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use raftgres_state::{ClusterState, ConfigValues, DynamicConfig, RestartOptions};

/// A boxed future, so the traits stay object safe.
pub type OpFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, OpError>> + Send + 'a>>;

/// Why an operation did nothing. Each maps to one HTTP status, and its
/// message is shown to the caller as is: it says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// 400: the request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// 404: what it names does not exist (a member, a scheduled switchover).
    #[error("{0}")]
    NotFound(String),
    /// 409: a compare-and-set lost to a concurrent change; re-read and retry.
    #[error("{0}")]
    Conflict(String),
    /// 412: the cluster is not in a state that allows it (candidate unhealthy
    /// or lagging, wrong leader named, paused, ...).
    #[error("{0}")]
    Precondition(String),
    /// 503: it could not be done now (no quorum, timed out, Postgres failed).
    #[error("{0}")]
    Unavailable(String),
}

/// A switchover as requested: Patroni's `leader`, `candidate` and
/// `scheduled_at` (already parsed to Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwitchoverRequest {
    /// When given, must name the current leader.
    pub leader: Option<String>,
    /// `None`: the best healthy replica at the time.
    pub candidate: Option<String>,
    /// `None` or a time already passed: now.
    pub scheduled_at_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchoverOutcome {
    /// 200: `new_leader` holds the lease and runs the writable primary.
    Done { new_leader: String },
    /// 202: recorded in the cluster state; the leader acts at that time.
    Scheduled { at_unix_ms: u64 },
}

/// How recently a member's record changed, judged by the answering agent
/// on its own monotonic clock (never a wall clock: records carry none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberReport {
    /// Since this agent first saw the member's current heartbeat.
    pub age: Duration,
    /// This agent has seen no change of the record since it started
    /// watching: the record may be older than `age`.
    pub age_is_lower_bound: bool,
    /// Silent for a ttl or longer: the record no longer tells what the
    /// member does now.
    pub stale: bool,
}

/// What any handler may ask, authenticated or not: reads of local memory.
pub trait ReadOps: Send + Sync + 'static {
    /// This member's applied copy of the replicated state: no Raft round
    /// trip, so it answers on a member cut off from the majority too.
    fn state(&self) -> ClusterState;
    /// Each member's [`MemberReport`] at the moment of the call, from local
    /// memory only. A member this agent has not observed yet is missing.
    fn member_reports(&self) -> BTreeMap<String, MemberReport>;
}

/// The changes behind the mutating endpoints. The router keeps it where
/// only the authenticated extractor can reach it, so a handler without that
/// proof has no way to call these. A supertrait of [`ReadOps`] so that one
/// handle serves an authenticated handler that must read before it changes.
pub trait WriteOps: ReadOps {
    /// Replaces the dynamic config if its version is still
    /// `expected_version` (else [`OpError::Conflict`]).
    fn set_config(
        &self,
        expected_version: u64,
        values: ConfigValues,
    ) -> OpFuture<'_, DynamicConfig>;
    fn switchover(&self, request: SwitchoverRequest) -> OpFuture<'_, SwitchoverOutcome>;
    /// Cancels a scheduled switchover ([`OpError::NotFound`] if none).
    fn cancel_switchover(&self) -> OpFuture<'_, ()>;
    /// Makes `candidate` the primary, also when there is no healthy one;
    /// returns once it is. With a healthy leader it is a switchover.
    fn failover(&self, candidate: String) -> OpFuture<'_, String>;
    /// Restarts this member's Postgres in its current role, now, if
    /// `options`' conditions hold (refused with `Unavailable` otherwise, as
    /// Patroni's "restart conditions are not satisfied"); returns once it
    /// runs again.
    fn restart(&self, options: RestartOptions) -> OpFuture<'_, String>;
    /// Schedules a restart of this member's Postgres at `at_unix_ms` (a
    /// time ahead), kept in its record until it runs or is cancelled;
    /// [`OpError::Conflict`] while another one is scheduled.
    fn schedule_restart(&self, at_unix_ms: u64, options: RestartOptions) -> OpFuture<'_, ()>;
    /// Cancels this member's scheduled restart ([`OpError::NotFound`] if
    /// none).
    fn cancel_restart(&self) -> OpFuture<'_, ()>;
    /// Re-reads the agent's settings file (as SIGHUP does) and applies
    /// it; returns then, while the Postgres loop goes on to rewrite the
    /// managed Postgres config and reload Postgres.
    fn reload(&self) -> OpFuture<'_, String>;
    /// Starts replacing this replica's data with a fresh clone of the
    /// primary; returns once the clone has started, while `GET /patroni`
    /// shows its progress.
    fn reinitialize(&self, force: bool) -> OpFuture<'_, String>;
    /// Removes a member (not the leader) from the Raft group and the state.
    fn remove_member(&self, name: String) -> OpFuture<'_, String>;
    /// The dynamic config a cluster starts with when its settings files
    /// set nothing: what `PUT /config` gives the keys it leaves out.
    fn config_defaults(&self) -> ConfigValues;
}
