//! The imperative shell around `raftgres_ha::pooler_plan`: keeps the local
//! pgbouncer's databases file pointed where the plan says, and drives its
//! admin console. The order of console commands follows what pgbouncer 1.18
//! does (see `raftgres_pooler`'s documentation):
//! - no primary, or this member lost its lease: fence the write database
//!   first (clients refused and dropped), then point it at no server;
//! - a due switchover: PAUSE, publish that it is paused, and keep the old
//!   entry until the new primary runs; then rewrite, RELOAD, RESUME;
//! - a new primary after a fence: rewrite, RELOAD, ENABLE.

use crate::belief::{self, SharedBelief};
use crate::clock::mono_now;
use crate::lease_loop::unix_ms;
use raftgres_consensus::Consensus;
use raftgres_ha::{MonoInstant, pooler_plan};
use raftgres_pooler::{Admin, PoolerError, PoolerSettings, Routes, Target, write_databases_file};
use raftgres_state::{ClusterState, Epoch, HostPort};
use std::time::Duration;
use tokio::sync::watch;

/// What this member's pooler reports in its member record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolerStatus {
    /// Paused for the switchover of this lease epoch.
    pub paused_for: Option<Epoch>,
}

pub struct PoolerLoop {
    pub consensus: Consensus,
    pub member: String,
    pub settings: PoolerSettings,
    pub belief: SharedBelief,
    pub status: watch::Sender<PoolerStatus>,
    /// `pgbouncer.admin_user` and `admin_password`, swapped by a reload.
    pub live: watch::Receiver<crate::reload::LiveSettings>,
}

/// After a console command failed, try again this soon.
const RETRY: Duration = Duration::from_millis(200);
const IDLE_WAKE: Duration = Duration::from_millis(500);
/// How long clients may wait in a pool paused for a switchover while no
/// primary runs; a switchover takes about a second.
const PAUSE_HOLD: Duration = Duration::from_secs(15);

/// What the loop believes the pgbouncer is doing.
#[derive(Default)]
struct Applied {
    /// The routes last written and reloaded.
    routes: Option<Routes>,
    /// The write database is DISABLEd (no primary to send clients to).
    fenced: bool,
    paused_for: Option<Epoch>,
    paused_since: Option<MonoInstant>,
}

fn target_of(state: &ClusterState, name: &str) -> Option<Target> {
    let HostPort { host, port } = state.members.get(name)?.pg_host_port()?;
    Some(Target { host, port })
}

