//! The imperative shell around `raftgres_ha::pooler_plan`: keeps the local
//! pgbouncer where the plan says, through `raftgres_pooler`'s one planner of
//! console commands (its module `transition` gives the order). What is the
//! agent's own: the lease deadline as a wake-up, how long a switchover's
//! pause may wait for a new primary, and reporting the pause in the member
//! record, which the holder waits for before it stops Postgres.

use crate::belief::{self, SharedBelief};
use crate::clock::mono_now;
use crate::clock::unix_ms;
use raftgres_consensus::Consensus;
use raftgres_ha::{MonoInstant, pooler_plan};
use raftgres_pooler::{
    Admin, Applied, Desired, Executed, PoolerError, PoolerSettings, Target, converge,
    fence_at_start,
};
use raftgres_state::{ClusterState, Epoch, HostPort};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    pub live: watch::Receiver<crate::requests::LiveSettings>,
}

/// After a console command failed, try again this soon.
const RETRY: Duration = Duration::from_millis(200);
const IDLE_WAKE: Duration = Duration::from_millis(500);
/// How long clients may wait in a pool paused for a switchover while no
/// primary runs; a switchover takes about a second.
const PAUSE_HOLD: Duration = Duration::from_secs(15);

/// What the loop believes pgbouncer does, and since when a switchover's
/// pause holds its clients.
struct Tracked {
    applied: Applied<Epoch>,
    paused_since: Option<MonoInstant>,
}

fn target_of(state: &ClusterState, name: &str) -> Option<Target> {
    let HostPort { host, port } = state.members.get(name)?.pg_host_port()?;
    Some(Target { host, port })
}

impl PoolerLoop {
    pub async fn run(mut self, stop: CancellationToken) {
        let mut admin = self.admin();
        // Fenced first, whatever the file says: a client reaching an entry
        // with no server (or a stale one) would lock the pool for
        // `server_login_retry` once a primary is known.
        let mut tracked = loop {
            if self.live.has_changed().unwrap_or(false) {
                admin = self.admin();
            }
            match fence_at_start(&admin, &self.settings).await {
                Ok(applied) => {
                    // The start writes the file only for an entry pgbouncer
                    // did not know.
                    if applied.routes.is_some() {
                        tracing::info!(member = %self.member, database = %self.settings.write_db, file = %self.settings.databases_file.display(), "pgbouncer did not know the write database; added it with no server");
                    }
                    break Tracked {
                        applied,
                        paused_since: None,
                    };
                }
                Err(e) => {
                    tracing::warn!(member = %self.member, error = %e, "cannot fence pgbouncer at start; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        };
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
            let wake = match self.step(&admin, &state, holds, &mut tracked).await {
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
                _ = stop.cancelled() => return,
            }
        }
    }

    /// The console client with the admin credentials last loaded.
    fn admin(&mut self) -> Admin {
        if let Some((user, password)) = self.live.borrow_and_update().pooler_admin.clone() {
            self.settings.admin.user = user;
            self.settings.admin.password = password;
        }
        Admin::new(self.settings.admin.clone())
    }

    /// One round: at most a few console commands, in the order that keeps
    /// clients waiting or refused, never writing to a non-primary.
    async fn step(
        &self,
        admin: &Admin,
        state: &ClusterState,
        holds_valid_lease: bool,
        tracked: &mut Tracked,
    ) -> Result<(), PoolerError> {
        let plan = pooler_plan(state, &self.member, holds_valid_lease, unix_ms());
        let write = plan.write.as_deref().and_then(|n| target_of(state, n));
        let read = plan
            .read
            .iter()
            .filter_map(|n| target_of(state, n))
            .collect();
        let desired = Desired {
            routes: self.settings.routes(write, read),
            pause_for: plan.pause_for,
            pause_expired: tracked
                .paused_since
                .is_none_or(|since| mono_now() - since >= PAUSE_HOLD),
        };
        let before = tracked.applied.clone();
        let executed = converge(admin, &self.settings, &mut tracked.applied, &desired).await;
        let pause_error = match &executed {
            Ok(Executed::PauseUnfinished(e)) => Some(e),
            _ => None,
        };
        self.report(&before, tracked, pause_error);
        executed.map(drop)
    }

    /// Logs and publishes what changed, also when a later step failed, and
    /// starts the clock of a new pause.
    fn report(
        &self,
        before: &Applied<Epoch>,
        tracked: &mut Tracked,
        pause_error: Option<&PoolerError>,
    ) {
        let after = &tracked.applied;
        let db = self.settings.write_db.as_str();
        if after.fenced && !before.fenced {
            tracing::warn!(member = %self.member, database = db, "no primary to send clients to: pgbouncer fenced");
        }
        if let Some(primary) = after
            .serving
            .as_ref()
            .filter(|t| before.serving.as_ref() != Some(*t))
        {
            tracing::info!(member = %self.member, database = db, %primary, "pgbouncer points at the primary");
        }
        let paused_for = after.paused_for;
        if paused_for == before.paused_for {
            return;
        }
        if let Some(epoch) = paused_for {
            match pause_error {
                Some(e) => {
                    tracing::warn!(member = %self.member, %epoch, error = %e, "switchover: PAUSE did not finish; going on");
                }
                None if before.serves() => {
                    tracing::info!(member = %self.member, %epoch, database = db, "switchover: pgbouncer paused");
                }
                // A fenced pool sends nothing anywhere: it was not PAUSEd.
                None => {}
            }
            tracked.paused_since = Some(mono_now());
        }
        self.status.send_if_modified(|s| {
            let changed = s.paused_for != paused_for;
            s.paused_for = paused_for;
            changed
        });
    }
}
