//! The imperative shell around `raftgres_ha::decide`: observe, decide, send
//! at most one lease command at a time, and record what committed.

use crate::belief::{self, SharedBelief};
use crate::clock::{mono_now, unix_ms};
use raftgres_consensus::{Consensus, ConsensusError};
use raftgres_ha::{
    HolderLease, LeaseAction, LeaseObserver, MonoInstant, Observation, PgView, decide,
    failover_candidate, heartbeat_interval,
};
use raftgres_state::{
    Applied, ClusterState, Command, ConfigValues, Epoch, LeaseVersion, Member, Rejection, Response,
};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
enum Intent {
    Acquire,
    Renew,
    Release,
    Transfer,
    Report,
}

type InFlight =
    Pin<Box<dyn Future<Output = (Intent, MonoInstant, Result<Response, ConsensusError>)> + Send>>;

pub struct LeaseLoop {
    pub consensus: Consensus,
    pub member: Member,
    pub bootstrap: ConfigValues,
    pub belief: SharedBelief,
    /// Which members still report (one observer for the whole agent).
    pub peers: crate::peers::SharedPeers,
    /// The local Postgres as the Postgres loop last saw it.
    pub pg: watch::Receiver<PgView>,
    pub restart_grace: Duration,
    /// Armed with every deadline this member is granted; `None` for a
    /// witness. A deadline the keeper did not take is not believed.
    pub keeper: Option<raftgres_keeper::KeeperClient>,
    /// Beats while the loop goes round, for the systemd watchdog.
    pub progress: crate::systemd::Progress,
    /// The local Postgres, to measure its WAL position when the lease has
    /// ended (quorum mode); `None` for a witness.
    pub control: Option<raftgres_postgres::Control>,
}

/// When nothing else wakes the loop, look again after this long.
const IDLE_WAKE: Duration = Duration::from_millis(500);
const REGISTER_RETRY: Duration = Duration::from_millis(200);
/// After a lease command fails to commit, wait this long before the next one,
/// so an unreachable leader is not hammered while an election runs.
const COMMAND_BACKOFF: Duration = Duration::from_millis(100);

fn margin(state: &ClusterState) -> Duration {
    state.timing().map_or(Duration::ZERO, |t| t.margin)
}

impl LeaseLoop {
    fn me(&self) -> &str {
        &self.member.name
    }

