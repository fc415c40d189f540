//! The Patroni-compatible REST API of a raftgres agent, as `docs/rest-api.md`
//! specifies it:
//! - health endpoints for load balancers and probes (`/primary`, `/replica`,
//!   `/read-only`, `/health`, `/liveness`, `/readiness`, ...) and `/patroni`;
//! - status documents: `/cluster`, `/history`, `/config` (with an `ETag`)
//!   and `/metrics` (OpenMetrics text);
//! - mutating endpoints behind HTTP basic auth: `PATCH /config` (a JSON merge
//!   patch), `PUT /config` (the whole config), `/switchover`, `/failover`,
//!   `/restart` (now or scheduled, and `DELETE` to cancel), `/reload`,
//!   `/reinitialize` and `DELETE /members/{name}`.
//!
//! The agent hands [`router`] or [`serve`] an [`ApiContext`]: a
//! [`HealthSource`] for this member's health, [`WriteOps`] (with its
//! supertrait [`ReadOps`]) for the replicated state and the changes, and the
//! [`Credentials`] the mutating calls need. Every handler may read; only
//! one that passed authentication gets [`WriteOps`] (see `auth.rs`). A
//! health answer is a pure function of one [`NodeHealth`] (see [`status`])
//! from a [`HealthSnapshot`] the agent renders when something changes, and
//! never touches the operations, so `/primary` costs a clock read and a
//! reference count; its `GET` body was serialized with the snapshot. The status
//! documents read the member's applied copy of the state: no Raft round trip
//! either. Only the mutating calls wait, on the agent's operations.
//!
//! Architecture invariant: this crate knows HTTP and Patroni's semantics,
//! nothing of Raft or Postgres internals.

mod allowlist;
mod auth;
mod body;
mod cluster;
mod config_doc;
mod health;
mod live;
mod metrics;
mod ops;
mod query;
mod read;
mod reply;
mod router;
mod server;
mod status;
mod tls;
mod write;

pub use allowlist::{Allowlist, IpNet};
pub use auth::{Credentials, LoginGuard};
pub use health::{
    CopyProgress, HealthSnapshot, HealthSource, NodeHealth, Rendered, Role, ServerFacts, Standby,
};
pub use live::{Histogram, LiveFacts, RaftFacts};
pub use ops::{
    MemberReport, OpError, OpFuture, ReadOps, SwitchoverOutcome, SwitchoverRequest, WriteOps,
};
pub use query::{HealthQuery, QueryError, parse_query};
pub use router::{ApiContext, ServeLimits, router, serve, serve_tls, serve_with_limits};
pub use status::{Endpoint, ROUTES, status};
pub use tls::{ApiTlsError, ServerTls, VerifyClient};
