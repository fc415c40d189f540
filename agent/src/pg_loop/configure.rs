//! Keeping the server's configuration: the synchronous standbys the holder
//! names, the parameters the cluster and the member ask for, the managed
//! configuration file, and what must be in place before a promotion.

use super::*;

impl PgLoop {
    /// Synchronous replication, run by the holder (`plan_sync` decides).
    /// A server that may still take writes without a valid lease is never
    /// touched: letting it stop waiting would acknowledge commits that a
    /// promoted standby does not have.
    pub(super) async fn manage_sync(
        &mut self,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
        holds_lease: bool,
    ) {
        if !holds_lease {
            if !view.is_writable_primary() {
                local.sync_configured = None;
            }
            return;
        }
        if !view.is_writable_primary() {
            // Starting or promoting: from its first commit the server waits
            // for the standbys the Raft state names.
            self.settings.synchronous_standbys = sync_standbys(&wait_for(state, None));
            local.sync_configured = None;
            return;
        }
        let step = plan_sync(
            state,
            self.me(),
            &local.standbys,
            local.sync_configured.as_ref(),
        );
        match step {
            SyncStep::None => {}
            SyncStep::Commit { .. } => {
                let epoch = state.lease.epoch;
                let Some(command) = step.command(self.me(), epoch) else {
                    return;
                };
                match self.consensus.propose(command).await {
                    Ok(Ok(_)) => tracing::info!(
                        member = self.me(),
                        %epoch,
                        ?step,
                        "committed the synchronous standbys"
                    ),
                    Ok(Err(rejection)) => {
                        tracing::warn!(member = self.me(), %rejection, "synchronous standbys refused")
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "synchronous standbys not committed; retrying")
                    }
                }
            }
            SyncStep::Configure(wait) => {
                self.settings.synchronous_standbys = sync_standbys(&wait);
                match self.configure_sync(local).await {
                    Ok(at) => {
                        tracing::info!(
                            member = self.me(),
                            synchronous_standby_names = %self.settings.synchronous_standbys.setting(),
                            lsn = %at,
                            "Postgres waits for these standbys now"
                        );
                        local.sync_configured = Some(Configured {
                            wait,
                            at: Some(Lsn(at.0)),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "cannot set the synchronous standbys; retrying");
                        local.sync_configured = None;
                    }
                }
            }
        }
    }

    /// Writes and reloads the standbys the primary waits for, and returns
    /// its WAL position once a new session sees them: the commits it
    /// acknowledged under the old setting are at or below it.
    pub(super) async fn configure_sync(
        &self,
        local: &mut Local,
    ) -> anyhow::Result<raftgres_postgres::Lsn> {
        self.write_conf(local, &Role::Primary)?;
        self.keeper(Request::Reload, raftgres_keeper::client::QUICK)
            .await?;
        self.await_sync_setting().await?;
        Ok(Control::new(&self.settings).status().await?.wal_lsn)
    }

    /// Brings the managed conf to the cluster's `postgresql.parameters`
    /// under this member's own, and has a running server reload it: a
    /// setting Postgres can change while running takes effect at once, the
    /// others show as pending restart. A value this member's Postgres
    /// refuses is left out and logged, so that one bad edit cannot stop
    /// every member's next start.
    pub(super) async fn apply_parameters(
        &mut self,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
    ) {
        let wanted = raftgres_ha::postgres_parameters(state, &self.file_parameters);
        if local.parameters_checked.as_ref() != Some(&wanted) {
            self.settings.parameters = self.accepted_parameters(&wanted).await;
            local.parameters_checked = Some(wanted);
        }
        let running = local.running && matches!(view, PgView::Running { .. });
        if !running || local.parameters_written.as_ref() == Some(&self.settings.parameters) {
            return;
        }
        let role = self.current_role(local, state, view);
        if let Err(e) = self.write_conf(local, &role) {
            tracing::warn!(member = self.me(), error = %e, "cannot write the server settings; will retry");
            local.parameters_written = None;
            return;
        }
        match self
            .keeper(Request::Reload, raftgres_keeper::client::QUICK)
            .await
        {
            Ok(_) => tracing::info!(
                member = self.me(),
                parameters = ?self.settings.parameters,
                "server settings changed; Postgres reloaded them"
            ),
            Err(e) => {
                tracing::warn!(member = self.me(), error = %e, "cannot reload Postgres; will retry");
                local.parameters_written = None;
            }
        }
    }

