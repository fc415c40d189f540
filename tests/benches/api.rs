//! REST API throughput on a real three-member lab: `wrk -t2 -c4 -d10s
//! --latency` against `/primary` on the primary and `/replica` on a replica,
//! both answering 200. Prints figures and writes `target/bench/api.json`;
//! asserts nothing about time. Without `wrk` it says so and exits 0.
//!
//! Run: `cargo build --workspace --bins --release && cargo bench -p raftgres-tests --bench api`

use raftgres_tests::bench::{run_wrk, wrk_binary};
use raftgres_tests::{lab_dir, report_bench, start_lab};

const WRK_ARGS: [&str; 3] = ["-t2", "-c4", "-d10s"];

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

    let on_primary = run_wrk(&wrk, &WRK_ARGS, &format!("{}/primary", api_url(&primary))).await;
    let on_replica = run_wrk(&wrk, &WRK_ARGS, &format!("{}/replica", api_url(&replica))).await;
    let report = serde_json::json!({
        "wrk": WRK_ARGS.join(" "),
        "primary": on_primary,
        "replica": on_replica,
    });
    report_bench("api", &report);
}
