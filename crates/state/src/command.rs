use crate::lease::{Epoch, Lease, LeaseVersion};
use crate::model::{
    ClusterIdentity, ClusterState, ConfigValues, DynamicConfig, HistoryEntry, Lsn, Member,
    Switchover,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Every change to the replicated state. Lease commands are compare-and-set:
/// they name the exact version or epoch they expect, and are rejected when
/// anything changed in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Records the database's identity; the first one wins.
    Initialize {
        system_id: String,
    },
    /// Writes the dynamic config if none exists yet; later ones are no-ops.
    BootstrapConfig {
        values: ConfigValues,
    },
    SetConfig {
        expected_version: u64,
        values: ConfigValues,
    },
    PublishMember {
        member: Member,
    },
    RemoveMember {
        name: String,
    },
    /// Take the lease, expecting exactly the version the candidate saw expire
    /// (or saw released).
    AcquireLease {
        member: String,
        expected: LeaseVersion,
        ttl_ms: u64,
        reason: String,
        at_unix_ms: u64,
    },
    RenewLease {
        member: String,
        epoch: Epoch,
        ttl_ms: u64,
        lsn: Option<Lsn>,
        timeline: Option<u32>,
    },
    /// Hand the lease back, expecting exactly the version the holder decided
    /// on: a release that commits late, after a renewal the holder went on to
    /// believe in, must not free a lease the holder still acts on.
    ReleaseLease {
        member: String,
        expected: LeaseVersion,
        lsn: Option<Lsn>,
    },
    /// Hand the lease to `to`, expecting exactly the version the holder
    /// decided on, for the same reason as a release.
    TransferLease {
        from: String,
        expected: LeaseVersion,
        to: String,
        reason: String,
        at_unix_ms: u64,
    },
    RequestSwitchover {
        switchover: Switchover,
    },
    CancelSwitchover,
    /// The holder's synchronous standbys: the members that have every
    /// commit it acknowledged, and so the only ones that may take its
    /// lease in synchronous mode. Compare-and-set on the holder's epoch.
    /// The holder commits a narrower set before its Postgres stops waiting
    /// for a member, and a wider one only once Postgres waits for it.
    SetSyncSet {
        member: String,
        epoch: Epoch,
        members: BTreeSet<String>,
        /// Whether the holder's commits wait for them (synchronous mode on).
        synchronous: bool,
        /// Quorum mode: how many of `members` have each acknowledged
        /// commit (see `ClusterState::sync_quorum`). `None`: all of them.
        #[serde(default)]
        quorum: Option<u32>,
    },
    /// A member's WAL position, measured after it saw lease version
    /// `lease` expire or released: evidence for a candidate in quorum mode.
    ReportPosition {
        member: String,
        lease: LeaseVersion,
        lsn: Lsn,
    },
}

/// What an applied command changed, for the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Applied {
    Done,
    Lease { lease: Lease },
    Config { config: DynamicConfig },
}

/// Why a command changed nothing. Each says what the proposer should do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Rejection {
    /// An acquire, release or transfer named a version that is no longer the
    /// current one: something committed since the proposer decided.
    #[error(
        "rejected: lease changed (expected {expected}, now {current}); re-read the lease and decide again"
    )]
    LeaseVersionChanged {
        expected: LeaseVersion,
        current: LeaseVersion,
    },
    #[error(
        "rejected: {member} does not hold the lease at epoch {epoch} (holder {holder:?}, epoch {current}); stop acting as primary"
    )]
    NotHolder {
        member: String,
        epoch: Epoch,
        holder: Option<String>,
        current: Epoch,
    },
    #[error("rejected: cluster already initialized with system id {system_id}")]
    AlreadyInitialized { system_id: String },
    #[error(
        "rejected: config changed (expected version {expected}, now {current}); re-read the config and retry"
    )]
    ConfigVersionChanged { expected: u64, current: u64 },
    #[error(
        "rejected: the dynamic config is not bootstrapped yet; retry once the cluster has formed"
    )]
    NotBootstrapped,
    #[error("rejected: unknown member {name}")]
    UnknownMember { name: String },
    #[error("rejected: {name} is a witness and cannot hold the lease")]
    WitnessCannotLead { name: String },
    #[error("rejected: {name} holds the lease; transfer or release it first")]
    MemberHoldsLease { name: String },
    #[error("rejected: invalid command: {reason}")]
    Invalid { reason: String },
    #[error(
        "rejected: {name} is not a synchronous standby, and in synchronous mode only those may \
         take the lease (they alone have every acknowledged commit); choose one of {sync_set:?}, \
         or fail over to {name} explicitly (`raftgresctl failover`) accepting the loss"
    )]
    NotSynchronous {
        name: String,
        sync_set: BTreeSet<String>,
    },
    #[error(
        "rejected: in quorum mode {name} must show that it has every acknowledged commit: \
         {needed} of the quorum standbys {sync_set:?} (itself included) must have reported \
         positions no further than its own since the lease ended, and {confirmed} have; \
         wait for the others to report, or fail over to {name} explicitly \
         (`raftgresctl failover`) accepting the loss"
    )]
    QuorumNotShown {
        name: String,
        sync_set: BTreeSet<String>,
        needed: usize,
        confirmed: usize,
    },
}

