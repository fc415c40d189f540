//! From the file's [`schema`] to the typed [`AgentConfig`]: what serde
//! cannot say. A value's own rules (an identifier, an address, an absolute
//! path) and the rules between keys (timings, ports, member lists, which
//! sections a member has), each error naming its key. They run in the order
//! a reader meets the keys, so that of several mistakes the first is
//! reported.

mod log;
mod pgbouncer;
mod postgresql;
mod replica_methods;
mod restapi;
mod tags;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftgres_state::LeaseTiming;

use crate::read::Ctx;
use crate::schema;
use crate::{AgentConfig, BootstrapSettings, ConfigError, InitialMember, RaftSettings, RaftTls};
use values::{absolute, dialable_address, identifier, listen_address, positive, positive_id};

const MIN_SNAPSHOT_EVERY_LOGS: u64 = 10;
const RAFT_PORT_EXAMPLE: u16 = 7101;

pub(crate) fn agent_config(ctx: &Ctx, file: schema::Agent) -> Result<AgentConfig, ConfigError> {
    ctx.check("scope", identifier(&file.scope))?;
    ctx.check("name", identifier(&file.name))?;
    ctx.check("node_id", positive_id(file.node_id))?;
    ctx.check("data_dir", absolute(&file.data_dir))?;
    let tags = tags::settings(ctx, file.tags, &file.name)?;
    let raft = raft(ctx, file.raft)?;
    let members = members(ctx, file.members)?;
    let bootstrap = bootstrap(ctx, &file.bootstrap)?;
    ctx.check(
        "raft.election_timeout_max_ms",
        election_fits_lease(&raft, &bootstrap),
    )?;
    check_self_in_members(ctx, file.node_id, &file.name, &members)?;

    // Last, so that a file written before this section existed still reports
    // its other mistakes first.
    let postgresql = match (file.witness, file.postgresql) {
        // `read::agent` has refused a witness's section.
        (true, _) => None,
        (false, None) => return Err(ctx.missing("postgresql")),
        (false, Some(section)) => Some(postgresql::settings(ctx, section, &file.data_dir, &raft)?),
    };
    // After `postgresql`, whose port it must not take.
    let restapi = restapi::settings(ctx, file.restapi, &raft, postgresql.as_ref())?;
    let pgbouncer = file
        .pgbouncer
        .map(|section| pgbouncer::settings(ctx, section, &raft, postgresql.as_ref(), &restapi))
        .transpose()?;
    let log = log::settings(ctx, file.log)?;

    Ok(AgentConfig {
        scope: file.scope,
        name: file.name,
        node_id: file.node_id,
        data_dir: file.data_dir,
        witness: file.witness,
        tags,
        raft,
        postgresql,
        restapi,
        pgbouncer,
        members,
        bootstrap,
        log,
    })
}

