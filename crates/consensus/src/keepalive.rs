//! Heartbeats that carry the leader through a slow log flush.
//!
//! openraft 0.9 awaits the fsync of every log append inside its core task
//! (`RaftCore::append_to_log` waits for the `LogFlushed` callback however
//! early `append` returns), and the same task sends the heartbeats. A leader
//! whose disk stalls is therefore silent, and its followers elect another
//! leader once the silence outlasts their leader lease plus election timeout,
//! although the leader is alive and will finish the flush.
//!
//! While this member leads and a log flush has been pending for longer than
//! one heartbeat interval, this task sends each other member an empty
//! AppendEntries that carries the leader's vote, no previous log id and no
//! commit index. A follower takes it as a heartbeat (it touches its leader
//! lease) and changes nothing else; one that knows a newer vote refuses it.
//! The task gives up once the flush has been pending for `tolerance`, so a
//! disk that stays stalled still costs the leader its leadership.

use crate::store::FlushProgress;
use crate::types::{Node, NodeId, TypeConfig};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::AppendEntriesRequest;
use openraft::{RaftMetrics, ServerState};
use std::time::Duration;
use tokio::sync::watch;

pub(crate) async fn bridge_flush_stalls<N: RaftNetworkFactory<TypeConfig>>(
    metrics: watch::Receiver<RaftMetrics<NodeId, Node>>,
    mut network: N,
    flush: FlushProgress,
    heartbeat: Duration,
    tolerance: Duration,
) {
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if metrics.has_changed().is_err() {
            return; // The core stopped.
        }
        let Some(pending) = flush.pending_for() else {
            continue;
        };
        if pending < heartbeat || pending > tolerance {
            continue;
        }
        // The core cannot change its vote or membership while it waits, so
        // its last published metrics still hold. A stall in the very append
        // that made it leader (published after that step) is not bridged.
        let m = metrics.borrow().clone();
        if m.state != ServerState::Leader {
            continue;
        }
        tracing::debug!(
            pending_ms = pending.as_millis(),
            vote = %m.vote,
            "log flush stalled on the leader; heartbeating for it"
        );
        let targets: Vec<_> = m
            .membership_config
            .nodes()
            .filter(|(id, _)| **id != m.id)
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        for (target, node) in targets {
            let mut peer = network.new_client(target, &node).await;
            let request = AppendEntriesRequest {
                vote: m.vote,
                prev_log_id: None,
                entries: Vec::new(),
                leader_commit: None,
            };
            tokio::spawn(async move {
                let sent = tokio::time::timeout(
                    heartbeat,
                    peer.append_entries(request, RPCOption::new(heartbeat)),
                )
                .await;
                if let Ok(Err(e)) = sent {
                    tracing::debug!(target_node = target, error = %e, "stall heartbeat not delivered");
                }
            });
        }
    }
}
