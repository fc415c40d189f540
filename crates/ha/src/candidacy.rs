//! "May this member lead?" and "is the holder a running primary?", each
//! asked in one place. The decision asks the first of itself and of its
//! rivals, a switchover of the member it hands over to, and the API through
//! the switchover; the second decides where replicas clone and rewind from,
//! where poolers send writes and whether a switchover has a leader to move.

use crate::timeline::{OffTimeline, on_current_timeline};
use raftgres_state::{ClusterState, Lsn, Member, MemberRole, PgState};
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// Why a member may not take the lease now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("{0} is a witness and runs no Postgres")]
    Witness(String),
    #[error("{0} is tagged nofailover (or failover_priority 0) and may not become primary")]
    TaggedOut(String),
    #[error("{0} already holds the lease")]
    HoldsLease(String),
    #[error("{0}'s pre_promote script refused its promotion; it stays out for two ttls")]
    Vetoed(String),
    #[error(
        "{name} is not a synchronous standby; in synchronous mode only {sync_set:?} may take over"
    )]
    NotSynchronous {
        name: String,
        sync_set: BTreeSet<String>,
    },
    #[error("{name} is not a running replica (role {role:?}, state {state:?})")]
    NotRunningReplica {
        name: String,
        role: MemberRole,
        state: PgState,
    },
    #[error("{0} is not streaming from the primary")]
    NotStreaming(String),
    #[error("{0} has not reported its status recently")]
    Silent(String),
    #[error(
        "{name} lags {lag} bytes behind the primary, more than maximum_lag_on_failover ({max_lag})"
    )]
    Lags {
        name: String,
        lag: u64,
        max_lag: u64,
    },
    #[error(transparent)]
    OffTimeline(#[from] OffTimeline),
}

/// Tagged in for failover: runs Postgres, not `nofailover`, and a
/// `failover_priority` above 0.
pub fn tagged_in(m: &Member) -> bool {
    !m.witness && !m.tags.nofailover && m.tags.failover_priority > 0
}

/// The rules every path shares: a member that runs Postgres, is tagged in,
/// has not vetoed its own promotion, and that the synchronous rule lets
/// take the lease.
pub fn may_compete(state: &ClusterState, m: &Member) -> Result<(), Unfit> {
    if m.witness {
        return Err(Unfit::Witness(m.name.clone()));
    }
    if !tagged_in(m) {
        return Err(Unfit::TaggedOut(m.name.clone()));
    }
    if m.promotion_vetoed {
        return Err(Unfit::Vetoed(m.name.clone()));
    }
    if !state.may_take_lease(&m.name) {
        return Err(Unfit::NotSynchronous {
            name: m.name.clone(),
            sync_set: state.sync_set.clone(),
        });
    }
    Ok(())
}

/// A rival judged by its record: it may compete, runs as a replica,
/// reported recently, and is on the cluster's timeline. A member that may
/// not take the lease never counts as a rival: deferring to it would leave
/// the lease to nobody.
pub fn live_rival(
    state: &ClusterState,
    m: &Member,
    fresh: &dyn Fn(&Member) -> bool,
) -> Result<(), Unfit> {
    may_compete(state, m)?;
    if m.pg_state != PgState::Running || m.role != MemberRole::Replica {
        return Err(Unfit::NotRunningReplica {
            name: m.name.clone(),
            role: m.role,
            state: m.pg_state,
        });
    }
    if !fresh(m) {
        return Err(Unfit::Silent(m.name.clone()));
    }
    Ok(on_current_timeline(state, &m.name, m.timeline, false)?)
}

/// Whether a member with WAL up to `lsn` is within `maximum_lag_on_failover`
/// of the last position the holder reported.
pub fn within_lag(state: &ClusterState, name: &str, lsn: Lsn) -> Result<(), Unfit> {
    let max_lag = state
        .config
        .as_ref()
        .map_or(0, |c| c.values.maximum_lag_on_failover);
    let lag = state.lease.last_lsn.unwrap_or_default().bytes_since(lsn);
    if lag > max_lag {
        return Err(Unfit::Lags {
            name: name.to_owned(),
            lag,
            max_lag,
        });
    }
    Ok(())
}

/// How candidates are ordered, best last: the most WAL, then the highest
/// `failover_priority`, then the first name.
pub type Rank<'a> = (Lsn, u32, Reverse<&'a str>);

