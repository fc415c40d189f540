//! Where a replica streams and clones from, and so which members a server
//! keeps replication slots for. The primary, unless the member's tags name
//! another (`replicatefrom`: cascading replication) or another member offers
//! itself as a clone source (`clonefrom`), and that member can serve now;
//! otherwise the primary, as Patroni falls back.

use crate::candidacy::holder_running_primary;
use crate::timeline::on_current_timeline;
use raftgres_state::{ClusterState, Member, MemberRole, PgState};
use std::collections::BTreeSet;

/// Whether `feeder` can send WAL to `member` now: the running primary that
/// holds the lease, or a running, streaming replica on the cluster's
/// timeline that reported lately and whose own chain of `replicatefrom`
/// reaches the primary without passing through `member` (a cycle streams
/// nothing new, while every walreceiver in it looks connected).
fn can_feed(
    state: &ClusterState,
    feeder: &Member,
    member: &str,
    fresh: &dyn Fn(&Member) -> bool,
) -> bool {
    if holder_running_primary(state).is_some_and(|p| p.name == feeder.name) {
        return true;
    }
    feeder.name != member
        && !feeder.witness
        && feeder.role == MemberRole::Replica
        && feeder.pg_state == PgState::Running
        && feeder.streaming
        && fresh(feeder)
        && on_current_timeline(state, &feeder.name, feeder.timeline, false).is_ok()
        && chain_reaches_primary(state, feeder, member)
}

/// Follows `replicatefrom` from `start` to a member that streams from the
/// primary, never through `avoid` and never in a circle.
fn chain_reaches_primary(state: &ClusterState, start: &Member, avoid: &str) -> bool {
    let mut seen = BTreeSet::from([avoid]);
    let mut at = start;
    loop {
        if !seen.insert(at.name.as_str()) {
            return false;
        }
        let next = at.tags.replicatefrom.as_deref();
        match next.and_then(|name| state.members.get(name)) {
            None => return true,
            Some(up) if state.lease.is_held_by(&up.name) => return true,
            Some(up) => at = up,
        }
    }
}

/// The member `member` streams from: its `replicatefrom` while that one can
/// feed it, else the primary; `None` while no primary runs.
pub fn upstream_for(
    state: &ClusterState,
    member: &str,
    fresh: &dyn Fn(&Member) -> bool,
) -> Option<String> {
    let primary = holder_running_primary(state)?;
    let named = state
        .members
        .get(member)
        .and_then(|m| m.tags.replicatefrom.as_deref())
        .and_then(|from| state.members.get(from));
    Some(match named {
        Some(feeder) if can_feed(state, feeder, member, fresh) => feeder.name.clone(),
        _ => primary.name.clone(),
    })
}

/// Where `member` clones its data from: the first replica tagged
/// `clonefrom` (by name) that can feed it, which spares the primary the
/// copy, else the primary; `None` while no primary runs.
pub fn clone_source(
    state: &ClusterState,
    member: &str,
    fresh: &dyn Fn(&Member) -> bool,
) -> Option<String> {
    let primary = holder_running_primary(state)?;
    let offered = state
        .members
        .values()
        .find(|m| m.tags.clonefrom && m.name != primary.name && can_feed(state, m, member, fresh));
    Some(offered.unwrap_or(primary).name.clone())
}

