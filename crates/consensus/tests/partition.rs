//! Partitions: the side without a majority can neither commit nor read
//! linearizably, the majority side elects a leader and goes on, healing
//! converges, and a one-way cut does not stop the group.

mod common;

use common::*;
use raftgres_consensus::ConsensusError;
use raftgres_consensus::types::NodeId;
use raftgres_state::Command;
use std::time::Duration;

/// Generous bound on a call that must fail: operation_timeout plus slack.
const FAIL_WITHIN: Duration = Duration::from_secs(5);

/// Awaits `call`, a `what` through member `id` on the minority side, and
/// requires it to fail with a retryable error (never Ok) within a bounded
/// time.
async fn assert_refused<T: std::fmt::Debug>(
    id: NodeId,
    what: &str,
    call: impl Future<Output = Result<T, ConsensusError>>,
) {
    match bounded(&format!("{what} on the minority side"), FAIL_WITHIN, call).await {
        Ok(done) => panic!("member {id} on the minority side served a {what}: {done:?}"),
        Err(e) => {
            eprintln!("member {id} refused the {what}: {e}");
            assert!(
                is_unavailable(&e),
                "member {id}: unexpected {what} error {e:?}"
            );
        }
    }
}

/// Proposes and reads through `id`, requiring both to fail with a retryable
/// error (never Ok) within a bounded time. Returns the refused command.
async fn assert_cannot_commit_or_read(cluster: &Cluster, id: NodeId) -> Command {
    let command = cluster.next_command();
    assert_refused(id, "proposal", cluster.get(id).propose(command.clone())).await;
    let read = async { Ok(cluster.get(id).read().await?.applied_index) };
    assert_refused(id, "linearizable read", read).await;
    command
}

/// Three members after a first commit through the leader, then the leader
/// cut off from the other two.
struct IsolatedLeader {
    cluster: Cluster,
    old: NodeId,
    old_term: u64,
    first: Command,
    majority: Vec<NodeId>,
}

async fn isolate_the_leader() -> IsolatedLeader {
    let cluster = Cluster::launch(3).await;
    let old = cluster.wait_leader(&[1, 2, 3]).await;
    let old_term = cluster.status(old).term;
    let first = cluster.commit(old).await;
    let majority = cluster.isolate(old);
    IsolatedLeader {
        cluster,
        old,
        old_term,
        first,
        majority,
    }
}

