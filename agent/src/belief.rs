//! What this agent believes about its own lease, shared between the lease
//! loop (which changes it) and its readers: the loops and the health
//! snapshot, which re-renders when it changes.

use raftgres_ha::{HolderLease, MonoInstant};
use raftgres_state::Lease;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Belief {
    /// The lease as last known committed; `None` once lost or expired.
    pub holding: Option<HolderLease>,
    /// The most recent lease this agent held, kept for reporting.
    pub last_held: Option<HolderLease>,
    /// When `pre_promote` last refused this member's promotion: the lease
    /// loop gives the lease back and both loops stay out while the veto
    /// holds (`raftgres_ha::promotion_veto_holds`).
    pub promotion_vetoed_at: Option<MonoInstant>,
}

impl Belief {
    /// Holds a valid lease right now: committed, not past the deadline, and
    /// the applied state has not moved on to another holder or epoch.
    pub fn holds_valid(&self, lease: &Lease, me: &str, now: MonoInstant) -> bool {
        self.holding
            .is_some_and(|h| h.is_valid(now) && h.matches(lease, me))
    }

    /// `pre_promote` refused this member's promotion recently enough that
    /// it stays out of the lease of a cluster with this `ttl`.
    pub fn promotion_vetoed(&self, now: MonoInstant, ttl: std::time::Duration) -> bool {
        raftgres_ha::promotion_veto_holds(self.promotion_vetoed_at, now, ttl)
    }

    pub fn set_holding(&mut self, lease: HolderLease) {
        self.holding = Some(lease);
        self.last_held = Some(lease);
    }
}

pub type SharedBelief = Arc<watch::Sender<Belief>>;

pub fn new() -> SharedBelief {
    Arc::new(watch::Sender::new(Belief::default()))
}

pub fn read(belief: &SharedBelief) -> Belief {
    *belief.borrow()
}

/// Changes the belief; its subscribers wake only if it changed.
pub fn update(belief: &SharedBelief, change: impl FnOnce(&mut Belief)) {
    belief.send_if_modified(|b| {
        let before = *b;
        change(b);
        *b != before
    });
}
