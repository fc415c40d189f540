//! The imperative shell around `raftgres_ha::decide_postgres`: observe the
//! local Postgres, publish what it is, run the one action the table picks.

use crate::belief::{self, SharedBelief};
use crate::clock::mono_now;
use crate::requests::{LiveSettings, Operation, OperationRequest, Scripts};
use crate::send_if_changed::SendIfChanged;
use crate::systemd::Progress;
use anyhow::{Context, bail};
use raftgres_api::{OpError, ServerFacts, Standby};
use raftgres_consensus::Consensus;
use raftgres_ha::{
    CallbackEvent, CallbackRole, Configured, DataInfo, MonoInstant, PgAction, PgObservation,
    PgView, StandbyView, SyncStep, WaitFor, after_start, clone_source, decide_postgres,
    due_switchover, may_disarm, plan_sync, wait_for,
};
use raftgres_keeper::{KeeperClient, KeeperError, KeeperStatus, Request, StopMode};
use raftgres_postgres::{
    Control, PgError, PgSettings, Probe, ProgressSink, ReplicaSource, Role, SyncStandbys, Upstream,
    check_parameters, controldata, create_replica, initdb, is_initialized, rewind,
    write_managed_conf,
};
use raftgres_state::{
    ClusterState, Command, HostPort, Lsn, Member, PendingRestart, ScheduledRestart,
    member_slot_name,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod configure;
mod execute;
mod observe;
mod operations;
mod scheduled_restart;
mod slots;

/// A start (crash recovery included) or a clone may take this long.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const PROMOTE_WAIT: Duration = Duration::from_secs(20);
/// A fence kills with SIGKILL; only a process stuck in the kernel lasts.
const FENCE_TIMEOUT: Duration = Duration::from_secs(10);
/// The keeper only spawns the postmaster; readiness is waited for here.
const START_REQUEST: Duration = Duration::from_secs(10);

const LOOP_WAIT_BEFORE_CONFIG: Duration = Duration::from_millis(250);
/// How often Postgres is looked at while a switchover is under way: the
/// clients' write pause grows with every wait between its steps.
const SWITCHOVER_POLL: Duration = Duration::from_millis(20);

pub struct PgLoop {
    pub consensus: Consensus,
    /// This member's record as configured; the loop fills in the live fields.
    pub member: Member,
    /// `parameters` holds what the managed conf gets: the cluster's and this
    /// member's `postgresql.parameters` that Postgres accepts.
    pub settings: PgSettings,
    /// Which members still report (one observer for the whole agent).
    pub peers: crate::peers::SharedPeers,
    /// This member's own `postgresql.parameters`, from its settings file.
    pub file_parameters: BTreeMap<String, String>,
    pub belief: SharedBelief,
    pub view: watch::Sender<PgView>,
    /// What the last look saw beyond the view, for the status document.
    pub facts: watch::Sender<ServerFacts>,
    /// The keeper that runs this member's postmaster and holds its fence.
    pub keeper: tokio::sync::Mutex<KeeperClient>,
    /// The settings file, to start a new keeper with if this one is gone.
    pub config_path: std::path::PathBuf,
    pub restart_grace: Duration,
    pub operations: mpsc::Receiver<OperationRequest>,
    /// The local pgbouncer's state, published in the member record.
    pub pooler: Option<watch::Receiver<crate::pooler_loop::PoolerStatus>>,
    /// Parameters and tags, swapped by a reload.
    pub live: watch::Receiver<LiveSettings>,
    /// Beats while the loop goes round, for the systemd watchdog.
    pub progress: Progress,
    /// Runs `postgresql.callbacks` on starts, stops, reloads and role changes.
    pub callbacks: crate::callbacks::CallbackRunner,
    /// This member's scheduled restart, which the REST API sets and
    /// cancels: published in its record, run here when due, then cleared.
    pub scheduled: watch::Sender<Option<ScheduledRestart>>,
    /// The cluster's name, `--scope` of a replica creation program.
    pub scope: String,
}

/// What the loop remembers between rounds.
#[derive(Default)]
struct Local {
    /// The keeper runs a postmaster that this agent started or found.
    running: bool,
    /// The keeper's fence is armed.
    armed: bool,
    /// The newest timeline seen on the running postmaster (by PID): a
    /// standby never goes back, but once its WAL receiver disconnects (its
    /// upstream stopped for a switchover) Postgres 15 shows only the
    /// timeline of its last restartpoint.
    timeline_seen: Option<(u32, u32)>,
    /// The member whose Postgres ours was last configured to stream from.
    upstream: Option<String>,
    /// Set when Postgres died or failed to start; cleared once it runs.
    down_since: Option<MonoInstant>,
    /// First failed status query of a running postmaster.
    unanswered_since: Option<MonoInstant>,
    /// The status look's kept session, made at the first look.
    probe: Option<Probe>,
    heartbeat: u64,
    /// The record last sent, to send again only when it changed.
    published: Option<Member>,
    last_publish: Option<MonoInstant>,
    publishing: Option<tokio::task::JoinHandle<()>>,
    /// The members the primary last made replication slots for.
    slots_for: BTreeSet<String>,
    /// The permanent slots (the config's `slots`) this server keeps, at
    /// their `restart_lsn`, as the member record publishes them; `None`
    /// until first looked at, when the record last published stands.
    permanent_slots: Option<BTreeMap<String, Lsn>>,
    /// When Postgres was stopped for a switchover; kept while it stays
    /// stopped, since a paused cluster restarts or rewinds only such a server.
    switchover_stopped_at: Option<MonoInstant>,
    /// Failed actions in a row, for the backoff of the costly ones.
    failures: u32,
    /// The merged parameters last judged by Postgres (`check_parameters`).
    parameters_checked: Option<BTreeMap<String, String>>,
    /// The role this agent last started or promoted Postgres in, which
    /// tells a role change from a start for the callbacks.
    callback_role: Option<CallbackRole>,
    /// The parameters in the managed conf the running server last read.
    parameters_written: Option<BTreeMap<String, String>>,
    /// What the running server waits for a restart to apply.
    pending_restart: BTreeMap<String, PendingRestart>,
    /// The standbys streaming from this server while it is a primary.
    standbys: Vec<StandbyView>,
    /// What the running primary's commits were last configured to wait
    /// for; `None` when not known (after a start, a promotion, an agent
    /// restart), so it is configured again before anything widens.
    sync_configured: Option<Configured>,
}

/// `host:port` (or `[v6]:port`) of a member's Postgres.
fn upstream_of(state: &ClusterState, name: &str) -> Option<Upstream> {
    let HostPort { host, port } = state.members.get(name)?.pg_host_port()?;
    Some(Upstream { host, port })
}

impl PgLoop {
    fn me(&self) -> &str {
        &self.member.name
    }

    /// Queues the operator's callback for `event`, if one is configured.
    fn call_back(&self, event: CallbackEvent, role: CallbackRole) {
        let live = self.live.borrow();
        let scripts = &live.scripts;
        self.callbacks
            .call(&scripts.callbacks, scripts.timeout, event, role);
    }

    /// Runs the operator's hook `key` (`pre_promote`, `before_stop`)
    /// that `argv` picks from the scripts, and waits for it: `None` when
    /// none is configured, else whether it exited 0 in time.
    async fn run_hook(
        &self,
        key: &str,
        argv: fn(&Scripts) -> &Option<Vec<String>>,
    ) -> Option<bool> {
        let (argv, timeout) = {
            let live = self.live.borrow();
            (argv(&live.scripts).clone()?, live.scripts.timeout)
        };
        Some(self.callbacks.run_hook(key, &argv, timeout).await)
    }

    /// The cluster's `loop_wait`; before its config is known (first start),
    /// the default one.
    fn loop_wait(state: &ClusterState) -> Duration {
        state
            .timing()
            .map_or(LOOP_WAIT_BEFORE_CONFIG, |t| t.loop_wait)
    }

    /// One request to the keeper; a refusal or a lost keeper is an error
    /// that names what to do.
    async fn keeper(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<KeeperStatus, KeeperError> {
        self.keeper.lock().await.call(&request, timeout).await
    }

    pub async fn run(mut self, stop: CancellationToken) {
        let mut local = Local::default();
        let mut states = self.consensus.subscribe();
        // A paused pooler must reach the record at once: the holder waits for it.
        let mut pooler_changes = self.pooler.clone();
        // A restart scheduled or cancelled reaches the record at once too.
        let mut scheduled_changes = self.scheduled.subscribe();
        loop {
            self.progress.beat();
            self.take_live();
            let state = states.borrow_and_update().state.clone();
            let now = mono_now();
            let view = self.observe(&mut local, now).await;
            // Only a change wakes the lease loop, which reads this view.
            self.view.send_if_changed(view.clone());
            let holds_lease = belief::read(&self.belief).holds_valid(&state.lease, self.me(), now);
            self.apply_parameters(&mut local, &state, &view).await;
            self.manage_sync(&mut local, &state, &view, holds_lease)
                .await;
            self.publish(&mut local, &state, &view, now);
            let now_unix_ms = crate::clock::unix_ms();
            if !matches!(&view, PgView::Stopped { .. }) {
                local.switchover_stopped_at = None;
            } else if local.switchover_stopped_at.is_none()
                && holds_lease
                && due_switchover(&state, self.me(), now_unix_ms).is_some()
                && matches!(&view, PgView::Stopped { data } if data.was_primary)
            {
                // An agent restarted in the middle of a switchover finds its
                // primary stopped for it: carry on with the handover. Starting
                // it again would need a second shutdown checkpoint, which the
                // candidate, not streaming yet, would not replay in time.
                local.switchover_stopped_at = Some(now);
            }
            let peers = self.peers.snapshot();
            let observation = PgObservation {
                me: self.me(),
                state: &state,
                holds_lease,
                pg: &view,
                now,
                now_unix_ms,
                peers: &peers,
                switchover_stopped_at: local.switchover_stopped_at,
                promotion_vetoed: belief::read(&self.belief)
                    .promotion_vetoed(now, state.report_ttl()),
            };
            let action = decide_postgres(&observation);
            if local.armed && may_disarm(&observation, &action) {
                match self
                    .keeper(Request::Disarm, raftgres_keeper::client::QUICK)
                    .await
                {
                    Ok(status) => local.armed = status.armed.is_some(),
                    Err(e) => tracing::info!(member = self.me(), error = %e, "fence stays armed"),
                }
            }
            if view.serves_wal(holds_lease) {
                self.ensure_slots(&mut local, &state, &peers).await;
                self.ensure_permanent_slots(&mut local, &state, &view, holds_lease)
                    .await;
            } else {
                // A demoted member's slots go with its data (pg_rewind and
                // pg_basebackup copy none): when it runs again, it must
                // make them afresh.
                local.slots_for.clear();
            }
            if action != PgAction::None {
                tracing::info!(member = self.me(), ?action, epoch = %state.lease.epoch, "Postgres action");
                self.view.send_replace(PgView::Busy {
                    action: action_name(&action),
                });
                match self
                    .progress
                    .during(self.execute(&mut local, &state, &action))
                    .await
                {
                    Ok(()) => local.failures = 0,
                    Err(e) => {
                        local.failures = local.failures.saturating_add(1);
                        // A server that dies at once must not be restarted in
                        // a tight loop, nor a source copied from in one.
                        let delay = action.retry_delay(local.failures, Self::loop_wait(&state));
                        tracing::warn!(member = self.me(), ?action, error = %e, failures = local.failures, retry_in = ?delay, "Postgres action failed; will retry");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                }
                continue;
            }
            let restart = self
                .scheduled_restart(&mut local, &state, &view, now_unix_ms)
                .await;
            if restart == scheduled_restart::DueRestart::Ran {
                continue;
            }
            // Wake at the lease deadline at the latest: a holder that could not
            // renew fences itself then, not a loop tick later.
            let deadline = belief::read(&self.belief).holding.map(|h| h.deadline);
            let mut wake = Self::loop_wait(&state);
            if let scheduled_restart::DueRestart::WakeWithin(within) = restart {
                wake = wake.min(within);
            }
            if let Some(deadline) = deadline.filter(|_| view.is_writable_primary()) {
                wake = wake.min(deadline - now + Duration::from_millis(1));
            }
            if raftgres_ha::switchover_under_way(&state, now_unix_ms) {
                wake = wake.min(SWITCHOVER_POLL);
            }
            // A change of substance wakes this loop at once; the renewals
            // and heartbeats that change the state several times a second
            // at rest do not, or each would cost a Postgres probe.
            let seen = state.without_keepalives();
            let progress = self.progress.clone();
            let sleep = progress.during(tokio::time::sleep(wake));
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    changed = states.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if states.borrow().state.without_keepalives() != seen {
                            break;
                        }
                    }
                    _ = &mut sleep => break,
                    changed = async { pooler_changes.as_mut().expect("guarded").changed().await }, if pooler_changes.is_some() => {
                        if changed.is_err() {
                            pooler_changes = None;
                        }
                        break;
                    }
                    _ = scheduled_changes.changed() => break,
                    Some(request) = self.operations.recv() => {
                        self.serve(request, &mut local, &state, &view, holds_lease).await;
                        break;
                    }
                    _ = stop.cancelled() => return,
                }
            }
        }
        // Postgres keeps running under the keeper; the next agent attaches.
    }

    /// Takes what a reload changed: the next managed conf carries the new
    /// parameters, the next record the new tags.
    fn take_live(&mut self) {
        if !self.live.has_changed().unwrap_or(false) {
            return;
        }
        let live = self.live.borrow_and_update().clone();
        self.file_parameters = live.parameters;
        self.member.tags = live.tags;
    }
}

