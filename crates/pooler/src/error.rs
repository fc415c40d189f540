use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Failures of keeping pgbouncer pointed at the right servers. Each message
/// says what failed and what the caller (or operator) should do next.
#[derive(Debug, thiserror::Error)]
pub enum PoolerError {
    #[error("pgbouncer.{key} {value:?} is invalid: {reason}; fix the agent config")]
    InvalidSetting {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "server {target} for pgbouncer database {database:?} is invalid: {reason}; fix the member's Postgres address"
    )]
    InvalidTarget {
        database: String,
        target: String,
        reason: &'static str,
    },
    #[error(
        "cannot {action} {path}: {source}; check that the directory exists and that the agent's user may write it"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot reach pgbouncer's admin console at {addr} as {user}: {reason}; check that pgbouncer runs there and lists {user} in admin_users, then retry"
    )]
    Connect {
        addr: String,
        user: String,
        reason: String,
    },
    #[error(
        "pgbouncer at {addr} did not answer {command} within {after:?}; it may be overloaded or hung: retry, and restart it if it stays so"
    )]
    Timeout {
        addr: String,
        command: String,
        after: Duration,
    },
    #[error(
        "{command} at {addr} did not finish within {after:?}: transactions are still running (in session mode: clients are still connected); the database stays paused, so new clients wait: RESUME to give up, or PAUSE again to keep waiting"
    )]
    PauseTimeout {
        addr: String,
        command: String,
        after: Duration,
    },
    #[error(
        "pgbouncer at {addr} refused {command}: {reason}; fix the command or the database name"
    )]
    Rejected {
        addr: String,
        command: String,
        reason: String,
    },
    #[error(
        "pgbouncer at {addr} answered {command} without a usable {column:?}; raftgres needs pgbouncer 1.18 or newer"
    )]
    UnexpectedReply {
        addr: String,
        command: String,
        column: &'static str,
    },
}

pub type Result<T, E = PoolerError> = std::result::Result<T, E>;

/// `map_err` helper for file system calls, naming the path.
pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> PoolerError + 'a {
    move |source| PoolerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
