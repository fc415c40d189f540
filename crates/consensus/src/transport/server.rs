//! gRPC server side: delivers peers' Raft messages to openraft and serves
//! requests that other members forward to this one.

use super::{decode, encode};
use crate::error::ConsensusError;
use crate::link::{MembershipChange, MembershipView};
use crate::node::Consensus;
use raftgres_proto::v1::{
    AddMemberRequest, JoinReply, JoinRequest, MembershipReply, ProposeReply, ProposeRequest,
    RaftPayload, ReadStateReply, ReadStateRequest, RemoveMemberRequest, cluster_server,
    raft_server,
};
use tonic::{Request, Response, Status};

/// Both services of a member, ready to add to a tonic server.
pub fn services(
    consensus: &Consensus,
) -> (
    raft_server::RaftServer<RaftService>,
    cluster_server::ClusterServer<ClusterService>,
) {
    (
        raft_server::RaftServer::new(RaftService {
            consensus: consensus.clone(),
        }),
        cluster_server::ClusterServer::new(ClusterService {
            consensus: consensus.clone(),
        }),
    )
}

fn bad_peer_message(e: String) -> Status {
    Status::invalid_argument(e)
}

pub struct RaftService {
    consensus: Consensus,
}

impl RaftService {
    /// The message, if it is addressed to this store's incarnation.
    fn admitted(&self, request: Request<RaftPayload>) -> Result<RaftPayload, Status> {
        let payload = request.into_inner();
        self.consensus
            .admit(payload.to_incarnation)
            .map_err(status_of)?;
        Ok(payload)
    }
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let payload = self.admitted(request)?;
        let rpc = decode("AppendEntries", &payload.json).map_err(bad_peer_message)?;
        let result = self
            .consensus
            .receive_append(rpc)
            .await
            .map_err(status_of)?;
        Ok(Response::new(RaftPayload {
            json: encode(&result),
            ..Default::default()
        }))
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let payload = self.admitted(request)?;
        let rpc = decode("Vote", &payload.json).map_err(bad_peer_message)?;
        let result = self.consensus.receive_vote(rpc).await.map_err(status_of)?;
        Ok(Response::new(RaftPayload {
            json: encode(&result),
            ..Default::default()
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let payload = self.admitted(request)?;
        let rpc = decode("InstallSnapshot", &payload.json).map_err(bad_peer_message)?;
        let result = self
            .consensus
            .receive_snapshot(rpc)
            .await
            .map_err(status_of)?;
        Ok(Response::new(RaftPayload {
            json: encode(&result),
            ..Default::default()
        }))
    }
}

pub struct ClusterService {
    consensus: Consensus,
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
