//! False-failover soak on a real three-member lab: pgbench writes on the
//! primary for `SOAK_SECS` seconds (default 1800, BRIEF's 30 minutes) while
//! every member's lease view is sampled each second. Prints figures and
//! writes `target/bench/soak.json`; the aim is 0 failovers, but nothing is
//! asserted on it.
//!
//! Run: `cargo build --workspace --bins --release && cargo bench -p raftgres-tests --bench soak`

use raftgres_tests::http::{Api, api_url};
use raftgres_tests::process::{assert_succeeded, run_ok};
use raftgres_tests::{dsn, lab_dir, report_bench, start_lab, status, writable};
use std::time::{Duration, Instant};

const PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";

fn soak_secs() -> u64 {
    match std::env::var("SOAK_SECS") {
        Err(_) => 1800,
        Ok(text) => text.parse().unwrap_or_else(|_| {
            panic!("SOAK_SECS must be a whole number of seconds, got {text:?}")
        }),
    }
}

/// The number after `label` on pgbench's report line that starts with it.
fn report_number(report: &str, label: &str) -> Option<f64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = soak_secs();
    let dir = lab_dir();
    let (lab, primary) = start_lab(&dir, 3, false).await;
    let api = Api::of(&lab);
    let base = api_url(&lab, &primary);
    let target = dsn(&lab, &primary);
    run_ok(
        std::process::Command::new(PGBENCH).args(["-i", "-q", "-s", "10", &target]),
        "pgbench -i",
    );
    let history_before = api.history(&base).await.len();
    let epoch_before = status(&lab, &primary).await.expect("status").lease_epoch;

    let started = Instant::now();
    let load = tokio::process::Command::new(PGBENCH)
        .args(["-n", "-c", "8", "-j", "2", "-T", &secs.to_string(), &target])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start pgbench");
    let load = tokio::spawn(load.wait_with_output());

    // Sampled each second: moments with no primary or more than one, and
    // the largest epoch any member reported.
    let names = lab.names();
    let (mut samples, mut none, mut several, mut max_epoch) = (0u64, 0u64, 0u64, epoch_before);
    while !load.is_finished() {
        let primaries = writable(&lab).await.len();
        samples += 1;
        none += u64::from(primaries == 0);
        several += u64::from(primaries > 1);
        for name in &names {
            if let Ok(s) = status(&lab, name).await {
                max_epoch = max_epoch.max(s.lease_epoch);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let output = load.await.expect("pgbench task").expect("pgbench output");
    let elapsed = started.elapsed();
    assert_succeeded(&output, "pgbench");
    let report = String::from_utf8_lossy(&output.stdout);
    let failovers = api.history(&base).await.len() - history_before;

    let report = serde_json::json!({
        "seconds": elapsed.as_secs(),
        "pgbench": {
            "clients": 8,
            "transactions": report_number(&report, "number of transactions actually processed:"),
            "failed_transactions": report_number(&report, "number of failed transactions:"),
            "tps": report_number(&report, "tps ="),
        },
        "failovers_recorded": failovers,
        "lease_epoch_changes": max_epoch - epoch_before,
        "samples": samples,
        "samples_without_primary": none,
        "samples_with_two_primaries": several,
    });
    report_bench("soak", &report);
}