fn raft(ctx: &Ctx, file: schema::Raft) -> Result<RaftSettings, ConfigError> {
    let listen = listen_address(&file.listen, RAFT_PORT_EXAMPLE)
        .map_err(|reason| ctx.invalid("raft.listen", reason))?;
    let advertise = reached_at(
        ctx,
        ("raft.advertise", file.advertise),
        ("raft.listen", listen),
        RAFT_PORT_EXAMPLE,
        "peers should dial",
    )?;

    let heartbeat_ms = file.heartbeat_interval_ms;
    let election_min_ms = file.election_timeout_min_ms;
    let election_max_ms = file.election_timeout_max_ms;
    ctx.check("raft.heartbeat_interval_ms", positive(heartbeat_ms))?;
    if heartbeat_ms >= election_min_ms {
        return Err(ctx.invalid(
            "raft.heartbeat_interval_ms",
            format!(
                "must be less than raft.election_timeout_min_ms ({election_min_ms}), got \
                 {heartbeat_ms}: followers would start elections between heartbeats"
            ),
        ));
    }
    if election_min_ms >= election_max_ms {
        return Err(ctx.invalid(
            "raft.election_timeout_min_ms",
            format!(
                "must be less than raft.election_timeout_max_ms ({election_max_ms}), got \
                 {election_min_ms}: each election timeout is drawn at random between the two"
            ),
        ));
    }
    if file.snapshot_every_logs < MIN_SNAPSHOT_EVERY_LOGS {
        return Err(ctx.invalid(
            "raft.snapshot_every_logs",
            format!(
                "must be at least {MIN_SNAPSHOT_EVERY_LOGS}, got {}",
                file.snapshot_every_logs
            ),
        ));
    }
    ctx.check("raft.rpc_timeout_ms", positive(file.rpc_timeout_ms))?;
    let tls = raft_tls(
        ctx,
        [
            ("raft.tls_ca_file", file.tls_ca_file),
            ("raft.tls_cert_file", file.tls_cert_file),
            ("raft.tls_key_file", file.tls_key_file),
        ],
    )?;

    Ok(RaftSettings {
        listen,
        advertise,
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        election_timeout_min: Duration::from_millis(election_min_ms),
        election_timeout_max: Duration::from_millis(election_max_ms),
        snapshot_every_logs: file.snapshot_every_logs,
        rpc_timeout: Duration::from_millis(file.rpc_timeout_ms),
        tls,
    })
}

/// Mutual TLS between members: the three files together, or none.
fn raft_tls(
    ctx: &Ctx,
    files: [(&str, Option<PathBuf>); 3],
) -> Result<Option<RaftTls>, ConfigError> {
    for (key, path) in &files {
        if let Some(path) = path {
            ctx.check(key, absolute(path))?;
        }
    }
    let [(ca_key, ca), (cert_key, cert), (key_key, key)] = files;
    match (ca, cert, key) {
        (Some(ca_file), Some(cert_file), Some(key_file)) => Ok(Some(RaftTls {
            ca_file,
            cert_file,
            key_file,
        })),
        (None, None, None) => Ok(None),
        (ca, cert, _) => {
            let missing = match (ca, cert) {
                (None, _) => ca_key,
                (_, None) => cert_key,
                _ => key_key,
            };
            Err(ctx.invalid(
                missing,
                "is required with the other raft.tls_* files: mutual TLS needs the \
                 cluster's CA, this member's certificate and its key",
            ))
        }
    }
}

/// The `host:port` others reach a server at: as given, or what it binds
/// when that is one concrete address.
fn reached_at(
    ctx: &Ctx,
    (key, given): (&str, Option<String>),
    (listen_key, listen): (&str, SocketAddr),
    example_port: u16,
    who_dials: &str,
) -> Result<String, ConfigError> {
    match given {
        Some(address) => {
            ctx.check(key, dialable_address(&address, example_port))?;
            Ok(address)
        }
        None if listen.ip().is_unspecified() => Err(ctx.invalid(
            key,
            format!(
                "is required because {listen_key} binds every interface ({listen}); set it \
                 to the host:port {who_dials}, e.g. 10.0.0.1:{}",
                listen.port()
            ),
        )),
        None => Ok(listen.to_string()),
    }
}

/// A directory or file the key may leave to its default.
fn absolute_dir(ctx: &Ctx, key: &str, path: &Path) -> Result<(), ConfigError> {
    absolute(path)
        .map_err(|reason| ctx.invalid(key, format!("{reason}; delete the line to use the default")))
}

/// [`absolute_dir`], or `default` when the key is absent.
fn absolute_or(
    ctx: &Ctx,
    key: &str,
    given: Option<PathBuf>,
    default: impl FnOnce() -> PathBuf,
) -> Result<PathBuf, ConfigError> {
    match given {
        Some(path) => absolute_dir(ctx, key, &path).map(|()| path),
        None => Ok(default()),
    }
}

