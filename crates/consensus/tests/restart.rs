//! Durability: members stopped and started again from their redb files keep
//! what they committed, their vote (term) and their log.

mod common;

use common::*;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use raftgres_consensus::store;
use raftgres_consensus::transport::memory::{MemoryRouter, address};
use raftgres_consensus::types::{NodeId, UNCLAIMED};
use raftgres_consensus::{Consensus, RaftStatus, StateView};
use raftgres_state::Command;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const ID: NodeId = 1;

/// One single-member group on `path`, started on a fresh router.
async fn boot(path: &Path, snapshot_every_logs: u64) -> Consensus {
    boot_with_log(path, snapshot_every_logs).await.0
}

/// Like [`boot`], also returning the member's log store for its fault points.
async fn boot_with_log(path: &Path, snapshot_every_logs: u64) -> (Consensus, store::LogStore) {
    let (log, machine) = open_store(path).await;
    let log_handle = log.clone();
    let router = MemoryRouter::new();
    let consensus = Consensus::start(
        &settings(ID, snapshot_every_logs),
        log,
        machine,
        router.network(ID),
        router.link(ID),
    )
    .await
    .expect("start");
    router.register(consensus.clone());
    (consensus, log_handle)
}

async fn wait_leading(consensus: &Consensus) -> RaftStatus {
    eventually("the single member to lead", SETTLE, || {
        let s = consensus.status();
        s.is_leader.then_some(s)
    })
    .await
}

async fn propose(consensus: &Consensus, command: Command) {
    let response = bounded("propose", OPERATION_TIMEOUT * 3, consensus.propose(command))
        .await
        .expect("commit");
    assert!(response.is_ok(), "{response:?}");
}

async fn read(consensus: &Consensus) -> StateView {
    bounded("read", SETTLE, consensus.read())
        .await
        .expect("linearizable read")
}

/// What the redb file holds once the member is down, read through the
/// storage traits openraft itself uses at startup.
struct OnDisk {
    term: u64,
    vote_committed: bool,
    last_log: Option<u64>,
    purged: Option<u64>,
    /// The saved commit index, up to which a start applies the log again.
    committed: Option<u64>,
    /// The state machine as stored: its last snapshot.
    applied: Option<u64>,
}

async fn on_disk(path: &Path) -> OnDisk {
    let (mut log, mut machine) = open_store(path).await;
    let vote = log
        .read_vote()
        .await
        .expect("read vote")
        .expect("a vote is stored");
    let log_state = log.get_log_state().await.expect("read log state");
    let committed = log.read_committed().await.expect("read the commit index");
    let (applied, _membership) = machine.applied_state().await.expect("applied state");
    OnDisk {
        term: vote.leader_id().term,
        vote_committed: vote.is_committed(),
        last_log: log_state.last_log_id.map(|id| id.index),
        purged: log_state.last_purged_log_id.map(|id| id.index),
        committed: committed.map(|id| id.index),
        applied: applied.map(|id| id.index),
    }
    // Both halves drop here, closing the file for the next start.
}

/// Asks the member to form a group of itself alone; whether it did (an
/// existing group is not formed again).
async fn initialize_alone(consensus: &Consensus) -> bool {
    let alone = BTreeMap::from([(ID, address(ID))]);
    bounded("initialize", SETTLE, consensus.initialize(&alone))
        .await
        .expect("initialize")
}

/// Forms the single-member group on a fresh store and bootstraps its config.
async fn form(consensus: &Consensus) {
    assert!(initialize_alone(consensus).await);
    wait_leading(consensus).await;
    propose(
        consensus,
        Command::BootstrapConfig {
            values: config_values(),
        },
    )
    .await;
}

/// Runs a first life that commits `commands` entries, then stops. Returns the
/// last linearizable read and the status just before stopping.
async fn first_life(path: &Path, commands: u64, every: u64) -> (StateView, RaftStatus) {
    let consensus = boot(path, every).await;
    form(&consensus).await;
    for seq in 0..commands {
        propose(&consensus, member_command(seq)).await;
    }
    let view = read(&consensus).await;
    assert_eq!(view.state.members.len() as u64, commands);
    let status = consensus.status();
    bounded("shutdown", SETTLE, consensus.shutdown()).await;
    (view, status)
}

