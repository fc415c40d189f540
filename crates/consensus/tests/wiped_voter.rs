//! A voter whose store is wiped (a replaced disk, a rebuilt host) has lost
//! its vote and its log. Restarted under its old id it must neither vote nor
//! take its old place: its Raft messages are refused and its join is
//! refused with an error that says how to re-add it. Removed, it comes back
//! as a new member that catches up.

mod common;

use common::*;
use raftgres_consensus::formation::NewGroup;
use raftgres_consensus::transport::memory::address;
use raftgres_consensus::types::NodeId;
use raftgres_consensus::{Consensus, ConsensusError, Formation};
use std::collections::BTreeMap;
use std::time::Duration;

const RETRY: Duration = Duration::from_millis(100);

fn voters(ids: &[NodeId]) -> BTreeMap<NodeId, String> {
    ids.iter().map(|id| (*id, address(*id))).collect()
}

async fn form_or_join(member: &Consensus, ids: &[NodeId]) -> Result<Formation, ConsensusError> {
    bounded(
        "form_or_join",
        SETTLE * 2,
        member.form_or_join(&voters(ids), RETRY, &NewGroup::Allowed),
    )
    .await
}

/// A group of three whose members recorded their stores' incarnations, as
/// agents do at start.
async fn launch() -> Cluster {
    let cluster = Cluster::launch(3).await;
    for id in [1, 2, 3] {
        assert_eq!(
            form_or_join(cluster.get(id), &[1, 2, 3]).await,
            Ok(Formation::Restarted)
        );
    }
    eventually("every member to see every place claimed", SETTLE, || {
        [1, 2, 3]
            .iter()
            .all(|at| {
                [1, 2, 3].iter().all(|id| {
                    cluster.get(*at).recorded_incarnation(*id)
                        == Some(cluster.get(*id).incarnation())
                })
            })
            .then_some(())
    })
    .await;
    cluster
}

/// Crashes `id`, deletes its store and starts it on an empty one.
async fn wipe(cluster: &mut Cluster, id: NodeId) -> Consensus {
    let old = cluster.get(id).incarnation();
    cluster.crash(id).await;
    let path = store_path(cluster.dir.path(), id);
    std::fs::remove_file(&path).unwrap_or_else(|e| panic!("delete {}: {e}", path.display()));
    let member = cluster.start_member(id).await;
    assert_ne!(
        member.incarnation(),
        old,
        "a new store draws a new incarnation"
    );
    assert!(!member.is_initialized().await.expect("is_initialized"));
    member
}

/// The hole: X is committed on the leader and one follower only. The leader
/// goes down and the follower's disk is replaced. If the wiped follower
/// voted, the member that missed X would win the election with its vote
/// and X, acknowledged, would be gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_cannot_elect_a_leader_that_lacks_a_committed_entry() {
    let mut cluster = launch().await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let others = cluster.others(leader);
    let (wiped, behind) = (others[0], others[1]);
    cluster.router.partition(&[&[behind], &[leader, wiped]]);
    let x = cluster.commit(leader).await;
    cluster.crash(leader).await;
    let member = wipe(&mut cluster, wiped).await;
    cluster.router.heal();
    let term_before = cluster.status(behind).term;
    let joining = tokio::spawn({
        let member = member.clone();
        async move { form_or_join(&member, &[1, 2, 3]).await }
    });

    // The member that missed X campaigns again and again (its term grows)
    // but never wins: the only other live voter is the wiped one, whose
    // vote is refused.
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let s = cluster.status(behind);
        assert!(!s.is_leader, "elected without the committed entry: {s:?}");
        if s.term > term_before + 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the member behind stopped campaigning: {s:?}"
        );
        tokio::time::sleep(HEARTBEAT / 5).await;
    }

    // With the old leader back, the group elects a leader that has X, and
    // refuses the wiped store its old place.
    cluster.start_member(leader).await;
    let now = cluster.wait_leader(&[leader, behind]).await;
    assert!(has(&cluster.read(now).await, &x));
    let refused = bounded("the wiped member's join", SETTLE * 2, joining)
        .await
        .expect("join task");
    assert_eq!(refused, Err(ConsensusError::Replaced { node_id: wiped }));
    assert!(!member.is_initialized().await.expect("is_initialized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_is_refused_then_comes_back_once_removed() {
    let mut cluster = launch().await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let wiped = cluster.others(leader)[0];
    let before = cluster.commit(leader).await;
    let member = wipe(&mut cluster, wiped).await;

    let refused = form_or_join(&member, &[1, 2, 3]).await;
    assert_eq!(refused, Err(ConsensusError::Replaced { node_id: wiped }));
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains(&format!("node id {wiped}")) && message.contains("raftgresctl remove"),
        "{message}"
    );
    // It took no part: no message of the group reached its store, and the
    // others commit without it.
    assert!(!member.is_initialized().await.expect("is_initialized"));
    let live = cluster.others(wiped);
    cluster.commit_somewhere(&live).await;

    // Removed, its id is free: the same empty store joins as a new member,
    // a learner that catches up, then a voter.
    cluster
        .remove_member(leader, wiped)
        .await
        .expect("remove the wiped member");
    cluster.wait_membership(&live, &live, &[]).await;
    match form_or_join(&member, &[1, 2, 3]).await {
        Ok(Formation::Joined(view)) => assert!(view.voters.contains(&wiped), "{view:?}"),
        other => panic!("expected to join as a new member, got {other:?}"),
    }
    cluster.wait_membership(&[1, 2, 3], &[1, 2, 3], &[]).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    cluster.wait_converged(leader, &[wiped]).await;
    assert!(has(&cluster.read(wiped).await, &before));
    let after = cluster.commit(wiped).await;
    assert!(has(&cluster.read(leader).await, &after));
    // Started again, it reopens its store: its place is its own now.
    assert_eq!(
        form_or_join(&member, &[1, 2, 3]).await,
        Ok(Formation::Restarted)
    );
}