/// The members whose replication slots `me`'s server keeps, so that the
/// WAL each still needs stays until it has it. The holder keeps one for
/// every other member that runs Postgres (a member that is down keeps its
/// place), except one that streams from another member that can feed it;
/// a replica keeps one for each member that names it in `replicatefrom`.
pub fn slot_holders(
    state: &ClusterState,
    me: &str,
    fresh: &dyn Fn(&Member) -> bool,
) -> BTreeSet<String> {
    let holder = state.lease.is_held_by(me);
    state
        .members
        .values()
        .filter(|m| !m.witness && m.name != me)
        .filter(|m| {
            let named = m.tags.replicatefrom.as_deref();
            if !holder {
                return named == Some(me);
            }
            !named
                .filter(|from| *from != me)
                .and_then(|from| state.members.get(from))
                .is_some_and(|feeder| can_feed(state, feeder, &m.name, fresh))
        })
        .map(|m| m.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::cluster;

    /// What makes a feeder unfit, in a table row.
    type Change = fn(&mut Member);

    fn all_fresh(_: &Member) -> bool {
        true
    }

    /// a holds the lease and runs as primary; b and c are streaming replicas.
    fn streaming_cluster() -> ClusterState {
        let mut s = cluster(Some("a"));
        for m in s.members.values_mut() {
            m.streaming = m.role == MemberRole::Replica;
        }
        s
    }

    fn names(set: BTreeSet<String>) -> Vec<String> {
        set.into_iter().collect()
    }

    #[test]
    fn a_replica_streams_from_the_member_it_names_while_that_one_can_feed_it() {
        let mut s = streaming_cluster();
        s.members.get_mut("c").unwrap().tags.replicatefrom = Some("b".into());
        assert_eq!(upstream_for(&s, "c", &all_fresh).as_deref(), Some("b"));
        assert_eq!(upstream_for(&s, "b", &all_fresh).as_deref(), Some("a"));
        assert_eq!(names(slot_holders(&s, "a", &all_fresh)), ["b"]);
        assert_eq!(names(slot_holders(&s, "b", &all_fresh)), ["c"]);
        assert_eq!(
            names(slot_holders(&s, "c", &all_fresh)),
            Vec::<String>::new()
        );

        #[rustfmt::skip]
        let falls_back: [(&str, Change); 5] = [
            ("b stopped", |b| b.pg_state = PgState::Stopped),
            ("b not streaming", |b| b.streaming = false),
            ("b on an old timeline", |b| b.timeline = Some(0)),
            ("b a witness", |b| b.witness = true),
            ("b streams from c", |b| b.tags.replicatefrom = Some("c".into())),
        ];
        for (what, change) in falls_back {
            let mut s = s.clone();
            change(s.members.get_mut("b").unwrap());
            assert_eq!(
                upstream_for(&s, "c", &all_fresh).as_deref(),
                Some("a"),
                "{what}"
            );
            assert!(slot_holders(&s, "a", &all_fresh).contains("c"), "{what}");
        }
        let silent = |m: &Member| m.name != "b";
        assert_eq!(
            upstream_for(&s, "c", &silent).as_deref(),
            Some("a"),
            "b silent"
        );
        assert_eq!(upstream_for(&s, "c", &all_fresh).as_deref(), Some("b"));
    }

    #[test]
    fn a_chain_streams_and_a_circle_falls_back_to_the_primary() {
        let mut s = streaming_cluster();
        let mut d = s.members["c"].clone();
        d.name = "d".into();
        s.members.insert("d".into(), d);
        s.members.get_mut("c").unwrap().tags.replicatefrom = Some("b".into());
        s.members.get_mut("d").unwrap().tags.replicatefrom = Some("c".into());
        assert_eq!(upstream_for(&s, "d", &all_fresh).as_deref(), Some("c"));

        s.members.get_mut("b").unwrap().tags.replicatefrom = Some("d".into());
        for m in ["b", "c", "d"] {
            assert_eq!(upstream_for(&s, m, &all_fresh).as_deref(), Some("a"), "{m}");
        }
    }

    #[test]
    fn the_primary_streams_to_a_member_that_names_it() {
        let mut s = streaming_cluster();
        s.members.get_mut("b").unwrap().tags.replicatefrom = Some("a".into());
        assert_eq!(upstream_for(&s, "b", &all_fresh).as_deref(), Some("a"));
        assert_eq!(names(slot_holders(&s, "a", &all_fresh)), ["b", "c"]);
    }

    #[test]
    fn a_clone_comes_from_a_replica_that_offers_itself_or_the_primary() {
        let mut s = streaming_cluster();
        assert_eq!(clone_source(&s, "c", &all_fresh).as_deref(), Some("a"));
        s.members.get_mut("b").unwrap().tags.clonefrom = true;
        assert_eq!(clone_source(&s, "c", &all_fresh).as_deref(), Some("b"));
        assert_eq!(
            clone_source(&s, "b", &all_fresh).as_deref(),
            Some("a"),
            "not from itself"
        );
        s.members.get_mut("b").unwrap().streaming = false;
        assert_eq!(clone_source(&s, "c", &all_fresh).as_deref(), Some("a"));
        assert_eq!(clone_source(&cluster(None), "c", &all_fresh), None);
    }
}
