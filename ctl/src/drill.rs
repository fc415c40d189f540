//! `drill`: a switchover or failover on the live cluster, measured as its
//! clients see it. A table of its own takes numbered writes at a steady
//! rate through the entry point; after a quarter of `--duration` the drill
//! asks the agents to change the primary, keeps writing, reads the table
//! back from the new primary and reports RTO and RPO. The table is dropped
//! at the end, also when the drill fails.

mod measure;
mod writer;

pub use measure::Action;

use crate::cli::{DrillArgs, EntryArg, ReportFormat, RoleFilter};
use crate::cluster::{Cluster, ClusterView, Finder};
use crate::error::CtlError;
use crate::operate::change_primary;
use crate::query::{self, Login, Pick};
use anyhow::{Context, anyhow, bail};
use measure::{Facts, Report, Setting, Write};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_postgres::{Client, SimpleQueryMessage};
use writer::{Entry, Server, Writer};

/// How long past the request the drill keeps writing, beyond
/// `--duration` if need be, for a first write the new primary acknowledges.
const NEW_PRIMARY_WAIT: Duration = Duration::from_secs(30);
/// How often the drill looks at the writes while it waits.
const POLL: Duration = Duration::from_millis(100);

pub async fn drill(finder: &mut Finder, args: DrillArgs, lab: Option<&Path>) -> anyhow::Result<()> {
    if args.action == Action::Failover && !args.force {
        bail!(
            "a failover drill is refused without --force: it makes the cluster fail over to the \
             best replica (POST /failover), and should the primary fail meanwhile, a failover \
             promotes that replica however far behind it is, losing what it lacks; run \
             `raftgresctl drill failover --force` when that is what you want, or `drill switchover`"
        );
    }
    let cluster = finder.cluster().await?;
    let view = &cluster.view;
    let old_primary = view.leader().map(|m| m.name.clone()).ok_or_else(|| {
        CtlError::Unavailable(format!(
            "cluster {} has no running leader now, and a drill needs one; see `raftgresctl list`",
            view.scope()
        ))
    })?;
    let candidate = match args.action {
        Action::Switchover => None,
        Action::Failover => Some(measure::best_replica(view).map_err(CtlError::Unavailable)?),
    };
    let mut login = query::login(&args.login).await?;
    let entry = entry(&args.entry, view, lab, &mut login)?;
    let login = Arc::new(login);
    // RandomState's keys are random in each process: no other drill, even
    // one started at the same moment, picks the same name.
    let table = format!(
        "raftgres_drill_{:016x}",
        RandomState::new().hash_one(std::process::id())
    );

    // On the primary itself, where its timeline is read too: the entry
    // carries only the timed writes.
    let (setup, at) = open_member(finder, &old_primary, &login).await?;
    let old_timeline = timeline(&setup).await;
    setup
        .simple_query(&format!("CREATE TABLE {table} (seq bigint PRIMARY KEY)"))
        .await
        .map_err(|e| {
            anyhow!(query::failed(&at, &e))
                .context(format!("cannot create the drill's table {table}"))
        })?;
    drop(setup);
    eprintln!(
        "drill: {} of cluster {} from {old_primary}; writing {}/s for {} s to table {table} through {}",
        args.action.as_str(),
        view.scope(),
        args.writes_per_second,
        args.duration,
        entry.describe()
    );

    let plan = Plan {
        action: args.action,
        old_primary: old_primary.clone(),
        candidate,
        duration: Duration::from_secs(args.duration),
    };
    let writer = Writer {
        entry: entry.clone(),
        login: login.clone(),
        table: table.clone(),
        writes_per_second: args.writes_per_second,
        start: Instant::now(),
        log: Arc::new(Mutex::new(Vec::new())),
    };
    let (acted, writes, back) = match exercise(finder, &cluster, &plan, writer).await {
        Ok(done) => done,
        Err(e) => {
            drop_after_failure(finder, &table, &login).await;
            return Err(e);
        }
    };
    if let Err(why) = &back.dropped {
        eprintln!(
            "drill: could not drop table {table} on {}: {why}; drop it with `raftgresctl query -c 'DROP TABLE {table}'`",
            acted.new_primary
        );
    }
    let report = Report::of(&Facts {
        setting: Setting {
            action: args.action,
            cluster: view.scope().to_owned(),
            entry: entry.describe(),
            table: table.clone(),
            table_dropped: back.dropped.is_ok(),
            old_primary,
            old_timeline,
            new_primary: acted.new_primary,
            new_timeline: back.timeline,
            writes_per_second: args.writes_per_second,
        },
        action_sent: acted.sent,
        action_done: acted.done,
        writes,
        found: back.found,
    });
    print!(
        "{}",
        match args.format {
            ReportFormat::Pretty => report.table(),
            ReportFormat::Json => report.json(),
        }
    );
    if args.action == Action::Switchover && report.rpo.lost > 0 {
        bail!(
            "the switchover lost {} acknowledged writes, which must never happen: keep every \
             agent's log and report it as a raftgres bug",
            report.rpo.lost
        );
    }
    Ok(())
}

