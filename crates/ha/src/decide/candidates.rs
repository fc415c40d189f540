//! Who may take an expired lease, and when a holder must give it up.

use super::*;
use crate::local::{DataInfo, PgView};
use crate::peers::PeerObserver;
use crate::testing::{at, cluster, data, holder_lease, observation};
use raftgres_state::{Lsn, ReportedPosition};

fn replica(lsn: u64) -> PgView {
    PgView::Running {
        data: data("sys", lsn, false),
        in_recovery: true,
        upstream: Some("a".into()),
        streaming: true,
    }
}

/// Decides for `me` with the lease (held by `a`, last LSN 5000) seen at 0 and expired at 3000.
fn expired_decision(
    me: &str,
    state: &ClusterState,
    pg: &PgView,
    peers: &PeerObserver,
) -> LeaseAction {
    let mut observer = LeaseObserver::default();
    observer.observe(&state.lease, at(0));
    decide(&Observation {
        now: at(3000),
        ..observation(me, state, pg, &observer, peers)
    })
}

fn all_fresh(state: &ClusterState) -> PeerObserver {
    let mut p = PeerObserver::default();
    p.observe(state, at(2500));
    p
}

#[test]
fn candidate_table() {
    let acquire = |s: &ClusterState| LeaseAction::Acquire {
        expected: s.lease.version(),
    };
    let wait = LeaseAction::Wait { until: None };
    let base = cluster(Some("a"));
    let stale_peers = PeerObserver::default();
    // b (4800) and c (4500) remain; a (5000) is the dead holder.
    let mut a_gone = base.clone();
    a_gone.members.get_mut("a").unwrap().pg_state = PgState::Stopped;
    let mut nofailover_b = a_gone.clone();
    nofailover_b.members.get_mut("b").unwrap().tags.nofailover = true;
    let mut c_preferred = a_gone.clone();
    c_preferred.members.get_mut("c").unwrap().receive_lsn = Some(Lsn(4800));
    c_preferred.members.get_mut("c").unwrap().replay_lsn = Some(Lsn(4800));
    c_preferred
        .members
        .get_mut("c")
        .unwrap()
        .tags
        .failover_priority = 5;
    let mut tie = a_gone.clone();
    tie.members.get_mut("c").unwrap().receive_lsn = Some(Lsn(4800));
    tie.members.get_mut("c").unwrap().replay_lsn = Some(Lsn(4800));
    // Synchronous mode with c the only synchronous standby: b has the most
    // WAL, yet may lack commits a acknowledged once c had them.
    let mut sync_c = a_gone.clone();
    sync_c.synchronous = true;
    sync_c.sync_set = ["c".to_owned()].into();
    let mut sync_none = a_gone.clone();
    sync_none.synchronous = true;
    // Quorum mode: b and c are quorum standbys, each commit on at least one
    // of them, so a candidate needs both to have reported.
    let mut quorum_b_c = a_gone.clone();
    quorum_b_c.synchronous = true;
    quorum_b_c.sync_set = ["b".to_owned(), "c".to_owned()].into();
    quorum_b_c.sync_quorum = Some(1);
    let ended = quorum_b_c.lease.version();
    let position = |lsn| ReportedPosition {
        lease: ended,
        lsn: Lsn(lsn),
    };
    let mut quorum_b_reported = quorum_b_c.clone();
    quorum_b_reported
        .positions
        .insert("b".into(), position(4800));
    let mut quorum_both_reported = quorum_b_reported.clone();
    quorum_both_reported
        .positions
        .insert("c".into(), position(4500));
    let report = |s: &ClusterState| LeaseAction::ReportPosition {
        expected: s.lease.version(),
    };

    #[rustfmt::skip]
    let rows: Vec<(&str, &str, &ClusterState, PgView, PeerObserver, LeaseAction)> = vec![
        ("the most advanced fresh replica acquires", "b", &a_gone, replica(4800), all_fresh(&a_gone), acquire(&a_gone)),
        ("a less advanced replica defers to a fresh better one", "c", &a_gone, replica(4500), all_fresh(&a_gone), wait.clone()),
        ("a better peer that is not fresh does not count", "c", &a_gone, replica(4500), stale_peers.clone(), acquire(&a_gone)),
        ("lag beyond maximum_lag_on_failover: never", "c", &a_gone, replica(3999), stale_peers.clone(), wait.clone()),
        ("lag exactly at the limit: may", "c", &a_gone, replica(4000), stale_peers.clone(), acquire(&a_gone)),
        ("nofailover peer does not count as better", "c", &nofailover_b, replica(4500), all_fresh(&nofailover_b), acquire(&nofailover_b)),
        ("equal WAL: higher priority wins", "b", &c_preferred, replica(4800), all_fresh(&c_preferred), wait.clone()),
        ("equal WAL and priority: lower name wins (b over c)", "c", &tie, replica(4800), all_fresh(&tie), wait.clone()),
        ("equal WAL and priority: b goes", "b", &tie, replica(4800), all_fresh(&tie), acquire(&tie)),
        ("foreign data: never", "b", &a_gone, PgView::Stopped { data: data("other", 9999, false) }, stale_peers.clone(), wait.clone()),
        ("no data: never", "b", &a_gone, PgView::Uninitialized, stale_peers.clone(), wait.clone()),
        ("postgres down: never", "b", &a_gone, PgView::Down { data: data("sys", 4800, false), since: at(0), alive: false }, stale_peers.clone(), wait.clone()),
        ("stopped replica data within lag: may", "b", &a_gone, PgView::Stopped { data: data("sys", 4800, false) }, stale_peers.clone(), acquire(&a_gone)),
        ("busy: never", "b", &a_gone, PgView::Busy { action: "clone" }, stale_peers.clone(), wait.clone()),
        ("synchronous mode: outside the set never, even with the most WAL", "b", &sync_c, replica(4800), all_fresh(&sync_c), wait.clone()),
        ("synchronous mode: the synchronous standby does not defer to a better peer outside the set", "c", &sync_c, replica(4500), all_fresh(&sync_c), acquire(&sync_c)),
        ("quorum mode: a quorum standby reports its position first", "b", &quorum_b_c, replica(4800), all_fresh(&quorum_b_c), report(&quorum_b_c)),
        ("quorum mode: once reported, it waits for the others' reports", "b", &quorum_b_reported, replica(4800), all_fresh(&quorum_b_reported), wait.clone()),
        ("quorum mode: the other reports too", "c", &quorum_b_reported, replica(4500), all_fresh(&quorum_b_reported), report(&quorum_b_reported)),
        ("quorum mode: with every report, the furthest takes over", "b", &quorum_both_reported, replica(4800), all_fresh(&quorum_both_reported), acquire(&quorum_both_reported)),
        ("quorum mode: and the one behind does not", "c", &quorum_both_reported, replica(4500), stale_peers.clone(), wait.clone()),
        ("quorum mode: a stopped standby cannot measure, and does not report", "b", &quorum_b_c, PgView::Stopped { data: data("sys", 4800, false) }, stale_peers.clone(), wait.clone()),
        ("synchronous mode with no synchronous standby: nobody but the last holder", "b", &sync_none, replica(4800), all_fresh(&sync_none), wait.clone()),
    ];
    for (name, me, state, pg, peers, want) in rows {
        assert_eq!(expired_decision(me, state, &pg, &peers), want, "{name}");
    }
}

