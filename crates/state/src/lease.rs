use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The fencing token: it grows every time the lease gets a new holder, so a
/// command or a write stamped with an older epoch can be told apart.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One exact version of the lease record. Every change (acquire, renew,
/// release, transfer) makes a new version, so a compare-and-set on it fails if
/// anything at all happened to the lease in between.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct LeaseVersion {
    pub epoch: Epoch,
    pub revision: u64,
}

impl fmt::Display for LeaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {} revision {}", self.epoch, self.revision)
    }
}

/// The leader lease: whoever holds it may run the writable primary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lease {
    /// `None` before the first acquire and after a release.
    pub holder: Option<String>,
    pub epoch: Epoch,
    pub revision: u64,
    /// How long observers wait, on their own clocks, after first seeing this
    /// version before they may call it expired. Carried in the record so a
    /// config change never confuses the judgement of a running lease.
    pub ttl_ms: u64,
    /// Last WAL position the holder reported, to judge candidates' lag.
    pub last_lsn: Option<crate::Lsn>,
    /// The cluster's current timeline: the highest one a holder has renewed
    /// with while running as primary. It never goes down.
    pub timeline: Option<u32>,
    /// The member whose primary last renewed on `timeline`, while no other
    /// member has held the lease since: its stopped data is the only
    /// ex-primary data that may start as primary again. Cleared when the
    /// lease passes to another member, which promotes and so forks a new
    /// timeline that no renewal may have reported yet.
    #[serde(default)]
    pub timeline_owner: Option<String>,
}

impl Lease {
    pub fn version(&self) -> LeaseVersion {
        LeaseVersion {
            epoch: self.epoch,
            revision: self.revision,
        }
    }

    /// The ttl this version was acquired or renewed with: it, not the
    /// config's, says when the lease expires and the holder's deadline.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    pub fn is_held_by(&self, member: &str) -> bool {
        self.holder.as_deref() == Some(member)
    }

    /// A renewal from `member`'s running primary on `timeline`. Timelines
    /// only grow along one history, so a lower one is a branch the cluster
    /// has left, and recording it would make the branch current again.
    pub(crate) fn primary_on(&mut self, member: &str, timeline: u32) {
        if self.timeline.is_some_and(|current| timeline < current) {
            return;
        }
        self.timeline = Some(timeline);
        self.timeline_owner = Some(member.to_owned());
    }

    /// The lease passes to `new_holder`. Any member but the timeline's owner
    /// promotes once it holds the lease, forking a new timeline before its
    /// first renewal can report it; from then on the owner's data is a
    /// branch, whatever the recorded timeline still says.
    pub(crate) fn disown_timeline(&mut self, new_holder: &str) {
        if self.timeline_owner.as_deref() != Some(new_holder) {
            self.timeline_owner = None;
        }
    }
}