fn action_name(action: &PgAction) -> &'static str {
    match action {
        PgAction::None => "none",
        PgAction::Fence => "fence",
        PgAction::InitDb => "initdb",
        PgAction::RecordIdentity { .. } => "record identity",
        PgAction::StartPrimary => "start primary",
        PgAction::StartReplica { .. } => "start replica",
        PgAction::Promote => "promote",
        PgAction::Follow { .. } => "follow",
        PgAction::Rewind { .. } => "rewind",
        PgAction::Clone { .. } => "clone",
        PgAction::StopForSwitchover => "stop for switchover",
        PgAction::AbandonSwitchover { .. } => "abandon switchover",
    }
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Restart(_) => "restart",
        Operation::Reload => "reload",
        Operation::Reinitialize => "reinitialize",
    }
}

/// Patroni's name for the state of a Postgres that is busy with `action`
/// (one of [`action_name`], [`operation_name`], or the agent's own
/// "starting" and "waiting for the keeper"), for the status document.
pub fn patroni_state(action: &str) -> &'static str {
    match action {
        "clone" | "reinitialize" => "creating replica",
        "rewind" => "rewinding",
        "initdb" => "initializing new cluster",
        "restart" => "restarting",
        "fence" | "stop for switchover" => "stopping",
        "reload" | "promote" | "follow" | "record identity" | "none" => "running",
        _ => "starting",
    }
}
