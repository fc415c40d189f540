use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Failures of driving the local PostgreSQL. Each message says what failed
/// and what the caller (or operator) should do next.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "{what} {value:?} is invalid: {reason}; fix the setting (this is a caller bug, retrying will not help)"
    )]
    InvalidInput {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "PostgreSQL binary {path} does not exist; set postgresql.bin_dir to the directory holding PostgreSQL's initdb, postgres and pg_rewind (Debian: /usr/lib/postgresql/MAJOR/bin, e.g. {default})",
        default = crate::version::DEFAULT_BIN_DIR
    )]
    BinaryMissing { path: PathBuf },
    #[error(
        "{what} is PostgreSQL {found}, but postgresql.bin_dir ({bin_dir}) holds PostgreSQL {major}'s binaries; set postgresql.bin_dir to PostgreSQL {found}'s (Debian: /usr/lib/postgresql/{found}/bin), or move the data to {major} with pg_upgrade first"
    )]
    MajorMismatch {
        /// The data directory, or the server being cloned.
        what: String,
        found: u32,
        bin_dir: PathBuf,
        major: u32,
    },
    #[error(
        "postgresql.bin_dir ({bin_dir}) holds PostgreSQL {major}, older than the oldest major raftgres runs ({oldest}); point it at PostgreSQL {oldest} to {newest}",
        oldest = crate::version::OLDEST_MAJOR,
        newest = crate::version::NEWEST_MAJOR
    )]
    UnsupportedMajor { bin_dir: PathBuf, major: u32 },
    #[error(
        "postgresql.authentication.rewind names {user}, a login apart from the superuser, but PostgreSQL {major} lets only a superuser run the CHECKPOINT a rewind needs on its source (the pg_checkpoint role exists from 15 on); on {major}, remove postgresql.authentication.rewind so the superuser rewinds, or run PostgreSQL 15 or later"
    )]
    RewindLoginNeedsMajor { user: String, major: u32 },
    #[error(
        "data directory {path} is not initialized (it has no PG_VERSION); run initdb or clone it from a primary first"
    )]
    NotInitialized { path: PathBuf },
    #[error(
        "data directory {path} is not empty; initdb only writes into an empty directory; move it aside, or clone instead"
    )]
    DataDirNotEmpty { path: PathBuf },
    #[error(
        "cannot {action} {path}: {source}; check that the path exists and that the agent's user may write it"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot start {program}: {source}; check bin_dir, run_as and that the binary is executable"
    )]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{program} failed ({status}): {stderr}; fix the cause named there and retry")]
    ToolFailed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error(
        "replica creation method {method} failed: {reason}; fix the method (postgresql.{method}) or let a later one in postgresql.create_replica_methods create the replica"
    )]
    ReplicaMethodFailed { method: String, reason: String },
    #[error(
        "no replica creation method of postgresql.create_replica_methods succeeded ({tried}); the clone is retried later, the old data is intact"
    )]
    NoReplicaMethodSucceeded { tried: String },
    #[error("TLS to PostgreSQL: {reason}; fix sslmode or sslrootcert")]
    Tls { reason: String },
    #[error("PostgreSQL refuses the server settings: {reason}; correct or remove that parameter")]
    ParametersRefused { reason: String },
    #[error(
        "pg_rewind from {upstream} failed ({status}): {stderr}; clone the data directory afresh with pg_basebackup instead"
    )]
    RewindFailed {
        upstream: String,
        status: String,
        stderr: String,
    },
    #[error(
        "pg_controldata output for {path} has no usable {field:?}; is it a data directory of the major postgresql.bin_dir holds?"
    )]
    ControlData { path: PathBuf, field: &'static str },
    #[error(
        "the postmaster (pid {pid}) exited ({status}); see {log}, which ends with:\n{log_tail}"
    )]
    PostmasterExited {
        pid: u32,
        status: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error(
        "the postmaster (pid {pid}) did not accept connections within {after:?} (last answer: {last}); see {log}; wait longer or stop it"
    )]
    NotReady {
        pid: u32,
        after: Duration,
        last: String,
        log: PathBuf,
    },
    #[error(
        "the postmaster (pid {pid}) is stopped by a signal and accepts no connections; continue it (kill -CONT {pid}) or stop it"
    )]
    PostmasterStopped { pid: u32 },
    #[error(
        "{addr} is served by a PostgreSQL with data directory {found}, not {expected}; another server holds the port: stop it or choose another port"
    )]
    PortTaken {
        addr: String,
        found: String,
        expected: PathBuf,
    },
    #[error(
        "signal {signal} to the postmaster (pid {pid}) failed: {errno}; the process may already be gone, check try_exited"
    )]
    Signal {
        pid: u32,
        signal: &'static str,
        errno: nix::errno::Errno,
    },
    #[error(
        "PostgreSQL processes {pids:?} are still alive {after:?} after SIGKILL (stuck in the kernel?); they may still accept writes: stop this node"
    )]
    FenceIncomplete { pids: Vec<u32>, after: Duration },
    #[error(
        "PostgreSQL processes {pids:?} are already running from {data_dir} but are not this handle's children; stop them, or call kill_strays, before starting or replacing this data directory"
    )]
    AlreadyRunning { data_dir: PathBuf, pids: Vec<u32> },
    #[error(
        "cannot connect to PostgreSQL at {addr}: {reason}; is it running and accepting connections? retry"
    )]
    Connect { addr: String, reason: String },
    #[error(
        "{operation} got no answer from PostgreSQL within {after:?}; it may be overloaded or hung: retry, and stop it if it stays so"
    )]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    #[error("{operation} failed: {reason}; see the PostgreSQL log, then retry")]
    Query {
        operation: &'static str,
        reason: String,
    },
    #[error(
        "{operation} needs a server in recovery, but this one is a primary; do not ask a primary to {operation}"
    )]
    NotInRecovery { operation: &'static str },
    #[error(
        "replication slot {name} is in use by a connected standby; stop that standby (or wait until it disconnects), then retry"
    )]
    SlotActive { name: String },
}

pub type Result<T, E = PgError> = std::result::Result<T, E>;

/// `map_err` helper for file system calls, naming the path.
pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> PgError + 'a {
    move |source| PgError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A database error reduced to what an operator can act on: the server's
/// message, detail and hint, or the client-side cause.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str("; ");
            text.push_str(detail);
        }
        if let Some(hint) = db.hint() {
            text.push_str("; hint: ");
            text.push_str(hint);
        }
        return text;
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
