use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error(
        "a keeper already answers on {socket}: only one may own this Postgres; stop it first (or let the agent attach to it)"
    )]
    AlreadyRunning { socket: PathBuf },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Postgres(raftgres_postgres::PgError),
    #[error("no keeper answers on {socket}: {reason}")]
    Unreachable { socket: PathBuf, reason: String },
    #[error(
        "the keeper on {socket} did not answer within {after:?}; retry, and restart it if this persists"
    )]
    Timeout { socket: PathBuf, after: Duration },
    #[error("the keeper on {socket} sent an unreadable reply: {reason}")]
    BadReply { socket: PathBuf, reason: String },
    #[error(
        "the keeper on {socket} speaks protocol {found}, this agent {expected}: stop the keeper (this stops Postgres) or run the matching agent"
    )]
    Protocol {
        socket: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("the keeper refused: {reason}")]
    Refused { reason: String },
}

impl KeeperError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        KeeperError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T, E = KeeperError> = std::result::Result<T, E>;
