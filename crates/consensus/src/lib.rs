//! The Raft group that holds the cluster state: openraft's type
//! configuration, durable storage, the gRPC transport, and the [`Consensus`]
//! handle the agent uses to propose, read linearizably and subscribe.
//!
//! Architecture invariant: this crate knows nothing of HA policy or Postgres.
//! It is the only crate that imports openraft.

// openraft's RPC error types are large by design; the transport must return them as they are.
#![allow(clippy::result_large_err)]

mod contact;
mod error;
pub mod formation;
mod group_commit;
mod keepalive;
mod latency;
mod link;
mod node;
pub mod store;
mod timeout;
pub mod types;

pub use error::{ConsensusError, Result};
pub use latency::{Latencies, PROPOSAL_BUCKETS_S};
pub use link::{BoxFuture, LeaderLink, MembershipChange, MembershipView};
pub use node::{Consensus, Formation, RaftStatus, Settings};
pub use store::StateView;
pub use timeout::OperationTimeout;
pub mod transport;
