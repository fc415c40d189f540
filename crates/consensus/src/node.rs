use crate::contact::{Contact, follow_quorum_acks};
use crate::error::{ConsensusError, Result};
use crate::formation::{
    Admission, JoinDecision, NewGroup, PeerAnswer, decide_admission, decide_join,
};
use crate::group_commit::GroupCommit;
use crate::keepalive;
use crate::latency::{Latencies, LatencyRecorder};
use crate::link::{LeaderLink, MembershipChange, MembershipView};
use crate::store::{CommitIndex, LogStore, StateMachine, StateView};
use crate::timeout::OperationTimeout;
use crate::transport::bounds::WithinBounds;
use crate::types::{Incarnation, Node, NodeId, Raft, TypeConfig, UNCLAIMED};
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InitializeError, InstallSnapshotError, RaftError,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{ChangeMembers, RaftNetworkFactory, ServerState, SnapshotPolicy};
use raftgres_state::{Command, Response};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

mod join;
mod membership;

use membership::complete_joint_membership;

/// Timing and identity of one Raft member.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_id: NodeId,
    pub cluster_name: String,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot (and purge the log behind it) after this many entries.
    pub snapshot_every_logs: u64,
    /// Bound on one propose, read or membership call, forwarding included;
    /// follows the committed config's `retry_timeout_ms` once there is one.
    pub operation_timeout: OperationTimeout,
}

impl Settings {
    /// How long a leader's stalled log flush is hidden from its followers
    /// (see `keepalive`): half an `election_timeout_max`. A disk that stays
    /// stalled delays the election by that much, which the config crate's
    /// `worst_election` counts against the lease's renewal budget.
    pub fn flush_stall_bridged(&self) -> Duration {
        self.election_timeout_max / 2
    }
}

/// What [`Consensus::confirm_place`] asks the group's leader for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place<'a> {
    /// This store's incarnation recorded, as a voter or a learner: enough
    /// to know the group does not refuse it, without waiting for it to
    /// catch up. When this store knows no leader yet, the configured
    /// voters are asked, as a joining store asks them.
    Any(&'a BTreeMap<NodeId, String>),
    /// Recorded as a voter: it waits until the member caught up.
    Voter,
}

/// How [`Consensus::form_or_join`] brought this member into its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formation {
    /// Its store was already in a group.
    Restarted,
    /// It formed a new group from the configured voters.
    Formed,
    /// A running group took it in, as this membership.
    Joined(MembershipView),
}

/// What this member knows of Raft itself (not of the cluster state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub is_leader: bool,
    pub last_applied: u64,
    /// The commit index as this member knows it (`last_applied` follows it).
    pub committed: u64,
    pub last_log: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub membership: MembershipView,
    pub joint: bool,
    /// How long ago this member last knew its log current: as leader, when
    /// a quorum last acknowledged it; as follower, when it last accepted an
    /// AppendEntries from its leader; whichever is later. `None` before
    /// either happened since start.
    pub contact_age: Option<Duration>,
}

