//! The command line: the global options and the commands. The options and
//! long help of the larger commands are in the submodules.

mod drill;
mod lab;
mod pooler;
mod query;
mod tls;

pub use drill::{DrillArgs, EntryArg, ReportFormat};
pub use lab::LabCmd;
pub use pooler::PoolerArgs;
pub use query::{PgLoginArgs, QueryArgs};
pub use tls::TlsCmd;

use clap::{Args, Parser, Subcommand, ValueEnum};
use drill::{DRILL_ABOUT, DRILL_AFTER};
use pooler::{POOLER_ABOUT, POOLER_AFTER};
use query::QUERY_ABOUT;
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  usage error, unreadable local file, declined confirmation, or another failure on this side
  2  an agent refused the operation (HTTP 4xx: e.g. wrong credentials, impossible switchover, config changed meanwhile),
     or, for query, the member's Postgres refused the login or the SQL
  3  no agent (for query: no member's Postgres) could be reached, one timed out, or one failed (HTTP 5xx)

Finding the cluster, the first that says something wins:
  1. options: --url (repeatable), --username, --password-file, --cacert, --cert and --key
  2. files named on the command line: --lab DIR (its lab.json), and -c/--config-file FILE
     (or --config FILE): an agent's settings file, read as the agent reads it (restapi's
     address, authentication and CA, and the cluster's scope, which the agents must
     serve), or a small file with urls, username and password
  3. the environment: RAFTGRESCTL_URL, RAFTGRESCTL_USERNAME, RAFTGRESCTL_PASSWORD,
     RAFTGRESCTL_CACERT, RAFTGRESCTL_CERT with RAFTGRESCTL_KEY
  4. http://127.0.0.1:8008
The addresses of 1 and 2 are tried in that order. The first address that answers GET
/cluster names the other members.";

#[derive(Parser)]
#[command(
    version,
    about = "Operate a raftgres cluster through its agents' REST API",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub target: TargetOpts,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Where the cluster is and how to log in to its agents. The environment
/// variables are read in `target.rs`, not by clap, so that a file named on
/// the command line beats them.
#[derive(Args)]
pub struct TargetOpts {
    /// An agent's REST API, e.g. http://10.0.0.1:8008; tried in order until
    /// one answers. Else RAFTGRESCTL_URL (comma-separated), after the files.
    #[arg(long = "url", global = true, value_delimiter = ',', value_name = "URL")]
    pub urls: Vec<String>,
    /// A lab directory: its lab.json gives every member's API and the credentials.
    #[arg(long, global = true, value_name = "DIR")]
    pub lab: Option<PathBuf>,
    /// An agent's settings file, as patronictl's `-c patroni.yml`: the
    /// address, credentials and CA of its REST API, and the cluster's scope.
    /// Or a YAML file with `urls: [...]`, `username` and `password`. Given
    /// before the command (`raftgresctl -c FILE list`), as in patronictl.
    #[arg(
        short = 'c',
        long = "config-file",
        value_name = "FILE",
        conflicts_with = "config"
    )]
    pub config_file: Option<PathBuf>,
    /// The same as -c/--config-file, anywhere on the command line.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// User for the mutating endpoints (HTTP basic auth); alone, it replaces
    /// the user from --lab or the config file and keeps their password. Else
    /// RAFTGRESCTL_USERNAME, after the files.
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// A file holding the password for the mutating endpoints (its first
    /// line; it must be private, mode 600). Else RAFTGRESCTL_PASSWORD, after
    /// the files. Not an option's value, which any user sees in `ps`. Alone,
    /// it replaces the password from --lab or the config file and keeps
    /// their user.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The CA (PEM) that signs the agents' REST certificates (restapi.certfile),
    /// for https URLs. Else the lab's or the config file's, else RAFTGRESCTL_CACERT.
    #[arg(long, global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// A client certificate (PEM) for agents with restapi.verify_client; with
    /// --key. Else RAFTGRESCTL_CERT with RAFTGRESCTL_KEY.
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM, mode 600).
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table.
    Pretty,
    /// Tab-separated: a header line, then a line a row.
    Tsv,
    /// Stable machine-readable output: for `list`, patronictl's rows.
    Json,
    Yaml,
}

