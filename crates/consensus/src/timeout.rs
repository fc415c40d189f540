//! The bound on one Raft operation, `retry_timeout_ms` of the dynamic
//! config: shared by every part that waits on an operation (the handle's
//! calls, the group commit, forwarding to the leader), so that an edit of
//! the config takes effect on every member without a restart.

use raftgres_state::ClusterState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

use crate::store::StateView;

/// A shared, changeable operation timeout; clones share the value.
#[derive(Debug, Clone)]
pub struct OperationTimeout(Arc<AtomicU64>);

impl OperationTimeout {
    /// Starts at `initial` (the member's file), until a committed config
    /// says otherwise.
    pub fn new(initial: Duration) -> Self {
        Self(Arc::new(AtomicU64::new(millis(initial))))
    }

    pub fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }

    /// Returns whether the value changed.
    pub fn set(&self, to: Duration) -> bool {
        self.0.swap(millis(to), Ordering::Relaxed) != millis(to)
    }
}

fn millis(d: Duration) -> u64 {
    // Never zero: a zero bound would fail every operation at once.
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The operation timeout a committed config asks for, if any.
fn configured(state: &ClusterState) -> Option<Duration> {
    state
        .config
        .as_ref()
        .map(|c| Duration::from_millis(c.values.retry_timeout_ms))
}

/// Keeps `timeout` at the applied config's `retry_timeout_ms` until the
/// state machine goes away.
pub(crate) async fn follow_config(mut view: watch::Receiver<StateView>, timeout: OperationTimeout) {
    loop {
        let wanted = configured(&view.borrow_and_update().state);
        if let Some(wanted) = wanted
            && timeout.set(wanted)
        {
            tracing::info!(
                retry_timeout_ms = millis(wanted),
                "retry_timeout_ms of the cluster's config now bounds each Raft operation"
            );
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_value_and_zero_is_never_stored() {
        let a = OperationTimeout::new(Duration::from_secs(1));
        let b = a.clone();
        assert!(b.set(Duration::from_millis(250)));
        assert_eq!(a.get(), Duration::from_millis(250));
        assert!(!a.set(Duration::from_millis(250)), "unchanged");
        a.set(Duration::ZERO);
        assert_eq!(b.get(), Duration::from_millis(1));
    }
}
