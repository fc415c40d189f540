//! What a member reports of its Raft group for `/metrics` and `/patroni`:
//! the commit and applied indexes move with proposals, each proposal's
//! latency counts on the member that proposed it, and the age of the last
//! contact that proved the member's log current stays small in touch and
//! grows once the member is cut off, leader or follower.

mod common;

use common::*;
use raftgres_consensus::types::NodeId;
use raftgres_consensus::{Latencies, PROPOSAL_BUCKETS_S};
use std::time::Duration;

/// In touch, a member hears from a quorum or its leader every heartbeat
/// (50 ms here); a few of them is slack for a loaded machine.
const IN_TOUCH: Duration = Duration::from_millis(400);

/// How long a member is cut off: several election timeouts.
const CUT_OFF_FOR: Duration = Duration::from_millis(1500);

/// What its last contact's age must reach by then: a message already on
/// its way when the cut came may still have landed.
const STALE: Duration = Duration::from_secs(1);

fn counted(latencies: &Latencies) -> u64 {
    latencies.buckets.iter().map(|(_, n)| n).sum()
}

/// Waits until member `id`'s last contact is younger than `IN_TOUCH`.
async fn wait_in_touch(cluster: &Cluster, id: NodeId, what: &str) {
    eventually(what, SETTLE, || {
        cluster.status(id).contact_age.filter(|age| *age < IN_TOUCH)
    })
    .await;
}

/// Cuts `id` off from the others for `CUT_OFF_FOR`, then requires its last
/// contact to be at least `STALE` old; returns the others.
async fn cut_off_until_stale(cluster: &Cluster, id: NodeId, who: &str) -> Vec<NodeId> {
    let rest = cluster.isolate(id);
    tokio::time::sleep(CUT_OFF_FOR).await;
    let age = cluster.status(id).contact_age;
    assert!(
        age.is_some_and(|age| age >= STALE),
        "{who} still looks current: {age:?}"
    );
    rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_move_the_indexes_and_count_where_they_were_made() {
    let cluster = Cluster::launch(3).await;
    let ids = cluster.ids();
    let leader = cluster.wait_leader(&ids).await;
    let others = cluster.others(leader);
    let (follower, bystander) = (others[0], others[1]);
    let before: Vec<_> = ids.iter().map(|id| cluster.status(*id)).collect();
    let latencies = |id: NodeId| cluster.get(id).proposal_latencies();
    let (leader_before, follower_before, bystander_before) =
        (latencies(leader), latencies(follower), latencies(bystander));

    for _ in 0..5 {
        cluster.commit(leader).await;
    }
    // Forwarded to the leader: they count on the follower that made them.
    for _ in 0..3 {
        cluster.commit(follower).await;
    }

    let (leader_after, follower_after) = (latencies(leader), latencies(follower));
    assert_eq!(
        leader_after.count,
        leader_before.count + 5,
        "{leader_after:?}"
    );
    assert_eq!(
        follower_after.count,
        follower_before.count + 3,
        "{follower_after:?}"
    );
    assert_eq!(
        latencies(bystander),
        bystander_before,
        "it proposed nothing"
    );
    for seen in [&leader_after, &follower_after] {
        assert!(seen.sum > Duration::ZERO, "{seen:?}");
        assert_eq!(counted(seen), seen.count, "{seen:?}");
        let bounds: Vec<f64> = seen.buckets.iter().map(|(b, _)| *b).collect();
        let want: Vec<f64> = PROPOSAL_BUCKETS_S
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .collect();
        assert_eq!(bounds, want);
    }

    // Eight sequential proposals are at least eight entries; every member
    // learns of their commit and applies them.
    for (id, was) in ids.iter().zip(&before) {
        let now = eventually(
            &format!("member {id} to apply the proposals"),
            SETTLE,
            || {
                let s = cluster.status(*id);
                (s.committed >= was.committed + 8 && s.last_applied == s.committed).then_some(s)
            },
        )
        .await;
        assert!(now.last_applied >= was.last_applied + 8, "{now:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_from_its_leader_stops_being_current() {
    let cluster = Cluster::launch(3).await;
    let ids = cluster.ids();
    let leader = cluster.wait_leader(&ids).await;
    let follower = cluster.others(leader)[0];
    for id in &ids {
        wait_in_touch(&cluster, *id, &format!("member {id} to be in touch")).await;
    }

    let rest = cut_off_until_stale(&cluster, follower, "the cut-off follower").await;
    // The leader keeps a quorum with the third member.
    let leader = cluster.wait_leader(&rest).await;
    let age = cluster.status(leader).contact_age;
    assert!(
        age.is_some_and(|age| age < IN_TOUCH),
        "the leader with a quorum looks cut off: {age:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_quorum_stops_being_current() {
    let cluster = Cluster::launch(3).await;
    let ids = cluster.ids();
    let old = cluster.wait_leader(&ids).await;
    wait_in_touch(&cluster, old, "the leader to be acknowledged").await;

    // openraft 0.9 keeps an isolated leader leading: only the missing
    // acknowledgements tell.
    let majority = cut_off_until_stale(&cluster, old, "the isolated leader").await;
    let new = cluster
        .wait_leader_where(&majority, |s| s.node_id != old)
        .await;
    wait_in_touch(&cluster, new, "the new leader to be acknowledged").await;
}
