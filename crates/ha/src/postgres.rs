//! What to do with the local Postgres, one row of the table per situation.
//! The lease itself is decided in `decide`; this reads whether we hold it.

use crate::candidacy::holder_running_primary;
use crate::cascade::{clone_source, upstream_for};
use crate::lease::MonoInstant;
use crate::local::PgView;
use crate::pause::{UNNAMED_WHILE_PAUSED, runs_while_paused};
use crate::peers::PeerObserver;
use crate::pooler::poolers_paused;
use crate::switchover::{SWITCHOVER_CATCHUP, due_switchover, switchover_candidate};
use crate::timeline::data_on_current_timeline;
use raftgres_state::{ClusterState, Member};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct PgObservation<'a> {
    pub me: &'a str,
    pub state: &'a ClusterState,
    /// This member holds a valid lease right now (committed, before its deadline).
    pub holds_lease: bool,
    pub pg: &'a PgView,
    pub now: MonoInstant,
    /// The wall clock, only to tell whether a scheduled switchover is due.
    pub now_unix_ms: u64,
    pub peers: &'a PeerObserver,
    /// When this member stopped its Postgres for a switchover, for as long
    /// as it stays stopped (after the switchover, too: a paused cluster
    /// restarts or rewinds only a server stopped that way).
    pub switchover_stopped_at: Option<MonoInstant>,
    /// This member's `pre_promote` refused its promotion lately
    /// (`promotion_veto_holds`).
    pub promotion_vetoed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgAction {
    None,
    /// Writable without a valid lease: stop accepting writes at once.
    Fence,
    /// We hold the lease of a cluster that has no database yet.
    InitDb,
    /// Record the new database's identity in the replicated state.
    RecordIdentity {
        system_id: String,
    },
    StartPrimary,
    /// Start in recovery, streaming from `upstream` (none: replay what we have).
    StartReplica {
        upstream: Option<String>,
    },
    Promote,
    /// Point a running replica at another upstream.
    Follow {
        upstream: String,
    },
    /// An ex-primary must rewind to the current primary before following it.
    Rewind {
        source: String,
    },
    /// A fresh copy from `source`; existing data is replaced once the copy
    /// is complete.
    Clone {
        source: String,
    },
    /// A due switchover with a fit candidate: checkpoint and stop cleanly,
    /// so the candidate can replay everything up to the shutdown checkpoint.
    StopForSwitchover,
    /// The switchover cannot finish: cancel it (the holder then starts
    /// again as primary).
    AbandonSwitchover {
        reason: String,
    },
}

/// The longest wait between two tries of a clone or a rewind.
pub(crate) const COPY_BACKOFF_CAP: Duration = Duration::from_secs(30);

impl PgAction {
    /// How long to wait after `failures` failed tries in a row of this
    /// action. A clone or a rewind loads its source (pg_basebackup
    /// checkpoints and switches WAL segments there, which the replica's slot
    /// then keeps), so their retries back off exponentially; anything else
    /// is tried again after one `loop_wait`, since a holder's start must not
    /// wait long.
    pub fn retry_delay(&self, failures: u32, loop_wait: Duration) -> Duration {
        match self {
            PgAction::Clone { .. } | PgAction::Rewind { .. } => loop_wait
                .saturating_mul(1 << failures.saturating_sub(1).min(16))
                .min(COPY_BACKOFF_CAP.max(loop_wait)),
            _ => loop_wait,
        }
    }
}

/// The holder's part of a due switchover, if it has one to play now.
fn switchover_step(o: &PgObservation<'_>) -> Option<PgAction> {
    let switchover = due_switchover(o.state, o.me, o.now_unix_ms)?;
    match o.pg {
        PgView::Running {
            in_recovery: false, ..
        } => {
            if o.state.paused() && switchover.to.is_none() {
                return Some(PgAction::AbandonSwitchover {
                    reason: UNNAMED_WHILE_PAUSED.to_owned(),
                });
            }
            let ttl = o.state.report_ttl();
            let fresh = |m: &Member| o.peers.is_fresh(&m.name, o.now, ttl);
            Some(
                match switchover_candidate(o.state, switchover.to.as_deref(), &fresh) {
                    // Clients wait in paused poolers instead of failing.
                    Ok(_) if !poolers_paused(o.state, &fresh) => PgAction::None,
                    Ok(_) => PgAction::StopForSwitchover,
                    Err(reason) => PgAction::AbandonSwitchover { reason },
                },
            )
        }
        PgView::Stopped { .. } => {
            let stopped_at = o.switchover_stopped_at?;
            Some(if o.now - stopped_at >= SWITCHOVER_CATCHUP {
                PgAction::AbandonSwitchover {
                    reason: format!(
                        "the candidate did not replay the shutdown checkpoint within {SWITCHOVER_CATCHUP:?}"
                    ),
                }
            } else {
                // The lease loop transfers the lease once the candidate caught up.
                PgAction::None
            })
        }
        _ => None,
    }
}

/// As the lease decision judges it (`Observation::hands_over`).
fn hands_over(o: &PgObservation<'_>) -> bool {
    let live = |name: &str| crate::decide::is_live_replica(o.state, o.peers, o.now, name);
    crate::sync::hands_over_after_crash(o.state, o.me, &live)
}

