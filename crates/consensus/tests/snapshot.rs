//! Snapshots keep the log bounded, and a member that joins after the log was
//! purged receives the state through a snapshot.

mod common;

use common::*;

const EVERY: u64 = 20;
const COMMANDS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_stays_bounded_and_a_late_learner_gets_the_state_by_snapshot() {
    let mut cluster = Cluster::launch_with(3, EVERY).await;
    let ids = cluster.ids();

    let mut committed = Vec::new();
    for i in 0..COMMANDS {
        // Spread the proposals over all members (followers forward).
        committed.push(cluster.commit(ids[(i % 3) as usize]).await);
    }
    let leader = cluster.wait_leader(&ids).await;
    cluster.wait_converged(leader, &ids).await;

    // Every member snapshotted and purged; what remains of the log is short.
    // (A snapshot every EVERY entries, keeping EVERY / 2 behind it.)
    let bound = 2 * EVERY + EVERY / 2;
    eventually("every member to snapshot and purge its log", SETTLE, || {
        ids.iter()
            .all(|id| {
                let s = cluster.status(*id);
                match (s.snapshot_index, s.purged_index) {
                    (Some(snap), Some(purged)) => {
                        snap > COMMANDS / 2 && purged > 0 && s.last_log - purged <= bound
                    }
                    _ => false,
                }
            })
            .then_some(())
    })
    .await;
    let at_join = cluster.status(leader);
    let purged = at_join.purged_index.expect("purged");
    assert!(
        purged >= EVERY,
        "the log's head is gone, so a new member cannot replay it: {at_join:?}"
    );

    // A new member joins as a learner: the entries it would need are purged,
    // so it can only catch up by installing a snapshot.
    let newcomer = cluster.start_member(4).await;
    let incarnation = newcomer.incarnation();
    cluster
        .add_member(leader, 4, incarnation, false)
        .await
        .expect("adding a learner");
    cluster.wait_converged(leader, &[4]).await;
    let view = newcomer.local();
    assert_eq!(*view.state, *cluster.read(leader).await.state);
    for command in &committed {
        assert!(has(&view, command), "learner misses {command:?}");
    }
    let s = newcomer.status();
    eprintln!("leader at join: {at_join:?}\nlearner: {s:?}");
    let installed = s.snapshot_index.expect("the learner holds a snapshot");
    assert!(
        installed >= purged,
        "the learner's snapshot ({installed}) covers what the leader purged ({purged}): {s:?}"
    );
    assert_eq!(s.membership.learners, vec![4]);

    // And it keeps following the log after the snapshot.
    let after = cluster.commit(4).await;
    eventually("the learner to apply a later entry", SETTLE, || {
        has(&newcomer.local(), &after).then_some(())
    })
    .await;
}
