use super::*;
use crate::local::{DataInfo, PgView};
use crate::peers::PeerObserver;
use crate::testing::{at, cluster, data, pg_observation};

fn running(lsn: u64, in_recovery: bool, upstream: Option<&str>) -> PgView {
    PgView::Running {
        data: data("sys", lsn, !in_recovery),
        in_recovery,
        upstream: upstream.map(Into::into),
        streaming: upstream.is_some(),
    }
}

#[test]
fn decision_table() {
    let fresh = |holder: Option<&str>| {
        let mut s = cluster(holder);
        s.identity = None;
        s
    };
    let paused = |holder: Option<&str>| {
        let mut s = cluster(holder);
        s.config.as_mut().unwrap().values.pause = true;
        s
    };
    let source = || "a".to_owned();
    // b led after a and promoted to timeline 2, then a took the lease back:
    // a's data on timeline 1 is a branch the cluster has left.
    let a_after_b = || {
        let mut s = cluster(Some("a"));
        s.lease.timeline = Some(2);
        s.lease.timeline_owner = None;
        s
    };
    // b acquired after a and may have promoted, but no renewal reported it.
    let b_took_over = || {
        let mut s = cluster(Some("a"));
        s.lease.timeline_owner = None;
        s
    };
    let on = |timeline, lsn, was_primary| DataInfo {
        timeline,
        ..data("sys", lsn, was_primary)
    };
    // (name, me, state, holds_lease, pg, want)
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, ClusterState, bool, PgView, PgAction)> = vec![
        ("witness: nothing", "w", cluster(Some("a")), false, PgView::Absent, PgAction::None),
        ("busy: nothing", "b", cluster(Some("a")), false, PgView::Busy { action: "clone" }, PgAction::None),
        ("writable without lease: fence", "b", cluster(Some("a")), false, running(5000, false, None), PgAction::Fence),
        ("writable, no holder at all: fence", "b", cluster(None), false, running(5000, false, None), PgAction::Fence),
        ("writable without lease, paused: still fence", "b", paused(Some("a")), false, running(5000, false, None), PgAction::Fence),
        ("paused replica following the holder: nothing", "b", paused(Some("a")), false, running(4000, true, Some("a")), PgAction::None),
        ("paused replica following another member (the old primary after a switchover): follow the holder, as Patroni's do", "b", paused(Some("a")), false, running(4000, true, Some("c")), PgAction::Follow { upstream: source() }),
        ("paused holder, no switchover, primary running: nothing", "a", paused(Some("a")), true, running(5000, false, None), PgAction::None),
        ("paused holder whose primary was demoted by hand (it ran as primary under this lease): not promoted back", "a", paused(Some("a")), true, running(5000, true, None), PgAction::None),
        ("paused holder the lease came to (a switchover's transfer): promote", "a", { let mut s = paused(Some("a")); s.lease.timeline_owner = None; s }, true, running(5000, true, Some("b")), PgAction::Promote),
        ("paused holder the lease came to, its replica stopped: start it, then promote", "a", { let mut s = paused(Some("a")); s.lease.timeline_owner = None; s }, true, PgView::Stopped { data: data("sys", 5000, false) }, PgAction::StartReplica { upstream: None }),
        ("paused holder, primary stopped (not for a switchover): stays stopped", "a", paused(Some("a")), true, PgView::Stopped { data: data("sys", 5000, true) }, PgAction::None),
        ("paused holder, primary down: not restarted", "a", paused(Some("a")), true, PgView::Down { data: data("sys", 5000, true), since: at(0), alive: false }, PgAction::None),
        ("paused, ex-primary stopped (not for a switchover): no rewind", "b", paused(Some("a")), false, PgView::Stopped { data: data("sys", 6000, true) }, PgAction::None),
        ("paused replica stopped: stays stopped", "b", paused(Some("a")), false, PgView::Stopped { data: data("sys", 4000, false) }, PgAction::None),
        ("paused replica without data: no clone", "b", paused(Some("a")), false, PgView::Uninitialized, PgAction::None),
        ("paused, nobody leads, replica stopped: stays stopped", "b", paused(None), false, PgView::Stopped { data: data("sys", 4000, false) }, PgAction::None),
        ("holder of a new cluster without data: initdb", "a", fresh(Some("a")), true, PgView::Uninitialized, PgAction::InitDb),
        ("holder of a new cluster, primary running: record identity", "a", fresh(Some("a")), true, running(10, false, None), PgAction::RecordIdentity { system_id: "sys".into() }),
        ("holder, formed cluster, no data: nothing (the lease loop releases)", "a", cluster(Some("a")), true, PgView::Uninitialized, PgAction::None),
        ("holder with foreign data: nothing", "a", cluster(Some("a")), true, PgView::Stopped { data: data("other", 1, true) }, PgAction::None),
        ("holder, replica running: promote", "a", cluster(Some("a")), true, running(5000, true, Some("b")), PgAction::Promote),
        ("holder, primary running: nothing", "a", cluster(Some("a")), true, running(5000, false, None), PgAction::None),
        ("holder, ex-primary data stopped: start primary", "a", cluster(Some("a")), true, PgView::Stopped { data: data("sys", 5000, true) }, PgAction::StartPrimary),
        ("holder, server unanswering but alive: fence before anything", "a", cluster(Some("a")), true, PgView::Down { data: data("sys", 5000, true), since: at(0), alive: true }, PgAction::Fence),
        ("replica, backends outlived the postmaster: fence them", "b", cluster(Some("a")), false, PgView::Down { data: data("sys", 5000, false), since: at(0), alive: true }, PgAction::Fence),
        ("holder, primary down: restart as primary", "a", cluster(Some("a")), true, PgView::Down { data: data("sys", 5000, true), since: at(0), alive: false }, PgAction::StartPrimary),
        ("holder, ex-primary data on an older timeline: never start it as primary", "a", a_after_b(), true, PgView::Stopped { data: on(1, 9000, true) }, PgAction::None),
        ("holder, ex-primary data down on an older timeline: never restart it as primary", "a", a_after_b(), true, PgView::Down { data: on(1, 9000, true), since: at(0), alive: false }, PgAction::None),
        ("holder, ex-primary data whose timeline another holder may have forked: never start it", "a", b_took_over(), true, PgView::Stopped { data: on(1, 9000, true) }, PgAction::None),
        ("holder, replica running on an older timeline: never promote it", "a", a_after_b(), true, PgView::Running { data: on(1, 5000, false), in_recovery: true, upstream: Some("b".into()), streaming: false }, PgAction::None),
        ("holder, replica running on the current timeline: promote", "a", a_after_b(), true, PgView::Running { data: on(2, 5000, false), in_recovery: true, upstream: Some("b".into()), streaming: true }, PgAction::Promote),
        ("holder, primary already running on an older timeline: nothing (its renewals cannot lower the timeline)", "a", a_after_b(), true, PgView::Running { data: on(1, 5000, true), in_recovery: false, upstream: None, streaming: false }, PgAction::None),
        ("holder, replica data stopped: start in recovery, then promote", "a", cluster(Some("a")), true, PgView::Stopped { data: data("sys", 5000, false) }, PgAction::StartReplica { upstream: None }),
        ("replica, cluster being created: wait", "b", fresh(Some("a")), false, PgView::Uninitialized, PgAction::None),
        ("replica without data: clone from the holder", "b", cluster(Some("a")), false, PgView::Uninitialized, PgAction::Clone { source: source() }),
        ("replica with foreign data: clone", "b", cluster(Some("a")), false, PgView::Stopped { data: data("other", 1, false) }, PgAction::Clone { source: source() }),
        ("ex-primary stopped: rewind to the holder", "b", cluster(Some("a")), false, PgView::Stopped { data: data("sys", 6000, true) }, PgAction::Rewind { source: source() }),
        ("fenced ex-primary on an older timeline, another member leads: rewind to it", "b", { let mut s = cluster(Some("a")); s.lease.timeline = Some(2); s }, false, PgView::Stopped { data: on(1, 9000, true) }, PgAction::Rewind { source: source() }),
        ("ex-primary fenced (down): rewind", "b", cluster(Some("a")), false, PgView::Down { data: data("sys", 6000, true), since: at(0), alive: false }, PgAction::Rewind { source: source() }),
        ("replica stopped: start following the holder", "b", cluster(Some("a")), false, PgView::Stopped { data: data("sys", 4000, false) }, PgAction::StartReplica { upstream: Some(source()) }),
        ("replica down: start following the holder", "b", cluster(Some("a")), false, PgView::Down { data: data("sys", 4000, false), since: at(0), alive: false }, PgAction::StartReplica { upstream: Some(source()) }),
        ("replica following someone else: follow the holder", "b", cluster(Some("a")), false, running(4000, true, Some("c")), PgAction::Follow { upstream: source() }),
        ("replica following nobody: follow the holder", "b", cluster(Some("a")), false, running(4000, true, None), PgAction::Follow { upstream: source() }),
        ("replica following the holder: nothing", "b", cluster(Some("a")), false, running(4000, true, Some("a")), PgAction::None),
        ("no holder, replica data stopped: start to be a candidate", "b", cluster(None), false, PgView::Stopped { data: data("sys", 4000, false) }, PgAction::StartReplica { upstream: None }),
        ("no holder, ex-primary data stopped: wait", "b", cluster(None), false, PgView::Stopped { data: data("sys", 4000, true) }, PgAction::None),
        ("no holder, replica running: nothing", "b", cluster(None), false, running(4000, true, None), PgAction::None),
    ];
    let peers = PeerObserver::default();
    for (name, me, state, holds_lease, pg, want) in rows {
        let o = PgObservation {
            holds_lease,
            ..pg_observation(me, &state, &pg, &peers)
        };
        assert_eq!(decide_postgres(&o), want, "{name}");
    }
}

