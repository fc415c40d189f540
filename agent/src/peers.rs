//! The one judge of which members still report: every part of the agent
//! (the lease decision, the Postgres decision, the REST API's operations)
//! asks the same `PeerObserver`, fed by one task with every state this
//! member applies, so they never disagree about who is alive.

use crate::clock::mono_now;
use raftgres_consensus::Consensus;
use raftgres_ha::PeerObserver;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct SharedPeers(Arc<Mutex<PeerObserver>>);

impl SharedPeers {
    /// Starts observing every state `consensus` applies; the task ends when
    /// Raft stops.
    pub fn watch(consensus: &Consensus) -> SharedPeers {
        let peers = SharedPeers::default();
        let observed = peers.clone();
        let mut states = consensus.subscribe();
        tokio::spawn(async move {
            loop {
                // State first, clock second: a sighting must never be
                // stamped earlier than the moment the state was seen.
                let state = states.borrow_and_update().state.clone();
                observed.lock().observe(&state, mono_now());
                if states.changed().await.is_err() {
                    return;
                }
            }
        });
        peers
    }

    /// What the observer knows now, to judge one decision by.
    pub fn snapshot(&self) -> PeerObserver {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PeerObserver> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
