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

pub use address::HostPort;
pub use command::{Applied, Command, Rejection, Response};
pub use lease::{Epoch, Lease, LeaseVersion, margin_floor_ms};
pub use model::{
    AGENT_MANAGED_PARAMETERS, ClusterIdentity, ClusterState, ConfigValues, DynamicConfig,
    HistoryEntry, Lsn, MAX_TTL_MS, Member, MemberRole, PendingRestart, PgState, ReportedPosition,
    Switchover, SyncMode, Tags,
};
