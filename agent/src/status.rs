//! The agent's own view over gRPC, judged at the moment of the request.

use crate::belief::{self, SharedBelief};
use crate::clock::{mono_now, nanos};
use raftgres_consensus::Consensus;
use raftgres_proto::v1::{AgentStatusReply, AgentStatusRequest, agent_server};
use tonic::{Request, Response, Status};

pub struct AgentStatus {
    pub member: String,
    pub witness: bool,
    pub consensus: Consensus,
    pub belief: SharedBelief,
}

#[tonic::async_trait]
impl agent_server::Agent for AgentStatus {
    async fn status(
        &self,
        _: Request<AgentStatusRequest>,
    ) -> Result<Response<AgentStatusReply>, Status> {
        let now = mono_now();
        let view = self.consensus.local();
        let raft = self.consensus.status();
        let belief = belief::read(&self.belief);
        let last = belief.last_held;
        Ok(Response::new(AgentStatusReply {
            member: self.member.clone(),
            node_id: self.consensus.node_id(),
            witness: self.witness,
            holds_lease: belief.holds_valid(&view.state.lease, &self.member, now),
            lease_epoch: last.map_or(0, |h| h.epoch.0),
            lease_deadline_mono_ns: last.map_or(0, |h| nanos(h.deadline)),
            lease_acquire_sent_mono_ns: last.map_or(0, |h| nanos(h.acquire_sent)),
            lease_holder_seen: view.state.lease.holder.clone().unwrap_or_default(),
            raft_leader: raft.leader.unwrap_or(0),
            raft_term: raft.term,
            applied_index: view.applied_index,
            place_recorded: self.consensus.place_recorded(),
        }))
    }
}
