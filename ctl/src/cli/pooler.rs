//! `pooler`'s options and help.

use clap::Args;
use std::path::PathBuf;

pub(super) const POOLER_ABOUT: &str = "\
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

pub(super) const POOLER_AFTER: &str = "\
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
