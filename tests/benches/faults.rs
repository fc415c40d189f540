//! The full fault matrix: every fault `FAULT_RUNS` times (default 20) on
//! one lab per fault, printing each run and writing `target/bench/faults.json`
//! and `target/bench/faults.md` (per fault: runs, time to writes again, the
//! longest write gap, runs that kept the primary, split-brain writes, lost
//! acknowledged writes). Figures, never a timed assertion; a safety
//! violation is reported, not hidden. `FAULTS=a,b` runs only the faults
//! whose names contain one of those words; `FAULT_MODES=async,sync,quorum`
//! (the default: all three) chooses the replication modes.

use raftgres_tests::matrix::{Fault, MatrixLab, Replication, RunReport, markdown, run_once};
use raftgres_tests::{bench_dir, report_bench};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: u32 = std::env::var("FAULT_RUNS")
        .ok()
        .map(|v| v.parse().expect("FAULT_RUNS must be a whole number"))
        .unwrap_or(20);
    let only = std::env::var("FAULTS").ok();
    let modes: Vec<Replication> = match std::env::var("FAULT_MODES") {
        Ok(list) => list
            .split(',')
            .map(|m| {
                Replication::ALL
                    .into_iter()
                    .find(|r| r.name() == m.trim())
                    .unwrap_or_else(|| panic!("FAULT_MODES: {m:?} is none of async, sync, quorum"))
            })
            .collect(),
        Err(_) => Replication::ALL.to_vec(),
    };
    let mut reports: Vec<RunReport> = Vec::new();
    for (fault, replication) in Fault::ALL
        .into_iter()
        .flat_map(|f| modes.iter().map(move |r| (f, *r)))
    {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|f| fault.name().contains(f.trim())))
        {
            continue;
        }
        let (mut lab, mut primary) = MatrixLab::start_in(fault, replication).await;
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
