//! This member's scheduled restart: run when due, dropped when it can no
//! longer be, then cleared from the record.

use super::operations::log_outcome;
use super::*;
use raftgres_ha::{ScheduledStep, scheduled_restart_step};

impl PgLoop {
    /// Runs this member's scheduled restart when it is due, or drops it
    /// (`ha::scheduled_restart_step`); a restart that ran or was dropped
    /// is cleared from the record, whatever its outcome, as in Patroni.
    pub(super) async fn scheduled_restart(
        &self,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
        now_unix_ms: u64,
    ) -> DueRestart {
        let Some(restart) = self.scheduled.borrow().clone() else {
            return DueRestart::Nothing;
        };
        let paused = state.paused();
        // The facts of a server that no longer runs are its last ones.
        let running_since = local
            .running
            .then(|| self.facts.borrow().postmaster_start_unix_ms)
            .flatten();
        match scheduled_restart_step(&restart, now_unix_ms, paused, running_since) {
            ScheduledStep::Wait { at_unix_ms } => {
                DueRestart::WakeWithin(Duration::from_millis(at_unix_ms - now_unix_ms))
            }
            ScheduledStep::Paused => DueRestart::Nothing,
            ScheduledStep::Drop(why) => {
                tracing::warn!(member = self.me(), at_unix_ms = restart.at_unix_ms, reason = %why, "dropped the scheduled restart without restarting");
                self.clear_scheduled(&restart);
                DueRestart::Nothing
            }
            ScheduledStep::Run => {
                tracing::info!(member = self.me(), at_unix_ms = restart.at_unix_ms, options = ?restart.options, "the scheduled restart is due");
                let operation = Operation::Restart(restart.options.clone());
                self.view.send_replace(PgView::Busy {
                    action: operation_name(&operation),
                });
                let outcome = self
                    .progress
                    .during(self.restart_postgres(local, state, view, &restart.options))
                    .await;
                log_outcome(self.me(), &operation, &outcome);
                self.clear_scheduled(&restart);
                DueRestart::Ran
            }
        }
    }

    /// Clears `restart` from the record, unless the operator replaced it
    /// meanwhile.
    fn clear_scheduled(&self, restart: &ScheduledRestart) {
        self.scheduled.send_if_modified(|slot| {
            let ours = slot.as_ref() == Some(restart);
            if ours {
                *slot = None;
            }
            ours
        });
    }
}

/// What the scheduled restart asks of the loop this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DueRestart {
    /// None is scheduled, or it waits for the pause to end, or was dropped.
    Nothing,
    /// Its time comes within this.
    WakeWithin(Duration),
    /// It ran: look at Postgres afresh.
    Ran,
}
