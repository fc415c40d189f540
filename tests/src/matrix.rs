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

use crate::{PrimaryMonitor, agent_bin, dsn, execute, lab_dir, postmaster_pid, writable};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres_lab::{Impairment, Lab, LabNetwork, LabSpec};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS matrix_writes \
                     (id bigint PRIMARY KEY, member text, timeline int)";
/// The timeline the server writes on now.
const TIMELINE: &str = "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int";
const EVERY: Duration = Duration::from_millis(50);
/// How long writes may take to come back before the run counts as failed.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);
const HEAL_BOUND: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of the primary's postmaster; its agent lives.
    KillPostgres,
    /// SIGKILL of the primary's agent; its keeper fences at the deadline.
    KillAgent,
    /// SIGSTOP of the primary's agent for 8 s.
    StopAgent,
    /// SIGSTOP of the primary's postmaster only; backends still run.
    StopPostmaster,
    /// The primary's host lost: agent, keeper, guard and Postgres at once.
    KillHost,
    /// The primary's agent restarted: no failover expected.
    RestartAgent,
    /// A replica's agent SIGKILLed and restarted: no failover expected.
    KillReplicaAgent,
    /// A switchover, with the primary's agent restarted while it runs.
    RestartDuringSwitchover,
    /// The primary cut off from every other member and from the clients
    /// outside its host (network namespaces).
    IsolatePrimary,
    /// A one-way partition: nothing reaches the primary, what it sends
    /// still arrives.
    CutToPrimary,
    /// The other way: nothing the primary sends arrives.
    CutFromPrimary,
    /// Every frame to and from the primary 100 ms late for 10 s: a round
    /// trip of 200 ms, across a continent, still inside the default Raft
    /// timing (elections after 250 to 500 ms of silence).
    SlowPrimaryLink,
    /// A fifth of the frames to and from the primary lost for 10 s.
    LossyPrimaryLink,
    /// The filesystem under the primary's data directory full for 8 s.
    FillPrimaryDisk,
    /// The `postgres` binary replaced (a package upgrade) under the running
    /// primary, then its agent SIGKILLed: the fence must still find the
    /// server's processes.
    ReplaceBinaryKillAgent,
    /// A replica's Raft store wiped and its agent restarted under its old
    /// id: refused; then removed and re-added as the refusal says.
    WipeReplicaStore,
    /// Every fsync of the Raft leader's agent takes 400 ms for 10 s (a
    /// library preloaded into the agents sleeps before the real call).
    SlowFsyncLeader,
}

/// The lab a fault needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Loopback,
    /// Every member in a network namespace of its own (root only).
    Netns,
    /// Postgres' data directories on small filesystems (root only).
    SmallDisks,
    /// Postgres run from the lab's own copy of its binaries.
    CopiedBinaries,
    /// Agents with `tests/src/slow_fsync.c` preloaded.
    SlowFsync,
}

impl Fault {
    pub const ALL: [Fault; 17] = [
        Fault::KillPostgres,
        Fault::KillAgent,
        Fault::StopAgent,
        Fault::StopPostmaster,
        Fault::KillHost,
        Fault::RestartAgent,
        Fault::KillReplicaAgent,
        Fault::RestartDuringSwitchover,
        Fault::IsolatePrimary,
        Fault::CutToPrimary,
        Fault::CutFromPrimary,
        Fault::SlowPrimaryLink,
        Fault::LossyPrimaryLink,
        Fault::FillPrimaryDisk,
        Fault::ReplaceBinaryKillAgent,
        Fault::WipeReplicaStore,
        Fault::SlowFsyncLeader,
    ];

    /// How long the fault lasts at least before it is healed.
    pub fn hold(self) -> Duration {
        match self {
            // A killed agent stays down long enough for its keeper's
            // deadline to pass, so the fence (not a restarted agent) acts.
            Fault::KillAgent
            | Fault::ReplaceBinaryKillAgent
            | Fault::StopAgent
            | Fault::FillPrimaryDisk => Duration::from_secs(8),
            Fault::IsolatePrimary
            | Fault::CutToPrimary
            | Fault::CutFromPrimary
            | Fault::SlowPrimaryLink
            | Fault::LossyPrimaryLink
            | Fault::SlowFsyncLeader => Duration::from_secs(10),
            _ => Duration::ZERO,
        }
    }

