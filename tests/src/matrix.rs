//! The fault matrix: one fault at a time on a healthy lab, under a workload
//! that does what real clients do across a fault, then the checker.
//!
//! Workload, all writing unique ids with the server's timeline:
//! - a client whose connection to the old primary was opened before the
//!   fault, inserting every 50 ms until its connection fails;
//! - short autocommit inserts through HAProxy's write port (a new
//!   connection after any failure), each telling which server took it;
//! - a statement running across the fault on the old primary: CPU-bound for
//!   several seconds, writing at its end.
//!
//! On a lab in network namespaces the first and the last run inside the old
//! primary's namespace, as its local clients would: cut off from the rest,
//! they still reach it, which is what an isolated primary's fence must stop.
//!
//! Checker, once the fault healed and the cluster is healthy again: no
//! write acknowledged by a member after another member's first
//! acknowledged write; never two writable primaries at once (polled
//! throughout); acknowledged writes missing on the final primary, counted
//! in asynchronous replication and none allowed in synchronous; no panic in
//! any agent or keeper log.

use crate::{PrimaryMonitor, dsn, execute, lab_dir, postmaster_pid, writable};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres_lab::{Impairment, Lab, LabNetwork};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

mod fault;
mod report;
mod workload;

pub use fault::{Fault, Replication, Setup};
use fault::{LOSSY_LINK, SLOW_LINK};
pub use report::{RunReport, markdown};
use report::{longest_gap, panics_in_logs, split_brain};
use workload::{Ack, ENTRY_WRITER, Workload, connect};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS matrix_writes \
                     (id bigint PRIMARY KEY, member text, timeline int)";

/// The timeline the server writes on now.
const TIMELINE: &str = "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int";

const EVERY: Duration = Duration::from_millis(50);

/// How long writes may take to come back before the run counts as failed.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);

const HEAL_BOUND: Duration = Duration::from_secs(90);

/// Size of each member's data disk for [`Setup::SmallDisks`]: room for a
/// fresh cluster, its WAL and a clone, little enough to fill at once.
const SMALL_DISK_MIB: u64 = 768;

/// A lab set up for one fault. Fields drop in order: the processes stop
/// before their namespaces and directory go.
pub struct MatrixLab {
    pub lab: Lab,
    pub net: Option<LabNetwork>,
    pub replication: Replication,
    dir: Option<tempfile::TempDir>,
}

impl Drop for MatrixLab {
    /// A failed run keeps its directory (logs, data) for the post-mortem.
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("lab kept for inspection: {}", dir.keep().display());
        }
    }
}

impl MatrixLab {
    /// A healthy three-member lab as `fault` needs it, and its primary.
    pub async fn start(fault: Fault) -> (MatrixLab, String) {
        Self::start_in(fault, Replication::Asynchronous).await
    }

    /// Like [`MatrixLab::start`], in `replication` mode (synchronous: once
    /// the primary has a synchronous standby).
    pub async fn start_in(fault: Fault, replication: Replication) -> (MatrixLab, String) {
        let dir = lab_dir();
        let mut spec = crate::lab_spec(dir.path(), 3, false);
        let mut net = None;
        let lab = match fault.setup() {
            Setup::Netns => {
                let network = LabNetwork::create(3).expect("create the lab network");
                let lab =
                    Lab::up_in_netns(&spec, &network.members()).expect("lab up in namespaces");
                net = Some(network);
                lab
            }
            Setup::SmallDisks => {
                spec.data_disk_mib = Some(SMALL_DISK_MIB);
                Lab::up(&spec).expect("lab up on small disks")
            }
            Setup::CopiedBinaries => {
                spec.copy_pg_binaries = true;
                Lab::up(&spec).expect("lab up on copied binaries")
            }
            Setup::SlowFsync => {
                spec.agent_preload = Some(build_slow_fsync(dir.path()));
                Lab::up(&spec).expect("lab up with the slow-fsync library")
            }
            Setup::Loopback => Lab::up(&spec).expect("lab up"),
        };
        let primary = match lab.wait_healthy(Duration::from_secs(60)).await {
            Ok(primary) => primary,
            Err(e) => panic!(
                "{}: lab not healthy: {e}; kept in {}",
                fault.name(),
                dir.keep().display()
            ),
        };
        let mut m = MatrixLab {
            lab,
            net,
            replication: Replication::Asynchronous,
            dir: Some(dir),
        };
        m.switch_to(replication, &primary).await;
        (m, primary)
    }

