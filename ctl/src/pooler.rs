//! `raftgresctl pooler`: keeps a pgbouncer on a host without Postgres
//! pointed at the primary, following the cluster through any member's REST
//! API. Where clients go is read in `pooler_routes`; the steps that take
//! pgbouncer there are `raftgres_pooler`'s, as on a member.

use crate::cli::PoolerArgs;
use crate::client::{Call, endpoint};
use crate::cluster::Finder;
use crate::error::CtlError;
use crate::pooler_routes;
use anyhow::Context;
use raftgres_pooler::{
    Admin, AdminTarget, Desired, PoolerError, PoolerSettings, Routes, Target, converge,
    fence_at_start,
};
use std::convert::Infallible;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The admin password, when pgbouncer's console asks for one; never a flag,
/// so it stays out of `ps`.
const PASSWORD_ENV: &str = "RAFTGRESCTL_PGBOUNCER_PASSWORD";
/// Bounds the leader's own confirmation; a leader that cannot answer this
/// soon is not sent clients.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// `PoolerSettings` wants one; this command never PAUSEs, as it takes no
/// part in a switchover's handshake.
const UNUSED_PAUSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What pgbouncer does, as far as this command knows. It takes no part in
/// a switchover's handshake, so it has no switchover to pause for.
type Applied = raftgres_pooler::Applied<Infallible>;

/// The options as `raftgres_pooler`'s settings, checked, with an error that
/// names the flag.
pub fn settings(args: &PoolerArgs) -> anyhow::Result<PoolerSettings> {
    let mut admin = AdminTarget::new(args.admin.0.clone(), args.admin.1, args.admin_user.clone());
    admin.password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
    let settings = PoolerSettings {
        databases_file: args.databases_file.clone(),
        admin,
        write_db: args.write_db.clone(),
        read_db: args.read_db.clone(),
        dbname: args.dbname.clone(),
        pause_timeout: UNUSED_PAUSE_TIMEOUT,
    };
    settings.validate().map_err(|e| match e {
        PoolerError::InvalidSetting { key, value, reason } => {
            anyhow::anyhow!("{} {value:?} is invalid: {reason}", flag_of(key))
        }
        other => anyhow::Error::from(other),
    })?;
    Ok(settings)
}