pub type Response = Result<Applied, Rejection>;

fn check_name(what: &str, name: &str) -> Result<(), Rejection> {
    if crate::is_valid_name(name) {
        Ok(())
    } else {
        Err(Rejection::Invalid {
            reason: format!("{what} {name:?} must be 1-63 characters of [a-z0-9_-]"),
        })
    }
}

fn check_ttl(ttl_ms: u64) -> Result<(), Rejection> {
    if ttl_ms == 0 {
        return Err(Rejection::Invalid {
            reason: "lease ttl_ms must be greater than 0".into(),
        });
    }
    Ok(())
}

impl ClusterState {
    /// Applies one committed command. Deterministic: no clock, no I/O, no panic.
    pub fn apply(&mut self, command: &Command) -> Response {
        match command {
            Command::Initialize { system_id } => self.initialize(system_id),
            Command::BootstrapConfig { values } => self.bootstrap_config(values),
            Command::SetConfig {
                expected_version,
                values,
            } => self.set_config(*expected_version, values),
            Command::PublishMember { member } => self.publish_member(member),
            Command::RemoveMember { name } => self.remove_member(name),
            Command::AcquireLease {
                member,
                expected,
                ttl_ms,
                reason,
                at_unix_ms,
            } => self.acquire_lease(member, *expected, *ttl_ms, reason, *at_unix_ms),
            Command::RenewLease {
                member,
                epoch,
                ttl_ms,
                lsn,
                timeline,
            } => self.renew_lease(member, *epoch, *ttl_ms, *lsn, *timeline),
            Command::ReleaseLease {
                member,
                expected,
                lsn,
            } => self.release_lease(member, *expected, *lsn),
            Command::TransferLease {
                from,
                expected,
                to,
                reason,
                at_unix_ms,
            } => self.transfer_lease(from, *expected, to, reason, *at_unix_ms),
            Command::RequestSwitchover { switchover } => self.request_switchover(switchover),
            Command::CancelSwitchover => {
                self.switchover = None;
                Ok(Applied::Done)
            }
            Command::SetSyncSet {
                member,
                epoch,
                members,
                synchronous,
                quorum,
            } => self.set_sync_set(member, *epoch, members, *synchronous, *quorum),
            Command::ReportPosition { member, lease, lsn } => {
                self.report_position(member, *lease, *lsn)
            }
        }
    }

    fn initialize(&mut self, system_id: &str) -> Response {
        if system_id.is_empty() {
            return Err(Rejection::Invalid {
                reason: "system_id must not be empty".into(),
            });
        }
        match &self.identity {
            Some(identity) => Err(Rejection::AlreadyInitialized {
                system_id: identity.system_id.clone(),
            }),
            None => {
                self.identity = Some(ClusterIdentity {
                    system_id: system_id.to_owned(),
                });
                Ok(Applied::Done)
            }
        }
    }

    fn bootstrap_config(&mut self, values: &ConfigValues) -> Response {
        if let Some(config) = &self.config {
            return Ok(Applied::Config {
                config: config.clone(),
            });
        }
        values
            .validate()
            .map_err(|reason| Rejection::Invalid { reason })?;
        let config = DynamicConfig {
            version: 1,
            values: values.clone(),
        };
        self.config = Some(config.clone());
        Ok(Applied::Config { config })
    }

