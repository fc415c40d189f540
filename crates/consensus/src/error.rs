use crate::types::{Incarnation, NodeId};
use std::time::Duration;

/// Failures of the consensus handle, each saying what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    #[error(
        "no Raft leader is known (an election is running, or this member is cut off from the majority); retry shortly"
    )]
    NoLeader,
    #[error("{operation} did not finish within {after:?}; the majority may be unreachable; retry")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    #[error("the Raft leader at {addr} is unreachable ({reason}); back off and retry")]
    Unreachable { addr: String, reason: String },
    #[error("the Raft leader at {addr} refused the request: {message}")]
    Remote { addr: String, message: String },
    #[error("the leader could not confirm its leadership with a quorum; retry")]
    NoQuorum,
    #[error("membership change refused: {0}")]
    Membership(String),
    #[error(
        "the Raft group knows node id {node_id} under another incarnation of its Raft store: this \
         store is empty or new (a wiped or replaced disk), so it has lost that member's vote and \
         log and must not take its place. Remove the member from any other member \
         (`raftgresctl remove NAME`), then start this agent again: it joins as a learner, \
         catches up, and is promoted to voter"
    )]
    Replaced { node_id: NodeId },
    #[error(
        "no configured peer is in a Raft group, and this member may not form a new one: {reason}; \
         start the other members so it can join their group"
    )]
    MayNotForm { reason: String },
    #[error(
        "a Raft message for incarnation {addressed} of this member reached incarnation {mine}: \
         the sender's group does not know this store; refused"
    )]
    WrongIncarnation {
        addressed: Incarnation,
        mine: Incarnation,
    },
    #[error("undecodable message: {0}")]
    BadMessage(String),
    #[error("Raft storage failed: {0}; check the data directory's disk and permissions")]
    Storage(String),
    #[error("the Raft node has stopped ({0}); restart the agent")]
    Stopped(String),
}

pub type Result<T, E = ConsensusError> = std::result::Result<T, E>;
