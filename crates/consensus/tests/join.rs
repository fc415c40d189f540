//! A member with an empty store joins the running group instead of forming
//! its own, and pristine members starting together form exactly one group.

mod common;

use common::*;
use raftgres_consensus::formation::NewGroup;
use raftgres_consensus::transport::memory::address;
use raftgres_consensus::types::NodeId;
use raftgres_consensus::{Consensus, Formation};
use std::collections::BTreeMap;
use std::time::Duration;

const RETRY: Duration = Duration::from_millis(100);

fn voters(ids: &[NodeId]) -> BTreeMap<NodeId, String> {
    ids.iter().map(|id| (*id, address(*id))).collect()
}

async fn form_or_join(member: &Consensus, ids: &[NodeId]) -> Formation {
    bounded(
        "form_or_join",
        SETTLE * 2,
        member.form_or_join(&voters(ids), RETRY, &NewGroup::Allowed),
    )
    .await
    .expect("form_or_join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_joins_the_running_group_as_a_voter() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let before = cluster.commit(leader).await;

    let newcomer = cluster.start_member(4).await;
    match form_or_join(&newcomer, &[1, 2, 3, 4]).await {
        Formation::Joined(view) => assert_eq!(view.voters, vec![1, 2, 3, 4]),
        other => panic!("expected to join, got {other:?}"),
    }
    cluster
        .wait_membership(&[1, 2, 3, 4], &[1, 2, 3, 4], &[])
        .await;
    // It has the group's history and takes part in commits.
    cluster.wait_converged(leader, &[4]).await;
    assert!(has(&cluster.read(4).await, &before));
    let after = cluster.commit(4).await;
    cluster.wait_converged(leader, &[1, 2, 3, 4]).await;
    assert!(has(&cluster.read(1).await, &after));

    // Started again, it reopens its store and asks nobody.
    assert_eq!(
        form_or_join(&newcomer, &[1, 2, 3, 4]).await,
        Formation::Restarted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pristine_members_starting_together_form_one_group() {
    let mut cluster = Cluster::new(NO_SNAPSHOTS);
    let ids = [1, 2, 3];
    for id in ids {
        cluster.start_member(id).await;
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let member = cluster.get(*id).clone();
            tokio::spawn(async move { form_or_join(&member, &ids).await })
        })
        .collect();
    for task in tasks {
        let formation = task.await.expect("form_or_join task");
        assert!(
            matches!(formation, Formation::Formed | Formation::Joined(_)),
            "{formation:?}"
        );
    }
    let leader = cluster.wait_leader(&ids).await;
    cluster.wait_membership(&ids, &ids, &[]).await;
    for via in ids {
        cluster.commit(via).await;
    }
    cluster.wait_converged(leader, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_peers_are_all_down_forms_the_group() {
    let mut cluster = Cluster::new(NO_SNAPSHOTS);
    let first = cluster.start_member(1).await;
    assert_eq!(form_or_join(&first, &[1, 2, 3]).await, Formation::Formed);
    // The others start later and are taken in by the group it formed.
    for id in [2, 3] {
        let member = cluster.start_member(id).await;
        assert!(matches!(
            form_or_join(&member, &[1, 2, 3]).await,
            Formation::Joined(_)
        ));
    }
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    cluster.wait_membership(&[1, 2, 3], &[1, 2, 3], &[]).await;
    cluster.commit(leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_without_a_leader_makes_a_new_member_wait_never_form() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    // The leader and one follower go down: the survivor knows no leader.
    let down = vec![leader, cluster.others(leader)[0]];
    for id in &down {
        cluster.crash(*id).await;
    }
    let newcomer = cluster.start_member(4).await;
    // The survivor is in a group but cannot add anyone: the newcomer keeps
    // asking and never forms a group of its own.
    let waited = tokio::time::timeout(
        Duration::from_secs(3),
        newcomer.form_or_join(&voters(&[1, 2, 3, 4]), RETRY, &NewGroup::Allowed),
    )
    .await;
    assert!(waited.is_err(), "{waited:?}");
    assert!(!newcomer.is_initialized().await.expect("is_initialized"));

    for id in &down {
        cluster.start_member(*id).await;
    }
    assert!(matches!(
        form_or_join(&newcomer, &[1, 2, 3, 4]).await,
        Formation::Joined(_)
    ));
    cluster
        .wait_membership(&[1, 2, 3, 4], &[1, 2, 3, 4], &[])
        .await;
}