#[test]
fn a_new_cluster_is_bootstrapped_by_whoever_acquires() {
    let mut s = cluster(None);
    s.identity = None;
    s.lease.epoch = Epoch(0);
    for pg in [
        PgView::Uninitialized,
        PgView::Stopped {
            data: data("mine", 10, true),
        },
    ] {
        let action = expired_decision("b", &s, &pg, &PeerObserver::default());
        assert_eq!(
            action,
            LeaseAction::Acquire {
                expected: s.lease.version()
            },
            "{pg:?}"
        );
    }
}

#[test]
fn holder_release_table() {
    let s = cluster(Some("a"));
    let mut fresh = s.clone();
    fresh.identity = None;
    let h = holder_lease(1, 0);
    let renew = LeaseAction::Renew { epoch: Epoch(1) };
    let release = LeaseAction::Release {
        expected: s.lease.version(),
    };
    let down = |alive| PgView::Down {
        data: data("sys", 1, true),
        since: at(0),
        alive,
    };
    #[rustfmt::skip]
    let rows: Vec<(&str, &ClusterState, PgView, u64, &LeaseAction)> = vec![
        ("within the restart grace: keep renewing", &s, down(false), 1999, &renew),
        ("grace over: release", &s, down(false), 2000, &release),
        ("grace over but the server still lives: fence first, never release", &s, down(true), 60_000, &renew),
        ("no data in a formed cluster", &s, PgView::Uninitialized, 500, &release),
        ("foreign data", &s, PgView::Stopped { data: data("other", 1, true) }, 500, &release),
        ("busy with an action: keep renewing", &s, PgView::Busy { action: "start" }, 500, &renew),
        ("a bootstrapping holder keeps its lease", &fresh, PgView::Uninitialized, 500, &renew),
    ];
    let (observer, peers) = (LeaseObserver::default(), PeerObserver::default());
    for (name, state, pg, now, want) in rows {
        let action = decide(&Observation {
            now: at(now),
            holding: Some(&h),
            ..observation("a", state, &pg, &observer, &peers)
        });
        assert_eq!(&action, want, "{name}");
    }
}

