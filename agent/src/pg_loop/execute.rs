//! Executing one decided action through the keeper, re-checking the lease
//! right before Postgres starts as primary or is promoted.

use super::*;

mod copy;
mod promote;
mod start_stop;

impl PgLoop {
    /// Fails unless this member holds a valid lease at this very moment:
    /// the judgement that chose a start or a promotion may be older than
    /// the action it led to.
    fn require_lease(&self) -> anyhow::Result<()> {
        let state = self.consensus.local().state;
        if belief::read(&self.belief).holds_valid(&state.lease, self.me(), mono_now()) {
            Ok(())
        } else {
            bail!("the lease is no longer held here; not acting as primary")
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

    async fn execute_inner(
        &self,
        local: &mut Local,
        state: &ClusterState,
        action: &PgAction,
    ) -> anyhow::Result<()> {
        match action {
            PgAction::None => Ok(()),
            PgAction::Fence => self.fence(local, state).await,
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
                let role = self.standby_of(state, upstream.as_deref());
                self.start(local, role, upstream.clone()).await
            }
            PgAction::Promote => self.promote(local, state).await,
            PgAction::Follow { upstream } => {
                let Some(up) = upstream_of(state, upstream) else {
                    return Ok(());
                };
                self.write_conf(local, &self.streaming_from(up))?;
                local.upstream = Some(upstream.clone());
                if local.running {
                    self.keeper(Request::Reload, raftgres_keeper::client::QUICK)
                        .await?;
                }
                Ok(())
            }
            PgAction::Rewind { source } => {
                self.copy_then_follow(local, state, source, copy::Copy::Rewind)
                    .await
            }
            PgAction::Clone { source } => {
                self.copy_then_follow(local, state, source, copy::Copy::Clone)
                    .await
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
                    Ok(Ok(_)) => {}
                    Ok(Err(rejection)) => {
                        tracing::error!(member = self.me(), %rejection, "switchover cancel refused")
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "switchover cancel not committed; retrying")
                    }
                }
                Ok(())
            }
        }
    }

    async fn fence(&self, local: &mut Local, state: &ClusterState) -> anyhow::Result<()> {
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
        self.standby_of(state, local.upstream.as_deref())
    }

    /// A standby streaming from the member `upstream`, or replaying what
    /// it has when there is none or it is unknown.
    fn standby_of(&self, state: &ClusterState, upstream: Option<&str>) -> Role {
        match upstream.and_then(|u| upstream_of(state, u)) {
            Some(up) => self.streaming_from(up),
            None => Role::DetachedStandby,
        }
    }

    /// A standby streaming from `up` through the slot `up` keeps for this
    /// member.
    fn streaming_from(&self, up: Upstream) -> Role {
        Role::Standby {
            upstream: up,
            slot: Some(member_slot_name(self.me())),
        }
    }
}

/// A server role as the callbacks name it.
pub(super) fn callback_role(role: &Role) -> CallbackRole {
    match role {
        Role::Primary => CallbackRole::Primary,
        Role::Standby { .. } | Role::DetachedStandby => CallbackRole::Replica,
    }
}
