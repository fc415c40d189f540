//! The full fault matrix: every fault `FAULT_RUNS` times (default 20) on
//! one lab per fault, printing each run and writing `target/bench/faults.json`
//! and `target/bench/faults.md` (per fault: runs, time to writes again, the
//! longest write gap, runs that kept the primary, split-brain writes, lost
//! acknowledged writes). Figures, never a timed assertion; a safety
//! violation is reported, not hidden. `FAULTS=a,b` runs only the faults
//! whose names contain one of those words.

use raftgres_tests::matrix::{Fault, MatrixLab, RunReport, markdown, run_once};
use raftgres_tests::{bench_dir, report_bench};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: u32 = std::env::var("FAULT_RUNS")
        .ok()
        .map(|v| v.parse().expect("FAULT_RUNS must be a whole number"))
        .unwrap_or(20);
    let only = std::env::var("FAULTS").ok();
    let mut reports: Vec<RunReport> = Vec::new();
    for fault in Fault::ALL {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|f| fault.name().contains(f.trim())))
        {
            continue;
        }
        let (mut lab, mut primary) = MatrixLab::start(fault).await;
        for run in 0..runs {
            let report = run_once(&mut lab, &primary, fault, run).await;
            println!("{}", report.json());
            primary = report.new_primary.clone();
            reports.push(report);
        }
    }
    let table = markdown(&reports);
    println!("{table}");
    std::fs::write(bench_dir().join("faults.md"), &table).expect("faults.md");
    report_bench(
        "faults",
        &serde_json::json!({
            "runs_per_fault": runs,
            "runs": reports.iter().map(RunReport::json).collect::<Vec<_>>(),
        }),
    );
}
