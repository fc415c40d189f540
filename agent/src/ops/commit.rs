//! Committing a change and reading the state for the operations, through
//! the Raft election an operator's request often follows.

use super::AgentOps;
use raftgres_api::OpError;
use raftgres_consensus::ConsensusError;
use raftgres_state::{Applied, ClusterState, Command, Rejection};
use std::time::Duration;

/// How long a change waits for the Raft group to elect a reachable leader.
const ELECTION_WAIT: Duration = Duration::from_secs(15);

impl AgentOps {
    /// Commits `command`. Every change is a compare-and-set or idempotent,
    /// so a retry of one that did commit changes nothing twice: at worst
    /// it reports a conflict.
    pub(super) async fn commit(&self, command: Command) -> Result<Applied, OpError> {
        through_election(|| self.consensus.propose(command.clone()))
            .await?
            .map_err(refused)
    }

    /// A fresh, linearizable copy: checks must not act on a stale one.
    pub(super) async fn read(&self) -> Result<ClusterState, OpError> {
        let view = through_election(|| self.consensus.read()).await?;
        Ok((*view.state).clone())
    }
}

/// Tries `attempt` again while the Raft group has no reachable leader (an
/// operator often acts right after the node that led both Raft and
/// Postgres died), for [`ELECTION_WAIT`] at the most.
async fn through_election<T, F>(mut attempt: impl FnMut() -> F) -> Result<T, OpError>
where
    F: Future<Output = Result<T, ConsensusError>>,
{
    let give_up = tokio::time::Instant::now() + ELECTION_WAIT;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(ConsensusError::NoLeader | ConsensusError::Unreachable { .. })
                if tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
}

fn unavailable(e: ConsensusError) -> OpError {
    OpError::Unavailable(format!(
        "the cluster could not commit the change: {e}; retry once a majority of members is reachable"
    ))
}

fn refused(rejection: Rejection) -> OpError {
    match rejection {
        Rejection::ConfigVersionChanged { .. } | Rejection::LeaseVersionChanged { .. } => {
            OpError::Conflict(rejection.to_string())
        }
        Rejection::Invalid { .. } => OpError::Invalid(rejection.to_string()),
        Rejection::UnknownMember { .. } => OpError::NotFound(rejection.to_string()),
        Rejection::NotBootstrapped => OpError::Unavailable(rejection.to_string()),
        _ => OpError::Precondition(rejection.to_string()),
    }
}