    /// The part of `wanted` that Postgres takes: all of it, or, when it
    /// refuses something, this member's own parameters and each of the
    /// cluster's it takes alongside them.
    pub(super) async fn accepted_parameters(
        &self,
        wanted: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let refusal = match check_parameters(&self.settings, wanted).await {
            Ok(()) => return wanted.clone(),
            Err(PgError::ParametersRefused { reason }) => reason,
            Err(e) => {
                tracing::warn!(member = self.me(), error = %e, "cannot have Postgres check the server settings; using them unchecked");
                return wanted.clone();
            }
        };
        if let Err(e) = check_parameters(&self.settings, &self.file_parameters).await {
            // Nothing to leave out: the member's own file is at fault.
            tracing::error!(member = self.me(), error = %e, "postgresql.parameters in this member's settings file hold a value Postgres refuses; correct the file and reload the agent");
            return wanted.clone();
        }
        let mut accepted = self.file_parameters.clone();
        for (name, value) in wanted {
            if accepted.contains_key(name) {
                continue;
            }
            let mut trial = accepted.clone();
            trial.insert(name.clone(), value.clone());
            match check_parameters(&self.settings, &trial).await {
                Ok(()) => accepted = trial,
                Err(e) => tracing::error!(
                    member = self.me(),
                    parameter = %name,
                    %value,
                    error = %e,
                    "the cluster's postgresql.parameters hold a value this member's Postgres refuses; \
                     leaving it out. Correct it with `raftgresctl edit-config`"
                ),
            }
        }
        tracing::debug!(member = self.me(), %refusal, "left refused settings out");
        accepted
    }

    /// Writes the managed conf for `role` with the current parameters.
    pub(super) fn write_conf(&self, local: &mut Local, role: &Role) -> Result<(), PgError> {
        write_managed_conf(&self.settings, role)?;
        local.parameters_written = Some(self.settings.parameters.clone());
        Ok(())
    }

    /// Has the standby read which standbys its commits will wait for before
    /// it becomes a primary, so that it acknowledges none without them.
    pub(super) async fn configure_before_promotion(
        &self,
        local: &mut Local,
        state: &ClusterState,
    ) -> anyhow::Result<()> {
        let wanted = self.settings.synchronous_standbys.setting();
        let control = Control::new(&self.settings);
        if control.setting("synchronous_standby_names").await? == wanted {
            return Ok(());
        }
        let role = self.standby_role(local, state);
        self.write_conf(local, &role)?;
        self.keeper(Request::Reload, raftgres_keeper::client::QUICK)
            .await?;
        self.await_sync_setting().await
    }

    /// Waits until a new session sees the `synchronous_standby_names` of
    /// the settings: the postmaster has read it.
    pub(super) async fn await_sync_setting(&self) -> anyhow::Result<()> {
        let wanted = self.settings.synchronous_standbys.setting();
        let control = Control::new(&self.settings);
        let deadline = Instant::now() + SYNC_CONFIG_WAIT;
        loop {
            if control.setting("synchronous_standby_names").await? == wanted {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "Postgres did not take synchronous_standby_names = {wanted:?} within {SYNC_CONFIG_WAIT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// ha's `WaitFor` in Postgres's terms.
fn sync_standbys(wait: &WaitFor) -> SyncStandbys {
    match wait {
        WaitFor::Nobody => SyncStandbys::Nobody,
        WaitFor::AnyOne => SyncStandbys::AnyOne,
        WaitFor::All(names) => SyncStandbys::All(names.clone()),
        WaitFor::Any { n, names } => SyncStandbys::Any {
            n: *n,
            names: names.clone(),
        },
    }
}

/// How long a promotion waits for Postgres to read the synchronous
/// standbys it must wait for from its first commit.
const SYNC_CONFIG_WAIT: Duration = Duration::from_secs(5);
