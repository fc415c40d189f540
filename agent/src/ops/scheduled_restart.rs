//! This member's scheduled restart: placed in the watch the Postgres loop
//! shares, which publishes it in the member's record, runs it and clears it.

use super::AgentOps;
use raftgres_api::OpError;
use raftgres_ha::PgView;
use raftgres_state::{RestartOptions, ScheduledRestart};
use std::time::Duration;

/// How long a scheduled restart waits to show in the cluster state before
/// it is answered; the Postgres loop publishes it on its next round anyway.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

impl AgentOps {
    pub(super) async fn do_schedule_restart(
        &self,
        at_unix_ms: u64,
        options: RestartOptions,
    ) -> Result<(), OpError> {
        self.runs_postgres()?;
        if self.consensus.local().state.paused() {
            return Err(OpError::Invalid(
                "the cluster is paused: a restart cannot be scheduled in maintenance mode, as in \
                 Patroni; restart now (leave schedule out), or resume the cluster first \
                 (raftgresctl resume)"
                    .into(),
            ));
        }
        let running = matches!(*self.pg.borrow(), PgView::Running { .. });
        let restart = ScheduledRestart {
            at_unix_ms,
            options,
            postmaster_start_unix_ms: running
                .then(|| self.facts.borrow().postmaster_start_unix_ms)
                .flatten(),
        };
        let placed = self.scheduled.send_if_modified(|slot| {
            let free = slot.is_none();
            if free {
                *slot = Some(restart.clone());
            }
            free
        });
        if !placed {
            return Err(OpError::Conflict(
                "Cannot schedule restart: another restart is already scheduled (see \
                 scheduled_restart in GET /patroni); cancel it first with DELETE /restart \
                 (raftgresctl flush restart)"
                    .into(),
            ));
        }
        tracing::info!(member = %self.member, at_unix_ms, options = ?restart.options, "restart scheduled");
        self.until_published(|record| record == Some(&restart))
            .await;
        Ok(())
    }

    pub(super) async fn do_cancel_restart(&self) -> Result<(), OpError> {
        let Some(cancelled) = self.scheduled.send_replace(None) else {
            return Err(OpError::NotFound("no restarts are scheduled".into()));
        };
        tracing::info!(member = %self.member, at_unix_ms = cancelled.at_unix_ms, "scheduled restart cancelled");
        self.until_published(|record| record.is_none()).await;
        Ok(())
    }

    /// Waits, within [`PUBLISH_WAIT`], until this member's record in the
    /// applied state shows `published` of its scheduled restart, so that
    /// `GET /cluster` right after the answer shows the change.
    async fn until_published(&self, published: impl Fn(Option<&ScheduledRestart>) -> bool) {
        let mut states = self.consensus.subscribe();
        let shown = async {
            loop {
                let state = states.borrow_and_update().state.clone();
                let record = state.members.get(&self.member);
                if published(record.and_then(|m| m.scheduled_restart.as_deref())) {
                    return;
                }
                if states.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(PUBLISH_WAIT, shown).await.is_err() {
            tracing::info!(member = %self.member, "the scheduled restart is not in the cluster state yet; the Postgres loop publishes it on its next round");
        }
    }
}
