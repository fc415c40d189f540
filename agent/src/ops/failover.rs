//! A failover to a named candidate: a switchover when a healthy leader
//! runs, else a request the candidate acts on once the lease expires.

use super::AgentOps;
use super::switchover::healthy_leader;
use raftgres_api::{OpError, SwitchoverOutcome};
use raftgres_ha::{switchover_candidate, tagged_in};
use raftgres_state::PgState;

impl AgentOps {
    pub(super) async fn do_failover(&self, candidate: String) -> Result<String, OpError> {
        let before = self.read().await?.lease.epoch;
        match self.attempt_failover(&candidate).await {
            Err(OpError::Unavailable(why)) => {
                // A replica that decided on a view older than the request
                // can win the expired lease and so clear the request. It is
                // then the leader, and the operator's wish still stands:
                // ask again once, which makes it a switchover from that
                // member. A request that merely timed out stays pending and
                // is not asked twice.
                let now = self.read().await?;
                let overtaken = now.switchover.is_none()
                    && now.lease.epoch > before
                    && now.lease.holder.as_deref().is_some_and(|h| h != candidate);
                if !overtaken {
                    return Err(OpError::Unavailable(why));
                }
                tracing::info!(member = %self.member, to = %candidate, holder = ?now.lease.holder, epoch = %now.lease.epoch, "another member took the lease before the failover request; asking again");
                self.attempt_failover(&candidate).await
            }
            other => other,
        }
    }

    async fn attempt_failover(&self, candidate: &str) -> Result<String, OpError> {
        let candidate = candidate.to_owned();
        let state = self.read().await?;
        let Some(m) = state.members.get(&candidate) else {
            return Err(OpError::Precondition(format!(
                "candidate {candidate} is not a member of this cluster"
            )));
        };
        if !tagged_in(m) {
            return Err(OpError::Precondition(format!(
                "{candidate} may not become primary (witness, nofailover or failover_priority 0)"
            )));
        }
        let fresh = self.fresh(&state);
        let leader = healthy_leader(&state, &fresh);
        if leader == Some(candidate.as_str()) {
            return Err(OpError::Precondition(format!(
                "{candidate} is already the leader"
            )));
        }
        if state.lease.is_held_by(&candidate) {
            // It took the lease on its own (a failover ran while the request
            // waited for Raft); the operator's wish comes true once it runs.
            return self.finish(&candidate).await;
        }
        if m.pg_state != PgState::Running {
            return Err(OpError::Precondition(format!(
                "{candidate} is not running Postgres (state {:?}); it cannot take over",
                m.pg_state
            )));
        }
        match leader {
            // With a healthy leader a failover is a switchover, as in Patroni.
            Some(leader) => {
                switchover_candidate(&state, Some(&candidate), &|m| fresh(&m.name))
                    .map_err(OpError::Precondition)?;
                self.request_change(Some(leader.to_owned()), Some(candidate.clone()), None)
                    .await?;
            }
            None => {
                match self
                    .request_change(None, Some(candidate.clone()), None)
                    .await
                {
                    // Another member's failover gave it the lease meanwhile.
                    Err(OpError::Invalid(_)) if self.read().await?.lease.is_held_by(&candidate) => {
                    }
                    other => other?,
                }
                tracing::info!(member = %self.member, to = %candidate, "failover requested");
            }
        }
        self.finish(&candidate).await
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
