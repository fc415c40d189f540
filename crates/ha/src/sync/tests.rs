//! The holder's synchronous replication, one row per situation.

use super::*;
use crate::testing::cluster;
use raftgres_state::{ClusterState, Lsn, SyncMode};

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

fn streaming(name: &str, synchronous: bool) -> StandbyView {
    StandbyView {
        name: name.into(),
        streaming: true,
        synchronous,
        flushed: None,
    }
}

/// a holds the lease; b and c are replicas. `set` is committed, with
/// `declared` as the holder's synchronous flag.
fn state(mode: bool, strict: bool, count: u32, set: &[&str], declared: bool) -> ClusterState {
    let mut s = cluster(Some("a"));
    let values = &mut s.config.as_mut().expect("config").values;
    values.synchronous_mode = if mode { SyncMode::On } else { SyncMode::Off };
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
        quorum: None,
    }
}

fn configured_as(wait: WaitFor) -> Configured {
    Configured { wait, at: None }
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
            flushed: None,
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
    #[rustfmt::skip]
    let rows: Vec<Row<'_>> = vec![
        ("off, nothing declared: Postgres waits for nobody", state(false, false, 1, &[], false), &b_c, None, SyncStep::Configure(WaitFor::Nobody)),
        ("off and configured so: nothing to do", state(false, false, 1, &[], false), &b_c, Some(WaitFor::Nobody), SyncStep::None),
        ("turned off: the Raft state frees failover before Postgres stops waiting", state(false, false, 1, &["b"], true), &b_sync, Some(all(&["b"])), commit(&[], false)),
        ("turned on: declared in Raft first, with no standby yet", state(true, false, 1, &[], false), &b_c, Some(WaitFor::Nobody), commit(&[], true)),
        ("declared: Postgres waits for the first candidate, by name", on(&[]), &b_c, Some(WaitFor::Nobody), SyncStep::Configure(all(&["b"]))),
        ("the candidate is not synchronous yet: the set stays narrow", on(&[]), &b_c, Some(all(&["b"])), SyncStep::None),
        ("Postgres reports it synchronous: now the set widens", on(&[]), &b_sync, Some(all(&["b"])), commit(&["b"], true)),
        ("in the set and configured: steady", on(&["b"]), &b_sync, Some(all(&["b"])), SyncStep::None),
        ("after an agent restart Postgres is configured again before anything widens", on(&["b"]), &b_sync, None, SyncStep::Configure(all(&["b"]))),
        ("a synchronous standby stops streaming: the set narrows in Raft first", on(&["b"]), &b_stalled, Some(all(&["b"])), commit(&[], true)),
        ("then Postgres waits for the replacement", on(&[]), &b_stalled, Some(all(&["b"])), SyncStep::Configure(all(&["c"]))),
        ("non-strict with no candidate: asynchronous, after the narrowing", on(&[]), &[], Some(all(&["b"])), SyncStep::Configure(WaitFor::Nobody)),
        ("strict with no candidate: commits wait for any standby", strict(&[]), &[], Some(all(&["b"])), SyncStep::Configure(WaitFor::AnyOne)),
        ("strict: a standby that returns is taken by name", strict(&[]), &c_only, Some(WaitFor::AnyOne), SyncStep::Configure(all(&["c"]))),
        ("nosync is never chosen", nosync_b, &b_c, Some(WaitFor::Nobody), SyncStep::Configure(all(&["c"]))),
        ("a member that may never lead is never chosen", nofailover_b, &b_c, Some(WaitFor::Nobody), SyncStep::Configure(all(&["c"]))),
        ("a higher failover_priority is chosen first", priority_c, &b_c, Some(WaitFor::Nobody), SyncStep::Configure(all(&["c"]))),
        ("synchronous_node_count 2: the second is added beside the first", state(true, false, 2, &["b"], true), &b_sync, Some(all(&["b"])), SyncStep::Configure(all(&["b", "c"]))),
        ("synchronous_node_count lowered: the set narrows to it", state(true, false, 1, &["b", "c"], true), &both_sync, Some(all(&["b", "c"])), commit(&["b"], true)),
    ];
    for (name, s, standbys, configured, want) in rows {
        assert_eq!(
            plan_sync(&s, "a", standbys, configured.map(configured_as).as_ref()),
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
                    let known = configured.clone().map(configured_as);
                    match plan_sync(&s, "a", &standbys, known.as_ref()) {
                        SyncStep::None => break,
                        SyncStep::Commit {
                            members,
                            synchronous,
                            ..
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
                    plan_sync(&s, "a", &standbys, configured.map(configured_as).as_ref()),
                    SyncStep::None,
                    "settles"
                );
                let wanted = standbys.len().min(count as usize);
                assert_eq!(s.sync_set.len(), wanted, "{strict} {count} {standbys:?}");
            }
        }
    }
}

