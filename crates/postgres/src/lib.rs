//! Drives one local PostgreSQL: bootstrap (`initdb`, `pg_basebackup`),
//! rejoin (`pg_rewind`), the managed configuration, the postmaster as a
//! fenced child process, and control queries (status, promote, slots).
//!
//! Architecture invariant: this crate knows one Postgres and nothing of
//! Raft, leases or HA policy. It does what it is told and reports what it
//! sees; deciding is the caller's business. Everything that depends on
//! the PostgreSQL major (14 to 18) lives in [`version`], which also refuses
//! binaries of another major than the data directory's.
//!
//! A typical life:
//! - first member: [`initdb`], [`Postmaster::start`], [`Postmaster::wait_ready`];
//! - other members: [`basebackup`] from the primary, then start;
//! - failover: [`Control::promote`] on a standby; the old primary is
//!   [`Postmaster::fence`]d or stopped, then [`rewind`] (falling back to
//!   [`basebackup`] on [`PgError::RewindFailed`]) and started as a standby;
//! - role changes: stop, [`write_managed_conf`], start; a running standby
//!   follows a new upstream after [`write_managed_conf`] and
//!   [`Postmaster::reload`];
//! - agent start-up: [`kill_strays`] removes a server a previous agent left
//!   behind, which this process could neither fence nor reap.
//!
//! When the caller runs as root (lab, tests), set [`PgSettings::run_as`]:
//! every PostgreSQL binary then runs as that user, and every file written
//! into the data directory is owned by it.

mod bootstrap;
mod conf;
mod control;
mod controldata;
mod error;
mod files;
mod lsn;
mod postmaster;
mod probe;
mod procfs;
mod progress;
mod replica;
mod session;
mod settings;
mod spawner;
mod tls;
mod tools;
pub mod version;

pub use bootstrap::{ClusterInfo, basebackup, initdb, is_initialized, rewind};
pub use conf::{check_parameters, write_managed_conf};
pub use control::{
    Control, PendingSetting, PgStatus, ReplicationPeer, ReplicationSlot, WalReceiver,
};
pub use controldata::{ControlData, DbState, controldata, parse as parse_controldata};
pub use error::{PgError, Result};
pub use lsn::Lsn;
pub use postmaster::{Postmaster, StopMode, kill_server_processes, kill_strays, server_processes};
pub use probe::{Probe, REOPEN_EVERY};
pub use procfs::all_pids;
pub use progress::{CopyProgress, ProgressSink};
pub use replica::{CommandMethod, ReplicaMethod, ReplicaSource, create_replica};
pub use settings::{Login, Password, PgSettings, Role, RunAs, SyncStandbys, Upstream};
pub use tls::{ClientTls, SslMode, refused_certificate};
