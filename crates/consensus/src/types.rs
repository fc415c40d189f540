//! openraft's type configuration; the only place that names openraft's generics.

use raftgres_state::{Command, Response};
// `declare_raft_types!` expands to `Cursor<Vec<u8>>` for snapshot data.
use std::io::Cursor;

openraft::declare_raft_types!(
    /// Raft log entries are [`Command`]s; applying one yields a [`Response`].
    pub TypeConfig:
        D = Command,
        R = Response,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type StorageError = openraft::StorageError<NodeId>;
