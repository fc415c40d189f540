//! Which console commands take pgbouncer from what it does now to where
//! clients should go: the one planner behind the agent's pooler loop and
//! `raftgresctl pooler`. Pure; [`crate::converge`] runs what it plans.
//!
//! The order follows what pgbouncer 1.18 does (see the crate documentation):
//! - with no primary the write database is fenced before its entry is
//!   pointed at no server, so no client waits on an entry that dials a
//!   dead server and shuts the pool for `server_login_retry`;
//! - a new primary after a fence is ENABLEd after the RELOAD, never before;
//! - a primary that moved while clients were served gets KILL and RESUME,
//!   so no session stays on the old one;
//! - a switchover PAUSEs first, alone. While paused, the old entry stays
//!   until the new primary runs (a RELOAD of a paused pool makes a client's
//!   login dial); then rewrite, RELOAD, RESUME back to back. With no primary
//!   past the caller's patience, the paused pool is fenced as in a failover.
//!
//! Each action that succeeded is [`Applied::record`]ed; a failed one is not,
//! so the next plan starts where the last one stopped.

use crate::routes::{NO_SERVER_HOST, Routes, Target};

/// One step on pgbouncer's console or its databases file, in the order
/// [`Applied::plan`] gives. `S` names a switchover, chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<S> {
    /// DISABLE, KILL, RESUME the write database: new clients are refused,
    /// connected ones dropped, and no login dials a dead server.
    Fence,
    /// Write the databases file and RELOAD; then ENABLE the read database,
    /// or DISABLE it while it has no server.
    Rewrite,
    /// ENABLE the write database after a fence.
    Enable,
    /// KILL and RESUME the write database: its sessions on the old primary
    /// go, and the next clients reach the new one.
    KillResume,
    /// PAUSE the write database for switchover `S`. It counts as done even
    /// when PAUSE fails or times out: the switchover waits for this pause to
    /// be reported, and must go on rather than wait for ever.
    Pause(S),
    /// Count a write database that sends clients nowhere (fenced) as paused
    /// for switchover `S`; there is nothing to PAUSE.
    PauseFenced(S),
    /// RESUME the write database after a switchover's pause.
    Resume,
}

/// What the caller knows pgbouncer does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<S> {
    /// The routes last written and RELOADed by this process.
    pub routes: Option<Routes>,
    /// Where the write database's server connections may go; `None` while
    /// fenced or pointed at no server.
    pub serving: Option<Target>,
    /// The write database is DISABLEd.
    pub fenced: bool,
    /// Paused (or counted as paused) for this switchover.
    pub paused_for: Option<S>,
}

/// Where clients should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired<S> {
    pub routes: Routes,
    /// A switchover is due: pause the write database for it, once.
    pub pause_for: Option<S>,
    /// The caller stopped waiting for a new primary with clients paused: a
    /// paused write database with no primary is then fenced.
    pub pause_expired: bool,
}

impl<S> Desired<S> {
    /// For a caller that takes no part in switchovers.
    pub fn without_switchover(routes: Routes) -> Desired<S> {
        Desired {
            routes,
            pause_for: None,
            pause_expired: true,
        }
    }
}

impl<S: Copy + PartialEq> Applied<S> {
    /// Before looking: pgbouncer may not even know the write database.
    pub fn unknown() -> Applied<S> {
        Applied {
            routes: None,
            serving: None,
            fenced: false,
            paused_for: None,
        }
    }

    /// From pgbouncer's `SHOW DATABASES` row of the write database, so a
    /// caller that starts there drops no session when nothing changed.
    pub fn observed(host: Option<&str>, port: u16, disabled: bool) -> Applied<S> {
        let serving = host
            .filter(|h| *h != NO_SERVER_HOST && !disabled)
            .map(|h| Target {
                host: h.to_owned(),
                port,
            });
        Applied {
            serving,
            fenced: disabled,
            ..Applied::unknown()
        }
    }

    /// The steps that take pgbouncer to `desired`; none when it is there
    /// already or must hold still (paused for a switchover).
    pub fn plan(&self, desired: &Desired<S>) -> Vec<Action<S>> {
        if let Some(switchover) = desired.pause_for
            && self.paused_for != Some(switchover)
        {
            return vec![if self.serves() {
                Action::Pause(switchover)
            } else {
                Action::PauseFenced(switchover)
            }];
        }
        let rewrite = self.routes.as_ref() != Some(&desired.routes);
        let paused = self.paused_for.is_some();
        let mut actions = Vec::new();
        match &desired.routes.write {
            None => {
                // The old primary is stopping or the new one is not
                // promoted yet: paused clients wait, and nothing dials.
                if paused && rewrite && !desired.pause_expired {
                    return actions;
                }
                if !self.fenced {
                    actions.push(Action::Fence);
                }
                if rewrite {
                    actions.push(Action::Rewrite);
                }
                // Resumed into the fence once it replaces the pause, or
                // once the switchover is no longer due; until then the
                // pause stays reported, so the switchover goes on.
                if paused && (rewrite || desired.pause_for.is_none()) {
                    actions.push(Action::Resume);
                }
            }
            Some(primary) => {
                // Paused for a switchover still due, and the primary has
                // not moved yet: a RELOAD (say for the read entry) could
                // make pgbouncer dial, and a RESUME would let clients at
                // the stopping primary. Once it is no longer due, that
                // primary stays: rewrite and RESUME.
                if paused && self.serving.as_ref() == Some(primary) && desired.pause_for.is_some() {
                    return actions;
                }
                if rewrite {
                    actions.push(Action::Rewrite);
                }
                if self.fenced {
                    actions.push(Action::Enable);
                } else if !paused && self.serving.as_ref() != Some(primary) {
                    actions.push(Action::KillResume);
                }
                if paused {
                    actions.push(Action::Resume);
                }
            }
        }
        actions
    }

    /// Records that `action`, planned for `desired`, succeeded. A failed
    /// one is not recorded, so the next plan has it again.
    pub fn record(&mut self, action: Action<S>, desired: &Desired<S>) {
        match action {
            Action::Fence => {
                self.fenced = true;
                self.serving = None;
            }
            Action::Rewrite => self.routes = Some(desired.routes.clone()),
            Action::Enable => {
                self.fenced = false;
                self.serving = desired.routes.write.clone();
            }
            Action::KillResume => self.serving = desired.routes.write.clone(),
            Action::Pause(switchover) | Action::PauseFenced(switchover) => {
                self.paused_for = Some(switchover);
            }
            Action::Resume => {
                self.paused_for = None;
                if !self.fenced {
                    self.serving = desired.routes.write.clone();
                }
            }
        }
    }

    /// pgbouncer sends the write database to a primary.
    pub fn serves(&self) -> bool {
        !self.fenced && self.serving.is_some()
    }
}

/// The steps that fence the write database whatever pgbouncer did before.
/// DISABLE needs an entry to act on, so one pgbouncer does not know yet (a
/// provisioning tool creates the file empty, as pgbouncer refuses to start
/// without its `%include`) is first added pointed at no server: the window
/// before DISABLE reaches no Postgres at all.
pub(crate) fn fence_at_start<S>(knows_write_db: bool) -> Vec<Action<S>> {
    if knows_write_db {
        vec![Action::Fence]
    } else {
        vec![Action::Rewrite, Action::Fence]
    }
}

#[cfg(test)]
mod tests;
