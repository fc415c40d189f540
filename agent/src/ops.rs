//! The REST API's operations on this agent: config edits, switchover and
//! failover through the replicated state, requests to the local Postgres
//! loop, and this member's scheduled restart. Checks are the pure ones
//! from `raftgres_ha`; the outcome of a switchover is watched in the
//! applied state.

use crate::clock::mono_now;
use crate::clock::unix_ms;
use crate::peers::SharedPeers;
use crate::requests::{Operation, OperationRequest, ReloadReply};
use raftgres_api::{
    MemberReport, OpError, OpFuture, ReadOps, ServerFacts, SwitchoverOutcome, SwitchoverRequest,
    WriteOps,
};
use raftgres_consensus::{Consensus, ConsensusError};
use raftgres_ha::{PgView, holder_running_primary, switchover_candidate};
use raftgres_postgres::{PgError, PgSettings, check_parameters};
use raftgres_state::{
    Applied, ClusterState, Command, ConfigValues, DynamicConfig, PgState, Rejection,
    RestartOptions, ScheduledRestart, Switchover,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a switchover or failover call waits for the new primary.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a change waits for the Raft group to elect a reachable leader.
const ELECTION_WAIT: Duration = Duration::from_secs(15);
/// How long a request waits for the Postgres loop: a restart includes a
/// stop and a start, after the loop finished what it was doing.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Beyond a restart's own `timeout`: the loop's current step and the stop.
const RESTART_MARGIN: Duration = Duration::from_secs(90);
/// How long a reinitialize waits for an idle Postgres loop to take it; one
/// busy longer (a start, a rewind) is named in the refusal instead.
const REINIT_TAKEN_WITHIN: Duration = Duration::from_secs(15);
/// How long a scheduled restart waits to show in the cluster state before
/// it is answered; the Postgres loop publishes it on its next round anyway.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

pub struct AgentOps {
    pub member: String,
    pub witness: bool,
    pub consensus: Consensus,
    pub operations: mpsc::Sender<OperationRequest>,
    /// The reloader, which re-reads the settings file and then reloads Postgres.
    pub reloads: mpsc::Sender<ReloadReply>,
    /// Which members still report, so a dead leader's last record is not
    /// taken for a healthy one.
    pub peers: SharedPeers,
    /// The longest this member's Raft settings let an election take; a
    /// config change must leave the primary a longer renewal budget.
    pub worst_raft_election: Duration,
    /// This member's Postgres, to have it judge a config's server settings
    /// before they are committed; `None` on a witness.
    pub postgres: Option<PgSettings>,
    /// This member's scheduled restart, shared with the Postgres loop,
    /// which publishes it, runs it when due and clears it.
    pub scheduled: watch::Sender<Option<ScheduledRestart>>,
    /// What the Postgres loop is doing, to refuse a reinitialize it cannot
    /// take now, as Patroni refuses one while another action runs.
    pub pg: watch::Receiver<PgView>,
    /// The running server's facts, for its start time.
    pub facts: watch::Receiver<ServerFacts>,
    /// The dynamic config of a cluster whose settings files set nothing.
    pub config_defaults: ConfigValues,
}

/// Hands `operation` to the Postgres loop; its answer comes on the
/// receiver returned (see [`OperationRequest`]).
pub async fn send_to_pg_loop(
    operations: &mpsc::Sender<OperationRequest>,
    operation: Operation,
) -> Result<oneshot::Receiver<Result<String, OpError>>, OpError> {
    let (reply, outcome) = oneshot::channel();
    operations
        .send(OperationRequest { operation, reply })
        .await
        .map_err(|_| OpError::Unavailable("the Postgres loop has stopped".into()))?;
    Ok(outcome)
}

/// Waits for the task named `who` to answer on `outcome`, within `wait`.
/// A request not taken by then is dropped by the Postgres loop, so the
/// caller is told the truth: nothing was done.
pub async fn answer(
    outcome: oneshot::Receiver<Result<String, OpError>>,
    who: &str,
    wait: Duration,
) -> Result<String, OpError> {
    match tokio::time::timeout(wait, outcome).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(OpError::Unavailable(format!(
            "{who} stopped before answering; see the agent's log"
        ))),
        Err(_) => Err(OpError::Unavailable(format!(
            "no answer from {who} within {wait:?}; see the agent's log"
        ))),
    }
}

