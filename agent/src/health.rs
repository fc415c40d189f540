//! What the REST health endpoints read: this member's state rendered into a
//! [`HealthSnapshot`] whenever the applied state, Postgres, the settings or
//! the lease belief change, from local memory only (no Raft round trip).
//! A request loads the latest snapshot and judges the lease deadline on the
//! monotonic clock, so `/primary` stops answering 200 the instant the
//! deadline passes, whenever the snapshot was rendered. What moves with
//! every heartbeat (the Raft figures, the lease's time left) is read when
//! `/metrics` or `/patroni` asks instead, so that it costs the health
//! checks nothing.

use crate::belief::{self, SharedBelief};
use crate::clock::{mono_now, unix_ms};
use crate::systemd::Progress;
use arc_swap::ArcSwap;
use raftgres_api::{
    HealthSnapshot, HealthSource, Histogram, LiveFacts, NodeHealth, RaftFacts, Role,
};
use raftgres_consensus::Consensus;
use raftgres_ha::{LeaseObserver, PgView};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The latest snapshot; the REST API's [`HealthSource`].
pub struct AgentHealth {
    current: ArcSwap<HealthSnapshot>,
    loops: Vec<Progress>,
    member: String,
    consensus: Consensus,
    belief: SharedBelief,
    /// When each lease version was first seen here, by the lease loop's
    /// rule, stamped as the publisher wakes on the same applied change;
    /// only for the time left that `/metrics` reports.
    lease_seen: Mutex<LeaseObserver>,
}

impl HealthSource for AgentHealth {
    fn snapshot(&self) -> (Arc<HealthSnapshot>, Duration) {
        (self.current.load_full(), mono_now().0)
    }

    fn loops_quiet(&self) -> Duration {
        crate::systemd::quiet(&self.loops, mono_now().0)
    }

    fn live(&self) -> LiveFacts {
        let raft = self.consensus.status();
        let state = self.consensus.local().state;
        let lease = &state.lease;
        let belief = belief::read(&self.belief);
        let now = mono_now();
        // The holder judges by its own deadline, also once it has passed;
        // everyone else by the ttl since it first saw the renewal.
        let own = belief
            .holding
            .or(belief.last_held)
            .filter(|h| h.matches(lease, &self.member));
        let until = match own {
            Some(held) => Some(held.deadline),
            None if lease.holder.is_none() => Some(now),
            None => self.observer().expires_at(lease),
        };
        let latencies = self.consensus.proposal_latencies();
        LiveFacts {
            lease_left: until.map(|until| until - now),
            last_current_unix_ms: raft.contact_age.map(|age| {
                let now_ms = i64::try_from(unix_ms()).unwrap_or(i64::MAX);
                now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
            }),
            raft: Some(RaftFacts {
                term: raft.term,
                leader: raft.leader,
                commit_index: raft.committed,
                applied_index: raft.last_applied,
                proposal_latency: Histogram {
                    buckets: latencies.buckets,
                    count: latencies.count,
                    sum_seconds: latencies.sum.as_secs_f64(),
                },
            }),
        }
    }
}

impl AgentHealth {
    fn observer(&self) -> std::sync::MutexGuard<'_, LeaseObserver> {
        self.lease_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stamps the current lease version as seen now, if it is new.
    fn see_lease(&self) {
        let state = self.consensus.local().state;
        self.observer().observe(&state.lease, mono_now());
    }
}

/// What a snapshot is rendered from.
pub struct HealthInputs {
    pub member: String,
    pub scope: String,
    pub witness: bool,
    /// `tags` as a reload last set them.
    pub live: watch::Receiver<crate::requests::LiveSettings>,
    pub consensus: Consensus,
    pub belief: SharedBelief,
    pub pg: watch::Receiver<PgView>,
    /// The loops whose progress `/liveness` judges.
    pub loops: Vec<Progress>,
    /// What the Postgres loop's last look saw beyond its view.
    pub facts: watch::Receiver<raftgres_api::ServerFacts>,
}

impl HealthInputs {
    /// The first snapshot, and the source that serves it.
    pub fn start(&self) -> Arc<AgentHealth> {
        let health = Arc::new(AgentHealth {
            current: ArcSwap::from_pointee(self.render()),
            loops: self.loops.clone(),
            member: self.member.clone(),
            consensus: self.consensus.clone(),
            belief: self.belief.clone(),
            lease_seen: Mutex::default(),
        });
        health.see_lease();
        health
    }

