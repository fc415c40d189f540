//! A slow disk on the Raft leader: its log flushes stall, and the group must
//! wait for them rather than elect another leader, unless the stall outlasts
//! what the leader may hide (then a dead disk still costs it the leadership).

mod common;

use common::*;
use raftgres_consensus::types::NodeId;
use std::time::{Duration, Instant};

/// Followers that knew a leader campaign after a silence of the leader lease
/// (`ELECTION_MAX`) plus their own election timeout (drawn from
/// `ELECTION_MIN_HERE..ELECTION_MAX`), checked every 1.5 heartbeats: 900 to
/// 1075 ms here. A leader silenced for this one flush is replaced; one whose
/// flush is bridged for `ELECTION_MAX` leaves a silence of about 700 ms.
const SLOW_FLUSH: Duration = Duration::from_millis(1200);
/// Narrows the spread of election timeouts, so that both the test's failure
/// without the bridge and its success with it hold with a margin.
const ELECTION_MIN_HERE: Duration = Duration::from_millis(400);
/// Far longer than any stall a leader may hide: the disk counts as dead.
const DEAD_FLUSH: Duration = Duration::from_secs(4);
const COMMITS: usize = 6;

/// Proposes `COMMITS` fresh commands straight to `leader`'s Raft core (a
/// proposal through [`Consensus::propose`] gives up after one operation
/// timeout, shorter than `SLOW_FLUSH`), one after the other, and returns how
/// long each took to commit and apply.
async fn timed_commits(cluster: &Cluster, leader: NodeId) -> Vec<Duration> {
    let mut took = Vec::with_capacity(COMMITS);
    for _ in 0..COMMITS {
        let command = cluster.next_command();
        let start = Instant::now();
        let written = bounded(
            "a write on the slow leader",
            SETTLE,
            cluster.get(leader).raft().client_write(command),
        )
        .await;
        took.push(start.elapsed());
        let reply = written.unwrap_or_else(|e| {
            panic!("leader {leader} lost the leadership while its disk was slow: {e}")
        });
        assert!(reply.data.is_ok(), "{:?}", reply.data);
    }
    took.sort();
    took
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_on_the_leader_delays_commits_but_keeps_the_leader() {
    let cluster = Cluster::launch_with_election_min(3, ELECTION_MIN_HERE).await;
    let all = cluster.ids();
    let leader = cluster.wait_leader(&all).await;
    let term = cluster.status(leader).term;

    let fast = timed_commits(&cluster, leader).await;
    cluster.logs[&leader].delay_flushes(SLOW_FLUSH);
    let slow = timed_commits(&cluster, leader).await;
    cluster.logs[&leader].delay_flushes(Duration::ZERO);

    let statuses: Vec<_> = all.iter().map(|id| cluster.status(*id)).collect();
    eprintln!(
        "commit latency ms (min/median/max): disk as is {}/{}/{}, flush delayed {SLOW_FLUSH:?}: {}/{}/{}; terms after: {:?} (was {term})",
        ms(fast[0]),
        ms(fast[COMMITS / 2]),
        ms(fast[COMMITS - 1]),
        ms(slow[0]),
        ms(slow[COMMITS / 2]),
        ms(slow[COMMITS - 1]),
        statuses.iter().map(|s| s.term).collect::<Vec<_>>(),
    );
    // Terms never go back, so any election during the stalls shows here.
    for status in &statuses {
        assert_eq!(
            (status.term, status.leader),
            (term, Some(leader)),
            "member {} saw an election while the leader's disk was slow",
            status.node_id
        );
    }
    assert!(
        slow[0] >= SLOW_FLUSH,
        "the injected flush delay took effect: {slow:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_stays_stalled_loses_the_leadership() {
    let cluster = Cluster::launch_with_election_min(3, ELECTION_MIN_HERE).await;
    let all = cluster.ids();
    let leader = cluster.wait_leader(&all).await;
    let term = cluster.status(leader).term;

    cluster.logs[&leader].delay_flushes(DEAD_FLUSH);
    let stall_began = Instant::now();
    let stalled = {
        let member = cluster.get(leader).clone();
        let command = cluster.next_command();
        // Its answer does not matter: it only starts the stalled flush.
        tokio::spawn(async move { member.propose(command).await })
    };
    let others = cluster.others(leader);
    let successor = cluster
        .wait_leader_where(&others, |s| s.term > term && s.node_id != leader)
        .await;
    eprintln!(
        "flush stalled for good on leader {leader}: member {successor} led after {} ms",
        ms(stall_began.elapsed())
    );
    cluster.logs[&leader].delay_flushes(Duration::ZERO);
    let _ = stalled.await;

    // The group goes on without the stalled disk, and the old leader follows.
    cluster.commit_somewhere(&others).await;
    let leader_now = cluster.wait_leader(&all).await;
    assert_ne!(leader_now, leader, "{successor} or another follower leads");
    cluster.wait_converged(leader_now, &all).await;
}
