//! Executing one decided action through the keeper, re-checking the lease
//! right before Postgres starts as primary or is promoted, and the
//! operator's requests (restart, now or scheduled; reload; reinitialize).

use super::*;
use raftgres_ha::{RestartSubject, ScheduledStep, restart_conditions, scheduled_restart_step};
use raftgres_state::{RestartOptions, RestartRole};
use tokio::sync::oneshot;

impl PgLoop {
    /// Fails unless this member holds a valid lease at this very moment:
    /// the judgement that chose a start or a promotion may be older than
    /// the action it led to.
    pub(super) fn require_lease(&self) -> anyhow::Result<()> {
        let state = self.consensus.local().state;
        if belief::read(&self.belief).holds_valid(&state.lease, self.me(), mono_now()) {
            Ok(())
        } else {
            bail!("the lease is no longer held here; not acting as primary")
        }
    }

    /// Stops the postmaster cleanly (the keeper fences it if it does not
    /// stop in time), and calls `on_stop` when it did stop a server.
    pub(super) async fn stop_postgres(&self, local: &mut Local) -> anyhow::Result<()> {
        if !local.running {
            return Ok(());
        }
        self.stop_server(local).await?;
        self.call_back(
            CallbackEvent::OnStop,
            local.callback_role.unwrap_or(CallbackRole::Replica),
        );
        Ok(())
    }

    /// Stops the postmaster as part of another step, which calls back.
    async fn stop_server(&self, local: &mut Local) -> anyhow::Result<()> {
        if !local.running {
            return Ok(());
        }
        self.before_stop().await;
        self.keeper(
            Request::Stop {
                mode: StopMode::Fast,
                timeout_ms: STOP_TIMEOUT.as_millis() as u64,
            },
            STOP_TIMEOUT + FENCE_TIMEOUT,
        )
        .await
        .context("cannot stop Postgres")?;
        local.running = false;
        Ok(())
    }

    pub(super) async fn start(
        &self,
        local: &mut Local,
        role: Role,
        upstream: Option<String>,
    ) -> anyhow::Result<()> {
        self.start_within(local, role, upstream, START_TIMEOUT)
            .await
    }

    /// [`Self::start`], failing if the server does not accept connections
    /// within `ready_within` (a restart's `timeout`). The server is left
    /// as it is then: the next rounds find it unanswering, and fence it
    /// (and the leader gives up its lease) as any server that stops
    /// answering.
    async fn start_within(
        &self,
        local: &mut Local,
        role: Role,
        upstream: Option<String>,
        ready_within: Duration,
    ) -> anyhow::Result<()> {
        let was_running = local.running;
        self.stop_server(local).await?;
        let primary = matches!(role, Role::Primary);
        if primary {
            self.require_lease()?;
        }
        self.write_conf(local, &role)?;
        local.upstream = upstream;
        self.keeper(Request::Start { primary }, START_REQUEST)
            .await
            .context("cannot start Postgres")?;
        local.running = true;
        self.wait_ready(ready_within).await?;
        let role = callback_role(&role);
        self.call_back(after_start(local.callback_role, role, was_running), role);
        local.callback_role = Some(role);
        Ok(())
    }