    /// Faults that must cost no failover and no Postgres restart: the
    /// primary's postmaster is the same process before and after. The slow
    /// fsync should not either, and every run reports whether it did, but
    /// it is not asserted: a renewal then takes up to two 400 ms flushes
    /// against a one-second operation timeout, a margin a loaded machine
    /// can eat. `crates/consensus/tests/slow_disk.rs` asserts the mechanism
    /// (group commit) instead.
    pub fn keeps_primary(self) -> bool {
        matches!(
            self,
            Fault::RestartAgent | Fault::KillReplicaAgent | Fault::WipeReplicaStore
        )
    }

    pub fn setup(self) -> Setup {
        match self {
            Fault::IsolatePrimary
            | Fault::CutToPrimary
            | Fault::CutFromPrimary
            | Fault::SlowPrimaryLink
            | Fault::LossyPrimaryLink => Setup::Netns,
            Fault::FillPrimaryDisk => Setup::SmallDisks,
            Fault::ReplaceBinaryKillAgent => Setup::CopiedBinaries,
            Fault::SlowFsyncLeader => Setup::SlowFsync,
            _ => Setup::Loopback,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillPostgres => "SIGKILL primary postmaster",
            Fault::KillAgent => "SIGKILL primary agent, down 8 s",
            Fault::StopAgent => "SIGSTOP primary agent 8 s",
            Fault::StopPostmaster => "SIGSTOP primary postmaster",
            Fault::KillHost => "primary host lost",
            Fault::RestartAgent => "restart primary agent",
            Fault::KillReplicaAgent => "SIGKILL + restart replica agent",
            Fault::RestartDuringSwitchover => "restart primary agent during switchover",
            Fault::IsolatePrimary => "primary isolated 10 s (netns)",
            Fault::CutToPrimary => "one-way 10 s: nothing reaches the primary",
            Fault::CutFromPrimary => "one-way 10 s: nothing leaves the primary",
            Fault::SlowPrimaryLink => "primary link +100 ms each way 10 s",
            Fault::LossyPrimaryLink => "primary link 20% loss each way 10 s",
            Fault::FillPrimaryDisk => "primary data disk full 8 s",
            Fault::ReplaceBinaryKillAgent => {
                "postgres binary replaced + SIGKILL primary agent, down 8 s"
            }
            Fault::WipeReplicaStore => "replica Raft store wiped",
            Fault::SlowFsyncLeader => "Raft leader's fsync 400 ms for 10 s",
        }
    }
}

const SLOW_LINK: Impairment = Impairment {
    delay: Duration::from_millis(100),
    loss: 0.0,
};
const LOSSY_LINK: Impairment = Impairment {
    delay: Duration::ZERO,
    loss: 0.2,
};

/// Size of each member's data disk for [`Setup::SmallDisks`]: room for a
/// fresh cluster, its WAL and a clone, little enough to fill at once.
const SMALL_DISK_MIB: u64 = 768;

/// The replication mode a matrix lab runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    Asynchronous,
    /// `synchronous_mode: true`: no acknowledged write may be lost.
    Synchronous,
    /// `synchronous_mode: quorum`: no acknowledged write may be lost.
    Quorum,
}

impl Replication {
    pub const ALL: [Replication; 3] = [
        Replication::Asynchronous,
        Replication::Synchronous,
        Replication::Quorum,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Replication::Asynchronous => "async",
            Replication::Synchronous => "sync",
            Replication::Quorum => "quorum",
        }
    }

    /// What `PATCH /config` sets `synchronous_mode` to.
    fn setting(self) -> serde_json::Value {
        match self {
            Replication::Asynchronous => json!(false),
            Replication::Synchronous => json!(true),
            Replication::Quorum => json!("quorum"),
        }
    }
}

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
        let mut spec = LabSpec::new(dir.path().to_owned(), 3, false, agent_bin());
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
        let api = crate::http::Api::for_lab(&raftgres_lab::LabDescription::path(
            &self.lab.description.dir,
        ));
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
    let api = crate::http::Api::for_lab(&raftgres_lab::LabDescription::path(&lab.description.dir));
    let url = lab.member(primary).expect("member").api_url.clone();
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
    let output = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .expect("run cc (install gcc) to build the slow-fsync library");
    assert!(
        output.status.success(),
        "cc failed to build the slow-fsync library: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    library
}

/// One acknowledged write.
#[derive(Debug, Clone)]
struct Ack {
    member: String,
    id: i64,
    timeline: i32,
    /// When the statement was sent.
    sent: Instant,
    at: Instant,
}

type Acks = Arc<Mutex<Vec<Ack>>>;

fn push(acks: &Acks, ack: Ack) {
    acks.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
}

/// Ids are unique across writers and runs: a writer's number in the top bits.
fn ids(writer: i64, run: u32) -> impl Iterator<Item = i64> {
    let base = (writer << 40) | (i64::from(run) << 24);
    base..base + (1 << 24)
}