/// The flag behind one of `PoolerSettings::validate`'s keys.
fn flag_of(key: &str) -> String {
    match key {
        "listen" => "--admin".to_owned(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// Where clients should go this round, and why not to a primary if not.
struct Wanted {
    routes: Routes,
    /// The confirmed leader's name.
    leader: Option<String>,
    /// Why there is no write target, for the log and `--once`'s error.
    why_none: Option<String>,
}

/// SIGINT and SIGTERM, caught from the start so neither kills the process
/// halfway through a console command.
struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    fn listen() -> anyhow::Result<Stop> {
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    async fn requested(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// One line on stderr per change: what pgbouncer does now, or what failed.
#[derive(Default)]
struct Log {
    last_failure: Option<String>,
}

impl Log {
    fn line(&self, message: &str) {
        eprintln!(
            "{} raftgresctl pooler: {message}",
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        );
    }

    /// A failure is logged when it differs from the last one, not every round.
    fn failure(&mut self, message: String) {
        if self.last_failure.as_ref() != Some(&message) {
            self.line(&message);
            self.last_failure = Some(message);
        }
    }

    fn recovered(&mut self) {
        self.last_failure = None;
    }
}

pub async fn run(finder: &mut Finder, args: PoolerArgs) -> anyhow::Result<()> {
    let settings = settings(&args)?;
    let admin = Admin::new(settings.admin.clone());
    let mut log = Log::default();
    if args.once {
        return once(finder, &settings, &admin, &mut log).await;
    }
    let mut stop = Stop::listen()?;
    let interval = Duration::from_millis(args.interval_ms);
    let db = settings.write_db.as_str();
    let mut applied: Applied = loop {
        match fence_at_start(&admin, &settings).await {
            Ok(applied) => break applied,
            Err(e) => log.failure(format!("cannot fence database {db:?} at start: {e}")),
        }
        tokio::select! {
            signal = stop.requested() => {
                log.line(&format!("{signal}: stopping"));
                return Ok(());
            }
            () = tokio::time::sleep(interval) => {}
        }
    };
    log.recovered();
    log.line(&format!(
        "database {db:?} fenced at start; following the cluster"
    ));
    loop {
        // A round is bounded by its calls' timeouts; a signal does not wait
        // for it, and the next start fences again anyway.
        tokio::select! {
            signal = stop.requested() => {
                log.line(&format!("{signal}: stopping"));
                return Ok(());
            }
            () = round(finder, &settings, &admin, &mut applied, &mut log) => {}
        }
        tokio::select! {
            signal = stop.requested() => {
                log.line(&format!("{signal}: stopping"));
                return Ok(());
            }
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// `--once`: starts from what pgbouncer reports, so a run that finds it
/// pointed at the leader changes nothing and drops no session.
async fn once(
    finder: &mut Finder,
    settings: &PoolerSettings,
    admin: &Admin,
    log: &mut Log,
) -> anyhow::Result<()> {
    let db = settings.write_db.as_str();
    let databases = admin.show_databases().await?;
    let mut applied = match databases.iter().find(|d| d.name == db) {
        Some(row) => Applied::observed(row.host.as_deref(), row.port, row.disabled),
        // An entry pgbouncer does not know yet: the RELOAD adds it.
        None => Applied::unknown(),
    };
    let wanted = wanted(finder, settings).await;
    apply(settings, admin, &mut applied, &wanted, log).await?;
    match wanted.why_none {
        None if applied.serves() => Ok(()),
        None => Err(CtlError::Unavailable(format!(
            "database {db:?} does not reach the leader yet; run again"
        ))
        .into()),
        Some(why) => Err(CtlError::Unavailable(format!("database {db:?} is fenced: {why}")).into()),
    }
}

/// One round of the loop; failures are logged and retried next round.
async fn round(
    finder: &mut Finder,
    settings: &PoolerSettings,
    admin: &Admin,
    applied: &mut Applied,
    log: &mut Log,
) {
    let wanted = wanted(finder, settings).await;
    match apply(settings, admin, applied, &wanted, log).await {
        Ok(()) => log.recovered(),
        Err(e) => log.failure(format!("pgbouncer not updated yet: {e}; retrying")),
    }
}

/// Where clients should go now, from the first member that answers.
async fn wanted(finder: &mut Finder, settings: &PoolerSettings) -> Wanted {
    let cluster = match finder.cluster().await {
        Ok(cluster) => cluster,
        Err(e) => {
            return Wanted {
                routes: pooler_routes::routes(settings, None, Vec::new()),
                leader: None,
                why_none: Some(e.to_string()),
            };
        }
    };
    let replicas = pooler_routes::replicas(&cluster.view);
    let (write, leader, why_none) = match pooler_routes::leader(&cluster.view) {
        Ok(leader) => match confirm(finder, &leader).await {
            Ok(()) => (Some(leader.target), Some(leader.name), None),
            Err(why) => (None, None, Some(why)),
        },
        Err(why) => (
            None,
            None,
            Some(format!("/cluster from {}: {why}", cluster.via)),
        ),
    };
    Wanted {
        routes: pooler_routes::routes(settings, write, replicas),
        leader,
        why_none,
    }
}

/// The leader's own word that it holds a valid lease and runs a writable
/// primary: `GET /primary` answers 200.
async fn confirm(finder: &Finder, leader: &pooler_routes::Leader) -> Result<(), String> {
    let Some(api) = &leader.api else {
        return Err(format!(
            "leader {} has no api_url in /cluster to confirm it with",
            leader.name
        ));
    };
    let mut call = Call::get(endpoint(api, &["primary"]));
    call.timeout = CONFIRM_TIMEOUT;
    finder
        .api
        .call(call)
        .await
        .map(drop)
        .map_err(|e| format!("leader {} is not confirmed as primary: {e}", leader.name))
}

/// Takes pgbouncer where `wanted` says and logs the change.
async fn apply(
    settings: &PoolerSettings,
    admin: &Admin,
    applied: &mut Applied,
    wanted: &Wanted,
    log: &mut Log,
) -> Result<(), PoolerError> {
    let before = applied.clone();
    let desired = Desired::without_switchover(wanted.routes.clone());
    // Never `PauseUnfinished`: nothing here asks for a pause.
    converge(admin, settings, applied, &desired).await?;
    if *applied != before {
        log.recovered();
        log.line(&describe(settings, &before, applied, wanted));
    }
    Ok(())
}

/// The change as one line, e.g. `database "app" now reaches leader m2 at
/// 127.0.0.1:5433 (before: fenced)`.
fn describe(
    settings: &PoolerSettings,
    before: &Applied,
    after: &Applied,
    wanted: &Wanted,
) -> String {
    let db = &settings.write_db;
    let was = |a: &Applied| match &a.serving {
        Some(target) if !a.fenced => target.to_string(),
        _ => "fenced".to_owned(),
    };
    let mut line = match (&after.serving, &wanted.leader) {
        (Some(target), Some(leader))
            if after.serves() && before.serves() && before.serving == after.serving =>
        {
            format!("database {db:?} still reaches leader {leader} at {target}")
        }
        (Some(target), Some(leader)) if after.serves() => format!(
            "database {db:?} now reaches leader {leader} at {target} (before: {})",
            was(before)
        ),
        _ => format!(
            "database {db:?} {}, pointed at no server: {}",
            if before.fenced {
                "still fenced"
            } else {
                "fenced"
            },
            wanted.why_none.as_deref().unwrap_or("no leader")
        ),
    };
    if let Some(read_db) = &settings.read_db {
        let reads: Vec<String> = wanted.routes.read.iter().map(Target::to_string).collect();
        let reads = if reads.is_empty() {
            "disabled".to_owned()
        } else {
            reads.join(", ")
        };
        line.push_str(&format!("; {read_db:?}: {reads}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, ClusterCmd, Cmd};
    use clap::Parser;

    fn args(change: impl FnOnce(&mut PoolerArgs)) -> PoolerArgs {
        let parsed = Cli::try_parse_from([
            "raftgresctl",
            "pooler",
            "--databases-file",
            "/etc/pgbouncer/raftgres-databases.ini",
            "--admin",
            "127.0.0.1:6432",
        ]);
        let Ok(Cli {
            command: Cmd::Cluster(ClusterCmd::Pooler(mut args)),
            ..
        }) = parsed
        else {
            panic!("the base command line should parse as pooler");
        };
        change(&mut args);
        args
    }

    #[test]
    fn bad_options_are_named_by_their_flag() {
        settings(&args(|a| a.read_db = Some("app_ro".into()))).expect("valid");
        let cases: Vec<(PoolerArgs, &str)> = vec![
            (
                args(|a| a.databases_file = "databases.ini".into()),
                "--databases-file \"databases.ini\" is invalid: it must be an absolute path",
            ),
            (
                args(|a| a.admin.1 = 0),
                "--admin \"127.0.0.1:0\" is invalid",
            ),
            (
                args(|a| a.admin_user.clear()),
                "--admin-user \"\" is invalid",
            ),
            (
                args(|a| a.write_db = "pgbouncer".into()),
                "--write-db \"pgbouncer\" is invalid",
            ),
            (
                args(|a| a.read_db = Some("postgres".into())),
                "--read-db \"postgres\" is invalid",
            ),
            (
                args(|a| a.dbname = "my db".into()),
                "--dbname \"my db\" is invalid",
            ),
        ];
        for (args, want) in cases {
            let error = settings(&args).expect_err(want).to_string();
            assert!(
                error.starts_with(want),
                "{error:?} does not start with {want:?}"
            );
            assert!(!error.contains("agent config"), "{error}");
        }
    }
}
