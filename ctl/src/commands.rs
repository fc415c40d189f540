//! The commands that only read: list, topology, history, show-config,
//! version.

use crate::cli::{DocFormat, Format, RoleFilter};
use crate::client::{Call, endpoint};
use crate::cluster::{Cluster, Finder};
use crate::error::CtlError;
use crate::format::{self, history_rows, history_table, member_table, topology_table};
use crate::yaml;
use anyhow::Context;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(Clone, Copy)]
pub enum View {
    List { format: Format, extended: bool },
    Topology,
}

impl View {
    fn render(self, cluster: &Cluster) -> anyhow::Result<String> {
        let view = &cluster.view;
        Ok(match self {
            View::List { format, extended } => match format {
                Format::Pretty => member_table(view, extended),
                Format::Tsv => format::member_tsv(view, extended),
                Format::Json => json_text(&format::member_rows(view, extended))?,
                Format::Yaml => yaml::emit(&format::member_rows(view, extended)),
            },
            View::Topology => topology_table(view),
        })
    }
}

fn json_text(value: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// `list` and `topology`, once or every `watch_seconds` until Ctrl-C;
/// with `timestamp`, each after the time.
pub async fn show_members(
    finder: &mut Finder,
    view: View,
    watch_seconds: Option<u64>,
    timestamp: bool,
) -> anyhow::Result<()> {
    let stamp = || {
        if timestamp {
            println!("{}", jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S"));
        }
    };
    let Some(seconds) = watch_seconds else {
        let cluster = finder.cluster().await?;
        stamp();
        print!("{}", view.render(&cluster)?);
        return Ok(());
    };
    let interactive = std::io::stdout().is_terminal();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        // A member going down is what one watches for: a failed round
        // is shown and the next round tries the other members.
        let frame = finder
            .cluster()
            .await
            .map_err(anyhow::Error::from)
            .and_then(|c| view.render(&c));
        {
            let mut out = std::io::stdout().lock();
            if interactive {
                let now = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S %Z");
                writeln!(out, "\x1b[H\x1b[2J{now} (every {seconds}s; Ctrl-C to stop)")?;
            }
            if timestamp && !interactive {
                writeln!(out, "{}", jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S"))?;
            }
            match frame {
                Ok(text) => write!(out, "{text}")?,
                Err(e) => eprintln!("raftgresctl: {e:#}"),
            }
            out.flush()?;
        }
        tokio::select! {
            signal = &mut stop => {
                signal.context("cannot listen for Ctrl-C")?;
                return Ok(());
            }
            () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        }
    }
}

pub async fn history(finder: &mut Finder, output: Format) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let reply = finder.call_any(&cluster, &["history"], Call::get).await?;
    let rows = history_rows(&reply.body).map_err(|e| {
        CtlError::Unavailable(format!(
            "GET /history on {}: the answer is not what raftgresctl expects ({e}); compare versions with `raftgresctl version`",
            cluster.via
        ))
    })?;
    match output {
        Format::Pretty => print!("{}", history_table(&rows)),
        Format::Tsv => print!("{}", format::history_tsv(&rows)),
        Format::Json => print!("{}", json_text(&serde_json::to_value(&rows)?)?),
        Format::Yaml => print!("{}", yaml::emit(&serde_json::to_value(&rows)?)),
    }
    Ok(())
}

pub async fn show_config(finder: &mut Finder, output: DocFormat) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let reply = finder.call_any(&cluster, &["config"], Call::get).await?;
    match output {
        DocFormat::Yaml => print!("{}", yaml::emit(&reply.body)),
        DocFormat::Json => print!("{}", json_text(&reply.body)?),
    }
    Ok(())
}

/// raftgresctl's own version always; each member's agent only when the
/// user named a cluster, so `version` alone works anywhere.
pub async fn version(finder: &mut Finder, cluster_given: bool) -> anyhow::Result<()> {
    println!("raftgresctl {}", env!("CARGO_PKG_VERSION"));
    if !cluster_given {
        return Ok(());
    }
    let cluster = finder.cluster().await?;
    let mut members: Vec<_> = cluster.view.members.iter().collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let mut unknown = Vec::new();
    for member in members {
        let Some(base) = member.api_base() else {
            println!("{}: unknown (no api_url in /cluster)", member.name);
            unknown.push(member.name.as_str());
            continue;
        };
        match finder
            .api
            .call(Call::get(endpoint(&base, &["patroni"])))
            .await
        {
            Ok(reply) => println!("{}: {}", member.name, format::agent_version(&reply.body)),
            Err(e) => {
                println!("{}: unknown ({e})", member.name);
                unknown.push(member.name.as_str());
            }
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(CtlError::Unavailable(format!(
            "could not read the version of {}; see the lines above",
            unknown.join(", ")
        ))
        .into())
    }
}

/// `dsn`: `host=H port=P` for the named member, or the first (by name) of
/// `role` (default: the leader), for `psql "$(raftgresctl dsn)"`.
pub async fn dsn(
    finder: &mut Finder,
    member: Option<String>,
    role: Option<RoleFilter>,
) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let view = &cluster.view;
    let found = match &member {
        Some(name) => view.member(name).ok_or_else(|| {
            anyhow::anyhow!(
                "{name} is not a member of cluster {} (members: {}); see `raftgresctl list`",
                view.scope(),
                view.member_names()
            )
        })?,
        None => {
            let role = role.unwrap_or(RoleFilter::Leader);
            let mut fitting: Vec<_> = view
                .members
                .iter()
                .filter(|m| crate::operate::has_role(m, role))
                .collect();
            fitting.sort_by(|a, b| a.name.cmp(&b.name));
            fitting.first().copied().ok_or_else(|| {
                anyhow::anyhow!(
                    "cluster {} has no member of role {role:?} now; see `raftgresctl list`",
                    view.scope()
                )
            })?
        }
    };
    let (Some(host), Some(port)) = (&found.host, found.port) else {
        anyhow::bail!(
            "{} publishes no Postgres address (a witness, or not started yet); see `raftgresctl list`",
            found.name
        );
    };
    println!("{}", format::dsn(host, port));
    Ok(())
}
