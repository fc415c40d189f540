//! An in-process network for tests: members in one process exchange Raft
//! messages and forwarded requests through a router that can cut links in
//! either direction, isolate a member, or drop chosen messages.

use crate::error::{ConsensusError, Result};
use crate::link::{BoxFuture, LeaderLink, MembershipChange, MembershipView};
use crate::node::Consensus;
use crate::store::StateView;
use crate::types::{Incarnation, Node, NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use raftgres_state::{Command, Response};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

type AppendFilter =
    Box<dyn Fn(NodeId, NodeId, &AppendEntriesRequest<TypeConfig>) -> bool + Send + Sync>;

/// The address a member registers under in the memory network.
pub fn address(id: NodeId) -> String {
    format!("mem:{id}")
}

fn id_of(node: &Node) -> Option<NodeId> {
    node.addr.strip_prefix("mem:")?.parse().ok()
}

#[derive(Default)]
pub struct MemoryRouter {
    members: Mutex<BTreeMap<NodeId, Consensus>>,
    /// Directed links that drop traffic: (from, to).
    cut: Mutex<BTreeSet<(NodeId, NodeId)>>,
    append_filter: Mutex<Option<AppendFilter>>,
    /// How long a peer's answer to "take me in" takes to come back.
    join_answer_delay: Mutex<std::time::Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Dropped(String);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryRouter {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn register(&self, member: Consensus) {
        lock(&self.members).insert(member.node_id(), member);
    }

    /// Forgets a member, as if its process died.
    pub fn unregister(&self, id: NodeId) -> Option<Consensus> {
        lock(&self.members).remove(&id)
    }

    pub fn network(self: &Arc<Self>, from: NodeId) -> MemoryNetwork {
        MemoryNetwork {
            router: self.clone(),
            from,
        }
    }

    pub fn link(self: &Arc<Self>, from: NodeId) -> Arc<MemoryLink> {
        Arc::new(MemoryLink {
            router: self.clone(),
            from,
        })
    }

    /// Cuts traffic from `from` to `to` only.
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        lock(&self.cut).insert((from, to));
    }

    /// Splits the members into groups that cannot reach each other.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        let mut cut = lock(&self.cut);
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for x in *a {
                        for y in *b {
                            cut.insert((*x, *y));
                        }
                    }
                }
            }
        }
    }

    pub fn heal(&self) {
        lock(&self.cut).clear();
    }

    /// Drops every AppendEntries for which `filter(from, to, request)` is true.
    pub fn drop_append_entries_when(&self, filter: AppendFilter) {
        *lock(&self.append_filter) = Some(filter);
    }

    pub fn clear_filters(&self) {
        *lock(&self.append_filter) = None;
    }

    /// Holds back every answer to a join request: the group has acted on it
    /// (and replicates to the new member) before the asker hears back.
    pub fn delay_join_answers(&self, by: std::time::Duration) {
        *lock(&self.join_answer_delay) = by;
    }

    fn reachable(&self, from: NodeId, to: NodeId) -> std::result::Result<Consensus, String> {
        if lock(&self.cut).contains(&(from, to)) {
            return Err(format!("link {from}->{to} is cut"));
        }
        lock(&self.members)
            .get(&to)
            .cloned()
            .ok_or_else(|| format!("member {to} is down"))
    }

    fn reply_lost(&self, from: NodeId, to: NodeId) -> bool {
        lock(&self.cut).contains(&(to, from))
    }
}