async fn connect(dsn: &str) -> Option<tokio_postgres::Client> {
    let connecting = tokio_postgres::connect(dsn, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(2), connecting)
        .await
        .ok()?
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// One insert; which member took it, by the server's port.
async fn insert(
    client: &tokio_postgres::Client,
    id: i64,
    ports: &BTreeMap<i32, String>,
) -> Result<Ack, String> {
    let sql = format!(
        "INSERT INTO matrix_writes VALUES ($1, (SELECT setting FROM pg_settings WHERE name = 'cluster_name'), {TIMELINE}) \
         RETURNING inet_server_port(), timeline"
    );
    let sent = Instant::now();
    let row = tokio::time::timeout(Duration::from_secs(5), client.query_one(&sql, &[&id]))
        .await
        .map_err(|_| "no answer within 5s".to_owned())?
        .map_err(|e| e.to_string())?;
    let port: i32 = row.try_get(0).map_err(|e| e.to_string())?;
    let timeline: i32 = row.try_get(1).map_err(|e| e.to_string())?;
    Ok(Ack {
        member: ports
            .get(&port)
            .cloned()
            .unwrap_or_else(|| format!("port {port}")),
        id,
        timeline,
        sent,
        at: Instant::now(),
    })
}

/// The writer through the cluster's entry point (HAProxy or pgbouncer),
/// whose first ack after a fault says when writes came back.
const ENTRY_WRITER: i64 = 2;

/// Runs `work` in the network namespace `netns` when given (on a thread of
/// its own, so that only its sockets are there), else on this runtime.
fn beside(
    netns: Option<String>,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let Some(ns) = netns else {
        return tokio::spawn(work);
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        raftgres_lab::enter_netns(&ns).expect("enter the primary's namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime in the namespace");
        runtime.block_on(work);
        let _ = done.send(());
    });
    tokio::spawn(async move {
        let _ = finished.await;
    })
}

struct Workload {
    /// Whether an entry-point writer runs (HAProxy or pgbouncer installed).
    has_entry: bool,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    acks: Acks,
}

impl Workload {
    async fn start(lab: &Lab, primary: &str, run: u32) -> Workload {
        let ports: BTreeMap<i32, String> = lab
            .description
            .members
            .iter()
            .filter_map(|m| Some((i32::from(m.pg_port?), m.name.clone())))
            .collect();
        let (stop, stopped) = watch::channel(false);
        let acks: Acks = Arc::default();
        let mut tasks = Vec::new();
        let primary_dsn = dsn(lab, primary);
        let netns = lab.member(primary).expect("member").netns.clone();
        // The client connected before the fault, never reconnecting.
        {
            let (acks, ports, mut stopped) = (acks.clone(), ports.clone(), stopped.clone());
            let primary_dsn = primary_dsn.clone();
            tasks.push(beside(netns.clone(), async move {
                let old = connect(&primary_dsn)
                    .await
                    .expect("a connection to the primary before the fault");
                for id in ids(1, run) {
                    if *stopped.borrow() {
                        return;
                    }
                    match insert(&old, id, &ports).await {
                        Ok(ack) => push(&acks, ack),
                        Err(_) => return,
                    }
                    tokio::select! { _ = tokio::time::sleep(EVERY) => {}, _ = stopped.changed() => {} }
                }
            }));
        }
        // Autocommit inserts through HAProxy (or, without it, through a
        // replica's pgbouncer, which its agent points at the primary),
        // reconnecting after failures.
        let entry = lab.haproxy_dsn(true).or_else(|| {
            lab.description
                .members
                .iter()
                .find(|m| m.name != primary && m.dsn.is_some())
                .and_then(|m| m.pgbouncer_dsn.clone())
        });
        let has_entry = entry.is_some();
        if let Some(entry) = entry {
            let (acks, ports, mut stopped) = (acks.clone(), ports.clone(), stopped.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = None;
                for id in ids(ENTRY_WRITER, run) {
                    if *stopped.borrow() {
                        return;
                    }
                    if client.is_none() {
                        client = connect(&entry).await;
                    }
                    if let Some(c) = &client {
                        match insert(c, id, &ports).await {
                            Ok(ack) => push(&acks, ack),
                            Err(_) => client = None,
                        }
                    }
                    tokio::select! { _ = tokio::time::sleep(EVERY) => {}, _ = stopped.changed() => {} }
                }
            }));
        }
        // A CPU-bound statement across the fault, writing at its end.
        {
            let acks = acks.clone();
            let member = primary.to_owned();
            let id = ids(3, run).next().expect("an id");
            tasks.push(beside(netns, async move {
                let long = connect(&primary_dsn)
                    .await
                    .expect("a second connection to the primary");
                let sql = format!(
                    "DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN \
                     WHILE clock_timestamp() < t0 + interval '6 seconds' LOOP END LOOP; \
                     INSERT INTO matrix_writes VALUES ({id}, 'long', {TIMELINE}); END $$"
                );
                let sent = Instant::now();
                if long.batch_execute(&sql).await.is_ok() {
                    push(
                        &acks,
                        Ack {
                            member,
                            id,
                            timeline: 0,
                            sent,
                            at: Instant::now(),
                        },
                    );
                }
            }));
        }
        Workload {
            has_entry,
            stop,
            tasks,
            acks,
        }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn finish(self) -> Vec<Ack> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What one run of one fault showed.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub fault: Fault,
    pub replication: Replication,
    pub run: u32,
    pub old_primary: String,
    pub new_primary: String,
    /// From the fault to the first write, sent after it through the entry
    /// point (HAProxy, else pgbouncer), that the final primary acknowledged;
    /// without an entry point, until one primary answered.
    pub writes_again: Option<Duration>,
    /// The longest time, from the fault on, without an acknowledged write
    /// through the entry point.
    pub longest_write_gap: Option<Duration>,
    /// Writes a member acknowledged after another member's first.
    pub split_brain_writes: usize,
    /// Acknowledged writes missing on the final primary.
    pub lost_acknowledged: usize,
    pub acknowledged: usize,
    pub two_writable: bool,
    /// The old primary is the final one, with the postmaster it had
    /// before the fault.
    pub primary_kept: bool,
    pub timeline_before: i32,
    pub timeline_after: i32,
    /// The timelines acknowledged writes were made on.
    pub timelines_written: BTreeSet<i32>,
    pub panics: Vec<String>,
}

