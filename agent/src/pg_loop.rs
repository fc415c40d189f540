//! The imperative shell around `raftgres_ha::decide_postgres`: observe the
//! local Postgres, publish what it is, run the one action the table picks.

use crate::belief::{self, SharedBelief};
use crate::clock::mono_now;
use crate::requests::{LiveSettings, Operation, OperationRequest};
use crate::systemd::Progress;
use anyhow::{Context, bail};
use raftgres_api::OpError;
use raftgres_consensus::Consensus;
use raftgres_ha::{
    Configured, DataInfo, MonoInstant, PeerObserver, PgAction, PgObservation, PgView, StandbyView,
    SyncStep, WaitFor, decide_postgres, due_switchover, holder_running_primary, plan_sync,
    wait_for,
};
use raftgres_keeper::{KeeperClient, KeeperError, KeeperStatus, Request, StopMode};
use raftgres_postgres::{
    Control, PgError, PgSettings, Role, SyncStandbys, Upstream, basebackup, check_parameters,
    controldata, initdb, is_initialized, rewind, slot_name_for, write_managed_conf,
};
use raftgres_state::{
    ClusterState, Command, HostPort, Lsn, Member, MemberRole, PendingRestart, PgState,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// A start (crash recovery included) or a clone may take this long.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const PROMOTE_WAIT: Duration = Duration::from_secs(20);
/// A fence kills with SIGKILL; only a process stuck in the kernel lasts.
const FENCE_TIMEOUT: Duration = Duration::from_secs(10);
/// The keeper only spawns the postmaster; readiness is waited for here.
const START_REQUEST: Duration = Duration::from_secs(10);

const LOOP_WAIT_BEFORE_CONFIG: Duration = Duration::from_millis(250);

pub struct PgLoop {
    pub consensus: Consensus,
    /// This member's record as configured; the loop fills in the live fields.
    pub member: Member,
    /// `parameters` holds what the managed conf gets: the cluster's and this
    /// member's `postgresql.parameters` that Postgres accepts.
    pub settings: PgSettings,
    /// This member's own `postgresql.parameters`, from its settings file.
    pub file_parameters: BTreeMap<String, String>,
    pub belief: SharedBelief,
    pub view: watch::Sender<PgView>,
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
    heartbeat: u64,
    /// The record last sent, to send again only when it changed.
    published: Option<Member>,
    last_publish: Option<MonoInstant>,
    publishing: Option<tokio::task::JoinHandle<()>>,
    /// The members the primary last made replication slots for.
    slots_for: BTreeSet<String>,
    /// When Postgres was stopped for the pending switchover.
    switchover_stopped_at: Option<MonoInstant>,
    peers: PeerObserver,
    /// Failed actions in a row, for the backoff of the costly ones.
    failures: u32,
    /// The merged parameters last judged by Postgres (`check_parameters`).
    parameters_checked: Option<BTreeMap<String, String>>,
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

/// ha's `WaitFor` in Postgres's terms.
fn sync_standbys(wait: &WaitFor) -> SyncStandbys {
    match wait {
        WaitFor::Nobody => SyncStandbys::Nobody,
        WaitFor::AnyOne => SyncStandbys::AnyOne,
        WaitFor::All(names) => SyncStandbys::All(names.clone()),
        WaitFor::Any { n, names } => SyncStandbys::Any {
            n: *n,
            names: names.clone(),
        },
    }
}

/// How long a promotion waits for Postgres to read the synchronous
/// standbys it must wait for from its first commit.
const SYNC_CONFIG_WAIT: Duration = Duration::from_secs(5);

/// The longest wait between two tries of a clone or a rewind.
const COPY_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// How long to wait after `failures` failed tries in a row of `action`.
/// A clone or a rewind loads its source (pg_basebackup checkpoints and
/// switches WAL segments there, which the replica's slot then keeps), so
/// their retries back off exponentially; anything else is tried again
/// after one `loop_wait`, since a holder's start must not wait long.
fn retry_delay(action: &PgAction, failures: u32, loop_wait: Duration) -> Duration {
    match action {
        PgAction::Clone { .. } | PgAction::Rewind { .. } => loop_wait
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(COPY_BACKOFF_CAP.max(loop_wait)),
        _ => loop_wait,
    }
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

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut local = Local::default();
        let mut states = self.consensus.subscribe();
        // A paused pooler must reach the record at once: the holder waits for it.
        let mut pooler_changes = self.pooler.clone();
        loop {
            self.progress.beat();
            self.take_live();
            let state = states.borrow_and_update().state.clone();
            let now = mono_now();
            let view = self.observe(&mut local, now).await;
            // Only a change wakes the lease loop, which reads this view.
            self.view.send_if_modified(|v| {
                let changed = *v != view;
                if changed {
                    *v = view.clone();
                }
                changed
            });
            let holds_lease = belief::read(&self.belief).holds_valid(&state.lease, self.me(), now);
            self.apply_parameters(&mut local, &state, &view).await;
            self.manage_sync(&mut local, &state, &view, holds_lease)
                .await;
            self.publish(&mut local, &state, &view, now);
            local.peers.observe(&state, now);
            let now_unix_ms = crate::clock::unix_ms();
            if due_switchover(&state, self.me(), now_unix_ms).is_none() {
                local.switchover_stopped_at = None;
            } else if local.switchover_stopped_at.is_none()
                && holds_lease
                && matches!(&view, PgView::Stopped { data } if data.was_primary)
            {
                // An agent restarted in the middle of a switchover finds its
                // primary stopped for it: carry on with the handover. Starting
                // it again would need a second shutdown checkpoint, which the
                // candidate, not streaming yet, would not replay in time.
                local.switchover_stopped_at = Some(now);
            }
            let action = decide_postgres(&PgObservation {
                me: self.me(),
                state: &state,
                holds_lease,
                pg: &view,
                now,
                now_unix_ms,
                peers: &local.peers,
                switchover_stopped_at: local.switchover_stopped_at,
            });
            if local.armed
                && !holds_lease
                && !view.is_writable_primary()
                && action != PgAction::Fence
            {
                // The keeper refuses while any process of the server lives:
                // then its deadline kills them, and the next round disarms.
                match self
                    .keeper(Request::Disarm, raftgres_keeper::client::QUICK)
                    .await
                {
                    Ok(status) => local.armed = status.armed.is_some(),
                    Err(e) => tracing::info!(member = self.me(), error = %e, "fence stays armed"),
                }
            }
            if holds_lease && view.is_writable_primary() {
                self.ensure_slots(&mut local, &state).await;
            } else {
                // A demoted member's slots go with its data (pg_rewind and
                // pg_basebackup copy none): when it is primary again, it
                // must make them afresh.
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
                        let delay = retry_delay(&action, local.failures, Self::loop_wait(&state));
                        tracing::warn!(member = self.me(), ?action, error = %e, failures = local.failures, retry_in = ?delay, "Postgres action failed; will retry");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = shutdown.changed() => break,
                        }
                    }
                }
                continue;
            }
            // Wake at the lease deadline at the latest: a holder that could not
            // renew fences itself then, not a loop tick later.
            let deadline = belief::read(&self.belief).holding.map(|h| h.deadline);
            let mut wake = Self::loop_wait(&state);
            if let Some(deadline) = deadline.filter(|_| view.is_writable_primary()) {
                wake = wake.min(deadline - now + Duration::from_millis(1));
            }
            tokio::select! {
                changed = states.changed() => if changed.is_err() { break },
                _ = self.progress.during(tokio::time::sleep(wake)) => {}
                changed = async { pooler_changes.as_mut().expect("guarded").changed().await }, if pooler_changes.is_some() => {
                    if changed.is_err() {
                        pooler_changes = None;
                    }
                }
                Some(request) = self.operations.recv() => {
                    // A reload leaves Postgres serving: health checks must
                    // not drop the member for it.
                    if !matches!(request.operation, Operation::Reload) {
                        self.view.send_replace(PgView::Busy {
                            action: operation_name(request.operation),
                        });
                    }
                    self.take_live();
                    self.apply_parameters(&mut local, &state, &view).await;
                    let outcome = self.progress.during(self.operate(&mut local, &state, &view, holds_lease, request.operation)).await;
                    match &outcome {
                        Ok(message) => tracing::info!(member = self.me(), operation = ?request.operation, %message, "operator request done"),
                        Err(e) => tracing::warn!(member = self.me(), operation = ?request.operation, error = %e, "operator request failed"),
                    }
                    let _ = request.reply.send(outcome);
                }
                _ = shutdown.changed() => break,
            }
        }
        // Postgres keeps running under the keeper; the next agent attaches.
    }

    /// Synchronous replication, run by the holder (`plan_sync` decides).
    /// A server that may still take writes without a valid lease is never
    /// touched: letting it stop waiting would acknowledge commits that a
    /// promoted standby does not have.
    async fn manage_sync(
        &mut self,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
        holds_lease: bool,
    ) {
        if !holds_lease {
            if !view.is_writable_primary() {
                local.sync_configured = None;
            }
            return;
        }
        if !view.is_writable_primary() {
            // Starting or promoting: from its first commit the server waits
            // for the standbys the Raft state names.
            self.settings.synchronous_standbys = sync_standbys(&wait_for(state, None));
            local.sync_configured = None;
            return;
        }
        match plan_sync(
            state,
            self.me(),
            &local.standbys,
            local.sync_configured.as_ref(),
        ) {
            SyncStep::None => {}
            SyncStep::Commit {
                members,
                synchronous,
                quorum,
            } => {
                let command = Command::SetSyncSet {
                    member: self.me().to_owned(),
                    epoch: state.lease.epoch,
                    members: members.clone(),
                    synchronous,
                    quorum,
                };
                match self.consensus.propose(command).await {
                    Ok(Ok(_)) => tracing::info!(
                        member = self.me(),
                        epoch = %state.lease.epoch,
                        sync_set = ?members,
                        synchronous,
                        ?quorum,
                        "committed the synchronous standbys"
                    ),
                    Ok(Err(rejection)) => {
                        tracing::warn!(member = self.me(), %rejection, "synchronous standbys refused")
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "synchronous standbys not committed; retrying")
                    }
                }
            }
            SyncStep::Configure(wait) => {
                self.settings.synchronous_standbys = sync_standbys(&wait);
                match self.configure_sync(local).await {
                    Ok(at) => {
                        tracing::info!(
                            member = self.me(),
                            synchronous_standby_names = %self.settings.synchronous_standbys.setting(),
                            lsn = %at,
                            "Postgres waits for these standbys now"
                        );
                        local.sync_configured = Some(Configured {
                            wait,
                            at: Some(Lsn(at.0)),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "cannot set the synchronous standbys; retrying");
                        local.sync_configured = None;
                    }
                }
            }
        }
    }

    /// Writes and reloads the standbys the primary waits for, and returns
    /// its WAL position once a new session sees them: the commits it
    /// acknowledged under the old setting are at or below it.
    async fn configure_sync(&self, local: &mut Local) -> anyhow::Result<raftgres_postgres::Lsn> {
        self.write_conf(local, &Role::Primary)?;
        self.keeper(Request::Reload, raftgres_keeper::client::QUICK)
            .await?;
        self.await_sync_setting().await?;
        Ok(Control::new(&self.settings).status().await?.wal_lsn)
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

    /// Brings the managed conf to the cluster's `postgresql.parameters`
    /// under this member's own, and has a running server reload it: a
    /// setting Postgres can change while running takes effect at once, the
    /// others show as pending restart. A value this member's Postgres
    /// refuses is left out and logged, so that one bad edit cannot stop
    /// every member's next start.
    async fn apply_parameters(&mut self, local: &mut Local, state: &ClusterState, view: &PgView) {
        let wanted = raftgres_ha::postgres_parameters(state, &self.file_parameters);
        if local.parameters_checked.as_ref() != Some(&wanted) {
            self.settings.parameters = self.accepted_parameters(&wanted).await;
            local.parameters_checked = Some(wanted);
        }
        let running = local.running && matches!(view, PgView::Running { .. });
        if !running || local.parameters_written.as_ref() == Some(&self.settings.parameters) {
            return;
        }
        let role = self.current_role(local, state, view);
        if let Err(e) = self.write_conf(local, &role) {
            tracing::warn!(member = self.me(), error = %e, "cannot write the server settings; will retry");
            local.parameters_written = None;
            return;
        }
        match self
            .keeper(Request::Reload, raftgres_keeper::client::QUICK)
            .await
        {
            Ok(_) => tracing::info!(
                member = self.me(),
                parameters = ?self.settings.parameters,
                "server settings changed; Postgres reloaded them"
            ),
            Err(e) => {
                tracing::warn!(member = self.me(), error = %e, "cannot reload Postgres; will retry");
                local.parameters_written = None;
            }
        }
    }

    /// The part of `wanted` that Postgres takes: all of it, or, when it
    /// refuses something, this member's own parameters and each of the
    /// cluster's it takes alongside them.
    async fn accepted_parameters(
        &self,
        wanted: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let refusal = match check_parameters(&self.settings, wanted).await {
            Ok(()) => return wanted.clone(),
            Err(PgError::ParametersRefused { reason }) => reason,
            Err(e) => {
                tracing::warn!(member = self.me(), error = %e, "cannot have Postgres check the server settings; using them unchecked");
                return wanted.clone();
            }
        };
        if let Err(e) = check_parameters(&self.settings, &self.file_parameters).await {
            // Nothing to leave out: the member's own file is at fault.
            tracing::error!(member = self.me(), error = %e, "postgresql.parameters in this member's settings file hold a value Postgres refuses; correct the file and reload the agent");
            return wanted.clone();
        }
        let mut accepted = self.file_parameters.clone();
        for (name, value) in wanted {
            if accepted.contains_key(name) {
                continue;
            }
            let mut trial = accepted.clone();
            trial.insert(name.clone(), value.clone());
            match check_parameters(&self.settings, &trial).await {
                Ok(()) => accepted = trial,
                Err(e) => tracing::error!(
                    member = self.me(),
                    parameter = %name,
                    %value,
                    error = %e,
                    "the cluster's postgresql.parameters hold a value this member's Postgres refuses; \
                     leaving it out. Correct it with `raftgresctl edit-config`"
                ),
            }
        }
        tracing::debug!(member = self.me(), %refusal, "left refused settings out");
        accepted
    }

    /// Writes the managed conf for `role` with the current parameters.
    fn write_conf(&self, local: &mut Local, role: &Role) -> Result<(), PgError> {
        write_managed_conf(&self.settings, role)?;
        local.parameters_written = Some(self.settings.parameters.clone());
        Ok(())
    }

    async fn observe(&self, local: &mut Local, now: MonoInstant) -> PgView {
        let keeper = match self
            .keeper(Request::Status, raftgres_keeper::client::QUICK)
            .await
        {
            Ok(status) => status,
            Err(e) => {
                // A dead keeper's guard has killed the server; a new keeper
                // starts clean. A hung one refuses the new keeper's socket,
                // and its server may still run: nothing to do but wait.
                tracing::error!(member = self.me(), error = %e, "the keeper does not answer");
                if matches!(e, KeeperError::Unreachable { .. }) {
                    let socket = self.keeper.lock().await.socket().to_owned();
                    if let Err(e) = crate::keeper_link::attach(&self.config_path, &socket).await {
                        tracing::error!(member = self.me(), error = %e, "cannot start a new keeper");
                    }
                }
                return PgView::Busy {
                    action: "waiting for the keeper",
                };
            }
        };
        local.armed = keeper.armed.is_some();
        if keeper.postmaster_pid.is_some() && !local.running {
            tracing::info!(member = self.me(), pid = ?keeper.postmaster_pid, "found Postgres running under the keeper");
            local.running = true;
        }
        if local.running && keeper.postmaster_pid.is_none() {
            tracing::warn!(member = self.me(), status = ?keeper.last_exit, "Postgres exited unexpectedly");
            local.running = false;
            local.down_since.get_or_insert(now);
        }
        if local.running {
            match Control::new(&self.settings).status().await {
                Ok(st) => {
                    local.unanswered_since = None;
                    local.down_since = None;
                    let pid = keeper.postmaster_pid.unwrap_or(0);
                    let timeline = match local.timeline_seen {
                        Some((seen_pid, seen)) if seen_pid == pid => seen.max(st.timeline),
                        _ => st.timeline,
                    };
                    local.timeline_seen = Some((pid, timeline));
                    local.standbys = if st.in_recovery {
                        Vec::new()
                    } else {
                        st.replication
                            .iter()
                            .map(|r| StandbyView {
                                name: r.application_name.clone(),
                                streaming: r.state == "streaming",
                                synchronous: r.sync_state == "sync",
                                flushed: r.flush_lsn.map(|l| Lsn(l.0)),
                            })
                            .collect()
                    };
                    local.pending_restart = st
                        .pending_restart
                        .into_iter()
                        .map(|p| {
                            (
                                p.name,
                                PendingRestart {
                                    old_value: p.running,
                                    new_value: p.configured,
                                },
                            )
                        })
                        .collect();
                    return PgView::Running {
                        data: DataInfo {
                            system_id: st.system_id,
                            timeline,
                            was_primary: !st.in_recovery,
                            // A replica is judged by what it has applied:
                            // received but unreplayed WAL (replay paused,
                            // or slow) counts as lag.
                            lsn: Lsn(if st.in_recovery {
                                st.replay_lsn.unwrap_or(st.wal_lsn).0
                            } else {
                                st.wal_lsn.0
                            }),
                        },
                        in_recovery: st.in_recovery,
                        streaming: st
                            .wal_receiver
                            .as_ref()
                            .is_some_and(|w| w.status == "streaming"),
                        upstream: if st.in_recovery {
                            local.upstream.clone()
                        } else {
                            None
                        },
                    };
                }
                Err(e) => {
                    let since = *local.unanswered_since.get_or_insert(now);
                    tracing::warn!(member = self.me(), error = %e, "Postgres does not answer");
                    if now - since < self.restart_grace {
                        // Slow is not dead: keep the last view for a while.
                        return self.view.borrow().clone();
                    }
                    local.down_since.get_or_insert(since);
                }
            }
        }
        if !is_initialized(&self.settings.data_dir) {
            return PgView::Uninitialized;
        }
        let data = match controldata(&self.settings).await {
            Ok(c) => DataInfo {
                system_id: c.system_id,
                // A stopped replica that replayed a timeline switch but no
                // checkpoint on the new timeline yet is already on it.
                timeline: c.timeline.max(c.min_recovery_end_timeline),
                was_primary: c.state.was_primary(),
                lsn: Lsn(c.checkpoint_lsn.0.max(c.min_recovery_end_lsn.0)),
            },
            Err(e) => {
                tracing::error!(member = self.me(), error = %e, "cannot read the control file");
                return PgView::Down {
                    data: DataInfo {
                        system_id: String::new(),
                        timeline: 0,
                        was_primary: true,
                        lsn: Lsn(0),
                    },
                    since: local.down_since.unwrap_or(now),
                    alive: keeper.server_alive,
                };
            }
        };
        match local.down_since {
            Some(since) => PgView::Down {
                data,
                since,
                alive: keeper.server_alive,
            },
            None if keeper.server_alive => PgView::Down {
                data,
                since: now,
                alive: true,
            },
            None => PgView::Stopped { data },
        }
    }

    /// Publishes this member's live record when it changed, and at least
    /// every third of a ttl as a heartbeat for the others' freshness
    /// judgement. The commit runs in its own task: a member cut off from the
    /// majority must still reach its lease deadline on time.
    fn publish(&self, local: &mut Local, state: &ClusterState, view: &PgView, now: MonoInstant) {
        if local
            .publishing
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        let mut m = self.member.clone();
        if let Some(pooler) = &self.pooler {
            m.pooler = true;
            m.pooler_paused_epoch = pooler.borrow().paused_for;
        }
        let lease_held = state.lease.is_held_by(self.me());
        (m.role, m.pg_state) = match view {
            PgView::Absent => (MemberRole::Witness, PgState::Absent),
            PgView::Running {
                in_recovery: false, ..
            } if lease_held => (MemberRole::Primary, PgState::Running),
            PgView::Running {
                in_recovery: true, ..
            } => (MemberRole::Replica, PgState::Running),
            PgView::Running { .. } => (MemberRole::Unknown, PgState::Running),
            PgView::Busy { .. } => (MemberRole::Unknown, PgState::Starting),
            PgView::Stopped { .. } | PgView::Uninitialized => {
                (MemberRole::Unknown, PgState::Stopped)
            }
            PgView::Down { .. } => (MemberRole::Unknown, PgState::Crashed),
        };
        if let PgView::Running {
            data,
            in_recovery,
            streaming,
            ..
        } = view
        {
            m.timeline = Some(data.timeline);
            m.replay_lsn = Some(data.lsn);
            m.streaming = *in_recovery && *streaming;
            m.pending_restart = local.pending_restart.clone();
        }
        let ttl = state.report_ttl();
        let heartbeat_due = local
            .last_publish
            .is_none_or(|at| now - at >= raftgres_ha::heartbeat_interval(ttl));
        m.heartbeat = local.heartbeat;
        if !heartbeat_due && local.published.as_ref() == Some(&m) {
            return;
        }
        local.heartbeat += 1;
        m.heartbeat = local.heartbeat;
        local.last_publish = Some(now);
        local.published = Some(m.clone());
        let consensus = self.consensus.clone();
        let me = self.me().to_owned();
        local.publishing = Some(tokio::spawn(async move {
            match consensus
                .propose(Command::PublishMember { member: m })
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(rejection)) => {
                    tracing::error!(member = %me, %rejection, "member status refused")
                }
                Err(e) => tracing::debug!(member = %me, error = %e, "member status not committed"),
            }
        }));
    }

    /// Fails unless this member holds a valid lease at this very moment:
    /// the judgement that chose a start or a promotion may be older than
    /// the action it led to.
    fn require_lease(&self) -> anyhow::Result<()> {
        let state = self.consensus.local().state;
        if belief::read(&self.belief).holds_valid(&state.lease, self.me(), mono_now()) {
            Ok(())
        } else {
            bail!("the lease is no longer held here; not acting as primary")
        }
    }

    /// Stops the postmaster cleanly (the keeper fences it if it does not
    /// stop in time).
    async fn stop_postgres(&self, local: &mut Local) -> anyhow::Result<()> {
        if !local.running {
            return Ok(());
        }
        self.keeper(
            Request::Stop {
                mode: StopMode::Fast,
                timeout_ms: STOP_TIMEOUT.as_millis() as u64,
            },
            STOP_TIMEOUT + FENCE_TIMEOUT,
        )
        .await
        .context("cannot stop Postgres")?;
        local.running = false;
        Ok(())
    }

    async fn start(
        &self,
        local: &mut Local,
        role: Role,
        upstream: Option<String>,
    ) -> anyhow::Result<()> {
        self.stop_postgres(local).await?;
        let primary = matches!(role, Role::Primary);
        if primary {
            self.require_lease()?;
        }
        self.write_conf(local, &role)?;
        local.upstream = upstream;
        self.keeper(Request::Start { primary }, START_REQUEST)
            .await
            .context("cannot start Postgres")?;
        local.running = true;
        self.wait_ready(START_TIMEOUT).await
    }

    /// Waits until the server answers a query (a standby: accepts read-only
    /// connections), the postmaster exits, or `timeout` passes.
    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let log = self.settings.log_path();
        loop {
            let keeper = self
                .keeper(Request::Status, raftgres_keeper::client::QUICK)
                .await?;
            let Some(pid) = keeper.postmaster_pid else {
                bail!(
                    "Postgres exited while starting ({}); see {}",
                    keeper.last_exit.as_deref().unwrap_or("no status"),
                    log.display()
                );
            };
            let last = match Control::new(&self.settings).status().await {
                Ok(_) => {
                    tracing::info!(member = self.me(), pid, "Postgres accepts connections");
                    return Ok(());
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "Postgres (pid {pid}) did not accept connections within {timeout:?}: {last}; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn execute(
        &self,
        local: &mut Local,
        state: &ClusterState,
        action: &PgAction,
    ) -> anyhow::Result<()> {
        let result = self.execute_inner(local, state, action).await;
        if result.is_err()
            && matches!(
                action,
                PgAction::StartPrimary | PgAction::StartReplica { .. }
            )
        {
            local.down_since.get_or_insert(mono_now());
        }
        result
    }

    async fn execute_inner(
        &self,
        local: &mut Local,
        state: &ClusterState,
        action: &PgAction,
    ) -> anyhow::Result<()> {
        match action {
            PgAction::None => Ok(()),
            PgAction::Fence => {
                // When the server went unanswering, `down_since` stays: the
                // holder then releases the lease as for any dead server.
                self.keeper(Request::Fence, FENCE_TIMEOUT)
                    .await
                    .context("cannot fence Postgres")?;
                local.running = false;
                tracing::warn!(
                    member = self.me(),
                    "fenced Postgres: every process of the server is gone"
                );
                Ok(())
            }
            PgAction::InitDb => {
                let info = initdb(&self.settings).await?;
                tracing::info!(member = self.me(), system_id = %info.system_id, "created the database");
                self.start(local, Role::Primary, None).await
            }
            PgAction::RecordIdentity { system_id } => {
                match self
                    .consensus
                    .propose(Command::Initialize {
                        system_id: system_id.clone(),
                    })
                    .await
                {
                    Ok(Ok(_)) => {
                        tracing::info!(member = self.me(), %system_id, "recorded the cluster's identity")
                    }
                    Ok(Err(rejection)) => {
                        tracing::error!(member = self.me(), %rejection, "identity refused")
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "identity not committed; retrying")
                    }
                }
                Ok(())
            }
            PgAction::StartPrimary => self.start(local, Role::Primary, None).await,
            PgAction::StartReplica { upstream } => {
                let role = match upstream.as_deref().and_then(|u| upstream_of(state, u)) {
                    Some(up) => Role::Standby {
                        upstream: up,
                        slot: Some(slot_name_for(self.me())),
                    },
                    None => Role::DetachedStandby,
                };
                self.start(local, role, upstream.clone()).await
            }
            PgAction::Promote => {
                self.require_lease()?;
                let keeper = self
                    .keeper(Request::Status, raftgres_keeper::client::QUICK)
                    .await?;
                let now = crate::clock::nanos(mono_now());
                if keeper.armed.is_none_or(|a| a.deadline_ns <= now) {
                    bail!("the keeper's fence is not armed with a live deadline; not promoting");
                }
                self.configure_before_promotion(local, state).await?;
                let control = Control::new(&self.settings);
                if control.promote(PROMOTE_WAIT).await? {
                    // A checkpoint makes the new timeline visible to pg_rewind at once.
                    control.checkpoint(PROMOTE_WAIT).await?;
                    self.write_conf(local, &Role::Primary)?;
                    local.upstream = None;
                    tracing::info!(member = self.me(), epoch = %state.lease.epoch, "promoted");
                }
                Ok(())
            }
            PgAction::Follow { upstream } => {
                let Some(up) = upstream_of(state, upstream) else {
                    return Ok(());
                };
                self.write_conf(
                    local,
                    &Role::Standby {
                        upstream: up,
                        slot: Some(slot_name_for(self.me())),
                    },
                )?;
                local.upstream = Some(upstream.clone());
                if local.running {
                    self.keeper(Request::Reload, raftgres_keeper::client::QUICK)
                        .await?;
                }
                Ok(())
            }
            PgAction::Rewind { source } => {
                let Some(up) = upstream_of(state, source) else {
                    return Ok(());
                };
                self.stop_postgres(local).await?;
                let slot = slot_name_for(self.me());
                // A source that cannot be reached (just restarting, say) is
                // retried on the next round: the data is intact and a clone
                // would need the same source. Any other failure (pg_rewind's
                // own, or the crash recovery it needs first) falls back to a
                // fresh clone, which keeps the old data until the copy is complete.
                match rewind(&self.settings, &up, Some(&slot)).await {
                    Ok(()) => tracing::info!(member = self.me(), %source, "rewound to the primary"),
                    Err(e @ (PgError::Connect { .. } | PgError::Timeout { .. })) => {
                        tracing::warn!(member = self.me(), %source, error = %e, "rewind source not reachable; retrying the rewind");
                        return Err(e.into());
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "rewind failed; cloning afresh");
                        basebackup(&self.settings, &up, Some(&slot)).await?;
                    }
                }
                local.down_since = None;
                let role = Role::Standby {
                    upstream: up,
                    slot: Some(slot),
                };
                self.start(local, role, Some(source.clone())).await
            }
            PgAction::StopForSwitchover => {
                // A checkpoint first keeps the shutdown checkpoint, and so
                // the time without a writable primary, short.
                if let Err(e) = Control::new(&self.settings).checkpoint(PROMOTE_WAIT).await {
                    tracing::warn!(member = self.me(), error = %e, "checkpoint before the switchover failed; stopping anyway");
                }
                self.stop_postgres(local).await?;
                local.down_since = None;
                local.switchover_stopped_at = Some(mono_now());
                tracing::info!(member = self.me(), epoch = %state.lease.epoch, candidate = ?state.switchover.as_ref().and_then(|s| s.to.clone()), "switchover: stopped Postgres; waiting for the candidate to replay the shutdown checkpoint");
                Ok(())
            }
            PgAction::AbandonSwitchover { reason } => {
                tracing::warn!(member = self.me(), %reason, "abandoning the switchover");
                local.switchover_stopped_at = None;
                match self.consensus.propose(Command::CancelSwitchover).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(rejection)) => {
                        tracing::error!(member = self.me(), %rejection, "switchover cancel refused");
                        Ok(())
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "switchover cancel not committed; retrying");
                        Ok(())
                    }
                }
            }
            PgAction::Clone { source } => {
                let Some(up) = upstream_of(state, source) else {
                    return Ok(());
                };
                self.stop_postgres(local).await?;
                let slot = slot_name_for(self.me());
                basebackup(&self.settings, &up, Some(&slot)).await?;
                local.down_since = None;
                tracing::info!(member = self.me(), %source, "cloned from the primary");
                let role = Role::Standby {
                    upstream: up,
                    slot: Some(slot),
                };
                self.start(local, role, Some(source.clone())).await
            }
        }
    }

    /// Has the standby read which standbys its commits will wait for before
    /// it becomes a primary, so that it acknowledges none without them.
    async fn configure_before_promotion(
        &self,
        local: &mut Local,
        state: &ClusterState,
    ) -> anyhow::Result<()> {
        let wanted = self.settings.synchronous_standbys.setting();
        let control = Control::new(&self.settings);
        if control.setting("synchronous_standby_names").await? == wanted {
            return Ok(());
        }
        let role = self.standby_role(local, state);
        self.write_conf(local, &role)?;
        self.keeper(Request::Reload, raftgres_keeper::client::QUICK)
            .await?;
        self.await_sync_setting().await
    }

    /// Waits until a new session sees the `synchronous_standby_names` of
    /// the settings: the postmaster has read it.
    async fn await_sync_setting(&self) -> anyhow::Result<()> {
        let wanted = self.settings.synchronous_standbys.setting();
        let control = Control::new(&self.settings);
        let deadline = Instant::now() + SYNC_CONFIG_WAIT;
        loop {
            if control.setting("synchronous_standby_names").await? == wanted {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "Postgres did not take synchronous_standby_names = {wanted:?} within {SYNC_CONFIG_WAIT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The role Postgres runs in now, to restart or reload it as it is.
    fn current_role(&self, local: &Local, state: &ClusterState, view: &PgView) -> Role {
        if view.is_writable_primary() {
            return Role::Primary;
        }
        self.standby_role(local, state)
    }

    /// A standby streaming from the upstream it was last pointed at, or
    /// replaying what it has when that member is unknown.
    fn standby_role(&self, local: &Local, state: &ClusterState) -> Role {
        match local
            .upstream
            .as_deref()
            .and_then(|u| upstream_of(state, u))
        {
            Some(up) => Role::Standby {
                upstream: up,
                slot: Some(slot_name_for(self.me())),
            },
            None => Role::DetachedStandby,
        }
    }

    async fn operate(
        &self,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
        holds_lease: bool,
        operation: Operation,
    ) -> Result<String, OpError> {
        let failed =
            |what: &str, e: anyhow::Error| OpError::Unavailable(format!("{what} failed: {e:#}"));
        match operation {
            Operation::Restart => {
                if !local.running {
                    return Err(OpError::Unavailable(
                        "Postgres is not running here; the agent starts it by itself when it should run"
                            .into(),
                    ));
                }
                let role = self.current_role(local, state, view);
                let upstream = local.upstream.clone();
                self.start(local, role, upstream)
                    .await
                    .map_err(|e| failed("restart", e))?;
                Ok("restarted Postgres".into())
            }
            Operation::Reload => {
                let role = self.current_role(local, state, view);
                self.write_conf(local, &role)
                    .map_err(|e| failed("reload", e.into()))?;
                if local.running {
                    self.keeper(Request::Reload, raftgres_keeper::client::QUICK)
                        .await
                        .map_err(|e| failed("reload", e.into()))?;
                }
                Ok("rewrote the managed configuration and reloaded Postgres".into())
            }
            Operation::Reinitialize => {
                if holds_lease || state.lease.is_held_by(self.me()) {
                    return Err(OpError::Unavailable(
                        "I am the leader, can not reinitialize".into(),
                    ));
                }
                let Some(source) = holder_running_primary(state).map(|m| m.name.clone()) else {
                    return Err(OpError::Unavailable(
                        "no running primary to clone from; try again once the cluster has one"
                            .into(),
                    ));
                };
                self.execute(
                    local,
                    state,
                    &PgAction::Clone {
                        source: source.clone(),
                    },
                )
                .await
                .map_err(|e| failed("reinitialize", e))?;
                Ok(format!("reinitialized from {source}"))
            }
        }
    }

    /// The primary keeps a physical slot for every other database member,
    /// so a replica's WAL is kept until it has it.
    async fn ensure_slots(&self, local: &mut Local, state: &ClusterState) {
        let wanted: BTreeSet<String> = state
            .members
            .values()
            .filter(|m| !m.witness && m.name != self.me())
            .map(|m| m.name.clone())
            .collect();
        if wanted == local.slots_for {
            return;
        }
        let control = Control::new(&self.settings);
        for name in &wanted {
            if let Err(e) = control.create_physical_slot(&slot_name_for(name)).await {
                tracing::warn!(member = self.me(), slot_for = %name, error = %e, "cannot create a replication slot");
                return;
            }
        }
        local.slots_for = wanted;
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

fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Restart => "restart",
        Operation::Reload => "reload",
        Operation::Reinitialize => "reinitialize",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_back_off_exponentially_up_to_the_cap_and_starts_do_not() {
        let wait = Duration::from_millis(250);
        let clone = PgAction::Clone {
            source: "node1".into(),
        };
        let rewind = PgAction::Rewind {
            source: "node1".into(),
        };
        let delays: Vec<Duration> = (1..=9).map(|n| retry_delay(&clone, n, wait)).collect();
        assert_eq!(
            delays[..4],
            [250, 500, 1000, 2000].map(Duration::from_millis)
        );
        assert_eq!(delays[8], COPY_BACKOFF_CAP);
        assert_eq!(retry_delay(&rewind, 3, wait), Duration::from_secs(1));
        assert_eq!(retry_delay(&clone, u32::MAX, wait), COPY_BACKOFF_CAP);
        assert_eq!(retry_delay(&PgAction::StartPrimary, 7, wait), wait);
        // A loop_wait longer than the cap is never shortened.
        let slow = Duration::from_secs(60);
        assert_eq!(retry_delay(&clone, 5, slow), slow);
    }
}
