//! gRPC server side: delivers peers' Raft messages to openraft and serves
//! requests that other members forward to this one.

use super::tls::check_speaks_as;
use super::{decode, encode};
use crate::error::ConsensusError;
use crate::link::{MembershipChange, MembershipView};
use crate::node::Consensus;
use crate::types::{NodeId, TypeConfig};
use openraft::Vote;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use raftgres_proto::v1::{
    AddMemberRequest, JoinReply, JoinRequest, MembershipReply, ProposeReply, ProposeRequest,
    RaftPayload, ReadStateReply, ReadStateRequest, RemoveMemberRequest, cluster_server,
    raft_server,
};
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

/// Whether callers proved who they are with a certificate (mutual TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// Every caller passed mutual TLS: a vote, an append, a snapshot or a
    /// join is accepted only from the member it speaks for.
    Authenticated,
    /// Plain TCP: anyone who reaches the port.
    Anyone,
}

/// Both services of a member, ready to add to a tonic server.
pub fn services(
    consensus: &Consensus,
    callers: Callers,
) -> (
    raft_server::RaftServer<RaftService>,
    cluster_server::ClusterServer<ClusterService>,
) {
    (
        raft_server::RaftServer::new(RaftService {
            consensus: consensus.clone(),
            callers,
        }),
        cluster_server::ClusterServer::new(ClusterService {
            consensus: consensus.clone(),
            callers,
        }),
    )
}

/// Refuses a request whose caller's certificate does not name `claimed`.
fn check_caller<T>(callers: Callers, request: &Request<T>, claimed: NodeId) -> Result<(), Status> {
    if callers == Callers::Anyone {
        return Ok(());
    }
    let certs = request.peer_certs();
    check_speaks_as(certs.as_deref().map(Vec::as_slice), claimed).map_err(|reason| {
        tracing::warn!(claimed, %reason, remote = ?request.remote_addr(), "refused a message from a caller that does not speak as itself");
        Status::permission_denied(reason)
    })
}

fn bad_peer_message(e: String) -> Status {
    Status::invalid_argument(e)
}

pub struct RaftService {
    consensus: Consensus,
    callers: Callers,
}

/// A peer's Raft message, which speaks for the member whose vote it carries.
trait PeerMessage: DeserializeOwned {
    /// As errors and logs name it.
    const NAME: &'static str;
    fn vote(&self) -> &Vote<NodeId>;
}

macro_rules! peer_messages {
    ($($message:ty: $name:literal),+ $(,)?) => {$(
        impl PeerMessage for $message {
            const NAME: &'static str = $name;
            fn vote(&self) -> &Vote<NodeId> {
                &self.vote
            }
        }
    )+};
}

peer_messages! {
    AppendEntriesRequest<TypeConfig>: "AppendEntries",
    VoteRequest<NodeId>: "Vote",
    InstallSnapshotRequest<TypeConfig>: "InstallSnapshot",
}

impl RaftService {
    /// The message, if it is addressed to this store's incarnation and
    /// comes from the member whose vote it carries.
    fn admitted<T: PeerMessage>(&self, request: Request<RaftPayload>) -> Result<T, Status> {
        // Who speaks first: a caller in another member's name learns nothing,
        // not even whether the incarnation it addressed is this store's.
        let rpc: T = decode(T::NAME, &request.get_ref().json).map_err(bad_peer_message)?;
        let claimed = rpc.vote().leader_id().voted_for().ok_or_else(|| {
            Status::invalid_argument(format!("{} names no sending member", T::NAME))
        })?;
        check_caller(self.callers, &request, claimed)?;
        self.consensus
            .admit(request.get_ref().to_incarnation)
            .map_err(status_of)?;
        Ok(rpc)
    }
}

