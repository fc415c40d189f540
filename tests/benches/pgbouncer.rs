//! Clients through pgbouncer on a real three-member lab: the write pause and
//! the failed statements a writer sees across switchovers, and the time from
//! losing the primary's host to the first write through a surviving
//! member's pgbouncer. Prints figures and writes `target/bench/pgbouncer.json`;
//! asserts nothing about time.
//!
//! Run: `cargo build --workspace --bins --release && cargo bench -p raftgres-tests --bench pgbouncer`

use raftgres_tests::bench::{bench_table_through_pgbouncer, insert_until};
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::{
    execute, lab_dir, pgbouncer_dsn, report_bench, start_lab, until_streaming, writable,
};
use serde_json::json;
use std::time::{Duration, Instant};

const SWITCHOVER_TRIALS: usize = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = lab_dir();
    let (mut lab, mut primary) = start_lab(&dir, 3, false).await;
    let api = Api::of(&lab);
    let names = lab.names();
    bench_table_through_pgbouncer(&lab, &names[0]).await;
    let mut trials = Vec::new();
    for trial in 0..SWITCHOVER_TRIALS {
        let replicas: Vec<String> = names.iter().filter(|n| **n != primary).cloned().collect();
        for r in &replicas {
            until_streaming(&lab, r, Duration::from_secs(60), "replicas stream").await;
        }
        let (candidate, via) = (replicas[0].clone(), replicas[1].clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(insert_until(pgbouncer_dsn(&lab, &via), stopped));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let reply = api
            .switchover(&api_url(&lab, &via), &primary, &candidate)
            .await
            .expect("POST /switchover");
        let call = started.elapsed();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.send(true).expect("stop");
        let (done, failed, longest) = task.await.expect("writer");
        println!(
            "switchover {trial}: {} -> {candidate} status {}, call {call:?}, {done} statements, {failed} failed, write pause {longest:?}",
            primary, reply.status
        );
        trials.push(json!({
            "status": reply.status,
            "call_ms": call.as_secs_f64() * 1000.0,
            "statements": done,
            "failed": failed,
            "write_pause_ms": longest.as_secs_f64() * 1000.0,
        }));
        if reply.status == 200 {
            primary = candidate;
        }
    }
    let survivor = names
        .iter()
        .find(|n| **n != primary)
        .expect("a survivor")
        .clone();
    let through = pgbouncer_dsn(&lab, &survivor);
    let killed = Instant::now();
    lab.kill(&primary).expect("SIGKILL the primary's agent");
    let first_write = loop {
        if execute(&through, "INSERT INTO bench VALUES (2)")
            .await
            .is_ok()
            && writable(&lab).await.len() == 1
        {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no write within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("host loss -> first write through {survivor}'s pgbouncer: {first_write:?}");
    let report = json!({
        "switchovers": trials,
        "host_loss_to_first_write_via_pgbouncer_ms": first_write.as_secs_f64() * 1000.0,
    });
    report_bench("pgbouncer", &report);
}