#[test]
fn a_holder_not_yet_running_as_primary_is_not_a_source() {
    for (role, pg_state) in [
        (
            raftgres_state::MemberRole::Replica,
            raftgres_state::PgState::Running,
        ),
        (
            raftgres_state::MemberRole::Unknown,
            raftgres_state::PgState::Starting,
        ),
        (
            raftgres_state::MemberRole::Primary,
            raftgres_state::PgState::Crashed,
        ),
    ] {
        let mut s = cluster(Some("a"));
        let a = s.members.get_mut("a").unwrap();
        a.role = role;
        a.pg_state = pg_state;
        for pg in [
            PgView::Uninitialized,
            PgView::Stopped {
                data: data("sys", 6000, true),
            },
            running(4000, true, Some("c")),
        ] {
            let peers = PeerObserver::default();
            assert_eq!(
                decide_postgres(&pg_observation("b", &s, &pg, &peers)),
                PgAction::None,
                "{role:?} {pg_state:?} {pg:?}"
            );
        }
    }
}

#[test]
fn a_holder_without_a_postgres_address_is_not_a_source() {
    let mut s = cluster(Some("a"));
    s.members.get_mut("a").unwrap().pg_address = None;
    let peers = PeerObserver::default();
    let o = pg_observation("b", &s, &PgView::Uninitialized, &peers);
    assert_eq!(decide_postgres(&o), PgAction::None);
}