/// A peer's answer, as the JSON the Raft messages travel in.
fn answer<T: serde::Serialize>(
    result: Result<T, ConsensusError>,
) -> Result<Response<RaftPayload>, Status> {
    Ok(Response::new(RaftPayload {
        json: encode(&result.map_err(status_of)?),
        ..Default::default()
    }))
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.admitted(request)?;
        answer(self.consensus.receive_append(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.admitted(request)?;
        answer(self.consensus.receive_vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.admitted(request)?;
        answer(self.consensus.receive_snapshot(rpc).await)
    }
}

pub struct ClusterService {
    consensus: Consensus,
    callers: Callers,
}

fn status_of(e: ConsensusError) -> Status {
    let message = e.to_string();
    match e {
        ConsensusError::NoLeader
        | ConsensusError::NoQuorum
        | ConsensusError::Unreachable { .. }
        | ConsensusError::Remote { .. } => Status::unavailable(message),
        ConsensusError::Timeout { .. } => Status::deadline_exceeded(message),
        ConsensusError::Membership(_)
        | ConsensusError::MayNotForm { .. }
        | ConsensusError::WrongIncarnation { .. } => Status::failed_precondition(message),
        ConsensusError::Replaced { .. } => Status::already_exists(message),
        ConsensusError::BadMessage(_) => Status::invalid_argument(message),
        ConsensusError::Storage(_) | ConsensusError::Stopped(_) => Status::internal(message),
    }
}

fn membership_reply(view: MembershipView) -> Response<MembershipReply> {
    Response::new(MembershipReply {
        voters: view.voters,
        learners: view.learners,
    })
}

#[tonic::async_trait]
impl cluster_server::Cluster for ClusterService {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let request = request.into_inner();
        let command =
            decode("a proposed command", &request.command_json).map_err(bad_peer_message)?;
        let response = self
            .consensus
            .propose_forwarding(command, request.hops == 0)
            .await
            .map_err(status_of)?;
        Ok(Response::new(ProposeReply {
            response_json: encode(&response),
        }))
    }

    async fn read_state(
        &self,
        request: Request<ReadStateRequest>,
    ) -> Result<Response<ReadStateReply>, Status> {
        let hops = request.into_inner().hops;
        let view = self
            .consensus
            .read_forwarding(hops == 0)
            .await
            .map_err(status_of)?;
        Ok(Response::new(ReadStateReply {
            state_json: encode(&*view.state),
            applied_index: view.applied_index,
        }))
    }

    async fn add_member(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let r = request.into_inner();
        if r.node_id == 0 || r.raft_addr.is_empty() || r.incarnation == 0 {
            return Err(Status::invalid_argument(
                "add_member needs a node_id > 0, a raft_addr and an incarnation > 0",
            ));
        }
        let view = self
            .consensus
            .change_membership_forwarding(
                r.node_id,
                &r.raft_addr,
                MembershipChange::Add {
                    voter: r.voter,
                    incarnation: r.incarnation,
                },
                r.hops == 0,
            )
            .await
            .map_err(status_of)?;
        Ok(membership_reply(view))
    }

    /// Any failure of a member that is in a group (no leader now, the
    /// leader unreachable from here, a timeout) is sent as ABORTED, never
    /// UNAVAILABLE: the asker must not mistake it for "nobody here" and
    /// form a group of its own. A refused incarnation is ALREADY_EXISTS.
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        check_caller(self.callers, &request, request.get_ref().node_id)?;
        let r = request.into_inner();
        match self
            .consensus
            .answer_join(r.node_id, &r.raft_addr, r.incarnation)
            .await
        {
            Ok(None) => Ok(Response::new(JoinReply {
                initialized: false,
                voters: Vec::new(),
                learners: Vec::new(),
            })),
            Ok(Some(view)) => Ok(Response::new(JoinReply {
                initialized: true,
                voters: view.voters,
                learners: view.learners,
            })),
            Err(e @ (ConsensusError::BadMessage(_) | ConsensusError::Replaced { .. })) => {
                Err(status_of(e))
            }
            Err(e) => Err(Status::aborted(e.to_string())),
        }
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let r = request.into_inner();
        let view = self
            .consensus
            .change_membership_forwarding(r.node_id, "", MembershipChange::Remove, r.hops == 0)
            .await
            .map_err(status_of)?;
        Ok(membership_reply(view))
    }
}
