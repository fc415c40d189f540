//! openraft's type configuration; the only place that names openraft's generics.

use raftgres_state::{Command, Response};
use serde::{Deserialize, Serialize};
// `declare_raft_types!` expands to `Cursor<Vec<u8>>` for snapshot data.
use std::io::Cursor;

openraft::declare_raft_types!(
    /// Raft log entries are [`Command`]s; applying one yields a [`Response`].
    pub TypeConfig:
        D = Command,
        R = Response,
        Node = Node,
);

pub type NodeId = u64;

/// Which creation of a member's Raft store: drawn at random when the store
/// is created, so a wiped or replaced store never passes for the one the
/// group knows under the same node id.
pub type Incarnation = u64;

/// The incarnation recorded for a member before it ever claimed its place:
/// the voters a group is formed with. Never drawn for a store.
pub const UNCLAIMED: Incarnation = 0;

/// A member as the group's membership records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Where its Raft service listens.
    pub addr: String,
    /// The incarnation of the store that holds its vote and log; Raft
    /// messages carry it, and a store of another incarnation refuses them.
    #[serde(default)]
    pub incarnation: Incarnation,
}

impl Node {
    pub fn new(addr: impl Into<String>, incarnation: Incarnation) -> Self {
        Self {
            addr: addr.into(),
            incarnation,
        }
    }
}

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type StorageError = openraft::StorageError<NodeId>;