    fn set_config(&mut self, expected_version: u64, values: &ConfigValues) -> Response {
        let Some(config) = &self.config else {
            return Err(Rejection::NotBootstrapped);
        };
        if config.version != expected_version {
            return Err(Rejection::ConfigVersionChanged {
                expected: expected_version,
                current: config.version,
            });
        }
        values
            .validate()
            .and_then(|()| {
                crate::slots::check_member_collision(
                    &values.slots,
                    self.members.keys().map(String::as_str),
                )
            })
            .map_err(|reason| Rejection::Invalid { reason })?;
        let Some(config) = &mut self.config else {
            return Err(Rejection::NotBootstrapped);
        };
        config.version += 1;
        config.values = values.clone();
        Ok(Applied::Config {
            config: config.clone(),
        })
    }

    fn publish_member(&mut self, member: &Member) -> Response {
        check_name("member name", &member.name)?;
        if member.node_id == 0 {
            return Err(Rejection::Invalid {
                reason: format!("member {} has node_id 0; ids start at 1", member.name),
            });
        }
        if let Some(other) = self
            .members
            .values()
            .find(|m| m.node_id == member.node_id && m.name != member.name)
        {
            return Err(Rejection::Invalid {
                reason: format!(
                    "node_id {} already belongs to member {}",
                    member.node_id, other.name
                ),
            });
        }
        self.members.insert(member.name.clone(), member.clone());
        Ok(Applied::Done)
    }

    fn remove_member(&mut self, name: &str) -> Response {
        if self.lease.is_held_by(name) {
            return Err(Rejection::MemberHoldsLease {
                name: name.to_owned(),
            });
        }
        if self.members.remove(name).is_none() {
            return Err(Rejection::UnknownMember {
                name: name.to_owned(),
            });
        }
        // Quorum mode: the claim "k of the set have each commit" may have
        // counted this member. Lowering k keeps it true.
        if self.sync_set.remove(name)
            && let Some(k) = &mut self.sync_quorum
        {
            *k = k.saturating_sub(1);
        }
        self.positions.remove(name);
        Ok(Applied::Done)
    }

    /// A member may hold the lease only if it is known and not a witness.
    fn check_can_lead(&self, name: &str) -> Result<(), Rejection> {
        match self.members.get(name) {
            None => Err(Rejection::UnknownMember {
                name: name.to_owned(),
            }),
            Some(m) if m.witness => Err(Rejection::WitnessCannotLead {
                name: name.to_owned(),
            }),
            Some(_) => Ok(()),
        }
    }

    fn check_holder(&self, member: &str, epoch: Epoch) -> Result<(), Rejection> {
        if self.lease.is_held_by(member) && self.lease.epoch == epoch {
            Ok(())
        } else {
            Err(Rejection::NotHolder {
                member: member.to_owned(),
                epoch,
                holder: self.lease.holder.clone(),
                current: self.lease.epoch,
            })
        }
    }

    /// The holder's own compare-and-set on the exact version: a different
    /// holder or epoch means the lease is gone, a different revision means a
    /// lease command of its own committed since it decided.
    fn check_holder_version(&self, member: &str, expected: LeaseVersion) -> Result<(), Rejection> {
        self.check_holder(member, expected.epoch)?;
        let current = self.lease.version();
        if current != expected {
            return Err(Rejection::LeaseVersionChanged { expected, current });
        }
        Ok(())
    }

    fn acquire_lease(
        &mut self,
        member: &str,
        expected: LeaseVersion,
        ttl_ms: u64,
        reason: &str,
        at_unix_ms: u64,
    ) -> Response {
        if self.config.is_none() {
            return Err(Rejection::NotBootstrapped);
        }
        check_ttl(ttl_ms)?;
        self.check_can_lead(member)?;
        let current = self.lease.version();
        if current != expected {
            return Err(Rejection::LeaseVersionChanged { expected, current });
        }
        // An operator's failover to a named member is the one way past the
        // synchronous rule: they chose that member, and its loss.
        let requested = self
            .switchover
            .as_ref()
            .is_some_and(|s| s.from.is_none() && s.to.as_deref() == Some(member));
        if !requested {
            self.check_synchronous(member)?;
        }
        self.lease.ttl_ms = ttl_ms;
        self.hand_lease_to(member, reason, at_unix_ms)
    }

