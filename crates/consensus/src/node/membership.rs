//! Membership changes: forwarded to the leader like proposals, and
//! finished by each new leader when one was cut short between its two
//! entries.

use super::*;

impl Consensus {
    pub(crate) async fn change_membership_forwarding(
        &self,
        node_id: NodeId,
        raft_addr: &str,
        change: MembershipChange,
        forward: bool,
    ) -> Result<MembershipView> {
        // Adding a learner waits for it to catch up, so allow more than one operation's time.
        let after = self.inner.operation_timeout.get() * 10;
        let work = async {
            let raft = &self.inner.raft;
            let result = match change {
                MembershipChange::Add { voter, incarnation } => {
                    let node = Node::new(raft_addr, incarnation);
                    let recorded = self.status_membership_node(node_id);
                    if let Admission::Refuse { recorded } =
                        decide_admission(recorded.as_ref().map(|n| n.incarnation), incarnation)
                    {
                        // Only the leader's membership is the newest: a
                        // follower's may still hold a member that was removed.
                        return match self.leader_node() {
                            Some((leader, _)) if leader == self.inner.id || !forward => {
                                tracing::warn!(
                                    node_id,
                                    recorded,
                                    asking = incarnation,
                                    "refused a store of another incarnation for a known member id"
                                );
                                Err(ConsensusError::Replaced { node_id })
                            }
                            Some((_, node)) => {
                                self.inner
                                    .link
                                    .change_membership(&node, node_id, raft_addr, change)
                                    .await
                            }
                            None => Err(ConsensusError::NoLeader),
                        };
                    }
                    // The leader already records this store in the place
                    // asked for: nothing to change, and nothing to wait for
                    // (add_learner would wait until the member caught up).
                    let leading = self
                        .leader_node()
                        .is_some_and(|(leader, _)| leader == self.inner.id);
                    if leading && recorded.as_ref() == Some(&node) {
                        let membership = self.status().membership;
                        let placed = membership.voters.contains(&node_id)
                            || (!voter && membership.learners.contains(&node_id));
                        if placed {
                            return Ok(membership);
                        }
                    }
                    // add_learner never overwrites a known member's record,
                    // so a member that moved, or claims its unclaimed place,
                    // is re-recorded first.
                    let moved = recorded.is_some_and(|known| known != node);
                    let readdressed = if moved {
                        raft.change_membership(
                            ChangeMembers::SetNodes(BTreeMap::from([(node_id, node.clone())])),
                            false,
                        )
                        .await
                        .map(drop)
                    } else {
                        Ok(())
                    };
                    match readdressed {
                        Err(e) => Err(e),
                        Ok(()) => match raft.add_learner(node_id, node, true).await {
                            Ok(_) if voter => {
                                raft.change_membership(
                                    ChangeMembers::AddVoterIds(BTreeSet::from([node_id])),
                                    false,
                                )
                                .await
                            }
                            other => other,
                        },
                    }
                }
                MembershipChange::Remove => {
                    let status = self.status();
                    let changes = if status.membership.voters.contains(&node_id) {
                        ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
                    } else {
                        ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
                    };
                    raft.change_membership(changes, false).await
                }
            };
            match result {
                Ok(_) => Ok(self.status().membership),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
                    match to.leader_node {
                        Some(leader) if forward => {
                            self.inner
                                .link
                                .change_membership(&leader, node_id, raft_addr, change)
                                .await
                        }
                        _ => Err(ConsensusError::NoLeader),
                    }
                }
                Err(RaftError::APIError(e)) => Err(ConsensusError::Membership(e.to_string())),
                Err(RaftError::Fatal(e)) => Err(ConsensusError::Stopped(e.to_string())),
            }
        };
        tokio::time::timeout(after, work)
            .await
            .map_err(|_| ConsensusError::Timeout {
                operation: "membership change",
                after,
            })?
    }
}

/// A membership change is two log entries (joint, then final). If the leader
/// crashes between them the group stays joint, so each new leader finishes
/// the change towards the final voter set.
pub(super) async fn complete_joint_membership(raft: Raft, heartbeat: Duration) {
    let mut metrics = raft.metrics();
    let mut was_leader = false;
    loop {
        let (is_leader, joint) = {
            let m = metrics.borrow_and_update();
            let joint = m.membership_config.membership().get_joint_config().clone();
            (m.state == ServerState::Leader, joint)
        };
        if is_leader
            && !was_leader
            && joint.len() > 1
            && let Some(target) = joint.last().cloned()
        {
            tracing::warn!(
                ?joint,
                ?target,
                "found an interrupted membership change; completing it"
            );
            // Retry for as long as this member leads and the group is joint:
            // the joint entry may not be committed yet, or a voter may be slow.
            loop {
                let still_needed = {
                    let m = raft.metrics().borrow().clone();
                    m.state == ServerState::Leader
                        && m.membership_config.membership().get_joint_config().len() > 1
                };
                if !still_needed {
                    break;
                }
                match raft.change_membership(target.clone(), false).await {
                    Ok(_)
                    | Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))
                    | Err(RaftError::Fatal(_)) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "membership completion not possible yet; retrying");
                        tokio::time::sleep(heartbeat).await;
                    }
                }
            }
        }
        was_leader = is_leader;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
