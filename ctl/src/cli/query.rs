//! `query`'s options and help, and the Postgres login it shares with `drill`.

use super::{Format, RoleFilter};
use clap::Args;
use std::path::PathBuf;

pub(super) const QUERY_ABOUT: &str = "\
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
    #[command(flatten)]
    pub login: PgLoginArgs,
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

/// The login to a member's Postgres, as libpq's options: `query`'s and
/// `drill`'s.
#[derive(Debug, Args)]
pub struct PgLoginArgs {
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
}
