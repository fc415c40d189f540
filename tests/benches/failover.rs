//! Failover benchmark on a real three-member lab with PostgreSQL. Prints
//! figures and writes `target/bench/failover.json`; asserts nothing about time.
//!
//! Run: `cargo build --workspace --bins --release && cargo bench -p raftgres-tests --bench failover`

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres_tests::{dsn, execute, lab_dir, report_bench, start_lab};
use std::time::{Duration, Instant};

const HOST_LOSS_TRIALS: usize = 5;
const POSTMASTER_TRIALS: usize = 3;

fn postmaster_pid(lab: &raftgres_lab::Lab, name: &str) -> i32 {
    let file = lab
        .member(name)
        .expect("member")
        .data_dir
        .join("pgdata/postmaster.pid");
    let text = std::fs::read_to_string(file).expect("postmaster.pid");
    text.lines()
        .next()
        .expect("pid")
        .trim()
        .parse()
        .expect("pid")
}

/// Until a write succeeds on any database member; the elapsed time.
async fn until_writable(lab: &raftgres_lab::Lab, since: Instant) -> Duration {
    let dsns: Vec<String> = lab
        .description
        .members
        .iter()
        .filter_map(|m| m.dsn.clone())
        .collect();
    loop {
        for d in &dsns {
            if execute(d, "INSERT INTO bench VALUES (1)").await.is_ok() {
                return since.elapsed();
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "no write within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn summary(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    serde_json::json!({
        "trials": samples.len(),
        "min_ms": ms(samples[0]),
        "median_ms": ms(samples[samples.len() / 2]),
        "max_ms": ms(samples[samples.len() - 1]),
    })
}

/// Resident memory and CPU time of one process, from /proc.
fn rss_and_cpu(pid: u32) -> (u64, Duration) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    (rss_kb, Duration::from_millis(ticks * 10))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut host_loss = Vec::new();
    for _ in 0..HOST_LOSS_TRIALS {
        let dir = lab_dir();
        let (mut lab, primary) = start_lab(&dir, 3, false).await;
        execute(&dsn(&lab, &primary), "CREATE TABLE bench (id int)")
            .await
            .expect("table");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let postmaster = postmaster_pid(&lab, &primary);
        // The whole host at once: its agent and its postmaster.
        let lost = Instant::now();
        let _ = kill(Pid::from_raw(postmaster), Signal::SIGKILL);
        lab.kill(&primary).expect("SIGKILL agent");
        host_loss.push(until_writable(&lab, lost).await);
    }

    let mut postmaster_crash = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..POSTMASTER_TRIALS {
        let dir = lab_dir();
        let (lab, primary) = start_lab(&dir, 3, false).await;
        execute(&dsn(&lab, &primary), "CREATE TABLE bench (id int)")
            .await
            .expect("table");
        // Idle figures over ten quiet seconds of a healthy cluster.
        let agents: Vec<u32> = lab
            .description
            .members
            .iter()
            .map(|m| m.agent_pid)
            .collect();
        let before: Vec<(u64, Duration)> = agents.iter().map(|p| rss_and_cpu(*p)).collect();
        tokio::time::sleep(Duration::from_secs(10)).await;
        for (pid, (_, cpu_before)) in agents.iter().zip(before) {
            let (rss_kb, cpu_after) = rss_and_cpu(*pid);
            idle.push((
                rss_kb,
                (cpu_after - cpu_before).as_secs_f64() / 10.0 * 100.0,
            ));
        }
        let crashed = Instant::now();
        let _ = kill(
            Pid::from_raw(postmaster_pid(&lab, &primary)),
            Signal::SIGKILL,
        );
        postmaster_crash.push(until_writable(&lab, crashed).await);
    }
    let max_rss = idle.iter().map(|(r, _)| *r).max().unwrap_or(0);
    let max_cpu = idle.iter().map(|(_, c)| *c).fold(0.0, f64::max);

    let report = serde_json::json!({
        "host_loss_to_first_write": summary(host_loss),
        "postmaster_sigkill_to_first_write": summary(postmaster_crash),
        "idle_agent": { "samples": idle.len(), "max_rss_kib": max_rss, "max_cpu_percent": max_cpu },
    });
    report_bench("failover", &report);
}
