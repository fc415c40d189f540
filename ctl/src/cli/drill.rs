//! `drill`'s options and help.

use super::PgLoginArgs;
use clap::{Args, ValueEnum};

pub(super) const DRILL_ABOUT: &str = "\
Measure a switchover or failover on the live cluster: RTO and RPO as a
client writing through the entry point sees them.

The drill creates a table of its own, raftgres_drill_<random>, on the
primary, and writes numbered rows into it, --writes-per-second autocommit
INSERTs on one connection through --entry (after any error on a new
connection, as an application's pool would; a failed write is not retried).
After a quarter of --duration (at least 1 s, at most 10 s) it asks the
agents to change the primary:

  switchover  POST /switchover from the current leader, to the replica the
              agents pick, as `raftgresctl switchover --force`.
  failover    POST /failover naming the best replica as the agents rank them
              (most WAL replayed, then failover_priority, then name), as
              `raftgresctl failover --candidate NAME --force`. Refused
              without --force. It kills nothing: with a running primary the
              agents carry a failover out as Patroni does, the old primary
              stops (a fast shutdown, after a checkpoint) and hands over to the
              named candidate, then rejoins as its replica. A primary lost
              without warning (host down, kill -9) is not something the API can
              stage: run the drill's writes through the lab's fault tests
              for that.

It keeps writing for the rest of --duration, longer if need be (up to 30 s
after the agents answered) until the new primary acknowledges a write.
Then it reads the table back from the new primary, drops it, and reports:

  RTO  the longest time between two acknowledged writes, and the time from
       the request to the first write the new primary acknowledged;
  RPO  the acknowledged writes missing on the new primary (0 for a
       switchover, else the drill fails);
  the failed writes and their errors, the old and new primary and their
  timelines.

Which member acknowledged a write comes from Postgres's cluster_name, which
the agent sets to the member's name. The table is dropped also when the
drill fails; if even that fails, the drill says so and names it.

--entry is where the writes go:
  primary    (default) the members' Postgres addresses from GET /cluster, the
             one that takes writes: as a libpq client with every member in
             its connection string and target_session_attrs=read-write
  haproxy    HAProxy's write port, from lab.json (needs --lab)
  pgbouncer  the pgbouncer beside a replica, from lab.json (needs --lab)
  DSN        a libpq connection string, key=value or postgresql:// (several
             hosts and target_session_attrs as in libpq); its user, database
             and password also serve the drill's own connections to the members

The login is query's: the user from -U, else PGUSER, else your login name;
the password from --password, else PGPASSWORD, else the password file
(PGPASSFILE, else ~/.pgpass); TLS from PGSSLMODE and PGSSLROOTCERT. Keep
passwords out of --entry, where `ps` shows them: use the password file.";

pub(super) const DRILL_AFTER: &str = "\
Exit codes of drill: as the others (see `raftgresctl --help`), and 1 when a
switchover lost acknowledged writes (after the report).

Examples:
  raftgresctl --lab /tmp/raftgres-lab drill switchover --entry haproxy
  raftgresctl drill failover --force --duration 60 --format json \\
      --entry 'host=db-lb port=5000 dbname=app user=app'";

/// `drill`'s options; the login's help says what --entry overrides.
#[derive(Debug, Args)]
#[command(
    mut_arg("dbname", |a| a.help("The database, unless --entry's connection string names one")),
    mut_arg("dbuser", |a| a.help(
        "The database user, unless --entry's connection string names one; \
         default PGUSER, else your login name"
    )),
)]
pub struct DrillArgs {
    #[arg(value_enum)]
    pub action: crate::drill::Action,
    /// How long to write, in seconds; the action comes after a quarter of it.
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(4..=3600))]
    pub duration: u64,
    /// Writes sent each second, one at a time.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub writes_per_second: u32,
    /// Where the writes go: primary, haproxy, pgbouncer, or a libpq
    /// connection string (see the long help).
    #[arg(long, default_value = "primary", value_name = "DSN|primary|haproxy|pgbouncer",
          value_parser = parse_entry)]
    pub entry: EntryArg,
    #[arg(long, short = 'f', value_enum, default_value = "pretty")]
    pub format: ReportFormat,
    /// Needed for a failover drill.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub login: PgLoginArgs,
}

/// `drill --entry`.
#[derive(Debug, Clone)]
pub enum EntryArg {
    Primary,
    Haproxy,
    Pgbouncer,
    /// Boxed: a `Config` is ten times the size of the other variants.
    Dsn(Box<tokio_postgres::Config>),
}

/// `primary`, `haproxy`, `pgbouncer`, or a connection string.
fn parse_entry(text: &str) -> Result<EntryArg, String> {
    match text {
        "primary" => Ok(EntryArg::Primary),
        "haproxy" => Ok(EntryArg::Haproxy),
        "pgbouncer" => Ok(EntryArg::Pgbouncer),
        dsn => dsn
            .parse()
            .map(|c| EntryArg::Dsn(Box::new(c)))
            .map_err(|e| {
                format!(
                    "not primary, haproxy or pgbouncer, and not a libpq connection string \
                 (host=H port=P dbname=D, or postgresql://H:P/D): {e}"
                )
            }),
    }
}

/// `drill --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A table.
    Pretty,
    /// One JSON document with stable keys.
    Json,
}
