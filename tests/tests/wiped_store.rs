//! A member whose Raft store is wiped (a replaced disk, a rebuilt host) has
//! lost its vote and its log. Restarted under its old node id it must be
//! refused with an error that says how to re-add it, never take its old
//! place as a voter, and never form a group of its own on its old data;
//! once removed, it comes back as a new member.

use raftgres_tests::{
    any_replica, eventually, file_tail, monitored_lab, readd_refused_member, serial_lab, status,
    streaming, wait_place_recorded, wipe_raft_store_and_restart, writable,
};
use std::time::Duration;

/// Once the group records `name`'s place, wipes its Raft store.
async fn wipe_and_restart(lab: &mut raftgres_lab::Lab, name: &str) {
    wait_place_recorded(lab, name).await;
    wipe_raft_store_and_restart(lab, name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_is_refused_and_the_primary_stays() {
    let (_dir, mut lab, primary, monitor) = monitored_lab(3, false).await;
    let wiped = any_replica(&lab, &primary);

    wipe_and_restart(&mut lab, &wiped).await;
    let log = lab.member(&wiped).expect("member").log.clone();
    let exit = lab.wait_exit(&wiped, Duration::from_secs(60));
    let Some(exit) = exit else {
        panic!(
            "the agent of {wiped} kept running on an empty Raft store under its old node id\n{}",
            file_tail(&log)
        );
    };
    assert!(!exit.success(), "{exit:?}\n{}", file_tail(&log));
    let text = std::fs::read_to_string(&log).expect("agent log");
    assert!(
        text.contains("raftgresctl remove") && text.contains(&wiped),
        "the error must name the member and say how to re-add it\n{}",
        file_tail(&log)
    );

    // The others never stopped: the same primary, still the lease holder.
    eventually(
        Duration::from_secs(10),
        "the primary still the only writable member",
        || async { (writable(&lab).await == [primary.clone()]).then_some(()) },
    )
    .await;
    let seen = status(&lab, &primary).await.expect("primary status");
    assert!(seen.holds_lease, "{seen:?}");
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_wiped_member_comes_back_as_a_new_member() {
    let (_dir, mut lab, primary, monitor) = monitored_lab(3, false).await;
    let wiped = any_replica(&lab, &primary);
    wipe_and_restart(&mut lab, &wiped).await;
    // What the refusal says to do: remove it, then start it again.
    readd_refused_member(&mut lab, &wiped, &primary).await;

    let log = lab.member(&wiped).expect("member").log.clone();
    let caught_up = eventually(
        Duration::from_secs(60),
        "the wiped member to rejoin and stream from the primary",
        || async {
            let me = status(&lab, &wiped).await.ok()?;
            let other = status(&lab, &primary).await.ok()?;
            (me.raft_leader != 0
                && me.raft_leader == other.raft_leader
                && me.lease_holder_seen == primary
                && streaming(&lab, &wiped).await)
                .then_some(me)
        },
    )
    .await;
    assert!(caught_up.applied_index > 0, "{caught_up:?}");
    assert!(
        lab.wait_exit(&wiped, Duration::ZERO).is_none(),
        "{}",
        file_tail(&log)
    );
    assert_eq!(writable(&lab).await, [primary]);
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_whose_peers_are_down_forms_no_new_group() {
    let (_dir, mut lab, primary) = serial_lab(3, false).await;
    let wiped = any_replica(&lab, &primary);
    for name in lab.names() {
        if name != wiped {
            lab.kill(&name).expect("SIGKILL a peer's agent");
        }
    }
    // Its peers cannot answer: a member that may form would form a new
    // group here, over the data of the cluster it belonged to.
    let log = lab.member(&wiped).expect("member").log.clone();
    // The log file spans every run of this member; only the restarted run
    // is judged (the first may well have formed the group at lab up).
    let before = std::fs::read_to_string(&log).expect("agent log").len();
    wipe_and_restart(&mut lab, &wiped).await;
    let Some(exit) = lab.wait_exit(&wiped, Duration::from_secs(60)) else {
        panic!(
            "the agent of {wiped} kept running on an empty Raft store beside old data\n{}",
            file_tail(&log)
        );
    };
    assert!(!exit.success(), "{exit:?}\n{}", file_tail(&log));
    let text = std::fs::read_to_string(&log).expect("agent log")[before..].to_owned();
    assert!(
        text.contains("may not form a new one") && text.contains("belongs to an existing cluster"),
        "the error must say why it may not form a group\n{}",
        file_tail(&log)
    );
    assert!(
        !text.contains("formed a new Raft group"),
        "{}",
        file_tail(&log)
    );
}