/// In synchronous mode a crashed primary is not started again in place
/// while a synchronous standby can take over: crash recovery would make
/// visible the commits that still waited for it.
#[test]
fn a_crashed_synchronous_primary_waits_for_the_handover_instead_of_restarting() {
    let mut s = cluster(Some("a"));
    s.synchronous = true;
    s.sync_set = ["b".to_owned()].into();
    let mut fresh = PeerObserver::default();
    fresh.observe(&s, at(0));
    let crashed = PgView::Down {
        data: data("sys", 5000, true),
        since: at(0),
        alive: false,
    };
    let decide_with = |peers: &PeerObserver| {
        decide_postgres(&PgObservation {
            holds_lease: true,
            now: at(100),
            ..pg_observation("a", &s, &crashed, peers)
        })
    };
    assert_eq!(decide_with(&fresh), PgAction::None);
    assert_eq!(
        decide_with(&PeerObserver::default()),
        PgAction::StartPrimary,
        "no live synchronous standby: restart in place"
    );
}

#[test]
fn the_fence_is_disarmed_only_without_lease_writes_or_a_fence_this_round() {
    let state = cluster(Some("a"));
    let peers = PeerObserver::default();
    let stopped = PgView::Stopped {
        data: data("sys", 5000, true),
    };
    let writable = running(5000, false, None);
    let replica = running(4000, true, Some("a"));
    #[rustfmt::skip]
    let rows: Vec<(&str, bool, &PgView, PgAction, bool)> = vec![
        ("no lease, stopped: disarm", false, &stopped, PgAction::None, true),
        ("no lease, replica: disarm", false, &replica, PgAction::None, true),
        ("holding the lease: keep armed", true, &stopped, PgAction::None, false),
        ("writable without the lease: keep armed", false, &writable, PgAction::None, false),
        ("fencing this round: keep armed", false, &stopped, PgAction::Fence, false),
    ];
    for (name, holds_lease, pg, action, want) in rows {
        let o = PgObservation {
            holds_lease,
            ..pg_observation("b", &state, pg, &peers)
        };
        assert_eq!(may_disarm(&o, &action), want, "{name}");
    }
}