/// Re-added at once after its removal, a wiped member copies the group's
/// state from a snapshot taken while its old store still held the place. For
/// a while its own copy of the membership shows the old incarnation: that is
/// its copy lagging, not the group refusing it, and it must not refuse itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_added_store_does_not_refuse_itself_from_a_lagging_copy() {
    const EVERY: u64 = 20;
    const ANSWER_DELAY: Duration = Duration::from_secs(3);
    let mut cluster = Cluster::launch_with(3, EVERY).await;
    for id in [1, 2, 3] {
        form_or_join(cluster.get(id), &[1, 2, 3])
            .await
            .expect("claim the place");
    }
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let wiped = cluster.others(leader)[0];
    let old = cluster.get(wiped).incarnation();
    eventually("the group to record the place", SETTLE, || {
        (cluster.get(leader).recorded_incarnation(wiped) == Some(old)).then_some(())
    })
    .await;
    for _ in 0..3 * EVERY {
        cluster.commit(leader).await;
    }
    eventually(
        "the leader to purge its log behind a snapshot",
        SETTLE,
        || cluster.status(leader).purged_index.is_some().then_some(()),
    )
    .await;
    let member = wipe(&mut cluster, wiped).await;
    cluster
        .remove_member(leader, wiped)
        .await
        .expect("remove the wiped member");

    // The new store gets the snapshot, which still records the old store,
    // and none of the entries after it (entries it cannot accept yet pass, so
    // the leader learns it must send the snapshot); the group's "taken in"
    // reaches it only once it holds that copy.
    let snapshot = cluster.status(leader).snapshot_index.expect("a snapshot");
    cluster
        .router
        .drop_append_entries_when(Box::new(move |_from, to, request| {
            to == wiped
                && !request.entries.is_empty()
                && request.prev_log_id.is_some_and(|p| p.index >= snapshot)
        }));
    cluster.router.delay_join_answers(ANSWER_DELAY);
    let joining = tokio::spawn({
        let member = member.clone();
        async move { form_or_join(&member, &[1, 2, 3]).await }
    });
    eventually(
        "the new store to hold the snapshot, which records the old store",
        ANSWER_DELAY / 2,
        || (member.recorded_incarnation(wiped) == Some(old)).then_some(()),
    )
    .await;
    cluster.router.delay_join_answers(Duration::ZERO);

    match bounded("the re-added member's join", SETTLE * 2, joining)
        .await
        .expect("join task")
    {
        Ok(Formation::Joined(view)) => assert!(view.voters.contains(&wiped), "{view:?}"),
        other => panic!("expected to join as a new member, got {other:?}"),
    }
    cluster.router.clear_filters();
    cluster.wait_membership(&[1, 2, 3], &[1, 2, 3], &[]).await;
    eventually("its copy to record the new store", SETTLE, || {
        member.place_recorded().then_some(())
    })
    .await;
}
