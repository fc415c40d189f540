//! Builders shared by the decision tables' tests.

use crate::decide::Observation;
use crate::lease::{HolderLease, LeaseObserver, MonoInstant};
use crate::local::{DataInfo, PgView};
use crate::peers::PeerObserver;
use crate::postgres::PgObservation;
use raftgres_state::{
    ClusterIdentity, ClusterState, ConfigValues, DynamicConfig, Epoch, Lease, Lsn, Member,
    MemberRole, PgState, Tags,
};
use std::time::Duration;

pub fn at(ms: u64) -> MonoInstant {
    MonoInstant(Duration::from_millis(ms))
}

pub fn values() -> ConfigValues {
    ConfigValues::new(
        raftgres_state::LeaseTiming::from_millis(2000, 400, 400),
        1000,
        1000,
    )
}

pub fn member(name: &str, lsn: u64, priority: u32) -> Member {
    Member {
        pg_address: Some(format!("{name}:5432")),
        role: MemberRole::Replica,
        pg_state: PgState::Running,
        timeline: Some(1),
        receive_lsn: Some(Lsn(lsn)),
        replay_lsn: Some(Lsn(lsn)),
        tags: Tags {
            nofailover: false,
            failover_priority: priority,
            nosync: false,
            ..Tags::default()
        },
        heartbeat: 1,
        ..Member::new(name, 1, "x:1")
    }
}

/// A formed cluster (identity "sys") with members a, b, c; `holder` holds
/// the lease at epoch 1 with last LSN 5000.
pub fn cluster(holder: Option<&str>) -> ClusterState {
    let mut s = ClusterState {
        identity: Some(ClusterIdentity {
            system_id: "sys".into(),
        }),
        config: Some(DynamicConfig {
            version: 1,
            values: values(),
        }),
        lease: Lease {
            holder: holder.map(Into::into),
            epoch: Epoch(1),
            revision: 3,
            ttl_ms: 2000,
            last_lsn: Some(Lsn(5000)),
            timeline: Some(1),
            timeline_owner: holder.map(Into::into),
        },
        ..Default::default()
    };
    for (name, lsn) in [("a", 5000), ("b", 4800), ("c", 4500)] {
        let mut m = member(name, lsn, 1);
        if holder == Some(name) {
            m.role = MemberRole::Primary;
        }
        s.members.insert(name.into(), m);
    }
    s
}

/// `s` with the cluster paused (`raftgresctl pause`).
pub fn paused(mut s: ClusterState) -> ClusterState {
    s.config.as_mut().expect("a config").values.pause = true;
    s
}

pub fn data(system_id: &str, lsn: u64, was_primary: bool) -> DataInfo {
    DataInfo {
        system_id: system_id.into(),
        timeline: 1,
        was_primary,
        lsn: Lsn(lsn),
    }
}

/// `s` with every replica streaming from the primary.
pub fn streaming(mut s: ClusterState) -> ClusterState {
    for m in s.members.values_mut() {
        m.streaming = m.role == MemberRole::Replica;
    }
    s
}

/// The lease a holder took at `epoch`, its command sent at `sent_ms`, with
/// the ttl (2000 ms) and margin (400 ms) of [`values`].
pub fn holder_lease(epoch: u64, sent_ms: u64) -> HolderLease {
    HolderLease::acquired(
        Epoch(epoch),
        at(sent_ms),
        Duration::from_millis(2000),
        Duration::from_millis(400),
    )
}

/// What `me` sees at 0 holding no lease, with no command in flight, a 2 s
/// restart grace and the wall clock at 0; tests override the rest with
/// `..observation(…)`.
pub fn observation<'a>(
    me: &'a str,
    state: &'a ClusterState,
    pg: &'a PgView,
    observer: &'a LeaseObserver,
    peers: &'a PeerObserver,
) -> Observation<'a> {
    Observation {
        now: at(0),
        me,
        state,
        holding: None,
        observer,
        in_flight: false,
        pg,
        peers,
        restart_grace: Duration::from_secs(2),
        now_unix_ms: 0,
        promotion_vetoed: false,
    }
}

/// What `me` sees of its Postgres at 0 (wall clock 0) holding no lease, not
/// stopped for a switchover and with no promotion veto; tests override the
/// rest with `..pg_observation(…)`.
pub fn pg_observation<'a>(
    me: &'a str,
    state: &'a ClusterState,
    pg: &'a PgView,
    peers: &'a PeerObserver,
) -> PgObservation<'a> {
    PgObservation {
        me,
        state,
        holds_lease: false,
        pg,
        now: at(0),
        now_unix_ms: 0,
        peers,
        switchover_stopped_at: None,
        promotion_vetoed: false,
    }
}