impl PoolerLoop {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut admin = self.admin();
        // Fenced first, whatever the file says: a client reaching an entry
        // with no server (or a stale one) would lock the pool for
        // `server_login_retry` once a primary is known.
        let mut applied = Applied::default();
        loop {
            if self.live.has_changed().unwrap_or(false) {
                admin = self.admin();
            }
            match self.fence_at_start(&admin).await {
                Ok(()) => {
                    applied.fenced = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(member = %self.member, error = %e, "cannot fence pgbouncer at start; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
        let mut states = self.consensus.subscribe();
        loop {
            if self.live.has_changed().unwrap_or(false) {
                admin = self.admin();
                tracing::info!(member = %self.member, user = %self.settings.admin.user, "pgbouncer admin console credentials reloaded");
            }
            let state = states.borrow_and_update().state.clone();
            let now = mono_now();
            let belief = belief::read(&self.belief);
            let holds = belief.holds_valid(&state.lease, &self.member, now);
            let wake = match self.step(&admin, &state, holds, &mut applied).await {
                Ok(()) => {
                    let mut wake = IDLE_WAKE;
                    // The write database must be fenced the moment this
                    // member's lease deadline passes, not a tick later.
                    if let Some(h) = belief.holding.filter(|_| holds) {
                        wake = wake.min(h.deadline - now + Duration::from_millis(1));
                    }
                    wake
                }
                Err(e) => {
                    tracing::warn!(member = %self.member, error = %e, "pgbouncer not updated yet; retrying");
                    RETRY
                }
            };
            tokio::select! {
                changed = states.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wake) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// DISABLE needs an entry to act on. A databases file that does not
    /// name the write database yet (a provisioning tool creates it empty,
    /// since pgbouncer refuses to start without its `%include`) first gets
    /// one that points at no server, so the window before DISABLE can reach
    /// no Postgres at all.
    async fn fence_at_start(&self, admin: &Admin) -> Result<(), PoolerError> {
        let db = self.settings.write_db.as_str();
        if !admin.show_databases().await?.iter().any(|d| d.name == db) {
            tracing::info!(member = %self.member, database = db, file = %self.settings.databases_file.display(), "pgbouncer does not know the write database yet; adding it with no server");
            self.rewrite(admin, &self.settings.routes(None, Vec::new()))
                .await?;
        }
        admin.fence(db).await
    }

    /// The console client with the admin credentials last loaded.
    fn admin(&mut self) -> Admin {
        if let Some((user, password)) = self.live.borrow_and_update().pooler_admin.clone() {
            self.settings.admin.user = user;
            self.settings.admin.password = password;
        }
        Admin::new(self.settings.admin.clone())
    }

    fn publish(&self, applied: &Applied) {
        self.status.send_if_modified(|s| {
            let changed = s.paused_for != applied.paused_for;
            s.paused_for = applied.paused_for;
            changed
        });
    }

    /// One round: at most a few console commands, in the order that keeps
    /// clients waiting or refused, never writing to a non-primary.
    async fn step(
        &self,
        admin: &Admin,
        state: &ClusterState,
        holds_valid_lease: bool,
        applied: &mut Applied,
    ) -> Result<(), PoolerError> {
        let plan = pooler_plan(state, &self.member, holds_valid_lease, unix_ms());
        let write = plan.write.as_deref().and_then(|n| target_of(state, n));
        let read = plan
            .read
            .iter()
            .filter_map(|n| target_of(state, n))
            .collect();
        let routes = self.settings.routes(write, read);
        let db = self.settings.write_db.as_str();
        let current_write = applied.routes.as_ref().and_then(|r| r.write.clone());

        if let Some(epoch) = plan.pause_for
            && applied.paused_for != Some(epoch)
        {
            // A fenced pool sends nothing anywhere: nothing to pause. The
            // holder waits for every live pooler's report, so one is always
            // made: a PAUSE that times out (long transactions) or fails
            // (console unreachable) is reported too, and the switchover
            // goes on rather than waiting for ever.
            if current_write.is_some() && !applied.fenced {
                match admin.pause(Some(db), self.settings.pause_timeout).await {
                    Ok(()) => {
                        tracing::info!(member = %self.member, %epoch, database = db, "switchover: pgbouncer paused");
                    }
                    Err(e) => {
                        tracing::warn!(member = %self.member, %epoch, error = %e, "switchover: PAUSE did not finish; going on");
                    }
                }
            }
            applied.paused_for = Some(epoch);
            applied.paused_since = Some(mono_now());
            self.publish(applied);
            return Ok(());
        }

        if applied.routes.as_ref() != Some(&routes) {
            match (&routes.write, applied.paused_for) {
                // Mid-switchover (also after the transfer, until the new
                // primary runs) the old entry stays: a paused pool sends
                // nothing anywhere, and its clients wait without pgbouncer
                // dialing. Past PAUSE_HOLD it is fenced like any failover.
                (None, Some(_))
                    if applied
                        .paused_since
                        .is_some_and(|since| mono_now() - since < PAUSE_HOLD) =>
                {
                    return Ok(());
                }
                (None, _) => {
                    if !applied.fenced {
                        admin.fence(db).await?;
                        applied.fenced = true;
                        tracing::warn!(member = %self.member, database = db, "no primary to send clients to: pgbouncer fenced");
                    }
                    self.rewrite(admin, &routes).await?;
                    if applied.paused_for.take().is_some() {
                        admin.resume(Some(db)).await?;
                        self.publish(applied);
                    }
                }
                // Paused and the primary has not moved yet: a RELOAD now
                // (say for the read entry) could make pgbouncer dial, and a
                // RESUME would let clients at the stopping primary.
                (Some(target), Some(_)) if current_write.as_ref() == Some(target) => {
                    return Ok(());
                }
                (Some(target), _) => {
                    let moved = current_write.as_ref() != Some(target);
                    self.rewrite(admin, &routes).await?;
                    if applied.fenced {
                        admin.enable(db).await?;
                        applied.fenced = false;
                    } else if moved && applied.paused_for.is_none() {
                        // Unplanned: sessions on the old primary must go.
                        admin.kill(db).await?;
                        admin.resume(Some(db)).await?;
                    }
                    if applied.paused_for.take().is_some() {
                        admin.resume(Some(db)).await?;
                        self.publish(applied);
                    }
                    if moved {
                        tracing::info!(member = %self.member, database = db, primary = %target, "pgbouncer points at the primary");
                    }
                }
            }
            applied.routes = Some(routes);
            return Ok(());
        }

        // A switchover that was abandoned or cancelled: let clients go on.
        if applied.paused_for.is_some() && plan.pause_for.is_none() {
            admin.resume(Some(db)).await?;
            applied.paused_for = None;
            self.publish(applied);
        }
        Ok(())
    }

    async fn rewrite(&self, admin: &Admin, routes: &Routes) -> Result<(), PoolerError> {
        write_databases_file(&self.settings.databases_file, routes)?;
        // Always RELOAD: the file may have been written by an earlier agent
        // whose RELOAD never happened.
        admin.reload().await?;
        if let Some(read_db) = &routes.read_db {
            if routes.read.is_empty() {
                admin.disable(read_db).await?;
            } else {
                admin.enable(read_db).await?;
            }
        }
        Ok(())
    }
}
