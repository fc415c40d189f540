//! gRPC client side: openraft's network factory and the leader link, sharing
//! one lazily connected channel per peer address.

use super::bounds::WithinBounds;
use super::tls::PeerTls;
use super::{decode, encode};
use crate::error::{ConsensusError, Result};
use crate::link::{BoxFuture, LeaderLink, MembershipChange, MembershipView};
use crate::store::StateView;
use crate::timeout::OperationTimeout;
use crate::types::{Incarnation, Node, NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use raftgres_proto::v1::{
    AddMemberRequest, JoinRequest, ProposeRequest, RaftPayload, ReadStateRequest,
    RemoveMemberRequest, cluster_client::ClusterClient, raft_client::RaftClient,
};
use raftgres_state::{Command, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

#[derive(Clone)]
pub struct GrpcNetwork {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
    forward_timeout: OperationTimeout,
    /// Mutual TLS with the other members; `None`: plain TCP.
    tls: Option<ClientTlsConfig>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl GrpcNetwork {
    /// `forward_timeout`: the member's operation timeout, shared with its
    /// [`crate::Consensus`] so that it follows the committed config.
    pub fn new(connect_timeout: Duration, forward_timeout: OperationTimeout) -> Self {
        Self {
            channels: Arc::default(),
            connect_timeout,
            forward_timeout,
            tls: None,
        }
    }

    /// Speaks to the other members over mutual TLS only.
    pub fn with_tls(mut self, tls: &PeerTls) -> Self {
        self.tls = Some(tls.client_config());
        self
    }

    fn channel(&self, addr: &str) -> std::result::Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("TLS for peer {addr}: {e}"))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    fn cluster_client(&self, leader: &Node) -> Result<ClusterClient<Channel>> {
        self.channel(&leader.addr)
            .map(ClusterClient::new)
            .map_err(|reason| ConsensusError::Unreachable {
                addr: leader.addr.clone(),
                reason,
            })
    }

    /// `about`: the member a membership request was about, which a refusal
    /// of its incarnation names.
    fn status_error(
        &self,
        addr: &str,
        status: tonic::Status,
        about: Option<NodeId>,
    ) -> ConsensusError {
        use tonic::Code;
        match status.code() {
            Code::AlreadyExists if let Some(node_id) = about => {
                ConsensusError::Replaced { node_id }
            }
            Code::Unavailable | Code::Cancelled | Code::Unknown => ConsensusError::Unreachable {
                addr: addr.to_owned(),
                reason: status.message().to_owned(),
            },
            Code::DeadlineExceeded => ConsensusError::Timeout {
                operation: "forwarded request",
                after: self.forward_timeout.get(),
            },
            Code::InvalidArgument => ConsensusError::BadMessage(status.message().to_owned()),
            Code::FailedPrecondition => ConsensusError::Membership(status.message().to_owned()),
            _ => ConsensusError::Remote {
                addr: addr.to_owned(),
                message: status.message().to_owned(),
            },
        }
    }

    async fn forward<T>(
        &self,
        addr: &str,
        about: Option<NodeId>,
        call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        let after = self.forward_timeout.get();
        match tokio::time::timeout(after, call).await {
            Err(_) => Err(ConsensusError::Timeout {
                operation: "forwarded request",
                after,
            }),
            Ok(Err(status)) => Err(self.status_error(addr, status, about)),
            Ok(Ok(reply)) => Ok(reply.into_inner()),
        }
    }
}

impl LeaderLink for GrpcNetwork {
    fn propose<'a>(
        &'a self,
        leader: &'a Node,
        command: Command,
    ) -> BoxFuture<'a, Result<Response>> {
        Box::pin(async move {
            let mut client = self.cluster_client(leader)?;
            let request = ProposeRequest {
                command_json: encode(&command),
                hops: 1,
            };
            let reply = self
                .forward(&leader.addr, None, client.propose(request))
                .await?;
            decode("the leader's propose reply", &reply.response_json)
                .map_err(ConsensusError::BadMessage)
        })
    }

    fn read<'a>(&'a self, leader: &'a Node) -> BoxFuture<'a, Result<StateView>> {
        Box::pin(async move {
            let mut client = self.cluster_client(leader)?;
            let reply = self
                .forward(
                    &leader.addr,
                    None,
                    client.read_state(ReadStateRequest { hops: 1 }),
                )
                .await?;
            let state = decode("the leader's state", &reply.state_json)
                .map_err(ConsensusError::BadMessage)?;
            Ok(StateView {
                state: Arc::new(state),
                applied_index: reply.applied_index,
            })
        })
    }

    fn change_membership<'a>(
        &'a self,
        leader: &'a Node,
        node_id: NodeId,
        raft_addr: &'a str,
        change: MembershipChange,
    ) -> BoxFuture<'a, Result<MembershipView>> {
        Box::pin(async move {
            let mut client = self.cluster_client(leader)?;
            let reply = match change {
                MembershipChange::Add { voter, incarnation } => {
                    let request = AddMemberRequest {
                        node_id,
                        raft_addr: raft_addr.to_owned(),
                        voter,
                        hops: 1,
                        incarnation,
                    };
                    self.forward(&leader.addr, Some(node_id), client.add_member(request))
                        .await?
                }
                MembershipChange::Remove => {
                    let request = RemoveMemberRequest { node_id, hops: 1 };
                    self.forward(&leader.addr, Some(node_id), client.remove_member(request))
                        .await?
                }
            };
            Ok(MembershipView {
                voters: reply.voters,
                learners: reply.learners,
            })
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
            let mut client = self.cluster_client(peer)?;
            let request = JoinRequest {
                node_id,
                raft_addr: raft_addr.to_owned(),
                incarnation,
            };
            let reply = self
                .forward(&peer.addr, Some(node_id), client.join(request))
                .await?;
            Ok(reply.initialized.then_some(MembershipView {
                voters: reply.voters,
                learners: reply.learners,
            }))
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> GrpcPeer {
        GrpcPeer {
            target,
            incarnation: node.incarnation,
            channel: self.channel(&node.addr),
        }
    }
}

pub struct GrpcPeer {
    target: NodeId,
    /// The incarnation of `target` that this member's membership records.
    incarnation: Incarnation,
    channel: std::result::Result<Channel, String>,
}

#[derive(Clone, Copy)]
enum RaftRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl GrpcPeer {
    async fn call<Req, Resp, E>(
        &self,
        rpc: RaftRpc,
        request: &Req,
        option: &RPCOption,
    ) -> std::result::Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned + WithinBounds,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = self
            .channel
            .clone()
            .map_err(|reason| RPCError::Unreachable(Unreachable::new(&TransportError(reason))))?;
        let mut client = RaftClient::new(channel);
        let payload = RaftPayload {
            json: encode(request),
            to_incarnation: self.incarnation,
        };
        let call = async {
            match rpc {
                RaftRpc::AppendEntries => client.append_entries(payload).await,
                RaftRpc::Vote => client.vote(payload).await,
                RaftRpc::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        // A stopped peer accepts TCP but never answers, so bound every call here.
        let reply = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(_) => {
                let e = TransportError(format!("no reply within {:?}", option.hard_ttl()));
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
            Ok(Err(status)) => {
                let e = TransportError(format!("{}: {}", status.code(), status.message()));
                // A store of another incarnation is not the member we know:
                // back off from it as from one that is down.
                return Err(
                    if matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::FailedPrecondition
                    ) {
                        RPCError::Unreachable(Unreachable::new(&e))
                    } else {
                        RPCError::Network(NetworkError::new(&e))
                    },
                );
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: std::result::Result<Resp, RaftError<NodeId, E>> =
            decode("a peer's Raft reply", &reply.json)
                .map_err(|e| RPCError::Network(NetworkError::new(&TransportError(e))))?;
        if let Ok(resp) = &result {
            resp.within_bounds()
                .map_err(|e| RPCError::Network(NetworkError::new(&TransportError(e))))?;
        }
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GrpcPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>>
    {
        self.call(RaftRpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RaftRpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(RaftRpc::Vote, &rpc, &option).await
    }
}
