//! Durable Raft storage in one redb file: the log, the vote, and the state
//! machine with its snapshot. Every write commits with fsync before openraft
//! is told it happened, and all of redb's blocking work runs off the async
//! threads.

mod log;
mod state_machine;

pub(crate) use log::FlushProgress;
pub use log::LogStore;
pub use state_machine::{StateMachine, StateView};

use redb::{Database, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Keys: `vote`, `last_purged`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// Keys: `applied` (the live state machine), `snapshot` (the last snapshot).
const MACHINE: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the Raft store {path}: {source}; check the data directory exists and is writable by this user"
    )]
    Open {
        path: String,
        source: Box<redb::Error>,
    },
    #[error("Raft store I/O failed: {0}")]
    Db(#[from] redb::Error),
    #[error(
        "Raft store holds an undecodable record: {0}; the file is corrupt or from another version"
    )]
    Decode(#[from] serde_json::Error),
    #[error("Raft store worker thread failed: {0}")]
    Worker(String),
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        Self::Db(e.into())
    }
}
impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        Self::Db(e.into())
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        Self::Db(e.into())
    }
}
impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        Self::Db(e.into())
    }
}

/// Opens (or creates) the store and returns its two halves for openraft.
pub async fn open(path: &Path) -> Result<(LogStore, StateMachine), StoreError> {
    let path = path.to_owned();
    let db = blocking(move || {
        let db = Database::create(&path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e.into()),
        })?;
        // Creating every table up front lets read transactions assume they exist.
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.open_table(MACHINE)?;
        txn.commit()?;
        Ok(Arc::new(db))
    })
    .await?;
    let machine = StateMachine::load(db.clone()).await?;
    Ok((LogStore::new(db), machine))
}

/// Runs redb work on tokio's blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
}