fn unavailable(e: ConsensusError) -> OpError {
    OpError::Unavailable(format!(
        "the cluster could not commit the change: {e}; retry once a majority of members is reachable"
    ))
}

fn refused(rejection: Rejection) -> OpError {
    match rejection {
        Rejection::ConfigVersionChanged { .. } | Rejection::LeaseVersionChanged { .. } => {
            OpError::Conflict(rejection.to_string())
        }
        Rejection::Invalid { .. } => OpError::Invalid(rejection.to_string()),
        Rejection::UnknownMember { .. } => OpError::NotFound(rejection.to_string()),
        Rejection::NotBootstrapped => OpError::Unavailable(rejection.to_string()),
        _ => OpError::Precondition(rejection.to_string()),
    }
}

/// The holder, when its record says it runs the primary and it still reports.
fn healthy_leader<'a>(state: &'a ClusterState, fresh: &dyn Fn(&str) -> bool) -> Option<&'a str> {
    holder_running_primary(state)
        .filter(|m| fresh(&m.name))
        .map(|m| m.name.as_str())
}

impl AgentOps {
    /// Heard from within a ttl, on this member's clock.
    fn fresh(&self, state: &ClusterState) -> impl Fn(&str) -> bool + use<> {
        let ttl = state.report_ttl();
        let peers = self.peers.snapshot();
        let now = mono_now();
        move |name: &str| peers.is_fresh(name, now, ttl)
    }

