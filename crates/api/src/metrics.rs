//! `GET /metrics`: OpenMetrics text from one state snapshot and this
//! member's health. A fresh registry per scrape: a handful of values, and
//! nothing to keep in step with the state between scrapes.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use raftgres_state::ClusterState;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use crate::cluster::is_witness;
use crate::health::NodeHealth;
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
        ConstGauge::new(u64::from(
            state.config.as_ref().is_some_and(|c| c.values.pause),
        )),
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
    let mut text = String::with_capacity(4096);
    encode(&mut text, &registry)?;
    Ok(text)
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
