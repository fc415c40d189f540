//! `lab`'s subcommands.

use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum LabCmd {
    /// Start the members and wait until one holds the lease; writes DIR/lab.json.
    Up {
        #[arg(long, default_value = "/tmp/raftgres-lab")]
        dir: PathBuf,
        /// Members that may become primary (a witness comes on top).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
        members: u16,
        /// Add a witness member: it votes in Raft and never holds the lease.
        #[arg(long)]
        witness: bool,
        /// The agent binary; default: raftgres-agent beside this program.
        #[arg(long)]
        agent_bin: Option<PathBuf>,
        /// The PostgreSQL bin directory the members run (their
        /// `postgresql.bin_dir`), e.g. what `scripts/fetch-postgres 18`
        /// prints; default: the system's PostgreSQL 15.
        #[arg(long, value_name = "DIR")]
        pg_bin_dir: Option<PathBuf>,
    },
    /// Stop what `lab up` started in DIR, by PID.
    Down {
        #[arg(long, default_value = "/tmp/raftgres-lab")]
        dir: PathBuf,
    },
    /// Show each member's view.
    Status {
        #[arg(long, default_value = "/tmp/raftgres-lab")]
        dir: PathBuf,
    },
    /// Restart one member's agent (SIGTERM, then the same binary and
    /// config); its keeper keeps Postgres running and the new agent attaches.
    RestartAgent {
        #[arg(long, default_value = "/tmp/raftgres-lab")]
        dir: PathBuf,
        /// The member, as named in lab.json.
        name: String,
    },
}