    /// Commits `command`, retrying while the Raft group has no reachable
    /// leader (an operator often acts right after the node that led both
    /// Raft and Postgres died). Every change is a compare-and-set or
    /// idempotent, so a retry of one that did commit changes nothing twice:
    /// at worst it reports a conflict.
    async fn commit(&self, command: Command) -> Result<Applied, OpError> {
        let give_up = tokio::time::Instant::now() + ELECTION_WAIT;
        loop {
            match self.consensus.propose(command.clone()).await {
                Ok(Ok(applied)) => return Ok(applied),
                Ok(Err(rejection)) => return Err(refused(rejection)),
                Err(ConsensusError::NoLeader | ConsensusError::Unreachable { .. })
                    if tokio::time::Instant::now() < give_up =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// A fresh, linearizable copy: checks must not act on a stale one.
    async fn read(&self) -> Result<ClusterState, OpError> {
        let give_up = tokio::time::Instant::now() + ELECTION_WAIT;
        loop {
            match self.consensus.read().await {
                Ok(view) => return Ok((*view.state).clone()),
                Err(ConsensusError::NoLeader | ConsensusError::Unreachable { .. })
                    if tokio::time::Instant::now() < give_up =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// Waits until `to` holds the lease and runs the writable primary, or
    /// the request disappears without that (abandoned or replaced).
    async fn await_leader(&self, to: &str) -> Result<SwitchoverOutcome, OpError> {
        let mut states = self.consensus.subscribe();
        // This member may apply the request a moment after it committed.
        let mut seen = false;
        let wait = async {
            loop {
                let state = states.borrow_and_update().state.clone();
                if healthy_leader(&state, &|_| true) == Some(to) {
                    return Ok(SwitchoverOutcome::Done {
                        new_leader: to.to_owned(),
                    });
                }
                let pending = state
                    .switchover
                    .as_ref()
                    .is_some_and(|s| s.to.as_deref() == Some(to));
                seen |= pending;
                if seen && !pending && !state.lease.is_held_by(to) {
                    return Err(OpError::Unavailable(format!(
                        "the change to {to} was abandoned (the candidate fell behind, became unhealthy, or another member took over); see the agents' logs and `raftgresctl list`"
                    )));
                }
                if states.changed().await.is_err() {
                    return Err(OpError::Unavailable("the agent is shutting down".into()));
                }
            }
        };
        tokio::time::timeout(CHANGE_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| {
                Err(OpError::Unavailable(format!(
                    "{to} did not become the primary within {CHANGE_TIMEOUT:?}; the request stays pending, see `raftgresctl list`"
                )))
            })
    }

    async fn request_change(
        &self,
        from: Option<String>,
        to: String,
        at_unix_ms: Option<u64>,
    ) -> Result<(), OpError> {
        self.commit(Command::RequestSwitchover {
            switchover: Switchover {
                from,
                to: Some(to),
                at_unix_ms,
            },
        })
        .await
        .map(|_| ())
    }

    async fn do_switchover(
        &self,
        request: SwitchoverRequest,
    ) -> Result<SwitchoverOutcome, OpError> {
        let state = self.read().await?;
        let now = unix_ms();
        let scheduled_at = request.scheduled_at_unix_ms.filter(|at| *at > now);
        // Patroni's maintenance mode: a switchover needs a named candidate,
        // and nothing is scheduled (with nobody named, the holder's choice
        // would be the automatic one that pause turns off).
        if state.config.as_ref().is_some_and(|c| c.values.pause) {
            if request.candidate.is_none() {
                return Err(OpError::Invalid(
                    "the cluster is paused: a switchover needs a named candidate (`candidate`) \
                     in maintenance mode, as in Patroni; name one, or resume the cluster first \
                     (raftgresctl resume)"
                        .into(),
                ));
            }
            if scheduled_at.is_some() {
                return Err(OpError::Invalid(
                    "the cluster is paused: a switchover cannot be scheduled in maintenance mode, \
                     as in Patroni; leave scheduled_at out, or resume the cluster first \
                     (raftgresctl resume)"
                        .into(),
                ));
            }
        }
        let fresh = self.fresh(&state);
        let Some(leader) = healthy_leader(&state, &fresh) else {
            return Err(OpError::Precondition(
                "there is no healthy leader to switch over from; use a failover to a named candidate"
                    .into(),
            ));
        };
        if let Some(named) = request.leader.as_deref()
            && named != leader
        {
            return Err(OpError::Precondition(format!(
                "leader name does not match: {named} is not the leader, {leader} is"
            )));
        }
        let candidate =
            switchover_candidate(&state, request.candidate.as_deref(), &|m| fresh(&m.name))
                .map_err(OpError::Precondition)?;
        if let Some(at) = scheduled_at {
            // A scheduled one keeps the candidate the operator named, or
            // lets the holder pick the best one at that time.
            self.commit(Command::RequestSwitchover {
                switchover: Switchover {
                    from: Some(leader.to_owned()),
                    to: request.candidate,
                    at_unix_ms: Some(at),
                },
            })
            .await?;
            return Ok(SwitchoverOutcome::Scheduled { at_unix_ms: at });
        }
        self.request_change(Some(leader.to_owned()), candidate.clone(), None)
            .await?;
        tracing::info!(member = %self.member, from = %leader, to = %candidate, "switchover requested");
        self.await_leader(&candidate).await
    }

    async fn do_failover(&self, candidate: String) -> Result<String, OpError> {
        let before = self.read().await?.lease.epoch;
        match self.attempt_failover(&candidate).await {
            Err(OpError::Unavailable(why)) => {
                // A replica that decided on a view older than the request
                // can win the expired lease and so clear the request. It is
                // then the leader, and the operator's wish still stands:
                // ask again once, which makes it a switchover from that
                // member. A request that merely timed out stays pending and
                // is not asked twice.
                let now = self.read().await?;
                let overtaken = now.switchover.is_none()
                    && now.lease.epoch > before
                    && now.lease.holder.as_deref().is_some_and(|h| h != candidate);
                if !overtaken {
                    return Err(OpError::Unavailable(why));
                }
                tracing::info!(member = %self.member, to = %candidate, holder = ?now.lease.holder, epoch = %now.lease.epoch, "another member took the lease before the failover request; asking again");
                self.attempt_failover(&candidate).await
            }
            other => other,
        }
    }

    async fn attempt_failover(&self, candidate: &str) -> Result<String, OpError> {
        let candidate = candidate.to_owned();
        let state = self.read().await?;
        let Some(m) = state.members.get(&candidate) else {
            return Err(OpError::Precondition(format!(
                "candidate {candidate} is not a member of this cluster"
            )));
        };
        if m.witness || m.tags.nofailover || m.tags.failover_priority == 0 {
            return Err(OpError::Precondition(format!(
                "{candidate} may not become primary (witness, nofailover or failover_priority 0)"
            )));
        }
        let fresh = self.fresh(&state);
        if healthy_leader(&state, &fresh) == Some(candidate.as_str()) {
            return Err(OpError::Precondition(format!(
                "{candidate} is already the leader"
            )));
        }
        if state.lease.is_held_by(&candidate) {
            // It took the lease on its own (a failover ran while the request
            // waited for Raft); the operator's wish comes true once it runs.
            return self.finish(&candidate).await;
        }
        if m.pg_state != PgState::Running {
            return Err(OpError::Precondition(format!(
                "{candidate} is not running Postgres (state {:?}); it cannot take over",
                m.pg_state
            )));
        }
        let outcome = match healthy_leader(&state, &fresh) {
            // With a healthy leader a failover is a switchover, as in Patroni.
            Some(leader) => {
                switchover_candidate(&state, Some(&candidate), &|m| fresh(&m.name))
                    .map_err(OpError::Precondition)?;
                self.request_change(Some(leader.to_owned()), candidate.clone(), None)
                    .await?;
                self.await_leader(&candidate).await?
            }
            None => {
                match self.request_change(None, candidate.clone(), None).await {
                    // Another member's failover gave it the lease meanwhile.
                    Err(OpError::Invalid(_)) if self.read().await?.lease.is_held_by(&candidate) => {
                    }
                    other => other?,
                }
                tracing::info!(member = %self.member, to = %candidate, "failover requested");
                self.await_leader(&candidate).await?
            }
        };
        match outcome {
            SwitchoverOutcome::Done { new_leader } => Ok(new_leader),
            SwitchoverOutcome::Scheduled { .. } => Err(OpError::Unavailable(
                "a failover cannot be scheduled".into(),
            )),
        }
    }

    async fn finish(&self, candidate: &str) -> Result<String, OpError> {
        match self.await_leader(candidate).await? {
            SwitchoverOutcome::Done { new_leader } => Ok(new_leader),
            SwitchoverOutcome::Scheduled { .. } => Err(OpError::Unavailable(
                "a failover cannot be scheduled".into(),
            )),
        }
    }

    fn runs_postgres(&self) -> Result<(), OpError> {
        if self.witness {
            return Err(OpError::Precondition(format!(
                "{} is a witness and runs no Postgres",
                self.member
            )));
        }
        Ok(())
    }

    /// `operation` on this member's Postgres, answered within `wait`.
    async fn local(&self, operation: Operation, wait: Duration) -> Result<String, OpError> {
        self.runs_postgres()?;
        let outcome = send_to_pg_loop(&self.operations, operation).await?;
        answer(outcome, "the Postgres loop", wait).await
    }

    async fn do_schedule_restart(
        &self,
        at_unix_ms: u64,
        options: RestartOptions,
    ) -> Result<(), OpError> {
        self.runs_postgres()?;
        if self
            .consensus
            .local()
            .state
            .config
            .as_ref()
            .is_some_and(|c| c.values.pause)
        {
            return Err(OpError::Invalid(
                "the cluster is paused: a restart cannot be scheduled in maintenance mode, as in \
                 Patroni; restart now (leave schedule out), or resume the cluster first \
                 (raftgresctl resume)"
                    .into(),
            ));
        }
        let running = matches!(*self.pg.borrow(), PgView::Running { .. });
        let restart = ScheduledRestart {
            at_unix_ms,
            options,
            postmaster_start_unix_ms: running
                .then(|| self.facts.borrow().postmaster_start_unix_ms)
                .flatten(),
        };
        let placed = self.scheduled.send_if_modified(|slot| {
            let free = slot.is_none();
            if free {
                *slot = Some(restart.clone());
            }
            free
        });
        if !placed {
            return Err(OpError::Conflict(
                "Cannot schedule restart: another restart is already scheduled (see \
                 scheduled_restart in GET /patroni); cancel it first with DELETE /restart \
                 (raftgresctl flush restart)"
                    .into(),
            ));
        }
        tracing::info!(member = %self.member, at_unix_ms, options = ?restart.options, "restart scheduled");
        self.until_published(|record| record == Some(&restart))
            .await;
        Ok(())
    }

    async fn do_cancel_restart(&self) -> Result<(), OpError> {
        let Some(cancelled) = self.scheduled.send_replace(None) else {
            return Err(OpError::NotFound("no restarts are scheduled".into()));
        };
        tracing::info!(member = %self.member, at_unix_ms = cancelled.at_unix_ms, "scheduled restart cancelled");
        self.until_published(|record| record.is_none()).await;
        Ok(())
    }

    /// Waits, within [`PUBLISH_WAIT`], until this member's record in the
    /// applied state shows `published` of its scheduled restart, so that
    /// `GET /cluster` right after the answer shows the change.
    async fn until_published(&self, published: impl Fn(Option<&ScheduledRestart>) -> bool) {
        let mut states = self.consensus.subscribe();
        let shown = async {
            loop {
                let state = states.borrow_and_update().state.clone();
                let record = state.members.get(&self.member);
                if published(record.and_then(|m| m.scheduled_restart.as_deref())) {
                    return;
                }
                if states.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(PUBLISH_WAIT, shown).await.is_err() {
            tracing::info!(member = %self.member, "the scheduled restart is not in the cluster state yet; the Postgres loop publishes it on its next round");
        }
    }

    async fn do_reinitialize(&self) -> Result<String, OpError> {
        self.runs_postgres()?;
        if let PgView::Busy { action } = *self.pg.borrow() {
            return Err(OpError::Unavailable(format!(
                "{action} already in progress; try again once it is done"
            )));
        }
        self.local(Operation::Reinitialize, REINIT_TAKEN_WITHIN)
            .await
    }

    async fn do_remove(&self, name: String) -> Result<String, OpError> {
        let state = self.read().await?;
        let Some(m) = state.members.get(&name) else {
            return Err(OpError::NotFound(format!(
                "{name} is not a member of this cluster"
            )));
        };
        if state.lease.is_held_by(&name) {
            return Err(OpError::Precondition(format!(
                "{name} holds the lease; switch over to another member first"
            )));
        }
        if name == self.member {
            return Err(OpError::Precondition(format!(
                "{name} cannot remove itself; send the request to another member"
            )));
        }
        let node_id = m.node_id;
        self.consensus.remove_member(node_id).await.map_err(|e| {
            OpError::Unavailable(format!("cannot remove {name} from the Raft group: {e}"))
        })?;
        self.commit(Command::RemoveMember { name: name.clone() })
            .await?;
        Ok(format!(
            "removed {name} (node {node_id}); stop its agent. To bring it back, start it on an empty Raft store (delete raft.redb in its data_dir): it joins as a new member"
        ))
    }
}

impl ReadOps for AgentOps {
    fn state(&self) -> ClusterState {
        (*self.consensus.local().state).clone()
    }

    /// Stale is the same judgement a switchover makes of a candidate: no
    /// new heartbeat first seen within a ttl. Before the cluster has a
    /// dynamic config there is no ttl, and nobody is called stale.
    fn member_reports(&self) -> BTreeMap<String, MemberReport> {
        let state = self.consensus.local().state;
        let ttl = state.timing().map(|t| t.ttl);
        let peers = self.peers.snapshot();
        let now = mono_now();
        state
            .members
            .keys()
            .filter_map(|name| {
                let report = peers.report_age(name, now)?;
                Some((
                    name.clone(),
                    MemberReport {
                        age: report.age,
                        age_is_lower_bound: report.lower_bound,
                        stale: ttl.is_some_and(|ttl| !peers.is_fresh(name, now, ttl)),
                    },
                ))
            })
            .collect()
    }
}

impl WriteOps for AgentOps {
    fn set_config(
        &self,
        expected_version: u64,
        values: ConfigValues,
    ) -> OpFuture<'_, DynamicConfig> {
        Box::pin(async move {
            let before = self
                .consensus
                .local()
                .state
                .config
                .clone()
                .map(|c| c.values);
            // Only a change is judged, so that an edit of anything else
            // still works on a cluster whose members differ.
            let parameters_before = before.as_ref().map(|v| &v.postgresql_parameters);
            if parameters_before != Some(&values.postgresql_parameters)
                && let Some(postgres) = &self.postgres
            {
                match check_parameters(postgres, &values.postgresql_parameters).await {
                    Ok(()) => {}
                    Err(PgError::ParametersRefused { reason }) => {
                        return Err(OpError::Invalid(format!(
                            "postgresql.parameters: PostgreSQL refuses them ({reason}); \
                             nothing was changed"
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(member = %self.member, error = %e, "cannot have Postgres check postgresql.parameters; each member checks them before it applies them")
                    }
                }
            }
            let budget_before = before.as_ref().map(|v| v.timing.renewal_budget());
            if budget_before != Some(values.timing.renewal_budget()) {
                values
                    .timing
                    .rides_out(self.worst_raft_election)
                    .map_err(|e| OpError::Invalid(e.to_string()))?;
            }
            match self
                .commit(Command::SetConfig {
                    expected_version,
                    values,
                })
                .await?
            {
                Applied::Config { config } => Ok(config),
                other => Err(OpError::Unavailable(format!(
                    "unexpected answer to a config change: {other:?}"
                ))),
            }
        })
    }

    fn switchover(&self, request: SwitchoverRequest) -> OpFuture<'_, SwitchoverOutcome> {
        Box::pin(self.do_switchover(request))
    }

    fn cancel_switchover(&self) -> OpFuture<'_, ()> {
        Box::pin(async move {
            if self.read().await?.switchover.is_none() {
                return Err(OpError::NotFound("no switchover is scheduled".into()));
            }
            self.commit(Command::CancelSwitchover).await.map(|_| ())
        })
    }

    fn failover(&self, candidate: String) -> OpFuture<'_, String> {
        Box::pin(self.do_failover(candidate))
    }

    fn restart(&self, options: RestartOptions) -> OpFuture<'_, String> {
        let wait = options
            .timeout_ms
            .map_or(OPERATION_TIMEOUT, |ms| {
                Duration::from_millis(ms) + RESTART_MARGIN
            })
            .max(OPERATION_TIMEOUT);
        Box::pin(self.local(Operation::Restart(options), wait))
    }

    fn schedule_restart(&self, at_unix_ms: u64, options: RestartOptions) -> OpFuture<'_, ()> {
        Box::pin(self.do_schedule_restart(at_unix_ms, options))
    }

    fn cancel_restart(&self) -> OpFuture<'_, ()> {
        Box::pin(self.do_cancel_restart())
    }

    /// As Patroni's: re-reads this agent's settings file (as SIGHUP does);
    /// the reloader answers once it applied it, and the Postgres loop then
    /// rewrites Postgres's managed conf and reloads Postgres.
    fn reload(&self) -> OpFuture<'_, String> {
        Box::pin(async move {
            let (reply, outcome) = oneshot::channel();
            self.reloads
                .send(Some(reply))
                .await
                .map_err(|_| OpError::Unavailable("the agent is shutting down".into()))?;
            answer(outcome, "the reload", OPERATION_TIMEOUT).await
        })
    }

    fn reinitialize(&self, _force: bool) -> OpFuture<'_, String> {
        // `force` is Patroni's way to cancel an action in progress for the
        // reinitialize; none is ever cancelled here (a clone or start
        // under way runs to its end), so a busy loop refuses either way.
        Box::pin(self.do_reinitialize())
    }

    fn remove_member(&self, name: String) -> OpFuture<'_, String> {
        Box::pin(self.do_remove(name))
    }

    fn config_defaults(&self) -> ConfigValues {
        self.config_defaults.clone()
    }
}
