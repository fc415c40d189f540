//! Real PostgreSQL under real agents: bootstrap, failover on every way the
//! primary's agent or postmaster can die, and rejoin. Every test polls all
//! members throughout and fails if two were ever writable at once.

use nix::sys::signal::Signal;
use raftgres_lab::Lab;
use raftgres_tests::{
    LabDir, PrimaryMonitor, data_file, dsn, eventually, execute, execute_on, freeze_agent,
    members_except, monitored_lab, never_claims_the_lease, new_primary, postmaster_pid, query_i64,
    streaming, thaw_agent, until_holds, until_streaming, writable,
};
use std::time::Duration;

const FAILOVER_WITHIN: Duration = Duration::from_secs(30);

async fn rows(dsn: &str) -> Option<i64> {
    query_i64(dsn, "SELECT count(*) FROM t").await.ok()
}

/// A monitored three-member lab whose primary has an empty table `t`.
async fn lab_with_table_t() -> (LabDir, Lab, String, PrimaryMonitor) {
    let (dir, lab, primary, monitor) = monitored_lab(3, false).await;
    execute_on(&lab, &primary, "CREATE TABLE t (id int)").await;
    (dir, lab, primary, monitor)
}

/// Waits until `old`'s Postgres refuses writes (within `fenced_within`),
/// then until another member is the primary; that member, once it took a
/// write.
async fn fenced_and_replaced(lab: &Lab, old: &str, fenced_within: Duration) -> String {
    let old_dsn = dsn(lab, old);
    let fenced = format!("{old}'s Postgres stops taking writes");
    until_holds(fenced_within, &fenced, || async {
        execute(&old_dsn, "INSERT INTO t VALUES (99)")
            .await
            .is_err()
    })
    .await;
    let new = new_primary(lab, old, FAILOVER_WITHIN).await;
    execute_on(lab, &new, "INSERT INTO t VALUES (2)").await;
    new
}