/// a holds the lease in quorum mode; the committed claim is `set` with
/// quorum `k` (`None`: nothing declared yet).
fn quorum(strict: bool, count: u32, set: &[&str], k: Option<u32>) -> ClusterState {
    let mut s = state(true, strict, count, set, k.is_some());
    s.config.as_mut().expect("config").values.synchronous_mode = SyncMode::Quorum;
    s.sync_quorum = k;
    s
}

fn flushed(name: &str, lsn: u64) -> StandbyView {
    StandbyView {
        flushed: Some(Lsn(lsn)),
        ..streaming(name, false)
    }
}

fn claim(set: &[&str], k: u32) -> SyncStep {
    SyncStep::Commit {
        members: names(set),
        synchronous: true,
        quorum: Some(k),
    }
}

fn any(n: u32, set: &[&str]) -> WaitFor {
    WaitFor::Any {
        n,
        names: names(set),
    }
}

fn at(wait: WaitFor, lsn: u64) -> Option<Configured> {
    Some(Configured {
        wait,
        at: Some(Lsn(lsn)),
    })
}

#[test]
fn quorum_table() {
    let b_c = [flushed("b", 10), flushed("c", 10)];
    let b_c_behind = [flushed("b", 10), flushed("c", 5)];
    let b_only = [flushed("b", 10)];
    type Row<'a> = (
        &'a str,
        ClusterState,
        &'a [StandbyView],
        Option<Configured>,
        SyncStep,
    );
    #[rustfmt::skip]
    let rows: Vec<Row<'_>> = vec![
        ("nothing declared: the claim starts trivially true (k = 0) with every standby", quorum(false, 1, &[], None), &b_c, None, claim(&["b", "c"], 0)),
        ("then Postgres waits for any one of them", quorum(false, 1, &["b", "c"], Some(0)), &b_c, None, SyncStep::Configure(any(1, &["b", "c"]))),
        ("then k rises once one of them flushed past where the primary was", quorum(false, 1, &["b", "c"], Some(0)), &b_c, at(any(1, &["b", "c"]), 10), claim(&["b", "c"], 1)),
        ("but not before", quorum(false, 1, &["b", "c"], Some(0)), &b_c, at(any(1, &["b", "c"]), 11), SyncStep::None),
        ("count 2: k = 2 needs both to have caught up", quorum(false, 2, &["b", "c"], Some(1)), &b_c_behind, at(any(2, &["b", "c"]), 10), SyncStep::None),
        ("count 2, both caught up", quorum(false, 2, &["b", "c"], Some(1)), &b_c, at(any(2, &["b", "c"]), 10), claim(&["b", "c"], 2)),
        ("a standby is lost: Postgres stops counting it first, the claim keeps it", quorum(false, 1, &["b", "c"], Some(1)), &b_only, at(any(1, &["b", "c"]), 10), SyncStep::Configure(any(1, &["b"]))),
        ("and drops it once the other has what the primary had then", quorum(false, 1, &["b", "c"], Some(1)), &b_only, at(any(1, &["b"]), 10), claim(&["b"], 1)),
        ("count 2 with one standby left: k is lowered before Postgres waits for fewer", quorum(false, 2, &["b", "c"], Some(2)), &b_only, at(any(2, &["b", "c"]), 10), claim(&["b", "c"], 1)),
        ("strict with one standby left: Postgres still waits for two", quorum(true, 2, &["b", "c"], Some(1)), &b_only, at(any(2, &["b", "c"]), 10), SyncStep::Configure(any(2, &["b"]))),
        ("a standby joins: the claim takes it in first, as it was", quorum(false, 1, &["b"], Some(1)), &b_c, at(any(1, &["b"]), 10), claim(&["b", "c"], 1)),
        ("no standby, not strict: asynchronous, declared in Raft first", quorum(false, 1, &["b"], Some(1)), &[], at(any(1, &["b"]), 10), SyncStep::Commit { members: BTreeSet::new(), synchronous: false, quorum: None }),
        ("no standby, strict: k = 0, then any standby that comes", quorum(true, 1, &["b"], Some(1)), &[], at(any(1, &["b"]), 10), claim(&["b"], 0)),
        ("from synchronous mode on: all of the set is k = its size", state(true, false, 1, &["b"], true) .tap(|s| s.config.as_mut().unwrap().values.synchronous_mode = SyncMode::Quorum), &b_c, at(all(&["b"]), 10), claim(&["b", "c"], 1)),
        ("to synchronous mode on: a quorum of fewer than all is no synchronous set", quorum(false, 1, &["b", "c"], Some(1)) .tap(|s| s.config.as_mut().unwrap().values.synchronous_mode = SyncMode::On), &b_c, at(any(1, &["b", "c"]), 10), commit(&[], true)),
    ];
    for (name, s, standbys, configured, want) in rows {
        assert_eq!(
            plan_sync(&s, "a", standbys, configured.as_ref()),
            want,
            "{name}"
        );
    }
}

trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl Tap for ClusterState {}

/// A primary and three standbys in a pseudo-random walk: commits are
/// acknowledged as Postgres's `synchronous_standby_names` says, standbys
/// flush, stall and come back, `synchronous_node_count` and strictness
/// change, and the holder takes each step the plan gives. After every event
/// the committed claim must be true: each acknowledged commit is on at
/// least k members of the set.
#[test]
fn the_quorum_claim_holds_through_every_walk() {
    let standby_names = ["b", "c", "d"];
    for seed in 1..=200u64 {
        let mut rng = seed;
        let mut next = move |n: u64| {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (rng >> 33) % n
        };
        let mut s = quorum(false, 1, &[], None);
        let mut primary = 0u64;
        let mut flush = [0u64; 3];
        let mut live = [true; 3];
        let mut waiting: Vec<u64> = Vec::new();
        let mut acked: Vec<u64> = Vec::new();
        let mut configured: Option<Configured> = None;
        for step in 0..300 {
            match next(7) {
                0 | 1 => {
                    primary += 1;
                    waiting.push(primary);
                }
                2 | 3 => {
                    let i = usize::try_from(next(3)).unwrap();
                    if live[i] {
                        flush[i] = (flush[i] + 1 + next(3)).min(primary);
                    }
                }
                4 => {
                    let i = usize::try_from(next(3)).unwrap();
                    live[i] = !live[i];
                }
                5 => {
                    let values = &mut s.config.as_mut().unwrap().values;
                    values.synchronous_node_count = 1 + u32::try_from(next(3)).unwrap();
                    values.synchronous_mode_strict = next(2) == 0;
                }
                _ => {
                    let standbys: Vec<StandbyView> = standby_names
                        .iter()
                        .zip(flush.iter().zip(live.iter()))
                        .filter(|(_, (_, up))| **up)
                        .map(|(name, (f, _))| flushed(name, *f))
                        .collect();
                    match plan_sync(&s, "a", &standbys, configured.as_ref()) {
                        SyncStep::None => {}
                        SyncStep::Commit {
                            members,
                            synchronous,
                            quorum,
                        } => {
                            s.sync_set = members;
                            s.synchronous = synchronous;
                            s.sync_quorum = quorum;
                        }
                        SyncStep::Configure(wait) => {
                            configured = Some(Configured {
                                wait,
                                at: Some(Lsn(primary)),
                            });
                        }
                    }
                }
            }
            // Postgres acknowledges what its setting lets it.
            let has = |name: &str, lsn: u64| {
                standby_names
                    .iter()
                    .position(|n| *n == name)
                    .is_some_and(|i| flush[i] >= lsn)
            };
            waiting.retain(|lsn| {
                let done = match configured.as_ref().map(|c| &c.wait) {
                    None | Some(WaitFor::Nobody) => true,
                    Some(WaitFor::AnyOne) => standby_names.iter().any(|n| has(n, *lsn)),
                    Some(WaitFor::All(set)) => set.iter().all(|n| has(n, *lsn)),
                    Some(WaitFor::Any { n, names }) => {
                        names.iter().filter(|m| has(m, *lsn)).count()
                            >= usize::try_from(*n).unwrap()
                    }
                };
                if done {
                    acked.push(*lsn);
                }
                !done
            });
            if s.synchronous {
                let k = usize::try_from(claimed_quorum(&s)).unwrap();
                for lsn in &acked {
                    let holding = s.sync_set.iter().filter(|m| has(m, *lsn)).count();
                    assert!(
                        holding >= k,
                        "seed {seed} step {step}: commit {lsn} is on {holding} of {:?}, \
                         claim k = {k} ({configured:?})",
                        s.sync_set
                    );
                }
            }
        }
    }
}

/// A crashed quorum-mode primary hands over only when enough quorum
/// standbys live to show a candidate has every commit.
#[test]
fn a_crashed_quorum_primary_hands_over_only_to_a_provable_quorum() {
    for (k, alive, hands_over) in [
        (1, &["b", "c"][..], true),
        (1, &["b"][..], false),
        (2, &["b"][..], true),
        (0, &["b", "c"][..], false),
    ] {
        let s = quorum(false, 1, &["b", "c"], Some(k));
        let live = |m: &str| alive.contains(&m);
        assert_eq!(
            hands_over_after_crash(&s, "a", &live),
            hands_over,
            "k={k} alive={alive:?}"
        );
    }
}
