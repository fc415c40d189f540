//! The operations on this member itself (restart, reinitialize, reload),
//! handed to its Postgres loop or its reloader and answered by them.

use super::AgentOps;
use crate::requests::{Operation, OperationRequest};
use raftgres_api::OpError;
use raftgres_ha::PgView;
use raftgres_state::RestartOptions;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a request waits for the Postgres loop: a restart includes a
/// stop and a start, after the loop finished what it was doing.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Beyond a restart's own `timeout`: the loop's current step and the stop.
const RESTART_MARGIN: Duration = Duration::from_secs(90);
/// How long a reinitialize waits for an idle Postgres loop to take it; one
/// busy longer (a start, a rewind) is named in the refusal instead.
const REINIT_TAKEN_WITHIN: Duration = Duration::from_secs(15);

/// Hands `operation` to the Postgres loop; its answer comes on the
/// receiver returned (see [`OperationRequest`]).
pub async fn send_to_pg_loop(
    operations: &mpsc::Sender<OperationRequest>,
    operation: Operation,
) -> Result<oneshot::Receiver<Result<String, OpError>>, OpError> {
    let (reply, outcome) = oneshot::channel();
    operations
        .send(OperationRequest { operation, reply })
        .await
        .map_err(|_| OpError::Unavailable("the Postgres loop has stopped".into()))?;
    Ok(outcome)
}

/// Waits for the task named `who` to answer on `outcome`, within `wait`.
/// A request not taken by then is dropped by the Postgres loop, so the
/// caller is told the truth: nothing was done.
pub async fn answer(
    outcome: oneshot::Receiver<Result<String, OpError>>,
    who: &str,
    wait: Duration,
) -> Result<String, OpError> {
    match tokio::time::timeout(wait, outcome).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(OpError::Unavailable(format!(
            "{who} stopped before answering; see the agent's log"
        ))),
        Err(_) => Err(OpError::Unavailable(format!(
            "no answer from {who} within {wait:?}; see the agent's log"
        ))),
    }
}

impl AgentOps {
    pub(super) fn runs_postgres(&self) -> Result<(), OpError> {
        if self.witness {
            return Err(OpError::Precondition(format!(
                "{} is a witness and runs no Postgres",
                self.member
            )));
        }
        Ok(())
    }

    /// `operation` on this member's Postgres, answered within `wait`.
    async fn local(&self, operation: Operation, wait: Duration) -> Result<String, OpError> {
        self.runs_postgres()?;
        let outcome = send_to_pg_loop(&self.operations, operation).await?;
        answer(outcome, "the Postgres loop", wait).await
    }

    pub(super) async fn do_restart(&self, options: RestartOptions) -> Result<String, OpError> {
        let wait = options
            .timeout_ms
            .map_or(OPERATION_TIMEOUT, |ms| {
                Duration::from_millis(ms) + RESTART_MARGIN
            })
            .max(OPERATION_TIMEOUT);
        self.local(Operation::Restart(options), wait).await
    }

    pub(super) async fn do_reinitialize(&self) -> Result<String, OpError> {
        self.runs_postgres()?;
        if let PgView::Busy { action } = *self.pg.borrow() {
            return Err(OpError::Unavailable(format!(
                "{action} already in progress; try again once it is done"
            )));
        }
        self.local(Operation::Reinitialize, REINIT_TAKEN_WITHIN)
            .await
    }

    pub(super) async fn do_reload(&self) -> Result<String, OpError> {
        let (reply, outcome) = oneshot::channel();
        self.reloads
            .send(Some(reply))
            .await
            .map_err(|_| OpError::Unavailable("the agent is shutting down".into()))?;
        answer(outcome, "the reload", OPERATION_TIMEOUT).await
    }
}
