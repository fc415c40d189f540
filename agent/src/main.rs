//! raftgres-agent: one per PostgreSQL instance. It joins the Raft group,
//! serves its peers, and competes for, renews and gives up the leader lease.

mod adopt_lease;
mod belief;
mod callbacks;
mod clock;
mod from_config;
mod health;
mod keeper_link;
mod lease_loop;
mod logging;
mod ops;
mod peers;
mod pg_loop;
mod pooler_loop;
mod publish;
mod raft_group;
mod reload;
mod requests;
mod send_if_changed;
mod status;
mod systemd;

use anyhow::{Context, bail};
use clap::Parser;
use from_config::{
    api_allowlist, api_tls, bootstrap_values, member_record, peer_tls, pg_settings, pooler_settings,
};
use raftgres_config::AgentConfig;
use raftgres_ha::PgView;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "raftgres agent: runs beside one PostgreSQL instance",
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// The agent's YAML settings file (environment variables RAFTGRES_<KEY> override it).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(clap::Subcommand)]
enum Mode {
    /// The keeper: owns this member's postmaster and enforces the lease
    /// deadline; outlives the agent (docs/fencing.md).
    Keeper(keeper_link::KeeperArgs),
    /// The keeper's guard, started by the keeper (reads commands on stdin).
    #[command(hide = true)]
    KeeperGuard(keeper_link::GuardArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.mode {
        Some(Mode::KeeperGuard(g)) => {
            // Only fails if a log is already set up, which nothing did.
            let _ = logging::init(None);
            return raftgres_keeper::guard::run(&g.data_dir, &g.exe);
        }
        Some(Mode::Keeper(k)) => {
            return match refuse_root().and_then(|()| {
                logging::init(None)?;
                keeper_link::run_keeper(&k.config)
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("raftgres-agent keeper: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Startup errors may come before logging exists; say them plainly.
            eprintln!("raftgres-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn refuse_root() -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        bail!(
            "raftgres-agent refuses to run as root: PostgreSQL will not run as root, and the agent \
             runs beside it as the same user. Start it as the postgres user, e.g. \
             `su postgres -s /bin/sh -c 'raftgres-agent --config FILE'`"
        );
    }
    Ok(())
}

fn start(args: Args) -> anyhow::Result<()> {
    refuse_root()?;
    let Some(config_path) = args.config else {
        bail!("--config FILE is required: the agent's YAML settings file");
    };
    // SAFETY: no thread has been started yet: the runtime comes later.
    let notifier = unsafe { systemd::SdNotifier::take_from_env() };
    let config = raftgres_config::load(&config_path)?;
    let _log_writer = logging::init(Some(&config.log))?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config, config_path, Arc::new(notifier)))
}

/// How the agent stops, one stage after the other:
/// 1. the Postgres loop, so that no action starts while the rest stops;
/// 2. the lease loop, the pooler loop and the REST API;
/// 3. Raft;
/// 4. the gRPC server, only after Raft: a Raft leader whose server is gone
///    still sends heartbeats, so the others would not elect a new leader
///    while every request forwarded to it, the primary's renewals among
///    them, fails.
#[derive(Default)]
struct Stop {
    postgres: CancellationToken,
    loops: CancellationToken,
    grpc_server: CancellationToken,
}

async fn run(
    config: AgentConfig,
    config_path: PathBuf,
    notifier: Arc<systemd::SdNotifier>,
) -> anyhow::Result<()> {
    // Settings the file's parser cannot judge alone, before anything starts.
    let allowlist = api_allowlist(&config)?;
    let rest_tls = api_tls(&config)?;
    let peer_tls = peer_tls(&config)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    // Binaries of another major than the data directory's would fail on
    // every start, obscurely (the server refuses the configuration initdb
    // wrote): refuse to run at all, naming both majors and the setting.
    if let Some(pg) = &config.postgresql {
        raftgres_postgres::version::check_binaries(&pg_settings(&config, pg)?).await?;
    }
    // The keeper first: it may be running a primary whose lease this agent
    // must renew before the keeper's deadline.
    let keeper = match &config.postgresql {
        Some(_) => {
            let socket = keeper_link::socket(&config);
            let status = keeper_link::attach(&config_path, &socket).await?;
            Some((socket, status))
        }
        None => None,
    };
    let consensus = raft_group::start(&config, peer_tls.as_ref()).await?;

    let listener = listen(config.raft.listen, "raft.listen").await?;
    let stop = Stop::default();
    let belief = belief::new();
    let peers = peers::SharedPeers::watch(&consensus);
    let server = raft_group::serve(
        listener,
        &consensus,
        status::AgentStatus {
            member: config.name.clone(),
            witness: config.witness,
            consensus: consensus.clone(),
            belief: belief.clone(),
        },
        peer_tls.as_ref(),
        stop.grpc_server.clone(),
    )?;

    raft_group::enter(&consensus, &config, &notifier).await?;
    tracing::info!(member = %config.name, node_id = config.node_id, listen = %config.raft.listen, "agent started");

    if let Some((_, status)) = &keeper {
        adopt_lease::adopt_lease(&consensus, &config.name, status, &belief).await;
    }
    let (pg_view_tx, pg_view) = watch::channel(if config.witness {
        PgView::Absent
    } else {
        PgView::Busy { action: "starting" }
    });
    let (facts_tx, facts) = watch::channel(raftgres_api::ServerFacts::default());
    // A restart scheduled before the agent stopped is in its record.
    let scheduled_restart = watch::Sender::new(
        consensus
            .local()
            .state
            .members
            .get(&config.name)
            .and_then(|m| m.scheduled_restart.as_deref().cloned()),
    );
    let (operations_tx, operations_rx) = tokio::sync::mpsc::channel(8);
    let (live_tx, live) = watch::channel(requests::LiveSettings::of(&config));
    let lease_progress = systemd::Progress::new();
    let pg_progress = systemd::Progress::new();
    let pooler = match &config.pgbouncer {
        Some(pgb) => {
            let settings = pooler_settings(pgb)?;
            let (status_tx, status_rx) = watch::channel(pooler_loop::PoolerStatus::default());
            let task = tokio::spawn(
                pooler_loop::PoolerLoop {
                    consensus: consensus.clone(),
                    member: config.name.clone(),
                    settings,
                    belief: belief.clone(),
                    status: status_tx,
                    live: live.clone(),
                }
                .run(stop.loops.clone()),
            );
            Some((task, status_rx))
        }
        None => None,
    };
    let postgres = config
        .postgresql
        .as_ref()
        .map(|pg| pg_settings(&config, pg))
        .transpose()?;
    let pg_loop = match (&config.postgresql, &postgres, &keeper) {
        (Some(pg), Some(settings), Some((socket, _))) => {
            let settings = settings.clone();
            Some(tokio::spawn(
                pg_loop::PgLoop {
                    consensus: consensus.clone(),
                    member: member_record(&config),
                    file_parameters: settings.parameters.clone(),
                    settings,
                    peers: peers.clone(),
                    belief: belief.clone(),
                    view: pg_view_tx,
                    facts: facts_tx,
                    keeper: raftgres_keeper::KeeperClient::new(socket).into(),
                    config_path: config_path.clone(),
                    restart_grace: pg.restart_grace,
                    operations: operations_rx,
                    pooler: pooler.as_ref().map(|(_, status)| status.clone()),
                    live: live.clone(),
                    progress: pg_progress.clone(),
                    callbacks: callbacks::CallbackRunner::start(
                        config.name.clone(),
                        config.scope.clone(),
                    ),
                    scheduled: scheduled_restart.clone(),
                    scope: config.scope.clone(),
                }
                .run(stop.postgres.clone()),
            ))
        }
        _ => None,
    };
    let api_listener = listen(config.restapi.listen, "restapi.listen").await?;
    let mut progress = vec![("lease", lease_progress.clone())];
    if pg_loop.is_some() {
        progress.push(("postgres", pg_progress));
    }
    let health_inputs = health::HealthInputs {
        member: config.name.clone(),
        scope: config.scope.clone(),
        witness: config.witness,
        live,
        consensus: consensus.clone(),
        belief: belief.clone(),
        pg: pg_view.clone(),
        loops: progress.iter().map(|(_, p)| p.clone()).collect(),
        facts: facts.clone(),
    };
    let (reloads_tx, reloads_rx) = tokio::sync::mpsc::channel(4);
    let ops = ops::AgentOps {
        member: config.name.clone(),
        witness: config.witness,
        consensus: consensus.clone(),
        operations: operations_tx.clone(),
        reloads: reloads_tx.clone(),
        peers: peers.clone(),
        worst_raft_election: config.raft.worst_election(),
        postgres: postgres.clone(),
        scheduled: scheduled_restart,
        pg: pg_view.clone(),
        facts,
        config_defaults: from_config::config_defaults(),
    };
    let (auth_tx, auth) = watch::channel(reload::credentials(&config));
    if auth.borrow().is_none() {
        tracing::warn!(member = %config.name, "restapi.authentication is not set: the mutating REST endpoints (switchover, failover, restart, config changes) are disabled");
    }
    let health = health_inputs.start();
    let health_publisher = tokio::spawn(health_inputs.publish(health.clone(), stop.loops.clone()));
    let api_context = raftgres_api::ApiContext {
        health: health.clone(),
        ops: Arc::new(ops),
        auth,
        logins: Default::default(),
        allowlist,
        authenticate_reads: config.restapi.authenticate_reads,
    };
    let api_stopped = stop.loops.clone().cancelled_owned();
    let api = match rest_tls {
        Some(tls) => tokio::spawn(raftgres_api::serve_tls(
            api_listener,
            api_context,
            api_stopped,
            raftgres_api::ServeLimits::default(),
            tls,
        )),
        None => tokio::spawn(raftgres_api::serve(api_listener, api_context, api_stopped)),
    };
    tracing::info!(member = %config.name, url = %config.restapi.url(), "REST API listening");
    let lease_loop = tokio::spawn(
        lease_loop::LeaseLoop {
            consensus: consensus.clone(),
            member: member_record(&config),
            bootstrap: bootstrap_values(&config),
            belief,
            peers,
            pg: pg_view,
            restart_grace: config
                .postgresql
                .as_ref()
                .map_or(std::time::Duration::ZERO, |pg| pg.restart_grace),
            keeper: keeper
                .as_ref()
                .map(|(socket, _)| raftgres_keeper::KeeperClient::new(socket)),
            progress: lease_progress.clone(),
            control: postgres.as_ref().map(raftgres_postgres::Control::new),
        }
        .run(stop.loops.clone()),
    );
    let reloader = tokio::spawn(
        reload::Reloader {
            path: config_path,
            running: config.clone(),
            live: live_tx,
            auth: auth_tx,
            operations: pg_loop.as_ref().map(|_| operations_tx),
            notifier: notifier.clone(),
        }
        .run(reloads_rx),
    );
    // Serving: both servers bound, every loop started. Readiness does not
    // wait for a Raft majority: a member started while the others are down
    // must not be failed by systemd's start timeout.
    notifier.send(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving; joining the cluster"),
    ]);
    let sd_watchdog = tokio::spawn(systemd::watch_loops(
        notifier.clone(),
        progress,
        move || {
            use raftgres_api::HealthSource;
            let (snapshot, now) = health.snapshot();
            systemd::status_line(&snapshot.at(now).health)
        },
    ));
    if let Some(interval) = notifier.watchdog_interval() {
        tracing::info!(member = %config.name, interval_ms = interval.as_millis() as u64, "systemd watchdog enabled: pinging every half interval while the lease and Postgres loops make progress");
    }

    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(member = %config.name, "SIGTERM: shutting down");
                break;
            }
            _ = int.recv() => {
                tracing::info!(member = %config.name, "SIGINT: shutting down");
                break;
            }
            _ = hup.recv() => {
                tracing::info!(member = %config.name, "SIGHUP: re-reading the settings file");
                // A full queue already holds a reload that will read the file anew.
                let _ = reloads_tx.try_send(None);
            }
        }
    }
    notifier.send(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status(
            "stopping the agent; the keeper keeps Postgres and its lease deadline",
        ),
    ]);
    sd_watchdog.abort();
    reloader.abort();
    // In `Stop`'s order. Postgres and the lease stay as they are: the
    // keeper runs Postgres and fences it at the deadline unless the next
    // agent attaches and renews first. Stopping the keeper stops Postgres.
    stop.postgres.cancel();
    if let Some(pg_loop) = pg_loop {
        let _ = pg_loop.await;
    }
    stop.loops.cancel();
    let _ = lease_loop.await;
    let _ = health_publisher.await;
    if let Some((pooler, _)) = pooler {
        let _ = pooler.await;
    }
    consensus.shutdown().await;
    stop.grpc_server.cancel();
    log_server_end("REST API", api.await);
    log_server_end("gRPC server", server.await);
    tracing::info!(member = %config.name, "stopped");
    Ok(())
}

/// Listens on `addr`, the setting `key`.
async fn listen(addr: SocketAddr, key: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {key} {addr}; is another agent using it?"))
}

/// Logs how the server `name`'s task ended, if not cleanly: the agent
/// stops either way.
fn log_server_end<E: std::fmt::Display>(
    name: &str,
    ended: Result<Result<(), E>, tokio::task::JoinError>,
) {
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "{name} stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "{name} task failed"),
    }
}