/// In synchronous mode a crashed primary's lease goes at once to a live
/// synchronous standby: starting again in place would make visible the
/// commits that were still waiting for it. Without one it restarts in place.
#[test]
fn a_crashed_synchronous_primary_hands_over_to_a_live_synchronous_standby() {
    let mut s = cluster(Some("a"));
    s.synchronous = true;
    s.sync_set = ["b".to_owned()].into();
    for m in s.members.values_mut() {
        m.streaming = m.role == MemberRole::Replica;
    }
    let h = holder_lease(1, 0);
    let crashed = PgView::Down {
        data: data("sys", 5000, true),
        since: at(100),
        alive: false,
    };
    let decide_at = |state: &ClusterState, peers: &PeerObserver, pg: &PgView| {
        decide(&Observation {
            now: at(200),
            holding: Some(&h),
            ..observation("a", state, pg, &LeaseObserver::default(), peers)
        })
    };
    let release = LeaseAction::Release {
        expected: s.lease.version(),
    };
    assert_eq!(
        decide_at(&s, &all_fresh(&s), &crashed),
        release,
        "b lives: hand over"
    );
    assert_ne!(
        decide_at(&s, &PeerObserver::default(), &crashed),
        release,
        "b silent: restart in place within the grace"
    );
    let alive = PgView::Down {
        data: data("sys", 5000, true),
        since: at(100),
        alive: true,
    };
    assert_ne!(
        decide_at(&s, &all_fresh(&s), &alive),
        release,
        "a process of the server lives: fence first, never release"
    );
    let mut asynchronous = s.clone();
    asynchronous.synchronous = false;
    asynchronous.sync_set.clear();
    assert_ne!(
        decide_at(&asynchronous, &all_fresh(&asynchronous), &crashed),
        release,
        "asynchronous: restart in place"
    );
}

#[test]
fn paused_clusters_do_not_fail_over_but_the_holder_renews() {
    let mut s = cluster(Some("a"));
    s.config.as_mut().unwrap().values.pause = true;
    let wait = LeaseAction::Wait { until: None };
    assert_eq!(
        expired_decision("b", &s, &replica(5000), &PeerObserver::default()),
        wait.clone()
    );
    s.lease.holder = None;
    assert_eq!(
        expired_decision("b", &s, &replica(5000), &PeerObserver::default()),
        wait.clone(),
        "not even a released lease"
    );
    let mut held = cluster(Some("a"));
    held.config.as_mut().unwrap().values.pause = true;
    let (observer, peers) = (LeaseObserver::default(), PeerObserver::default());
    let renew = decide(&Observation {
        now: at(500),
        holding: Some(&holder_lease(1, 0)),
        ..observation("a", &held, &replica(5000), &observer, &peers)
    });
    assert_eq!(renew, LeaseAction::Renew { epoch: Epoch(1) });
}

fn on(timeline: u32, lsn: u64, was_primary: bool) -> DataInfo {
    DataInfo {
        timeline,
        ..data("sys", lsn, was_primary)
    }
}

fn replica_on(timeline: u32, lsn: u64) -> PgView {
    PgView::Running {
        data: on(timeline, lsn, false),
        in_recovery: true,
        upstream: Some("b".into()),
        streaming: false,
    }
}

/// a was primary on timeline 1 and was fenced; b took the lease over and
/// died. `reported`: b's promoted primary renewed on timeline 2 before it
/// died; otherwise the lease still says timeline 1, with no owner.
fn after_b(reported: bool) -> ClusterState {
    let mut s = cluster(Some("b"));
    s.lease.timeline = Some(if reported { 2 } else { 1 });
    s.lease.timeline_owner = reported.then(|| "b".into());
    for (name, timeline) in [("a", 1), ("b", 2)] {
        let m = s.members.get_mut(name).unwrap();
        m.pg_state = PgState::Stopped;
        m.role = MemberRole::Unknown;
        m.timeline = Some(timeline);
    }
    s.members.get_mut("c").unwrap().timeline = Some(2);
    s
}

