//! A small in-process harness: members on the memory transport, each with its
//! own redb file, and bounded polling helpers. Every wait here has a deadline,
//! so a broken invariant fails the test instead of hanging it.

// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use raftgres_consensus::store;
use raftgres_consensus::transport::memory::{MemoryRouter, address};
use raftgres_consensus::types::{Incarnation, NodeId};
use raftgres_consensus::{
    Consensus, ConsensusError, MembershipView, OperationTimeout, RaftStatus, Settings, StateView,
};
use raftgres_state::{Applied, Command, ConfigValues, Member, MemberRole, PgState};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tempfile::TempDir;
use tokio::time::Instant;

pub const HEARTBEAT: Duration = Duration::from_millis(50);
pub const ELECTION_MIN: Duration = Duration::from_millis(250);
pub const ELECTION_MAX: Duration = Duration::from_millis(500);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
/// Large enough that no snapshot is built unless a test asks for one.
pub const NO_SNAPSHOTS: u64 = 100_000;
/// How often the bounded polls look again.
const POLL: Duration = Duration::from_millis(20);
/// A generous bound for anything that needs an election or two.
pub const SETTLE: Duration = Duration::from_secs(10);

pub fn settings(node_id: NodeId, snapshot_every_logs: u64) -> Settings {
    Settings {
        node_id,
        cluster_name: "raftgres-test".into(),
        heartbeat_interval: HEARTBEAT,
        election_timeout_min: ELECTION_MIN,
        election_timeout_max: ELECTION_MAX,
        snapshot_every_logs,
        operation_timeout: OperationTimeout::new(OPERATION_TIMEOUT),
    }
}

/// Valid dynamic config values (the same as the state crate's unit tests use).
pub fn config_values() -> ConfigValues {
    ConfigValues::new(
        raftgres_state::LeaseTiming::from_millis(2000, 400, 400),
        1000,
        1 << 20,
    )
}

/// A valid `PublishMember` whose member name is unique per `seq`.
pub fn member_command(seq: u64) -> Command {
    Command::PublishMember {
        member: Member {
            role: MemberRole::Replica,
            pg_state: PgState::Running,
            timeline: Some(1),
            ..Member::new(member_name(seq), 1000 + seq, format!("mem:{}", 1000 + seq))
        },
    }
}

pub fn member_name(seq: u64) -> String {
    format!("m{seq}")
}

/// The member name a `member_command` publishes.
pub fn name_of(command: &Command) -> String {
    match command {
        Command::PublishMember { member } => member.name.clone(),
        other => panic!("not a PublishMember: {other:?}"),
    }
}

pub fn store_path(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("n{id}.redb"))
}

/// Opens a member's store, retrying for a bounded time: after a shutdown,
/// openraft's tasks release the redb file asynchronously, and redb refuses a
/// second open of a file that is still open in this process.
pub async fn open_store(path: &Path) -> (store::LogStore, store::StateMachine) {
    let deadline = Instant::now() + SETTLE;
    loop {
        match store::open(path).await {
            Ok(halves) => return halves,
            Err(e) if Instant::now() < deadline => {
                eprintln!("store {} not reopenable yet: {e}", path.display());
                tokio::time::sleep(POLL).await;
            }
            Err(e) => panic!("the store {} stayed unopenable: {e}", path.display()),
        }
    }
}

/// Awaits `work`, failing the test if it takes longer than `within`.
pub async fn bounded<T>(what: &str, within: Duration, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(within, work).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {within:?}"),
    }
}

