//! `Lab::up`: choosing the members' ports, passwords and files, writing
//! them, and starting the processes.

use super::{
    Lab, LabError, Mounts, PG_SUPERUSER, free_port, io, random_password, read_description, run_as,
    write_private,
};
use crate::haproxy;
use crate::netns::NetnsMember;
use crate::pgbouncer;
use crate::settings::agent_settings;
use crate::spec::{ApiAuth, LabDescription, LabMember, LabSpec, PgAuth};
use nix::unistd::User;
use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

/// The user name every lab member's `restapi.authentication` accepts.
const API_USERNAME: &str = "raftgres";

fn chown_tree(path: &Path, user: &User) -> Result<(), LabError> {
    chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw())).map_err(|e| {
        LabError::Setup(format!("cannot chown {} to postgres: {e}", path.display()))
    })?;
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(io(path))? {
            chown_tree(&entry.map_err(io(path))?.path(), user)?;
        }
    }
    Ok(())
}

/// Every ancestor of DIR must be enterable by the agents' user (a clone
/// under /root is not); say so instead of failing obscurely later.
fn check_reachable(dir: &Path, user: &User, advice: &str) -> Result<(), LabError> {
    let mut current = PathBuf::new();
    for part in dir.components() {
        current.push(part);
        if current == dir {
            break;
        }
        let meta = fs::metadata(&current).map_err(io(&current))?;
        let mode = meta.permissions().mode();
        use std::os::unix::fs::MetadataExt;
        let ok = mode & 0o001 != 0
            || (meta.uid() == user.uid.as_raw() && mode & 0o100 != 0)
            || (meta.gid() == user.gid.as_raw() && mode & 0o010 != 0);
        if !ok {
            return Err(LabError::Setup(format!(
                "the postgres user cannot enter {}; {advice}",
                current.display()
            )));
        }
    }
    Ok(())
}

/// `--pg-bin-dir`, checked as the members will use it: absolute (the
/// settings file requires it), holding `postgres`, and reachable by their
/// user (the agents run its binaries as that user; a directory under
/// /root is closed to it).
fn given_pg_bin_dir(from: &Path, user: Option<&User>) -> Result<PathBuf, LabError> {
    let from = std::path::absolute(from).map_err(io(from))?;
    let postgres = from.join("postgres");
    if !postgres.is_file() {
        return Err(LabError::Setup(format!(
            "the Postgres bin directory {} has no postgres binary; point it at a PostgreSQL install's bin/ (e.g. what scripts/fetch-postgres prints)",
            from.display()
        )));
    }
    if let Some(user) = user {
        check_reachable(
            &postgres,
            user,
            "let it through (chmod o+x) or put the Postgres binaries where it can reach them",
        )?;
    }
    Ok(from)
}

