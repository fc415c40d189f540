//! A real local cluster on one machine: agents on loopback ports, run as the
//! `postgres` user, with API authentication and, when installed, a pgbouncer
//! beside each Postgres and HAProxy in front, described in a machine-readable
//! `lab.json`. `raftgresctl lab` and the integration tests both use this
//! code, so one path is tested and shipped.
//!
//! Architecture invariant: lab-only. Production paths never depend on it.

mod daemon;
mod disk;
mod haproxy;
mod impair;
mod netns;
mod pgbouncer;
mod process;
mod settings;
mod spec;
mod tls;

pub use disk::{fill as fill_disk, free as free_disk, replace_postgres};
pub use haproxy::binary as haproxy_binary;
pub use impair::Impairment;
pub use netns::{LabNetwork, NetnsMember, enter_netns};
pub use pgbouncer::binary as pgbouncer_binary;
pub use pgbouncer::{ADMIN_USER as PGBOUNCER_ADMIN_USER, StandalonePgbouncer};
pub use process::{
    Lab, LabError, agent_status, down, member_channel, pg_query_bool, read_description,
    running_members,
};
pub use spec::{ApiAuth, LabDescription, LabHaproxy, LabMember, LabSpec, PgAuth};
pub use tls::LabTls;
