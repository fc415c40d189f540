//! A failover to a named candidate: a switchover when a healthy leader
//! runs, else a request the candidate acts on once the lease expires.

use super::AgentOps;
use super::switchover::refused;
use raftgres_api::{OpError, SwitchoverOutcome};
use raftgres_ha::{FailoverPlan, failover_overtaken, plan_failover};

impl AgentOps {
    pub(super) async fn do_failover(&self, candidate: String) -> Result<String, OpError> {
        let before = self.read().await?.lease.epoch;
        match self.attempt_failover(&candidate).await {
            Err(OpError::Unavailable(why)) => {
                let now = self.read().await?;
                if !failover_overtaken(before, &now, &candidate) {
                    return Err(OpError::Unavailable(why));
                }
                tracing::info!(member = %self.member, to = %candidate, holder = ?now.lease.holder, epoch = %now.lease.epoch, "another member took the lease before the failover request; asking again");
                self.attempt_failover(&candidate).await
            }
            other => other,
        }
    }

    async fn attempt_failover(&self, candidate: &str) -> Result<String, OpError> {
        let state = self.read().await?;
        let fresh = self.fresh(&state);
        match plan_failover(&state, candidate, &fresh).map_err(refused)? {
            FailoverPlan::AlreadyHolds => {}
            FailoverPlan::Request(request) => {
                let leaderless = request.from.is_none();
                match self.request_change(request).await {
                    // Another member's failover gave it the lease meanwhile.
                    Err(OpError::Invalid(_))
                        if leaderless && self.read().await?.lease.is_held_by(candidate) => {}
                    other => other?,
                }
                if leaderless {
                    tracing::info!(member = %self.member, to = %candidate, "failover requested");
                }
            }
        }
        self.finish(candidate).await
    }

    /// Waits for `candidate` to run the writable primary.
    async fn finish(&self, candidate: &str) -> Result<String, OpError> {
        match self.await_leader(candidate).await? {
            SwitchoverOutcome::Done { new_leader } => Ok(new_leader),
            SwitchoverOutcome::Scheduled { .. } => Err(OpError::Unavailable(
                "a failover cannot be scheduled".into(),
            )),
        }
    }
}
