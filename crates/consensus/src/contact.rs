//! When this member last knew its copy of the log to be current: what the
//! agent reports as Patroni's `dcs_last_seen`. Raft gives a member that
//! knowledge two ways: a leader when a quorum acknowledges it, a follower
//! when it accepts an AppendEntries (entries or a heartbeat) from the leader
//! it follows. One cell keeps the later of the two, so a leader that steps
//! down keeps its last acknowledgement until the new leader reaches it.

use crate::types::{Node, NodeId};
use openraft::RaftMetrics;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Clone, Default)]
pub(crate) struct Contact(Arc<Mutex<Option<Instant>>>);

impl Contact {
    /// The log was known current at `at`; an older instant changes nothing.
    pub(crate) fn current_at(&self, at: Instant) {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|last| last < at) {
            *last = Some(at);
        }
    }

    /// How long ago the log was last known current; `None` before it ever was.
    pub(crate) fn age(&self) -> Option<Duration> {
        let last = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.map(|at| at.elapsed())
    }
}

/// Records each quorum acknowledgement this member's leadership receives,
/// until the core stops. openraft 0.9 publishes only the time since the
/// last one (`millis_since_quorum_ack`), as of its latest metrics report;
/// turned into an instant as each report arrives, a leader whose core stops
/// reporting (a stalled disk, a partition) stops looking current instead of
/// keeping the last report's small age.
pub(crate) async fn follow_quorum_acks(
    mut metrics: watch::Receiver<RaftMetrics<NodeId, Node>>,
    contact: Contact,
) {
    loop {
        let since = metrics.borrow_and_update().millis_since_quorum_ack;
        if let Some(at) = since.and_then(|ms| Instant::now().checked_sub(Duration::from_millis(ms)))
        {
            contact.current_at(at);
        }
        if metrics.changed().await.is_err() {
            return; // The core stopped.
        }
    }
}
