//! Removing another member from the Raft group and the cluster state.

use super::AgentOps;
use raftgres_api::OpError;
use raftgres_state::Command;

impl AgentOps {
    pub(super) async fn do_remove(&self, name: String) -> Result<String, OpError> {
        let state = self.read().await?;
        let Some(m) = state.members.get(&name) else {
            return Err(OpError::NotFound(format!(
                "{name} is not a member of this cluster"
            )));
        };
        if state.lease.is_held_by(&name) {
            return Err(OpError::Precondition(format!(
                "{name} holds the lease; switch over to another member first"
            )));
        }
        if name == self.member {
            return Err(OpError::Precondition(format!(
                "{name} cannot remove itself; send the request to another member"
            )));
        }
        let node_id = m.node_id;
        self.consensus.remove_member(node_id).await.map_err(|e| {
            OpError::Unavailable(format!("cannot remove {name} from the Raft group: {e}"))
        })?;
        self.commit(Command::RemoveMember { name: name.clone() })
            .await?;
        Ok(format!(
            "removed {name} (node {node_id}); stop its agent. To bring it back, start it on an empty Raft store (delete raft.redb in its data_dir): it joins as a new member"
        ))
    }
}
