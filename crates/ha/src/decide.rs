//! What to do about the lease, one row of the decision table per situation.

use crate::candidacy::{live_rival, may_compete, rank, recorded_rank, tagged_in, within_lag};
use crate::lease::{HolderLease, LeaseObserver, MonoInstant};
use crate::local::PgView;
use crate::pause::paused_candidate;
use crate::peers::PeerObserver;
use crate::switchover::{due_switchover, failover_candidate, handover_target};
use crate::timeline::{data_on_current_timeline, on_current_timeline};
use raftgres_state::{ClusterState, Epoch, LeaseVersion, Member, MemberRole, PgState};
use std::time::Duration;

/// Everything one decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub now: MonoInstant,
    pub me: &'a str,
    /// The applied replicated state on this member.
    pub state: &'a ClusterState,
    /// This member's own lease, as it last knew it committed.
    pub holding: Option<&'a HolderLease>,
    pub observer: &'a LeaseObserver,
    /// A lease command is already on its way; one at a time keeps the
    /// holder's send instants ordered.
    pub in_flight: bool,
    pub pg: &'a PgView,
    pub peers: &'a PeerObserver,
    /// How long a holder whose Postgres is down may try to restart it in
    /// place before it gives the lease up.
    pub restart_grace: Duration,
    /// The wall clock, only to tell whether a scheduled switchover is due.
    pub now_unix_ms: u64,
    /// This member's `pre_promote` refused its promotion lately
    /// (`promotion_veto_holds`): give the lease back and stay out.
    pub promotion_vetoed: bool,
}

/// Whether a promotion that `pre_promote` refused at `vetoed_at` still
/// keeps this member out: for two of the cluster's ttls, long enough for
/// another candidate to take the lease, short enough that a cluster with no
/// other candidate asks the script again.
pub fn promotion_veto_holds(
    vetoed_at: Option<MonoInstant>,
    now: MonoInstant,
    ttl: Duration,
) -> bool {
    vetoed_at.is_some_and(|at| now - at < ttl * 2)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// Nothing to do until `until` (or until the state changes).
    Wait {
        until: Option<MonoInstant>,
    },
    Renew {
        epoch: Epoch,
    },
    /// Compare-and-set on the exact version this member saw expire or released.
    Acquire {
        expected: LeaseVersion,
    },
    /// The holder cannot serve as primary: hand the lease back at once,
    /// compare-and-set on the exact version it decided on.
    Release {
        expected: LeaseVersion,
    },
    /// Quorum mode: the lease ended, so the old primary is fenced; measure
    /// this standby's WAL position now and report it for `lease`, as
    /// evidence for whichever quorum standby takes over.
    ReportPosition {
        expected: LeaseVersion,
    },
    /// Switchover: the holder's Postgres stopped cleanly and `to` has
    /// replayed its shutdown checkpoint; hand the lease over,
    /// compare-and-set on the exact version it decided on.
    Transfer {
        expected: LeaseVersion,
        to: String,
    },
}

