//! raftgresctl: operate a raftgres cluster, patronictl-style. It reaches
//! the agents only through their REST API (docs/rest-api.md); `lab` also
//! starts and stops a local cluster; `pooler` keeps a pgbouncer on a host
//! without Postgres pointed at the primary; `query` runs SQL on the
//! Postgres of a member the API names; `drill` measures a switchover or
//! failover as a client sees it.

mod cli;
mod client;
mod cluster;
mod commands;
mod drill;
mod edit_config;
mod error;
mod format;
mod lab_cmd;
mod operate;
mod patch;
mod pg_tls;
mod pgpass;
mod pooler;
mod pooler_routes;
mod prompt;
mod query;
mod target;
mod yaml;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use cli::{Cli, ClusterCmd, Cmd, TlsCmd};
use cluster::Finder;
use commands::View;
use error::{CtlError, EXIT_FAILURE};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own code for a usage error is 2, which here means
            // "refused by an agent".
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_FAILURE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftgresctl: {e:#}");
            ExitCode::from(
                e.downcast_ref::<CtlError>()
                    .map_or(EXIT_FAILURE, CtlError::exit_code),
            )
        }
    }
}

/// `raftgresctl tls issue`: prints one line per file pair, `created` or
/// `kept`, so that a playbook can tell whether anything changed.
fn issue_certificates(
    dir: &std::path::Path,
    members: &[(String, u64)],
    tools: &[String],
    api: &[(String, Vec<String>)],
    postgres: &[(String, Vec<String>)],
) -> anyhow::Result<()> {
    let ca = raftgres_certs::Authority::open_or_create(dir)?;
    let report = |what: &str, pair: &raftgres_certs::Pair| {
        let verb = if pair.created { "created" } else { "kept" };
        println!(
            "{verb} {what} {} {}",
            pair.cert.display(),
            pair.key.display()
        );
    };
    report("ca", &ca.ca);
    for (name, id) in members {
        report(
            &format!("member {name} (node {id})"),
            &ca.member(name, *id)?,
        );
    }
    for name in tools {
        report(&format!("tools {name}"), &ca.tools(name)?);
    }
    for (name, hosts) in api {
        report(
            &format!("REST API {name} ({})", hosts.join(", ")),
            &ca.server(&format!("{name}-api"), hosts)?,
        );
    }
    for (name, hosts) in postgres {
        report(
            &format!("Postgres {name} ({})", hosts.join(", ")),
            &ca.server(&format!("{name}-pg"), hosts)?,
        );
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let command = match cli.command {
        Cmd::Lab { action } => return lab_cmd::run(&runtime, action),
        Cmd::Tls {
            action:
                TlsCmd::Issue {
                    dir,
                    members,
                    tools,
                    api,
                    postgres,
                },
        } => return issue_certificates(&dir, &members, &tools, &api, &postgres),
        Cmd::Completion { shell } => {
            // Into memory first: the generator panics on a write error, such
            // as a reader (`| head`) that closed the pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "raftgresctl", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)
                .context("cannot write the completion script")?;
            return Ok(());
        }
        Cmd::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
            return Ok(());
        }
        Cmd::Cluster(command) => command,
    };
    if let ClusterCmd::Query(args) = &command
        && cli.target.username.is_some()
        && args.login.dbuser.is_none()
    {
        // patronictl's `query --username` is the database user; here it
        // would silently be the REST API's.
        anyhow::bail!(
            "--username names the REST API's user; give query's database user with -U USER (or --dbuser USER)"
        );
    }
    // `drill --entry haproxy|pgbouncer` find those in the lab's description.
    let lab = cli.target.lab.clone();
    let target = cli.target.resolve()?;
    let api = client::Api::new(target.credentials, &target.seeds, &target.tls)
        .context("cannot set up the HTTP client")?;
    let mut finder = Finder::new(api, target.seeds, target.scope);
    let finder = &mut finder;
    runtime.block_on(async move {
        match command {
            ClusterCmd::List {
                format,
                watch_seconds,
                watch_every_2s,
                extended,
                timestamp,
            } => {
                let watch = watch_seconds.or(watch_every_2s.then_some(2));
                let view = View::List { format, extended };
                commands::show_members(finder, view, watch, timestamp).await
            }
            ClusterCmd::Topology { watch_seconds } => {
                commands::show_members(finder, View::Topology, watch_seconds, false).await
            }
            ClusterCmd::Switchover {
                leader,
                candidate,
                scheduled,
                force,
            } => operate::switchover(finder, leader, candidate, scheduled, force).await,
            ClusterCmd::Failover { candidate, force } => {
                operate::failover(finder, candidate, force).await
            }
            ClusterCmd::Restart {
                members,
                role,
                any,
                pending,
                scheduled,
                pg_version,
                timeout,
                force,
            } => {
                let pick = operate::Pick {
                    named: members,
                    role,
                    pending,
                    any,
                };
                let when = operate::RestartWhen {
                    scheduled,
                    pg_version,
                    timeout,
                };
                operate::restart(finder, pick, when, force).await
            }
            ClusterCmd::Reload {
                members,
                role,
                force,
            } => {
                let pick = operate::Pick {
                    named: members,
                    role,
                    pending: false,
                    any: false,
                };
                operate::reload(finder, pick, force).await
            }
            ClusterCmd::Dsn { member, role } => commands::dsn(finder, member, role).await,
            ClusterCmd::Query(args) => query::query(finder, args).await,
            ClusterCmd::Flush {
                members,
                target,
                role,
                force,
            } => operate::flush(finder, target, members, role, force).await,
            ClusterCmd::Reinit {
                members,
                force,
                wait,
            } => operate::reinit(finder, members, force, wait).await,
            ClusterCmd::Pause { wait } => operate::set_pause(finder, true, wait).await,
            ClusterCmd::Resume { wait } => operate::set_pause(finder, false, wait).await,
            ClusterCmd::History { format } => commands::history(finder, format).await,
            ClusterCmd::ShowConfig { format } => commands::show_config(finder, format).await,
            ClusterCmd::EditConfig { set, pg, force } => {
                edit_config::edit_config(finder, &set, &pg, force).await
            }
            ClusterCmd::Remove { member, force } => operate::remove(finder, member, force).await,
            ClusterCmd::Version => commands::version(finder, target.given).await,
            ClusterCmd::Pooler(args) => pooler::run(finder, args).await,
            ClusterCmd::Drill(args) => drill::drill(finder, args, lab.as_deref()).await,
        }
    })
}
