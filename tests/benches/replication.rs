//! What each replication mode costs: pgbench's TPC-B-like load through a
//! member's pgbouncer on a real three-member lab, in asynchronous, then
//! synchronous (one standby), then quorum mode (any one of two). Prints transactions per
//! second and latency percentiles, and writes
//! `target/bench/replication.json`; asserts nothing about time.
//!
//! Run: `cargo build --workspace --bins --release && cargo bench -p raftgres-tests --bench replication`
//! (`PGBENCH_SECONDS`, default 20; `PGBENCH_CLIENTS`, default 4).

use raftgres_tests::http::{Api, api_url};
use raftgres_tests::process::run_ok;
use raftgres_tests::{eventually, execute, lab_dir, query_i64, report_bench, start_lab};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a whole number"))
        })
        .unwrap_or(default)
}

/// Runs pgbench against `dsn`, logging every transaction under `log_dir`;
/// returns (tps, latencies in ms, sorted).
fn pgbench(dsn: &str, clients: u64, seconds: u64, log_dir: &Path) -> (f64, Vec<f64>) {
    std::fs::create_dir_all(log_dir).expect("pgbench log directory");
    let output = run_ok(
        Command::new(PGBENCH).current_dir(log_dir).args([
            "--client",
            &clients.to_string(),
            "--jobs",
            "2",
            "--time",
            &seconds.to_string(),
            "--log",
            "--no-vacuum",
            dsn,
        ]),
        "pgbench (postgresql-15's client binaries)",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tps = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{stdout}"));
    // Each log line: client_id transaction_no time_us script_no epoch us.
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(log_dir).expect("pgbench logs") {
        let path = entry.expect("log entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        latencies.extend(text.lines().filter_map(|l| {
            l.split_whitespace()
                .nth(2)
                .and_then(|us| us.parse::<f64>().ok())
                .map(|us| us / 1000.0)
        }));
        let _ = std::fs::remove_file(&path);
    }
    latencies.sort_by(f64::total_cmp);
    (tps, latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_or("PGBENCH_SECONDS", 20);
    let clients = env_or("PGBENCH_CLIENTS", 4);
    let dir = lab_dir();
    let (lab, primary) = start_lab(&dir, 3, false).await;
    let api = Api::of(&lab);
    let url = api_url(&lab, &primary);
    let via = lab
        .member(&primary)
        .expect("member")
        .pgbouncer_dsn
        .clone()
        .expect("a pgbouncer per member: install pgbouncer");
    let direct = raftgres_tests::dsn(&lab, &primary);
    eventually(
        Duration::from_secs(30),
        "pgbouncer reaches the primary",
        || async { execute(&via, "SELECT 1").await.ok() },
    )
    .await;
    run_ok(
        Command::new(PGBENCH).args(["--initialize", "--scale", "10", "--quiet", &direct]),
        "pgbench --initialize",
    );
    let mut modes = Vec::new();
    for (mode, patch) in [
        ("async", json!({"synchronous_mode": false})),
        ("sync", json!({"synchronous_mode": true})),
        ("quorum", json!({"synchronous_mode": "quorum"})),
    ] {
        api.send_ok("PATCH", &url, "/config", &patch).await;
        // How many standbys Postgres reports in each state, once the mode
        // is in force.
        let (want_sync, want_quorum) = match mode {
            "sync" => (1, 0),
            "quorum" => (0, 2),
            _ => (0, 0),
        };
        eventually(Duration::from_secs(30), "the mode in force", || async {
            let count = |state: &'static str| {
                let direct = direct.clone();
                async move {
                    query_i64(
                        &direct,
                        &format!(
                            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = '{state}'"
                        ),
                    )
                    .await
                    .ok()
                }
            };
            (count("sync").await? == want_sync && count("quorum").await? == want_quorum)
                .then_some(())
        })
        .await;
        let (tps, latencies) = pgbench(&via, clients, seconds, &dir.path().join("pgbench"));
        let figures = json!({
            "mode": mode,
            "clients": clients,
            "seconds": seconds,
            "tps": tps,
            "transactions": latencies.len(),
            "latency_ms": {
                "p50": percentile(&latencies, 0.50),
                "p95": percentile(&latencies, 0.95),
                "p99": percentile(&latencies, 0.99),
                "max": latencies.last().copied().unwrap_or(f64::NAN),
            },
        });
        println!("{mode}: {figures}");
        modes.push(figures);
    }
    report_bench("replication", &json!({ "modes": modes }));
}