    /// Publishes this member and the bootstrap config until both are committed.
    async fn register(&self, stop: &CancellationToken) -> bool {
        let commands = [
            Command::BootstrapConfig {
                values: self.bootstrap.clone(),
            },
            Command::PublishMember {
                member: self.member.clone(),
            },
        ];
        for command in commands {
            loop {
                self.progress.beat();
                if stop.is_cancelled() {
                    return false;
                }
                match self.consensus.propose(command.clone()).await {
                    Ok(Ok(_)) => break,
                    Ok(Err(rejection)) => {
                        tracing::error!(member = self.me(), %rejection, "the cluster refused this member's registration; fix the configuration");
                    }
                    Err(e) => {
                        tracing::debug!(member = self.me(), error = %e, "registration not committed yet; retrying")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(REGISTER_RETRY) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
        tracing::info!(member = self.me(), "registered with the cluster");
        true
    }

    pub async fn run(mut self, stop: CancellationToken) {
        if !self.register(&stop).await {
            return;
        }
        if self.member.witness {
            tokio::spawn(witness_heartbeat(
                self.consensus.clone(),
                self.me().to_owned(),
                stop.clone(),
            ));
        }
        let mut states = self.consensus.subscribe();
        let mut observer = LeaseObserver::default();
        let mut in_flight: Option<InFlight> = None;
        // Set after a failed or refused command: not before this instant, and
        // not before the local state has caught up with what the refusal told.
        let mut retry_after = MonoInstant::default();
        let mut lease_at_least = LeaseVersion::default();
        // A change of the local Postgres (stopped for a switchover, down)
        // is acted on at once, not at the next tick.
        let mut pg_changes = self.pg.clone();
        // A witness has no Postgres loop, and it ends before this one at shutdown.
        let mut pg_alive = true;
        loop {
            self.progress.beat();
            pg_changes.borrow_and_update();
            // State first, clock second: a sighting must never be stamped
            // earlier than the moment the state was really seen.
            let view = states.borrow_and_update().clone();
            let peers = self.peers.snapshot();
            let now = mono_now();
            let state = &view.state;
            observer.observe(&state.lease, now);
            let pg = self.pg.borrow().clone();
            // A local copy older than a reply we already have says nothing new.
            let stale = state.lease.version() < lease_at_least;
            if !stale {
                self.forget_lost_lease(state, now);
            }
            let holding = belief::read(&self.belief).holding;
            let held_back = now < retry_after || stale;
            let action = decide(&Observation {
                now,
                me: self.me(),
                state,
                holding: holding.as_ref(),
                observer: &observer,
                in_flight: in_flight.is_some() || held_back,
                pg: &pg,
                peers: &peers,
                restart_grace: self.restart_grace,
                now_unix_ms: unix_ms(),
                promotion_vetoed: belief::read(&self.belief)
                    .promotion_vetoed(now, state.report_ttl()),
            });
            let mut until = None;
            match action {
                LeaseAction::Wait { until: at } => until = at,
                LeaseAction::Renew { epoch } => {
                    belief::update(&self.belief, |b| {
                        if let Some(h) = b.holding.as_mut() {
                            h.last_renew_sent = now;
                        }
                    });
                    in_flight = Some(self.send(Intent::Renew, now, self.renew(state, epoch, &pg)));
                }
                LeaseAction::Release { expected } => {
                    tracing::warn!(member = self.me(), lease = %expected, ?pg, "Postgres cannot serve as primary; releasing the lease");
                    belief::update(&self.belief, |b| b.holding = None);
                    let command = Command::ReleaseLease {
                        member: self.me().to_owned(),
                        expected,
                        lsn: None,
                    };
                    in_flight = Some(self.send(Intent::Release, now, command));
                }
                LeaseAction::Transfer { expected, to } => {
                    tracing::info!(member = self.me(), lease = %expected, candidate = %to, "switchover: the candidate replayed the shutdown checkpoint; handing the lease over");
                    // Like a release: once sent, this member no longer acts as
                    // holder; if it does not commit, the state still names us
                    // and the next round renews.
                    belief::update(&self.belief, |b| b.holding = None);
                    let command = Command::TransferLease {
                        from: self.me().to_owned(),
                        expected,
                        to,
                        reason: "switchover".into(),
                        at_unix_ms: unix_ms(),
                    };
                    in_flight = Some(self.send(Intent::Transfer, now, command));
                }
                LeaseAction::ReportPosition { expected } => match self.position().await {
                    // Measured now, after the lease ended: after the old
                    // primary's fence.
                    Ok(lsn) => {
                        tracing::info!(member = self.me(), lease = %expected, %lsn, "the lease ended; reporting this standby's WAL position");
                        let command = Command::ReportPosition {
                            member: self.me().to_owned(),
                            lease: expected,
                            lsn,
                        };
                        in_flight = Some(self.send(Intent::Report, now, command));
                    }
                    Err(e) => {
                        tracing::warn!(member = self.me(), error = %e, "cannot read this standby's WAL position to report it; retrying");
                        retry_after = mono_now() + COMMAND_BACKOFF;
                    }
                },
                LeaseAction::Acquire { expected } => {
                    let requested = failover_candidate(state) == Some(self.me());
                    tracing::info!(member = self.me(), epoch = %expected.epoch, holder = ?state.lease.holder, requested, "lease expired or free; trying to acquire");
                    let ttl_ms = state.timing().map_or(0, |t| t.ttl_ms());
                    let command = Command::AcquireLease {
                        member: self.me().to_owned(),
                        expected,
                        ttl_ms,
                        reason: if requested {
                            "manual failover".into()
                        } else {
                            "lease expired".into()
                        },
                        at_unix_ms: unix_ms(),
                    };
                    in_flight = Some(self.send(Intent::Acquire, now, command));
                }
            }
            if now < retry_after {
                until = Some(until.map_or(retry_after, |t| t.min(retry_after)));
            }
            let wake = until.map_or(IDLE_WAKE, |t| (t - now).min(IDLE_WAKE));
            tokio::select! {
                changed = states.changed() => if changed.is_err() { return },
                changed = pg_changes.changed(), if pg_alive => pg_alive = changed.is_ok(),
                _ = tokio::time::sleep(wake) => {}
                (intent, sent, result) = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    match &result {
                        Err(_) => retry_after = mono_now() + COMMAND_BACKOFF,
                        Ok(Err(Rejection::LeaseVersionChanged { current, .. })) => {
                            lease_at_least = lease_at_least.max(*current);
                        }
                        Ok(Ok(Applied::Lease { lease })) => {
                            lease_at_least = lease_at_least.max(lease.version());
                        }
                        Ok(_) => {}
                    }
                    self.record(intent, sent, result).await;
                }
                _ = stop.cancelled() => break,
            }
        }
    }

    /// A renewal carries the primary's WAL position, which candidates'
    /// lag is judged against.
    fn renew(&self, state: &ClusterState, epoch: Epoch, pg: &PgView) -> Command {
        let primary = match pg {
            PgView::Running {
                data,
                in_recovery: false,
                ..
            } => Some(data),
            _ => None,
        };
        Command::RenewLease {
            member: self.me().to_owned(),
            epoch,
            ttl_ms: state.timing().map_or(0, |t| t.ttl_ms()),
            lsn: primary.map(|d| d.lsn),
            timeline: primary.map(|d| d.timeline),
        }
    }

    /// What this standby could offer if promoted: WAL received and
    /// flushed, or replayed if more.
    async fn position(&self) -> anyhow::Result<raftgres_state::Lsn> {
        let Some(control) = &self.control else {
            anyhow::bail!("a witness has no Postgres whose position it could report");
        };
        Ok(raftgres_state::Lsn(control.status().await?.wal_lsn.0))
    }

    fn send(&self, intent: Intent, sent: MonoInstant, command: Command) -> InFlight {
        let consensus = self.consensus.clone();
        Box::pin(async move { (intent, sent, consensus.propose(command).await) })
    }

    /// Drops the belief when the state shows another holder or epoch, or when
    /// the deadline passed without a committed renewal.
    fn forget_lost_lease(&self, state: &ClusterState, now: MonoInstant) {
        let me = self.me().to_owned();
        belief::update(&self.belief, |b| {
            let Some(h) = b.holding else { return };
            if !h.matches(&state.lease, &me) {
                tracing::warn!(member = %me, epoch = %h.epoch, holder = ?state.lease.holder, now_epoch = %state.lease.epoch, "lost the lease to another member");
                b.holding = None;
            } else if !h.is_valid(now) {
                tracing::warn!(member = %me, epoch = %h.epoch, "lease deadline passed without a committed renewal; no longer primary");
                b.holding = None;
            }
        });
    }

    async fn record(
        &mut self,
        intent: Intent,
        sent: MonoInstant,
        result: Result<Response, ConsensusError>,
    ) {
        let me = self.me().to_owned();
        match result {
            Ok(Ok(Applied::Lease { lease })) if lease.is_held_by(&me) => {
                let state = self.consensus.local().state;
                let ttl = lease.ttl();
                let margin = margin(&state);
                let deadline = HolderLease::deadline_for(sent, ttl, margin);
                if let Some(keeper) = self.keeper.as_mut() {
                    // Armed before the belief changes, so the fence never
                    // lags it; a lease without a live fence is not held.
                    let current = belief::read(&self.belief)
                        .holding
                        .filter(|h| h.epoch == lease.epoch)
                        .map_or(deadline, |h| h.deadline.max(deadline));
                    let arming = raftgres_keeper::Arming {
                        epoch: lease.epoch.0,
                        deadline_ns: crate::clock::nanos(current),
                    };
                    if let Err(e) = keeper
                        .call(
                            &raftgres_keeper::Request::Arm(arming),
                            raftgres_keeper::client::QUICK,
                        )
                        .await
                    {
                        tracing::error!(member = %me, epoch = %lease.epoch, error = %e, "the keeper did not arm the fence; not acting as lease holder");
                        belief::update(&self.belief, |b| b.holding = None);
                        return;
                    }
                }
                // The history entry of this epoch says why the lease came
                // here: one line for each change of holder, with its reason.
                let why = |epoch| {
                    let state = self.consensus.local().state;
                    let entry = state.history.iter().rev().find(|h| h.epoch == epoch);
                    entry.map(|h| (h.reason.clone(), h.previous_holder.clone()))
                };
                belief::update(&self.belief, |b| match (intent, b.holding) {
                    (Intent::Renew, Some(mut h)) if h.epoch == lease.epoch => {
                        h.renewed(sent, ttl, margin);
                        b.set_holding(h);
                    }
                    _ => {
                        let (reason, previous) = why(lease.epoch).unwrap_or_default();
                        tracing::info!(member = %me, epoch = %lease.epoch, ?intent, %reason, previous_holder = ?previous, "holding the lease");
                        b.set_holding(HolderLease::acquired(lease.epoch, sent, ttl, margin));
                    }
                });
            }
            Ok(Ok(Applied::Lease { lease })) if matches!(intent, Intent::Release) => {
                tracing::info!(member = %me, epoch = %lease.epoch, "released the lease");
            }
            Ok(Ok(Applied::Lease { lease })) if matches!(intent, Intent::Transfer) => {
                tracing::info!(member = %me, epoch = %lease.epoch, holder = ?lease.holder, "handed the lease over");
            }
            Ok(Ok(other)) => {
                tracing::warn!(member = %me, ?intent, ?other, "unexpected reply to a lease command")
            }
            Ok(Err(rejection @ Rejection::NotHolder { .. })) => {
                tracing::warn!(member = %me, %rejection, "renewal refused; no longer primary");
                belief::update(&self.belief, |b| b.holding = None);
            }
            Ok(Err(rejection)) => {
                tracing::info!(member = %me, ?intent, %rejection, "lease command refused")
            }
            Err(e) => {
                tracing::warn!(member = %me, ?intent, error = %e, "lease command not committed")
            }
        }
    }
}

/// A witness has no Postgres loop, which is what republishes a database
/// member's record; without this its record would never change after it
/// registered, and every other member would call it stale a ttl later. It
/// republishes the record as applied (never re-adding a removed member)
/// with a new heartbeat.
async fn witness_heartbeat(consensus: Consensus, me: String, stop: CancellationToken) {
    let mut heartbeat = 0;
    loop {
        let state = consensus.local().state;
        let every = state
            .timing()
            .map_or(REGISTER_RETRY, |t| heartbeat_interval(t.ttl));
        if let Some(mut record) = state.members.get(&me).cloned() {
            heartbeat = heartbeat.max(record.heartbeat) + 1;
            record.heartbeat = heartbeat;
            crate::publish::publish_record(&consensus, record, "witness heartbeat").await;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}
