//! A slow disk on the Raft leader: its log flushes stall, and the group must
//! wait for them rather than elect another leader, unless the stall outlasts
//! what the leader may hide (then a dead disk still costs it the leadership).

mod common;

use common::*;
use raftgres_consensus::types::{NodeId, Proposal};
use std::time::{Duration, Instant};

/// Slow elections with little spread, so that a flush stall that always
/// costs an unbridged leader its leadership is always bridged, with a margin
/// of more than 150 ms on either side for a loaded machine.
const TIMING: Timing = Timing {
    heartbeat: Duration::from_millis(40),
    election_min: Duration::from_millis(950),
    election_max: Duration::from_millis(1000),
};
/// Followers that knew a leader campaign after a silence of the leader lease
/// (`election_max`) plus their own election timeout (at least
/// `election_min`), checked every 1.5 heartbeats: 1950 to 2060 ms here.
/// Unbridged, this flush always silences the leader longer than that.
/// Bridged for half an `election_max` (the last bridge heartbeat leaves
/// 460 to 500 ms into the stall), it leaves at most 1770 ms of silence.
const SLOW_FLUSH: Duration = Duration::from_millis(2230);
/// Far longer than the bridge plus an election: the disk counts as dead.
const DEAD_FLUSH: Duration = Duration::from_secs(6);
const COMMITS: usize = 4;

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
            cluster
                .get(leader)
                .raft()
                .client_write(Proposal::Batch(vec![command])),
        )
        .await;
        took.push(start.elapsed());
        let reply = written.unwrap_or_else(|e| {
            panic!("leader {leader} lost the leadership while its disk was slow: {e}")
        });
        assert!(matches!(reply.data.as_slice(), [Ok(_)]), "{:?}", reply.data);
    }
    took.sort();
    took
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Three members on `TIMING`, once all agree on a leader: the group, the
/// leader and its term.
async fn launch() -> (Cluster, NodeId, u64) {
    let cluster = Cluster::launch_timed(3, TIMING).await;
    let leader = cluster.wait_leader(&cluster.ids()).await;
    let term = cluster.status(leader).term;
    (cluster, leader, term)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_on_the_leader_delays_commits_but_keeps_the_leader() {
    let (cluster, leader, term) = launch().await;
    let all = cluster.ids();

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
    let (cluster, leader, term) = launch().await;
    let all = cluster.ids();

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

/// openraft 0.9 appends and fsyncs each client write on its own: commands
/// proposed while the leader's append waits for its slow fsync must share
/// the next entry, or a slow disk caps the group at one command per fsync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_proposed_during_a_slow_flush_share_one_entry() {
    const PROPOSED: usize = 6;
    let cluster = Cluster::launch_timed(3, TIMING).await;
    let all = cluster.ids();
    let leader = cluster.wait_leader(&all).await;
    cluster.commit(leader).await;
    let log_before = cluster.status(leader).last_log;

    // Short enough that two flushes fit well inside one operation timeout.
    cluster.logs[&leader].delay_flushes(Duration::from_millis(200));
    let proposals: Vec<_> = (0..PROPOSED)
        .map(|_| {
            let member = cluster.get(leader).clone();
            let command = cluster.next_command();
            tokio::spawn(async move { (member.propose(command.clone()).await, command) })
        })
        .collect();
    let mut committed = Vec::new();
    for proposal in proposals {
        let (answer, command) = proposal.await.expect("proposal task");
        let response = answer.expect("committed while the disk was slow");
        assert!(response.is_ok(), "{response:?}");
        committed.push(command);
    }
    cluster.logs[&leader].delay_flushes(Duration::ZERO);

    let entries = cluster.status(leader).last_log - log_before;
    eprintln!("{PROPOSED} commands proposed during slow flushes took {entries} log entries");
    // The first may start an append alone; the rest arrive while it flushes.
    assert!(
        entries <= 2,
        "{PROPOSED} commands took {entries} entries: each was appended on its own"
    );
    let view = cluster.get(leader).read().await.expect("read");
    for command in &committed {
        assert!(has(&view, command), "{command:?} applied");
    }
}
