//! `GET /cluster` and `GET /history`: Patroni's documents, built from this
//! member's applied copy of the cluster state and its judgement of how
//! recently each member reported. Pure.

use raftgres_state::{
    ClusterState, HistoryEntry, HostPort, Lsn, Member, MemberRole, PendingRestart, PgState,
    ScheduledRestart,
};
use serde::Serialize;
use serde::ser::{SerializeTuple, Serializer};
use std::collections::BTreeMap;

use crate::ops::MemberReport;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct ClusterDocument<'a> {
    scope: &'a str,
    members: Vec<MemberDocument<'a>>,
    pause: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_switchover: Option<ScheduledSwitchover<'a>>,
    lease: LeaseDocument<'a>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct MemberDocument<'a> {
    name: &'a str,
    role: &'static str,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<u32>,
    /// Patroni 4's positions of a non-leader: WAL received, WAL replayed,
    /// and `lsn` (the replayed one, which `lag` measures), each with its lag
    /// behind the leader.
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_lsn: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_lag: Option<Lag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_lsn: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_lag: Option<Lag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lsn: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<Lag>,
    #[serde(serialize_with = "crate::body::serialize_tags")]
    tags: BTreeMap<String, String>,
    /// Left out for a stale member: what it reported last says nothing of
    /// its Postgres now.
    #[serde(flatten)]
    pending_restart: Option<PendingRestartDocument<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_restart: Option<RestartDocument<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_age_is_lower_bound: Option<bool>,
    stale: bool,
}

/// Bytes behind the leader, Patroni's `"unknown"`, or `null` for a stale
/// member: its last replay position says nothing about it now.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
enum Lag {
    Bytes(u64),
    Unknown(&'static str),
    Stale,
}

/// An LSN as Postgres writes it (`0/3000060`), Patroni's `"unknown"`, or
/// `null` for a stale member.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
enum Position {
    Lsn(String),
    Unknown(&'static str),
    Stale,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct ScheduledSwitchover<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct LeaseDocument<'a> {
    holder: Option<&'a str>,
    epoch: u64,
    /// The cluster's current timeline (rule 10): only data on it may lead.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<u32>,
}

/// The `/cluster` document of `state`, for the cluster named `scope`, with
/// each member's report age as this agent judged it.
pub(crate) fn cluster_document<'a>(
    state: &'a ClusterState,
    scope: &'a str,
    reports: &BTreeMap<String, MemberReport>,
) -> ClusterDocument<'a> {
    ClusterDocument {
        scope,
        members: state
            .members
            .values()
            .map(|member| member_document(state, member, reports.get(&member.name)))
            .collect(),
        pause: state.paused(),
        scheduled_switchover: state
            .switchover
            .as_ref()
            .map(|switchover| ScheduledSwitchover {
                at: switchover.at_unix_ms.and_then(rfc3339),
                from: switchover.from.as_deref(),
                to: switchover.to.as_deref(),
            }),
        lease: LeaseDocument {
            holder: state.lease.holder.as_deref(),
            epoch: state.lease.epoch.0,
            timeline: state.lease.timeline,
        },
    }
}

/// Votes in Raft and runs no Postgres; either record field says so.
pub(crate) fn is_witness(member: &Member) -> bool {
    member.witness || member.role == MemberRole::Witness
}

