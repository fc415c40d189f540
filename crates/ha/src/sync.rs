//! Synchronous replication, as the holder runs it: which standbys its
//! Postgres waits for (`synchronous_standby_names`), and which members the
//! Raft state names as synchronous, so that they alone may take the lease.
//!
//! The invariant, synchronous mode on: every member of the committed set
//! has every commit the holder acknowledged. It holds because the set only
//! ever names members Postgres already waits for. So a narrower set is
//! committed *before* Postgres stops waiting for a member, and a wider one
//! only *after* Postgres reports the new member synchronous.
//!
//! Quorum mode: the committed set `V` and quorum `k` claim that each
//! acknowledged commit is on at least `k` members of `V`, while Postgres
//! waits for `ANY n (S)`. The claim stays true while `S` is within `V` and
//! `n >= k`. So the claim is weakened first (members added, `k` lowered:
//! what held still holds), Postgres is changed next, and the claim is
//! strengthened (members removed, `k` raised) last, only once `k` of the
//! new set have flushed past where the primary was when Postgres took the
//! new set: the commits acknowledged before are then on them too.
//!
//! One step per round, each taken only once the previous one is visible
//! (committed or reloaded).

use crate::candidacy::tagged_in;
use raftgres_state::{ClusterState, Command, ConfigValues, Epoch, Lsn, SyncMode};
use std::collections::BTreeSet;

/// Whether the holder, whose primary crashed, hands the lease to a
/// synchronous standby instead of starting again in place: crash recovery
/// would make visible the commits that were still waiting for a standby,
/// acknowledged to nobody and held by no standby. `live` says whether a
/// member runs and reports. With no live synchronous standby the holder
/// starts in place, since nobody else may take over.
/// In quorum mode the live standbys must be enough to show a candidate
/// has every commit (`n - k + 1` of them).
pub fn hands_over_after_crash(state: &ClusterState, me: &str, live: &dyn Fn(&str) -> bool) -> bool {
    if !state.synchronous {
        return false;
    }
    let alive = state
        .sync_set
        .iter()
        .filter(|m| *m != me && live(m))
        .count();
    match state.sync_quorum {
        None => alive > 0,
        Some(0) => false,
        Some(k) => {
            let k = usize::try_from(k).unwrap_or(usize::MAX);
            alive > state.sync_set.len().saturating_sub(k)
        }
    }
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
    /// The WAL it has flushed (`flush_lsn`).
    pub flushed: Option<Lsn>,
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
    /// Any `n` of these (quorum mode).
    Any { n: u32, names: BTreeSet<String> },
}

/// What the running primary was last configured to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    pub wait: WaitFor,
    /// Its WAL position read right after it took `wait`: every commit it
    /// acknowledged before is at or below it.
    pub at: Option<Lsn>,
}

/// The one step the holder takes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    None,
    /// Commit this set (and whether commits wait for it) to the Raft state.
    Commit {
        members: BTreeSet<String>,
        synchronous: bool,
        /// Quorum mode: how many of `members` have each commit.
        quorum: Option<u32>,
    },
    /// Have Postgres wait for this, and reload it.
    Configure(WaitFor),
}

impl SyncStep {
    /// The command by which the holder at `epoch` records a `Commit` step
    /// in the Raft state; `None` for the other steps.
    pub fn command(&self, holder: &str, epoch: Epoch) -> Option<Command> {
        let SyncStep::Commit {
            members,
            synchronous,
            quorum,
        } = self
        else {
            return None;
        };
        Some(Command::SetSyncSet {
            member: holder.to_owned(),
            epoch,
            members: members.clone(),
            synchronous: *synchronous,
            quorum: *quorum,
        })
    }
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
    let values = &config.values;
    let mut names = state.sync_set.clone();
    match values.synchronous_mode {
        SyncMode::Off => return WaitFor::Nobody,
        SyncMode::On => names.extend(adding.map(str::to_owned)),
        SyncMode::Quorum => {}
    }
    if names.is_empty() {
        return if values.synchronous_mode_strict {
            WaitFor::AnyOne
        } else {
            WaitFor::Nobody
        };
    }
    match values.synchronous_mode {
        SyncMode::Quorum => WaitFor::Any {
            n: quorum_wait(values, names.len()).max(claimed_quorum(state)),
            names,
        },
        _ => WaitFor::All(names),
    }
}

/// How many of `standbys` candidates a quorum-mode primary waits for:
/// `synchronous_node_count`, or all there are when fewer, unless strict
/// (then commits wait for the missing ones to come).
fn quorum_wait(values: &ConfigValues, standbys: usize) -> u32 {
    let count = values.synchronous_node_count.max(1);
    if values.synchronous_mode_strict {
        count
    } else {
        count.min(u32::try_from(standbys).unwrap_or(u32::MAX))
    }
}

/// The committed claim's `k`: each commit is on at least this many members
/// of the set (all of them outside quorum mode, none when asynchronous).
fn claimed_quorum(state: &ClusterState) -> u32 {
    if !state.synchronous {
        return 0;
    }
    state
        .sync_quorum
        .unwrap_or_else(|| u32::try_from(state.sync_set.len()).unwrap_or(u32::MAX))
}

