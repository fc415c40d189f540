use super::{MACHINE, StoreError, blocking};
use crate::types::{LogId, StorageError, StoredMembership, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{Entry, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use raftgres_state::{ClusterState, Response};
use redb::{Database, ReadableDatabase};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;
use tokio::sync::watch;

/// What members read locally: the applied state and how far it got. Readers
/// that need the newest state go through a linearizable read instead.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateView {
    pub state: Arc<ClusterState>,
    pub applied_index: u64,
}

/// The state with the log id it was applied to, and the membership: what a
/// snapshot holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Machine {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, crate::types::Node>,
    data: Vec<u8>,
}

/// The machine lives in memory and is written only as a snapshot. Each apply
/// used to commit to redb, and on a slow disk that commit queued behind the
/// log append holding redb's single writer: every renewal, answered once
/// applied, then waited for two fsyncs, and missed its deadline. On start
/// the machine is its last snapshot, and openraft applies the log from
/// there up to the saved commit index (`LogStore::save_committed`) before
/// the member does anything, so it never skips an entry; openraft purges
/// the log only up to a snapshot written with fsync.
pub struct StateMachine {
    db: Arc<Database>,
    machine: Machine,
    view: watch::Sender<StateView>,
    snapshots_built: u64,
}

impl StateMachine {
    pub(super) async fn load(db: Arc<Database>) -> Result<Self, StoreError> {
        let reader = db.clone();
        let machine: Machine = blocking(move || {
            let txn = reader.begin_read()?;
            let table = txn.open_table(MACHINE)?;
            match table.get("snapshot")? {
                Some(bytes) => {
                    let stored: StoredSnapshot = serde_json::from_slice(bytes.value())?;
                    Ok(serde_json::from_slice(&stored.data)?)
                }
                None => Ok(Machine::default()),
            }
        })
        .await?;
        let (view, _) = watch::channel(view_of(&machine));
        Ok(Self {
            db,
            machine,
            view,
            snapshots_built: 0,
        })
    }

    /// A receiver that sees every applied change, in order of application.
    pub fn subscribe(&self) -> watch::Receiver<StateView> {
        self.view.subscribe()
    }

    fn publish(&self) {
        self.view.send_replace(view_of(&self.machine));
    }
}

fn view_of(machine: &Machine) -> StateView {
    StateView {
        state: Arc::new(machine.state.clone()),
        applied_index: machine.last_applied.map_or(0, |id| id.index),
    }
}

/// Writes `snapshot` with fsync, replacing the last one.
async fn write_snapshot(db: Arc<Database>, snapshot: StoredSnapshot) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(&snapshot)?;
    blocking(move || {
        let txn = db.begin_write()?;
        txn.open_table(MACHINE)?
            .insert("snapshot", bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    })
    .await
}

/// Builds snapshots from a copy taken when openraft asks, so the live
/// machine keeps applying meanwhile.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    machine: Machine,
    snapshot_id: String,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = serde_json::to_vec(&self.machine)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let meta = SnapshotMeta {
            last_log_id: self.machine.last_applied,
            last_membership: self.machine.membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        write_snapshot(
            self.db.clone(),
            StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            },
        )
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.machine.last_applied, self.machine.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Response>>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.machine.last_applied = Some(entry.log_id);
            responses.push(match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(proposal) => proposal
                    .commands()
                    .iter()
                    .map(|command| self.machine.state.apply(command))
                    .collect(),
                EntryPayload::Membership(membership) => {
                    self.machine.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            });
        }
        self.publish();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        let last = self.machine.last_applied;
        SnapshotBuilder {
            db: self.db.clone(),
            machine: self.machine.clone(),
            snapshot_id: format!(
                "{}-{}-{}",
                last.map_or(0, |id| id.leader_id.term),
                last.map_or(0, |id| id.index),
                self.snapshots_built
            ),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, crate::types::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let machine: Machine = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        write_snapshot(
            self.db.clone(),
            StoredSnapshot {
                meta: meta.clone(),
                data,
            },
        )
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.machine = machine;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let db = self.db.clone();
        let stored: Option<StoredSnapshot> = blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(MACHINE)?;
            match table.get("snapshot")? {
                Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
                None => Ok(None),
            }
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
