//! Every member's pgbouncer on a real lab: writers connected through
//! pgbouncer keep their connection and lose no statement across a
//! switchover, and after an unplanned failover new connections through every
//! surviving member's pgbouncer reach the new primary.

use raftgres_lab::Lab;
use raftgres_tests::http::Api;
use raftgres_tests::settle::roles_settled;
use raftgres_tests::{
    PrimaryMonitor, dsn, eventually, members_except, new_primary, pgbouncer_dsn, query_i64,
    serial_lab, until_streaming, writable,
};
use serde_json::json;
use std::time::{Duration, Instant};

/// What one writer saw: acknowledged ids, failed statements, the longest wait.
#[derive(Debug, Default)]
struct Written {
    acked: Vec<i64>,
    failures: Vec<String>,
    longest: Duration,
}

/// Inserts ids `base..` through one connection until `stop` turns true.
async fn writer(dsn: String, base: i64, stop: tokio::sync::watch::Receiver<bool>) -> Written {
    let mut out = Written::default();
    let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("connect through pgbouncer");
    let driver = tokio::spawn(connection);
    let mut id = base;
    while !*stop.borrow() {
        let started = Instant::now();
        // Simple protocol: transaction pooling keeps no prepared statements.
        let sql = format!("INSERT INTO through_pgbouncer VALUES ({id})");
        match tokio::time::timeout(Duration::from_secs(20), client.simple_query(&sql)).await {
            Ok(Ok(_)) => out.acked.push(id),
            Ok(Err(e)) => out.failures.push(e.to_string()),
            Err(_) => out.failures.push(format!("id {id}: no answer within 20s")),
        }
        out.longest = out.longest.max(started.elapsed());
        id += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(client);
    let _ = driver.await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_through_pgbouncer_lose_nothing_across_a_switchover() {
    let (dir, lab, old) = serial_lab(3, false).await;
    let api = Api::for_lab(&dir.path().join("lab.json"));
    let replicas = members_except(&lab, &[&old]);
    for r in &replicas {
        until_streaming(&lab, r, Duration::from_secs(20), "replicas stream").await;
    }
    // The switchover is judged on the replicas' published state.
    roles_settled(&lab, &old).await;
    let candidate = replicas[0].clone();
    let through_replica = replicas[1].clone();
    // Each pgbouncer reaches the primary before the writers start.
    for name in [&old, &through_replica] {
        until_pgbouncer_reaches_primary(
            &lab,
            name,
            "CREATE TABLE IF NOT EXISTS through_pgbouncer (id bigint PRIMARY KEY)",
        )
        .await;
    }
    let monitor = PrimaryMonitor::start(&lab);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writers = [
        tokio::spawn(writer(
            pgbouncer_dsn(&lab, &through_replica),
            1,
            stopped.clone(),
        )),
        tokio::spawn(writer(
            pgbouncer_dsn(&lab, &old),
            1_000_000,
            stopped.clone(),
        )),
    ];
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.send_ok(
        "POST",
        &lab.member(&through_replica).expect("member").api_url,
        "/switchover",
        &json!({"leader": old, "candidate": candidate}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true).expect("stop the writers");
    let mut all = Vec::new();
    for (w, via) in writers.into_iter().zip([&through_replica, &old]) {
        let written = w.await.expect("writer task");
        println!(
            "through {via}'s pgbouncer: {} acknowledged, {} failed, longest statement {:?}",
            written.acked.len(),
            written.failures.len(),
            written.longest
        );
        assert!(
            written.failures.is_empty(),
            "statements failed through {via}'s pgbouncer: {:?}",
            written.failures
        );
        assert!(
            written.acked.len() > 10,
            "the writer through {via} barely wrote"
        );
        all.extend(written.acked);
    }
    assert_eq!(writable(&lab).await, vec![candidate.clone()]);
    let on_new = query_i64(
        &dsn(&lab, &candidate),
        "SELECT count(*) FROM through_pgbouncer",
    )
    .await
    .expect("count on the new primary");
    assert!(
        on_new >= all.len() as i64,
        "{} acknowledged, {on_new} on the new primary",
        all.len()
    );
    let ids = all.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let present = query_i64(
        &dsn(&lab, &candidate),
        &format!("SELECT count(*) FROM through_pgbouncer WHERE id IN ({ids})"),
    )
    .await
    .expect("acknowledged ids on the new primary");
    assert_eq!(present, all.len() as i64, "an acknowledged row is missing");
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_every_pgbouncer_reaches_the_new_primary() {
    let (_dir, mut lab, old) = serial_lab(3, false).await;
    let survivors = members_except(&lab, &[&old]);
    for name in &survivors {
        until_pgbouncer_reaches_primary(
            &lab,
            name,
            "CREATE TABLE IF NOT EXISTS after_failover (who text)",
        )
        .await;
    }
    lab.kill(&old).expect("SIGKILL the primary's agent");
    let new = new_primary(&lab, &old, Duration::from_secs(30)).await;
    let promoted = Instant::now();
    for name in &survivors {
        let through = pgbouncer_dsn(&lab, name);
        let sql = format!("INSERT INTO after_failover VALUES ('{name}')");
        eventually(
            Duration::from_secs(40),
            "a new connection through pgbouncer writes",
            || async {
                let primary =
                    raftgres_lab::pg_query_bool(&through, "SELECT NOT pg_is_in_recovery()").await
                        == Ok(true);
                (primary && raftgres_tests::execute(&through, &sql).await.is_ok()).then_some(())
            },
        )
        .await;
        println!(
            "{name}'s pgbouncer wrote on the new primary {:?} after it appeared",
            promoted.elapsed()
        );
        let rows = query_i64(
            &dsn(&lab, &new),
            &format!("SELECT count(*) FROM after_failover WHERE who = '{name}'"),
        )
        .await
        .expect("count on the new primary");
        assert!(rows >= 1, "{name}'s write is not on the new primary {new}");
    }
}

/// Waits until `sql` succeeds through `name`'s pgbouncer, which then
/// reaches the primary.
async fn until_pgbouncer_reaches_primary(lab: &Lab, name: &str, sql: &str) {
    let dsn = pgbouncer_dsn(lab, name);
    eventually(
        Duration::from_secs(20),
        "pgbouncer reaches the primary",
        || async { raftgres_tests::execute(&dsn, sql).await.ok() },
    )
    .await;
}