/// Whether an armed fence may be disarmed this round: the member holds no
/// lease, its server takes no writes, and the round does not fence it.
/// The keeper refuses anyway while any process of the server lives; then
/// its deadline kills them, and a later round disarms.
pub fn may_disarm(o: &PgObservation<'_>, action: &PgAction) -> bool {
    !o.holds_lease && !o.pg.is_writable_primary() && *action != PgAction::Fence
}

pub fn decide_postgres(o: &PgObservation<'_>) -> PgAction {
    let action = unpaused(o);
    if o.state.paused() && !runs_while_paused(o, &action) {
        return PgAction::None;
    }
    action
}

/// The table as it stands for a cluster that is not paused.
fn unpaused(o: &PgObservation<'_>) -> PgAction {
    let pg = o.pg;
    if matches!(pg, PgView::Absent | PgView::Busy { .. }) {
        return PgAction::None;
    }
    // Safety first (these run while paused too): never writable without the lease.
    if pg.is_writable_primary() && !o.holds_lease {
        return PgAction::Fence;
    }
    // An unanswering server, or backends that outlived their postmaster,
    // may still commit: kill them before any other step, so that a holder
    // releases its lease only once nothing of its server lives.
    if matches!(pg, PgView::Down { alive: true, .. }) {
        return PgAction::Fence;
    }
    let identity = o.state.identity.as_ref().map(|i| i.system_id.as_str());
    let foreign = matches!((identity, pg.data()), (Some(id), Some(d)) if d.system_id != id);
    if o.holds_lease {
        if let Some(action) = switchover_step(o) {
            return action;
        }
        // Rule 10: data off the cluster's timeline is neither started as
        // primary nor promoted; the lease loop releases the lease, and the
        // data rewinds once another member leads.
        let off_timeline = !pg.is_writable_primary()
            && pg
                .data()
                .is_some_and(|d| data_on_current_timeline(o.state, o.me, d).is_err());
        return match pg {
            _ if foreign || off_timeline => PgAction::None,
            PgView::Uninitialized if identity.is_none() => PgAction::InitDb,
            PgView::Uninitialized => PgAction::None,
            // The lease loop gives the lease back; trying again would run
            // the script again for the same answer.
            PgView::Running {
                in_recovery: true, ..
            } if o.promotion_vetoed => PgAction::None,
            PgView::Running {
                in_recovery: true, ..
            } => PgAction::Promote,
            PgView::Running { data, .. } if identity.is_none() => PgAction::RecordIdentity {
                system_id: data.system_id.clone(),
            },
            PgView::Running { .. } => PgAction::None,
            // The lease loop hands the lease over; the data rewinds once
            // the synchronous standby leads.
            PgView::Down { data, .. } if data.was_primary && hands_over(o) => PgAction::None,
            PgView::Stopped { data } | PgView::Down { data, .. } if data.was_primary => {
                PgAction::StartPrimary
            }
            // A replica's data becomes primary only through a promotion, so
            // it gets a new timeline like any failover.
            PgView::Stopped { .. } | PgView::Down { .. } => {
                PgAction::StartReplica { upstream: None }
            }
            PgView::Absent | PgView::Busy { .. } => PgAction::None,
        };
    }
    let another_leads = o.state.lease.holder.as_deref().is_some_and(|h| h != o.me);
    if !another_leads {
        // Nobody leads: keep replica data running so it can be a candidate.
        return match pg {
            PgView::Stopped { data } | PgView::Down { data, .. }
                if !data.was_primary && !foreign =>
            {
                PgAction::StartReplica { upstream: None }
            }
            _ => PgAction::None,
        };
    }
    if identity.is_none() {
        // The holder is still creating the database.
        return PgAction::None;
    }
    let Some(primary) = holder_running_primary(o.state).map(|m| m.name.clone()) else {
        return PgAction::None;
    };
    let ttl = o.state.report_ttl();
    let fresh = |m: &Member| o.peers.is_fresh(&m.name, o.now, ttl);
    let upstream = || upstream_for(o.state, o.me, &fresh).unwrap_or_else(|| primary.clone());
    let clone = || PgAction::Clone {
        source: clone_source(o.state, o.me, &fresh).unwrap_or_else(|| primary.clone()),
    };
    match pg {
        PgView::Uninitialized => clone(),
        _ if foreign => clone(),
        // Only the primary is on the timeline to rewind to for sure.
        PgView::Stopped { data } | PgView::Down { data, .. } if data.was_primary => {
            PgAction::Rewind { source: primary }
        }
        PgView::Stopped { .. } | PgView::Down { .. } => PgAction::StartReplica {
            upstream: Some(upstream()),
        },
        PgView::Running { upstream: now, .. } => {
            let wanted = upstream();
            if now.as_deref() == Some(wanted.as_str()) {
                PgAction::None
            } else {
                PgAction::Follow { upstream: wanted }
            }
        }
        PgView::Absent | PgView::Busy { .. } => PgAction::None,
    }
}

#[cfg(test)]
mod tests;