impl Lab {
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        Self::up_with(spec, None)
    }

    /// Like [`Lab::up`], but member `i` (witness last) runs in network
    /// namespace `netns[i].ns`: its agent is started inside it (no wrapper
    /// process; Postgres and the watchdog inherit it), and its Raft and
    /// Postgres addresses use `netns[i].addr` instead of loopback. A
    /// database member's pgbouncer, when installed, is started inside that
    /// namespace too and listens on `netns[i].addr`, so cutting the member
    /// off cuts its pgbouncer off with it. There is no HAProxy. The
    /// namespaces must exist and be reachable from this process (see
    /// [`crate::LabNetwork`]); the lab neither creates nor removes them.
    pub fn up_in_netns(spec: &LabSpec, netns: &[NetnsMember]) -> Result<Lab, LabError> {
        let count = spec.members + usize::from(spec.witness);
        if netns.len() < count {
            return Err(LabError::Setup(format!(
                "{count} members need {count} network namespaces, got {}",
                netns.len()
            )));
        }
        Self::up_with(spec, Some(netns))
    }

    fn up_with(spec: &LabSpec, netns: Option<&[NetnsMember]>) -> Result<Lab, LabError> {
        if !spec.agent_bin.is_file() {
            return Err(LabError::NoAgentBinary(spec.agent_bin.clone()));
        }
        let run_as = run_as()?;
        let dir = spec.dir.clone();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let dir = fs::canonicalize(&dir).map_err(io(&dir))?;
        if let Some(user) = &run_as {
            check_reachable(
                &dir,
                user,
                "choose a lab --dir it can reach, e.g. /tmp/raftgres-lab",
            )?;
        }
        let bin_dir = dir.join("bin");
        fs::create_dir_all(&bin_dir).map_err(io(&bin_dir))?;
        let agent_bin = bin_dir.join("raftgres-agent");
        // Copy, since the agents' user may not reach the build tree.
        fs::copy(&spec.agent_bin, &agent_bin).map_err(io(&agent_bin))?;
        fs::set_permissions(&agent_bin, fs::Permissions::from_mode(0o755))
            .map_err(io(&agent_bin))?;

        let count = spec.members + usize::from(spec.witness);
        // A DIR left by an earlier `lab up` holds data whose Raft membership
        // names its ports: start that same cluster again on them.
        let previous = match read_description(&dir) {
            Ok(previous) => Some(previous),
            Err(_) if LabDescription::path(&dir).exists() => {
                return Err(LabError::Setup(format!(
                    "{} holds an unreadable lab.json; remove the directory or choose another --dir",
                    dir.display()
                )));
            }
            Err(_) => None,
        };
        if let Some(previous) = &previous {
            let witnesses = previous.members.iter().filter(|m| m.witness).count();
            if previous.members.len() != count
                || witnesses != usize::from(spec.witness)
                || netns.is_some()
            {
                return Err(LabError::Setup(format!(
                    "{} holds an earlier lab of {} members ({witnesses} witness); start it with the same shape, or remove the directory or choose another --dir",
                    dir.display(),
                    previous.members.len()
                )));
            }
        }
        let port_of = |addr: &str| {
            addr.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
        };
        let reused = |pick: &dyn Fn(&LabMember) -> Option<u16>| -> Option<Vec<u16>> {
            previous.as_ref()?.members.iter().map(pick).collect()
        };
        let reused_by_postgres_members = |pick: &dyn Fn(&LabMember) -> Option<u16>| {
            let members = &previous.as_ref()?.members;
            let postgres_members = members.iter().filter(|m| !m.witness);
            postgres_members.map(pick).collect::<Option<Vec<u16>>>()
        };
        let ports = match &spec.ports {
            None if previous.is_some() => reused(&|m| port_of(&m.raft_addr))
                .ok_or_else(|| LabError::Setup("the earlier lab.json lacks Raft ports".into()))?,
            Some(ports) if ports.len() >= count => ports.clone(),
            Some(ports) => {
                return Err(LabError::Setup(format!(
                    "{count} members need {count} ports, got {}",
                    ports.len()
                )));
            }
            None => (0..count).map(|_| free_port()).collect::<Result<_, _>>()?,
        };
        let pg_ports = match reused_by_postgres_members(&|m| m.pg_port) {
            Some(ports) if ports.len() == spec.members => ports,
            _ => (0..spec.members)
                .map(|_| free_port())
                .collect::<Result<Vec<_>, _>>()?,
        };
        let api_ports = match reused(&|m| port_of(&m.api_url)) {
            Some(ports) => ports,
            None => (0..count)
                .map(|_| free_port())
                .collect::<Result<Vec<_>, _>>()?,
        };
        // Scripts and tests of the earlier lab keep working with what they read.
        let api_auth = match previous.as_ref().and_then(|p| p.api_auth.clone()) {
            Some(auth) => auth,
            None => ApiAuth {
                username: API_USERNAME.to_owned(),
                password: random_password()?,
            },
        };
        let pg_auth = match previous.as_ref().and_then(|p| p.pg_auth.clone()) {
            Some(auth) => auth,
            None => PgAuth {
                superuser: random_password()?,
                replication: random_password()?,
                pgbouncer_admin: random_password()?,
            },
        };
        let previous_haproxy = previous.as_ref().and_then(|p| p.haproxy.as_ref());
        if let Some(old) = previous_haproxy
            && haproxy::is_ours(old.pid, &old.config)
        {
            return Err(LabError::Setup(format!(
                "HAProxy of the earlier lab in {} still runs (pid {}); run `raftgresctl lab down --dir {}` first",
                dir.display(),
                old.pid,
                dir.display()
            )));
        }
        if let Some(old) = previous.as_ref().and_then(|p| {
            p.members
                .iter()
                .find(|m| match (m.pgbouncer_pid, &m.pgbouncer_config) {
                    (Some(pid), Some(config)) => pgbouncer::is_ours(pid, config),
                    _ => false,
                })
        }) {
            return Err(LabError::Setup(format!(
                "pgbouncer of {} of the earlier lab in {} still runs (pid {}); run `raftgresctl lab down --dir {}` first",
                old.name,
                dir.display(),
                old.pgbouncer_pid.unwrap_or_default(),
                dir.display()
            )));
        }
        let pgbouncer_bin = pgbouncer::binary();
        let previous_pgbouncer_ports = reused_by_postgres_members(&|m| m.pgbouncer_port);
        // One per database member; witnesses come last and get none.
        let pgbouncer_ports: Vec<Option<u16>> = match (&pgbouncer_bin, previous_pgbouncer_ports) {
            (None, _) => vec![None; spec.members],
            (Some(_), Some(ports)) if ports.len() == spec.members => {
                ports.into_iter().map(Some).collect()
            }
            (Some(_), _) => (0..spec.members)
                .map(|_| free_port().map(Some))
                .collect::<Result<_, _>>()?,
        };
        // Namespaced members are out of loopback's reach by design.
        let haproxy_bin = haproxy::binary().filter(|_| netns.is_none());
        let haproxy_ports = match (&haproxy_bin, previous_haproxy) {
            (None, _) => None,
            (Some(_), Some(old)) => Some([old.write_port, old.read_port]),
            (Some(_), None) => Some([free_port()?, free_port()?]),
        };
        let members: Vec<LabMember> = (0..count)
            .map(|i| {
                let witness = i >= spec.members;
                let name = if witness {
                    "witness".to_owned()
                } else {
                    format!("node{}", i + 1)
                };
                let ns = netns.map(|n| &n[i]);
                let host = ns.map_or_else(|| "127.0.0.1".to_owned(), |n| n.addr.to_string());
                let pgbouncer_port = pgbouncer_ports.get(i).copied().flatten();
                let pgbouncer_files = pgbouncer_port.map(|_| pgbouncer::Files::of(&dir, &name));
                let pgbouncer_host = pgbouncer::listen_host(ns.map(|n| n.addr));
                let pgbouncer_dsn = |db: &str| {
                    pgbouncer_port.map(|port| {
                        let (user, password) = if db == pgbouncer::ADMIN_DB {
                            (pgbouncer::ADMIN_USER, &pg_auth.pgbouncer_admin)
                        } else {
                            (PG_SUPERUSER, &pg_auth.superuser)
                        };
                        format!(
                            "host={pgbouncer_host} port={port} user={user} password={password} \
                             dbname={db}"
                        )
                    })
                };
                LabMember {
                    node_id: i as u64 + 1,
                    witness,
                    raft_addr: match ns {
                        None => format!("127.0.0.1:{}", ports[i]),
                        Some(n) => SocketAddr::new(n.addr, ports[i]).to_string(),
                    },
                    config: dir.join(format!("{name}.yml")),
                    data_dir: dir.join(&name),
                    log: dir.join(format!("{name}.log")),
                    agent_pid: 0,
                    // HTTPS, with a certificate from the lab's CA, as a
                    // deployment's REST API should be.
                    api_url: match ns {
                        None => format!("https://127.0.0.1:{}", api_ports[i]),
                        Some(n) => format!("https://{}", SocketAddr::new(n.addr, api_ports[i])),
                    },
                    pg_host: (!witness).then(|| host.clone()),
                    pg_port: pg_ports.get(i).copied(),
                    dsn: pg_ports.get(i).map(|port| {
                        format!(
                            "host={host} port={port} user={PG_SUPERUSER} password={} \
                             dbname=postgres",
                            pg_auth.superuser
                        )
                    }),
                    netns: ns.map(|n| n.ns.clone()),
                    pgbouncer_port,
                    pgbouncer_dsn: pgbouncer_dsn(pgbouncer::WRITE_DB),
                    pgbouncer_admin_dsn: pgbouncer_dsn(pgbouncer::ADMIN_DB),
                    pgbouncer_config: pgbouncer_files.as_ref().map(|f| f.config.clone()),
                    pgbouncer_databases_file: pgbouncer_files.as_ref().map(|f| f.databases.clone()),
                    pgbouncer_log: pgbouncer_files.map(|f| f.log),
                    pgbouncer_pid: None,
                    pg_disk: (!witness && spec.data_disk_mib.is_some())
                        .then(|| dir.join(&name).join("disk")),
                    pg_data_dir: (!witness && spec.data_disk_mib.is_some())
                        .then(|| dir.join(&name).join("disk").join("pgdata")),
                    name,
                }
            })
            .collect();
        let agent_preload = match &spec.agent_preload {
            Some(library) => {
                let copy = bin_dir.join("agent-preload.so");
                fs::copy(library, &copy).map_err(io(&copy))?;
                fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).map_err(io(&copy))?;
                Some(copy)
            }
            None => None,
        };
        let pg_bin_dir = match (&spec.pg_bin_dir, spec.copy_pg_binaries) {
            (from, true) => Some(crate::disk::copy_pg_binaries(
                from.as_deref(),
                &dir.join("pg"),
            )?),
            (Some(from), false) => Some(given_pg_bin_dir(from, run_as.as_ref())?),
            (None, false) => None,
        };
        let (lab_tls, member_tls) = crate::tls::issue(
            &dir,
            &members
                .iter()
                .map(|m| crate::tls::Subject {
                    name: m.name.clone(),
                    node_id: m.node_id,
                    api_host: m
                        .api_listen()
                        .map(|a| a.ip().to_string())
                        .unwrap_or_default(),
                    pg_host: m.pg_host.clone(),
                })
                .collect::<Vec<_>>(),
        )?;
        let mut mounts = Mounts::default();
        for (m, tls) in members.iter().zip(&member_tls) {
            fs::create_dir_all(&m.data_dir).map_err(io(&m.data_dir))?;
            if let (Some(disk), Some(mib)) = (&m.pg_disk, spec.data_disk_mib) {
                let owner = run_as.as_ref().map(|u| (u.uid.as_raw(), u.gid.as_raw()));
                crate::disk::mount_small(disk, mib, owner)?;
                mounts.0.push(disk.clone());
            }
            let settings = agent_settings(
                m,
                &members,
                &api_auth,
                &pg_auth,
                pg_bin_dir.as_deref(),
                (&lab_tls.ca_file, tls),
            );
            let text = settings.to_yaml().map_err(|e| {
                LabError::Setup(format!("cannot write {}: {e}", m.config.display()))
            })?;
            write_private(&m.config, &text)?;
        }
        for m in &members {
            let Some(listen) = m.pgbouncer_listen() else {
                continue;
            };
            let files = pgbouncer::Files::of(&dir, &m.name);
            match &m.netns {
                // As the members' own connections: TLS, the server checked.
                None => pgbouncer::write_files(
                    &dir,
                    &files,
                    listen.port(),
                    &pg_auth,
                    Some(&lab_tls.ca_file),
                )?,
                Some(_) => pgbouncer::write_files_on(
                    &dir,
                    &files,
                    listen.ip(),
                    listen.port(),
                    &pg_auth,
                    Some(&lab_tls.ca_file),
                )?,
            }
        }
        let haproxy_config = dir.join("haproxy.cfg");
        if let (Some(bin), Some([write_port, read_port])) = (&haproxy_bin, haproxy_ports) {
            let check_ca = members
                .iter()
                .any(|m| m.api_url.starts_with("https://"))
                .then_some(lab_tls.ca_file.as_path());
            let text = haproxy::render(&members, write_port, read_port, check_ca)?;
            fs::write(&haproxy_config, text).map_err(io(&haproxy_config))?;
            haproxy::check(bin, &haproxy_config)?;
        }
        if let Some(user) = &run_as {
            chown_tree(&dir, user)?;
        }
        let mut lab = Lab {
            description: LabDescription {
                dir,
                agent_bin,
                members,
                api_auth: Some(api_auth),
                haproxy: None,
                pg_bin_dir,
                agent_preload,
                tls: Some(lab_tls),
                pg_auth: Some(pg_auth),
            },
            children: BTreeMap::new(),
            owns_keepers: true,
            haproxy: None,
            pgbouncers: BTreeMap::new(),
            run_as,
            mounts,
        };
        for name in lab.names() {
            lab.start(&name)?;
        }
        if let Some(bin) = &pgbouncer_bin {
            lab.start_pgbouncers(bin)?;
        }
        if let (Some(bin), Some(ports)) = (&haproxy_bin, haproxy_ports) {
            lab.start_haproxy(bin, &haproxy_config, ports)?;
        }
        lab.write_description()?;
        Ok(lab)
    }
}
