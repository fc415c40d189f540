//! How a member reaches the Raft leader on behalf of its callers. Swappable,
//! so tests can route through an in-memory network with partitions.

use crate::error::Result;
use crate::store::StateView;
use crate::types::{Incarnation, Node, NodeId};
use raftgres_state::{Command, Response};
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add (or re-address) a member whose store is of `incarnation`;
    /// `voter: false` makes it a learner. Refused when the group knows the
    /// id under another incarnation.
    Add {
        voter: bool,
        incarnation: Incarnation,
    },
    Remove,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipView {
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

/// Forwards a request to the member believed to lead. The receiving member
/// never forwards again, so two members that disagree cannot loop.
pub trait LeaderLink: Send + Sync + 'static {
    fn propose<'a>(&'a self, leader: &'a Node, command: Command)
    -> BoxFuture<'a, Result<Response>>;
    fn read<'a>(&'a self, leader: &'a Node) -> BoxFuture<'a, Result<StateView>>;
    fn change_membership<'a>(
        &'a self,
        leader: &'a Node,
        node_id: NodeId,
        raft_addr: &'a str,
        change: MembershipChange,
    ) -> BoxFuture<'a, Result<MembershipView>>;
    /// Asks `peer` (any member, which forwards) to take `node_id`, whose
    /// store is of `incarnation`, in as a voter. `Ok(None)`: the peer has
    /// never been in a group either.
    fn join<'a>(
        &'a self,
        peer: &'a Node,
        node_id: NodeId,
        raft_addr: &'a str,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<Option<MembershipView>>>;
}
