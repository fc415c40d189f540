use super::{LOG, META, StoreError, blocking};
use crate::types::{Incarnation, LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, OptionalSend, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
#[cfg(feature = "fault-injection")]
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The Raft log and vote. Cloned as the log reader: redb serializes writers
/// and gives readers consistent snapshots, so clones need no extra locking.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    incarnation: Incarnation,
    flush: FlushProgress,
    committed: CommitIndex,
    #[cfg(feature = "fault-injection")]
    flush_delay: Arc<Mutex<Duration>>,
}

/// The commit index openraft last gave this store (0 before any): where a
/// member knows the log committed, which openraft 0.9's metrics leave out.
#[derive(Clone, Default)]
pub(crate) struct CommitIndex(Arc<AtomicU64>);

impl CommitIndex {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, committed: Option<&LogId>) {
        self.0
            .store(committed.map_or(0, |id| id.index), Ordering::Relaxed);
    }
}

/// Since when the log append in progress has been waiting for its commit
/// (redb's write lock, then the fsync).
/// openraft 0.9 awaits that inside its core task, so this is also how long
/// the core has been unable to send heartbeats (see `crate::keepalive`) or
/// take the next write (see `crate::group_commit`).
#[derive(Clone)]
pub(crate) struct FlushProgress(Arc<watch::Sender<Option<Instant>>>);

/// Marks the flush finished when dropped, also when the append is cancelled.
struct FlushPending(FlushProgress);

impl Default for FlushProgress {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(None)))
    }
}

impl FlushProgress {
    fn begin(&self) -> FlushPending {
        self.0.send_replace(Some(Instant::now()));
        FlushPending(self.clone())
    }

    /// How long the append in progress has waited, if one is in progress.
    pub(crate) fn pending_for(&self) -> Option<Duration> {
        self.0.borrow().map(|since| since.elapsed())
    }

    /// Since when the append in progress has waited, as it changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Instant>> {
        self.0.subscribe()
    }
}

impl Drop for FlushPending {
    fn drop(&mut self) {
        self.0.0.send_replace(None);
    }
}

impl LogStore {
    pub(super) fn new(db: Arc<Database>, incarnation: Incarnation) -> Self {
        Self {
            db,
            incarnation,
            flush: FlushProgress::default(),
            committed: CommitIndex::default(),
            #[cfg(feature = "fault-injection")]
            flush_delay: Arc::default(),
        }
    }

    /// Which creation of this store it is (see [`Incarnation`]).
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    pub(crate) fn flush_progress(&self) -> FlushProgress {
        self.flush.clone()
    }

    pub(crate) fn commit_index(&self) -> CommitIndex {
        self.committed.clone()
    }

    /// Fault point: every later log append waits `delay` before its commit,
    /// as if the disk's fsync took that long. Exists only in builds with the
    /// test-only `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    pub fn delay_flushes(&self, delay: Duration) {
        *self.flush_delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// Whether an append is waiting for its fsync now; for tests that act
    /// in the middle of a delayed flush.
    #[cfg(feature = "fault-injection")]
    pub fn flush_in_progress(&self) -> bool {
        self.flush.pending_for().is_some()
    }

    #[cfg(feature = "fault-injection")]
    fn injected_flush_delay(&self) -> Duration {
        *self.flush_delay.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(not(feature = "fault-injection"))]
    fn injected_flush_delay(&self) -> Duration {
        Duration::ZERO
    }

    async fn read_meta<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(META)?;
            match table.get(key)? {
                Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
                None => Ok(None),
            }
        })
        .await
    }
}

fn owned_bound(b: Bound<&u64>) -> Bound<u64> {
    match b {
        Bound::Included(x) => Bound::Included(*x),
        Bound::Excluded(x) => Bound::Excluded(*x),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let db = self.db.clone();
        let range = (
            owned_bound(range.start_bound()),
            owned_bound(range.end_bound()),
        );
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let mut entries = Vec::new();
            for item in table.range(range)? {
                let (_, bytes) = item?;
                entries.push(serde_json::from_slice(bytes.value())?);
            }
            Ok(entries)
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            let last_purged: Option<LogId> = match meta.get("last_purged")? {
                Some(bytes) => Some(serde_json::from_slice(bytes.value())?),
                None => None,
            };
            let log = txn.open_table(LOG)?;
            let last = match log.last()? {
                Some((_, bytes)) => {
                    let entry: Entry<TypeConfig> = serde_json::from_slice(bytes.value())?;
                    Some(entry.log_id)
                }
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let db = self.db.clone();
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(META)?.insert("vote", bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta("vote")
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    /// Without fsync: the commit index is only how far openraft applies the
    /// log again at start, and the next log append makes it durable.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let db = self.db.clone();
        let bytes = serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(&e))?;
        // Known committed whether or not this write lands: a store error
        // stops the core anyway.
        self.committed.set(committed.as_ref());
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            txn.open_table(META)?
                .insert("committed", bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed = self
            .read_meta::<Option<LogId>>("committed")
            .await
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(&e))?;
        self.committed.set(committed.as_ref());
        Ok(committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, serde_json::to_vec(&e)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let db = self.db.clone();
        let delay = self.injected_flush_delay();
        let _pending = self.flush.begin();
        // The commit fsyncs, so the callback below only ever reports durable entries.
        let result = blocking(move || {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice())?;
                }
            }
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(LOG)?
                .retain_in(log_id.index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        let marker = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(META)?
                .insert("last_purged", marker.as_slice())?;
            txn.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_commit_index_is_what_openraft_saved_last_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("n1.redb");
        let (mut log, _) = super::super::open(&path).await.expect("open");
        let index = log.commit_index();
        assert_eq!(index.get(), 0, "nothing committed yet");
        log.save_committed(Some(openraft::testing::log_id(2, 1, 17)))
            .await
            .expect("save");
        assert_eq!(index.get(), 17);
        drop((log, index));

        let (mut log, _) = super::super::open(&path).await.expect("reopen");
        assert_eq!(log.commit_index().get(), 0, "not read yet");
        let committed = log.read_committed().await.expect("read");
        assert_eq!(committed.map(|id| id.index), Some(17));
        assert_eq!(log.commit_index().get(), 17);
    }
}
