//! Which other members are alive: a member is fresh while its published
//! record keeps changing, judged on this member's own monotonic clock.

use crate::lease::MonoInstant;
use raftgres_state::ClusterState;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerObserver {
    /// name -> (last heartbeat seen, when it was first seen)
    seen: BTreeMap<String, (u64, MonoInstant)>,
}

impl PeerObserver {
    pub fn observe(&mut self, state: &ClusterState, now: MonoInstant) {
        self.seen.retain(|name, _| state.members.contains_key(name));
        for (name, member) in &state.members {
            let entry = self
                .seen
                .entry(name.clone())
                .or_insert((member.heartbeat, now));
            if entry.0 != member.heartbeat {
                *entry = (member.heartbeat, now);
            }
        }
    }

    /// Heard from within `within` (a new heartbeat first seen since `now - within`).
    pub fn is_fresh(&self, name: &str, now: MonoInstant, within: Duration) -> bool {
        self.seen
            .get(name)
            .is_some_and(|(_, at)| now < *at + within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftgres_state::{Member, MemberRole, PgState, Tags};

    fn at(ms: u64) -> MonoInstant {
        MonoInstant(Duration::from_millis(ms))
    }

    fn state(heartbeat: u64) -> ClusterState {
        let mut s = ClusterState::default();
        s.members.insert(
            "a".into(),
            Member {
                name: "a".into(),
                node_id: 1,
                raft_addr: "x:1".into(),
                api_url: None,
                pg_address: None,
                role: MemberRole::Replica,
                pg_state: PgState::Running,
                timeline: None,
                receive_lsn: None,
                replay_lsn: None,
                streaming: false,
                pooler: false,
                pooler_paused_epoch: None,
                tags: Tags::default(),
                witness: false,
                heartbeat,
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
}