/// Checks the file against the first life, starts again from it and checks
/// the running member; commits one more entry and stops. Returns the status.
async fn second_life(
    path: &Path,
    committed: &StateView,
    before: &RaftStatus,
    every: u64,
) -> RaftStatus {
    let disk = on_disk(path).await;
    assert_eq!(disk.term, before.term, "the stored vote's term");
    assert!(
        disk.vote_committed,
        "the stored vote is the leader's committed vote"
    );
    assert!(
        disk.last_log >= Some(committed.applied_index),
        "the log's end survived"
    );
    assert_eq!(
        disk.committed,
        Some(committed.applied_index),
        "the commit index, up to which the start applies the log again"
    );
    assert!(disk.applied <= disk.committed, "the snapshot is committed");
    if let Some(purged) = disk.purged {
        assert!(purged < committed.applied_index);
        assert!(
            disk.applied >= Some(purged),
            "the log goes on from the snapshot"
        );
    }

    let consensus = boot(path, every).await;
    // The applied state is there at once, before Raft does anything.
    assert_eq!(*consensus.local().state, *committed.state);
    assert_eq!(consensus.local().applied_index, committed.applied_index);

    // Initializing again is refused politely: the group already exists.
    assert!(
        !initialize_alone(&consensus).await,
        "a restarted member must not re-form its group"
    );

    // openraft restores a sole voter whose committed vote is its own as
    // leader at the same term; it never goes back to a lower one.
    let leading = wait_leading(&consensus).await;
    assert!(
        leading.term >= before.term,
        "term went back: {leading:?} after {before:?}"
    );
    assert_eq!(leading.membership.voters, vec![ID]);
    assert!(
        leading.last_log >= committed.applied_index,
        "the log survived"
    );
    assert_eq!(*read(&consensus).await.state, *committed.state);

    // Life goes on from where it stopped.
    propose(&consensus, member_command(10_000)).await;
    let view = read(&consensus).await;
    assert_eq!(view.state.members.len(), committed.state.members.len() + 1);
    assert!(view.applied_index > committed.applied_index);
    let status = consensus.status();
    bounded("shutdown", SETTLE, consensus.shutdown()).await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_state_vote_and_log_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(dir.path(), ID);
    let (committed, before) = first_life(&path, 30, NO_SNAPSHOTS).await;
    assert_eq!(before.purged_index, None);
    second_life(&path, &committed, &before, NO_SNAPSHOTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_after_the_log_was_purged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(dir.path(), ID);
    let every = 10;
    let (committed, before) = first_life(&path, 60, every).await;
    assert!(before.purged_index.is_some(), "{before:?}");
    second_life(&path, &committed, &before, every).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_two_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(dir.path(), ID);
    let (committed, before) = first_life(&path, 10, NO_SNAPSHOTS).await;
    let second = second_life(&path, &committed, &before, NO_SNAPSHOTS).await;

    let consensus = boot(&path, NO_SNAPSHOTS).await;
    let third = wait_leading(&consensus).await;
    assert!(third.term >= second.term, "{third:?} after {second:?}");
    let view = read(&consensus).await;
    assert_eq!(view.state.members.len(), committed.state.members.len() + 1);
    assert!(view.state.members.contains_key(&member_name(10_000)));
    bounded("shutdown", SETTLE, consensus.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_catches_up_from_its_own_file() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let follower = cluster.others(leader)[0];
    for _ in 0..5 {
        cluster.commit(follower).await;
    }
    cluster.wait_converged(leader, &[follower]).await;
    let before = cluster.get(follower).local();
    cluster.crash(follower).await;

    let live = cluster.ids();
    let mut missed = Vec::new();
    for _ in 0..5 {
        missed.push(cluster.commit_somewhere(&live).await.0);
    }

    // Its file holds what it had applied, and nothing it missed...
    let disk = on_disk(&store_path(cluster.dir.path(), follower)).await;
    assert_eq!(disk.committed, Some(before.applied_index));
    assert_eq!(disk.last_log, Some(before.applied_index));
    cluster.start_member(follower).await;
    // ...and it catches up from the group without being re-initialized.
    let all = cluster.ids();
    let leader = cluster.wait_leader(&all).await;
    cluster.wait_converged(leader, &all).await;
    let after = cluster.commit(follower).await;
    let view = cluster.read(follower).await;
    for command in missed.iter().chain([&after]) {
        assert!(has(&view, command));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_group_restarts_from_disk() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let mut committed = Vec::new();
    for via in [1, 2, 3, 1, 2, 3] {
        committed.push(cluster.commit(via).await);
    }
    let before = cluster.read(leader).await;
    let terms: BTreeMap<NodeId, u64> = cluster
        .ids()
        .into_iter()
        .map(|id| (id, cluster.status(id).term))
        .collect();
    for id in [1, 2, 3] {
        cluster.crash(id).await;
    }

    for id in [1, 2, 3] {
        cluster.start_member(id).await;
    }
    let all = cluster.ids();
    let leader = cluster.wait_leader(&all).await;
    for id in &all {
        assert!(
            cluster.status(*id).term >= terms[id],
            "member {id}'s term went back"
        );
    }
    let view = cluster.read(leader).await;
    assert_eq!(*view.state, *before.state);
    cluster.wait_converged(leader, &all).await;
    let after = cluster.commit_somewhere(&all).await.0;
    for command in committed.iter().chain([&after]) {
        assert!(has(&cluster.read(leader).await, command));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_keeps_its_incarnation_and_a_new_one_draws_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(dir.path(), ID);
    let first = open_store(&path).await.0.incarnation();
    assert_ne!(first, UNCLAIMED);
    assert_eq!(open_store(&path).await.0.incarnation(), first);
    std::fs::remove_file(&path).expect("delete the store");
    let second = open_store(&path).await.0.incarnation();
    assert_ne!(second, first);
    assert_ne!(second, UNCLAIMED);
}

/// A power cut while a log append waits for its fsync: everything that was
/// acknowledged is in the file's log, the entry being flushed is not, and
/// the member restarts from that file with the acknowledged state and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_log_flush_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(dir.path(), ID);
    let (consensus, log) = boot_with_log(&path, NO_SNAPSHOTS).await;
    form(&consensus).await;
    for seq in 0..5 {
        propose(&consensus, member_command(seq)).await;
    }
    let acknowledged = read(&consensus).await;

    log.delay_flushes(Duration::from_secs(2));
    let unacknowledged = member_command(99);
    let pending = {
        let consensus = consensus.clone();
        let command = unacknowledged.clone();
        // It times out (the flush outlasts one operation); it only starts the flush.
        tokio::spawn(async move { consensus.propose(command).await })
    };
    eventually("the append to wait for its fsync", SETTLE, || {
        log.flush_in_progress().then_some(())
    })
    .await;
    // redb admits one writer at a time and this one is held before its
    // commit, so the file is now what a power cut would leave.
    let crashed = dir.path().join("crashed.redb");
    std::fs::copy(&path, &crashed).expect("copy the store in the middle of the flush");
    log.delay_flushes(Duration::ZERO);
    let _ = pending.await;
    drop(log);
    bounded("shutdown", SETTLE, consensus.shutdown()).await;

    let disk = on_disk(&crashed).await;
    assert_eq!(
        disk.last_log,
        Some(acknowledged.applied_index),
        "the log ends at the last acknowledged entry"
    );
    assert!(disk.committed <= Some(acknowledged.applied_index));

    let restarted = boot(&crashed, NO_SNAPSHOTS).await;
    wait_leading(&restarted).await;
    assert_eq!(*read(&restarted).await.state, *acknowledged.state);
    let next = member_command(100);
    propose(&restarted, next.clone()).await;
    let view = read(&restarted).await;
    assert!(has(&view, &next), "the log grows after the lost entry");
    assert!(!has(&view, &unacknowledged));
    assert_eq!(
        view.state.members.len(),
        acknowledged.state.members.len() + 1
    );
    bounded("shutdown", SETTLE, restarted.shutdown()).await;
}
