//! A membership change interrupted by a leader crash is completed by the next
//! leader, not left in the joint configuration.
//!
//! openraft commits a voter change as two entries: the joint config, then the
//! uniform one. The router drops every AppendEntries carrying that uniform
//! entry, so the followers commit the joint config and never see the second
//! step. Then the leader dies.

mod common;

use common::*;
use openraft::EntryPayload;
use raftgres_consensus::transport::memory::address;
use raftgres_consensus::types::NodeId;
use std::collections::BTreeSet;

const NEWCOMER: NodeId = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joint_config_left_by_a_crashed_leader_is_completed() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let before = cluster.commit(leader).await;
    let followers = cluster.others(leader);

    // Member 4 runs but is not initialized: it joins only through the change.
    let incarnation = cluster.start_member(NEWCOMER).await.incarnation();

    cluster
        .router
        .drop_append_entries_when(Box::new(|_from, _to, request| {
            request.entries.iter().any(|entry| match &entry.payload {
                EntryPayload::Membership(m) => {
                    m.get_joint_config().len() == 1 && m.voter_ids().any(|id| id == NEWCOMER)
                }
                _ => false,
            })
        }));

    // The leader's change cannot finish: its second step is never replicated.
    let stuck = tokio::spawn({
        let leader = cluster.get(leader).clone();
        async move {
            leader
                .add_member(NEWCOMER, &address(NEWCOMER), incarnation, true)
                .await
        }
    });

    let mut watched = followers.clone();
    watched.push(NEWCOMER);
    eventually("the followers to enter the joint config", SETTLE, || {
        watched
            .iter()
            .all(|id| cluster.status(*id).joint)
            .then_some(())
    })
    .await;
    for id in &followers {
        let s = cluster.status(*id);
        assert!(s.joint, "member {id} left the joint config early: {s:?}");
    }

    cluster.crash(leader).await;
    cluster.router.clear_filters();
    // The change request died with its leader; it must not hang the caller.
    let outcome = bounded("the interrupted add_member", SETTLE * 2, stuck)
        .await
        .expect("add_member task panicked");
    // It normally fails (the leader stopped); it may only succeed if it was
    // forwarded to a new leader that finished the change.
    if let Ok(view) = &outcome {
        assert!(view.voters.contains(&NEWCOMER), "{view:?}");
    }

    let survivors = cluster.ids();
    let new = cluster
        .wait_leader_where(&survivors, |s| s.node_id != leader)
        .await;
    assert_ne!(new, leader);

    let voters: BTreeSet<NodeId> = [1, 2, 3, NEWCOMER].into();
    eventually(
        "every survivor to leave the joint config with 4 as a voter",
        SETTLE,
        || {
            survivors
                .iter()
                .all(|id| {
                    let s = cluster.status(*id);
                    !s.joint
                        && s.membership.voters.iter().copied().collect::<BTreeSet<_>>() == voters
                })
                .then_some(())
        },
    )
    .await;

    // The completed group (three of four voters up) keeps committing, and
    // member 4 holds the state.
    let after = cluster.commit_somewhere(&survivors).await.0;
    let leader = cluster.wait_leader(&survivors).await;
    let view = cluster.read(leader).await;
    assert!(has(&view, &before) && has(&view, &after));
    cluster.wait_converged(leader, &survivors).await;
    assert!(has(&cluster.get(NEWCOMER).local(), &after));
}
