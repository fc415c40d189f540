//! Three real agents on loopback: Raft leader loss and restart from disk, and
//! a Raft leader lost while it is a replica, which must not move the primary.

use nix::sys::signal::Signal;
use raftgres_tests::http::Api;
use raftgres_tests::steady::{SteadyPrimary, raft_leader_on_a_replica};
use raftgres_tests::{
    PrimaryMonitor, eventually, member_with_id, monitored_lab, serial_lab, status,
};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_raft_leader_elects_another_and_commits_go_on() {
    let (_dir, mut lab, _, monitor) = monitored_lab(3, false).await;
    let names = lab.names();
    let first = status(&lab, &names[0]).await.expect("status");
    let leader_id = eventually(Duration::from_secs(10), "a Raft leader", || async {
        status(&lab, &names[0])
            .await
            .ok()
            .filter(|s| s.raft_leader != 0)
            .map(|s| s.raft_leader)
    })
    .await;
    let leader = member_with_id(&lab, leader_id).expect("leader member");
    let survivors: Vec<String> = names.iter().filter(|n| **n != leader).cloned().collect();
    let applied_before = status(&lab, &leader)
        .await
        .expect("leader status")
        .applied_index;
    lab.kill(&leader).expect("SIGKILL the Raft leader");

    let new_leader = eventually(
        Duration::from_secs(20),
        "a new Raft leader among the survivors",
        || async {
            let s = status(&lab, &survivors[0]).await.ok()?;
            (s.raft_leader != 0 && s.raft_leader != leader_id && s.raft_term > first.raft_term)
                .then_some(s.raft_leader)
        },
    )
    .await;
    // Lease renewals are commits: the applied index must keep growing on both survivors.
    for name in &survivors {
        let start = status(&lab, name)
            .await
            .expect("survivor status")
            .applied_index;
        eventually(Duration::from_secs(10), "commits continue", || async {
            let s = status(&lab, name).await.ok()?;
            (s.applied_index > start + 2 && s.raft_leader == new_leader).then_some(())
        })
        .await;
    }

    // The killed member restarts from its data directory: it applies its
    // own log again from its snapshot up to the commit index it saved. That
    // index is made durable by the next log append, so a SIGKILL may lose
    // the commit marks of the last entries (group commit keeps one entry in
    // flight; a few allow for an entry that outlasted its answer bound),
    // which the new leader's commit index restores (checked below).
    lab.start(&leader).expect("restart");
    let first_seen = eventually(
        Duration::from_secs(10),
        "the restarted member answers",
        || async { status(&lab, &leader).await.ok() },
    )
    .await;
    assert!(
        first_seen.applied_index + 5 >= applied_before,
        "restarted member lost applied state: {} applied, {applied_before} before the kill",
        first_seen.applied_index
    );
    eventually(
        Duration::from_secs(15),
        "the restarted member catches up",
        || async {
            let me = status(&lab, &leader).await.ok()?;
            let other = status(&lab, &survivors[0]).await.ok()?;
            (me.raft_leader == other.raft_leader
                && me.lease_holder_seen == other.lease_holder_seen
                && me.applied_index + 5 >= other.applied_index
                && me.applied_index > applied_before)
                .then_some(())
        },
    )
    .await;
    monitor.assert_never_two().await;
}

/// With default timings, the primary must keep its lease while the Raft
/// group elects a new leader: losing a replica that happens to lead Raft
/// (a crash, or a restart during a rolling upgrade) is not a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_raft_leader_while_it_is_a_replica_is_no_failover() {
    let (dir, mut lab, _) = serial_lab(3, false).await;
    let api = Api::for_lab(&dir.path().join("lab.json"));
    let monitor = PrimaryMonitor::start(&lab);
    let names = lab.names();
    for signal in [Signal::SIGKILL, Signal::SIGTERM] {
        let (primary, leader) = raft_leader_on_a_replica(&lab, &api).await;
        let steady = SteadyPrimary::start(&lab, &api, &primary).await;
        lab.signal(&leader, signal).expect("signal the Raft leader");
        lab.wait_exit(&leader, Duration::from_secs(30))
            .expect("the Raft leader's agent exits");
        let live: Vec<String> = names.iter().filter(|n| **n != leader).cloned().collect();
        steady
            .assert_unmoved(&lab, &api, &live, signal.as_ref())
            .await;
        lab.start(&leader).expect("restart the old Raft leader");
    }
    monitor.assert_never_two().await;
}
