//! REST API throughput on a real three-member lab: `wrk -t2 -c4 -d10s
//! --latency` against `/primary` on the primary and `/replica` on a replica,
//! both answering 200. Prints figures and writes `target/bench/api.json`;
//! asserts nothing about time. Without `wrk` it says so and exits 0.
//!
//! Run: `cargo build --workspace --bins --release && cargo bench -p raftgres-tests --bench api`

use raftgres_tests::{lab_dir, report_bench, start_lab};
use std::path::PathBuf;
use std::time::Duration;

const WRK_ARGS: [&str; 4] = ["-t2", "-c4", "-d10s", "--latency"];
/// wrk stops itself after 10 s; this only bounds a hung one.
const WRK_TIMEOUT: Duration = Duration::from_secs(60);

fn wrk_binary() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("wrk"))
        .find(|path| path.is_file())
}

/// wrk's latency with its unit (`us`, `ms`, `s`), in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1000.0),
        "ms" => Some(number),
        "s" => Some(number * 1000.0),
        "m" => Some(number * 60_000.0),
        _ => None,
    }
}

/// The figures of one wrk report: requests per second, p50 and p99
/// latency, and answers that were not 2xx or 3xx.
fn parse(report: &str) -> Result<serde_json::Value, String> {
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
            .ok_or_else(|| format!("no `{prefix}` line in wrk's report:\n{report}"))
    };
    let number = |prefix: &str| -> Result<f64, String> {
        let text = field(prefix)?;
        text.parse()
            .map_err(|_| format!("`{prefix}` is not a number: {text:?}"))
    };
    let latency = |prefix: &str| -> Result<f64, String> {
        let text = field(prefix)?;
        millis(text).ok_or_else(|| format!("`{prefix}` is not a latency: {text:?}"))
    };
    let non_2xx = match field("Non-2xx or 3xx responses:") {
        Ok(text) => text
            .parse::<u64>()
            .map_err(|_| format!("bad count {text:?}"))?,
        Err(_) => 0,
    };
    Ok(serde_json::json!({
        "requests_per_sec": number("Requests/sec:")?,
        "latency_p50_ms": latency("50%")?,
        "latency_p99_ms": latency("99%")?,
        "non_2xx_3xx": non_2xx,
    }))
}

async fn run_wrk(wrk: &PathBuf, url: &str) -> serde_json::Value {
    let output = tokio::process::Command::new(wrk)
        .args(WRK_ARGS)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WRK_TIMEOUT, output)
        .await
        .unwrap_or_else(|_| panic!("wrk against {url} did not finish within {WRK_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", wrk.display()));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk against {url} failed ({}): {report}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut figures = parse(&report).unwrap_or_else(|e| panic!("{e}"));
    figures["url"] = serde_json::json!(url);
    figures
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(wrk) = wrk_binary() else {
        println!("api bench skipped: wrk is not installed (apt-get install wrk)");
        return;
    };
    let dir = lab_dir();
    let (lab, primary) = start_lab(&dir, 3, false).await;
    let api_url = |name: &str| lab.member(name).expect("member").api_url.clone();
    let replica = lab
        .names()
        .into_iter()
        .find(|n| *n != primary)
        .expect("a replica");

    let on_primary = run_wrk(&wrk, &format!("{}/primary", api_url(&primary))).await;
    let on_replica = run_wrk(&wrk, &format!("{}/replica", api_url(&replica))).await;
    let report = serde_json::json!({
        "wrk": WRK_ARGS.join(" "),
        "primary": on_primary,
        "replica": on_replica,
    });
    report_bench("api", &report);
}
