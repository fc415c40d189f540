//! The holder's synchronous replication, one row per situation.

use super::*;
use crate::testing::cluster;
use raftgres_state::ClusterState;

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

fn streaming(name: &str, synchronous: bool) -> StandbyView {
    StandbyView {
        name: name.into(),
        streaming: true,
        synchronous,
    }
}

/// a holds the lease; b and c are replicas. `set` is committed, with
/// `declared` as the holder's synchronous flag.
fn state(mode: bool, strict: bool, count: u32, set: &[&str], declared: bool) -> ClusterState {
    let mut s = cluster(Some("a"));
    let values = &mut s.config.as_mut().expect("config").values;
    values.synchronous_mode = mode;
    values.synchronous_mode_strict = strict;
    values.synchronous_node_count = count;
    s.sync_set = names(set);
    s.synchronous = declared;
    s
}

fn commit(set: &[&str], synchronous: bool) -> SyncStep {
    SyncStep::Commit {
        members: names(set),
        synchronous,
    }
}

fn all(set: &[&str]) -> WaitFor {
    WaitFor::All(names(set))
}

#[test]
fn sync_table() {
    let on = |set: &[&str]| state(true, false, 1, set, true);
    let strict = |set: &[&str]| state(true, true, 1, set, true);
    let mut nosync_b = on(&[]);
    nosync_b.members.get_mut("b").unwrap().tags.nosync = true;
    let mut nofailover_b = on(&[]);
    nofailover_b.members.get_mut("b").unwrap().tags.nofailover = true;
    let mut priority_c = on(&[]);
    priority_c
        .members
        .get_mut("c")
        .unwrap()
        .tags
        .failover_priority = 5;
    let b_c = [streaming("b", false), streaming("c", false)];
    let b_sync = [streaming("b", true), streaming("c", false)];
    let c_only = [streaming("c", false)];
    let both_sync = [streaming("b", true), streaming("c", true)];
    let b_stalled = [
        StandbyView {
            name: "b".into(),
            streaming: false,
            synchronous: false,
        },
        streaming("c", false),
    ];
    type Row<'a> = (
        &'a str,
        ClusterState,
        &'a [StandbyView],
        Option<WaitFor>,
        SyncStep,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            "off, nothing declared: Postgres waits for nobody",
            state(false, false, 1, &[], false),
            &b_c,
            None,
            SyncStep::Configure(WaitFor::Nobody),
        ),
        (
            "off and configured so: nothing to do",
            state(false, false, 1, &[], false),
            &b_c,
            Some(WaitFor::Nobody),
            SyncStep::None,
        ),
        (
            "turned off: the Raft state frees failover before Postgres stops waiting",
            state(false, false, 1, &["b"], true),
            &b_sync,
            Some(all(&["b"])),
            commit(&[], false),
        ),
        (
            "turned on: declared in Raft first, with no standby yet",
            state(true, false, 1, &[], false),
            &b_c,
            Some(WaitFor::Nobody),
            commit(&[], true),
        ),
        (
            "declared: Postgres waits for the first candidate, by name",
            on(&[]),
            &b_c,
            Some(WaitFor::Nobody),
            SyncStep::Configure(all(&["b"])),
        ),
        (
            "the candidate is not synchronous yet: the set stays narrow",
            on(&[]),
            &b_c,
            Some(all(&["b"])),
            SyncStep::None,
        ),
        (
            "Postgres reports it synchronous: now the set widens",
            on(&[]),
            &b_sync,
            Some(all(&["b"])),
            commit(&["b"], true),
        ),
        (
            "in the set and configured: steady",
            on(&["b"]),
            &b_sync,
            Some(all(&["b"])),
            SyncStep::None,
        ),
        (
            "after an agent restart Postgres is configured again before anything widens",
            on(&["b"]),
            &b_sync,
            None,
            SyncStep::Configure(all(&["b"])),
        ),
        (
            "a synchronous standby stops streaming: the set narrows in Raft first",
            on(&["b"]),
            &b_stalled,
            Some(all(&["b"])),
            commit(&[], true),
        ),
        (
            "then Postgres waits for the replacement",
            on(&[]),
            &b_stalled,
            Some(all(&["b"])),
            SyncStep::Configure(all(&["c"])),
        ),
        (
            "non-strict with no candidate: asynchronous, after the narrowing",
            on(&[]),
            &[],
            Some(all(&["b"])),
            SyncStep::Configure(WaitFor::Nobody),
        ),
        (
            "strict with no candidate: commits wait for any standby",
            strict(&[]),
            &[],
            Some(all(&["b"])),
            SyncStep::Configure(WaitFor::AnyOne),
        ),
        (
            "strict: a standby that returns is taken by name",
            strict(&[]),
            &c_only,
            Some(WaitFor::AnyOne),
            SyncStep::Configure(all(&["c"])),
        ),
        (
            "nosync is never chosen",
            nosync_b,
            &b_c,
            Some(WaitFor::Nobody),
            SyncStep::Configure(all(&["c"])),
        ),
        (
            "a member that may never lead is never chosen",
            nofailover_b,
            &b_c,
            Some(WaitFor::Nobody),
            SyncStep::Configure(all(&["c"])),
        ),
        (
            "a higher failover_priority is chosen first",
            priority_c,
            &b_c,
            Some(WaitFor::Nobody),
            SyncStep::Configure(all(&["c"])),
        ),
        (
            "synchronous_node_count 2: the second is added beside the first",
            state(true, false, 2, &["b"], true),
            &b_sync,
            Some(all(&["b"])),
            SyncStep::Configure(all(&["b", "c"])),
        ),
        (
            "synchronous_node_count lowered: the set narrows to it",
            state(true, false, 1, &["b", "c"], true),
            &both_sync,
            Some(all(&["b", "c"])),
            commit(&["b"], true),
        ),
    ];
    for (name, s, standbys, configured, want) in rows {
        assert_eq!(
            plan_sync(&s, "a", standbys, configured.as_ref()),
            want,
            "{name}"
        );
    }
}

/// Walks the plan to a fixed point from every configuration, checking
/// after each step that the committed set only names members Postgres
/// waits for: the invariant that makes them safe to promote.
#[test]
fn every_committed_member_is_one_postgres_waits_for() {
    for strict in [false, true] {
        for count in [1, 2] {
            for standbys in [
                vec![streaming("b", true), streaming("c", true)],
                vec![streaming("c", true)],
                vec![],
            ] {
                let mut s = state(true, strict, count, &[], false);
                let mut configured: Option<WaitFor> = None;
                for _ in 0..20 {
                    match plan_sync(&s, "a", &standbys, configured.as_ref()) {
                        SyncStep::None => break,
                        SyncStep::Commit {
                            members,
                            synchronous,
                        } => {
                            s.sync_set = members;
                            s.synchronous = synchronous;
                        }
                        SyncStep::Configure(w) => configured = Some(w),
                    }
                    let waited: BTreeSet<String> = match &configured {
                        Some(WaitFor::All(names)) => names.clone(),
                        _ => BTreeSet::new(),
                    };
                    assert!(
                        s.sync_set.is_subset(&waited)
                            || configured.is_none() && s.sync_set.is_empty(),
                        "set {:?} not all waited for ({configured:?})",
                        s.sync_set
                    );
                }
                assert_eq!(
                    plan_sync(&s, "a", &standbys, configured.as_ref()),
                    SyncStep::None,
                    "settles"
                );
                let wanted = standbys.len().min(count as usize);
                assert_eq!(s.sync_set.len(), wanted, "{strict} {count} {standbys:?}");
            }
        }
    }
}
