//! Failover benchmark on a real three-member lab with PostgreSQL. Prints
//! figures and writes `target/bench/failover.json`; asserts nothing about time.
//!
//! Run: `cargo build --workspace --bins --release && cargo bench -p raftgres-tests --bench failover`

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres_tests::bench::{member_dsns, rss_and_cpu, summary, until_writable};
use raftgres_tests::{dsn, execute_on, lab_dir, postmaster_pid, report_bench, start_lab};
use std::time::{Duration, Instant};

const HOST_LOSS_TRIALS: usize = 5;
const POSTMASTER_TRIALS: usize = 3;
const AGENT_RESTARTS: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut host_loss = Vec::new();
    for _ in 0..HOST_LOSS_TRIALS {
        let dir = lab_dir();
        let (mut lab, primary) = start_lab(&dir, 3, false).await;
        execute_on(&lab, &primary, "CREATE TABLE bench (id int)").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The whole host at once: its agent, keeper, guard and Postgres.
        let lost = Instant::now();
        lab.kill_host(&primary).expect("lose the primary's host");
        host_loss.push(until_writable(&member_dsns(&lab), lost).await);
    }

    let mut postmaster_crash = Vec::new();
    let mut idle = Vec::new();
    let mut idle_keepers = Vec::new();
    for _ in 0..POSTMASTER_TRIALS {
        let dir = lab_dir();
        let (lab, primary) = start_lab(&dir, 3, false).await;
        execute_on(&lab, &primary, "CREATE TABLE bench (id int)").await;
        // Idle figures over ten quiet seconds of a healthy cluster.
        let mut agents: Vec<u32> = lab
            .description
            .members
            .iter()
            .map(|m| m.agent_pid)
            .collect();
        let keepers: Vec<u32> = lab
            .names()
            .iter()
            .filter_map(|n| lab.keeper_pid(n).ok().flatten())
            .collect();
        let keeper_count = keepers.len();
        agents.extend(keepers);
        let before: Vec<(u64, Duration)> = agents.iter().map(|p| rss_and_cpu(*p)).collect();
        tokio::time::sleep(Duration::from_secs(10)).await;
        for (i, (pid, (_, cpu_before))) in agents.iter().zip(before).enumerate() {
            let (rss_kb, cpu_after) = rss_and_cpu(*pid);
            let sample = (
                rss_kb,
                (cpu_after - cpu_before).as_secs_f64() / 10.0 * 100.0,
            );
            if i < agents.len() - keeper_count {
                idle.push(sample);
            } else {
                idle_keepers.push(sample);
            }
        }
        let crashed = Instant::now();
        let _ = kill(
            Pid::from_raw(postmaster_pid(&lab, &primary).expect("postmaster.pid")),
            Signal::SIGKILL,
        );
        postmaster_crash.push(until_writable(&member_dsns(&lab), crashed).await);
    }
    let max_rss = idle.iter().map(|(r, _)| *r).max().unwrap_or(0);
    let max_cpu = idle.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    let keeper_rss = idle_keepers.iter().map(|(r, _)| *r).max().unwrap_or(0);
    let keeper_cpu = idle_keepers.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    let restarts = agent_restarts().await;

    let report = serde_json::json!({
        "host_loss_to_first_write": summary(host_loss),
        "postmaster_sigkill_to_first_write": summary(postmaster_crash),
        "idle_agent": { "samples": idle.len(), "max_rss_kib": max_rss, "max_cpu_percent": max_cpu },
        "idle_keeper": { "samples": idle_keepers.len(), "max_rss_kib": keeper_rss, "max_cpu_percent": keeper_cpu },
        "agent_restart_on_primary": restarts,
    });
    report_bench("failover", &report);
}

/// The primary's agent restarted `AGENT_RESTARTS` times under a writer on a
/// connection opened before: Postgres kept (same postmaster), lease epoch
/// kept, failed writes, and the longest gap between acknowledged writes.
async fn agent_restarts() -> serde_json::Value {
    let dir = lab_dir();
    let (mut lab, primary) = start_lab(&dir, 3, false).await;
    execute_on(&lab, &primary, "CREATE TABLE bench (id int)").await;
    let postmaster = postmaster_pid(&lab, &primary).expect("postmaster.pid");
    let epoch = raftgres_tests::status(&lab, &primary)
        .await
        .expect("status")
        .lease_epoch;
    let (client, connection) = tokio_postgres::connect(&dsn(&lab, &primary), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let (mut last, mut longest, mut failed, mut written) =
            (Instant::now(), Duration::ZERO, 0u64, 0u64);
        while !*stopped.borrow() {
            match client.execute("INSERT INTO bench VALUES (1)", &[]).await {
                Ok(_) => {
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                    written += 1;
                }
                Err(_) => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (longest, failed, written)
    });
    let mut kept_postgres = 0;
    let mut kept_epoch = 0;
    for _ in 0..AGENT_RESTARTS {
        lab.restart_agent(&primary, Duration::from_secs(30))
            .expect("restart the agent");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if raftgres_tests::status(&lab, &primary)
                .await
                .is_ok_and(|s| s.holds_lease)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if postmaster_pid(&lab, &primary).expect("postmaster.pid") == postmaster {
            kept_postgres += 1;
        }
        if raftgres_tests::status(&lab, &primary)
            .await
            .is_ok_and(|s| s.lease_epoch == epoch)
        {
            kept_epoch += 1;
        }
    }
    let _ = stop.send(true);
    let (longest, failed, written) = writer.await.expect("writer");
    serde_json::json!({
        "restarts": AGENT_RESTARTS,
        "postgres_kept": kept_postgres,
        "lease_epoch_kept": kept_epoch,
        "writes": written,
        "failed_writes": failed,
        "longest_write_gap_ms": longest.as_secs_f64() * 1000.0,
    })
}
