//! Lease timing (docs/lease.md gives the safety argument).
//!
//! The holder counts from when it *sent* the command that committed; every
//! other member counts from when it first *saw* the current lease version.
//! Seeing comes after sending, so every observer's expiry falls at least
//! `margin` after the holder's own deadline.

use raftgres_state::{Epoch, Lease, LeaseVersion};
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on this machine's monotonic clock (time since an arbitrary origin).
/// Wall-clock jumps never move it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct MonoInstant(pub Duration);

impl Add<Duration> for MonoInstant {
    type Output = MonoInstant;
    fn add(self, d: Duration) -> MonoInstant {
        MonoInstant(self.0.saturating_add(d))
    }
}

impl Sub<MonoInstant> for MonoInstant {
    type Output = Duration;
    /// Zero when `other` is later: "how long until" never goes negative.
    fn sub(self, other: MonoInstant) -> Duration {
        self.0.saturating_sub(other.0)
    }
}

/// What the holder knows of its own lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderLease {
    pub epoch: Epoch,
    /// `sent + ttl - margin` of the latest committed acquire or renewal.
    pub deadline: MonoInstant,
    /// When the command that took this epoch was sent.
    pub acquire_sent: MonoInstant,
    /// When the latest renewal (or the acquire) was sent, committed or not.
    pub last_renew_sent: MonoInstant,
}

impl HolderLease {
    /// The deadline a committed command sent at `sent` grants.
    pub fn deadline_for(sent: MonoInstant, ttl: Duration, margin: Duration) -> MonoInstant {
        sent + ttl.saturating_sub(margin)
    }

    /// The lease an acquire (or a transfer to us) sent at `sent` grants once committed.
    pub fn acquired(epoch: Epoch, sent: MonoInstant, ttl: Duration, margin: Duration) -> Self {
        Self {
            epoch,
            deadline: Self::deadline_for(sent, ttl, margin),
            acquire_sent: sent,
            last_renew_sent: sent,
        }
    }

    /// The lease a restarted agent adopts from its keeper, which kept only
    /// the `deadline` it enforces: the send instant is recovered as the
    /// inverse of [`Self::deadline_for`], so the next renewal is timed as
    /// the previous agent's would have been.
    pub fn adopted(epoch: Epoch, deadline: MonoInstant, ttl: Duration, margin: Duration) -> Self {
        let sent = MonoInstant(deadline.0.saturating_sub(ttl.saturating_sub(margin)));
        Self {
            epoch,
            deadline,
            acquire_sent: sent,
            last_renew_sent: sent,
        }
    }

    /// Extends the deadline after a renewal sent at `sent` committed. A late
    /// reply of an older renewal never shortens it.
    pub fn renewed(&mut self, sent: MonoInstant, ttl: Duration, margin: Duration) {
        self.deadline = self.deadline.max(Self::deadline_for(sent, ttl, margin));
    }

    /// Valid strictly before the deadline.
    pub fn is_valid(&self, now: MonoInstant) -> bool {
        now < self.deadline
    }

    /// Whether the replicated lease still names us at our epoch.
    pub fn matches(&self, lease: &Lease, me: &str) -> bool {
        lease.is_held_by(me) && lease.epoch == self.epoch
    }
}

/// A non-holder's view of the lease: when it first saw the current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseObserver {
    seen: Option<(LeaseVersion, MonoInstant)>,
}

impl LeaseObserver {
    /// Records the lease as seen at `now`; only a new version restarts the count.
    pub fn observe(&mut self, lease: &Lease, now: MonoInstant) {
        let version = lease.version();
        if self.seen.map(|(v, _)| v) != Some(version) {
            self.seen = Some((version, now));
        }
    }

    /// When the lease may be called expired, if it is held: `ttl` after the
    /// current version was first seen. `None` if nothing was seen yet.
    pub fn expires_at(&self, lease: &Lease) -> Option<MonoInstant> {
        match self.seen {
            Some((version, first_seen)) if version == lease.version() => {
                Some(first_seen + Duration::from_millis(lease.ttl_ms))
            }
            _ => None,
        }
    }

