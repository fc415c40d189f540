//! Messages no honest member sends, delivered as every transport delivers
//! a peer's message (`Consensus::receive_*`): a vote or an append with a
//! term near the end of the term space, and a snapshot chunk far past any
//! real snapshot. Each is refused, and the group goes on electing leaders
//! and committing; before the bounds, the forged term was taken and the
//! next election overflowed it and panicked every Raft core for good.

mod common;

use common::*;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership, Vote};
use raftgres_consensus::ConsensusError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_terms_and_snapshot_offsets_are_refused_and_elections_go_on() {
    let mut cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let huge = u64::MAX - 1;
    for target in cluster.others(leader) {
        let member = cluster.get(target);
        let vote = member
            .receive_vote(VoteRequest {
                vote: Vote::new(huge, leader),
                last_log_id: Some(LogId::new(CommittedLeaderId::new(huge, leader), 1)),
            })
            .await;
        assert!(
            matches!(vote, Err(ConsensusError::BadMessage(ref m)) if m.contains("term")),
            "{vote:?}"
        );
        let append = member
            .receive_append(AppendEntriesRequest {
                vote: Vote::new_committed(huge, leader),
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            })
            .await;
        assert!(
            matches!(append, Err(ConsensusError::BadMessage(_))),
            "{append:?}"
        );
        let status = cluster.status(target);
        let snapshot = member
            .receive_snapshot(InstallSnapshotRequest {
                vote: Vote::new_committed(status.term, leader),
                meta: SnapshotMeta {
                    last_log_id: None,
                    last_membership: StoredMembership::default(),
                    snapshot_id: "forged".into(),
                },
                offset: u64::MAX - 10,
                data: vec![0; 16],
                done: false,
            })
            .await;
        assert!(
            matches!(snapshot, Err(ConsensusError::BadMessage(ref m)) if m.contains("offset")),
            "{snapshot:?}"
        );
    }

    // Two elections after it, each with a term beyond the last.
    cluster.crash(leader).await;
    let rest = cluster.others(leader);
    let new = cluster.wait_leader(&rest).await;
    cluster.commit(new).await;
    cluster.start_member(leader).await;
    cluster.wait_converged(new, &[1, 2, 3]).await;
    cluster.crash(new).await;
    let last: Vec<_> = [1, 2, 3].into_iter().filter(|id| *id != new).collect();
    let newest = cluster.wait_leader(&last).await;
    cluster.commit(newest).await;
    for id in &last {
        let status = cluster.status(*id);
        assert!(
            status.term < 100,
            "member {id} took a forged term: {status:?}"
        );
    }
}