#[derive(Clone)]
pub struct MemoryNetwork {
    router: Arc<MemoryRouter>,
    from: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for MemoryNetwork {
    type Network = MemoryPeer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> MemoryPeer {
        MemoryPeer {
            router: self.router.clone(),
            from: self.from,
            to: target,
            incarnation: node.incarnation,
        }
    }
}

pub struct MemoryPeer {
    router: Arc<MemoryRouter>,
    from: NodeId,
    to: NodeId,
    /// The incarnation of `to` that the sender's membership records.
    incarnation: Incarnation,
}

impl MemoryPeer {
    /// The receiving member, once it admits a message for this incarnation.
    fn target<E: std::error::Error>(
        &self,
    ) -> std::result::Result<Consensus, RPCError<NodeId, Node, RaftError<NodeId, E>>> {
        let target = self
            .router
            .reachable(self.from, self.to)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&Dropped(e))))?;
        target
            .admit(self.incarnation)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&Dropped(e.to_string()))))?;
        Ok(target)
    }

    fn finish<T, E: std::error::Error>(
        &self,
        result: std::result::Result<T, RaftError<NodeId, E>>,
    ) -> std::result::Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>> {
        if self.router.reply_lost(self.from, self.to) {
            return Err(RPCError::Network(NetworkError::new(&Dropped(format!(
                "reply {}->{} lost",
                self.to, self.from
            )))));
        }
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }
}

/// A message the receiver refused before Raft saw it.
fn refused<E: std::error::Error>(
    e: ConsensusError,
) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&Dropped(e.to_string())))
}

impl RaftNetwork<TypeConfig> for MemoryPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>>
    {
        let target = self.target()?;
        if let Some(filter) = lock(&self.router.append_filter).as_ref()
            && filter(self.from, self.to, &rpc)
        {
            return Err(RPCError::Network(NetworkError::new(&Dropped(
                "filtered".into(),
            ))));
        }
        let result = target.receive_append(rpc).await.map_err(refused)?;
        self.finish(result)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> std::result::Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let target = self.target()?;
        let result = target.receive_snapshot(rpc).await.map_err(refused)?;
        self.finish(result)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> std::result::Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let target = self.target()?;
        let result = target.receive_vote(rpc).await.map_err(refused)?;
        self.finish(result)
    }
}

/// Forwards requests in memory, through the same cuts as Raft traffic.
pub struct MemoryLink {
    router: Arc<MemoryRouter>,
    from: NodeId,
}

impl MemoryLink {
    fn leader(&self, node: &Node) -> Result<Consensus> {
        let to = id_of(node).ok_or_else(|| {
            ConsensusError::BadMessage(format!("not a memory address: {}", node.addr))
        })?;
        let unreachable = |reason| ConsensusError::Unreachable {
            addr: node.addr.clone(),
            reason,
        };
        let target = self.router.reachable(self.from, to).map_err(unreachable)?;
        if self.router.reply_lost(self.from, to) {
            return Err(unreachable(format!("replies {to}->{} are lost", self.from)));
        }
        Ok(target)
    }
}

impl LeaderLink for MemoryLink {
    fn propose<'a>(
        &'a self,
        leader: &'a Node,
        command: Command,
    ) -> BoxFuture<'a, Result<Response>> {
        Box::pin(async move {
            self.leader(leader)?
                .propose_forwarding(command, false)
                .await
        })
    }

    fn read<'a>(&'a self, leader: &'a Node) -> BoxFuture<'a, Result<StateView>> {
        Box::pin(async move { self.leader(leader)?.read_forwarding(false).await })
    }

    fn change_membership<'a>(
        &'a self,
        leader: &'a Node,
        node_id: NodeId,
        raft_addr: &'a str,
        change: MembershipChange,
    ) -> BoxFuture<'a, Result<MembershipView>> {
        Box::pin(async move {
            self.leader(leader)?
                .change_membership_forwarding(node_id, raft_addr, change, false)
                .await
        })
    }

    fn join<'a>(
        &'a self,
        peer: &'a Node,
        node_id: NodeId,
        raft_addr: &'a str,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<Option<MembershipView>>> {
        Box::pin(async move {
            let answer = self
                .leader(peer)?
                .answer_join(node_id, raft_addr, incarnation)
                .await
                .map_err(busy);
            let delay = *lock(&self.router.join_answer_delay);
            tokio::time::sleep(delay).await;
            answer
        })
    }
}

/// An error of a peer that answered is never "unreachable" to the asker,
/// as over gRPC, where it arrives as a remote error.
fn busy(e: ConsensusError) -> ConsensusError {
    match e {
        ConsensusError::Unreachable { addr, reason } => ConsensusError::Remote {
            addr,
            message: reason,
        },
        other => other,
    }
}
