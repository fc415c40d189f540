//! `retry_timeout_ms` of the replicated config bounds each Raft operation on
//! every member, without a restart: a DBA who sets it through the API gets
//! the bound they set, not the one in each member's file.

mod common;

use common::*;
use raftgres_consensus::ConsensusError;
use raftgres_state::Command;
use std::time::Duration;

/// Differs from the harness's file value (`OPERATION_TIMEOUT`), so a member
/// that kept the file's bound fails the assertion.
const CONFIGURED: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_timeout_set_through_the_config_bounds_the_next_operation() {
    assert_ne!(CONFIGURED, OPERATION_TIMEOUT);
    let cluster = Cluster::launch(3).await;
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let values = raftgres_state::ConfigValues {
        retry_timeout_ms: u64::try_from(CONFIGURED.as_millis()).expect("small"),
        ..config_values()
    };
    // As PATCH /config does: replace the bootstrapped config, whose bound is
    // the file's.
    let view = cluster.read(leader).await;
    let version = view
        .state
        .config
        .as_ref()
        .expect("the harness bootstraps a config")
        .version;
    let response = bounded(
        "set the config",
        SETTLE,
        cluster.get(leader).propose(Command::SetConfig {
            expected_version: version,
            values,
        }),
    )
    .await
    .expect("the config commits");
    assert!(
        matches!(response, Ok(raftgres_state::Applied::Config { .. })),
        "the config applies: {response:?}"
    );
    cluster.wait_converged(leader, &[1, 2, 3]).await;

    // Cut the leader off: its next proposal can only run out of time, and
    // the time it runs out of must be the config's.
    let majority = cluster.others(leader);
    cluster.router.partition(&[&[leader], &majority]);
    let refused = bounded(
        "propose on the isolated leader",
        SETTLE,
        cluster.get(leader).propose(cluster.next_command()),
    )
    .await;
    match refused {
        Err(ConsensusError::Timeout { after, .. }) => assert_eq!(
            after, CONFIGURED,
            "the isolated leader waited its file's bound, not the config's"
        ),
        other => panic!("expected a timeout on the isolated leader, got {other:?}"),
    }
}
