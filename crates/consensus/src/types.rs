//! openraft's type configuration; the only place that names openraft's generics.

use raftgres_state::{Command, Response};
use serde::{Deserialize, Serialize};
// `declare_raft_types!` expands to `Cursor<Vec<u8>>` for snapshot data.
use std::io::Cursor;

openraft::declare_raft_types!(
    /// A Raft log entry is a [`Proposal`] of commands; applying it yields one
    /// [`Response`] per command, in order.
    pub TypeConfig:
        D = Proposal,
        R = Vec<Response>,
        Node = Node,
);

/// What one log entry holds: the commands group commit gathered into it
/// (`crate::group_commit`), applied one after the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Proposal {
    Batch(Vec<Command>),
    /// Stores written before group commit hold one command per entry; they
    /// are read, and replicated as they are, but never written anew. Boxed:
    /// a command is far larger than the batch's vector.
    Single(Box<Command>),
}

impl Proposal {
    pub fn commands(&self) -> &[Command] {
        match self {
            Proposal::Batch(commands) => commands,
            Proposal::Single(command) => std::slice::from_ref(&**command),
        }
    }
}

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