/// The holder's next step, given what its Postgres reports and what it was
/// last configured to wait for (`None`: not known, as after an agent
/// restart).
pub fn plan_sync(
    state: &ClusterState,
    me: &str,
    standbys: &[StandbyView],
    configured: Option<&Configured>,
) -> SyncStep {
    let Some(config) = &state.config else {
        return SyncStep::None;
    };
    let values = &config.values;
    let set = &state.sync_set;
    let holder = Holder {
        state,
        values,
        me,
        standbys,
        configured,
    };
    match values.synchronous_mode {
        SyncMode::Off => {
            if state.synchronous || !set.is_empty() {
                // Failover is freed before commits stop waiting: the reverse
                // would let a member without them take over in between.
                return asynchronous();
            }
            configure(WaitFor::Nobody, configured)
        }
        SyncMode::On => holder.plan_on(),
        SyncMode::Quorum => holder.plan_quorum(),
    }
}

fn asynchronous() -> SyncStep {
    SyncStep::Commit {
        members: BTreeSet::new(),
        synchronous: false,
        quorum: None,
    }
}

/// What the holder plans from, in the sync modes that name standbys.
struct Holder<'a> {
    state: &'a ClusterState,
    values: &'a ConfigValues,
    me: &'a str,
    standbys: &'a [StandbyView],
    configured: Option<&'a Configured>,
}

impl Holder<'_> {
    fn plan_on(&self) -> SyncStep {
        let set = &self.state.sync_set;
        if let Some(k) = self.state.sync_quorum {
            // Left over from quorum mode: "k of the set" is "all of it" only
            // when k is its size; otherwise no member is known to have every
            // commit, and the set is built up again from none.
            let all = usize::try_from(k).is_ok_and(|k| k == set.len());
            return SyncStep::Commit {
                members: if all { set.clone() } else { BTreeSet::new() },
                synchronous: true,
                quorum: None,
            };
        }
        let count = usize::try_from(self.values.synchronous_node_count).unwrap_or(usize::MAX);
        let keep: BTreeSet<String> = set
            .iter()
            .filter(|name| {
                name.as_str() != self.me && may_be_synchronous(self.state, name, self.standbys)
            })
            .take(count)
            .cloned()
            .collect();
        if keep != *set || !self.state.synchronous {
            return SyncStep::Commit {
                members: keep,
                synchronous: true,
                quorum: None,
            };
        }
        let adding = (set.len() < count)
            .then(|| {
                let mut candidates: Vec<_> = self
                    .standbys
                    .iter()
                    .filter(|s| {
                        s.name != self.me
                            && !set.contains(&s.name)
                            && may_be_synchronous(self.state, &s.name, self.standbys)
                    })
                    .filter_map(|s| self.state.members.get(&s.name))
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
        let wanted = wait_for(self.state, adding.as_deref());
        if self.configured.map(|c| &c.wait) != Some(&wanted) {
            return SyncStep::Configure(wanted);
        }
        match adding {
            Some(name)
                if self
                    .standbys
                    .iter()
                    .any(|s| s.name == name && s.synchronous) =>
            {
                let mut members = set.clone();
                members.insert(name);
                SyncStep::Commit {
                    members,
                    synchronous: true,
                    quorum: None,
                }
            }
            _ => SyncStep::None,
        }
    }

    fn plan_quorum(&self) -> SyncStep {
        let set = &self.state.sync_set;
        // Every member that may be one: a quorum is as wide as the self.standbys.
        let targets: BTreeSet<String> = self
            .standbys
            .iter()
            .filter(|s| s.name != self.me && may_be_synchronous(self.state, &s.name, self.standbys))
            .map(|s| s.name.clone())
            .collect();
        if targets.is_empty() && !self.values.synchronous_mode_strict {
            if self.state.synchronous || !set.is_empty() {
                return asynchronous();
            }
            return configure(WaitFor::Nobody, self.configured);
        }
        let count = usize::try_from(self.values.synchronous_node_count).unwrap_or(usize::MAX);
        let k_target = u32::try_from(count.min(targets.len())).unwrap_or(u32::MAX);
        let k_now = claimed_quorum(self.state);

        // Weaker first: more members or a lower k is implied by what held.
        let widened: BTreeSet<String> = set.union(&targets).cloned().collect();
        let lowered = k_now.min(k_target);
        if !self.state.synchronous
            || self.state.sync_quorum.is_none()
            || widened != *set
            || lowered < k_now
        {
            return SyncStep::Commit {
                members: widened,
                synchronous: true,
                quorum: Some(lowered),
            };
        }

        // Postgres next: the targets are within the set, and it waits for at
        // least k of them.
        let wanted = if targets.is_empty() {
            WaitFor::AnyOne
        } else {
            WaitFor::Any {
                n: quorum_wait(self.values, targets.len()),
                names: targets.clone(),
            }
        };
        let Some(done) = self.configured.filter(|c| c.wait == wanted) else {
            return SyncStep::Configure(wanted);
        };

        // Stronger last, on evidence.
        if *set == targets && k_now == k_target {
            return SyncStep::None;
        }
        let Some(at) = done.at else {
            return SyncStep::None;
        };
        let caught_up = self
            .standbys
            .iter()
            .filter(|s| targets.contains(&s.name) && s.flushed.is_some_and(|f| f >= at))
            .count();
        if caught_up >= count.min(targets.len()) {
            SyncStep::Commit {
                members: targets,
                synchronous: true,
                quorum: Some(k_target),
            }
        } else {
            SyncStep::None
        }
    }
}

fn configure(wanted: WaitFor, configured: Option<&Configured>) -> SyncStep {
    if configured.map(|c| &c.wait) == Some(&wanted) {
        SyncStep::None
    } else {
        SyncStep::Configure(wanted)
    }
}

#[cfg(test)]
mod tests;
