//! Durable Raft storage in one redb file: the log, the vote, and the state
//! machine's snapshot. Log appends, the vote, purges and snapshots commit
//! with fsync before openraft is told they happened; the commit index does
//! not (the next append's fsync carries it). The state machine itself lives
//! in memory and is rebuilt at start from its snapshot and the log. All of
//! redb's blocking work runs off the async threads.

mod log;
mod state_machine;

pub use log::LogStore;
pub(crate) use log::{CommitIndex, FlushProgress};
pub use state_machine::{StateMachine, StateView};

use crate::types::{Incarnation, UNCLAIMED};
use redb::{Database, ReadableDatabase, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Keys: `vote`, `last_purged`, `committed`, `incarnation`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// Key: `snapshot` (the last snapshot). Stores written before the machine
/// moved to memory also hold `applied`, which nothing reads.
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
    #[error("Raft store is corrupt: {0}; restore it from a backup or re-add this member")]
    Corrupt(String),
    #[error("Raft store worker thread failed: {0}")]
    Worker(String),
}

/// redb's narrower errors, each a `redb::Error` to the store's callers.
macro_rules! from_redb {
    ($($error:ident),*) => {$(
        impl From<redb::$error> for StoreError {
            fn from(e: redb::$error) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    TransactionError,
    TableError,
    StorageError,
    SetDurabilityError,
    CommitError
);

/// Opens (or creates) the store and returns its two halves for openraft.
/// A store gets its incarnation when it is created and keeps it for life.
pub async fn open(path: &Path) -> Result<(LogStore, StateMachine), StoreError> {
    let path = path.to_owned();
    let (db, incarnation) = blocking(move || {
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
        let incarnation = match read_incarnation(&db)? {
            Some(incarnation) => incarnation,
            None => {
                let incarnation = draw_incarnation();
                let txn = db.begin_write()?;
                txn.open_table(META)?
                    .insert("incarnation", incarnation.to_be_bytes().as_slice())?;
                txn.commit()?;
                incarnation
            }
        };
        Ok((Arc::new(db), incarnation))
    })
    .await?;
    let machine = StateMachine::load(db.clone()).await?;
    Ok((LogStore::new(db, incarnation), machine))
}

fn read_incarnation(db: &Database) -> Result<Option<Incarnation>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META)?;
    let Some(bytes) = table.get("incarnation")? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes.value().try_into().map_err(|_| {
        StoreError::Corrupt("the incarnation record is not 8 bytes long".to_owned())
    })?;
    Ok(Some(Incarnation::from_be_bytes(bytes)))
}

/// 64 random bits, never [`UNCLAIMED`]. std's hasher keys are seeded from
/// the operating system's random source, so two stores created anywhere
/// draw independent values; a collision is a 2^-64 event.
fn draw_incarnation() -> Incarnation {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let drawn = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        if drawn != UNCLAIMED {
            return drawn;
        }
    }
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