    /// Puts the healthy lab, whose primary is `primary`, in `replication`
    /// mode; the next run waits for a synchronous standby if it needs one.
    pub async fn switch_to(&mut self, replication: Replication, primary: &str) {
        let api = crate::http::Api::of(&self.lab);
        let url = self.lab.member(primary).expect("member").api_url.clone();
        let reply = api
            .send(
                "PATCH",
                &url,
                "/config",
                &json!({ "synchronous_mode": replication.setting() }),
            )
            .await
            .expect("PATCH /config");
        assert_eq!(reply.status, 200, "{} mode: {reply:?}", replication.name());
        self.replication = replication;
    }
}

/// Waits until `primary` has a synchronous standby, both in the Raft state
/// (as `/cluster` shows) and in Postgres (`pg_stat_replication`).
/// Waits until the primary's commits wait for a standby the Raft state
/// names (`role` in `/cluster`, `state` in `pg_stat_replication`).
async fn wait_synchronous(lab: &Lab, primary: &str, role: &str, state: &str) {
    let api = crate::http::Api::of(lab);
    let url = crate::http::api_url(lab, primary);
    crate::eventually(HEAL_BOUND, "a synchronous standby", || async {
        let cluster = api.get(&url, "/cluster").await.ok()?;
        let named = cluster.body["members"]
            .as_array()?
            .iter()
            .any(|m| m["role"] == role);
        let confirmed = crate::query_i64(
            &dsn(lab, primary),
            &format!("SELECT count(*) FROM pg_stat_replication WHERE sync_state = '{state}'"),
        )
        .await
        .ok()?
            > 0;
        (named && confirmed).then_some(())
    })
    .await;
}

/// The file whose number of milliseconds [`Setup::SlowFsync`]'s library
/// sleeps before each fsync, in a member's directory.
const SLOW_FSYNC_FILE: &str = "slow-fsync-ms";

const SLOW_FSYNC_MS: &str = "400";

/// Compiles `tests/src/slow_fsync.c` into `dir` with the system's C compiler.
fn build_slow_fsync(dir: &std::path::Path) -> std::path::PathBuf {
    let source = dir.join("slow_fsync.c");
    let library = dir.join("slow_fsync.so");
    std::fs::write(&source, include_str!("slow_fsync.c")).expect("write slow_fsync.c");
    crate::process::run_ok(
        std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&library)
            .arg(&source),
        "cc (install gcc) to build the slow-fsync library",
    );
    library
}

/// The data directory of the member `primary` sees as Raft leader.
async fn raft_leader_dir(lab: &Lab, primary: &str) -> std::path::PathBuf {
    let leader = crate::status(lab, primary)
        .await
        .expect("the primary's status")
        .raft_leader;
    lab.description
        .members
        .iter()
        .find(|m| m.node_id == leader)
        .unwrap_or_else(|| panic!("no member has the Raft leader's id {leader}"))
        .data_dir
        .clone()
}

async fn timeline_of(dsn: &str) -> i32 {
    match connect(dsn).await {
        Some(c) => c
            .query_one(&format!("SELECT {TIMELINE}"), &[])
            .await
            .ok()
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or(0),
        None => 0,
    }
}

