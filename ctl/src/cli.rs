//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};
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

#[derive(Subcommand)]
pub enum TlsCmd {
    /// Issue the cluster's CA (DIR/ca.pem, ca.key) and certificates
    /// (DIR/NAME.pem, NAME.key), keeping every file that exists: run it again
    /// for a new member. Keys are written mode 600; keep ca.key off the members.
    Issue {
        /// Where the CA and the certificates live.
        #[arg(long)]
        dir: PathBuf,
        /// A member's certificate, as NAME:NODE_ID (its `name` and `node_id`); repeatable.
        #[arg(long = "member", value_name = "NAME:NODE_ID", value_parser = parse_member)]
        members: Vec<(String, u64)>,
        /// A certificate for the operator's tools, which reaches any member
        /// but speaks for none; repeatable.
        #[arg(long = "tools", value_name = "NAME")]
        tools: Vec<String>,
        /// A REST API server certificate (DIR/NAME-api.pem, NAME-api.key)
        /// for the host names and addresses clients connect to, as
        /// NAME=HOST[,HOST...]; repeatable.
        #[arg(long = "api", value_name = "NAME=HOST[,HOST...]", value_parser = parse_hosts)]
        api: Vec<(String, Vec<String>)>,
        /// A Postgres server certificate (DIR/NAME-pg.pem, NAME-pg.key,
        /// for ssl_cert_file and ssl_key_file) for the host names and
        /// addresses members connect to (postgresql.connect_address's host,
        /// and 127.0.0.1 when Postgres listens on a wildcard address), as
        /// NAME=HOST[,HOST...]; repeatable.
        #[arg(long = "postgres", value_name = "NAME=HOST[,HOST...]", value_parser = parse_hosts)]
        postgres: Vec<(String, Vec<String>)>,
    },
}

fn parse_hosts(text: &str) -> Result<(String, Vec<String>), String> {
    let (name, hosts) = text.split_once('=').ok_or_else(|| {
        format!("{text:?}: expected NAME=HOST[,HOST...], e.g. db1=10.0.0.11,db1.example.com")
    })?;
    if name.is_empty() {
        return Err(format!("{text:?}: the certificate needs a name before `=`"));
    }
    let hosts: Vec<String> = hosts.split(',').map(str::to_owned).collect();
    if hosts.iter().any(String::is_empty) {
        return Err(format!(
            "{text:?}: a host name or address is empty; separate them with single commas"
        ));
    }
    Ok((name.to_owned(), hosts))
}

fn parse_member(text: &str) -> Result<(String, u64), String> {
    let (name, id) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected NAME:NODE_ID, e.g. node1:1"))?;
    let id: u64 = id
        .parse()
        .map_err(|_| format!("{text:?}: the node id {id:?} is not a whole number"))?;
    if id == 0 {
        return Err(format!("{text:?}: node ids start at 1"));
    }
    Ok((name.to_owned(), id))
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

const DRILL_ABOUT: &str = "\
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

const DRILL_AFTER: &str = "\
Exit codes of drill: as the others (see `raftgresctl --help`), and 1 when a
switchover lost acknowledged writes (after the report).

Examples:
  raftgresctl --lab /tmp/raftgres-lab drill switchover --entry haproxy
  raftgresctl drill failover --force --duration 60 --format json \\
      --entry 'host=db-lb port=5000 dbname=app user=app'";

/// `drill`'s options.
#[derive(Debug, Args)]
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
    /// The database, unless --entry's connection string names one.
    #[arg(short = 'd', long, default_value = "postgres")]
    pub dbname: String,
    /// The database user, unless --entry's connection string names one;
    /// default PGUSER, else your login name.
    #[arg(short = 'U', long = "dbuser", value_name = "USER")]
    pub dbuser: Option<String>,
    /// Ask for the database password on the terminal.
    #[arg(long)]
    pub password: bool,
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

const POOLER_ABOUT: &str = "\
Keep a local pgbouncer pointed at the primary, on a host that runs no Postgres.

For application hosts where each application talks to a pgbouncer on
localhost. Every round (--interval-ms) it reads GET /cluster from any member
that answers, and takes as the primary the member whose role is `leader` and
state `running`, once that member's own GET /primary confirms it (holds a
valid lease and runs a writable primary). Replicas whose state is
`streaming` serve --read-db.

- No member answers, or there is no confirmed leader: the write database is
  fenced (DISABLE, KILL, RESUME) and its entry points at no server, so
  clients are refused rather than sent to a stale primary.
- A leader appears: the databases file is rewritten, pgbouncer RELOADed and
  the write database ENABLEd.
- The leader moves while clients are served: rewrite, RELOAD, then KILL and
  RESUME, so no session stays on the old primary.

pgbouncer.ini must `%include` --databases-file (deploy/pgbouncer/pgbouncer.ini.j2
does), and this command owns that file. It starts by fencing the write
database and runs until SIGINT or SIGTERM (exit 0). Each change is logged to
stderr as one line.

The admin password, if pgbouncer's console needs one, is read from
RAFTGRESCTL_PGBOUNCER_PASSWORD.

Unlike a member's own pgbouncer, this one is not paused for a switchover:
its clients are refused for the moment there is no primary.";

const POOLER_AFTER: &str = "\
Exit codes of pooler:
  0  stopped by SIGINT or SIGTERM; with --once: pgbouncer points at a running leader
  1  bad options, or (with --once) pgbouncer's console failed
  3  with --once: no member answered or there is no running leader (the write database is fenced)