fn members(ctx: &Ctx, file: Vec<schema::Member>) -> Result<Vec<InitialMember>, ConfigError> {
    if file.is_empty() {
        return Err(ctx.invalid(
            "members",
            "is missing or empty: list every initial voter with id, name and raft_addr",
        ));
    }
    let mut members: Vec<InitialMember> = Vec::with_capacity(file.len());
    for (index, member) in file.into_iter().enumerate() {
        let key = |field: &str| format!("members[{index}].{field}");
        ctx.check(&key("id"), positive_id(member.id))?;
        ctx.check(&key("name"), identifier(&member.name))?;
        ctx.check(
            &key("raft_addr"),
            dialable_address(&member.raft_addr, RAFT_PORT_EXAMPLE),
        )?;
        for (other_index, other) in members.iter().enumerate() {
            let clash = if other.id == member.id {
                Some(("id", member.id.to_string()))
            } else if other.name == member.name {
                Some(("name", format!("{:?}", member.name)))
            } else if other.raft_addr == member.raft_addr {
                Some(("raft_addr", format!("{:?}", member.raft_addr)))
            } else {
                None
            };
            if let Some((field, shown)) = clash {
                return Err(ctx.invalid(
                    &key(field),
                    format!(
                        "{shown} is already used by members[{other_index}]; \
                         every voter needs its own {field}"
                    ),
                ));
            }
        }
        members.push(InitialMember {
            id: member.id,
            name: member.name,
            raft_addr: member.raft_addr,
        });
    }
    Ok(members)
}

fn bootstrap(ctx: &Ctx, file: &schema::Bootstrap) -> Result<BootstrapSettings, ConfigError> {
    let timing = LeaseTiming::from_millis(file.ttl_ms, file.loop_wait_ms, file.lease_margin_ms);
    timing
        .validate_new()
        .map_err(|e| ctx.invalid(&format!("bootstrap.{}", e.key()), e.message_in("bootstrap")))?;
    let (ttl_ms, retry_timeout_ms) = (file.ttl_ms, file.retry_timeout_ms);
    ctx.check("bootstrap.retry_timeout_ms", positive(retry_timeout_ms))?;
    if retry_timeout_ms > ttl_ms {
        return Err(ctx.invalid(
            "bootstrap.retry_timeout_ms",
            format!(
                "must be at most bootstrap.ttl_ms ({ttl_ms}), got {retry_timeout_ms}: a Raft \
                 operation that may wait longer than the lease lasts cannot keep it"
            ),
        ));
    }
    Ok(BootstrapSettings {
        timing,
        retry_timeout: Duration::from_millis(retry_timeout_ms),
        maximum_lag_on_failover: file.maximum_lag_on_failover,
    })
}

/// Losing the Raft leader stops every commit until a new one is elected. If
/// that can outlast the primary's renewal budget, every loss of the Raft
/// leader, even a replica restarted for an upgrade, fences the primary and
/// fails over. Safety does not depend on this; freedom from false failovers
/// does.
fn election_fits_lease(raft: &RaftSettings, bootstrap: &BootstrapSettings) -> Result<(), String> {
    bootstrap
        .timing
        .rides_out(raft.worst_election())
        .map_err(|e| e.message_in("bootstrap"))
}

fn check_self_in_members(
    ctx: &Ctx,
    node_id: u64,
    name: &str,
    members: &[InitialMember],
) -> Result<(), ConfigError> {
    match members.iter().position(|m| m.id == node_id) {
        None => {
            let ids = members
                .iter()
                .map(|m| m.id.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            Err(ctx.invalid(
                "node_id",
                format!(
                    "{node_id} is not among the ids in `members` ({ids}); \
                     add this member to `members` or correct node_id"
                ),
            ))
        }
        Some(index) if members[index].name != name => Err(ctx.invalid(
            "name",
            format!(
                "is {name:?} but members[{index}], the entry with node_id {node_id}, \
                 is named {:?}; make them match",
                members[index].name
            ),
        )),
        Some(_) => Ok(()),
    }
}