/// Commits five entries through `first_among` (whichever can), waits out
/// two election timeouts, commits five more through any member, and
/// requires a linearizable read through some member to hold all ten.
async fn assert_commits_across_a_cut(cluster: &Cluster, first_among: &[NodeId]) {
    let mut committed = Vec::new();
    for _ in 0..5 {
        committed.push(cluster.commit_somewhere(first_among).await.0);
    }
    // A member that hears no leader times out and campaigns: the group must
    // still commit.
    tokio::time::sleep(ELECTION_MAX * 2).await;
    for _ in 0..5 {
        committed.push(cluster.commit_somewhere(&cluster.ids()).await.0);
    }
    let view = eventually_async("a linearizable read", SETTLE, || async {
        for id in cluster.ids() {
            if let Ok(view) = cluster.get(id).read().await {
                return Some(view);
            }
        }
        None
    })
    .await;
    for command in &committed {
        assert!(has(&view, command), "read misses {command:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_can_neither_commit_nor_read() {
    let IsolatedLeader {
        cluster,
        old,
        majority,
        ..
    } = isolate_the_leader().await;

    // At once, while the old leader still believes it leads.
    assert_cannot_commit_or_read(&cluster, old).await;

    // And after the majority moved on: the stale leader must not serve a
    // read that misses the majority's newer commits.
    let new = cluster
        .wait_leader_where(&majority, |s| s.node_id != old)
        .await;
    let newer = cluster.commit(new).await;
    assert!(!has(&cluster.get(old).local(), &newer));
    assert_cannot_commit_or_read(&cluster, old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_follower_can_neither_commit_nor_read() {
    let cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let follower = cluster.others(leader)[0];
    let rest = cluster.isolate(follower);

    // Forwarding to the leader it remembers must fail, not bypass the cut.
    assert_cannot_commit_or_read(&cluster, follower).await;
    // Once it has started its own (hopeless) elections, still nothing.
    let term = cluster.status(follower).term;
    eventually("the isolated follower to campaign", SETTLE, || {
        let s = cluster.status(follower);
        (s.term > term && !s.is_leader).then_some(())
    })
    .await;
    assert_cannot_commit_or_read(&cluster, follower).await;

    // The majority, meanwhile, is unaffected.
    let command = cluster.commit_somewhere(&rest).await.0;
    let leader = cluster.wait_leader(&rest).await;
    assert!(has(&cluster.read(leader).await, &command));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_elects_a_new_leader_and_keeps_committing() {
    let IsolatedLeader {
        cluster,
        old,
        old_term,
        first,
        majority,
    } = isolate_the_leader().await;

    let new = cluster
        .wait_leader_where(&majority, |s| s.node_id != old && s.term > old_term)
        .await;
    assert_ne!(new, old);
    assert!(cluster.status(new).term > old_term);

    // Through either majority member: the leader itself, and a follower that forwards.
    let mut committed = vec![first];
    for via in &majority {
        committed.push(cluster.commit(*via).await);
        committed.push(cluster.commit(*via).await);
    }
    for via in &majority {
        let view = cluster.read(*via).await;
        for command in &committed {
            assert!(
                has(&view, command),
                "linearizable read via {via} misses {command:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healing_converges_on_the_majority_state() {
    let IsolatedLeader {
        cluster,
        old,
        majority,
        ..
    } = isolate_the_leader().await;

    // The isolated leader appends this to its own log, but it never commits.
    let ghost = assert_cannot_commit_or_read(&cluster, old).await;

    let new = cluster
        .wait_leader_where(&majority, |s| s.node_id != old)
        .await;
    for _ in 0..3 {
        cluster.commit(new).await;
    }

    cluster.router.heal();

    // The old leader steps down, learns the new leader and applies what the
    // majority committed, with its own uncommitted entry discarded.
    let expected = cluster.read(new).await;
    eventually(
        "the old leader to apply the majority's state",
        SETTLE,
        || (*cluster.get(old).local().state == *expected.state).then_some(()),
    )
    .await;
    assert!(!has(&cluster.get(old).local(), &ghost));
    let all = cluster.ids();
    let leader = cluster.wait_leader(&all).await;

    // A proposal through the old leader is forwarded and commits.
    let after = cluster.commit(old).await;
    for id in &all {
        assert!(has(&cluster.read(*id).await, &after), "read via {id}");
        assert!(!has(&cluster.read(*id).await, &ghost), "read via {id}");
    }
    cluster.wait_converged(leader, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_cut_from_the_leader_still_commits() {
    let cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let deaf = cluster.others(leader)[0];
    let healthy: Vec<NodeId> = cluster.ids().into_iter().filter(|id| *id != deaf).collect();

    // The leader can no longer send to `deaf`; `deaf` can still send to everyone.
    cluster.router.cut_one_way(leader, deaf);

    assert_commits_across_a_cut(&cluster, &healthy).await;

    // Once the cut heals everyone converges.
    let leader = cluster.heal().await;
    cluster.commit(deaf).await;
    cluster.wait_converged(leader, &cluster.ids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_cut_to_the_leader_still_commits() {
    let cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let mute = cluster.others(leader)[0];

    // `mute` receives everything but its replies to the leader are lost.
    cluster.router.cut_one_way(mute, leader);

    assert_commits_across_a_cut(&cluster, &cluster.ids()).await;
    let leader = cluster.heal().await;
    cluster.wait_converged(leader, &cluster.ids()).await;
}