/// Polls `probe` until it yields a value, failing the test after `within`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`eventually`], for probes that must await (each probe is itself bounded).
pub async fn eventually_async<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(v)) = tokio::time::timeout(left, probe()).await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Proposes `command` through each of `members` in turn until one gets it
/// committed: a leader found a moment ago may have lost an election since,
/// and then answers "no leader" until the next one is known. Returns the
/// member that got it committed and what the state machine answered; a
/// rejection by the state machine fails the test.
pub async fn commit_through_any(
    members: &BTreeMap<NodeId, Consensus>,
    command: &Command,
) -> (NodeId, Applied) {
    let deadline = Instant::now() + SETTLE;
    let mut errors = Vec::new();
    loop {
        for (id, member) in members {
            match tokio::time::timeout(OPERATION_TIMEOUT * 3, member.propose(command.clone())).await
            {
                Ok(Ok(Ok(applied))) => return (*id, applied),
                Ok(Ok(Err(rejection))) => panic!("{command:?} rejected: {rejection}"),
                Ok(Err(e)) => errors.push(format!("{id}: {e}")),
                Err(_) => errors.push(format!("{id}: propose hung")),
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "{command:?} did not commit through any member within {SETTLE:?}; errors: {errors:?}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The errors a caller cut off from the majority may see: all say "retry".
pub fn is_unavailable(e: &ConsensusError) -> bool {
    matches!(
        e,
        ConsensusError::NoLeader
            | ConsensusError::Timeout { .. }
            | ConsensusError::NoQuorum
            | ConsensusError::Unreachable { .. }
    )
}

/// Heartbeat and election timeouts of every member of a [`Cluster`].
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat: HEARTBEAT,
            election_min: ELECTION_MIN,
            election_max: ELECTION_MAX,
        }
    }
}

pub struct Cluster {
    pub router: Arc<MemoryRouter>,
    pub dir: TempDir,
    pub snapshot_every_logs: u64,
    pub timing: Timing,
    /// Running members (crashed ones are removed).
    pub members: BTreeMap<NodeId, Consensus>,
    /// Each running member's log store, for its fault points.
    pub logs: BTreeMap<NodeId, store::LogStore>,
    seq: AtomicU64,
}

impl Cluster {
    pub fn new(snapshot_every_logs: u64) -> Self {
        Self {
            router: MemoryRouter::new(),
            dir: tempfile::tempdir().expect("create a temporary directory"),
            snapshot_every_logs,
            timing: Timing::default(),
            members: BTreeMap::new(),
            logs: BTreeMap::new(),
            seq: AtomicU64::new(0),
        }
    }

    /// Starts members `1..=n`, initializes them as one group, waits for a
    /// leader and bootstraps the dynamic config.
    pub async fn launch(n: u64) -> Self {
        Self::launch_with(n, NO_SNAPSHOTS).await
    }

    pub async fn launch_with(n: u64, snapshot_every_logs: u64) -> Self {
        Self::new(snapshot_every_logs).form(n).await
    }

    /// Like [`Cluster::launch`], with other heartbeat and election timing.
    pub async fn launch_timed(n: u64, timing: Timing) -> Self {
        let mut cluster = Self::new(NO_SNAPSHOTS);
        cluster.timing = timing;
        cluster.form(n).await
    }

    async fn form(mut self, n: u64) -> Self {
        let ids: Vec<NodeId> = (1..=n).collect();
        for id in &ids {
            self.start_member(*id).await;
        }
        let voters: BTreeMap<NodeId, String> = ids.iter().map(|id| (*id, address(*id))).collect();
        for id in &ids {
            bounded("initialize", SETTLE, self.get(*id).initialize(&voters))
                .await
                .expect("initialize");
        }
        self.wait_leader(&ids).await;
        let bootstrap = Command::BootstrapConfig {
            values: config_values(),
        };
        let (_, applied) = commit_through_any(&self.members, &bootstrap).await;
        assert!(
            matches!(applied, Applied::Config { .. }),
            "bootstrap config applies: {applied:?}"
        );
        self
    }

    /// Starts (and registers) one member on its own redb file, without
    /// initializing it: it joins whatever group adds it.
    pub async fn start_member(&mut self, id: NodeId) -> Consensus {
        let (log, machine) = open_store(&store_path(self.dir.path(), id)).await;
        self.logs.insert(id, log.clone());
        let settings = Settings {
            heartbeat_interval: self.timing.heartbeat,
            election_timeout_min: self.timing.election_min,
            election_timeout_max: self.timing.election_max,
            ..settings(id, self.snapshot_every_logs)
        };
        let consensus = Consensus::start(
            &settings,
            log,
            machine,
            self.router.network(id),
            self.router.link(id),
        )
        .await
        .expect("start the member");
        self.router.register(consensus.clone());
        self.members.insert(id, consensus.clone());
        consensus
    }

    pub fn get(&self, id: NodeId) -> &Consensus {
        self.members
            .get(&id)
            .unwrap_or_else(|| panic!("member {id} is not running"))
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    /// The running members other than `id`.
    pub fn others(&self, id: NodeId) -> Vec<NodeId> {
        self.ids().into_iter().filter(|x| *x != id).collect()
    }

    pub fn status(&self, id: NodeId) -> RaftStatus {
        self.get(id).status()
    }

    /// Cuts `id` off from the other running members, both ways; returns them.
    pub fn isolate(&self, id: NodeId) -> Vec<NodeId> {
        let rest = self.others(id);
        self.router.partition(&[&[id], &rest]);
        rest
    }

    /// Heals every cut and waits until all running members agree on a
    /// leader; returns it.
    pub async fn heal(&self) -> NodeId {
        self.router.heal();
        self.wait_leader(&self.ids()).await
    }

    /// Adds started member `id` at its memory address through `via`, as a
    /// voter or a learner, within a bound long enough for two elections.
    pub async fn add_member(
        &self,
        via: NodeId,
        id: NodeId,
        incarnation: Incarnation,
        voter: bool,
    ) -> Result<MembershipView, ConsensusError> {
        let addr = address(id);
        let add = self.get(via).add_member(id, &addr, incarnation, voter);
        bounded("add member", SETTLE * 2, add).await
    }

    /// Removes member `id` through `via`, bounded like [`Cluster::add_member`].
    pub async fn remove_member(
        &self,
        via: NodeId,
        id: NodeId,
    ) -> Result<MembershipView, ConsensusError> {
        bounded("remove member", SETTLE * 2, self.get(via).remove_member(id)).await
    }

    /// Kills a member as a process death would: unreachable at once, then stopped.
    pub async fn crash(&mut self, id: NodeId) {
        self.router.unregister(id);
        // Its store handle would keep the redb file open after the "process" died.
        self.logs.remove(&id);
        if let Some(member) = self.members.remove(&id) {
            bounded("shutdown", SETTLE, member.shutdown()).await;
        }
    }

    /// Waits until one of `among` leads and all of `among` agree on it.
    pub async fn wait_leader(&self, among: &[NodeId]) -> NodeId {
        self.wait_leader_where(among, |_| true).await
    }

    /// Like [`Cluster::wait_leader`], for a leader whose status satisfies `ok`.
    pub async fn wait_leader_where(
        &self,
        among: &[NodeId],
        ok: impl Fn(&RaftStatus) -> bool,
    ) -> NodeId {
        eventually(&format!("a leader agreed on by {among:?}"), SETTLE, || {
            let statuses: Vec<RaftStatus> = among.iter().map(|id| self.status(*id)).collect();
            let leader = statuses.iter().find(|s| s.is_leader && ok(s))?;
            statuses
                .iter()
                .all(|s| s.leader == Some(leader.node_id) && s.term == leader.term)
                .then_some(leader.node_id)
        })
        .await
    }

    /// A command no other call of this cluster proposes.
    pub fn next_command(&self) -> Command {
        member_command(self.seq.fetch_add(1, Ordering::SeqCst))
    }

    /// Proposes a fresh command through `via` and requires it to commit and apply.
    pub async fn commit(&self, via: NodeId) -> Command {
        let command = self.next_command();
        let response = bounded(
            "propose",
            OPERATION_TIMEOUT * 3,
            self.get(via).propose(command.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("proposal via {via} failed: {e}"));
        assert_eq!(
            response,
            Ok(Applied::Done),
            "proposal via {via} applied cleanly"
        );
        command
    }

    /// Proposes one fresh command, trying members of `among` in turn until one
    /// commits it (elections may be running). Returns the command and the
    /// member that got it committed.
    pub async fn commit_somewhere(&self, among: &[NodeId]) -> (Command, NodeId) {
        let command = self.next_command();
        let members = among
            .iter()
            .map(|id| (*id, self.get(*id).clone()))
            .collect();
        let (via, _) = commit_through_any(&members, &command).await;
        (command, via)
    }

    /// A linearizable read through `via`, bounded.
    pub async fn read(&self, via: NodeId) -> StateView {
        bounded("read", OPERATION_TIMEOUT * 3, self.get(via).read())
            .await
            .unwrap_or_else(|e| panic!("linearizable read via {via} failed: {e}"))
    }

    /// Waits until every member in `ids` has applied the same state as `reference`.
    pub async fn wait_converged(&self, reference: NodeId, ids: &[NodeId]) {
        eventually(
            &format!("members {ids:?} to apply the same state as {reference}"),
            SETTLE,
            || {
                let want = self.get(reference).local();
                ids.iter()
                    .all(|id| *self.get(*id).local().state == *want.state)
                    .then_some(())
            },
        )
        .await;
    }

    /// Waits until every member in `ids` reports exactly these voters and learners
    /// and no joint config.
    pub async fn wait_membership(&self, ids: &[NodeId], voters: &[NodeId], learners: &[NodeId]) {
        let voters: BTreeSet<NodeId> = voters.iter().copied().collect();
        let learners: BTreeSet<NodeId> = learners.iter().copied().collect();
        eventually(
            &format!("members {ids:?} to see voters {voters:?} and learners {learners:?}"),
            SETTLE,
            || {
                ids.iter()
                    .all(|id| {
                        let s = self.status(*id);
                        !s.joint
                            && s.membership.voters.iter().copied().collect::<BTreeSet<_>>()
                                == voters
                            && s.membership
                                .learners
                                .iter()
                                .copied()
                                .collect::<BTreeSet<_>>()
                                == learners
                    })
                    .then_some(())
            },
        )
        .await;
    }
}

/// Whether the state holds the member a `member_command` published.
pub fn has(view: &StateView, command: &Command) -> bool {
    view.state.members.contains_key(&name_of(command))
}