impl RunReport {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "fault": self.fault.name(),
            "replication": self.replication.name(),
            "run": self.run,
            "old_primary": self.old_primary,
            "new_primary": self.new_primary,
            "writes_again_ms": self.writes_again.map(|d| d.as_millis() as u64),
            "longest_write_gap_ms": self.longest_write_gap.map(|d| d.as_millis() as u64),
            "split_brain_writes": self.split_brain_writes,
            "lost_acknowledged_writes": self.lost_acknowledged,
            "acknowledged_writes": self.acknowledged,
            "two_writable_at_once": self.two_writable,
            "primary_kept": self.primary_kept,
            "timeline_before": self.timeline_before,
            "timeline_after": self.timeline_after,
            "timelines_written": self.timelines_written,
            "panics": self.panics,
        })
    }

    /// The verdict: what must hold in every run. Safety for every fault;
    /// for the faults that must not cost a failover, the primary kept.
    pub fn assert_safe(&self) {
        assert_eq!(
            self.split_brain_writes,
            0,
            "{} run {}: writes acknowledged by an old primary after the new one's first: {self:?}",
            self.fault.name(),
            self.run
        );
        assert!(
            !self.two_writable,
            "{} run {}: two writable primaries at once",
            self.fault.name(),
            self.run
        );
        assert!(
            self.replication == Replication::Asynchronous || self.lost_acknowledged == 0,
            "{} run {} in synchronous mode: {} acknowledged writes lost",
            self.fault.name(),
            self.run,
            self.lost_acknowledged
        );
        assert!(
            self.panics.is_empty(),
            "{} run {}: panics {:?}",
            self.fault.name(),
            self.run,
            self.panics
        );
        assert!(
            self.primary_kept || !self.fault.keeps_primary(),
            "{} run {}: the primary moved or its Postgres restarted ({} -> {}), which this fault must not cost",
            self.fault.name(),
            self.run,
            self.old_primary,
            self.new_primary
        );
        assert!(
            self.writes_again.is_some(),
            "{} run {}: no write succeeded within {RECOVERY_BOUND:?} of the fault",
            self.fault.name(),
            self.run
        );
    }
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

/// The longest time from `from` on without one of `acks`, up to the last.
fn longest_gap(acks: &[&Ack], from: Instant) -> Option<Duration> {
    let mut times: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    times.sort();
    let mut previous = from;
    let mut longest = None;
    for at in times {
        longest = longest.max(Some(at - previous));
        previous = at;
    }
    longest
}

