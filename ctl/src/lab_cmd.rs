//! `raftgresctl lab`: a real local cluster, through the same lab code the
//! tests use.

use crate::cli::LabCmd;
use anyhow::{Context, bail};
use raftgres_lab::{
    Lab, LabDescription, LabSpec, agent_status, down, pg_query_bool, read_description,
    running_members,
};
use std::time::Duration;
use tokio::runtime::Runtime;

pub fn run(runtime: &Runtime, action: LabCmd) -> anyhow::Result<()> {
    match action {
        LabCmd::Up {
            dir,
            members,
            witness,
            agent_bin,
            pg_bin_dir,
        } => {
            let agent_bin = match agent_bin {
                Some(path) => path,
                None => std::env::current_exe()
                    .context("cannot locate raftgresctl itself")?
                    .with_file_name("raftgres-agent"),
            };
            if !running_members(&dir).is_empty() {
                bail!(
                    "a lab is already running in {}; run `raftgresctl lab down --dir {}` first",
                    dir.display(),
                    dir.display()
                );
            }
            let spec = LabSpec {
                pg_bin_dir,
                ..LabSpec::new(dir, members.into(), witness, agent_bin)
            };
            let lab = Lab::up(&spec)?;
            let holder = runtime.block_on(lab.wait_healthy(Duration::from_secs(60)));
            let description = lab.detach();
            let holder = holder?;
            println!(
                "lab up in {}: {} members, lease held by {holder}",
                description.dir.display(),
                description.members.len()
            );
            println!(
                "description: {}",
                raftgres_lab::LabDescription::path(&description.dir).display()
            );
            print!("{}", connect_block(&description)?);
            Ok(())
        }
        LabCmd::Down { dir } => {
            let stopped = down(&dir, Duration::from_secs(30))?;
            println!(
                "lab down in {}: stopped {}",
                dir.display(),
                if stopped.is_empty() {
                    "nothing".to_owned()
                } else {
                    stopped.join(", ")
                }
            );
            Ok(())
        }
        LabCmd::RestartAgent { dir, name } => {
            let mut lab = Lab::open(&dir)?;
            let pid = lab.restart_agent(&name, Duration::from_secs(30))?;
            lab.detach();
            println!("restarted {name}'s agent in {}: pid {pid}", dir.display());
            Ok(())
        }
        LabCmd::Status { dir } => {
            let description = read_description(&dir)?;
            println!(
                "{:<10} {:>4} {:<21} {:>8} {:<6} {:<10} {:>6} {:>6} {:<8} {:>5}",
                "MEMBER",
                "ID",
                "RAFT",
                "PID",
                "LEASE",
                "HOLDER",
                "LEADER",
                "TERM",
                "POSTGRES",
                "PORT"
            );
            runtime.block_on(async {
                for m in &description.members {
                    let postgres = match &m.dsn {
                        None => "none",
                        Some(dsn) => match pg_query_bool(dsn, "SELECT pg_is_in_recovery()").await {
                            Ok(true) => "replica",
                            Ok(false) => "primary",
                            Err(_) => "down",
                        },
                    };
                    let port = m.pg_port.map_or("-".to_owned(), |p| p.to_string());
                    match agent_status(&m.raft_addr, description.tls.as_ref()).await {
                        Ok(s) => println!(
                            "{:<10} {:>4} {:<21} {:>8} {:<6} {:<10} {:>6} {:>6} {:<8} {:>5}",
                            m.name,
                            m.node_id,
                            m.raft_addr,
                            m.agent_pid,
                            if s.holds_lease {
                                "held"
                            } else if m.witness {
                                "wit"
                            } else {
                                "-"
                            },
                            if s.lease_holder_seen.is_empty() {
                                "-"
                            } else {
                                &s.lease_holder_seen
                            },
                            s.raft_leader,
                            s.raft_term,
                            postgres,
                            port
                        ),
                        Err(e) => println!(
                            "{:<10} {:>4} {:<21} {:>8} agent down ({e}); postgres {postgres}",
                            m.name, m.node_id, m.raft_addr, m.agent_pid
                        ),
                    }
                }
            });
            print!("{}", connect_block(&description)?);
            Ok(())
        }
    }
}

/// Where a client connects, each with a `psql` line ready to paste:
/// HAProxy's write and read ports, and each member's pgbouncer. The
/// superuser's password goes into `DIR/pgpass` (mode 600), named by
/// `PGPASSFILE`, never onto the command line, where `ps` shows it.
fn connect_block(description: &LabDescription) -> anyhow::Result<String> {
    let Some(auth) = &description.pg_auth else {
        return Ok(String::new());
    };
    let passfile = description.dir.join("pgpass");
    write_private(&passfile, &format!("*:*:*:postgres:{}\n", auth.superuser))?;
    let psql = |port: u16| {
        format!(
            "PGPASSFILE={} psql \"host=127.0.0.1 port={port} user=postgres dbname=postgres\"",
            passfile.display()
        )
    };
    let mut out = String::from("clients connect here:\n");
    match &description.haproxy {
        Some(h) => {
            out.push_str(&format!("  writes (HAProxy)      {}\n", psql(h.write_port)));
            out.push_str(&format!("  reads (HAProxy)       {}\n", psql(h.read_port)));
        }
        None => out.push_str(
            "  HAProxy is not installed, so there is no write or read port: apt-get install haproxy, then lab up again\n",
        ),
    }
    let poolers: Vec<_> = description
        .members
        .iter()
        .filter_map(|m| Some((&m.name, m.pgbouncer_port?)))
        .collect();
    if poolers.is_empty() {
        out.push_str(
            "  pgbouncer is not installed, so no member has a pool: apt-get install pgbouncer, then lab up again\n",
        );
    }
    for (name, port) in poolers {
        let label = format!("{name} (pgbouncer)");
        out.push_str(&format!("  {label:<21} {}\n", psql(port)));
    }
    Ok(out)
}

/// Writes `text` to `path`, readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