    /// A released lease (no holder) is free at once; a held one only after
    /// `ttl` with no new version seen.
    pub fn expired(&self, lease: &Lease, now: MonoInstant) -> bool {
        if lease.holder.is_none() {
            return true;
        }
        self.expires_at(lease).is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> MonoInstant {
        MonoInstant(Duration::from_millis(ms))
    }

    fn lease(holder: Option<&str>, epoch: u64, revision: u64) -> Lease {
        Lease {
            holder: holder.map(Into::into),
            epoch: Epoch(epoch),
            revision,
            ttl_ms: 2000,
            last_lsn: None,
            timeline: None,
            timeline_owner: None,
        }
    }

    const TTL: Duration = Duration::from_millis(2000);
    const MARGIN: Duration = Duration::from_millis(400);

    #[test]
    fn holder_deadline_counts_from_sending() {
        let h = HolderLease::acquired(Epoch(1), at(1000), TTL, MARGIN);
        assert_eq!(h.deadline, at(2600));
        assert!(h.is_valid(at(2599)));
        assert!(
            !h.is_valid(at(2600)),
            "the deadline instant itself is invalid"
        );
    }

    #[test]
    fn an_adopted_lease_keeps_the_deadline_it_was_granted() {
        let granted = HolderLease::acquired(Epoch(4), at(500), TTL, MARGIN);
        let adopted = HolderLease::adopted(Epoch(4), granted.deadline, TTL, MARGIN);
        assert_eq!(adopted, granted);
    }

    #[test]
    fn renewal_extends_but_a_late_old_reply_never_shortens() {
        let mut h = HolderLease::acquired(Epoch(1), at(0), TTL, MARGIN);
        h.renewed(at(500), TTL, MARGIN);
        assert_eq!(h.deadline, at(2100));
        h.renewed(at(100), TTL, MARGIN);
        assert_eq!(h.deadline, at(2100));
    }

    #[test]
    fn margin_larger_than_ttl_gives_an_already_expired_lease() {
        let h = HolderLease::acquired(
            Epoch(1),
            at(1000),
            Duration::from_millis(100),
            Duration::from_millis(500),
        );
        assert!(!h.is_valid(at(1000)));
    }

    #[test]
    fn holder_matches_only_its_own_epoch() {
        let h = HolderLease::acquired(Epoch(3), at(0), TTL, MARGIN);
        assert!(h.matches(&lease(Some("a"), 3, 9), "a"));
        assert!(!h.matches(&lease(Some("a"), 4, 9), "a"));
        assert!(!h.matches(&lease(Some("b"), 3, 9), "a"));
        assert!(!h.matches(&lease(None, 3, 9), "a"));
    }

    #[test]
    fn observer_counts_ttl_from_first_sight_of_a_version() {
        let mut o = LeaseObserver::default();
        let l = lease(Some("a"), 1, 1);
        assert_eq!(o.expires_at(&l), None);
        assert!(!o.expired(&l, at(99_999)), "never seen: not expired");
        o.observe(&l, at(100));
        o.observe(&l, at(900));
        assert_eq!(o.expires_at(&l), Some(at(2100)));
        assert!(!o.expired(&l, at(2099)));
        assert!(o.expired(&l, at(2100)));
    }

    #[test]
    fn a_renewal_restarts_the_observers_count() {
        let mut o = LeaseObserver::default();
        o.observe(&lease(Some("a"), 1, 1), at(0));
        let renewed = lease(Some("a"), 1, 2);
        o.observe(&renewed, at(1500));
        assert!(!o.expired(&renewed, at(2500)));
        assert!(o.expired(&renewed, at(3500)));
    }

    #[test]
    fn a_version_not_yet_observed_is_not_expired() {
        let mut o = LeaseObserver::default();
        o.observe(&lease(Some("a"), 1, 1), at(0));
        assert!(!o.expired(&lease(Some("a"), 1, 2), at(10_000)));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let o = LeaseObserver::default();
        assert!(o.expired(&lease(None, 4, 8), at(0)));
    }

    #[test]
    fn observers_expire_no_earlier_than_margin_after_the_holder_deadline() {
        // For any send instant and any delay before an observer sees the
        // commit, the observer's expiry is at least `margin` after the deadline.
        for sent in [0u64, 7, 1234] {
            for seen_after in [0u64, 1, 50, 900] {
                let h = HolderLease::acquired(Epoch(1), at(sent), TTL, MARGIN);
                let mut o = LeaseObserver::default();
                let l = lease(Some("a"), 1, 1);
                o.observe(&l, at(sent + seen_after));
                let expiry = o.expires_at(&l).unwrap();
                assert!(
                    expiry - h.deadline >= MARGIN,
                    "sent {sent} seen +{seen_after}"
                );
                assert!(
                    !o.expired(&l, h.deadline),
                    "observer must not expire while holder is valid"
                );
            }
        }
    }

    #[test]
    fn mono_instant_arithmetic_saturates() {
        assert_eq!(at(5) - at(10), Duration::ZERO);
        assert_eq!(
            MonoInstant(Duration::MAX) + Duration::from_secs(1),
            MonoInstant(Duration::MAX)
        );
    }
}
