//! The fault matrix in CI: every fault of `tests/src/matrix.rs`, twice in
//! asynchronous and then twice in synchronous replication, on a lab of its
//! own per fault, with the workload and the checker there (in synchronous
//! mode it also fails a run that lost one acknowledged write). The full
//! matrix with more runs and a report is `cargo bench --bench faults`.

use raftgres_tests::matrix::{Fault, MatrixLab, Replication, Setup, run_once};
use raftgres_tests::serial;

const RUNS: u32 = 2;

async fn twice(fault: Fault) {
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
    twice(Fault::KillPostgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_primary_agent() {
    twice(Fault::KillAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_primary_agent() {
    twice(Fault::StopAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_primary_postmaster() {
    twice(Fault::StopPostmaster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_primary_host() {
    twice(Fault::KillHost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_primary_agent() {
    twice(Fault::RestartAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_replica_agent() {
    twice(Fault::KillReplicaAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_primary_agent_during_switchover() {
    twice(Fault::RestartDuringSwitchover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolate_primary() {
    twice(Fault::IsolatePrimary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_reaches_the_primary() {
    twice(Fault::CutToPrimary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_leaves_the_primary() {
    twice(Fault::CutFromPrimary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_primary_link() {
    twice(Fault::SlowPrimaryLink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_primary_link() {
    twice(Fault::LossyPrimaryLink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_primary_disk() {
    twice(Fault::FillPrimaryDisk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_binary_and_kill_primary_agent() {
    twice(Fault::ReplaceBinaryKillAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wipe_replica_raft_store() {
    twice(Fault::WipeReplicaStore).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_fsync_on_the_raft_leader() {
    twice(Fault::SlowFsyncLeader).await;
}
