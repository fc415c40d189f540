//! What the benchmarks share: process figures from `/proc`, summaries of
//! samples, the wait for the first write, and wrk's report. Figures only:
//! nothing here asserts on a time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use raftgres_lab::Lab;

/// Resident memory (KiB) and CPU time (user + system) of one process.
pub fn rss_and_cpu(pid: u32) -> (u64, Duration) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    (rss_kib, cpu_ticks(pid, 2))
}

/// CPU time of one process and of its children it has reaped: for a
/// postmaster, the server's whole cost but for the backends still running.
pub fn cpu_with_reaped_children(pid: u32) -> Duration {
    cpu_ticks(pid, 4)
}

/// The sum of the first `fields` CPU fields of `/proc/PID/stat` (utime,
/// stime, cutime, cstime).
fn cpu_ticks(pid: u32, fields: usize) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = after_name[11..11 + fields]
        .iter()
        .map(|f| f.parse::<u64>().expect("a CPU time field"))
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Min, median and max of some durations, in milliseconds.
pub fn summary(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    if samples.is_empty() {
        return serde_json::json!({ "trials": 0 });
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    serde_json::json!({
        "trials": samples.len(),
        "min_ms": ms(samples[0]),
        "median_ms": ms(samples[samples.len() / 2]),
        "max_ms": ms(samples[samples.len() - 1]),
    })
}

/// Until `INSERT INTO bench` succeeds through one of `dsns` (each try a new
/// connection); the time since `since`. Panics after a minute.
pub async fn until_writable(dsns: &[String], since: Instant) -> Duration {
    loop {
        for dsn in dsns {
            if crate::execute(dsn, "INSERT INTO bench VALUES (1)")
                .await
                .is_ok()
            {
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

/// Every database member's own DSN.
pub fn member_dsns(lab: &Lab) -> Vec<String> {
    lab.description
        .members
        .iter()
        .filter_map(|m| m.dsn.clone())
        .collect()
}

/// `wrk` on the PATH, if installed.
pub fn wrk_binary() -> Option<PathBuf> {
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

/// The figures of one wrk report (run with `--latency`): requests per
/// second, p50 and p99 latency, and answers that were not 2xx or 3xx.
pub fn parse_wrk(report: &str) -> Result<serde_json::Value, String> {
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

/// Runs `wrk ARGS --latency URL` (bounded to a minute) and parses it.
pub async fn run_wrk(wrk: &PathBuf, args: &[&str], url: &str) -> serde_json::Value {
    let what = format!("wrk against {url}");
    let output = crate::process::output_within(
        tokio::process::Command::new(wrk)
            .args(args)
            .arg("--latency")
            .arg(url),
        Duration::from_secs(60),
        &what,
    )
    .await;
    crate::process::assert_succeeded(&output, &what);
    let report = String::from_utf8_lossy(&output.stdout);
    let mut figures = parse_wrk(&report).unwrap_or_else(|e| panic!("{e}"));
    figures["url"] = serde_json::json!(url);
    figures
}

/// Waits (up to 20 s) until `name`'s pgbouncer reaches the primary, and
/// creates there the `bench` table [`insert_until`] writes to.
pub async fn bench_table_through_pgbouncer(lab: &Lab, name: &str) {
    crate::eventually(
        Duration::from_secs(20),
        "pgbouncer reaches the primary",
        || async {
            crate::execute(
                &crate::pgbouncer_dsn(lab, name),
                "CREATE TABLE IF NOT EXISTS bench (id int)",
            )
            .await
            .ok()
        },
    )
    .await;
}

/// One connection inserting until `stop`: (statements, failed, longest wait).
pub async fn insert_until(
    dsn: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, u64, Duration) {
    let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("connect through pgbouncer");
    let driver = tokio::spawn(connection);
    let (mut done, mut failed, mut longest) = (0, 0, Duration::ZERO);
    while !*stop.borrow() {
        let started = Instant::now();
        let ok = matches!(
            tokio::time::timeout(
                Duration::from_secs(20),
                client.simple_query("INSERT INTO bench VALUES (1)")
            )
            .await,
            Ok(Ok(_))
        );
        longest = longest.max(started.elapsed());
        done += 1;
        failed += u64::from(!ok);
    }
    drop(client);
    let _ = driver.await;
    (done, failed, longest)
}
