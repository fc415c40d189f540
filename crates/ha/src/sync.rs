//! Synchronous replication, as the holder runs it: which standbys its
//! Postgres waits for (`synchronous_standby_names`), and which members the
//! Raft state names as synchronous, so that they alone may take the lease.
//!
//! The invariant: every member of the committed set has every commit the
//! holder acknowledged. It holds because the set only ever names members
//! Postgres already waits for. So a narrower set is committed *before*
//! Postgres stops waiting for a member, and a wider one only *after*
//! Postgres reports the new member synchronous. One step per round, each
//! taken only once the previous one is visible (committed or reloaded).

use crate::decide::tagged_in;
use raftgres_state::ClusterState;
use std::collections::BTreeSet;

/// Whether the holder, whose primary crashed, hands the lease to a
/// synchronous standby instead of starting again in place: crash recovery
/// would make visible the commits that were still waiting for a standby,
/// acknowledged to nobody and held by no standby. `live` says whether a
/// member runs and reports. With no live synchronous standby the holder
/// starts in place, since nobody else may take over.
pub fn hands_over_after_crash(state: &ClusterState, me: &str, live: &dyn Fn(&str) -> bool) -> bool {
    state.synchronous && state.sync_set.iter().any(|m| m != me && live(m))
}

/// A standby as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyView {
    /// Its `application_name`, which is its member name.
    pub name: String,
    /// Its WAL sender is in the `streaming` state.
    pub streaming: bool,
    /// Postgres counts it as synchronous now (`sync_state` `sync`).
    pub synchronous: bool,
}

/// What the primary's commits wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFor {
    /// Nothing: asynchronous replication.
    Nobody,
    /// Any one standby (strict mode with no synchronous standby left:
    /// commits wait rather than go unreplicated).
    AnyOne,
    /// Every one of these.
    All(BTreeSet<String>),
}

/// The one step the holder takes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    None,
    /// Commit this set (and whether commits wait for it) to the Raft state.
    Commit {
        members: BTreeSet<String>,
        synchronous: bool,
    },
    /// Have Postgres wait for this, and reload it.
    Configure(WaitFor),
}

/// May `name` be one of the holder's synchronous standbys: a database
/// member that may lead (a member that may never be promoted would keep
/// acknowledged commits from the ones that may), not tagged `nosync`, and
/// streaming from the holder now.
fn may_be_synchronous(state: &ClusterState, name: &str, standbys: &[StandbyView]) -> bool {
    state
        .members
        .get(name)
        .is_some_and(|m| tagged_in(m) && !m.tags.nosync)
        && standbys.iter().any(|s| s.name == name && s.streaming)
}

/// What `synchronous_standby_names` must say for the committed set and the
/// member being added, if any.
pub fn wait_for(state: &ClusterState, adding: Option<&str>) -> WaitFor {
    let Some(config) = &state.config else {
        return WaitFor::Nobody;
    };
    if !config.values.synchronous_mode {
        return WaitFor::Nobody;
    }
    let mut names = state.sync_set.clone();
    names.extend(adding.map(str::to_owned));
    if !names.is_empty() {
        WaitFor::All(names)
    } else if config.values.synchronous_mode_strict {
        WaitFor::AnyOne
    } else {
        WaitFor::Nobody
    }
}

/// The holder's next step, given what its Postgres reports and what it was
/// last configured to wait for (`None`: not known, as after an agent
/// restart).
pub fn plan_sync(
    state: &ClusterState,
    me: &str,
    standbys: &[StandbyView],
    configured: Option<&WaitFor>,
) -> SyncStep {
    let Some(config) = &state.config else {
        return SyncStep::None;
    };
    let values = &config.values;
    let set = &state.sync_set;
    if !values.synchronous_mode {
        if state.synchronous || !set.is_empty() {
            // Failover is freed before commits stop waiting: the reverse
            // would let a member without them take over in between.
            return SyncStep::Commit {
                members: BTreeSet::new(),
                synchronous: false,
            };
        }
        return configure(WaitFor::Nobody, configured);
    }
    let count = usize::try_from(values.synchronous_node_count).unwrap_or(usize::MAX);
    let keep: BTreeSet<String> = set
        .iter()
        .filter(|name| name.as_str() != me && may_be_synchronous(state, name, standbys))
        .take(count)
        .cloned()
        .collect();
    if keep != *set || !state.synchronous {
        return SyncStep::Commit {
            members: keep,
            synchronous: true,
        };
    }
    let adding = (set.len() < count)
        .then(|| {
            let mut candidates: Vec<_> = standbys
                .iter()
                .filter(|s| {
                    s.name != me
                        && !set.contains(&s.name)
                        && may_be_synchronous(state, &s.name, standbys)
                })
                .filter_map(|s| state.members.get(&s.name))
                .collect();
            candidates.sort_by(|a, b| {
                b.tags
                    .failover_priority
                    .cmp(&a.tags.failover_priority)
                    .then_with(|| a.name.cmp(&b.name))
            });
            candidates.first().map(|m| m.name.clone())
        })
        .flatten();
    let wanted = wait_for(state, adding.as_deref());
    if configured != Some(&wanted) {
        return SyncStep::Configure(wanted);
    }
    match adding {
        Some(name) if standbys.iter().any(|s| s.name == name && s.synchronous) => {
            let mut members = set.clone();
            members.insert(name);
            SyncStep::Commit {
                members,
                synchronous: true,
            }
        }
        _ => SyncStep::None,
    }
}

fn configure(wanted: WaitFor, configured: Option<&WaitFor>) -> SyncStep {
    if configured == Some(&wanted) {
        SyncStep::None
    } else {
        SyncStep::Configure(wanted)
    }
}

#[cfg(test)]
mod tests;
