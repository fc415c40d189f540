//! Keeps one pgbouncer pointed at the right Postgres: renders its
//! `[databases]` section into a file that `pgbouncer.ini` includes by
//! absolute path (`%include /abs/path`), replaces that file atomically, and
//! drives the admin console (RELOAD, PAUSE, RESUME, KILL, DISABLE, ENABLE,
//! SHOW) through tokio-postgres's simple query protocol, every call bounded
//! by a timeout.
//!
//! Architecture invariant: this crate knows pgbouncer and nothing of Raft,
//! leases or HA policy. The caller decides where clients go; this crate
//! makes pgbouncer do it: [`Applied::plan`] orders the steps, [`converge`]
//! runs them. The agent and `raftgresctl pooler` both go through these, so
//! the orders below are written once.
//!
//! # What pgbouncer 1.18 does, and what follows from it
//!
//! Measured against Debian's pgbouncer 1.18 (the integration tests hold the
//! evidence):
//! - After a failed server login a pool refuses or stalls new clients for
//!   `server_login_retry` (15 s by default), and a RELOAD that points the
//!   entry at a live server does not end that.
//! - With TLS to Postgres configured, every RELOAD recycles the server
//!   connections and drops a login in flight, which counts as a failed
//!   login too. No order of commands avoids that, so the shipped template
//!   sets `server_login_retry` to 1 s (`crates/lab/tests/pgbouncer_reload.rs`).
//! - A client that logs in to a pool with no server parameters cached (just
//!   started, or its entry changed by a RELOAD) makes pgbouncer dial the
//!   server even while the database is PAUSEd or KILLed; the pause closes
//!   that login, which counts as a failed one.
//! - DISABLE refuses new clients at once without dialing, and survives a
//!   RELOAD; ENABLE serves the next client at once.
//! - A PAUSE whose console connection goes away leaves the database paused.
//!
//! So:
//! - **No primary** ([`Routes::write`] is `None`, e.g. this node lost its
//!   lease): the write entry points at [`NO_SERVER_HOST`], an address that
//!   accepts no connection, never at the last primary. A pgbouncer restarted
//!   or reloaded behind the agent's back then refuses rather than writes.
//!   The caller keeps that database [`Admin::fence`]d (DISABLE, KILL,
//!   RESUME): clients are refused, none dials the dead address, and the
//!   pool is not shut for `server_login_retry` when the next primary appears.
//!   [`Routes::without_server`] names the databases to keep fenced.
//! - **Unplanned failover**: fence the write database at once; once the new
//!   primary runs, [`write_databases_file`], [`Admin::reload`],
//!   [`Admin::enable`].
//! - **Switchover**: [`Admin::pause`] the write database (the entry still
//!   names the old primary, whose parameters stay cached, so arriving
//!   clients wait without dialing); after the promotion,
//!   [`write_databases_file`], then [`Admin::reload`] and [`Admin::resume`]
//!   back to back. A client arriving between those two commands (the
//!   console takes one per query) still triggers the 15 s refusal.
//!   Clients see a pause only in `pool_mode = transaction`: in session mode
//!   PAUSE waits for clients to disconnect, so it times out
//!   ([`PoolerError::PauseTimeout`]) and the caller must KILL them instead.
//! - **Reads**: pgbouncer 1.18 balances nothing itself, but a `host=a,b`
//!   list is dialed round-robin on one port, with no skipping of a dead
//!   host. [`render_databases`] lists all replicas when they share a port,
//!   else the first alone; with none the read entry points at
//!   [`NO_SERVER_HOST`] like the write entry.
//!
//! Ownership: the agent owns the databases file. Ansible and operators
//! template `pgbouncer.ini` (`deploy/pgbouncer/`) and never this file.

mod admin;
mod error;
mod execute;
mod file;
mod routes;
mod settings;
mod transition;

pub use admin::{Admin, AdminTarget, DatabaseStatus, PoolStatus};
pub use error::{PoolerError, Result};
pub use execute::{Executed, converge, fence_at_start};
pub use file::write_databases_file;
pub use routes::{NO_SERVER_HOST, Routes, Target, render_databases};
pub use settings::PoolerSettings;
pub use transition::{Action, Applied, Desired};
