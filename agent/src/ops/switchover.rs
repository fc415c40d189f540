//! A switchover: checked on a linearizable read, committed as a request,
//! then watched in the applied state until the new primary runs.

use super::AgentOps;
use crate::clock::{mono_now, unix_ms};
use raftgres_api::{OpError, SwitchoverOutcome, SwitchoverRequest};
use raftgres_ha::{holder_running_primary, switchover_candidate};
use raftgres_state::{ClusterState, Command, Switchover};
use std::time::Duration;

/// How long a switchover or failover call waits for the new primary.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The holder, when its record says it runs the primary and it still reports.
pub(super) fn healthy_leader<'a>(
    state: &'a ClusterState,
    fresh: &dyn Fn(&str) -> bool,
) -> Option<&'a str> {
    holder_running_primary(state)
        .filter(|m| fresh(&m.name))
        .map(|m| m.name.as_str())
}

impl AgentOps {
    /// Heard from within a ttl, on this member's clock.
    pub(super) fn fresh(&self, state: &ClusterState) -> impl Fn(&str) -> bool + use<> {
        let ttl = state.report_ttl();
        let peers = self.peers.snapshot();
        let now = mono_now();
        move |name: &str| peers.is_fresh(name, now, ttl)
    }

    /// Waits until `to` holds the lease and runs the writable primary, or
    /// the request disappears without that (abandoned or replaced).
    pub(super) async fn await_leader(&self, to: &str) -> Result<SwitchoverOutcome, OpError> {
        let mut states = self.consensus.subscribe();
        // This member may apply the request a moment after it committed.
        let mut seen = false;
        let wait = async {
            loop {
                let state = states.borrow_and_update().state.clone();
                if healthy_leader(&state, &|_| true) == Some(to) {
                    return Ok(SwitchoverOutcome::Done {
                        new_leader: to.to_owned(),
                    });
                }
                let pending = state
                    .switchover
                    .as_ref()
                    .is_some_and(|s| s.to.as_deref() == Some(to));
                seen |= pending;
                if seen && !pending && !state.lease.is_held_by(to) {
                    return Err(OpError::Unavailable(format!(
                        "the change to {to} was abandoned (the candidate fell behind, became unhealthy, or another member took over); see the agents' logs and `raftgresctl list`"
                    )));
                }
                if states.changed().await.is_err() {
                    return Err(OpError::Unavailable("the agent is shutting down".into()));
                }
            }
        };
        tokio::time::timeout(CHANGE_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| {
                Err(OpError::Unavailable(format!(
                    "{to} did not become the primary within {CHANGE_TIMEOUT:?}; the request stays pending, see `raftgresctl list`"
                )))
            })
    }

    /// Commits a request to hand the lease from `from` to `to` (or to the
    /// best candidate then), at `at_unix_ms` or at once.
    pub(super) async fn request_change(
        &self,
        from: Option<String>,
        to: Option<String>,
        at_unix_ms: Option<u64>,
    ) -> Result<(), OpError> {
        self.commit(Command::RequestSwitchover {
            switchover: Switchover {
                from,
                to,
                at_unix_ms,
            },
        })
        .await
        .map(|_| ())
    }

    pub(super) async fn do_switchover(
        &self,
        request: SwitchoverRequest,
    ) -> Result<SwitchoverOutcome, OpError> {
        let state = self.read().await?;
        let now = unix_ms();
        let scheduled_at = request.scheduled_at_unix_ms.filter(|at| *at > now);
        // Patroni's maintenance mode: a switchover needs a named candidate,
        // and nothing is scheduled (with nobody named, the holder's choice
        // would be the automatic one that pause turns off).
        if state.paused() {
            if request.candidate.is_none() {
                return Err(OpError::Invalid(
                    "the cluster is paused: a switchover needs a named candidate (`candidate`) \
                     in maintenance mode, as in Patroni; name one, or resume the cluster first \
                     (raftgresctl resume)"
                        .into(),
                ));
            }
            if scheduled_at.is_some() {
                return Err(OpError::Invalid(
                    "the cluster is paused: a switchover cannot be scheduled in maintenance mode, \
                     as in Patroni; leave scheduled_at out, or resume the cluster first \
                     (raftgresctl resume)"
                        .into(),
                ));
            }
        }
        let fresh = self.fresh(&state);
        let Some(leader) = healthy_leader(&state, &fresh) else {
            return Err(OpError::Precondition(
                "there is no healthy leader to switch over from; use a failover to a named candidate"
                    .into(),
            ));
        };
        if let Some(named) = request.leader.as_deref()
            && named != leader
        {
            return Err(OpError::Precondition(format!(
                "leader name does not match: {named} is not the leader, {leader} is"
            )));
        }
        let candidate =
            switchover_candidate(&state, request.candidate.as_deref(), &|m| fresh(&m.name))
                .map_err(OpError::Precondition)?;
        if let Some(at) = scheduled_at {
            // A scheduled one keeps the candidate the operator named, or
            // lets the holder pick the best one at that time.
            self.request_change(Some(leader.to_owned()), request.candidate, Some(at))
                .await?;
            return Ok(SwitchoverOutcome::Scheduled { at_unix_ms: at });
        }
        self.request_change(Some(leader.to_owned()), Some(candidate.clone()), None)
            .await?;
        tracing::info!(member = %self.member, from = %leader, to = %candidate, "switchover requested");
        self.await_leader(&candidate).await
    }
}
