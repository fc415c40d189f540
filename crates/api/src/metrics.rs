//! `GET /metrics`: OpenMetrics text from one state snapshot, this
//! member's health and its live figures. A fresh registry per scrape: a
//! handful of values, and nothing to keep in step with the state between
//! scrapes.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use raftgres_state::ClusterState;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use crate::cluster::is_witness;
use crate::health::{NodeHealth, Role};
use crate::live::{Histogram, LiveFacts, RaftFacts};
use crate::ops::MemberReport;
use crate::status::is_writable_primary;

/// What Prometheus expects for the OpenMetrics text format, which the
/// `# EOF` line `encode` writes makes this.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Lease handovers where the lease actually changed hands; a holder
/// re-acquiring its own lease is no failover.
fn failovers(state: &ClusterState) -> u64 {
    let count = state
        .history
        .iter()
        .filter(|entry| {
            entry
                .previous_holder
                .as_deref()
                .is_some_and(|previous| previous != entry.new_holder)
        })
        .count();
    u64::try_from(count).unwrap_or(u64::MAX)
}

/// Values this member does not know (no Postgres observation yet, a
/// witness, a member not observed yet) are left out rather than reported as 0.
pub(crate) fn render(
    state: &ClusterState,
    health: &NodeHealth,
    reports: &BTreeMap<String, MemberReport>,
    live: &LiveFacts,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register(
        "raftgres_primary",
        "1 if this member holds a valid lease and runs a writable primary",
        ConstGauge::new(u64::from(is_writable_primary(health))),
    );
    let holders = Family::<Vec<(&'static str, String)>, Gauge<u64, AtomicU64>>::default();
    for member in state.members.values().filter(|member| !is_witness(member)) {
        holders
            .get_or_create(&vec![("member", member.name.clone())])
            .set(0);
    }
    if let Some(holder) = &state.lease.holder {
        holders
            .get_or_create(&vec![("member", holder.clone())])
            .set(1);
    }
    registry.register(
        "raftgres_lease_holder",
        "1 for the member holding the lease, 0 for the others",
        holders,
    );
    register_reports(&mut registry, state, reports);
    registry.register(
        "raftgres_lease_epoch",
        "The lease's epoch, which grows with every new holder",
        ConstGauge::new(state.lease.epoch.0),
    );
    if let Some(left) = live.lease_left {
        registry.register(
            "raftgres_lease_remaining_seconds",
            "How long the lease stays valid as this member judges it: on the holder, until its own deadline; elsewhere, until ttl after the current renewal was first seen; 0 once expired or free",
            ConstGauge::new(left.as_secs_f64()),
        );
    }
    if let Some(raft) = &live.raft {
        register_raft(&mut registry, state, raft);
    }
    if let Some(timeline) = health.timeline {
        registry.register(
            "raftgres_timeline",
            "This member's Postgres timeline",
            ConstGauge::new(timeline),
        );
    }
    if let Some(lsn) = health.xlog_location {
        registry.register(
            "raftgres_wal_lsn_bytes",
            "This member's WAL position: written on a primary, replayed on a replica",
            ConstGauge::new(lsn),
        );
    }
    if let Some(lag) = health.lag_bytes {
        registry.register(
            "raftgres_replication_lag_bytes",
            "Bytes this replica's replayed WAL is behind the leader's last reported position",
            ConstGauge::new(lag),
        );
    }
    registry.register(
        // The encoder appends `_total` to counters.
        "raftgres_failovers",
        "Changes of lease holder recorded in the cluster history",
        ConstCounter::new(failovers(state)),
    );
    registry.register(
        "raftgres_pause",
        "1 if the cluster is in maintenance mode",
        ConstGauge::new(u64::from(state.paused())),
    );
    registry.register(
        "raftgres_postgres_running",
        "1 if this member's Postgres runs",
        ConstGauge::new(u64::from(health.postgres_running)),
    );
    registry.register(
        "raftgres_synchronous_mode",
        "1 if the primary's commits wait for its synchronous standbys (declared in the Raft state)",
        ConstGauge::new(u64::from(state.synchronous)),
    );
    registry.register(
        "raftgres_synchronous_standbys",
        "How many members the Raft state names synchronous standbys",
        ConstGauge::new(u64::try_from(state.sync_set.len()).unwrap_or(u64::MAX)),
    );
    registry.register(
        "raftgres_sync_standby",
        "1 if this member is a synchronous standby (as Patroni's patroni_sync_standby)",
        ConstGauge::new(u64::from(health.sync_standby)),
    );
    registry.register(
        "raftgres_quorum_standby",
        "1 if this member is a quorum standby (as Patroni's patroni_quorum_standby)",
        ConstGauge::new(u64::from(health.quorum_standby)),
    );
    registry.register(
        "raftgres_synchronous_quorum",
        "Quorum mode: how many of the quorum standbys have each acknowledged commit, at least",
        ConstGauge::new(state.sync_quorum.map_or(0, u64::from)),
    );
    register_patroni(&mut registry, state, health, live);
    let mut text = String::with_capacity(8192);
    encode(&mut text, &registry)?;
    Ok(text)
}

/// This member's view of its Raft group. The leader is one series per
/// member of the state, witnesses included (they vote and may lead), as
/// `raftgres_lease_holder` is: 1 for the leader this member follows or is,
/// 0 for the others, all 0 while it knows none.
fn register_raft(registry: &mut Registry, state: &ClusterState, raft: &RaftFacts) {
    registry.register(
        "raftgres_raft_term",
        "The Raft term this member is in",
        ConstGauge::new(raft.term),
    );
    let leaders = Family::<Vec<(&'static str, String)>, Gauge<u64, AtomicU64>>::default();
    for member in state.members.values() {
        let leads = raft.leader == Some(member.node_id);
        leaders
            .get_or_create(&vec![("member", member.name.clone())])
            .set(u64::from(leads));
    }
    // A leader whose record this member has not applied yet still counts,
    // named by its Raft node id.
    if let Some(id) = raft
        .leader
        .filter(|id| !state.members.values().any(|m| m.node_id == *id))
    {
        leaders
            .get_or_create(&vec![("member", id.to_string())])
            .set(1);
    }
    registry.register(
        "raftgres_raft_leader",
        "1 for the Raft leader this member follows or is, 0 for the other members",
        leaders,
    );
    registry.register(
        "raftgres_raft_commit_index",
        "The last Raft log index this member knows committed",
        ConstGauge::new(raft.commit_index),
    );
    registry.register(
        "raftgres_raft_applied_index",
        "The last Raft log index applied to this member's copy of the cluster state",
        ConstGauge::new(raft.applied_index),
    );
    registry.register(
        "raftgres_raft_proposal_duration_seconds",
        "How long this member's proposals took to commit, forwarding to the leader included",
        ClassicHistogram(raft.proposal_latency.clone()),
    );
}

/// A histogram whose buckets were counted elsewhere (by the consensus
/// crate), encoded as prometheus-client's own would be.
#[derive(Debug)]
struct ClassicHistogram(Histogram);

impl EncodeMetric for ClassicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &self.0;
        encoder.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Patroni's version number: `4.0.1` is 40001, each part two digits.
fn version_number(version: &str) -> i64 {
    version
        .split('.')
        .filter_map(|part| part.parse::<i64>().ok())
        .fold(0, |number, part| number * 100 + part)
}

/// Patroni's own series, by its names and with its `scope` and `name`
/// labels, so that a dashboard or an alert written for Patroni works
/// unchanged. As in Patroni, a value this member does not know (no running
/// Postgres, a position a primary has not) is left out.
fn register_patroni(
    registry: &mut Registry,
    state: &ClusterState,
    health: &NodeHealth,
    live: &LiveFacts,
) {
    type Labels = Vec<(&'static str, String)>;
    let labels: Labels = vec![
        ("scope", health.scope.clone()),
        ("name", health.member.clone()),
    ];
    let mut whole = |name: &'static str, help: &'static str, value: i64| {
        let family = Family::<Labels, Gauge>::default();
        family.get_or_create(&labels).set(value);
        registry.register(name, help, family);
    };
    let primary = is_writable_primary(health);
    let replica = health.role == Role::Replica && health.postgres_running;
    let server = &health.server;
    whole(
        "patroni_version",
        "Patroni's version as a number; here raftgres's (0.1.0 is 100)",
        version_number(env!("CARGO_PKG_VERSION")),
    );
    whole(
        "patroni_postgres_running",
        "Value is 1 if Postgres is running, 0 otherwise",
        i64::from(health.postgres_running),
    );
    whole(
        "patroni_primary",
        "Value is 1 if this node is the leader, 0 otherwise",
        i64::from(primary),
    );
    whole(
        "patroni_standby_leader",
        "Value is 1 if this node is the standby_leader, 0 otherwise (no standby clusters yet)",
        0,
    );
    whole(
        "patroni_replica",
        "Value is 1 if this node is a replica, 0 otherwise",
        i64::from(replica),
    );
    whole(
        "patroni_sync_standby",
        "Value is 1 if this node is a sync standby, 0 otherwise",
        i64::from(health.sync_standby),
    );
    whole(
        "patroni_quorum_standby",
        "Value is 1 if this node is a quorum standby, 0 otherwise",
        i64::from(health.quorum_standby),
    );
    whole(
        "patroni_postgres_streaming",
        "Value is 1 if Postgres is streaming, 0 otherwise",
        i64::from(health.streaming),
    );
    whole(
        "patroni_postgres_in_archive_recovery",
        "Value is 1 if Postgres is replicating from archive, 0 otherwise (raftgres replicates by streaming only)",
        0,
    );
    whole(
        "patroni_cluster_unlocked",
        "Value is 1 if the cluster is unlocked (no lease holder), 0 if locked",
        i64::from(state.lease.holder.is_none()),
    );
    whole(
        "patroni_failsafe_mode_is_active",
        "Value is 1 if failsafe mode is active, 0 if inactive (raftgres has no failsafe mode)",
        0,
    );
    whole(
        "patroni_pending_restart",
        "Value is 1 if the node needs a restart, 0 otherwise",
        i64::from(!health.pending_restart.is_empty()),
    );
    whole(
        "patroni_is_paused",
        "Value is 1 if auto failover is disabled, 0 otherwise",
        i64::from(health.paused),
    );
    // Present before the first contact too, as 0 (as in Patroni), so that
    // an alert on its age fires for a member that never got in touch.
    whole(
        "patroni_dcs_last_seen",
        "Epoch seconds when this member last knew its copy of the cluster state current: as Raft leader, acknowledged by a quorum; as follower, an AppendEntries from its leader accepted; 0 before either",
        live.dcs_last_seen(),
    );
    let positive = |v: u64| i64::try_from(v).ok();
    if let Some(version) = server.server_version.filter(|_| health.postgres_running) {
        whole(
            "patroni_postgres_server_version",
            "Version of Postgres (if running), 0 otherwise",
            i64::from(version),
        );
    }
    if let Some(timeline) = health.timeline.filter(|_| health.postgres_running) {
        whole(
            "patroni_postgres_timeline",
            "Postgres timeline of this node (if running), 0 otherwise",
            i64::from(timeline),
        );
    }
    if let Some(lsn) = health.xlog_location.filter(|_| primary).and_then(positive) {
        whole(
            "patroni_xlog_location",
            "Current location of the Postgres transaction log, 0 if this node is not the leader",
            lsn,
        );
    }
    if replica {
        if let Some(lsn) = server.received_lsn.and_then(positive) {
            whole(
                "patroni_xlog_received_location",
                "Current location of the received Postgres transaction log, 0 if this node is not a replica",
                lsn,
            );
        }
        if let Some(lsn) = server.replayed_lsn.and_then(positive) {
            whole(
                "patroni_xlog_replayed_location",
                "Current location of the replayed Postgres transaction log, 0 if this node is not a replica",
                lsn,
            );
        }
        whole(
            "patroni_xlog_paused",
            "Value is 1 if the Postgres xlog is paused, 0 otherwise",
            i64::from(server.replay_paused),
        );
    }
    let mut seconds = |name: &'static str, help: &'static str, unix_ms: i64| {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        family.get_or_create(&labels).set(unix_ms as f64 / 1000.0);
        registry.register(name, help, family);
    };
    if let Some(start) = server
        .postmaster_start_unix_ms
        .filter(|_| health.postgres_running)
    {
        seconds(
            "patroni_postmaster_start_time",
            "Epoch seconds since Postgres started",
            start,
        );
    }
    if let Some(at) = server.replayed_unix_ms.filter(|_| replica) {
        seconds(
            "patroni_xlog_replayed_timestamp",
            "Current timestamp of the replayed Postgres transaction log, 0 if null",
            at,
        );
    }
}

/// One series per member of the state that this agent has observed,
/// witnesses included: a dead member's age keeps growing, so an alert can
/// fire on the age or on the stale flag.
fn register_reports(
    registry: &mut Registry,
    state: &ClusterState,
    reports: &BTreeMap<String, MemberReport>,
) {
    let ages = Family::<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>::default();
    let stale = Family::<Vec<(&'static str, String)>, Gauge<u64, AtomicU64>>::default();
    for name in state.members.keys() {
        if let Some(report) = reports.get(name) {
            let labels = vec![("member", name.clone())];
            ages.get_or_create(&labels).set(report.age.as_secs_f64());
            stale.get_or_create(&labels).set(u64::from(report.stale));
        }
    }
    registry.register(
        "raftgres_member_report_age_seconds",
        "Time since this agent first saw the member's current record (a lower bound right after this agent started)",
        ages,
    );
    registry.register(
        "raftgres_member_stale",
        "1 if the member has not reported for a ttl or longer, as this agent judges it",
        stale,
    );
}
