//! The keeper: a small long-lived process, separate from the agent, that
//! owns the postmaster and enforces the lease deadline (docs/fencing.md).
//!
//! - [`server`]: the keeper process. The postmaster is its child (with a
//!   parent-death signal); it kills every process of the server when an
//!   armed deadline passes unrenewed, whatever the agent is doing.
//! - [`guard`]: the keeper's own fence, a second process that kills the
//!   server if the keeper dies or hangs.
//! - [`client`]: the agent's end of the keeper socket; a restarted or
//!   upgraded agent attaches to the running keeper, so Postgres keeps
//!   running and a primary keeps its lease.
//! - [`protocol`]: the messages.
//!
//! Architecture invariant: knows one Postgres server's processes and one
//! deadline, nothing of Raft, leases' rules or HA policy. Time is
//! CLOCK_MONOTONIC only.

pub mod client;
pub mod clock;
mod error;
pub mod guard;
pub mod protocol;
pub mod server;

pub use client::KeeperClient;
pub use error::{KeeperError, Result};
pub use protocol::{Arming, KeeperStatus, Request, StopMode};
pub use server::{GuardCommand, KeeperSettings, serve};
