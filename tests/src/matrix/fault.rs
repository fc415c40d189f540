//! The faults the matrix injects, the lab each needs, and the replication
//! modes it runs them in.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of the primary's postmaster; its agent lives.
    KillPostgres,
    /// SIGKILL of the primary's agent; its keeper fences at the deadline.
    KillAgent,
    /// SIGSTOP of the primary's agent for 8 s.
    StopAgent,
    /// SIGSTOP of the primary's postmaster only; backends still run.
    StopPostmaster,
    /// The primary's host lost: agent, keeper, guard and Postgres at once.
    KillHost,
    /// The primary's agent restarted: no failover expected.
    RestartAgent,
    /// A replica's agent SIGKILLed and restarted: no failover expected.
    KillReplicaAgent,
    /// A switchover, with the primary's agent restarted while it runs.
    RestartDuringSwitchover,
    /// The primary cut off from every other member and from the clients
    /// outside its host (network namespaces).
    IsolatePrimary,
    /// A one-way partition: nothing reaches the primary, what it sends
    /// still arrives.
    CutToPrimary,
    /// The other way: nothing the primary sends arrives.
    CutFromPrimary,
    /// Every frame to and from the primary 30 ms late for 10 s: a round
    /// trip of 60 ms, as between two regions of one continent. The default
    /// Raft timing takes round trips below `raft.heartbeat_interval_ms`
    /// (100 ms), which openraft 0.9 uses as the time an AppendEntries may
    /// take; `docs/fencing.md` says what happens beyond it.
    SlowPrimaryLink,
    /// A fifth of the frames to and from the primary lost for 10 s.
    LossyPrimaryLink,
    /// The filesystem under the primary's data directory full for 8 s.
    FillPrimaryDisk,
    /// The `postgres` binary replaced (a package upgrade) under the running
    /// primary, then its agent SIGKILLed: the fence must still find the
    /// server's processes.
    ReplaceBinaryKillAgent,
    /// A replica's Raft store wiped and its agent restarted under its old
    /// id: refused; then removed and re-added as the refusal says.
    WipeReplicaStore,
    /// Every fsync of the Raft leader's agent takes 400 ms for 10 s (a
    /// library preloaded into the agents sleeps before the real call).
    SlowFsyncLeader,
}

/// The lab a fault needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Loopback,
    /// Every member in a network namespace of its own (root only).
    Netns,
    /// Postgres' data directories on small filesystems (root only).
    SmallDisks,
    /// Postgres run from the lab's own copy of its binaries.
    CopiedBinaries,
    /// Agents with `tests/src/slow_fsync.c` preloaded.
    SlowFsync,
}

impl Fault {
    pub const ALL: [Fault; 17] = [
        Fault::KillPostgres,
        Fault::KillAgent,
        Fault::StopAgent,
        Fault::StopPostmaster,
        Fault::KillHost,
        Fault::RestartAgent,
        Fault::KillReplicaAgent,
        Fault::RestartDuringSwitchover,
        Fault::IsolatePrimary,
        Fault::CutToPrimary,
        Fault::CutFromPrimary,
        Fault::SlowPrimaryLink,
        Fault::LossyPrimaryLink,
        Fault::FillPrimaryDisk,
        Fault::ReplaceBinaryKillAgent,
        Fault::WipeReplicaStore,
        Fault::SlowFsyncLeader,
    ];

    /// How long the fault lasts at least before it is healed.
    pub fn hold(self) -> Duration {
        match self {
            // A killed agent stays down long enough for its keeper's
            // deadline to pass, so the fence (not a restarted agent) acts.
            Fault::KillAgent
            | Fault::ReplaceBinaryKillAgent
            | Fault::StopAgent
            | Fault::FillPrimaryDisk => Duration::from_secs(8),
            Fault::IsolatePrimary
            | Fault::CutToPrimary
            | Fault::CutFromPrimary
            | Fault::SlowPrimaryLink
            | Fault::LossyPrimaryLink
            | Fault::SlowFsyncLeader => Duration::from_secs(10),
            _ => Duration::ZERO,
        }
    }

    /// Faults that must cost no failover and no Postgres restart: the
    /// primary's postmaster is the same process before and after. The slow
    /// fsync should not either, and every run reports whether it did, but
    /// it is not asserted: a renewal then takes up to two 400 ms flushes
    /// against a one-second operation timeout, a margin a loaded machine
    /// can eat. `crates/consensus/tests/slow_disk.rs` asserts the mechanism
    /// (group commit) instead.
    pub fn keeps_primary(self) -> bool {
        matches!(
            self,
            Fault::RestartAgent | Fault::KillReplicaAgent | Fault::WipeReplicaStore
        )
    }

    pub fn setup(self) -> Setup {
        match self {
            Fault::IsolatePrimary
            | Fault::CutToPrimary
            | Fault::CutFromPrimary
            | Fault::SlowPrimaryLink
            | Fault::LossyPrimaryLink => Setup::Netns,
            Fault::FillPrimaryDisk => Setup::SmallDisks,
            Fault::ReplaceBinaryKillAgent => Setup::CopiedBinaries,
            Fault::SlowFsyncLeader => Setup::SlowFsync,
            _ => Setup::Loopback,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillPostgres => "SIGKILL primary postmaster",
            Fault::KillAgent => "SIGKILL primary agent, down 8 s",
            Fault::StopAgent => "SIGSTOP primary agent 8 s",
            Fault::StopPostmaster => "SIGSTOP primary postmaster",
            Fault::KillHost => "primary host lost",
            Fault::RestartAgent => "restart primary agent",
            Fault::KillReplicaAgent => "SIGKILL + restart replica agent",
            Fault::RestartDuringSwitchover => "restart primary agent during switchover",
            Fault::IsolatePrimary => "primary isolated 10 s (netns)",
            Fault::CutToPrimary => "one-way 10 s: nothing reaches the primary",
            Fault::CutFromPrimary => "one-way 10 s: nothing leaves the primary",
            Fault::SlowPrimaryLink => "primary link +30 ms each way 10 s",
            Fault::LossyPrimaryLink => "primary link 20% loss each way 10 s",
            Fault::FillPrimaryDisk => "primary data disk full 8 s",
            Fault::ReplaceBinaryKillAgent => {
                "postgres binary replaced + SIGKILL primary agent, down 8 s"
            }
            Fault::WipeReplicaStore => "replica Raft store wiped",
            Fault::SlowFsyncLeader => "Raft leader's fsync 400 ms for 10 s",
        }
    }
}

pub(super) const SLOW_LINK: Impairment = Impairment {
    delay: Duration::from_millis(30),
    loss: 0.0,
};

pub(super) const LOSSY_LINK: Impairment = Impairment {
    delay: Duration::ZERO,
    loss: 0.2,
};

/// The replication mode a matrix lab runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    Asynchronous,
    /// `synchronous_mode: true`: no acknowledged write may be lost.
    Synchronous,
    /// `synchronous_mode: quorum`: no acknowledged write may be lost.
    Quorum,
}

impl Replication {
    pub const ALL: [Replication; 3] = [
        Replication::Asynchronous,
        Replication::Synchronous,
        Replication::Quorum,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Replication::Asynchronous => "async",
            Replication::Synchronous => "sync",
            Replication::Quorum => "quorum",
        }
    }

    /// What `PATCH /config` sets `synchronous_mode` to.
    pub(super) fn setting(self) -> serde_json::Value {
        match self {
            Replication::Asynchronous => json!(false),
            Replication::Synchronous => json!(true),
            Replication::Quorum => json!("quorum"),
        }
    }
}
