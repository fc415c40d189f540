//! The REST API's operations on this agent: config edits, switchover and
//! failover through the replicated state, requests to the local Postgres
//! loop, and this member's scheduled restart. Checks are the pure ones
//! from `raftgres_ha`; the outcome of a switchover is watched in the
//! applied state.

use crate::clock::mono_now;
use crate::peers::SharedPeers;
use crate::requests::{OperationRequest, ReloadReply};
use raftgres_api::{
    MemberReport, OpError, OpFuture, ReadOps, ServerFacts, SwitchoverOutcome, SwitchoverRequest,
    WriteOps,
};
use raftgres_consensus::Consensus;
use raftgres_ha::PgView;
use raftgres_postgres::PgSettings;
use raftgres_state::{
    ClusterState, Command, ConfigValues, DynamicConfig, RestartOptions, ScheduledRestart,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

mod commit;
mod config;
mod failover;
mod local;
mod remove_member;
mod scheduled_restart;
mod switchover;

pub use local::{answer, send_to_pg_loop};

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
        Box::pin(self.do_set_config(expected_version, values))
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
        Box::pin(self.do_restart(options))
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
        Box::pin(self.do_reload())
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