fn released(mut s: ClusterState) -> ClusterState {
    s.lease.holder = None;
    s
}

#[test]
fn candidacy_follows_the_timeline() {
    let acquire = |s: &ClusterState| LeaseAction::Acquire {
        expected: s.lease.version(),
    };
    let wait = LeaseAction::Wait { until: None };
    // a restarted as a replica of nobody on its old timeline, with more WAL
    // than anyone: fresh, running, but it must not hold c back.
    let mut a_fresh_off_timeline = after_b(true);
    {
        let a = a_fresh_off_timeline.members.get_mut("a").unwrap();
        a.pg_state = PgState::Running;
        a.role = MemberRole::Replica;
        a.replay_lsn = Some(Lsn(9000));
    }
    // The operator named a, which cannot lead.
    let mut failover_to_a = a_fresh_off_timeline.clone();
    failover_to_a.switchover = Some(raftgres_state::Switchover {
        from: None,
        to: Some("a".into()),
        at_unix_ms: None,
    });
    // a released the lease itself (its Postgres would not restart), and
    // nobody has held it since.
    let mut a_released = cluster(None);
    a_released.lease.timeline_owner = Some("a".into());
    a_released.members.get_mut("a").unwrap().pg_state = PgState::Stopped;

    #[rustfmt::skip]
    let rows: Vec<(&str, &str, ClusterState, PgView, LeaseAction)> = vec![
        ("fenced ex-primary on the old timeline, more WAL than anyone: never", "a", after_b(true), PgView::Stopped { data: on(1, 9000, true) }, wait.clone()),
        ("fenced ex-primary on the recorded timeline after another member took the lease: never", "a", after_b(false), PgView::Stopped { data: on(1, 9000, true) }, wait.clone()),
        ("replica on the current timeline competes", "c", after_b(true), replica_on(2, 4900), acquire(&after_b(true))),
        ("replica on the new timeline no renewal reported competes", "c", after_b(false), replica_on(2, 4900), acquire(&after_b(false))),
        ("replica on the recorded timeline when no renewal reported a new one competes", "c", after_b(false), replica_on(1, 4900), acquire(&after_b(false))),
        ("replica on an older timeline: never", "c", after_b(true), replica_on(1, 4900), wait.clone()),
        ("stopped replica data on an older timeline: never", "c", after_b(true), PgView::Stopped { data: on(1, 4900, false) }, wait.clone()),
        ("ex-primary of a promotion no renewal reported, lease free: never", "b", released(after_b(false)), PgView::Stopped { data: on(2, 9500, true) }, wait.clone()),
        ("restarted holder, ex-primary of a promotion no renewal reported: releases", "b", after_b(false), PgView::Stopped { data: on(2, 9500, true) }, LeaseAction::Release { expected: after_b(false).lease.version() }),
        ("the owner's own stopped primary, lease free: competes", "b", released(after_b(true)), PgView::Stopped { data: on(2, 5000, true) }, acquire(&released(after_b(true)))),
        ("restarted holder that owns the timeline: renews, to start its primary again", "b", after_b(true), PgView::Stopped { data: on(2, 5000, true) }, LeaseAction::Renew { epoch: Epoch(1) }),
        ("an ex-primary that released the lease itself competes while nobody held it since", "a", a_released.clone(), PgView::Stopped { data: on(1, 5000, true) }, acquire(&a_released)),
        ("a fresher peer off the timeline does not count as better", "c", a_fresh_off_timeline.clone(), replica_on(2, 4900), acquire(&a_fresh_off_timeline)),
        ("a named candidate off the timeline: never", "a", failover_to_a.clone(), replica_on(1, 9000), wait.clone()),
        ("a named candidate off the timeline: the others do not wait for it", "c", failover_to_a.clone(), replica_on(2, 4900), acquire(&failover_to_a)),
    ];
    for (name, me, state, pg, want) in rows {
        let peers = all_fresh(&state);
        assert_eq!(expired_decision(me, &state, &pg, &peers), want, "{name}");
    }
}