/// Runs `fault` once on a healthy lab whose primary is `primary`, heals it,
/// and returns the report. The lab is healthy again on return.
pub async fn run_once(m: &mut MatrixLab, primary: &str, fault: Fault, run: u32) -> RunReport {
    let MatrixLab {
        lab,
        net,
        replication,
        ..
    } = m;
    let replication = *replication;
    let net = net.as_ref();
    match replication {
        Replication::Asynchronous => {}
        Replication::Synchronous => wait_synchronous(lab, primary, "sync_standby", "sync").await,
        Replication::Quorum => wait_synchronous(lab, primary, "quorum_standby", "quorum").await,
    }
    execute(&dsn(lab, primary), TABLE)
        .await
        .expect("the writes table");
    let timeline_before = timeline_of(&dsn(lab, primary)).await;
    let monitor = PrimaryMonitor::start(lab);
    let workload = Workload::start(lab, primary, run).await;
    // Let the workload reach a steady pace before the fault.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replica = lab
        .names()
        .into_iter()
        .find(|n| n != primary && lab.member(n).is_ok_and(|m| m.dsn.is_some()))
        .expect("a replica");
    if fault == Fault::WipeReplicaStore {
        crate::wait_place_recorded(lab, &replica).await;
    }
    let has_entry = workload.has_entry;
    let primary_ns = lab.member(primary).expect("member").netns.clone();
    let cut = |what: &dyn Fn(&LabNetwork, &str) -> Result<(), raftgres_lab::LabError>| {
        let (net, ns) = (
            net.expect("a lab in network namespaces"),
            primary_ns.as_deref().expect("the primary's namespace"),
        );
        what(net, ns).expect("cut the primary's network");
    };
    let disk = lab.member(primary).expect("member").pg_disk.clone();
    let slow_leader = match fault {
        Fault::SlowFsyncLeader => Some(raft_leader_dir(lab, primary).await.join(SLOW_FSYNC_FILE)),
        _ => None,
    };
    let postmaster_before = postmaster_pid(lab, primary);
    let injected = Instant::now();
    let mut stopped: Vec<i32> = Vec::new();
    let mut restart = Vec::new();
    let mut refused = None;
    match fault {
        Fault::KillPostgres => {
            if let Some(pid) = postmaster_pid(lab, primary) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        Fault::KillAgent => {
            lab.kill(primary).expect("SIGKILL the agent");
            restart.push(primary.to_owned());
        }
        Fault::StopAgent => {
            let pid = lab.member(primary).expect("member").agent_pid as i32;
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            stopped.push(pid);
        }
        Fault::StopPostmaster => {
            if let Some(pid) = postmaster_pid(lab, primary) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
                stopped.push(pid);
            }
        }
        Fault::KillHost => {
            lab.kill_host(primary).expect("kill the host");
            restart.push(primary.to_owned());
        }
        Fault::RestartAgent => {
            lab.restart_agent(primary, Duration::from_secs(30))
                .expect("restart the agent");
        }
        Fault::KillReplicaAgent => {
            lab.kill(&replica).expect("SIGKILL the replica's agent");
            restart.push(replica.clone());
        }
        Fault::RestartDuringSwitchover => {
            let api = crate::http::Api::of(lab);
            let url = crate::http::api_url(lab, primary);
            let body = json!({ "leader": primary, "candidate": replica });
            let request =
                tokio::spawn(async move { api.send("POST", &url, "/switchover", &body).await });
            tokio::time::sleep(Duration::from_millis(300)).await;
            lab.restart_agent(primary, Duration::from_secs(30))
                .expect("restart the agent");
            let _ = tokio::time::timeout(Duration::from_secs(30), request).await;
        }
        Fault::IsolatePrimary => cut(&LabNetwork::isolate),
        Fault::CutToPrimary => cut(&LabNetwork::cut_inbound),
        Fault::CutFromPrimary => cut(&LabNetwork::cut_outbound),
        Fault::SlowPrimaryLink => cut(&|net, ns| net.impair(ns, SLOW_LINK)),
        Fault::LossyPrimaryLink => cut(&|net, ns| net.impair(ns, LOSSY_LINK)),
        Fault::FillPrimaryDisk => {
            let disk = disk.as_deref().expect("a lab on small disks");
            raftgres_lab::fill_disk(disk).expect("fill the primary's disk");
            // As a busier workload would: the next WAL segment needs room.
            let _ = execute(&dsn(lab, primary), "SELECT pg_switch_wal()").await;
        }
        Fault::ReplaceBinaryKillAgent => {
            let bin_dir = lab
                .description
                .pg_bin_dir
                .clone()
                .expect("a lab on copied binaries");
            raftgres_lab::replace_postgres(&bin_dir).expect("replace the postgres binary");
            lab.kill(primary).expect("SIGKILL the agent");
            restart.push(primary.to_owned());
        }
        Fault::WipeReplicaStore => {
            crate::wipe_raft_store_and_restart(lab, &replica);
            refused = Some(replica.clone());
        }
        Fault::SlowFsyncLeader => {
            let leader = slow_leader
                .as_ref()
                .expect("the Raft leader's slow-fsync file");
            std::fs::write(leader, SLOW_FSYNC_MS).expect("slow the leader's fsync");
        }
    }
    // Until writes are acknowledged again (by the entry-point writer, or
    // any primary without one); the fault lasts at least its hold time.
    let mut writes_again = None;
    let recovery_deadline = injected + RECOVERY_BOUND;
    let hold = fault.hold();
    while Instant::now() < recovery_deadline
        && (writes_again.is_none() || injected.elapsed() < hold)
    {
        if injected.elapsed() >= hold {
            for pid in stopped.drain(..) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
            if let (Fault::FillPrimaryDisk, Some(disk)) = (fault, &disk) {
                raftgres_lab::free_disk(disk).expect("free the primary's disk");
            }
        }
        if writes_again.is_none() {
            writes_again = workload
                .acks()
                .iter()
                .filter(|a| a.sent > injected && a.id >> 40 == ENTRY_WRITER)
                .map(|a| a.at - injected)
                .min();
        }
        if writes_again.is_none()
            && !has_entry
            && let [one] = writable(lab).await.as_slice()
            && execute(&dsn(lab, one), "SELECT 1").await.is_ok()
        {
            writes_again = Some(injected.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Heal: resume what was stopped, start what was killed.
    for pid in stopped.drain(..) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    }
    if let (Some(net), Some(ns)) = (net, &primary_ns) {
        net.heal(ns).expect("heal the primary's network");
    }
    if let Some(disk) = &disk {
        raftgres_lab::free_disk(disk).expect("free the primary's disk");
    }
    if let Some(file) = &slow_leader {
        std::fs::write(file, "0").expect("give the leader its fast fsync back");
    }
    if let Some(wiped) = &refused {
        crate::readd_refused_member(lab, wiped, primary).await;
    }
    // A frozen agent may still hold its old view for a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in &restart {
        lab.start(name).expect("restart the agent");
    }
    let new_primary = lab.wait_healthy(HEAL_BOUND).await.unwrap_or_else(|e| {
        panic!(
            "{} run {run}: not healthy after the fault: {e}",
            fault.name()
        )
    });
    // The entry point may route to the new primary only after a health
    // check or two: give the writer the time to reach it.
    if has_entry {
        let deadline = Instant::now() + RECOVERY_BOUND;
        while Instant::now() < deadline
            && !workload
                .acks()
                .iter()
                .any(|a| a.id >> 40 == ENTRY_WRITER && a.sent > injected && a.member == new_primary)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let acks = workload.finish().await;
    let two_writable = monitor.two_seen().await;
    let final_ids: BTreeSet<i64> = match connect(&dsn(lab, &new_primary)).await {
        Some(c) => c
            .query("SELECT id FROM matrix_writes", &[])
            .await
            .map(|rows| rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
            .unwrap_or_default(),
        None => BTreeSet::new(),
    };
    let lost = acks.iter().filter(|a| !final_ids.contains(&a.id)).count();
    let entry: Vec<&Ack> = acks
        .iter()
        .filter(|a| a.id >> 40 == ENTRY_WRITER && a.sent > injected)
        .collect();
    let (writes_again, longest_write_gap) = if has_entry {
        (
            entry
                .iter()
                .filter(|a| a.member == new_primary)
                .map(|a| a.at - injected)
                .min(),
            longest_gap(&entry, injected),
        )
    } else {
        (writes_again, None)
    };
    let primary_kept = new_primary == primary && postmaster_pid(lab, primary) == postmaster_before;
    RunReport {
        fault,
        replication,
        run,
        old_primary: primary.to_owned(),
        new_primary: new_primary.clone(),
        writes_again,
        longest_write_gap,
        split_brain_writes: split_brain(&acks),
        lost_acknowledged: lost,
        acknowledged: acks.len(),
        two_writable,
        primary_kept,
        timeline_before,
        timeline_after: timeline_of(&dsn(lab, &new_primary)).await,
        timelines_written: acks.iter().map(|a| a.timeline).filter(|t| *t > 0).collect(),
        panics: panics_in_logs(lab),
    }
}
