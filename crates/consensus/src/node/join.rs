//! How a member finds its group: reopen its own store, join a group that
//! takes it in, or form one; and how the group answers a member that asks.

use super::*;

impl Consensus {
    /// Brings this member into its group at start. A store that was ever in
    /// a group is simply reopened. An empty one first asks every other
    /// configured voter to take it in (see [`crate::formation`]) and forms
    /// a new group from `voters` only when no peer can be in one and
    /// `new_group` allows it. Until then it asks again every `retry`: a new
    /// member waits for its cluster. A place not yet claimed is claimed for
    /// this store's incarnation in the background. Fails when
    /// the group knows the id under another incarnation (this store was
    /// wiped or replaced), or when it may not form a group and nobody is in
    /// one. Cancel it by dropping the future.
    pub async fn form_or_join(
        &self,
        voters: &BTreeMap<NodeId, String>,
        retry: Duration,
        new_group: &NewGroup,
    ) -> Result<Formation> {
        let me = self.inner.id;
        let my_addr = voters.get(&me).cloned().unwrap_or_default();
        let formation = if self.is_initialized().await? {
            Formation::Restarted
        } else {
            self.ask_peers(voters, retry, new_group, &my_addr).await?
        };
        let fresh = !matches!(formation, Formation::Restarted);
        match self.recorded_incarnation(me) {
            // Right after forming or joining, this member's own copy of the
            // membership may not show it yet: a fresh store claims anyway.
            None | Some(UNCLAIMED) if fresh => {
                tokio::spawn(self.clone().claim_place(my_addr, retry));
            }
            Some(UNCLAIMED) => {
                tokio::spawn(self.clone().claim_place(my_addr, retry));
            }
            Some(recorded) if recorded == self.inner.incarnation => {}
            // Another incarnation in this store's own copy is either the
            // group refusing this store, or the copy lagging: a store re-added
            // right after its predecessor's removal copies a snapshot or log
            // that still records the predecessor. Only the leader knows which.
            Some(_) => {
                self.confirm_place(&my_addr, retry, Place::Any(voters))
                    .await?;
                tokio::spawn(self.clone().claim_place(my_addr, retry));
            }
            // Removed from the group this store knows: it never claims a
            // place back by itself.
            None => {}
        }
        Ok(formation)
    }

    /// The membership this member's log holds, once it holds one: a
    /// leader's first message sets the vote (and so makes the member
    /// initialized) before the entries that carry the membership arrive.
    pub(super) async fn learned_membership(&self) -> MembershipView {
        let mut metrics = self.inner.raft.metrics();
        let _ = tokio::time::timeout(
            self.inner.operation_timeout.get(),
            metrics.wait_for(|m| {
                m.membership_config
                    .membership()
                    .voter_ids()
                    .next()
                    .is_some()
            }),
        )
        .await;
        self.status().membership
    }

