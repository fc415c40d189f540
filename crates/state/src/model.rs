use crate::lease::{Epoch, Lease};
use crate::timing::LeaseTiming;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// A PostgreSQL WAL position in bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Bytes of WAL from `older` to `self`, zero if `older` is ahead: how
    /// far a replica at `older` lags a primary at `self`.
    pub fn bytes_since(self, older: Lsn) -> u64 {
        self.0.saturating_sub(older.0)
    }
}

impl fmt::Display for Lsn {
    /// Postgres' own `X/Y` notation, so logs can be compared with `pg_*` output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Set once, by the member that wins the right to run `initdb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// PostgreSQL's system identifier of the cluster's database.
    pub system_id: String,
}

/// Patroni's `synchronous_mode`: off, on (commits wait for every
/// synchronous standby), or quorum (commits wait for any
/// `synchronous_node_count` of the quorum standbys). Written as Patroni
/// writes it, `false`, `true` or `"quorum"`, so configs carry over and log
/// entries from before quorum mode read as they were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    #[default]
    Off,
    On,
    Quorum,
}

impl SyncMode {
    pub fn is_on(self) -> bool {
        self != SyncMode::Off
    }
}

impl Serialize for SyncMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SyncMode::Off => serializer.serialize_bool(false),
            SyncMode::On => serializer.serialize_bool(true),
            SyncMode::Quorum => serializer.serialize_str("quorum"),
        }
    }
}

impl<'de> Deserialize<'de> for SyncMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Flag(bool),
            Word(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Flag(false) => Ok(SyncMode::Off),
            Written::Flag(true) => Ok(SyncMode::On),
            Written::Word(word) => match word.to_ascii_lowercase().as_str() {
                "off" | "false" => Ok(SyncMode::Off),
                "on" | "true" => Ok(SyncMode::On),
                "quorum" => Ok(SyncMode::Quorum),
                _ => Err(serde::de::Error::custom(format!(
                    "synchronous_mode {word:?} is none of false, true, \"quorum\""
                ))),
            },
        }
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncMode::Off => "off",
            SyncMode::On => "on",
            SyncMode::Quorum => "quorum",
        })
    }
}

/// More synchronous standbys than this is a misconfiguration: each one
/// adds its round trip to every commit.
pub const MAX_SYNCHRONOUS_NODE_COUNT: u32 = 16;

/// PostgreSQL parameters the agent sets itself, from a member's own config
/// or its role (and, for `synchronous_standby_names`, from the synchronous
/// set it will commit in Raft first); a value in any config would fight it.
/// Recovery targets would stop a standby short of its primary's WAL.
pub const AGENT_MANAGED_PARAMETERS: &[&str] = &[
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "hot_standby",
    "wal_level",
    "primary_conninfo",
    "primary_slot_name",
    "data_directory",
    "hba_file",
    "config_file",
    "synchronous_standby_names",
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_timeline",
    "recovery_target_action",
    "recovery_target_inclusive",
];

/// The settings every member must agree on, changed only by compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigValues {
    /// `ttl_ms`, `loop_wait_ms` and `lease_margin_ms`.
    #[serde(flatten)]
    pub timing: LeaseTiming,
    pub retry_timeout_ms: u64,
    pub maximum_lag_on_failover: u64,
    pub synchronous_mode: SyncMode,
    pub synchronous_mode_strict: bool,
    pub synchronous_node_count: u32,
    pub postgresql_parameters: BTreeMap<String, String>,
    pub pause: bool,
    /// Permanent replication slots by name (Patroni's `slots`): kept on
    /// the primary and on every replica, across failovers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slots: BTreeMap<String, crate::PermanentSlot>,
    /// Slots raftgres must never drop (Patroni's `ignore_slots`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_slots: Vec<crate::IgnoredSlot>,
}

impl ConfigValues {
    /// A cluster's first config: this lease timing and these limits, and
    /// everything else off or empty (asynchronous replication, no
    /// parameters, no permanent slots, not paused).
    pub fn new(timing: LeaseTiming, retry_timeout_ms: u64, maximum_lag_on_failover: u64) -> Self {
        ConfigValues {
            timing,
            retry_timeout_ms,
            maximum_lag_on_failover,
            synchronous_mode: SyncMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            postgresql_parameters: BTreeMap::new(),
            pause: false,
            slots: BTreeMap::new(),
            ignore_slots: Vec::new(),
        }
    }

