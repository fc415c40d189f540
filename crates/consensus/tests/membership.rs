//! Online membership changes: a new member joins as a learner and receives
//! the state, is promoted to voter, and a voter is removed. Every step is
//! requested through a member that does not lead (so it is forwarded), each
//! member's status reflects it, and proposals keep committing throughout.

mod common;

use common::*;
use raftgres_consensus::Consensus;
use raftgres_consensus::MembershipView;
use raftgres_state::Applied;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Proposes fresh commands back to back until stopped, counting commits and
/// recording every failure.
struct Proposer {
    committed: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Proposer {
    fn start(via: Consensus) -> Self {
        let committed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (committed, failures, stop) = (committed.clone(), failures.clone(), stop.clone());
            async move {
                let mut seq = 50_000;
                while !stop.load(Ordering::SeqCst) {
                    seq += 1;
                    // propose is bounded by operation_timeout; this is a second guard.
                    let outcome = tokio::time::timeout(
                        OPERATION_TIMEOUT * 3,
                        via.propose(member_command(seq)),
                    )
                    .await;
                    match outcome {
                        Ok(Ok(Ok(Applied::Done))) => {
                            committed.fetch_add(1, Ordering::SeqCst);
                        }
                        other => failures.lock().unwrap().push(format!("{seq}: {other:?}")),
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        });
        Self {
            committed,
            failures,
            stop,
            task,
        }
    }

    /// Waits until a few more commands committed than had when called.
    async fn wait_progress(&self, step: &str) {
        let from = self.committed.load(Ordering::SeqCst);
        eventually(
            &format!("background proposals to keep committing after {step}"),
            SETTLE,
            || (self.committed.load(Ordering::SeqCst) >= from + 3).then_some(()),
        )
        .await;
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        bounded("the background proposer to stop", SETTLE, self.task)
            .await
            .expect("background proposer panicked");
        let failures = self.failures.lock().unwrap().clone();
        (self.committed.load(Ordering::SeqCst), failures)
    }
}

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

fn view_of(voters: &[u64], learners: &[u64]) -> MembershipView {
    MembershipView {
        voters: sorted(voters.to_vec()),
        learners: sorted(learners.to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joins_is_promoted_and_a_voter_leaves_while_commits_go_on() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let followers = cluster.others(leader);
    // `asker` issues every change (forwarded); `leaving` is removed at the end.
    let (asker, leaving) = (followers[0], followers[1]);
    for _ in 0..5 {
        cluster.commit(asker).await;
    }

    let proposer = Proposer::start(cluster.get(leader).clone());
    proposer.wait_progress("start").await;

    // 1. Member 4 starts empty and joins as a learner.
    let newcomer = cluster.start_member(4).await;
    let incarnation = newcomer.incarnation();
    assert_eq!(*newcomer.local().state, Default::default());
    let joined = cluster
        .add_member(asker, 4, incarnation, false)
        .await
        .expect("adding a learner through a follower");
    assert_eq!(joined, view_of(&[1, 2, 3], &[4]));
    cluster
        .wait_membership(&[1, 2, 3, 4], &[1, 2, 3], &[4])
        .await;
    cluster.wait_converged(leader, &[4]).await;
    assert!(!newcomer.status().is_leader);
    assert_eq!(newcomer.status().leader, Some(leader));
    // A learner's proposals are forwarded and commit; its reads are linearizable.
    let from_learner = cluster.commit(4).await;
    assert!(has(&cluster.read(4).await, &from_learner));
    proposer.wait_progress("adding a learner").await;

    // 2. Promote it to voter.
    let promoted = cluster
        .add_member(asker, 4, incarnation, true)
        .await
        .expect("promoting the learner through a follower");
    assert_eq!(promoted, view_of(&[1, 2, 3, 4], &[]));
    cluster
        .wait_membership(&[1, 2, 3, 4], &[1, 2, 3, 4], &[])
        .await;
    proposer.wait_progress("promoting the learner").await;
    cluster.commit(4).await;

    // 3. Remove a voter (not the leader), then stop it.
    let shrunk = cluster
        .remove_member(asker, leaving)
        .await
        .expect("removing a voter through a follower");
    let remaining: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != leaving)
        .collect();
    assert_eq!(shrunk, view_of(&remaining, &[]));
    cluster.wait_membership(&remaining, &remaining, &[]).await;
    cluster.crash(leaving).await;
    proposer.wait_progress("removing a voter").await;

    // The three remaining voters form the quorum now.
    for via in &remaining {
        cluster.commit(*via).await;
    }
    let (committed, failures) = proposer.finish().await;
    assert!(
        failures.is_empty(),
        "{} background proposals failed during the membership changes (of {}): {failures:?}",
        failures.len(),
        committed + failures.len() as u64
    );
    let leader = cluster.wait_leader(&remaining).await;
    cluster.wait_converged(leader, &remaining).await;
    assert_eq!(
        cluster.read(leader).await.state.members.len() as u64,
        // 5 + 1 + 1 + 3 from this test, plus the background proposer's.
        10 + committed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_leader_hands_over_leadership() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let followers = cluster.others(leader);
    cluster.commit(leader).await;

    let shrunk = cluster
        .remove_member(followers[0], leader)
        .await
        .expect("removing the leader through a follower");
    assert_eq!(shrunk.voters, followers);

    cluster.wait_membership(&followers, &followers, &[]).await;
    let new = cluster.wait_leader(&followers).await;
    assert_ne!(new, leader);
    cluster.crash(leader).await;
    for via in &followers {
        cluster.commit(*via).await;
    }
    cluster.wait_converged(new, &followers).await;
}

/// The address the leader's membership config holds for `id`.
fn address_in_config(consensus: &Consensus, id: u64) -> Option<String> {
    let metrics = consensus.raft().metrics().borrow().clone();
    metrics
        .membership_config
        .membership()
        .get_node(&id)
        .map(|node| node.addr.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_member_twice_is_idempotent() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let incarnation = cluster.start_member(4).await.incarnation();
    for voter in [false, false, true, true] {
        let view = cluster
            .add_member(leader, 4, incarnation, voter)
            .await
            .unwrap_or_else(|e| panic!("add_member(4, voter: {voter}) failed: {e}"));
        assert_eq!(view.voters.contains(&4), voter, "{view:?}");
        assert_eq!(view.learners.contains(&4), !voter, "{view:?}");
        let s = cluster.status(leader);
        assert!(
            !s.joint,
            "left joint after add_member(voter: {voter}): {s:?}"
        );
    }
    cluster
        .wait_membership(&[1, 2, 3, 4], &[1, 2, 3, 4], &[])
        .await;
    cluster.commit(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_can_be_removed() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let follower = cluster.others(leader)[0];
    let incarnation = cluster.start_member(4).await.incarnation();
    cluster
        .add_member(follower, 4, incarnation, false)
        .await
        .expect("add learner");
    cluster.wait_membership(&[1, 2, 3], &[1, 2, 3], &[4]).await;
    let view = cluster
        .remove_member(follower, 4)
        .await
        .expect("remove learner");
    assert_eq!(view, view_of(&[1, 2, 3], &[]));
    cluster.wait_membership(&[1, 2, 3], &[1, 2, 3], &[]).await;
    cluster.crash(4).await;
    cluster.commit(follower).await;
}

/// openraft's `add_learner` never overrides a known node's address, so
/// `add_member` must re-address a member that moved before adding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_member_re_addresses_an_existing_member() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let incarnation = cluster.start_member(4).await.incarnation();
    // First known under a stale address (the memory network routes Raft
    // traffic by id, so replication works regardless).
    bounded(
        "add learner",
        SETTLE * 2,
        cluster
            .get(leader)
            .add_member(4, "mem:99", incarnation, false),
    )
    .await
    .expect("add learner");
    assert_eq!(
        address_in_config(cluster.get(leader), 4).as_deref(),
        Some("mem:99")
    );
    cluster
        .add_member(leader, 4, incarnation, false)
        .await
        .expect("re-address learner");
    eventually(
        "every member to hold member 4's new address",
        SETTLE,
        || {
            [1, 2, 3, 4]
                .iter()
                .all(|id| address_in_config(cluster.get(*id), 4).as_deref() == Some("mem:4"))
                .then_some(())
        },
    )
    .await;
}