Example:
  raftgresctl --url http://10.0.0.1:8008,http://10.0.0.2:8008 pooler \\
      --databases-file /etc/pgbouncer/raftgres-databases.ini --admin 127.0.0.1:6432";

/// `pooler`'s options.
#[derive(Debug, Args)]
pub struct PoolerArgs {
    /// ABSOLUTE path of the databases file pgbouncer.ini includes; this command owns it.
    #[arg(long, value_name = "ABS_PATH")]
    pub databases_file: PathBuf,
    /// pgbouncer's admin console: HOST:PORT, [IPV6]:PORT, or UNIX_SOCKET_DIR:PORT.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_admin)]
    pub admin: (String, u16),
    /// A user in pgbouncer's admin_users (its password from
    /// RAFTGRESCTL_PGBOUNCER_PASSWORD), as the agent's pgbouncer.admin_user.
    #[arg(long, default_value = "pgbouncer_admin")]
    pub admin_user: String,
    /// The client-facing database that reaches the primary.
    #[arg(long, default_value = "postgres")]
    pub write_db: String,
    /// A client-facing database that reaches the streaming replicas (the
    /// primary while there is none).
    #[arg(long, value_name = "NAME")]
    pub read_db: Option<String>,
    /// The database opened on the servers.
    #[arg(long, default_value = "postgres")]
    pub dbname: String,
    /// Time between rounds.
    #[arg(long, default_value_t = 500, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub interval_ms: u64,
    /// One round, then exit: 0 when pgbouncer points at a running leader, 3 when there is none.
    #[arg(long)]
    pub once: bool,
}

const QUERY_ABOUT: &str = "\
Run SQL on a member's Postgres: the leader's, a replica's with --role replica,
or the named member's; as `patronictl query`.

The member's address comes from GET /cluster. The SQL goes in one simple-query
message, so several statements separated by `;` run as one implicit
transaction, and each result set is printed, values as Postgres writes them
in text (t/f for booleans, NULL as nothing; JSON and YAML: null). With
--role leader or replica, the member is asked pg_is_in_recovery() first, so a
/cluster document a moment behind a failover cannot send the SQL to the wrong
one; a replica that cannot be reached makes way for the next.

As libpq: the password from --password (asked on the terminal), else
PGPASSWORD, else the password file (PGPASSFILE, else ~/.pgpass, mode 600;
host:port:dbname:user:password, `*` for any, `\\:` for a colon); the user from
-U, else PGUSER, else your login name; TLS from PGSSLMODE (default prefer)
and PGSSLROOTCERT.";

/// `query`'s options.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("sql").required(true).args(["command", "file"])))]
pub struct QueryArgs {
    /// The SQL to run.
    #[arg(short = 'c', long, value_name = "SQL")]
    pub command: Option<String>,
    /// A file with the SQL to run; `-` reads standard input.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Run on this member.
    #[arg(short = 'm', long, conflicts_with = "role")]
    pub member: Option<String>,
    /// Run on a member of this role (default: the leader); for replica and
    /// any, the first by name that can be reached.
    #[arg(short = 'r', long, value_enum)]
    pub role: Option<RoleFilter>,
    /// The database.
    #[arg(short = 'd', long, default_value = "postgres")]
    pub dbname: String,
    /// The database user (patronictl's -U/--username; --username is the
    /// REST API's user here); default PGUSER, else your login name.
    #[arg(short = 'U', long = "dbuser", value_name = "USER")]
    pub dbuser: Option<String>,
    /// Ask for the database password on the terminal.
    #[arg(long)]
    pub password: bool,
    /// tsv (patronictl's default here): a header line, then a line a row;
    /// json and yaml: a list of rows, column name to value, a document a
    /// result set.
    #[arg(long, value_enum, default_value = "tsv")]
    pub format: Format,
    /// The column separator of --format tsv (default: a tab). Values are
    /// printed as they are: for values that may hold it or a newline, use
    /// --format json.
    #[arg(
        long,
        default_value = "\t",
        hide_default_value = true,
        value_name = "TEXT"
    )]
    pub delimiter: String,
    /// Run again every SECONDS (default 2) until Ctrl-C, each run after the time.
    #[arg(long = "watch", short = 'w', value_name = "SECONDS", num_args = 0..=1,
          default_missing_value = "2",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch_seconds: Option<u64>,
    /// Run again every 2 seconds until Ctrl-C (patronictl's -W).
    #[arg(short = 'W', conflicts_with = "watch_seconds")]
    pub watch_every_2s: bool,
}

/// `HOST:PORT`, `[V6]:PORT` or `/socket/dir:PORT`.
fn parse_admin(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} has no port; give HOST:PORT, e.g. 127.0.0.1:6432"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!(
            "{text:?} has no host; give HOST:PORT, e.g. 127.0.0.1:6432"
        ));
    }
    let port = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port; give HOST:PORT, e.g. 127.0.0.1:6432"))?;
    Ok((host.to_owned(), port))
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
    /// Restart one member's agent (SIGTERM, then the same binary and
    /// config); its keeper keeps Postgres running and the new agent attaches.
    RestartAgent {
        #[arg(long, default_value = "/tmp/raftgres-lab")]
        dir: PathBuf,
        /// The member, as named in lab.json.
        name: String,
    },
}

#[cfg(test)]
mod tests;