/// Waits until the old primary rejoins as a streaming replica.
async fn until_rejoined(lab: &Lab, old: &str) {
    let what = "the old primary rejoins as a streaming replica";
    until_streaming(lab, old, FAILOVER_WITHIN, what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_streams_to_replicas_and_survives_a_full_restart() {
    let (_dir, mut lab, primary, monitor) = monitored_lab(3, false).await;
    let names = lab.names();
    assert_eq!(writable(&lab).await, vec![primary.clone()]);
    execute_on(
        &lab,
        &primary,
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
    )
    .await;
    let system_id = query_i64(
        &dsn(&lab, &primary),
        "SELECT system_identifier FROM pg_control_system()",
    )
    .await
    .expect("system id");
    for name in names.iter().filter(|n| **n != primary) {
        assert!(streaming(&lab, name).await, "{name} is not streaming");
        until_holds(
            Duration::from_secs(10),
            "the row reaches the replica",
            || async { rows(&dsn(&lab, name)).await == Some(1) },
        )
        .await;
    }

    lab.stop_all(Duration::from_secs(30));
    for name in &names {
        lab.start(name).expect("restart");
    }
    let primary = lab
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect("healthy after restart");
    for name in &names {
        let d = dsn(&lab, name);
        assert_eq!(
            query_i64(&d, "SELECT system_identifier FROM pg_control_system()").await,
            Ok(system_id)
        );
        until_holds(Duration::from_secs(10), "the data survives", || async {
            rows(&d).await == Some(1)
        })
        .await;
    }
    execute_on(&lab, &primary, "INSERT INTO t VALUES (2)").await;
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_postgres_is_fenced_at_its_deadline_and_rejoins_as_a_replica() {
    let (_dir, mut lab, old, monitor) = monitored_lab(3, false).await;
    let old_dsn = dsn(&lab, &old);
    execute(
        &old_dsn,
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
    )
    .await
    .expect("write");
    lab.kill(&old).expect("SIGKILL the primary's agent");
    let new = fenced_and_replaced(&lab, &old, Duration::from_secs(5)).await;

    lab.start(&old).expect("restart the old primary's agent");
    until_rejoined(&lab, &old).await;
    // Writes the old primary took before its deadline may have reached the
    // new one: what counts is that both now hold the same rows.
    let new_dsn = dsn(&lab, &new);
    eventually(
        Duration::from_secs(10),
        "it has the new primary's rows",
        || async {
            let both = (rows(&old_dsn).await, rows(&new_dsn).await);
            (both.0.is_some() && both.0 == both.1).then_some(())
        },
    )
    .await;
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_agent_is_fenced_by_its_keeper_and_never_believes_it_leads() {
    let (_dir, lab, old, monitor) = lab_with_table_t().await;
    freeze_agent(&lab, &old);
    fenced_and_replaced(&lab, &old, Duration::from_secs(10)).await;

    thaw_agent(&lab, &old);
    never_claims_the_lease(&lab, &old, Duration::from_secs(3)).await;
    until_rejoined(&lab, &old).await;
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_postmaster_comes_back_or_fails_over() {
    let (_dir, lab, primary, monitor) = lab_with_table_t().await;
    let pid = postmaster_pid(&lab, &primary).expect("postmaster.pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)
        .expect("SIGKILL the postmaster");
    let names = lab.names();
    eventually(
        FAILOVER_WITHIN,
        "writes work again on some member",
        || async {
            for name in &names {
                if execute(&dsn(&lab, name), "INSERT INTO t VALUES (1)")
                    .await
                    .is_ok()
                {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    lab.wait_healthy(FAILOVER_WITHIN)
        .await
        .expect("one primary, replicas streaming again");
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lagging_beyond_the_limit_is_not_promoted() {
    let (_dir, mut lab, old, monitor) = monitored_lab(3, false).await;
    let replicas = members_except(&lab, &[&old]);
    let (lagging, healthy) = (&replicas[0], &replicas[1]);
    execute_on(&lab, lagging, "SELECT pg_wal_replay_pause()").await;
    // Well over the default maximum_lag_on_failover of 1 MiB.
    execute_on(&lab, &old, "CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 40000) g").await;
    until_holds(
        Duration::from_secs(15),
        "the healthy replica has the data",
        || async { rows(&dsn(&lab, healthy)).await == Some(40000) },
    )
    .await;
    // Let a renewal carry the primary's LSN before it dies.
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.kill(&old).expect("SIGKILL the primary's agent");
    assert_eq!(
        new_primary(&lab, &old, FAILOVER_WITHIN).await,
        *healthy,
        "the lagging replica was promoted"
    );
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nofailover_member_is_never_promoted() {
    let (_dir, mut lab, first, monitor) = monitored_lab(3, false).await;
    let others = members_except(&lab, &[&first]);
    let tagged = others[0].clone();
    let config = lab.member(&tagged).expect("member").config.clone();
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("tags:\n  nofailover: true\n");
    std::fs::write(&config, text).expect("tag the member");
    lab.kill(&tagged).expect("stop the member to retag it");
    lab.start(&tagged).expect("restart with nofailover");
    lab.wait_healthy(FAILOVER_WITHIN).await.expect("healthy");

    lab.kill(&first).expect("SIGKILL the primary's agent");
    let second = new_primary(&lab, &first, FAILOVER_WITHIN).await;
    assert_ne!(second, tagged, "the nofailover member was promoted");
    // Bring the first primary back as a replica: now the nofailover member
    // and it are the candidates, and only it may be promoted.
    lab.start(&first)
        .expect("restart the first primary's agent");
    until_streaming(&lab, &first, FAILOVER_WITHIN, "the first primary rejoins").await;
    lab.kill(&second)
        .expect("SIGKILL the second primary's agent");
    assert_eq!(
        new_primary(&lab, &second, FAILOVER_WITHIN).await,
        first,
        "the nofailover member was promoted"
    );
    assert!(!writable(&lab).await.contains(&tagged));
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ex_primary_that_cannot_rewind_is_cloned_afresh() {
    let (_dir, mut lab, old, monitor) = monitored_lab(3, false).await;
    execute_on(
        &lab,
        &old,
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
    )
    .await;
    lab.kill(&old).expect("SIGKILL the primary's agent");
    let new = new_primary(&lab, &old, FAILOVER_WITHIN).await;
    execute_on(&lab, &new, "INSERT INTO t VALUES (2)").await;
    // Without its WAL the ex-primary can neither recover nor be rewound.
    let pg_wal = data_file(&lab, &old, "pgdata/pg_wal");
    for entry in std::fs::read_dir(&pg_wal).expect("pg_wal") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::remove_file(&path).expect("remove a WAL segment");
        }
    }
    lab.start(&old).expect("restart the old primary's agent");
    until_streaming(
        &lab,
        &old,
        Duration::from_secs(60),
        "the old primary rejoins through a fresh clone",
    )
    .await;
    assert_eq!(rows(&dsn(&lab, &old)).await, Some(2));
    let log = std::fs::read_to_string(&lab.member(&old).expect("member").log).expect("agent log");
    assert!(
        log.contains("rewind failed; cloning afresh"),
        "no fallback to a clone in the log"
    );
    assert!(
        log.contains("replaced the data directory with the new clone"),
        "the clone was not swapped in"
    );
    // Disk use stays bounded: no staging copy, no replaced data left.
    let left: Vec<String> = std::fs::read_dir(lab.member(&old).expect("member").data_dir.clone())
        .expect("data dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("pgdata."))
        .collect();
    assert!(left.is_empty(), "the clone left {left:?} beside pgdata");
    monitor.assert_never_two().await;
}
