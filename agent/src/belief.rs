//! What this agent believes about its own lease, shared between the lease
//! loop (which changes it) and the status service (which reports it).

use raftgres_ha::{HolderLease, MonoInstant};
use raftgres_state::Lease;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone, Copy)]
pub struct Belief {
    /// The lease as last known committed; `None` once lost or expired.
    pub holding: Option<HolderLease>,
    /// The most recent lease this agent held, kept for reporting.
    pub last_held: Option<HolderLease>,
}

impl Belief {
    /// Holds a valid lease right now: committed, not past the deadline, and
    /// the applied state has not moved on to another holder or epoch.
    pub fn holds_valid(&self, lease: &Lease, me: &str, now: MonoInstant) -> bool {
        self.holding
            .is_some_and(|h| h.is_valid(now) && h.matches(lease, me))
    }

    pub fn set_holding(&mut self, lease: HolderLease) {
        self.holding = Some(lease);
        self.last_held = Some(lease);
    }
}

pub type SharedBelief = Arc<Mutex<Belief>>;

pub fn read(belief: &SharedBelief) -> Belief {
    *belief.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn update(belief: &SharedBelief, change: impl FnOnce(&mut Belief)) {
    change(&mut belief.lock().unwrap_or_else(|e| e.into_inner()));
}