/// The handle the agent uses from any member: propose (forwarded to the
/// leader), read linearizably, subscribe to applied changes.
#[derive(Clone)]
pub struct Consensus {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    incarnation: Incarnation,
    raft: Raft,
    view: watch::Receiver<StateView>,
    link: Arc<dyn LeaderLink>,
    writes: GroupCommit,
    operation_timeout: OperationTimeout,
    committed: CommitIndex,
    contact: Contact,
    proposals: LatencyRecorder,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Consensus {
    pub async fn start<N: RaftNetworkFactory<TypeConfig> + Clone>(
        settings: &Settings,
        log_store: LogStore,
        state_machine: StateMachine,
        network: N,
        link: Arc<dyn LeaderLink>,
    ) -> Result<Self> {
        let config = openraft::Config {
            cluster_name: settings.cluster_name.clone(),
            heartbeat_interval: ms(settings.heartbeat_interval),
            election_timeout_min: ms(settings.election_timeout_min),
            election_timeout_max: ms(settings.election_timeout_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every_logs),
            // Keep a short tail so a briefly lagging follower catches up from
            // the log rather than by a snapshot.
            max_in_snapshot_log_to_keep: settings.snapshot_every_logs / 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ConsensusError::Storage(format!("invalid Raft timing: {e}")))?;
        let view = state_machine.subscribe();
        let incarnation = log_store.incarnation();
        let flush = log_store.flush_progress();
        let committed = log_store.commit_index();
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            network.clone(),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ConsensusError::Stopped(e.to_string()))?;
        let writes = GroupCommit::start(
            raft.clone(),
            flush.clone(),
            settings.operation_timeout.clone(),
        );
        tokio::spawn(crate::timeout::follow_config(
            view.clone(),
            settings.operation_timeout.clone(),
        ));
        tokio::spawn(keepalive::bridge_flush_stalls(
            raft.metrics(),
            network,
            flush,
            settings.heartbeat_interval,
            settings.flush_stall_bridged(),
        ));
        tokio::spawn(complete_joint_membership(
            raft.clone(),
            settings.heartbeat_interval,
        ));
        let contact = Contact::default();
        tokio::spawn(follow_quorum_acks(raft.metrics(), contact.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                id: settings.node_id,
                incarnation,
                raft,
                view,
                link,
                writes,
                operation_timeout: settings.operation_timeout.clone(),
                committed,
                contact,
                proposals: LatencyRecorder::default(),
            }),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Which creation of this member's store runs here.
    pub fn incarnation(&self) -> Incarnation {
        self.inner.incarnation
    }

    /// Whether a Raft message (vote, append, snapshot) addressed to
    /// incarnation `addressed` of this member may be handled. A store of
    /// another incarnation lacks the vote and log its sender relies on. An
    /// unclaimed place (a voter the group was formed with, before it told the
    /// group its incarnation) is served by whoever holds the id: formation
    /// needs that, and the member claims its place right after.
    pub fn admit(&self, addressed: Incarnation) -> Result<()> {
        let mine = self.inner.incarnation;
        if addressed == mine || addressed == UNCLAIMED {
            Ok(())
        } else {
            Err(ConsensusError::WrongIncarnation { addressed, mine })
        }
    }

    /// A peer's vote request, handed to Raft only within the bounds an
    /// honest member keeps (`transport::bounds`). Every transport delivers
    /// peers' messages through these three.
    pub async fn receive_vote(
        &self,
        rpc: VoteRequest<NodeId>,
    ) -> Result<std::result::Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
        rpc.within_bounds().map_err(ConsensusError::BadMessage)?;
        Ok(self.inner.raft.vote(rpc).await)
    }

