//! The fault matrix in CI: every fault of `tests/src/matrix.rs`, once in
//! asynchronous and then once in synchronous replication, on a lab of its
//! own per fault, with the workload and the checker there (in synchronous
//! mode it also fails a run that lost one acknowledged write). The second
//! run meets the cluster the first left behind: a new primary and an old
//! one that rejoined. The full matrix with more runs, all three modes and
//! a report is `cargo bench --bench faults`; one run per mode keeps CI
//! within its half hour.

use raftgres_tests::matrix::{Fault, MatrixLab, Replication, Setup, run_once};
use raftgres_tests::serial;

const RUNS: u32 = 1;

async fn each_mode(fault: Fault) {
    let _serial = serial().await;
    assert!(
        fault.setup() == Setup::Loopback || nix::unistd::geteuid().is_root(),
        "{} needs root (network namespaces or mounts); run the tests as root, as scripts/test-all does",
        fault.name()
    );
    let (mut lab, mut primary) = MatrixLab::start(fault).await;
    // Quorum mode runs in the benchmark (`cargo bench --bench faults`):
    // all three modes would take CI past its time budget.
    for replication in [Replication::Asynchronous, Replication::Synchronous] {
        lab.switch_to(replication, &primary).await;
        for run in 0..RUNS {
            let report = run_once(&mut lab, &primary, fault, run).await;
            println!("{}", report.json());
            report.assert_safe();
            primary = report.new_primary;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_primary_postmaster() {
    each_mode(Fault::KillPostgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_primary_agent() {
    each_mode(Fault::KillAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_primary_agent() {
    each_mode(Fault::StopAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_primary_postmaster() {
    each_mode(Fault::StopPostmaster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_primary_host() {
    each_mode(Fault::KillHost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_primary_agent() {
    each_mode(Fault::RestartAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_replica_agent() {
    each_mode(Fault::KillReplicaAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_primary_agent_during_switchover() {
    each_mode(Fault::RestartDuringSwitchover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolate_primary() {
    each_mode(Fault::IsolatePrimary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_reaches_the_primary() {
    each_mode(Fault::CutToPrimary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_leaves_the_primary() {
    each_mode(Fault::CutFromPrimary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_primary_link() {
    each_mode(Fault::SlowPrimaryLink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_primary_link() {
    each_mode(Fault::LossyPrimaryLink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_primary_disk() {
    each_mode(Fault::FillPrimaryDisk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_binary_and_kill_primary_agent() {
    each_mode(Fault::ReplaceBinaryKillAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wipe_replica_raft_store() {
    each_mode(Fault::WipeReplicaStore).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_fsync_on_the_raft_leader() {
    each_mode(Fault::SlowFsyncLeader).await;
}