    pub(super) async fn ask_peers(
        &self,
        voters: &BTreeMap<NodeId, String>,
        retry: Duration,
        new_group: &NewGroup,
        my_addr: &str,
    ) -> Result<Formation> {
        let me = self.inner.id;
        let incarnation = self.inner.incarnation;
        loop {
            let mut answers = Vec::new();
            for (id, addr) in voters.iter().filter(|(id, _)| **id != me) {
                let peer = Node::new(addr.clone(), UNCLAIMED);
                let answer = match self.inner.link.join(&peer, me, my_addr, incarnation).await {
                    Ok(Some(view)) => PeerAnswer::Member(view),
                    Ok(None) => PeerAnswer::Pristine,
                    Err(ConsensusError::Unreachable { .. }) => PeerAnswer::Unreachable,
                    Err(ConsensusError::Replaced { .. }) => PeerAnswer::Refused,
                    Err(e) => PeerAnswer::Busy(e.to_string()),
                };
                tracing::debug!(
                    node_id = me,
                    peer = id,
                    ?answer,
                    "asked a peer to take this member in"
                );
                answers.push(answer);
            }
            let decision = decide_join(me, voters, &answers, new_group);
            // A leader's replication or vote request may have reached this
            // member meanwhile: then it is in that group already (a peer's
            // answer that took it in says so with the group's own view).
            if !matches!(decision, JoinDecision::Joined(_)) && self.is_initialized().await? {
                return Ok(Formation::Joined(self.learned_membership().await));
            }
            match decision {
                JoinDecision::Joined(view) => return Ok(Formation::Joined(view)),
                JoinDecision::Initialize => {
                    return Ok(if self.initialize(voters).await? {
                        Formation::Formed
                    } else {
                        Formation::Joined(self.learned_membership().await)
                    });
                }
                JoinDecision::Refused => return Err(ConsensusError::Replaced { node_id: me }),
                JoinDecision::MayNotForm { reason } => {
                    return Err(ConsensusError::MayNotForm { reason });
                }
                JoinDecision::Retry => {
                    tracing::info!(
                        node_id = me,
                        ?answers,
                        "a peer is in a group but did not take this member in yet; asking again"
                    );
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// Records this store's incarnation in the group for this member's id,
    /// whose place is still unclaimed (the voters a group is formed with,
    /// and stores from before incarnations existed), retrying until a
    /// leader commits it. It runs beside the agent rather than before it:
    /// a lone member that formed the group must start before any leader can
    /// exist, and Raft itself runs either way.
    pub(super) async fn claim_place(self, my_addr: String, retry: Duration) {
        let me = self.inner.id;
        let incarnation = self.inner.incarnation;
        // The other way it ends is the member stopping.
        if let Err(e @ ConsensusError::Replaced { .. }) =
            self.confirm_place(&my_addr, retry, Place::Voter).await
        {
            tracing::error!(node_id = me, incarnation, error = %e, "another store took this member's place; this one is refused every Raft message");
        }
    }

    /// Has the group's leader record this store's incarnation for this
    /// member (keeping its place if it is this store's), retrying until a
    /// leader answers. [`ConsensusError::Replaced`] when the group records
    /// another store for this member id.
    pub(super) async fn confirm_place(
        &self,
        my_addr: &str,
        retry: Duration,
        place: Place<'_>,
    ) -> Result<()> {
        let me = self.inner.id;
        let incarnation = self.inner.incarnation;
        loop {
            let addr = match self.status_membership_node(me) {
                _ if !my_addr.is_empty() => my_addr.to_owned(),
                Some(node) => node.addr,
                None => return Ok(()),
            };
            let asked = match place {
                Place::Voter => self.answer_join(me, &addr, incarnation).await.map(drop),
                Place::Any(voters) => match self
                    .change_membership_forwarding(
                        me,
                        &addr,
                        MembershipChange::Add {
                            voter: false,
                            incarnation,
                        },
                        true,
                    )
                    .await
                {
                    Err(ConsensusError::NoLeader) => self.ask_peers_for_place(voters, &addr).await,
                    other => other.map(drop),
                },
            };
            match asked {
                Ok(()) => {
                    tracing::info!(
                        node_id = me,
                        incarnation,
                        "recorded this store's incarnation in the group"
                    );
                    return Ok(());
                }
                Err(e @ (ConsensusError::Replaced { .. } | ConsensusError::Stopped(_))) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::info!(node_id = me, error = %e, "cannot record this store's incarnation yet; retrying");
                    self.pause_before_retry(retry).await;
                }
            }
        }
    }

    /// Asks the configured voters, which forward to their leader, whether
    /// the group records this store: `Ok` once one says it does.
    pub(super) async fn ask_peers_for_place(
        &self,
        voters: &BTreeMap<NodeId, String>,
        my_addr: &str,
    ) -> Result<()> {
        let me = self.inner.id;
        for addr in voters.iter().filter(|(id, _)| **id != me).map(|(_, a)| a) {
            let peer = Node::new(addr.clone(), UNCLAIMED);
            match self
                .inner
                .link
                .join(&peer, me, my_addr, self.inner.incarnation)
                .await
            {
                Ok(Some(view)) if view.voters.contains(&me) || view.learners.contains(&me) => {
                    return Ok(());
                }
                Err(e @ ConsensusError::Replaced { .. }) => return Err(e),
                _ => {}
            }
        }
        Err(ConsensusError::NoLeader)
    }

    /// Right after a group forms no leader is known yet: waiting for one
    /// (at most `retry`) starts the next attempt as soon as it can succeed.
    pub(super) async fn pause_before_retry(&self, retry: Duration) {
        let mut metrics = self.inner.raft.metrics();
        let leader_known = metrics.borrow().current_leader.is_some();
        if leader_known {
            tokio::time::sleep(retry).await;
        } else {
            let _ =
                tokio::time::timeout(retry, metrics.wait_for(|m| m.current_leader.is_some())).await;
        }
    }

    /// The peer side of [`Consensus::form_or_join`]: `None` when this member
    /// has never been in a group; else the membership once `node_id` is a
    /// voter at `raft_addr` with `incarnation`, added through the leader if
    /// it was not. Refused ([`ConsensusError::Replaced`]) when the group
    /// knows `node_id` under another incarnation.
    pub async fn answer_join(
        &self,
        node_id: NodeId,
        raft_addr: &str,
        incarnation: Incarnation,
    ) -> Result<Option<MembershipView>> {
        if node_id == 0 || raft_addr.is_empty() || incarnation == UNCLAIMED {
            return Err(ConsensusError::BadMessage(
                "a join request needs a node_id > 0, a raft_addr and an incarnation > 0".into(),
            ));
        }
        if !self.is_initialized().await? {
            return Ok(None);
        }
        let status = self.status();
        let known = self.status_membership_node(node_id) == Some(Node::new(raft_addr, incarnation));
        if known && status.membership.voters.contains(&node_id) {
            return Ok(Some(status.membership));
        }
        self.change_membership_forwarding(
            node_id,
            raft_addr,
            MembershipChange::Add {
                voter: true,
                incarnation,
            },
            true,
        )
        .await
        .map(Some)
    }

    /// Forms the group from the configured voters if this member has never
    /// been part of one. Every initial voter may call it with the same set.
    /// Returns whether this call initialized the group.
    pub async fn initialize(&self, voters: &BTreeMap<NodeId, String>) -> Result<bool> {
        // Every member that forms the group must write the same first entry,
        // so no incarnation is in it: each member claims its place after.
        let nodes: BTreeMap<NodeId, Node> = voters
            .iter()
            .map(|(id, addr)| (*id, Node::new(addr.clone(), UNCLAIMED)))
            .collect();
        match self.inner.raft.initialize(nodes).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(RaftError::APIError(e)) => Err(ConsensusError::Membership(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(ConsensusError::Stopped(e.to_string())),
        }
    }
}
