//! The lease decision, one row per situation.

use super::*;
use crate::testing::{at, holder_lease, member, values};
use raftgres_state::{ConfigValues, DynamicConfig, Lease};

/// A cluster with no identity yet whose lease `holder` holds at `epoch`
/// and `revision`: members a and b compete; w (a witness), nf (nofailover)
/// and p0 (priority 0) never do.
fn state(holder: Option<&str>, epoch: u64, revision: u64) -> ClusterState {
    let mut s = ClusterState {
        config: Some(DynamicConfig {
            version: 1,
            values: ConfigValues {
                maximum_lag_on_failover: 0,
                ..values()
            },
        }),
        lease: Lease {
            holder: holder.map(Into::into),
            epoch: Epoch(epoch),
            revision,
            ttl_ms: 2000,
            ..Lease::default()
        },
        ..Default::default()
    };
    for (name, priority) in [("a", 1), ("b", 1), ("w", 1), ("nf", 1), ("p0", 0)] {
        let mut m = member(name, 0, priority);
        m.witness = name == "w";
        m.tags.nofailover = name == "nf";
        s.members.insert(name.into(), m);
    }
    s
}

fn held(epoch: u64, sent: u64) -> Option<HolderLease> {
    Some(holder_lease(epoch, sent))
}

fn v(epoch: u64, revision: u64) -> LeaseVersion {
    LeaseVersion {
        epoch: Epoch(epoch),
        revision,
    }
}

fn wait(until: Option<u64>) -> LeaseAction {
    LeaseAction::Wait {
        until: until.map(at),
    }
}

fn renew(epoch: u64) -> LeaseAction {
    LeaseAction::Renew {
        epoch: Epoch(epoch),
    }
}

fn acquire(epoch: u64, revision: u64) -> LeaseAction {
    LeaseAction::Acquire {
        expected: v(epoch, revision),
    }
}

/// (situation, me, state, my belief, lease version first seen at (ms),
/// now (ms), a command in flight, the decision)
type Row = (
    &'static str,
    &'static str,
    ClusterState,
    Option<HolderLease>,
    Option<u64>,
    u64,
    bool,
    LeaseAction,
);

#[test]
fn decision_table() {
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("no config yet: wait", "a", ClusterState::default(), None, None, 0, false, wait(None)),
        ("fresh cluster, no holder: acquire", "a", state(None, 0, 0), None, None, 0, false, acquire(0, 0)),
        ("released lease: acquire at once", "b", state(None, 3, 7), None, Some(0), 1, false, acquire(3, 7)),
        ("holder before renew time: wait for renew or deadline", "a", state(Some("a"), 1, 1), held(1, 1000), None, 1200, false, wait(Some(1400))),
        ("holder at renew time: renew", "a", state(Some("a"), 1, 1), held(1, 1000), None, 1400, false, renew(1)),
        ("holder past its deadline still renews: only a commit can restore it", "a", state(Some("a"), 1, 1), held(1, 0), None, 5000, false, renew(1)),
        ("state names me, no deadline known: renew now", "a", state(Some("a"), 2, 5), None, None, 10, false, renew(2)),
        ("my belief is an older epoch: renew the current one", "a", state(Some("a"), 2, 5), held(1, 0), None, 10, false, renew(2)),
        ("renewal in flight: wait until deadline", "a", state(Some("a"), 1, 1), held(1, 0), None, 500, true, wait(Some(1600))),
        ("other holds, not expired: wait until expiry", "b", state(Some("a"), 1, 4), None, Some(100), 1000, false, wait(Some(2100))),
        ("other holds, expired: acquire with the version seen", "b", state(Some("a"), 1, 4), None, Some(100), 2100, false, acquire(1, 4)),
        ("other holds, never seen: wait", "b", state(Some("a"), 1, 4), None, None, 9999, false, wait(None)),
        ("deposed: another holds, my old belief is ignored", "a", state(Some("b"), 2, 6), held(1, 0), Some(0), 100, false, wait(Some(2000))),
        ("witness never competes", "w", state(None, 0, 0), None, None, 0, false, wait(None)),
        ("nofailover never competes", "nf", state(Some("a"), 1, 1), None, Some(0), 99_999, false, wait(None)),
        ("priority 0 never competes", "p0", state(None, 1, 2), None, None, 0, false, wait(None)),
        ("unregistered member never competes", "zz", state(None, 0, 0), None, None, 0, false, wait(None)),
        ("acquire in flight: wait", "b", state(None, 1, 2), None, None, 0, true, wait(None)),
    ];
    for (name, me, state, holding, seen, now, in_flight, want) in rows {
        let mut observer = LeaseObserver::default();
        if let Some(seen) = seen {
            observer.observe(&state.lease, at(seen));
        }
        let o = Observation {
            now: at(now),
            me,
            state: &state,
            holding: holding.as_ref(),
            observer: &observer,
            in_flight,
            pg: &PgView::Uninitialized,
            peers: &PeerObserver::default(),
            restart_grace: Duration::from_secs(2),
            now_unix_ms: 0,
            promotion_vetoed: false,
        };
        assert_eq!(decide(&o), want, "{name}");
    }
}