    /// A peer's append, as [`Consensus::receive_vote`].
    pub async fn receive_append(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<std::result::Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
        rpc.within_bounds().map_err(ConsensusError::BadMessage)?;
        let received = tokio::time::Instant::now();
        let answer = self.inner.raft.append_entries(rpc).await;
        // Accepted means sent by the leader this member now follows, with a
        // log that matches: the copy is current as of the request. A
        // conflict or a stale vote says nothing of the kind.
        if let Ok(AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)) =
            &answer
        {
            self.inner.contact.current_at(received);
        }
        Ok(answer)
    }

    /// A peer's snapshot chunk, as [`Consensus::receive_vote`].
    pub async fn receive_snapshot(
        &self,
        rpc: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<
        std::result::Result<
            InstallSnapshotResponse<NodeId>,
            RaftError<NodeId, InstallSnapshotError>,
        >,
    > {
        rpc.within_bounds().map_err(ConsensusError::BadMessage)?;
        Ok(self.inner.raft.install_snapshot(rpc).await)
    }

    /// Whether this member has ever been part of a group (a vote or a log
    /// entry in its store).
    pub async fn is_initialized(&self) -> Result<bool> {
        self.inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| ConsensusError::Stopped(e.to_string()))
    }

    /// The applied state on this member, possibly behind the leader.
    pub fn local(&self) -> StateView {
        self.inner.view.borrow().clone()
    }

    /// Sees every applied change on this member, in order.
    pub fn subscribe(&self) -> watch::Receiver<StateView> {
        self.inner.view.clone()
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let last_applied = m.last_applied.map_or(0, |id| id.index);
        RaftStatus {
            node_id: self.inner.id,
            leader: m.current_leader,
            term: m.current_term,
            is_leader: m.state == ServerState::Leader,
            last_applied,
            // An installed snapshot is applied without a commit through
            // this store, and what it holds was committed.
            committed: self.inner.committed.get().max(last_applied),
            last_log: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map(|id| id.index),
            purged_index: m.purged.map(|id| id.index),
            membership: MembershipView {
                voters: membership.voter_ids().collect(),
                learners: membership.learner_ids().collect(),
            },
            joint: membership.get_joint_config().len() > 1,
            contact_age: self.inner.contact.age(),
        }
    }

    /// Commits a command through the leader and returns how it applied.
    /// Each one that commits, refused by the state machine or not, counts
    /// in [`Consensus::proposal_latencies`]; a failed one does not.
    pub async fn propose(&self, command: Command) -> Result<Response> {
        let asked = tokio::time::Instant::now();
        let answer = self.propose_forwarding(command, true).await;
        if answer.is_ok() {
            self.inner.proposals.record(asked.elapsed());
        }
        answer
    }

    /// How long this member's committed proposals took, from the call of
    /// [`Consensus::propose`] to its answer (forwarding included), since start.
    pub fn proposal_latencies(&self) -> Latencies {
        self.inner.proposals.snapshot()
    }

    /// Reads the state after confirming with a quorum that no newer state exists.
    pub async fn read(&self) -> Result<StateView> {
        self.read_forwarding(true).await
    }

    pub async fn add_member(
        &self,
        node_id: NodeId,
        raft_addr: &str,
        incarnation: Incarnation,
        voter: bool,
    ) -> Result<MembershipView> {
        self.change_membership_forwarding(
            node_id,
            raft_addr,
            MembershipChange::Add { voter, incarnation },
            true,
        )
        .await
    }

    pub async fn remove_member(&self, node_id: NodeId) -> Result<MembershipView> {
        self.change_membership_forwarding(node_id, "", MembershipChange::Remove, true)
            .await
    }

    fn status_membership_node(&self, node_id: NodeId) -> Option<Node> {
        let m = self.inner.raft.metrics().borrow().clone();
        m.membership_config.membership().get_node(&node_id).cloned()
    }

    /// The group records this member's id under this store's incarnation:
    /// from then on a wiped store cannot take this member's place.
    pub fn place_recorded(&self) -> bool {
        self.recorded_incarnation(self.inner.id) == Some(self.inner.incarnation)
    }

    /// The incarnation this member's membership records for `node_id`;
    /// `None` when the id is not a member.
    pub fn recorded_incarnation(&self, node_id: NodeId) -> Option<Incarnation> {
        self.status_membership_node(node_id).map(|n| n.incarnation)
    }

    /// The leader this member knows of, with its record.
    fn leader_node(&self) -> Option<(NodeId, Node)> {
        let m = self.inner.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node))
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft core did not stop cleanly");
        }
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let after = self.inner.operation_timeout.get();
        tokio::time::timeout(after, work)
            .await
            .map_err(|_| ConsensusError::Timeout { operation, after })?
    }

    /// Awaits a request forwarded to leader `sent_to`, or gives up on it
    /// (`None`) as soon as this member learns of another leader. A leader cut
    /// off by a partition answers nothing, so without this the request would
    /// sit out the whole operation timeout while the others elect a new
    /// leader, and the primary's renewal with it. Sending a command again is
    /// safe: lease commands are compare-and-sets, and a leader that lost its
    /// majority commits nothing.
    async fn unless_leader_moves<T>(
        &self,
        sent_to: NodeId,
        forwarded: impl Future<Output = Result<T>>,
    ) -> Option<Result<T>> {
        let mut metrics = self.inner.raft.metrics();
        let moved = async {
            let seen = metrics
                .wait_for(|m| m.current_leader.is_some_and(|l| l != sent_to))
                .await
                .map(drop);
            if seen.is_err() {
                // Raft stopped: only the forwarded request can still answer.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            answer = forwarded => Some(answer),
            () = moved => {
                tracing::debug!(old_leader = sent_to, "the Raft leader changed while a request was forwarded to it; sending it again");
                None
            }
        }
    }

    /// `forward: false` is for requests that another member already forwarded.
    pub(crate) async fn propose_forwarding(
        &self,
        command: Command,
        forward: bool,
    ) -> Result<Response> {
        self.bounded("propose", async {
            loop {
                return match self.inner.writes.write(command.clone()).await {
                    Ok(response) => Ok(response),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
                        match (to.leader_id, to.leader_node) {
                            (Some(id), Some(leader)) if forward => {
                                let sent = self.inner.link.propose(&leader, command.clone());
                                match self.unless_leader_moves(id, sent).await {
                                    Some(answer) => answer,
                                    None => continue,
                                }
                            }
                            _ => Err(ConsensusError::NoLeader),
                        }
                    }
                    Err(RaftError::APIError(e)) => Err(ConsensusError::Membership(e.to_string())),
                    Err(RaftError::Fatal(e)) => Err(ConsensusError::Stopped(e.to_string())),
                };
            }
        })
        .await
    }

    pub(crate) async fn read_forwarding(&self, forward: bool) -> Result<StateView> {
        self.bounded("linearizable read", async {
            loop {
                return match self.inner.raft.ensure_linearizable().await {
                    // ensure_linearizable returns once the read point is applied here.
                    Ok(_) => Ok(self.local()),
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(to))) => {
                        match (to.leader_id, to.leader_node) {
                            (Some(id), Some(leader)) if forward => {
                                let sent = self.inner.link.read(&leader);
                                match self.unless_leader_moves(id, sent).await {
                                    Some(answer) => answer,
                                    None => continue,
                                }
                            }
                            _ => Err(ConsensusError::NoLeader),
                        }
                    }
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                        Err(ConsensusError::NoQuorum)
                    }
                    Err(RaftError::Fatal(e)) => Err(ConsensusError::Stopped(e.to_string())),
                };
            }
        })
        .await
    }
}