#[test]
fn a_primary_keeps_a_slot_for_every_other_member_that_runs_postgres() {
    let mut state = cluster(Some("a"));
    state.members.get_mut("c").unwrap().witness = true;
    let fresh = |_: &raftgres_state::Member| true;
    let holders: Vec<String> = crate::slot_holders(&state, "a", &fresh)
        .into_iter()
        .collect();
    assert_eq!(holders, ["b"]);
    let holders: Vec<String> = crate::slot_holders(&state, "b", &fresh)
        .into_iter()
        .collect();
    assert!(
        holders.is_empty(),
        "a replica keeps slots only for cascading members"
    );
}

/// A holder whose `pre_promote` refused does not promote again: the lease
/// loop gives the lease back instead.
#[test]
fn a_vetoed_holder_does_not_promote() {
    let s = cluster(Some("b"));
    let pg = running(4800, true, Some("a"));
    let peers = PeerObserver::default();
    let decide = |promotion_vetoed| {
        decide_postgres(&PgObservation {
            holds_lease: true,
            promotion_vetoed,
            ..pg_observation("b", &s, &pg, &peers)
        })
    };
    assert_eq!(decide(false), PgAction::Promote);
    assert_eq!(decide(true), PgAction::None);
}

#[test]
fn copies_back_off_exponentially_up_to_the_cap_and_starts_do_not() {
    let wait = Duration::from_millis(250);
    let clone = PgAction::Clone {
        source: "node1".into(),
    };
    let rewind = PgAction::Rewind {
        source: "node1".into(),
    };
    let delays: Vec<Duration> = (1..=9).map(|n| clone.retry_delay(n, wait)).collect();
    assert_eq!(
        delays[..4],
        [250, 500, 1000, 2000].map(Duration::from_millis)
    );
    assert_eq!(delays[8], COPY_BACKOFF_CAP);
    assert_eq!(rewind.retry_delay(3, wait), Duration::from_secs(1));
    assert_eq!(clone.retry_delay(u32::MAX, wait), COPY_BACKOFF_CAP);
    assert_eq!(PgAction::StartPrimary.retry_delay(7, wait), wait);
    // A loop_wait longer than the cap is never shortened.
    let slow = Duration::from_secs(60);
    assert_eq!(clone.retry_delay(5, slow), slow);
}
