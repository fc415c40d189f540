//! Faults that used to leave the old primary taking writes after another
//! member could promote (issue 12's holes), each against real processes:
//! the old primary's clients hold connections opened before the fault, and
//! the checker in `tests/src/faults.rs` judges what they were told.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres_tests::faults::{Writer, assert_no_write_after_takeover, first_write_on};
use raftgres_tests::{
    connect, dsn, eventually, execute_on, monitored_lab, new_primary, postmaster_pid, status,
    writable,
};
use std::time::Duration;

const FAILOVER_WITHIN: Duration = Duration::from_secs(30);

const TABLE: &str = "CREATE TABLE fault_writes (id bigint PRIMARY KEY, member text)";

/// Hole 2: the agent SIGKILLed while a backend runs a CPU-bound statement
/// that writes at its end. The postmaster dying is not enough: the backend
/// notices nothing, so the keeper must kill it before the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_running_across_an_agent_kill_never_commits() {
    let (_dir, mut lab, old, monitor) = monitored_lab(3, false).await;
    execute_on(&lab, &old, TABLE).await;
    let client = connect(&lab, &old).await;
    let long = tokio::spawn(async move {
        client
            .batch_execute(
                "DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN \
                 WHILE clock_timestamp() < t0 + interval '12 seconds' LOOP END LOOP; \
                 INSERT INTO fault_writes VALUES (42, 'long'); END $$",
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    lab.kill(&old).expect("SIGKILL the primary's agent");
    let new = new_primary(&lab, &old, FAILOVER_WITHIN).await;
    let outcome = long.await.expect("statement task");
    assert!(
        outcome.is_err(),
        "the statement that ran across the agent's death committed on {old} after {new} was promoted"
    );
    monitor.assert_never_two().await;
}

/// Hole 1: only the postmaster is stopped (SIGSTOP): status probes fail, but
/// backends on connections opened earlier keep committing. The holder must
/// kill every process of its server before anything else: it then restarts
/// in place or gives the lease up, and in neither case may the old backend
/// acknowledge another write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswering_postmaster_is_fenced_before_the_lease_moves() {
    let (_dir, lab, old, monitor) = monitored_lab(3, false).await;
    execute_on(&lab, &old, TABLE).await;
    let writer = Writer::start(&old, &dsn(&lab, &old), 1, Duration::from_millis(50)).await;
    let postmaster = postmaster_pid(&lab, &old).expect("postmaster.pid");
    kill(Pid::from_raw(postmaster), Signal::SIGSTOP).expect("SIGSTOP the postmaster");
    eventually(
        FAILOVER_WITHIN,
        "the backend of the unanswering server is killed",
        || async { writer.ended().then_some(()) },
    )
    .await;
    let (acks, ended) = writer.finish().await;
    let _ = kill(Pid::from_raw(postmaster), Signal::SIGCONT);
    assert!(!acks.is_empty(), "the writer never wrote before the fault");
    assert!(ended.is_some(), "the writer stopped without an error");
    let primary = eventually(FAILOVER_WITHIN, "one writable primary again", || async {
        match writable(&lab).await.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    })
    .await;
    let first = first_write_on(&dsn(&lab, &primary), &primary, 1_000_000, FAILOVER_WITHIN).await;
    if primary != old {
        assert_no_write_after_takeover(&acks, &first);
    }
    monitor.assert_never_two().await;
}

/// Restarting the primary's agent (as `systemctl restart` or an upgrade
/// does) restarts neither Postgres nor the primary: the new agent attaches
/// to the keeper and renews the lease at the same epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_primarys_agent_keeps_postgres_and_the_lease() {
    let (_dir, mut lab, primary, monitor) = monitored_lab(3, false).await;
    execute_on(&lab, &primary, TABLE).await;
    let postmaster = postmaster_pid(&lab, &primary).expect("postmaster.pid");
    let epoch = status(&lab, &primary).await.expect("status").lease_epoch;
    let writer = Writer::start(&primary, &dsn(&lab, &primary), 1, Duration::from_millis(50)).await;
    for round in 0..3 {
        lab.restart_agent(&primary, Duration::from_secs(15))
            .expect("restart the agent");
        eventually(
            Duration::from_secs(15),
            "the restarted agent holds the lease again",
            || async { status(&lab, &primary).await.ok().filter(|s| s.holds_lease) },
        )
        .await;
        let now = status(&lab, &primary).await.expect("status");
        assert_eq!(
            now.lease_epoch, epoch,
            "round {round}: the lease changed hands"
        );
        assert_eq!(
            postmaster_pid(&lab, &primary).expect("postmaster.pid"),
            postmaster,
            "round {round}: Postgres was restarted"
        );
    }
    let restarted = std::time::Instant::now();
    eventually(
        Duration::from_secs(10),
        "a write on the pre-opened connection after the last restart",
        || async { writer.acks().iter().any(|a| a.at > restarted).then_some(()) },
    )
    .await;
    let (_, ended) = writer.finish().await;
    assert_eq!(
        ended, None,
        "a write on the primary failed across the restarts"
    );
    assert_eq!(writable(&lab).await, vec![primary.clone()]);
    monitor.assert_never_two().await;
}