    /// Waits until the server answers a query (a standby: accepts read-only
    /// connections), the postmaster exits, or `timeout` passes.
    pub(super) async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let log = self.settings.log_path();
        loop {
            let keeper = self
                .keeper(Request::Status, raftgres_keeper::client::QUICK)
                .await?;
            let Some(pid) = keeper.postmaster_pid else {
                bail!(
                    "Postgres exited while starting ({}); see {}",
                    keeper.last_exit.as_deref().unwrap_or("no status"),
                    log.display()
                );
            };
            let last = match Control::new(&self.settings).status().await {
                Ok(_) => {
                    tracing::info!(member = self.me(), pid, "Postgres accepts connections");
                    return Ok(());
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "Postgres (pid {pid}) did not accept connections within {timeout:?}: {last}; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) async fn execute(
        &self,
        local: &mut Local,
        state: &ClusterState,
        action: &PgAction,
    ) -> anyhow::Result<()> {
        let result = self.execute_inner(local, state, action).await;
        if result.is_err()
            && matches!(
                action,
                PgAction::StartPrimary | PgAction::StartReplica { .. }
            )
        {
            local.down_since.get_or_insert(mono_now());
        }
        result
    }

    pub(super) async fn execute_inner(
        &self,
        local: &mut Local,
        state: &ClusterState,
        action: &PgAction,
    ) -> anyhow::Result<()> {
        match action {
            PgAction::None => Ok(()),
            PgAction::Fence => {
                // When the server went unanswering, `down_since` stays: the
                // holder then releases the lease as for any dead server.
                self.keeper(Request::Fence, FENCE_TIMEOUT)
                    .await
                    .context("cannot fence Postgres")?;
                local.running = false;
                let reason = if local.unanswered_since.is_some() {
                    "the server stopped answering, and may still commit"
                } else {
                    "the server was writable without a valid lease, or its processes outlived the postmaster"
                };
                tracing::warn!(
                    member = self.me(),
                    epoch = %state.lease.epoch,
                    reason,
                    "fenced Postgres: every process of the server is gone"
                );
                self.call_back(CallbackEvent::OnStop, CallbackRole::Primary);
                Ok(())
            }
            PgAction::InitDb => {
                let info = initdb(&self.settings).await?;
                tracing::info!(member = self.me(), system_id = %info.system_id, "created the database");
                self.start(local, Role::Primary, None).await
            }
            PgAction::RecordIdentity { system_id } => {
                match self
                    .consensus
                    .propose(Command::Initialize {
                        system_id: system_id.clone(),
                    })
                    .await
                {
                    Ok(Ok(_)) => {
                        tracing::info!(member = self.me(), %system_id, "recorded the cluster's identity")
                    }
                    Ok(Err(rejection)) => {
                        tracing::error!(member = self.me(), %rejection, "identity refused")
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "identity not committed; retrying")
                    }
                }
                Ok(())
            }
            PgAction::StartPrimary => self.start(local, Role::Primary, None).await,
            PgAction::StartReplica { upstream } => {
                let role = match upstream.as_deref().and_then(|u| upstream_of(state, u)) {
                    Some(up) => Role::Standby {
                        upstream: up,
                        slot: Some(slot_name_for(self.me())),
                    },
                    None => Role::DetachedStandby,
                };
                self.start(local, role, upstream.clone()).await
            }
            PgAction::Promote => {
                self.require_lease()?;
                let keeper = self
                    .keeper(Request::Status, raftgres_keeper::client::QUICK)
                    .await?;
                let now = crate::clock::nanos(mono_now());
                if keeper.armed.is_none_or(|a| a.deadline_ns <= now) {
                    bail!("the keeper's fence is not armed with a live deadline; not promoting");
                }
                self.pre_promote().await?;
                // The script may have run long: the judgement above is older.
                self.require_lease()?;
                self.configure_before_promotion(local, state).await?;
                let control = Control::new(&self.settings);
                if control.promote(PROMOTE_WAIT).await? {
                    // The control file shows the new timeline only after a
                    // checkpoint. The rewinder checkpoints its source itself,
                    // so this one only spares it that wait, and it runs
                    // beside the clients' way to the new primary, not on it.
                    let member = self.me().to_owned();
                    tokio::spawn(async move {
                        if let Err(e) = control.checkpoint(PROMOTE_WAIT).await {
                            tracing::warn!(member, error = %e, "checkpoint after the promotion failed");
                        }
                    });
                    self.write_conf(local, &Role::Primary)?;
                    local.upstream = None;
                    tracing::info!(member = self.me(), epoch = %state.lease.epoch, "promoted");
                    self.call_back(CallbackEvent::OnRoleChange, CallbackRole::Primary);
                    local.callback_role = Some(CallbackRole::Primary);
                }
                Ok(())
            }
            PgAction::Follow { upstream } => {
                let Some(up) = upstream_of(state, upstream) else {
                    return Ok(());
                };
                self.write_conf(
                    local,
                    &Role::Standby {
                        upstream: up,
                        slot: Some(slot_name_for(self.me())),
                    },
                )?;
                local.upstream = Some(upstream.clone());
                if local.running {
                    self.keeper(Request::Reload, raftgres_keeper::client::QUICK)
                        .await?;
                }
                Ok(())
            }
            PgAction::Rewind { source } => {
                let Some(up) = upstream_of(state, source) else {
                    return Ok(());
                };
                self.stop_postgres(local).await?;
                let slot = slot_name_for(self.me());
                // A source that cannot be reached (just restarting, say) is
                // retried on the next round: the data is intact and a clone
                // would need the same source. Any other failure (pg_rewind's
                // own, or the crash recovery it needs first) falls back to a
                // fresh clone, which keeps the old data until the copy is complete.
                let sink = ProgressSink::new(None);
                let rewound = rewind(&self.settings, &up, Some(&slot), Some(&sink));
                match self.showing_progress("rewind", &sink, rewound).await {
                    Ok(()) => tracing::info!(member = self.me(), %source, "rewound to the primary"),
                    Err(e @ (PgError::Connect { .. } | PgError::Timeout { .. })) => {
                        tracing::warn!(member = self.me(), %source, error = %e, "rewind source not reachable; retrying the rewind");
                        return Err(e.into());
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "rewind failed; cloning afresh");
                        self.clone_from(&up, &slot).await?;
                    }
                }
                local.down_since = None;
                let role = Role::Standby {
                    upstream: up,
                    slot: Some(slot),
                };
                self.start(local, role, Some(source.clone())).await
            }
            PgAction::StopForSwitchover => {
                // A checkpoint first keeps the shutdown checkpoint, and so
                // the time without a writable primary, short.
                if let Err(e) = Control::new(&self.settings).checkpoint(PROMOTE_WAIT).await {
                    tracing::warn!(member = self.me(), error = %e, "checkpoint before the switchover failed; stopping anyway");
                }
                self.stop_postgres(local).await?;
                local.down_since = None;
                local.switchover_stopped_at = Some(mono_now());
                tracing::info!(member = self.me(), epoch = %state.lease.epoch, candidate = ?state.switchover.as_ref().and_then(|s| s.to.clone()), "switchover: stopped Postgres; waiting for the candidate to replay the shutdown checkpoint");
                Ok(())
            }
            PgAction::AbandonSwitchover { reason } => {
                tracing::warn!(member = self.me(), %reason, "abandoning the switchover");
                match self.consensus.propose(Command::CancelSwitchover).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(rejection)) => {
                        tracing::error!(member = self.me(), %rejection, "switchover cancel refused");
                        Ok(())
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "switchover cancel not committed; retrying");
                        Ok(())
                    }
                }
            }
            PgAction::Clone { source } => {
                let Some(up) = upstream_of(state, source) else {
                    return Ok(());
                };
                self.stop_postgres(local).await?;
                let slot = slot_name_for(self.me());
                self.clone_from(&up, &slot).await?;
                local.down_since = None;
                tracing::info!(member = self.me(), %source, "cloned from the primary");
                let role = Role::Standby {
                    upstream: up,
                    slot: Some(slot),
                };
                self.start(local, role, Some(source.clone())).await
            }
        }
    }

    /// A fresh copy of `up`'s data, its progress shown in the API.
    async fn clone_from(&self, up: &Upstream, slot: &str) -> Result<(), PgError> {
        let sink = ProgressSink::new(None);
        let cloned = basebackup(&self.settings, up, Some(slot), Some(&sink));
        self.showing_progress("clone", &sink, cloned).await
    }

    /// Runs `copy`, publishing what it reports into `sink` in the status
    /// document (`progress`, with the rate since its first report) until
    /// it ends.
    async fn showing_progress<T>(
        &self,
        action: &'static str,
        sink: &ProgressSink,
        copy: impl std::future::Future<Output = T>,
    ) -> T {
        let mut reports = sink.subscribe();
        let forward = async {
            let mut first: Option<(Instant, u64)> = None;
            while reports.changed().await.is_ok() {
                let Some(report) = *reports.borrow_and_update() else {
                    continue;
                };
                let (since, from) = *first.get_or_insert((Instant::now(), report.done_bytes));
                let seconds = since.elapsed().as_secs_f64();
                let bytes_per_second = if seconds >= 1.0 {
                    (report.done_bytes.saturating_sub(from) as f64 / seconds) as u64
                } else {
                    0
                };
                self.facts.send_modify(|facts| {
                    facts.progress = Some(raftgres_api::CopyProgress {
                        action,
                        done_bytes: report.done_bytes,
                        total_bytes: report.total_bytes,
                        bytes_per_second,
                    });
                });
            }
        };
        // `forward` ends only with the sink, which outlives `copy`.
        let outcome = tokio::select! {
            outcome = copy => outcome,
            outcome = async { forward.await; std::future::pending::<T>().await } => outcome,
        };
        self.facts.send_modify(|facts| facts.progress = None);
        outcome
    }

    /// The role Postgres runs in now, to restart or reload it as it is.
    pub(super) fn current_role(&self, local: &Local, state: &ClusterState, view: &PgView) -> Role {
        if view.is_writable_primary() {
            return Role::Primary;
        }
        self.standby_role(local, state)
    }

    /// A standby streaming from the upstream it was last pointed at, or
    /// replaying what it has when that member is unknown.
    pub(super) fn standby_role(&self, local: &Local, state: &ClusterState) -> Role {
        match local
            .upstream
            .as_deref()
            .and_then(|u| upstream_of(state, u))
        {
            Some(up) => Role::Standby {
                upstream: up,
                slot: Some(slot_name_for(self.me())),
            },
            None => Role::DetachedStandby,
        }
    }

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
        let source = match reinit_source(self.me(), state, holds_lease) {
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
    async fn restart_postgres(
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
        let paused = state.config.as_ref().is_some_and(|c| c.values.pause);
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

    /// Keeps a physical slot for each member that streams from this
    /// server (`ha::slot_holders`: on the primary every other member but
    /// those cascading from a replica; on a replica those cascading from
    /// it), so a standby's WAL is kept until it has it, and drops the slot
    /// of a member that now streams elsewhere once it is no longer in use,
    /// which would otherwise keep WAL here for ever. Slots not named after
    /// a member are the operator's and are left alone.
    pub(super) async fn ensure_slots(
        &self,
        local: &mut Local,
        state: &ClusterState,
        peers: &raftgres_ha::PeerObserver,
    ) {
        let ttl = state.report_ttl();
        let fresh = |m: &Member| peers.is_fresh(&m.name, mono_now(), ttl);
        let wanted = raftgres_ha::slot_holders(state, self.me(), &fresh);
        if wanted == local.slots_for {
            return;
        }
        let control = Control::new(&self.settings);
        for name in &wanted {
            if let Err(e) = control.create_physical_slot(&slot_name_for(name)).await {
                tracing::warn!(member = self.me(), slot_for = %name, error = %e, "cannot create a replication slot");
                return;
            }
        }
        let slots = match control.list_slots().await {
            Ok(slots) => slots,
            Err(e) => {
                tracing::warn!(member = self.me(), error = %e, "cannot list the replication slots");
                return;
            }
        };
        let unwanted = state
            .members
            .keys()
            .filter(|name| !wanted.contains(*name) && name.as_str() != self.me())
            .map(|name| slot_name_for(name));
        for slot in unwanted {
            let Some(found) = slots.iter().find(|s| s.name == slot) else {
                continue;
            };
            if found.slot_type != "physical" || found.active {
                // In use: the member still streams from here; next round.
                return;
            }
            if let Err(e) = control.drop_slot(&slot).await {
                tracing::warn!(member = self.me(), %slot, error = %e, "cannot drop a replication slot nobody streams from");
                return;
            }
        }
        local.slots_for = wanted;
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

/// The member a reinitialize clones from: the running primary, unless
/// this member leads (Patroni's refusals, word for word).
fn reinit_source(me: &str, state: &ClusterState, holds_lease: bool) -> Result<String, OpError> {
    if holds_lease || state.lease.is_held_by(me) {
        return Err(OpError::Unavailable(
            "I am the leader, can not reinitialize".into(),
        ));
    }
    holder_running_primary(state)
        .map(|m| m.name.clone())
        .ok_or_else(|| {
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

fn log_outcome(me: &str, operation: &Operation, outcome: &Result<String, OpError>) {
    match outcome {
        Ok(message) => tracing::info!(member = me, ?operation, %message, "operator request done"),
        Err(e) => tracing::warn!(member = me, ?operation, error = %e, "operator request failed"),
    }
}

/// A server role as the callbacks name it.
fn callback_role(role: &Role) -> CallbackRole {
    match role {
        Role::Primary => CallbackRole::Primary,
        Role::Standby { .. } | Role::DetachedStandby => CallbackRole::Replica,
    }
}