impl<'a> Observation<'a> {
    fn me_member(&self) -> Option<&'a Member> {
        self.state.members.get(self.me)
    }

    /// A member competes only if it is registered, not a witness, and not
    /// tagged out of failover.
    fn eligible(&self) -> bool {
        self.me_member().is_some_and(tagged_in)
    }

    /// Data that belongs to this cluster (or any data while it has none yet).
    fn data_is_ours(&self) -> bool {
        match (&self.state.identity, self.pg.data()) {
            (Some(id), Some(d)) => d.system_id == id.system_id,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    /// Whether this member's Postgres could become primary now: our data,
    /// not too far behind the last primary position, and no fresh peer better.
    fn can_lead(&self) -> bool {
        // In synchronous mode only a member with every acknowledged commit.
        let Some(me) = self.me_member() else {
            return false;
        };
        // Ahead of this member's record, which says so once it commits.
        if self.promotion_vetoed {
            return false;
        }
        if may_compete(self.state, me).is_err()
            || !self.data_is_ours()
            || self.state.config.is_none()
        {
            return false;
        }
        if self.state.identity.is_none() {
            // The first holder creates the database.
            return matches!(
                self.pg,
                PgView::Uninitialized | PgView::Stopped { .. } | PgView::Running { .. }
            );
        }
        let Some(data) = self.pg.data() else {
            return false;
        };
        if !matches!(
            self.pg,
            PgView::Stopped { .. }
                | PgView::Running {
                    in_recovery: true,
                    ..
                }
        ) || !self.data_on_current_timeline()
        {
            return false;
        }
        if within_lag(self.state, self.me, data.lsn).is_err() {
            return false;
        }
        let mine = rank(me, data.lsn);
        let fresh = |m: &Member| {
            self.peers
                .is_fresh(&m.name, self.now, self.state.report_ttl())
        };
        !self.state.members.values().any(|m| {
            m.name != self.me
                && live_rival(self.state, m, &fresh).is_ok()
                && recorded_rank(m) > mine
        })
    }

    /// Quorum mode, the lease over: a quorum standby running on this
    /// cluster's data that has not reported its position for this version.
    fn owes_position(&self) -> bool {
        let lease = &self.state.lease;
        self.state.synchronous
            && self.state.sync_quorum.is_some()
            && self.state.sync_set.contains(self.me)
            && !lease.is_held_by(self.me)
            && self
                .state
                .positions
                .get(self.me)
                .is_none_or(|p| p.lease != lease.version())
            && matches!(
                self.pg,
                PgView::Running {
                    in_recovery: true,
                    ..
                }
            )
            && self.data_is_ours()
    }

    /// A failover named this member: it takes over with any data of this
    /// cluster, however far behind, because the operator asked for it.
    fn can_lead_on_request(&self) -> bool {
        !self.promotion_vetoed
            && self.eligible()
            && self.state.identity.is_some()
            && self.data_is_ours()
            && self.data_on_current_timeline()
            && matches!(
                self.pg,
                PgView::Stopped { .. }
                    | PgView::Running {
                        in_recovery: true,
                        ..
                    }
            )
    }

    /// Judged over two ttls: a failover often follows the loss of the node
    /// that also led Raft, and no heartbeat commits until a new Raft leader
    /// is elected, so a live candidate can look silent for about a ttl. A
    /// candidate off the timeline will never take the lease, so nobody
    /// waits for it.
    fn is_live_replica(&self, name: &str) -> bool {
        is_live_replica(self.state, self.peers, self.now, name)
    }

    /// Rule 10, for this member's own data (no data counts as on it: the
    /// other rules judge that case).
    fn data_on_current_timeline(&self) -> bool {
        self.pg
            .data()
            .is_none_or(|d| data_on_current_timeline(self.state, self.me, d).is_ok())
    }

    /// During a due switchover, once this holder's Postgres has stopped
    /// cleanly: the candidate, if it has replayed past the shutdown checkpoint.
    fn transfer_to(&self) -> Option<String> {
        let switchover = due_switchover(self.state, self.me, self.now_unix_ms)?;
        let PgView::Stopped { data } = self.pg else {
            return None;
        };
        if !data.was_primary || !self.data_is_ours() {
            return None;
        }
        let fresh = |m: &Member| {
            self.peers
                .is_fresh(&m.name, self.now, self.state.report_ttl())
        };
        let to = handover_target(self.state, switchover.to.as_deref(), &fresh)?;
        (to.replay_lsn? > data.lsn).then(|| to.name.clone())
    }

    /// In synchronous mode a crashed primary's lease goes to a live
    /// synchronous standby (`hands_over_after_crash`).
    fn hands_over(&self) -> bool {
        let live = |name: &str| self.is_live_replica(name);
        crate::sync::hands_over_after_crash(self.state, self.me, &live)
    }

    /// A holder gives the lease up when its Postgres cannot serve: no data,
    /// foreign data, data off the cluster's timeline that is not already a
    /// running primary (it must not start or be promoted, and it rewinds
    /// once another member leads), or down for longer than the restart grace.
    fn must_release(&self) -> bool {
        if self.state.identity.is_none() {
            return false;
        }
        match self.pg {
            PgView::Busy { .. } => false,
            PgView::Absent | PgView::Uninitialized => true,
            _ if !self.data_is_ours() => true,
            // Never while any process of the server lives: it is fenced first.
            PgView::Down { alive: true, .. } => false,
            _ if !self.pg.is_writable_primary() && !self.data_on_current_timeline() => true,
            PgView::Down { data, .. } if data.was_primary && self.hands_over() => true,
            PgView::Down { since, .. } => self.now - *since >= self.restart_grace,
            _ => false,
        }
    }
}

/// A running replica on the cluster's timeline that reported within two
/// ttls (see `Observation::is_live_replica` for why two).
pub(crate) fn is_live_replica(
    state: &ClusterState,
    peers: &PeerObserver,
    now: MonoInstant,
    name: &str,
) -> bool {
    let ttl = state.report_ttl();
    state.members.get(name).is_some_and(|m| {
        m.pg_state == PgState::Running
            && m.role == MemberRole::Replica
            && peers.is_fresh(name, now, ttl * 2)
            && on_current_timeline(state, name, m.timeline, false).is_ok()
    })
}

fn earliest(a: Option<MonoInstant>, b: Option<MonoInstant>) -> Option<MonoInstant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub fn decide(o: &Observation<'_>) -> LeaseAction {
    let Some(config) = &o.state.config else {
        // The dynamic config (ttl, loop_wait) arrives with bootstrap.
        return LeaseAction::Wait { until: None };
    };
    let lease = &o.state.lease;
    let holding = o.holding.filter(|h| h.matches(lease, o.me));
    if o.in_flight {
        return LeaseAction::Wait {
            until: holding.map(|h| h.deadline),
        };
    }
    if lease.is_held_by(o.me) {
        if o.must_release() || (o.promotion_vetoed && !o.pg.is_writable_primary()) {
            return LeaseAction::Release {
                expected: lease.version(),
            };
        }
        if let Some(to) = o.transfer_to() {
            return LeaseAction::Transfer {
                expected: lease.version(),
                to,
            };
        }
        let renew_at = match holding {
            Some(h) => h.last_renew_sent + config.values.timing.loop_wait,
            // The state names us but we know no deadline (restart, or a reply
            // lost): only a committed renewal can tell us one.
            None => o.now,
        };
        if o.now >= renew_at {
            return LeaseAction::Renew { epoch: lease.epoch };
        }
        return LeaseAction::Wait {
            until: earliest(Some(renew_at), holding.map(|h| h.deadline)),
        };
    }
    if o.state.paused() && paused_candidate(o.state, o.now_unix_ms) != Some(o.me) {
        // Paused: no automatic failover; the holder still renews above. A
        // request naming this member still runs, through the same checks.
        return LeaseAction::Wait { until: None };
    }
    if o.observer.expired(lease, o.now) {
        if failover_candidate(o.state).is_none() && o.owes_position() {
            return LeaseAction::ReportPosition {
                expected: lease.version(),
            };
        }
        let may = match failover_candidate(o.state) {
            Some(to) if to == o.me => o.can_lead_on_request(),
            // The operator named another member: defer to it while it lives.
            Some(to) if o.is_live_replica(to) => false,
            _ => o.can_lead(),
        };
        if !may {
            return LeaseAction::Wait { until: None };
        }
        return LeaseAction::Acquire {
            expected: lease.version(),
        };
    }
    LeaseAction::Wait {
        until: o.observer.expires_at(lease),
    }
}

#[cfg(test)]
mod candidates;

#[cfg(test)]
mod tests;
