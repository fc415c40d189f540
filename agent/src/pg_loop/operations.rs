//! The operator's requests on this member's Postgres (restart, reload,
//! reinitialize), each answered once done, or for a reinitialize once the
//! clone has started.

use super::execute::callback_role;
use super::*;
use raftgres_ha::{RestartSubject, restart_conditions};
use raftgres_state::{RestartOptions, RestartRole};
use tokio::sync::oneshot;

impl PgLoop {
    /// Runs an operator's request, and answers it: once done, or for a
    /// reinitialize once the clone has started (its outcome goes to the
    /// log). A request whose caller has stopped waiting is not run.
    pub(super) async fn serve(
        &mut self,
        request: OperationRequest,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
        holds_lease: bool,
    ) {
        let OperationRequest { operation, reply } = request;
        if reply.is_closed() {
            log_dropped(self.me(), &operation);
            return;
        }
        let outcome = match &operation {
            Operation::Reinitialize => {
                return self
                    .reinitialize(reply, local, state, view, holds_lease)
                    .await;
            }
            Operation::Restart(options) => {
                self.view.send_replace(PgView::Busy {
                    action: operation_name(&operation),
                });
                self.take_settings(local, state, view).await;
                self.progress
                    .during(self.restart_postgres(local, state, view, options))
                    .await
            }
            // A reload leaves Postgres serving: health checks must not
            // drop the member for it.
            Operation::Reload => {
                self.take_settings(local, state, view).await;
                self.reload_postgres(local, state, view).await
            }
        };
        log_outcome(self.me(), &operation, &outcome);
        let _ = reply.send(outcome);
    }

    /// What a reload changed, before an operator's request runs.
    async fn take_settings(&mut self, local: &mut Local, state: &ClusterState, view: &PgView) {
        self.take_live();
        self.apply_parameters(local, state, view).await;
    }

    /// Answers once the clone has started (or is refused, before anything
    /// shows it under way); the outcome goes to the log, and `GET /patroni`
    /// shows it under way meanwhile.
    async fn reinitialize(
        &mut self,
        reply: oneshot::Sender<Result<String, OpError>>,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
        holds_lease: bool,
    ) {
        let operation = Operation::Reinitialize;
        let source = match reinit_source(self.me(), state, holds_lease, &self.peers.snapshot()) {
            Ok(source) => source,
            Err(e) => {
                log_outcome(self.me(), &operation, &Err(e.clone()));
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.view.send_replace(PgView::Busy {
            action: operation_name(&operation),
        });
        self.take_settings(local, state, view).await;
        let started = format!(
            "reinitialize started: cloning from {source}; GET /patroni shows its progress \
             while its state is \"creating replica\""
        );
        if reply.send(Ok(started)).is_err() {
            log_dropped(self.me(), &operation);
            return;
        }
        let clone = PgAction::Clone {
            source: source.clone(),
        };
        let outcome = self
            .progress
            .during(self.execute(local, state, &clone))
            .await
            .map(|()| format!("reinitialized from {source}"))
            .map_err(|e| OpError::Unavailable(format!("reinitialize failed: {e:#}")));
        log_outcome(self.me(), &operation, &outcome);
    }

    /// Restarts Postgres in the role it runs in, if `options`' conditions
    /// hold now.
    pub(super) async fn restart_postgres(
        &self,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
        options: &RestartOptions,
    ) -> Result<String, OpError> {
        if !local.running {
            return Err(OpError::Unavailable(
                "Postgres is not running here; the agent starts it by itself when it should run"
                    .into(),
            ));
        }
        let role = self.current_role(local, state, view);
        let subject = RestartSubject {
            role: Some(match role {
                Role::Primary => RestartRole::Primary,
                Role::Standby { .. } | Role::DetachedStandby => RestartRole::Replica,
            }),
            server_version: self.facts.borrow().server_version,
            pending_restart: !local.pending_restart.is_empty(),
        };
        restart_conditions(options, &subject).map_err(|unmet| {
            OpError::Unavailable(format!("restart conditions are not satisfied: {unmet}"))
        })?;
        let ready_within = options
            .timeout_ms
            .map_or(START_TIMEOUT, Duration::from_millis);
        let upstream = local.upstream.clone();
        self.start_within(local, role, upstream, ready_within)
            .await
            .map_err(|e| OpError::Unavailable(format!("restart failed: {e:#}")))?;
        Ok("restarted Postgres".into())
    }

    /// Rewrites the managed configuration and has Postgres read it.
    async fn reload_postgres(
        &self,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
    ) -> Result<String, OpError> {
        let failed = |e: anyhow::Error| OpError::Unavailable(format!("reload failed: {e:#}"));
        let role = self.current_role(local, state, view);
        self.write_conf(local, &role)
            .map_err(|e| failed(e.into()))?;
        if local.running {
            self.keeper(Request::Reload, raftgres_keeper::client::QUICK)
                .await
                .map_err(|e| failed(e.into()))?;
            self.call_back(CallbackEvent::OnReload, callback_role(&role));
        }
        Ok("rewrote the managed configuration and reloaded Postgres".into())
    }
}

/// The member a reinitialize clones from, as Patroni's
/// `get_clone_member`: a member tagged `clonefrom` that can feed this one,
/// else the running primary; refused while this member leads (Patroni's
/// refusals, word for word).
fn reinit_source(
    me: &str,
    state: &ClusterState,
    holds_lease: bool,
    peers: &raftgres_ha::PeerObserver,
) -> Result<String, OpError> {
    if holds_lease || state.lease.is_held_by(me) {
        return Err(OpError::Unavailable(
            "I am the leader, can not reinitialize".into(),
        ));
    }
    let ttl = state.report_ttl();
    let now = mono_now();
    clone_source(state, me, &|m: &Member| peers.is_fresh(&m.name, now, ttl)).ok_or_else(|| {
        OpError::Unavailable(
            "Cluster has no leader, can not reinitialize: there is no running primary \
             to clone from; try again once the cluster has one"
                .into(),
        )
    })
}

fn log_dropped(me: &str, operation: &Operation) {
    tracing::info!(
        member = me,
        ?operation,
        "operator request dropped: its caller stopped waiting before it could run"
    );
}

pub(super) fn log_outcome(me: &str, operation: &Operation, outcome: &Result<String, OpError>) {
    match outcome {
        Ok(message) => tracing::info!(member = me, ?operation, %message, "operator request done"),
        Err(e) => tracing::warn!(member = me, ?operation, error = %e, "operator request failed"),
    }
}
