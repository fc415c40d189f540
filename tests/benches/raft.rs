//! Raft benchmark on a real three-agent lab. Prints figures and writes
//! `target/bench/raft.json`; it asserts nothing about time.
//!
//! Run: `cargo build --workspace --bins --release && cargo bench -p raftgres-tests --bench raft`

use raftgres_lab::{Lab, member_channel};
use raftgres_proto::v1::{ProposeRequest, cluster_client::ClusterClient};
use raftgres_state::{Command, Epoch, LeaseVersion, Response};
use raftgres_tests::{lab_dir, member_with_id, other_member, report_bench, start_lab, status};
use std::time::{Duration, Instant};

const RENEWALS: usize = 300;
const KILL_TRIALS: usize = 5;

async fn propose(lab: &Lab, addr: &str, command: &Command) -> Result<Response, String> {
    let mut client = ClusterClient::new(member_channel(addr, lab.description.tls.as_ref()).await?);
    let request = ProposeRequest {
        command_json: serde_json::to_vec(command).map_err(|e| e.to_string())?,
        hops: 0,
    };
    let reply = tokio::time::timeout(Duration::from_secs(2), client.propose(request))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| e.message().to_owned())?;
    serde_json::from_slice(&reply.into_inner().response_json).map_err(|e| e.to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn healthy_lab() -> (tempfile::TempDir, Lab, String) {
    let dir = lab_dir();
    let (lab, holder) = start_lab(&dir, 3, false).await;
    (dir, lab, holder)
}

/// A renewal as the holder sends it, timed from send to committed reply.
async fn renewal_latencies(lab: &Lab, holder: &str, via: &str) -> Vec<Duration> {
    let addr = lab.member(via).expect("member").raft_addr.clone();
    let mut out = Vec::with_capacity(RENEWALS);
    for _ in 0..RENEWALS {
        let s = status(lab, holder).await.expect("holder status");
        let command = Command::RenewLease {
            member: holder.to_owned(),
            epoch: Epoch(s.lease_epoch),
            ttl_ms: 2000,
            lsn: None,
            timeline: None,
        };
        let start = Instant::now();
        if propose(lab, &addr, &command).await.is_ok() {
            out.push(start.elapsed());
        }
    }
    out.sort();
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (_dir, lab, holder) = healthy_lab().await;
    let s = status(&lab, &holder).await.expect("status");
    let leader = member_with_id(&lab, s.raft_leader).expect("leader");
    let follower = other_member(&lab, &[&leader]);
    let on_leader = renewal_latencies(&lab, &holder, &leader).await;
    let via_follower = renewal_latencies(&lab, &holder, &follower).await;
    drop(lab);

    let mut kill_to_commit = Vec::new();
    for trial in 0..KILL_TRIALS {
        let (_dir, mut lab, _) = healthy_lab().await;
        let s = status(&lab, &lab.names()[0]).await.expect("status");
        let leader = member_with_id(&lab, s.raft_leader).expect("leader");
        let survivor = other_member(&lab, &[&leader]);
        let addr = lab.member(&survivor).expect("member").raft_addr.clone();
        // A rejected command is still a committed one: it went through the log.
        let probe = Command::ReleaseLease {
            member: "nobody".into(),
            expected: LeaseVersion::default(),
            lsn: None,
        };
        let killed = Instant::now();
        lab.kill(&leader).expect("SIGKILL leader");
        loop {
            if propose(&lab, &addr, &probe).await.is_ok() {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "trial {trial}: no commit within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kill_to_commit.push(killed.elapsed());
    }
    kill_to_commit.sort();

    let report = serde_json::json!({
        "lease_renewal_commit_ms": {
            "samples": on_leader.len(),
            "on_raft_leader": { "p50": percentile(&on_leader, 0.5), "p99": percentile(&on_leader, 0.99) },
            "forwarded_by_follower": { "p50": percentile(&via_follower, 0.5), "p99": percentile(&via_follower, 0.99) },
        },
        "raft_leader_sigkill_to_next_commit_ms": {
            "trials": kill_to_commit.len(),
            "min": percentile(&kill_to_commit, 0.0),
            "median": percentile(&kill_to_commit, 0.5),
            "max": percentile(&kill_to_commit, 1.0),
        },
    });
    report_bench("raft", &report);
}