#[test]
fn a_holder_off_the_timeline_releases() {
    let mut s = cluster(Some("a"));
    s.lease.timeline = Some(2);
    s.lease.timeline_owner = None;
    let h = holder_lease(1, 0);
    #[rustfmt::skip]
    let rows: Vec<(&str, PgView, LeaseAction)> = vec![
        ("stopped ex-primary on an older timeline", PgView::Stopped { data: on(1, 9000, true) }, LeaseAction::Release { expected: s.lease.version() }),
        ("crashed ex-primary on an older timeline, within the restart grace", PgView::Down { data: on(1, 9000, true), since: at(400), alive: false }, LeaseAction::Release { expected: s.lease.version() }),
        ("replica on an older timeline", replica_on(1, 5000), LeaseAction::Release { expected: s.lease.version() }),
        ("replica on the current timeline: keeps it and promotes", replica_on(2, 5000), LeaseAction::Renew { epoch: Epoch(1) }),
        ("a running primary keeps renewing: its writes are the ones to keep", PgView::Running { data: on(2, 5000, true), in_recovery: false, upstream: None, streaming: false }, LeaseAction::Renew { epoch: Epoch(1) }),
    ];
    let (observer, peers) = (LeaseObserver::default(), PeerObserver::default());
    for (name, pg, want) in rows {
        let action = decide(&Observation {
            now: at(500),
            holding: Some(&h),
            ..observation("a", &s, &pg, &observer, &peers)
        });
        assert_eq!(action, want, "{name}");
    }
}

/// A promotion `pre_promote` refused: the holder gives the lease back, does
/// not take it again while the veto holds, and the next candidate does not
/// wait for it.
#[test]
fn a_vetoed_promotion_passes_the_lease_on() {
    let release = |s: &ClusterState| LeaseAction::Release {
        expected: s.lease.version(),
    };
    let wait = LeaseAction::Wait { until: None };
    let mut b_holds = cluster(Some("b"));
    b_holds.members.get_mut("a").unwrap().pg_state = PgState::Stopped;
    let holder = holder_lease(1, 2900);
    let holding = |vetoed: bool, pg: &PgView| {
        let observer = LeaseObserver::default();
        let peers = all_fresh(&b_holds);
        decide(&Observation {
            now: at(3000),
            holding: Some(&holder),
            promotion_vetoed: vetoed,
            ..observation("b", &b_holds, pg, &observer, &peers)
        })
    };
    assert_eq!(
        holding(true, &replica(4800)),
        release(&b_holds),
        "vetoed before promoting"
    );
    // Renewed at 2900: the next renewal is due a loop_wait later.
    let keeps = LeaseAction::Wait {
        until: Some(at(3300)),
    };
    assert_eq!(
        holding(false, &replica(4800)),
        keeps,
        "not vetoed: keeps it"
    );
    let promoted = PgView::Running {
        data: data("sys", 4800, true),
        in_recovery: false,
        upstream: None,
        streaming: false,
    };
    assert_eq!(
        holding(true, &promoted),
        keeps,
        "already writable: a veto comes too late to matter"
    );

    // a, the old holder, is gone; b has more WAL than c.
    let mut a_gone = cluster(Some("a"));
    a_gone.members.get_mut("a").unwrap().pg_state = PgState::Stopped;
    let peers = all_fresh(&a_gone);
    let acquire = LeaseAction::Acquire {
        expected: a_gone.lease.version(),
    };
    let mut observer = LeaseObserver::default();
    observer.observe(&a_gone.lease, at(0));
    let vetoed_b = decide(&Observation {
        now: at(3000),
        promotion_vetoed: true,
        ..observation("b", &a_gone, &replica(4800), &observer, &peers)
    });
    assert_eq!(
        vetoed_b, wait,
        "b stays out, even before its record says so"
    );
    assert_eq!(
        expired_decision("c", &a_gone, &replica(4500), &peers),
        wait,
        "c defers to b while b's record shows no veto"
    );
    let mut b_says_vetoed = a_gone.clone();
    b_says_vetoed.members.get_mut("b").unwrap().promotion_vetoed = true;
    let peers = all_fresh(&b_says_vetoed);
    assert_eq!(
        expired_decision("c", &b_says_vetoed, &replica(4500), &peers),
        acquire,
        "c takes over once b's record shows the veto"
    );
    assert_eq!(
        expired_decision("b", &b_says_vetoed, &replica(4800), &peers),
        wait,
        "b's own record keeps it out"
    );
}

#[test]
fn a_veto_holds_for_two_ttls() {
    let ttl = Duration::from_millis(2000);
    assert!(!promotion_veto_holds(None, at(0), ttl));
    assert!(promotion_veto_holds(Some(at(1000)), at(1000), ttl));
    assert!(promotion_veto_holds(Some(at(1000)), at(4999), ttl));
    assert!(!promotion_veto_holds(Some(at(1000)), at(5000), ttl));
}
