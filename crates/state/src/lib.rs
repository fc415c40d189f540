//! The replicated cluster model: what every member agrees on through Raft.
//!
//! Architecture invariant: [`ClusterState::apply`] is a pure, deterministic
//! function of the state and the command. It reads no clock, does no I/O and
//! never panics, so every member that applies the same log reaches the same
//! state. Anything time-related (lease expiry, deadlines) is judged outside,
//! by the members, on their own monotonic clocks.

mod address;
mod command;
mod lease;
mod model;
mod restart;
mod slots;
mod timing;

pub use address::HostPort;
pub use command::{Applied, Command, Rejection, Response};
pub use lease::{Epoch, Lease, LeaseVersion};
pub use model::{
    AGENT_MANAGED_PARAMETERS, ClusterIdentity, ClusterState, ConfigValues, DynamicConfig,
    HistoryEntry, Lsn, Member, MemberRole, PendingRestart, PgState, ReportedPosition, Switchover,
    SyncMode, Tags, is_valid_name,
};
pub use restart::{PostgresVersion, RestartError, RestartOptions, RestartRole, ScheduledRestart};
pub use slots::{IgnoredSlot, PermanentSlot, SlotKind, member_slot_name, valid_slot_name};
pub use timing::{LeaseTiming, MAX_TTL_MS, TimingError, margin_floor_ms};
