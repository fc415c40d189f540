//! Promoting this member's standby once it holds the lease and the
//! keeper's fence guards the new primary.

use super::*;

impl PgLoop {
    pub(super) async fn promote(
        &self,
        local: &mut Local,
        state: &ClusterState,
    ) -> anyhow::Result<()> {
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
        if !control.promote(PROMOTE_WAIT).await? {
            return Ok(());
        }
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
        Ok(())
    }

    /// Runs `pre_promote`, if configured, and waits for it. A refusal is
    /// recorded in the belief, which gives the lease back and keeps this
    /// member out while the veto holds.
    async fn pre_promote(&self) -> anyhow::Result<()> {
        if self.run_hook("pre_promote", |s| &s.pre_promote).await != Some(false) {
            return Ok(());
        }
        belief::update(&self.belief, |b| b.promotion_vetoed_at = Some(mono_now()));
        bail!(
            "pre_promote refused the promotion; giving the lease back so that another \
             candidate takes over (this member stays out for two ttls)"
        )
    }
}