    /// Re-renders into `health` on every change of an input, until `stop`.
    pub async fn publish(mut self, health: Arc<AgentHealth>, stop: CancellationToken) {
        let mut states = self.consensus.subscribe();
        let mut beliefs = self.belief.subscribe();
        let mut live = self.live.clone();
        let mut facts = self.facts.clone();
        loop {
            tokio::select! {
                changed = states.changed() => if changed.is_err() { return },
                changed = beliefs.changed() => if changed.is_err() { return },
                changed = self.pg.changed() => if changed.is_err() { return },
                changed = live.changed() => if changed.is_err() { return },
                changed = facts.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
            health.see_lease();
            health.current.store(Arc::new(self.render()));
        }
    }

    fn render(&self) -> HealthSnapshot {
        let state = self.consensus.local().state;
        let belief = belief::read(&self.belief);
        // The deadline of a lease the applied state still gives us; the
        // request judges it against the clock.
        let valid_until = belief
            .holding
            .filter(|h| h.matches(&state.lease, &self.member))
            .map(|h| h.deadline.0);
        let pg = self.pg.borrow().clone();
        let (running, in_recovery, streaming, data) = match &pg {
            PgView::Running {
                data,
                in_recovery,
                streaming,
                ..
            } => (true, *in_recovery, *streaming, Some(data.clone())),
            _ => (false, false, false, pg.data().cloned()),
        };
        let lag_bytes = match (&data, state.lease.last_lsn) {
            (Some(d), Some(primary)) if in_recovery => Some(primary.bytes_since(d.lsn)),
            _ => None,
        };
        // A server that does not run has no facts but a copy's progress,
        // which is reported while the server is down for it.
        let facts = if running {
            self.facts.borrow().clone()
        } else {
            raftgres_api::ServerFacts {
                progress: self.facts.borrow().progress.clone(),
                ..Default::default()
            }
        };
        let receive_lag_bytes = match (facts.received_lsn, state.lease.last_lsn) {
            (Some(received), Some(primary)) if in_recovery => {
                Some(primary.bytes_since(raftgres_state::Lsn(received)))
            }
            _ => None,
        };
        let tags = self.live.borrow().tags.shown();
        let paused = state.paused();
        HealthSnapshot::new(valid_until, |holds| NodeHealth {
            member: self.member.clone(),
            scope: self.scope.clone(),
            role: match () {
                _ if self.witness => Role::Witness,
                _ if running && !in_recovery && holds => Role::Primary,
                _ if running && in_recovery => Role::Replica,
                _ => Role::Unknown,
            },
            holds_valid_lease: holds,
            postgres_running: running,
            in_recovery,
            streaming: in_recovery && streaming,
            lag_bytes,
            receive_lag_bytes,
            maximum_lag_on_failover: state
                .config
                .as_ref()
                .map(|c| c.values.maximum_lag_on_failover),
            ttl: state.timing().map(|t| t.ttl),
            timeline: data.as_ref().map(|d| d.timeline),
            paused,
            tags: tags.clone(),
            xlog_location: data.as_ref().map(|d| d.lsn.0),
            pg_state: match &pg {
                PgView::Busy { action } => crate::pg_loop::patroni_state(action),
                PgView::Running { .. } => "running",
                // As Patroni: a server that died is "crashed" until the
                // agent brings it back, but in maintenance mode, where the
                // agent leaves it down, merely "stopped".
                PgView::Down { .. } if !paused => "crashed",
                PgView::Down { .. }
                | PgView::Stopped { .. }
                | PgView::Uninitialized
                | PgView::Absent => "stopped",
            },
            server: facts.clone(),
            sync_standby: state.synchronous
                && state.sync_quorum.is_none()
                && state.sync_set.contains(&self.member),
            quorum_standby: state.synchronous
                && state.sync_quorum.is_some()
                && state.sync_set.contains(&self.member),
            pending_restart: state
                .members
                .get(&self.member)
                .map(|m| m.pending_restart.clone())
                .unwrap_or_default(),
            scheduled_restart: state
                .members
                .get(&self.member)
                .and_then(|m| m.scheduled_restart.as_deref().cloned()),
        })
    }
}
