//! Where a member's pgbouncer sends clients, and when it pauses them.
//!
//! The write database follows the primary only once its record says it runs
//! as primary (after promotion), and on the holder itself only while its
//! lease is valid: a member that lost or cannot confirm the lease stops
//! sending clients to its own Postgres at once. A due switchover pauses
//! every pooler before the old primary stops, so clients wait instead of
//! failing.

use crate::candidacy::holder_running_primary;
use crate::switchover::due_switchover;
use raftgres_state::{ClusterState, Epoch, Member, MemberRole, PgState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolerPlan {
    /// The member whose Postgres takes the write database; `None`: nobody
    /// may (clients must wait or be cut off).
    pub write: Option<String>,
    /// Streaming replicas for the read database, by name; the primary when
    /// there is none.
    pub read: Vec<String>,
    /// Pause the write database for the switchover of this lease epoch.
    pub pause_for: Option<Epoch>,
}

/// `holds_valid_lease`: this member's own judgement of its lease, now.
pub fn pooler_plan(
    state: &ClusterState,
    me: &str,
    holds_valid_lease: bool,
    now_unix_ms: u64,
) -> PoolerPlan {
    let write = holder_running_primary(state)
        .filter(|m| m.name != me || holds_valid_lease)
        .map(|m| m.name.clone());
    let mut read: Vec<String> = state
        .members
        .values()
        .filter(|m| {
            m.role == MemberRole::Replica
                && m.pg_state == PgState::Running
                && m.streaming
                && m.pg_address.is_some()
        })
        .map(|m| m.name.clone())
        .collect();
    if read.is_empty() {
        read.extend(write.clone());
    }
    let pause_for = state
        .lease
        .holder
        .as_deref()
        .and_then(|h| due_switchover(state, h, now_unix_ms))
        .map(|_| state.lease.epoch);
    PoolerPlan {
        write,
        read,
        pause_for,
    }
}

/// Every live member with a pooler has paused it for this epoch's switchover.
pub fn poolers_paused(state: &ClusterState, fresh: &dyn Fn(&Member) -> bool) -> bool {
    state
        .members
        .values()
        .filter(|m| m.pooler && fresh(m))
        .all(|m| m.pooler_paused_epoch == Some(state.lease.epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cluster, streaming};
    use raftgres_state::Switchover;

    #[test]
    fn the_write_database_follows_a_running_primary_with_a_valid_lease() {
        let s = streaming(cluster(Some("a")));
        let plan = pooler_plan(&s, "b", false, 0);
        assert_eq!(plan.write.as_deref(), Some("a"));
        assert_eq!(plan.read, vec!["b".to_owned(), "c".to_owned()]);
        assert_eq!(plan.pause_for, None);
        // The holder itself only while it can confirm its lease.
        assert_eq!(pooler_plan(&s, "a", true, 0).write.as_deref(), Some("a"));
        assert_eq!(pooler_plan(&s, "a", false, 0).write, None);
        // Not before the new holder runs as primary (promotion done).
        let mut promoting = s.clone();
        promoting.members.get_mut("a").unwrap().role = MemberRole::Replica;
        assert_eq!(pooler_plan(&promoting, "b", false, 0).write, None);
        let mut stopped = s.clone();
        stopped.members.get_mut("a").unwrap().pg_state = PgState::Stopped;
        assert_eq!(pooler_plan(&stopped, "b", false, 0).write, None);
        assert_eq!(pooler_plan(&cluster(None), "b", false, 0).write, None);
        // No streaming replica: reads go to the primary.
        let lonely = cluster(Some("a"));
        assert_eq!(
            pooler_plan(&lonely, "b", false, 0).read,
            vec!["a".to_owned()]
        );
    }

    #[test]
    fn a_due_switchover_pauses_and_waits_for_every_live_pooler() {
        let mut s = streaming(cluster(Some("a")));
        s.switchover = Some(Switchover {
            from: Some("a".into()),
            to: Some("b".into()),
            at_unix_ms: Some(100),
        });
        assert_eq!(pooler_plan(&s, "c", false, 99).pause_for, None);
        assert_eq!(
            pooler_plan(&s, "c", false, 100).pause_for,
            Some(s.lease.epoch)
        );
        for m in s.members.values_mut() {
            m.pooler = true;
        }
        assert!(!poolers_paused(&s, &|_| true));
        let epoch = s.lease.epoch;
        for name in ["a", "b"] {
            s.members.get_mut(name).unwrap().pooler_paused_epoch = Some(epoch);
        }
        assert!(!poolers_paused(&s, &|_| true));
        // A member that stopped reporting does not hold the switchover up.
        assert!(poolers_paused(&s, &|m| m.name != "c"));
        // A pause for an earlier epoch does not count.
        s.members.get_mut("c").unwrap().pooler_paused_epoch = Some(Epoch(epoch.0 - 1));
        assert!(!poolers_paused(&s, &|_| true));
        s.members.get_mut("c").unwrap().pooler_paused_epoch = Some(epoch);
        assert!(poolers_paused(&s, &|_| true));
    }
}