/// Acks a member gave after a later member's first ack.
fn split_brain(acks: &[Ack]) -> usize {
    let mut first: BTreeMap<&str, Instant> = BTreeMap::new();
    for a in acks.iter().filter(|a| a.member != "long") {
        let at = first.entry(a.member.as_str()).or_insert(a.at);
        *at = (*at).min(a.at);
    }
    acks.iter()
        .filter(|a| {
            let mine = first.get(a.member.as_str()).copied().unwrap_or(a.at);
            first
                .iter()
                .any(|(m, at)| *m != a.member && *at > mine && a.at > *at)
        })
        .count()
}

fn panics_in_logs(lab: &Lab) -> Vec<String> {
    let mut found = Vec::new();
    for m in &lab.description.members {
        for log in [m.log.clone(), m.data_dir.join("keeper.log")] {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("panicked")) {
                found.push(format!("{}: {line}", log.display()));
            }
        }
    }
    found
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
            let api = crate::http::Api::for_lab(&raftgres_lab::LabDescription::path(
                &lab.description.dir,
            ));
            let url = lab.member(primary).expect("member").api_url.clone();
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

/// One figure of each run that has it, in seconds, in ascending order.
fn sorted_secs(runs: &[&RunReport], figure: impl Fn(&RunReport) -> Option<Duration>) -> Vec<f64> {
    let mut secs: Vec<f64> = runs
        .iter()
        .filter_map(|r| figure(r).map(|d| d.as_secs_f64()))
        .collect();
    secs.sort_by(f64::total_cmp);
    secs
}

/// The Markdown table of a set of runs: per fault, runs, time to writes
/// again (min / median / max), the longest write gap, runs that kept the
/// primary, split-brain writes, lost acknowledged writes.
pub fn markdown(reports: &[RunReport]) -> String {
    let mut out = String::from(
        "| fault | mode | runs | writes again min / median / max (s) | longest write gap median / max (s) | primary kept | split-brain writes | lost acknowledged writes | two writable | panics |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (fault, replication) in Fault::ALL
        .into_iter()
        .flat_map(|f| Replication::ALL.map(|r| (f, r)))
    {
        let runs: Vec<&RunReport> = reports
            .iter()
            .filter(|r| r.fault == fault && r.replication == replication)
            .collect();
        if runs.is_empty() {
            continue;
        }
        let times = sorted_secs(&runs, |r| r.writes_again);
        let spread = match times.as_slice() {
            [] => "none".to_owned(),
            t => format!(
                "{:.2} / {:.2} / {:.2}",
                t[0],
                t[t.len() / 2],
                t[t.len() - 1]
            ),
        };
        let gaps = sorted_secs(&runs, |r| r.longest_write_gap);
        let gap = match gaps.as_slice() {
            [] => "none".to_owned(),
            g => format!("{:.2} / {:.2}", g[g.len() / 2], g[g.len() - 1]),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            fault.name(),
            replication.name(),
            runs.len(),
            spread,
            gap,
            runs.iter().filter(|r| r.primary_kept).count(),
            runs.iter().map(|r| r.split_brain_writes).sum::<usize>(),
            runs.iter().map(|r| r.lost_acknowledged).sum::<usize>(),
            runs.iter().filter(|r| r.two_writable).count(),
            runs.iter().map(|r| r.panics.len()).sum::<usize>(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(member: &str, ms: u64, base: Instant) -> Ack {
        Ack {
            member: member.into(),
            id: 0,
            timeline: 1,
            sent: base + Duration::from_millis(ms),
            at: base + Duration::from_millis(ms),
        }
    }

    #[test]
    fn the_longest_gap_starts_at_the_fault() {
        let t = Instant::now();
        let (a, b, c) = (ack("a", 100, t), ack("a", 150, t), ack("b", 3150, t));
        assert_eq!(
            longest_gap(&[&c, &a, &b], t),
            Some(Duration::from_millis(3000))
        );
        assert_eq!(
            longest_gap(&[&a], t + Duration::from_millis(10)),
            Some(Duration::from_millis(90))
        );
        assert_eq!(longest_gap(&[], t), None);
    }

    #[test]
    fn split_brain_counts_only_old_writes_after_the_new_first() {
        let t = Instant::now();
        assert_eq!(
            split_brain(&[ack("a", 0, t), ack("a", 10, t), ack("b", 20, t)]),
            0
        );
        assert_eq!(
            split_brain(&[
                ack("a", 0, t),
                ack("b", 20, t),
                ack("a", 30, t),
                ack("b", 40, t)
            ]),
            1
        );
        assert_eq!(split_brain(&[ack("a", 0, t), ack("a", 50, t)]), 0);
    }
}