/// Which members a command picks by role, as patronictl's `--role`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum RoleFilter {
    /// The lease holder.
    #[value(alias = "primary", alias = "master")]
    Leader,
    /// Every member that replicates from it.
    #[value(alias = "standby")]
    Replica,
    /// Every member that runs Postgres.
    Any,
}

/// What `flush` discards.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum FlushTarget {
    /// The scheduled restarts of the members chosen (all by default).
    Restart,
    /// The pending (scheduled) switchover.
    Switchover,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocFormat {
    Yaml,
    Json,
}

#[derive(Subcommand)]
pub enum Cmd {
    #[command(flatten)]
    Cluster(ClusterCmd),
    /// A real cluster on this machine, for trying raftgres and for tests.
    Lab {
        #[command(subcommand)]
        action: LabCmd,
    },
    /// Certificates for mutual TLS between members (raft.tls_*).
    Tls {
        #[command(subcommand)]
        action: TlsCmd,
    },
    /// A completion script for SHELL, from this CLI's own definition, e.g.
    /// `raftgresctl completion bash > /etc/bash_completion.d/raftgresctl`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page (roff), e.g. `raftgresctl man > raftgresctl.1; man ./raftgresctl.1`.
    Man,
}

/// The commands that talk to a running cluster.
#[derive(Subcommand)]
pub enum ClusterCmd {
    /// The members and their state, from GET /cluster.
    ///
    /// With --format json or yaml: a row a member with patronictl's keys
    /// (Cluster, Member, Host, Role, State, TL, Receive LSN, Receive Lag,
    /// Replay LSN, Replay Lag, ...), so scripts written for `patronictl
    /// list` read it unchanged; lags in MB. GET /cluster has the rest.
    List {
        #[arg(long, short = 'f', value_enum, default_value = "pretty")]
        format: Format,
        /// Redraw every SECONDS (default 2) until Ctrl-C.
        #[arg(long = "watch", short = 'w', value_name = "SECONDS", num_args = 0..=1,
              default_missing_value = "2",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch_seconds: Option<u64>,
        /// Redraw every 2 seconds until Ctrl-C (patronictl's -W).
        #[arg(short = 'W', conflicts_with = "watch_seconds")]
        watch_every_2s: bool,
        /// Every column, needed or not: Pending restart, its reason, Tags.
        #[arg(long, short = 'e')]
        extended: bool,
        /// Print the time before the list.
        #[arg(long, short = 't')]
        timestamp: bool,
    },
    /// The members as a tree: the leader, then the replicas under it.
    Topology {
        /// Redraw every SECONDS (default 2) until Ctrl-C.
        #[arg(long = "watch", short = 'w', value_name = "SECONDS", num_args = 0..=1,
              default_missing_value = "2",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch_seconds: Option<u64>,
    },
    /// Hand the primary role to another member, now or at a set time.
    Switchover {
        /// The current leader (default: the one /cluster names).
        #[arg(long)]
        leader: Option<String>,
        /// The member to promote (default: the agents pick the best replica).
        #[arg(long)]
        candidate: Option<String>,
        /// When: an RFC 3339 time such as 2026-11-22T10:00:00Z, or `now`.
        #[arg(long, value_name = "RFC3339|now")]
        scheduled: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Promote a named member, whether or not the cluster has a leader.
    Failover {
        #[arg(long)]
        candidate: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Restart members' Postgres: the named ones, or every member that
    /// runs Postgres (replicas first, the leader last).
    Restart {
        members: Vec<String>,
        /// Only the members of this role.
        #[arg(long, short = 'r', value_enum)]
        role: Option<RoleFilter>,
        /// Only one of the members chosen, the first in restart order.
        #[arg(long)]
        any: bool,
        /// Only the members where a changed setting waits for a restart
        /// (`Pending restart` in `list`); for a scheduled restart, judged
        /// when it runs.
        #[arg(long)]
        pending: bool,
        /// When: an RFC 3339 time such as 2026-11-22T10:00:00Z (each
        /// member keeps it; `list` shows it, `flush restart` cancels it),
        /// or `now`, the default.
        #[arg(long, value_name = "RFC3339|now")]
        scheduled: Option<String>,
        /// Only if the member's PostgreSQL is older than this version,
        /// e.g. 15.4.
        #[arg(long = "pg-version", value_name = "VERSION")]
        pg_version: Option<String>,
        /// How long each restart may wait for Postgres to accept
        /// connections (seconds, or e.g. 5min; default 60 s); past it the
        /// restart fails, and on the leader a replica takes over.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<String>,
        /// Do not ask for confirmation; with --scheduled, replace a restart
        /// already scheduled.
        #[arg(long)]
        force: bool,
    },
    /// Reload members' Postgres configuration: the named ones, or every
    /// member that runs Postgres.
    Reload {
        members: Vec<String>,
        /// Only the members of this role.
        #[arg(long, short = 'r', value_enum)]
        role: Option<RoleFilter>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// A libpq connection string for a member's Postgres: the leader's, a
    /// replica's with --role replica, or the named member's.
    Dsn {
        member: Option<String>,
        #[arg(long, short = 'r', value_enum, conflicts_with = "member")]
        role: Option<RoleFilter>,
    },
    /// Run SQL on a member's Postgres: the leader's, a replica's with
    /// --role replica, or the named member's; as `patronictl query`.
    #[command(long_about = QUERY_ABOUT)]
    Query(QueryArgs),
    /// Discard a scheduled event: `flush restart [MEMBER]...`, or
    /// `flush switchover`.
    Flush {
        #[arg(value_enum)]
        target: FlushTarget,
        /// For `restart`: the members (default: every member).
        #[arg(value_name = "MEMBER")]
        members: Vec<String>,
        /// For `restart`: only the members of this role.
        #[arg(long, short = 'r', value_enum)]
        role: Option<RoleFilter>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Rebuild replicas from the leader, discarding their data directories.
    Reinit {
        #[arg(required = true)]
        members: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
        /// Wait until each has its fresh copy, showing the copy's progress.
        #[arg(long)]
        wait: bool,
    },
    /// Maintenance mode: the agents stop promoting and demoting.
    Pause {
        /// Wait until every member says it is paused.
        #[arg(long)]
        wait: bool,
    },
    /// Leave maintenance mode.
    Resume {
        /// Wait until every member says it is no longer paused.
        #[arg(long)]
        wait: bool,
    },
    /// The primary changes so far, from GET /history.
    History {
        #[arg(long, short = 'f', value_enum, default_value = "pretty")]
        format: Format,
    },
    /// The dynamic config, from GET /config.
    ShowConfig {
        #[arg(long, short = 'f', value_enum, default_value = "yaml")]
        format: DocFormat,
    },
    /// Change the dynamic config: with -s/-p, or in $VISUAL or $EDITOR when neither is given.
    ///
    /// The change is sent as a JSON merge patch with If-Match, so a change
    /// made by someone else meanwhile fails (exit 2) instead of being overwritten.
    EditConfig {
        /// KEY=VALUE with a dotted KEY, e.g. ttl_ms=5000; VALUE `null` deletes.
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A Postgres parameter: `-p work_mem=4MB` is `-s postgresql.parameters.work_mem=4MB`.
        #[arg(short = 'p', long = "pg", value_name = "PARAM=VALUE")]
        pg: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Remove a member from the Raft group and the cluster state.
    Remove {
        member: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// raftgresctl's version, and each member's agent version when a cluster is given.
    Version,
    /// Keep a local pgbouncer pointed at the primary, on a host that runs no Postgres.
    #[command(long_about = POOLER_ABOUT, after_help = POOLER_AFTER)]
    Pooler(PoolerArgs),
    /// Measure a switchover or failover on the live cluster: RTO and RPO as
    /// a client writing through the entry point sees them.
    #[command(long_about = DRILL_ABOUT, after_help = DRILL_AFTER)]
    Drill(DrillArgs),
}

#[cfg(test)]
mod tests;
