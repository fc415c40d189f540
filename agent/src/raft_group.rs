//! This member's Raft: its store and network, the gRPC server its peers
//! call, and forming or joining the group.

use crate::from_config::settings;
use crate::status::AgentStatus;
use crate::systemd::SdNotifier;
use anyhow::Context;
use raftgres_config::AgentConfig;
use raftgres_consensus::formation::NewGroup;
use raftgres_consensus::transport::tls::PeerTls;
use raftgres_consensus::transport::{grpc::GrpcNetwork, incoming, server};
use raftgres_consensus::{Consensus, Formation, OperationTimeout, store};
use raftgres_proto::v1::agent_server::AgentServer;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Opens the Raft store in `data_dir` and starts Raft on it.
pub async fn start(config: &AgentConfig, peer_tls: Option<&PeerTls>) -> anyhow::Result<Consensus> {
    let (log_store, state_machine) = store::open(&config.data_dir.join("raft.redb")).await?;
    // The file's retry_timeout_ms until the cluster's config is applied.
    let operation_timeout = OperationTimeout::new(config.bootstrap.retry_timeout);
    let mut network = GrpcNetwork::new(config.raft.rpc_timeout, operation_timeout.clone());
    if let Some(tls) = peer_tls {
        network = network.with_tls(tls);
    } else {
        tracing::warn!(member = %config.name, listen = %config.raft.listen, "raft.tls_ca_file, tls_cert_file and tls_key_file are not set: anyone who reaches the Raft port can vote, append and propose; see docs/security.md");
    }
    Ok(Consensus::start(
        &settings(config, &operation_timeout),
        log_store,
        state_machine,
        network.clone(),
        Arc::new(network),
    )
    .await?)
}

/// Serves Raft, the group's membership calls and `Agent.Status` on
/// `listener` until `stop`. With the peers' TLS, a vote, an append or a
/// join is taken only from the member it speaks for.
pub fn serve(
    listener: tokio::net::TcpListener,
    consensus: &Consensus,
    agent: AgentStatus,
    peer_tls: Option<&PeerTls>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>> {
    let callers = if peer_tls.is_some() {
        server::Callers::Authenticated
    } else {
        server::Callers::Anyone
    };
    let (raft_service, cluster_service) = server::services(consensus, callers);
    let acceptor = peer_tls.map(PeerTls::acceptor).transpose()?;
    let router = tonic::transport::Server::builder()
        // A peer that vanished without closing (a host lost) is dropped
        // instead of holding its connection's slot for good.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .add_service(raft_service)
        .add_service(cluster_service)
        .add_service(AgentServer::new(agent));
    let stopped = stop.cancelled_owned();
    let limits = incoming::Limits::default();
    Ok(match acceptor {
        Some(acceptor) => tokio::spawn(
            router.serve_with_incoming_shutdown(incoming::tls(listener, acceptor, limits), stopped),
        ),
        None => tokio::spawn(
            router.serve_with_incoming_shutdown(incoming::plain(listener, limits), stopped),
        ),
    })
}

/// Forms the group or joins the running one; a member restarted on its
/// store is already in it.
pub async fn enter(
    consensus: &Consensus,
    config: &AgentConfig,
    notifier: &SdNotifier,
) -> anyhow::Result<()> {
    let voters: BTreeMap<u64, String> = config
        .members
        .iter()
        .map(|m| (m.id, m.raft_addr.clone()))
        .collect();
    if !consensus.is_initialized().await? {
        notifier.send(&[sd_notify::NotifyState::Status(
            "empty Raft store: asking the configured members to take this one in",
        )]);
    }
    // A new member joins the running group rather than forming its own;
    // the retry is the forwarding timeout, how long one attempt may take.
    // Data of an existing cluster beside an empty Raft store means a lost
    // store: a new group here would start a second cluster on that data.
    let new_group = match &config.postgresql {
        Some(pg) if raftgres_postgres::is_initialized(&pg.data_dir) => NewGroup::Forbidden {
            reason: format!(
                "the Postgres data directory {} belongs to an existing cluster; to start a new cluster on purpose, move it away first",
                pg.data_dir.display()
            ),
        },
        _ => NewGroup::Allowed,
    };
    match consensus
        .form_or_join(&voters, config.bootstrap.retry_timeout, &new_group)
        .await
        .with_context(|| {
            format!(
                "member {} (node id {}) cannot enter the Raft group",
                config.name, config.node_id
            )
        })? {
        Formation::Restarted => {}
        Formation::Formed => {
            tracing::info!(member = %config.name, node_id = config.node_id, voters = ?voters.keys(), "formed a new Raft group");
        }
        Formation::Joined(view) => {
            tracing::info!(member = %config.name, node_id = config.node_id, voters = ?view.voters, learners = ?view.learners, "joined the running Raft group");
        }
    }
    Ok(())
}
