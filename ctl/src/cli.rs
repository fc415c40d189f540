//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  usage error, unreadable local file, declined confirmation, or another failure on this side
  2  an agent refused the operation (HTTP 4xx: e.g. wrong credentials, impossible switchover, config changed meanwhile)
  3  no agent could be reached, one timed out, or one failed (HTTP 5xx)

Finding the cluster: --url (repeatable), --lab DIR, or --config FILE; with none, http://127.0.0.1:8008.
The first address that answers GET /cluster names the other members.";

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

#[derive(Args)]
pub struct TargetOpts {
    /// An agent's REST API, e.g. http://10.0.0.1:8008; tried in order until one answers.
    #[arg(
        long = "url",
        global = true,
        env = "RAFTGRESCTL_URL",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub urls: Vec<String>,
    /// A lab directory: its lab.json gives every member's API and the credentials.
    #[arg(long, global = true, value_name = "DIR")]
    pub lab: Option<PathBuf>,
    /// A YAML file with `urls: [...]`, `username` and `password`.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// User for the mutating endpoints (HTTP basic auth); alone, it replaces
    /// the user from --lab or --config and keeps their password.
    #[arg(long, global = true, env = "RAFTGRESCTL_USERNAME")]
    pub username: Option<String>,
    /// Password for the mutating endpoints; alone, it replaces the password
    /// from --lab or --config and keeps their user.
    #[arg(
        long,
        global = true,
        env = "RAFTGRESCTL_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table.
    Pretty,
    /// Stable machine-readable output.
    Json,
    Yaml,
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
}

/// The commands that talk to a running cluster.
#[derive(Subcommand)]
pub enum ClusterCmd {
    /// The members and their state, from GET /cluster.
    ///
    /// With --format json or yaml: the `members` array of /cluster as the agent sends it.
    List {
        #[arg(long, short = 'f', value_enum, default_value = "pretty")]
        format: Format,
        /// Redraw every SECONDS (default 2) until Ctrl-C.
        #[arg(long = "watch", short = 'w', value_name = "SECONDS", num_args = 0..=1,
              default_missing_value = "2",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch_seconds: Option<u64>,
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
    /// Restart one member's Postgres.
    Restart {
        member: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Rebuild one replica from the leader, discarding its data directory.
    Reinit {
        member: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Maintenance mode: the agents stop promoting and demoting.
    Pause,
    /// Leave maintenance mode.
    Resume,
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
    /// Change the dynamic config: with -s/-p, or in $EDITOR when neither is given.
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
}

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn watch_takes_an_optional_interval() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Cmd::Cluster(ClusterCmd::List { watch_seconds, .. }),
                ..
            }) => watch_seconds,
            _ => panic!("{args:?} should parse as list"),
        };
        assert_eq!(parse(&["raftgresctl", "list"]), None);
        assert_eq!(parse(&["raftgresctl", "list", "--watch"]), Some(2));
        assert_eq!(parse(&["raftgresctl", "list", "--watch", "5"]), Some(5));
        assert!(Cli::try_parse_from(["raftgresctl", "list", "--watch", "0"]).is_err());
    }
}
