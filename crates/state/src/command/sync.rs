//! The synchronous-replication part of the state machine: the holder's
//! synchronous set and its claim, who may take the lease because of them,
//! and the positions quorum standbys report once a lease ended.

use super::{Applied, Rejection, Response};
use crate::lease::{Epoch, LeaseVersion};
use crate::model::{ClusterState, Lsn, ReportedPosition};
use std::collections::BTreeSet;

impl ClusterState {
    pub(super) fn report_position(
        &mut self,
        member: &str,
        lease: LeaseVersion,
        lsn: Lsn,
    ) -> Response {
        self.check_can_lead(member)?;
        let current = self.lease.version();
        if lease != current {
            return Err(Rejection::LeaseVersionChanged {
                expected: lease,
                current,
            });
        }
        if self.lease.is_held_by(member) {
            return Err(Rejection::MemberHoldsLease {
                name: member.to_owned(),
            });
        }
        self.positions
            .insert(member.to_owned(), ReportedPosition { lease, lsn });
        Ok(Applied::Done)
    }

    pub(super) fn set_sync_set(
        &mut self,
        member: &str,
        epoch: Epoch,
        members: &BTreeSet<String>,
        synchronous: bool,
        quorum: Option<u32>,
    ) -> Response {
        self.check_holder(member, epoch)?;
        if !synchronous && (!members.is_empty() || quorum.is_some()) {
            return Err(Rejection::Invalid {
                reason: "asynchronous replication has no synchronous standbys".into(),
            });
        }
        if let Some(k) = quorum
            && usize::try_from(k).map_or(true, |k| k > members.len())
        {
            return Err(Rejection::Invalid {
                reason: format!(
                    "a quorum of {k} among {} standbys: no more can have a commit than there are",
                    members.len()
                ),
            });
        }
        for name in members {
            if name == member {
                return Err(Rejection::Invalid {
                    reason: format!("the holder {member} cannot be its own synchronous standby"),
                });
            }
            match self.members.get(name) {
                None => {
                    return Err(Rejection::UnknownMember { name: name.clone() });
                }
                Some(m) if m.witness => {
                    return Err(Rejection::Invalid {
                        reason: format!("{name} is a witness and cannot be a synchronous standby"),
                    });
                }
                Some(_) => {}
            }
        }
        self.sync_set = members.clone();
        self.synchronous = synchronous;
        self.sync_quorum = quorum;
        Ok(Applied::Done)
    }

    /// The member that held the lease last: its holder, or, once released,
    /// the one that held it before.
    pub fn last_holder(&self) -> Option<&str> {
        self.lease
            .holder
            .as_deref()
            .or_else(|| self.history.last().map(|h| h.new_holder.as_str()))
    }

    /// In synchronous mode only the members known to have every
    /// acknowledged commit may take the lease: the synchronous standbys and
    /// the last holder itself. In quorum mode a quorum standby must also
    /// show it: each commit is on at least `k` of the `n` standbys, so any
    /// `n - k + 1` of them include one that has it, and a candidate whose
    /// position is no behind theirs, all measured after the lease ended
    /// (after the old primary was fenced), has it too.
    pub fn may_take_lease(&self, name: &str) -> bool {
        self.check_synchronous(name).is_ok()
    }

    /// The standbys' positions that back `name` in quorum mode, itself
    /// included, and how many are needed: `None` outside quorum mode.
    pub fn quorum_evidence(&self, name: &str) -> Option<(usize, usize)> {
        let k = self.sync_quorum?;
        let needed = self
            .sync_set
            .len()
            .saturating_sub(usize::try_from(k).unwrap_or(usize::MAX))
            .saturating_add(1);
        let current = self.lease.version();
        let at = |m: &str| {
            self.positions
                .get(m)
                .filter(|p| p.lease == current)
                .map(|p| p.lsn)
        };
        let confirmed = match at(name) {
            Some(mine) => self
                .sync_set
                .iter()
                .filter(|m| at(m).is_some_and(|theirs| theirs <= mine))
                .count(),
            None => 0,
        };
        Some((needed, confirmed))
    }

    pub(super) fn check_synchronous(&self, name: &str) -> Result<(), Rejection> {
        self.check_in_sync_set(name)?;
        if self.synchronous && self.last_holder() != Some(name) {
            match self.quorum_evidence(name) {
                Some((needed, confirmed)) if confirmed < needed => {
                    return Err(Rejection::QuorumNotShown {
                        name: name.to_owned(),
                        sync_set: self.sync_set.clone(),
                        needed,
                        confirmed,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The rule a switchover's candidate passes: it has replayed the old
    /// primary's shutdown checkpoint, so every commit, and it is a
    /// synchronous or quorum standby.
    pub(super) fn check_in_sync_set(&self, name: &str) -> Result<(), Rejection> {
        if !self.synchronous || self.sync_set.contains(name) || self.last_holder() == Some(name) {
            return Ok(());
        }
        Err(Rejection::NotSynchronous {
            name: name.to_owned(),
            sync_set: self.sync_set.clone(),
        })
    }

    /// The lease passes to `holder`: the standbys are the old set without
    /// it. In quorum mode one of the members that had a commit may be the
    /// new holder, so the others are known to hold one fewer. The new
    /// holder's commits wait for them from its first one.
    pub(super) fn hand_sync_set_to(&mut self, holder: &str) {
        if self.sync_set.remove(holder)
            && let Some(k) = &mut self.sync_quorum
        {
            *k = k.saturating_sub(1);
        }
        self.positions.clear();
    }
}