    /// `member` holds the lease from the next epoch on. A pending
    /// switchover is fulfilled, or overtaken by this change: either way,
    /// nobody is left to carry it out.
    fn hand_lease_to(&mut self, member: &str, reason: &str, at_unix_ms: u64) -> Response {
        let previous_holder = self.lease.holder.replace(member.to_owned());
        self.hand_sync_set_to(member);
        self.lease.disown_timeline(member);
        self.lease.epoch = Epoch(self.lease.epoch.0 + 1);
        self.lease.revision += 1;
        self.switchover = None;
        self.record_history(previous_holder, reason, at_unix_ms);
        self.lease_applied()
    }

    fn lease_applied(&self) -> Response {
        Ok(Applied::Lease {
            lease: self.lease.clone(),
        })
    }

    fn renew_lease(
        &mut self,
        member: &str,
        epoch: Epoch,
        ttl_ms: u64,
        lsn: Option<Lsn>,
        timeline: Option<u32>,
    ) -> Response {
        check_ttl(ttl_ms)?;
        self.check_holder(member, epoch)?;
        self.lease.revision += 1;
        // Within an epoch the ttl never shrinks: the holder keeps the latest
        // deadline it was granted, so observers must never wait less than
        // any ttl it was granted with. A shorter ttl applies from the next epoch.
        self.lease.ttl_ms = self.lease.ttl_ms.max(ttl_ms);
        if lsn.is_some() {
            self.lease.last_lsn = lsn;
        }
        if let Some(timeline) = timeline {
            self.lease.primary_on(member, timeline);
        }
        self.lease_applied()
    }

    fn release_lease(
        &mut self,
        member: &str,
        expected: LeaseVersion,
        lsn: Option<Lsn>,
    ) -> Response {
        self.check_holder_version(member, expected)?;
        self.lease.holder = None;
        self.lease.revision += 1;
        if lsn.is_some() {
            self.lease.last_lsn = lsn;
        }
        self.lease_applied()
    }

    fn transfer_lease(
        &mut self,
        from: &str,
        expected: LeaseVersion,
        to: &str,
        reason: &str,
        at_unix_ms: u64,
    ) -> Response {
        self.check_holder_version(from, expected)?;
        self.check_can_lead(to)?;
        if from == to {
            return Err(Rejection::Invalid {
                reason: format!("cannot transfer the lease from {from} to itself"),
            });
        }
        self.check_in_sync_set(to)?;
        self.hand_lease_to(to, reason, at_unix_ms)
    }

    fn record_history(&mut self, previous_holder: Option<String>, reason: &str, at_unix_ms: u64) {
        let Some(new_holder) = self.lease.holder.clone() else {
            return;
        };
        self.history.push(HistoryEntry {
            epoch: self.lease.epoch,
            previous_holder,
            new_holder,
            timeline: self.lease.timeline,
            lsn: self.lease.last_lsn,
            reason: reason.to_owned(),
            at_unix_ms,
        });
    }

    fn request_switchover(&mut self, switchover: &Switchover) -> Response {
        match (&switchover.from, &switchover.to) {
            (Some(from), _) if !self.lease.is_held_by(from) => {
                return Err(Rejection::NotHolder {
                    member: from.clone(),
                    epoch: self.lease.epoch,
                    holder: self.lease.holder.clone(),
                    current: self.lease.epoch,
                });
            }
            (None, None) => {
                return Err(Rejection::Invalid {
                    reason: "a failover needs a candidate; a switchover needs the current leader"
                        .into(),
                });
            }
            _ => {}
        }
        if let Some(to) = &switchover.to {
            self.check_can_lead(to)?;
            if self.lease.is_held_by(to) {
                return Err(Rejection::Invalid {
                    reason: format!("switchover candidate {to} already holds the lease"),
                });
            }
        }
        self.switchover = Some(switchover.clone());
        Ok(Applied::Done)
    }
}

mod sync;
#[cfg(test)]
mod tests;
