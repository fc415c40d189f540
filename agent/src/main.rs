//! raftgres-agent: one per PostgreSQL instance. It joins the Raft group,
//! serves its peers, and competes for, renews and gives up the leader lease.

mod belief;
mod clock;
mod lease_loop;
mod status;

use anyhow::{Context, bail};
use clap::Parser;
use raftgres_config::AgentConfig;
use raftgres_consensus::transport::{grpc::GrpcNetwork, server};
use raftgres_consensus::{Consensus, Settings, store};
use raftgres_ha::PgView;
use raftgres_proto::v1::agent_server::AgentServer;
use raftgres_state::{ConfigValues, Member, MemberRole, PgState, Tags};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

/// How long a primary whose Postgres died may restart it in place before it
/// releases the lease (BRIEF: "only if it comes back fast").
const RESTART_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Parser)]
#[command(version, about = "raftgres agent: runs beside one PostgreSQL instance")]
struct Args {
    /// The agent's YAML settings file (environment variables RAFTGRES_<KEY> override it).
    #[arg(long, short)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Startup errors may come before logging exists; say them plainly.
            eprintln!("raftgres-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        bail!(
            "raftgres-agent refuses to run as root: PostgreSQL will not run as root, and the agent \
             runs beside it as the same user. Start it as the postgres user, e.g. \
             `su postgres -s /bin/sh -c 'raftgres-agent --config FILE'`"
        );
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = raftgres_config::load(&args.config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config))
}

fn settings(config: &AgentConfig) -> Settings {
    Settings {
        node_id: config.node_id,
        cluster_name: config.scope.clone(),
        heartbeat_interval: config.raft.heartbeat_interval,
        election_timeout_min: config.raft.election_timeout_min,
        election_timeout_max: config.raft.election_timeout_max,
        snapshot_every_logs: config.raft.snapshot_every_logs,
        operation_timeout: config.bootstrap.retry_timeout,
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn bootstrap_values(config: &AgentConfig) -> ConfigValues {
    let b = &config.bootstrap;
    ConfigValues {
        ttl_ms: ms(b.ttl),
        loop_wait_ms: ms(b.loop_wait),
        retry_timeout_ms: ms(b.retry_timeout),
        lease_margin_ms: ms(b.lease_margin),
        maximum_lag_on_failover: b.maximum_lag_on_failover,
        synchronous_mode: false,
        synchronous_mode_strict: false,
        synchronous_node_count: 1,
        postgresql_parameters: BTreeMap::new(),
        pause: false,
    }
}

fn member_record(config: &AgentConfig) -> Member {
    Member {
        name: config.name.clone(),
        node_id: config.node_id,
        raft_addr: config.raft.advertise.clone(),
        api_url: None,
        pg_address: None,
        role: if config.witness {
            MemberRole::Witness
        } else {
            MemberRole::Unknown
        },
        pg_state: if config.witness {
            PgState::Absent
        } else {
            PgState::Unknown
        },
        timeline: None,
        receive_lsn: None,
        replay_lsn: None,
        tags: Tags {
            nofailover: config.tags.nofailover,
            failover_priority: config.tags.failover_priority,
        },
        witness: config.witness,
        heartbeat: 0,
    }
}

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let (log_store, state_machine) = store::open(&config.data_dir.join("raft.redb")).await?;
    let network = GrpcNetwork::new(config.raft.rpc_timeout, config.bootstrap.retry_timeout);
    let consensus = Consensus::start(
        &settings(&config),
        log_store,
        state_machine,
        network.clone(),
        Arc::new(network),
    )
    .await?;

    let listener = tokio::net::TcpListener::bind(config.raft.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on raft.listen {}; is another agent using it?",
                config.raft.listen
            )
        })?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let belief = belief::SharedBelief::default();
    let (raft_service, cluster_service) = server::services(&consensus);
    let agent_service = AgentServer::new(status::AgentStatus {
        member: config.name.clone(),
        witness: config.witness,
        consensus: consensus.clone(),
        belief: belief.clone(),
    });
    let mut server_stop = shutdown_rx.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(raft_service)
            .add_service(cluster_service)
            .add_service(agent_service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            }),
    );

    let voters: BTreeMap<u64, String> = config
        .members
        .iter()
        .map(|m| (m.id, m.raft_addr.clone()))
        .collect();
    if consensus.initialize(&voters).await? {
        tracing::info!(member = %config.name, voters = ?voters.keys(), "formed a new Raft group");
    }
    tracing::info!(member = %config.name, node_id = config.node_id, listen = %config.raft.listen, "agent started");

    // Postgres is not managed yet: a database member has no data, a witness none at all.
    let (_pg_view_tx, pg_view) = watch::channel(if config.witness {
        PgView::Absent
    } else {
        PgView::Uninitialized
    });
    let lease_loop = tokio::spawn(
        lease_loop::LeaseLoop {
            consensus: consensus.clone(),
            member: member_record(&config),
            bootstrap: bootstrap_values(&config),
            belief,
            pg: pg_view,
            restart_grace: RESTART_GRACE,
        }
        .run(shutdown_rx),
    );

    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!(member = %config.name, "SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!(member = %config.name, "SIGINT: shutting down"),
    }
    let _ = shutdown_tx.send(true);
    // The lease loop releases a held lease; it needs Raft and the server up to do so.
    let _ = lease_loop.await;
    let _ = shutdown_tx.send(true);
    consensus.shutdown().await;
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "gRPC server task failed"),
    }
    tracing::info!(member = %config.name, "stopped");
    Ok(())
}
