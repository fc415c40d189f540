//! The Patroni-compatible REST API of a raftgres agent. Today: the health
//! endpoints that load balancers and probes call (`/primary`, `/replica`,
//! `/read-only`, `/health`, `/liveness`, `/readiness`, ...) and `/patroni`.
//!
//! Every answer is a pure function of one [`NodeHealth`] snapshot, taken from
//! the agent's [`HealthSource`] once per request: see [`status`]. Nothing here
//! makes a Raft round trip, so `/primary` costs one snapshot and, for `GET`,
//! one small JSON document.
//!
//! Architecture invariant: this crate knows HTTP and Patroni's semantics,
//! nothing of Raft or Postgres internals.

mod body;
mod health;
mod ops;
mod query;
mod router;
mod status;

pub use health::{HealthSource, NodeHealth, Role};
pub use ops::{OpError, OpFuture, Operations, SwitchoverOutcome, SwitchoverRequest};
pub use query::{HealthQuery, QueryError, parse_query};
pub use router::{router, serve};
pub use status::{Endpoint, ROUTES, status};