    /// Checks the relations the lease rules depend on; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        self.timing
            .validate()
            .map_err(|e| format!("{} {e}", e.key()))?;
        if self.retry_timeout_ms == 0 {
            return Err("retry_timeout_ms must be greater than 0".into());
        }
        if self.synchronous_mode.is_on() && self.synchronous_node_count == 0 {
            return Err("synchronous_node_count must be at least 1 in synchronous_mode".into());
        }
        crate::slots::check_permanent_slots(&self.slots)?;
        crate::slots::check_ignored_slots(&self.ignore_slots)?;
        Ok(())
    }

    /// Whether `ignore_slots` keeps raftgres from dropping the physical
    /// slot `name`.
    pub fn ignores_slot(&self, name: &str) -> bool {
        self.ignore_slots
            .iter()
            .any(|entry| entry.matches_physical(name))
    }
}

impl ConfigValues {
    /// What an edit (`PATCH /config`) must pass on top of [`Self::validate`]:
    /// upper bounds, and no value the agents would store and then ignore
    /// (a feature not built yet is refused, not accepted). Kept apart from
    /// `validate`, which the state machine applies to committed entries:
    /// tightening that would make members of two versions apply the same
    /// entry differently.
    pub fn validate_edit(&self) -> Result<(), String> {
        self.timing
            .validate_new()
            .map_err(|e| format!("{} {e}", e.key()))?;
        self.validate()?;
        if Duration::from_millis(self.retry_timeout_ms) > self.timing.ttl {
            return Err(format!(
                "retry_timeout_ms ({}) must be at most ttl_ms ({}): a Raft operation that may \
                 wait longer than the lease lasts cannot keep it",
                self.retry_timeout_ms,
                self.timing.ttl_ms()
            ));
        }
        if self.synchronous_node_count > MAX_SYNCHRONOUS_NODE_COUNT {
            return Err(format!(
                "synchronous_node_count ({}) must be at most {MAX_SYNCHRONOUS_NODE_COUNT}",
                self.synchronous_node_count
            ));
        }
        if self.synchronous_node_count == 0 {
            return Err("synchronous_node_count must be at least 1".into());
        }
        if let Some(name) = self
            .postgresql_parameters
            .keys()
            .find(|name| AGENT_MANAGED_PARAMETERS.contains(&name.as_str()))
        {
            return Err(format!(
                "postgresql.parameters.{name} is set by the agent itself and cannot be \
                 changed in the config; remove it"
            ));
        }
        for (name, value) in &self.postgresql_parameters {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(format!(
                    "postgresql.parameters: {name:?} is not a server setting name \
                     (letters, digits, '_' and '.')"
                ));
            }
            if value.contains(['\n', '\r', '\0']) {
                return Err(format!(
                    "postgresql.parameters.{name} must not contain line breaks or NUL"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicConfig {
    /// Grows by one on every change; the compare-and-set token for edits.
    pub version: u64,
    pub values: ConfigValues,
}

/// A member's tags, Patroni's: the ones the agent acts on, and the
/// operator's own, which it only shows and lets health checks match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tags {
    pub nofailover: bool,
    /// Higher wins among equally advanced candidates; 0 never competes.
    pub failover_priority: u32,
    /// Never one of the primary's synchronous standbys (Patroni's tag).
    #[serde(default)]
    pub nosync: bool,
    /// The replica health checks (`/replica`, `/read-only`, ...) answer 503,
    /// which keeps this member out of read load balancing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noloadbalance: bool,
    /// A member that clones by itself (a new one, or one holding another
    /// cluster's data) copies from this member rather than from the
    /// primary, while it streams as a replica; a reinitialize the operator
    /// asks for still copies from the primary.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clonefrom: bool,
    /// Stream from this member instead of the primary (cascading
    /// replication), while it runs as a replica or is the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicatefrom: Option<String>,
    /// The operator's own tags, each value as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, String>,
}

impl Tags {
    /// The tags as Patroni shows them, each value as text: `nofailover`
    /// and `failover_priority` always, the others only when set.
    pub fn shown(&self) -> BTreeMap<String, String> {
        let mut map = self.custom.clone();
        map.insert("nofailover".into(), self.nofailover.to_string());
        map.insert(
            "failover_priority".into(),
            self.failover_priority.to_string(),
        );
        for (name, set) in [
            ("nosync", self.nosync),
            ("noloadbalance", self.noloadbalance),
            ("clonefrom", self.clonefrom),
        ] {
            if set {
                map.insert(name.into(), "true".into());
            }
        }
        if let Some(from) = &self.replicatefrom {
            map.insert("replicatefrom".into(), from.clone());
        }
        map
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    #[default]
    Unknown,
    Primary,
    Replica,
    /// Votes in Raft, runs no Postgres, never holds the lease.
    Witness,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PgState {
    #[default]
    Unknown,
    Stopped,
    Starting,
    Running,
    Crashed,
    /// Witness members have no Postgres at all.
    Absent,
}

/// What a member reports about itself; any member can answer from these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub node_id: u64,
    pub raft_addr: String,
    pub api_url: Option<String>,
    pub pg_address: Option<String>,
    pub role: MemberRole,
    pub pg_state: PgState,
    pub timeline: Option<u32>,
    pub receive_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    /// A replica's WAL receiver streams from its upstream.
    #[serde(default)]
    pub streaming: bool,
    /// This member runs a pgbouncer its agent keeps pointed at the primary.
    #[serde(default)]
    pub pooler: bool,
    /// The lease epoch whose switchover this member's pgbouncer is paused
    /// for: the holder stops Postgres only once every live pooler is.
    #[serde(default)]
    pub pooler_paused_epoch: Option<Epoch>,
    pub tags: Tags,
    pub witness: bool,
    /// Grows with every publication, so others can tell a live member from a
    /// record that merely stayed the same.
    #[serde(default)]
    pub heartbeat: u64,
    /// Server settings whose new value only a restart of this member's
    /// Postgres applies (`pg_settings.pending_restart`), by name.
    #[serde(default)]
    pub pending_restart: BTreeMap<String, PendingRestart>,
    /// This member's `pre_promote` script refused its promotion lately: it
    /// gave the lease back, and neither competes for it nor is deferred to
    /// until its agent clears this, so that the next candidate takes over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promotion_vetoed: bool,
    /// A restart of this member's Postgres set for a later time; only its
    /// own agent writes it, and clears it once it ran or was dropped.
    /// Boxed: rarely set, while every heartbeat's `PublishMember` carries
    /// the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<Box<crate::restart::ScheduledRestart>>,
    /// The permanent slots (the config's `slots`) this member's server
    /// keeps, at their `restart_lsn`: the holder's are the positions the
    /// replicas advance their copies to; every member's tell its agent,
    /// after a restart, which slots it made, to drop those the config no
    /// longer names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub permanent_slots: BTreeMap<String, Lsn>,
}

impl Member {
    /// A member as it registers: nothing known yet of its Postgres, no
    /// tags (so it does not compete until it says it may), not a witness.
    pub fn new(name: impl Into<String>, node_id: u64, raft_addr: impl Into<String>) -> Member {
        Member {
            name: name.into(),
            node_id,
            raft_addr: raft_addr.into(),
            api_url: None,
            pg_address: None,
            role: MemberRole::Unknown,
            pg_state: PgState::Unknown,
            timeline: None,
            receive_lsn: None,
            replay_lsn: None,
            streaming: false,
            pooler: false,
            pooler_paused_epoch: None,
            tags: Tags::default(),
            witness: false,
            heartbeat: 0,
            pending_restart: BTreeMap::new(),
            promotion_vetoed: false,
            scheduled_restart: None,
            permanent_slots: BTreeMap::new(),
        }
    }
}

/// A setting that waits for a restart, in Patroni's `pending_restart_reason`
/// shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRestart {
    /// What the server runs with, as `SHOW` prints it.
    pub old_value: String,
    /// What the configuration files say, as written there.
    pub new_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switchover {
    /// The holder that hands the lease over. `None`: a failover to `to`,
    /// asked for when there may be no healthy holder; only `to` competes.
    pub from: Option<String>,
    /// `None`: the best candidate at the time.
    pub to: Option<String>,
    /// Wall-clock time from the requester, informational and for scheduling.
    pub at_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub epoch: Epoch,
    pub previous_holder: Option<String>,
    pub new_holder: String,
    pub timeline: Option<u32>,
    pub lsn: Option<Lsn>,
    pub reason: String,
    /// The proposer's wall clock; `apply` never reads one.
    pub at_unix_ms: u64,
}

/// One member's WAL position, measured once `lease` was over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedPosition {
    pub lease: crate::LeaseVersion,
    /// What it has received and flushed (or replayed, if more).
    pub lsn: Lsn,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterState {
    pub identity: Option<ClusterIdentity>,
    pub config: Option<DynamicConfig>,
    pub lease: Lease,
    pub members: BTreeMap<String, Member>,
    /// The holder's synchronous standbys (see `Command::SetSyncSet`).
    pub sync_set: BTreeSet<String>,
    /// The holder declared that its commits wait for `sync_set`: from then
    /// on only those members (and the last holder) may take the lease. Set
    /// by the holder, not by the config, so that turning synchronous mode
    /// on restricts failover only once Postgres acts on it, and so that
    /// logs written before this rule existed replay as they did.
    #[serde(default)]
    pub synchronous: bool,
    /// In quorum mode, how many members of `sync_set` have each commit the
    /// holder acknowledged (at least): Postgres waits for `ANY n` of them
    /// with `n` never below it. `None`: every member of the set has every
    /// commit (synchronous mode on).
    #[serde(default)]
    pub sync_quorum: Option<u32>,
    /// WAL positions members measured after the lease version they name
    /// expired or was released, so after the last holder's server was
    /// fenced: the evidence a quorum-mode candidate shows (see
    /// [`ClusterState::may_take_lease`]). Only reports for the current
    /// version count.
    #[serde(default)]
    pub positions: BTreeMap<String, ReportedPosition>,
    pub switchover: Option<Switchover>,
    pub history: Vec<HistoryEntry>,
}

impl ClusterState {
    /// The dynamic config's lease timing; `None` before the cluster has a
    /// config. Expiry and deadlines use the lease's own ttl instead
    /// ([`Lease::ttl`]), see `timing.rs`.
    pub fn timing(&self) -> Option<LeaseTiming> {
        self.config.as_ref().map(|c| c.values.timing)
    }

    /// The state without its keep-alives: the renewals of one lease (its
    /// revision and the position it reports) and the members' heartbeat
    /// counters. At rest they are all that changes, several times a second;
    /// two states equal in this form differ in nothing a member acts on
    /// beyond freshness, which passes with time, not with a change.
    pub fn without_keepalives(&self) -> ClusterState {
        let mut state = self.clone();
        state.lease.revision = 0;
        state.lease.last_lsn = None;
        for member in state.members.values_mut() {
            member.heartbeat = 0;
        }
        state
    }

    /// How long a member's report stays fresh: the config's ttl, and zero
    /// (nothing is fresh) before the cluster has a config.
    pub fn report_ttl(&self) -> Duration {
        self.timing().map_or(Duration::ZERO, |t| t.ttl)
    }

    /// Maintenance mode (Patroni's `pause`): nothing changes role on its
    /// own. A cluster with no config yet is not paused.
    pub fn paused(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.values.pause)
    }
}

/// Whether `name` may name a member (or a certificate issued to one): 1-63
/// characters of `[a-z0-9_-]`, so it is also a valid host label and file name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_rest() -> ClusterState {
        let mut state = ClusterState::default();
        state.lease.holder = Some("a".into());
        state.lease.epoch = Epoch(3);
        state.lease.revision = 10;
        state.lease.last_lsn = Some(Lsn(100));
        for (name, id) in [("a", 1), ("b", 2)] {
            let mut member = Member::new(name, id, format!("{name}:5433"));
            member.heartbeat = 7;
            state.members.insert(name.into(), member);
        }
        state
    }

    #[test]
    fn renewals_and_heartbeats_are_keepalives() {
        let before = at_rest();
        let mut after = before.clone();
        after.lease.revision += 1;
        after.lease.last_lsn = Some(Lsn(200));
        after.members.get_mut("b").expect("b").heartbeat += 1;
        assert_ne!(after, before);
        assert_eq!(after.without_keepalives(), before.without_keepalives());
    }

    /// A named edit of a state, for tables of changes.
    type Change = (&'static str, fn(&mut ClusterState));

    #[test]
    fn every_other_change_is_one_of_substance() {
        let before = at_rest();
        let changes: [Change; 6] = [
            ("a new holder", |s| s.lease.holder = Some("b".into())),
            ("a new epoch", |s| s.lease.epoch = Epoch(4)),
            ("a new timeline", |s| s.lease.timeline = Some(2)),
            ("a member's position", |s| {
                s.members.get_mut("b").expect("b").replay_lsn = Some(Lsn(5))
            }),
            ("the sync set", |s| {
                s.sync_set.insert("b".into());
            }),
            ("a member gone", |s| {
                s.members.remove("b");
            }),
        ];
        for (what, change) in changes {
            let mut after = before.clone();
            change(&mut after);
            assert_ne!(
                after.without_keepalives(),
                before.without_keepalives(),
                "{what} must count as a change"
            );
        }
    }
}