/// Writes while the primary changes, then reads the table back from the
/// new one (and drops it there).
async fn exercise(
    finder: &mut Finder,
    cluster: &Cluster,
    plan: &Plan,
    writer: Writer,
) -> anyhow::Result<(Acted, Vec<Write>, Back)> {
    let (start, log, login, table) = (
        writer.start,
        writer.log.clone(),
        writer.login.clone(),
        writer.table.clone(),
    );
    let (stop, stopped) = watch::channel(false);
    let writes = tokio::spawn(writer.run(stopped));
    let acted = act(finder, cluster, plan, start, &log).await;
    // Ignored: a writer gone already is as good as stopped.
    let _ = stop.send(true);
    let joined = writes.await;
    let acted = acted?;
    joined.map_err(|e| anyhow!("the drill's writer failed: {e}"))?;
    let writes = std::mem::take(&mut *log.lock().map_err(|_| anyhow!("the writer panicked"))?);
    let back = read_back(finder, &acted.new_primary, &table, &login).await?;
    Ok((acted, writes, back))
}

/// What the drill does, decided before it writes.
struct Plan {
    action: Action,
    old_primary: String,
    /// The failover's candidate; a switchover lets the agents choose.
    candidate: Option<String>,
    duration: Duration,
}

/// The request, when it was sent and answered, and who leads now.
struct Acted {
    sent: Duration,
    done: Duration,
    new_primary: String,
}

/// Waits out the lead, makes the request, then waits until `--duration`
/// is over and the new primary has acknowledged a write (or given up on
/// that after [`NEW_PRIMARY_WAIT`]).
async fn act(
    finder: &mut Finder,
    cluster: &Cluster,
    plan: &Plan,
    start: Instant,
    log: &Mutex<Vec<Write>>,
) -> anyhow::Result<Acted> {
    let lead = measure::lead(plan.duration);
    tokio::time::sleep_until(start + lead).await;
    let (acknowledged, last_error) = {
        let writes = log.lock().map_err(|_| anyhow!("the writer panicked"))?;
        let acknowledged = writes.iter().filter(|w| w.outcome.is_ok()).count();
        let last_error = writes
            .iter()
            .rev()
            .find_map(|w| w.outcome.as_ref().err().cloned());
        (acknowledged, last_error)
    };
    if acknowledged == 0 {
        bail!(
            "no write was acknowledged in the first {lead:?}, so the {} was not requested: {}",
            plan.action.as_str(),
            last_error.unwrap_or_else(|| "no write was even sent".to_owned())
        );
    }
    let body = match &plan.candidate {
        None => json!({"leader": plan.old_primary}),
        Some(candidate) => json!({"leader": plan.old_primary, "candidate": candidate}),
    };
    let sent = start.elapsed();
    let reply = change_primary(finder, cluster, plan.action.as_str(), &body).await?;
    let done = start.elapsed();
    let new_primary = match reply.body.get("leader").and_then(Value::as_str) {
        Some(name) => name.to_owned(),
        None => finder
            .cluster()
            .await?
            .view
            .leader_name()
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow!(
                    "the {} was answered ({}), but no member leads now; see `raftgresctl list`",
                    plan.action.as_str(),
                    reply.message()
                )
            })?,
    };
    let end = start + plan.duration;
    let give_up = start + done + NEW_PRIMARY_WAIT;
    loop {
        let now = Instant::now();
        let heard = log
            .lock()
            .map_err(|_| anyhow!("the writer panicked"))?
            .iter()
            .any(|w| {
                w.outcome
                    .as_ref()
                    .is_ok_and(|ack| ack.by == new_primary && ack.at >= sent)
            });
        if now >= end && (heard || now >= give_up) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(Acted {
        sent,
        done,
        new_primary,
    })
}

/// What the new primary holds, and whether the table is gone.
struct Back {
    found: BTreeSet<u64>,
    timeline: Option<u64>,
    dropped: Result<(), String>,
}

/// Reads the table from `new_primary` itself (whichever way the writes
/// went), then drops it there.
async fn read_back(
    finder: &mut Finder,
    new_primary: &str,
    table: &str,
    login: &Login,
) -> anyhow::Result<Back> {
    let (client, at) = open_member(finder, new_primary, login)
        .await
        .with_context(|| {
            format!("cannot read the drill's table back from the new primary {new_primary}")
        })?;
    let rows = client
        .simple_query(&format!("SELECT seq FROM {table}"))
        .await
        .map_err(|e| {
            anyhow!(query::failed(&at, &e)).context(format!("cannot read table {table} back"))
        })?;
    let mut found = BTreeSet::new();
    for message in rows {
        if let SimpleQueryMessage::Row(row) = message
            && let Some(seq) = row.get(0).and_then(|v| v.parse().ok())
        {
            found.insert(seq);
        }
    }
    let timeline = timeline(&client).await;
    let dropped = client
        .simple_query(&format!("DROP TABLE {table}"))
        .await
        .map(drop)
        .map_err(|e| query::failed(&at, &e).to_string());
    Ok(Back {
        found,
        timeline,
        dropped,
    })
}