/// A stale member keeps its last role and address, but its state is
/// `unknown` and it has no lag: an operator must see a dead member as dead,
/// not as "running, lag 0".
fn member_document<'a>(
    state: &ClusterState,
    member: &'a Member,
    report: Option<&MemberReport>,
) -> MemberDocument<'a> {
    let stale = report.is_some_and(|r| r.stale);
    let witness = is_witness(member);
    let leader = state.lease.is_held_by(&member.name);
    let role = if leader {
        "leader"
    } else if witness {
        "witness"
    } else if state.synchronous && state.sync_set.contains(&member.name) {
        if state.sync_quorum.is_some() {
            "quorum_standby"
        } else {
            "sync_standby"
        }
    } else {
        "replica"
    };
    // An address that is not host:port is shown whole, as the host.
    let (host, port) = match (member.pg_host_port(), &member.pg_address) {
        (Some(HostPort { host, port }), _) => (Some(host), Some(port)),
        (None, address) => (address.clone(), None),
    };
    let follower = !leader && !witness;
    let at = |lsn: Option<Lsn>| {
        follower.then(|| match lsn {
            _ if stale => Position::Stale,
            Some(lsn) => Position::Lsn(lsn.to_string()),
            None => Position::Unknown("unknown"),
        })
    };
    let behind = |lsn: Option<Lsn>| {
        follower.then(|| match (state.lease.last_lsn, lsn) {
            _ if stale => Lag::Stale,
            (Some(leader_lsn), Some(lsn)) => Lag::Bytes(leader_lsn.bytes_since(lsn)),
            _ => Lag::Unknown("unknown"),
        })
    };
    MemberDocument {
        name: &member.name,
        role,
        state: if stale {
            "unknown"
        } else {
            member_state(member)
        },
        api_url: member
            .api_url
            .as_deref()
            .map(|url| format!("{}/patroni", url.trim_end_matches('/'))),
        host,
        port,
        timeline: member.timeline,
        receive_lsn: at(member.receive_lsn),
        receive_lag: behind(member.receive_lsn),
        replay_lsn: at(member.replay_lsn),
        replay_lag: behind(member.replay_lsn),
        lsn: at(member.replay_lsn),
        lag: behind(member.replay_lsn),
        tags: member.tags.shown(),
        pending_restart: PendingRestartDocument::of(&member.pending_restart).filter(|_| !stale),
        // Shown stale too: it stays in the record until its agent acts.
        scheduled_restart: member
            .scheduled_restart
            .as_deref()
            .map(RestartDocument::from),
        report_age_ms: report.map(|r| u64::try_from(r.age.as_millis()).unwrap_or(u64::MAX)),
        report_age_is_lower_bound: report.map(|r| r.age_is_lower_bound),
        stale,
    }
}

fn member_state(member: &Member) -> &'static str {
    match member.pg_state {
        PgState::Running if member.streaming && member.role == MemberRole::Replica => "streaming",
        PgState::Running => "running",
        PgState::Starting => "starting",
        PgState::Stopped => "stopped",
        PgState::Crashed => "crashed",
        PgState::Unknown => "unknown",
        // A witness has no Postgres by design; its record being there is
        // all there is to run.
        PgState::Absent => "running",
    }
}

/// Patroni's `pending_restart`, present, and true, only while a setting
/// waits for a restart of the member's Postgres, with the settings as
/// `pending_restart_reason`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct PendingRestartDocument<'a> {
    pending_restart: bool,
    pending_restart_reason: &'a BTreeMap<String, PendingRestart>,
}

impl<'a> PendingRestartDocument<'a> {
    pub(crate) fn of(settings: &'a BTreeMap<String, PendingRestart>) -> Option<Self> {
        (!settings.is_empty()).then_some(PendingRestartDocument {
            pending_restart: true,
            pending_restart_reason: settings,
        })
    }
}

/// A scheduled restart as Patroni shows it in `/patroni` and `/cluster`
/// (`scheduled_restart`): its time as `schedule`, and the conditions and
/// timeout it was given.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct RestartDocument<'a> {
    schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres_version: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    restart_pending: bool,
    /// Seconds, as Patroni keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<u64>,
}

impl<'a> From<&'a ScheduledRestart> for RestartDocument<'a> {
    fn from(restart: &'a ScheduledRestart) -> Self {
        let options = &restart.options;
        RestartDocument {
            schedule: rfc3339(restart.at_unix_ms),
            role: options.role.map(|role| role.as_str()),
            postgres_version: options.postgres_version.as_ref().map(|v| v.as_str()),
            restart_pending: options.restart_pending,
            timeout: options.timeout_ms.map(|ms| ms / 1000),
        }
    }
}

/// Unix milliseconds as RFC 3339 UTC; `None` outside the years jiff knows
/// (-9999 to 9999), which only a corrupt record could hold.
pub(crate) fn rfc3339(unix_ms: u64) -> Option<String> {
    let ms = i64::try_from(unix_ms).ok()?;
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|at| at.to_string())
}

/// One `/history` row, serialized as Patroni's array
/// `[timeline, lsn, reason, timestamp, new_leader]`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HistoryRow<'a>(&'a HistoryEntry);

impl Serialize for HistoryRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = self.0;
        let mut row = serializer.serialize_tuple(5)?;
        row.serialize_element(&entry.timeline)?;
        row.serialize_element(&entry.lsn.map(|lsn| lsn.0))?;
        row.serialize_element(&entry.reason)?;
        row.serialize_element(&rfc3339(entry.at_unix_ms))?;
        row.serialize_element(&entry.new_holder)?;
        row.end()
    }
}

/// The `/history` document, oldest first as the state keeps it.
pub(crate) fn history_document(state: &ClusterState) -> Vec<HistoryRow<'_>> {
    state.history.iter().map(HistoryRow).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(1_795_341_600_000).as_deref(),
            Some("2026-11-22T10:00:00Z")
        );
        assert_eq!(rfc3339(u64::MAX), None);
    }
}
