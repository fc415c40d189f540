//! Which other members are alive: a member is fresh while its published
//! record keeps changing, judged on this member's own monotonic clock.

use crate::lease::MonoInstant;
use raftgres_state::ClusterState;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often a member republishes its record with a new heartbeat: a third
/// of a ttl, so that one lost or slow commit does not make a live member
/// look silent for a ttl.
pub fn heartbeat_interval(ttl: Duration) -> Duration {
    ttl / 3
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerObserver {
    seen: BTreeMap<String, Sighting>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sighting {
    heartbeat: u64,
    first_seen: MonoInstant,
    /// `first_seen` is when the heartbeat changed, not when this observer
    /// first met the member.
    changed: bool,
}

/// How long ago a member's current record was first seen here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportAge {
    pub age: Duration,
    /// No change seen since this observer started watching: the record may
    /// be older, so `age` is only a lower bound.
    pub lower_bound: bool,
}

impl PeerObserver {
    pub fn observe(&mut self, state: &ClusterState, now: MonoInstant) {
        self.seen.retain(|name, _| state.members.contains_key(name));
        for (name, member) in &state.members {
            let entry = self.seen.entry(name.clone()).or_insert(Sighting {
                heartbeat: member.heartbeat,
                first_seen: now,
                changed: false,
            });
            if entry.heartbeat != member.heartbeat {
                *entry = Sighting {
                    heartbeat: member.heartbeat,
                    first_seen: now,
                    changed: true,
                };
            }
        }
    }

    /// Heard from within `within` (a new heartbeat first seen since `now - within`).
    pub fn is_fresh(&self, name: &str, now: MonoInstant, within: Duration) -> bool {
        self.seen
            .get(name)
            .is_some_and(|seen| now < seen.first_seen + within)
    }

    /// The age of `name`'s current record at `now`; `None` for a member
    /// not observed yet.
    pub fn report_age(&self, name: &str, now: MonoInstant) -> Option<ReportAge> {
        self.seen.get(name).map(|seen| ReportAge {
            age: now - seen.first_seen,
            lower_bound: !seen.changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftgres_state::{Member, MemberRole, PgState};

    fn at(ms: u64) -> MonoInstant {
        MonoInstant(Duration::from_millis(ms))
    }

    fn state(heartbeat: u64) -> ClusterState {
        let mut s = ClusterState::default();
        s.members.insert(
            "a".into(),
            Member {
                role: MemberRole::Replica,
                pg_state: PgState::Running,
                heartbeat,
                ..Member::new("a", 1, "x:1")
            },
        );
        s
    }

    #[test]
    fn fresh_while_heartbeats_change() {
        let mut p = PeerObserver::default();
        let ttl = Duration::from_millis(2000);
        p.observe(&state(1), at(0));
        assert!(p.is_fresh("a", at(1999), ttl));
        p.observe(&state(1), at(1500));
        assert!(
            !p.is_fresh("a", at(2000), ttl),
            "an unchanged record is not news"
        );
        p.observe(&state(2), at(2100));
        assert!(p.is_fresh("a", at(4000), ttl));
        assert!(!p.is_fresh("zz", at(0), ttl));
        p.observe(&ClusterState::default(), at(4000));
        assert!(
            !p.is_fresh("a", at(4000), ttl),
            "removed members are forgotten"
        );
    }

    fn report_age(ms: u64, lower_bound: bool) -> Option<ReportAge> {
        Some(ReportAge {
            age: Duration::from_millis(ms),
            lower_bound,
        })
    }

    #[test]
    fn report_age_counts_from_the_first_sighting_of_the_heartbeat() {
        let mut p = PeerObserver::default();
        assert_eq!(p.report_age("a", at(0)), None, "never observed");
        p.observe(&state(7), at(1000));
        assert_eq!(
            p.report_age("a", at(1500)),
            report_age(500, true),
            "no change seen yet: the record may be older than our watch"
        );
        p.observe(&state(7), at(3000));
        assert_eq!(
            p.report_age("a", at(3000)).map(|r| r.age),
            Some(Duration::from_millis(2000)),
            "an unchanged heartbeat keeps ageing"
        );
        p.observe(&state(8), at(3200));
        assert_eq!(p.report_age("a", at(3300)), report_age(100, false));
        assert_eq!(
            p.report_age("a", at(3100)).map(|r| r.age),
            Some(Duration::ZERO),
            "an instant before the sighting is age zero, never negative"
        );
    }
}