/// `m`'s rank with WAL up to `lsn`.
pub fn rank(m: &Member, lsn: Lsn) -> Rank<'_> {
    (lsn, m.tags.failover_priority, Reverse(m.name.as_str()))
}

/// A member's rank by its record: what it has replayed.
pub fn recorded_rank(m: &Member) -> Rank<'_> {
    rank(m, m.replay_lsn.unwrap_or_default())
}

/// The holder's record, when it says its Postgres runs as primary at an
/// address: only then can replicas clone, rewind or follow from it (any
/// earlier, while it still starts or promotes, they would copy the old
/// timeline) and poolers send it writes.
pub fn holder_running_primary(state: &ClusterState) -> Option<&Member> {
    let holder = state.lease.holder.as_deref()?;
    state.members.get(holder).filter(|m| {
        m.role == MemberRole::Primary && m.pg_state == PgState::Running && m.pg_address.is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::cluster;

    #[test]
    fn a_rival_must_be_a_fresh_running_replica_that_may_compete() {
        let s = cluster(Some("a"));
        let b = s.members["b"].clone();
        let all_fresh = |_: &Member| true;
        assert_eq!(live_rival(&s, &b, &all_fresh), Ok(()));
        let silent = live_rival(&s, &b, &|_| false).unwrap_err();
        assert_eq!(silent, Unfit::Silent("b".into()));
        let primary = live_rival(&s, &s.members["a"], &all_fresh).unwrap_err();
        assert!(
            primary.to_string().contains("not a running replica"),
            "{primary}"
        );
        let mut tagged_out = b.clone();
        tagged_out.tags.failover_priority = 0;
        assert_eq!(
            live_rival(&s, &tagged_out, &all_fresh),
            Err(Unfit::TaggedOut("b".into()))
        );
        let mut sync = s.clone();
        sync.synchronous = true;
        sync.sync_set = ["c".to_owned()].into();
        let refused = live_rival(&sync, &b, &all_fresh).unwrap_err();
        assert!(
            refused.to_string().contains("not a synchronous standby"),
            "{refused}"
        );
        let mut behind = s.clone();
        behind.lease.timeline = Some(2);
        let off = live_rival(&behind, &b, &all_fresh).unwrap_err();
        assert!(matches!(off, Unfit::OffTimeline(_)), "{off}");
    }

    #[test]
    fn lag_is_measured_from_the_holders_last_position() {
        let mut s = cluster(Some("a"));
        let max = s.config.as_ref().unwrap().values.maximum_lag_on_failover;
        s.lease.last_lsn = Some(Lsn(10_000 + max));
        assert_eq!(within_lag(&s, "b", Lsn(10_000)), Ok(()));
        let lags = within_lag(&s, "b", Lsn(9_999)).unwrap_err();
        assert_eq!(
            lags.to_string(),
            format!(
                "b lags {} bytes behind the primary, more than maximum_lag_on_failover ({max})",
                max + 1
            )
        );
    }

    #[test]
    fn rank_prefers_wal_then_priority_then_the_first_name() {
        let s = cluster(Some("a"));
        let (b, c) = (&s.members["b"], &s.members["c"]);
        assert!(rank(b, Lsn(2)) > rank(c, Lsn(1)), "more WAL wins");
        assert!(rank(b, Lsn(1)) > rank(c, Lsn(1)), "same WAL: b sorts first");
        let mut keen = c.clone();
        keen.tags.failover_priority = b.tags.failover_priority + 1;
        assert!(
            rank(&keen, Lsn(1)) > rank(b, Lsn(1)),
            "priority before name"
        );
    }

    #[test]
    fn only_a_holder_recorded_as_running_primary_at_an_address_counts() {
        let mut s = cluster(Some("a"));
        assert_eq!(
            holder_running_primary(&s).map(|m| m.name.as_str()),
            Some("a")
        );
        s.members.get_mut("a").unwrap().pg_state = PgState::Starting;
        assert_eq!(holder_running_primary(&s), None);
        let mut no_address = cluster(Some("a"));
        no_address.members.get_mut("a").unwrap().pg_address = None;
        assert_eq!(holder_running_primary(&no_address), None);
        assert_eq!(holder_running_primary(&cluster(None)), None);
    }
}