/// A connection to `member`'s Postgres, checked to be the primary.
async fn open_member(
    finder: &mut Finder,
    member: &str,
    login: &Login,
) -> anyhow::Result<(Client, String)> {
    let pick = Pick {
        member: Some(member),
        role: Some(RoleFilter::Leader),
    };
    query::open_chosen(finder, &pick, login).await
}

/// The primary's timeline, from the name of its current WAL file.
async fn timeline(client: &Client) -> Option<u64> {
    let rows = client
        .simple_query("SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())")
        .await
        .ok()?;
    rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).and_then(measure::timeline_of_walfile),
        _ => None,
    })
}

/// Best effort, after a failure: drops the table on whichever member is
/// the primary now, and says how that went.
async fn drop_after_failure(finder: &mut Finder, table: &str, login: &Login) {
    let pick = Pick {
        member: None,
        role: Some(RoleFilter::Leader),
    };
    let outcome = match query::open_chosen(finder, &pick, login).await {
        Ok((client, at)) => match client
            .simple_query(&format!("DROP TABLE IF EXISTS {table}"))
            .await
        {
            Ok(_) => Ok(at),
            Err(e) => Err(query::failed(&at, &e).to_string()),
        },
        Err(e) => Err(format!("{e:#}")),
    };
    match outcome {
        Ok(at) => eprintln!("drill: dropped table {table} on {at}"),
        Err(why) => eprintln!(
            "drill: could not drop table {table}: {why}; drop it with `raftgresctl query -c 'DROP TABLE IF EXISTS {table}'`"
        ),
    }
}

/// Where the writes go, from `--entry`. A connection string's user,
/// database and password also serve the drill's own connections to the
/// members (creating, reading back and dropping the table), so that the
/// table is the one the writes reach.
fn entry(
    given: &EntryArg,
    view: &ClusterView,
    lab: Option<&Path>,
    login: &mut Login,
) -> anyhow::Result<Entry> {
    let lab_description = |what: &str| -> anyhow::Result<raftgres_lab::LabDescription> {
        let Some(dir) = lab else {
            bail!(
                "--entry {what} needs --lab DIR, whose lab.json says where it listens: the \
                 agents' API does not know; elsewhere give its address as a connection string, \
                 e.g. --entry 'host=HOST port=PORT'"
            );
        };
        raftgres_lab::read_description(dir).with_context(|| {
            format!(
                "cannot read the lab in {} for --entry {what}",
                dir.display()
            )
        })
    };
    // As `lab up` prints it: HAProxy and the pgbouncers listen on loopback.
    let loopback = |name: String, port: u16| Server {
        name,
        host: "127.0.0.1".to_owned(),
        port,
    };
    match given {
        EntryArg::Primary => {
            let mut servers: Vec<Server> = view
                .members
                .iter()
                .filter_map(|m| {
                    Some(Server {
                        name: m.name.clone(),
                        host: m.host.clone()?,
                        port: m.port?,
                    })
                })
                .collect();
            // The current leader first, as a client that just found it.
            servers.sort_by_key(|s| (view.leader_name() != Some(s.name.as_str()), s.name.clone()));
            if servers.is_empty() {
                return Err(CtlError::Unavailable(format!(
                    "no member of cluster {} publishes a Postgres address; see `raftgresctl list`",
                    view.scope()
                ))
                .into());
            }
            Ok(Entry::Primary(servers))
        }
        EntryArg::Haproxy => {
            let lab = lab_description("haproxy")?;
            let haproxy = lab.haproxy.ok_or_else(|| {
                anyhow!(
                    "the lab in {} runs no HAProxy (not installed when it started): \
                     apt-get install haproxy, then lab up again",
                    lab.dir.display()
                )
            })?;
            Ok(Entry::Server(loopback(
                "HAProxy".to_owned(),
                haproxy.write_port,
            )))
        }
        EntryArg::Pgbouncer => {
            let lab = lab_description("pgbouncer")?;
            // A replica's pgbouncer: it goes on serving whatever happens to
            // the primary's host, and must follow the primary to do so.
            let leader = view.leader_name();
            let mut poolers: Vec<(&str, u16)> = lab
                .members
                .iter()
                .filter_map(|m| Some((m.name.as_str(), m.pgbouncer_port?)))
                .collect();
            poolers.sort_by_key(|(name, _)| (leader == Some(*name), *name));
            let (name, port) = poolers.first().copied().ok_or_else(|| {
                anyhow!(
                    "no member of the lab in {} runs pgbouncer (not installed when it started): \
                     apt-get install pgbouncer, then lab up again",
                    lab.dir.display()
                )
            })?;
            Ok(Entry::Server(loopback(format!("{name}'s pgbouncer"), port)))
        }
        EntryArg::Dsn(config) => {
            if let Some(user) = config.get_user() {
                user.clone_into(&mut login.user);
            }
            if let Some(dbname) = config.get_dbname() {
                dbname.clone_into(&mut login.dbname);
            }
            if let Some(password) = config.get_password() {
                login.password = Some(
                    String::from_utf8(password.to_vec())
                        .context("the connection string's password is not UTF-8")?,
                );
            }
            Ok(Entry::Dsn(config.clone()))
        }
    }
}
