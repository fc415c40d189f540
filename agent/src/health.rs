//! What the REST health endpoints read: this member's state judged at the
//! moment of the request, from local memory only (no Raft round trip), so
//! `/primary` stops answering 200 the instant the lease deadline passes.

use crate::belief::{self, SharedBelief};
use crate::clock::mono_now;
use raftgres_api::{HealthSource, NodeHealth, Role};
use raftgres_consensus::Consensus;
use raftgres_ha::PgView;
use std::collections::BTreeMap;
use tokio::sync::watch;

pub struct AgentHealth {
    pub member: String,
    pub scope: String,
    pub witness: bool,
    /// `tags` as a reload last set them.
    pub live: watch::Receiver<crate::requests::LiveSettings>,
    pub consensus: Consensus,
    pub belief: SharedBelief,
    pub pg: watch::Receiver<PgView>,
}

impl HealthSource for AgentHealth {
    fn health(&self) -> NodeHealth {
        let now = mono_now();
        let state = self.consensus.local().state;
        let holds = belief::read(&self.belief).holds_valid(&state.lease, &self.member, now);
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
        let role = match () {
            _ if self.witness => Role::Witness,
            _ if running && !in_recovery && holds => Role::Primary,
            _ if running && in_recovery => Role::Replica,
            _ => Role::Unknown,
        };
        let lag_bytes = match (&data, state.lease.last_lsn) {
            (Some(d), Some(primary)) if in_recovery => Some(primary.bytes_since(d.lsn)),
            _ => None,
        };
        NodeHealth {
            member: self.member.clone(),
            scope: self.scope.clone(),
            role,
            holds_valid_lease: holds,
            postgres_running: running,
            in_recovery,
            streaming: in_recovery && streaming,
            lag_bytes,
            timeline: data.as_ref().map(|d| d.timeline),
            paused: state.config.as_ref().is_some_and(|c| c.values.pause),
            tags: {
                let tags = &self.live.borrow().tags;
                let mut map = BTreeMap::from([
                    ("nofailover".to_owned(), tags.nofailover.to_string()),
                    (
                        "failover_priority".to_owned(),
                        tags.failover_priority.to_string(),
                    ),
                ]);
                // As Patroni: a tag that is off by default shows only when set.
                if tags.nosync {
                    map.insert("nosync".to_owned(), "true".to_owned());
                }
                map
            },
            xlog_location: data.as_ref().map(|d| d.lsn.0),
            server_version: None,
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
        }
    }
}
