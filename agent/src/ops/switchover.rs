//! A switchover: checked on a linearizable read, committed as a request,
//! then watched in the applied state until the new primary runs.

use super::AgentOps;
use crate::clock::{mono_now, unix_ms};
use raftgres_api::{OpError, SwitchoverOutcome, SwitchoverRequest};
use raftgres_ha::{Refusal, healthy_leader, plan_switchover};
use raftgres_state::{ClusterState, Command, Switchover};
use std::time::Duration;

/// How long a switchover or failover call waits for the new primary.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

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

    /// Commits a request to hand the lease over (to its `to`, or to the
    /// best candidate then), at its time or at once.
    pub(super) async fn request_change(&self, switchover: Switchover) -> Result<(), OpError> {
        self.commit(Command::RequestSwitchover { switchover })
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
        let fresh = self.fresh(&state);
        let plan = plan_switchover(
            &state,
            request.leader.as_deref(),
            request.candidate.as_deref(),
            scheduled_at,
            &fresh,
        )
        .map_err(refused)?;
        let from = plan.request.from.clone();
        self.request_change(plan.request).await?;
        if let Some(at) = scheduled_at {
            return Ok(SwitchoverOutcome::Scheduled { at_unix_ms: at });
        }
        tracing::info!(member = %self.member, from = ?from, to = %plan.candidate, "switchover requested");
        self.await_leader(&plan.candidate).await
    }
}

/// The API's answer to a request `ha` refused.
pub(super) fn refused(refusal: Refusal) -> OpError {
    match refusal {
        Refusal::Invalid(why) => OpError::Invalid(why),
        Refusal::Precondition(why) => OpError::Precondition(why),
    }
}
