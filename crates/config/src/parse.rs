//! The schema: which keys exist, their defaults, and the rules between them.

use raftgres_state::LeaseTiming;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::Value;

use crate::tree::{Ctx, Section};
use crate::{
    AgentConfig, ApiCredentials, BootstrapSettings, ConfigError, InitialMember, PgAuthentication,
    PgBouncerSettings, PgLogin, PgSslMode, PgTls, PostgresSettings, RaftSettings, RaftTls,
    RestApiSettings, RestApiTls, Tags, VerifyClient,
};

const TOP_KEYS: &[&str] = &[
    "scope",
    "name",
    "node_id",
    "data_dir",
    "witness",
    "tags",
    "raft",
    "postgresql",
    "restapi",
    "members",
    "bootstrap",
    "pgbouncer",
];
const PGBOUNCER_KEYS: &[&str] = &[
    "databases_file",
    "listen",
    "admin_user",
    "admin_password",
    "dbname",
    "write_db",
    "read_db",
];
const TAGS_KEYS: &[&str] = &["nofailover", "failover_priority", "nosync"];
const RAFT_KEYS: &[&str] = &[
    "listen",
    "advertise",
    "heartbeat_interval_ms",
    "election_timeout_min_ms",
    "election_timeout_max_ms",
    "snapshot_every_logs",
    "rpc_timeout_ms",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
];
const POSTGRESQL_KEYS: &[&str] = &[
    "listen",
    "connect_address",
    "bin_dir",
    "data_dir",
    "socket_dir",
    "authentication",
    "pg_hba",
    "pgpass",
    "restart_grace_ms",
    "parameters",
    "tls",
];
const PG_TLS_KEYS: &[&str] = &["sslmode", "sslrootcert"];
const PG_AUTHENTICATION_KEYS: &[&str] = &["superuser", "replication", "rewind"];
const PG_LOGIN_KEYS: &[&str] = &["username", "password", "password_file"];
const RESTAPI_KEYS: &[&str] = &[
    "listen",
    "connect_address",
    "authentication",
    "certfile",
    "keyfile",
    "cafile",
    "verify_client",
    "allowlist",
    "allowlist_include_members",
    "authenticate_reads",
];
const AUTHENTICATION_KEYS: &[&str] = &["username", "password"];
const MEMBER_KEYS: &[&str] = &["id", "name", "raft_addr"];
const BOOTSTRAP_KEYS: &[&str] = &[
    "ttl_ms",
    "loop_wait_ms",
    "retry_timeout_ms",
    "lease_margin_ms",
    "maximum_lag_on_failover",
];

const MAX_IDENTIFIER_LEN: usize = 63;
const MIN_SNAPSHOT_EVERY_LOGS: u64 = 10;
const RAFT_PORT_EXAMPLE: u16 = 7101;
const POSTGRES_PORT_EXAMPLE: u16 = 5432;
const RESTAPI_PORT_EXAMPLE: u16 = 8008;
const PGBOUNCER_PORT_EXAMPLE: u16 = 6432;
const DEFAULT_RESTAPI_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, RESTAPI_PORT_EXAMPLE));
const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
const DEFAULT_POSTGRES_ROLE: &str = "postgres";
const DEFAULT_REPLICATION_ROLE: &str = "replicator";
const DEFAULT_REWIND_ROLE: &str = "rewind";
const DEFAULT_PGBOUNCER_ADMIN: &str = "pgbouncer_admin";

pub(crate) fn agent_config(
    ctx: &Ctx,
    root: config::Map<String, Value>,
) -> Result<AgentConfig, ConfigError> {
    let mut top = Section::open(ctx, String::new(), root, TOP_KEYS)?;

    let scope = top.string("scope", "set it to the cluster name, e.g. `scope: demo`")?;
    ctx.check("scope", identifier(&scope))?;
    let name = top.string("name", "set it to this member's name, e.g. `name: node1`")?;
    ctx.check("name", identifier(&name))?;
    let node_id = top.u64(
        "node_id",
        "set it to this member's Raft id, e.g. `node_id: 1`",
    )?;
    ctx.check("node_id", positive_id(node_id))?;
    let data_dir = PathBuf::from(top.string(
        "data_dir",
        "set it to an absolute directory, e.g. `data_dir: /var/lib/raftgres/node1`",
    )?);
    if !data_dir.is_absolute() {
        return Err(ctx.invalid(
            "data_dir",
            format!("must be an absolute path, got {:?}", data_dir.display()),
        ));
    }
    let witness = top.bool_or("witness", false)?;
    let tags = tags(ctx, top.section_or_empty("tags", TAGS_KEYS)?)?;
    let raft = raft(
        ctx,
        top.section(
            "raft",
            RAFT_KEYS,
            "add a `raft:` section with at least `listen`, e.g. `listen: 127.0.0.1:7101`",
        )?,
    )?;
    let members = members(ctx, top.take("members"))?;
    let bootstrap = bootstrap(ctx, top.section_or_empty("bootstrap", BOOTSTRAP_KEYS)?)?;
    ctx.check(
        "raft.election_timeout_max_ms",
        election_fits_lease(&raft, &bootstrap),
    )?;

    check_self_in_members(ctx, node_id, &name, &members)?;

    // Last, so that a file written before this section existed still reports
    // its other mistakes first.
    let postgresql = if witness {
        if top.take("postgresql").is_some() {
            return Err(ctx.invalid(
                "postgresql",
                "a witness runs no Postgres; remove this section",
            ));
        }
        None
    } else {
        let section = top.section(
            "postgresql",
            POSTGRESQL_KEYS,
            &format!(
                "every member except a witness runs Postgres; add a `postgresql:` section \
                 with at least `listen`, e.g. `listen: 127.0.0.1:{POSTGRES_PORT_EXAMPLE}`"
            ),
        )?;
        Some(postgresql(ctx, section, &data_dir, &raft)?)
    };
    // After `postgresql`, whose port it must not take.
    let restapi = restapi(
        ctx,
        top.section_or_empty("restapi", RESTAPI_KEYS)?,
        &raft,
        postgresql.as_ref(),
    )?;

    let pgbouncer = top
        .section_opt("pgbouncer", PGBOUNCER_KEYS)?
        .map(|section| pgbouncer(ctx, section, &raft, postgresql.as_ref(), &restapi))
        .transpose()?;

    Ok(AgentConfig {
        scope,
        name,
        node_id,
        data_dir,
        witness,
        tags,
        raft,
        postgresql,
        restapi,
        pgbouncer,
        members,
        bootstrap,
    })
}

fn pgbouncer(
    ctx: &Ctx,
    mut section: Section<'_>,
    raft: &RaftSettings,
    postgresql: Option<&PostgresSettings>,
    restapi: &RestApiSettings,
) -> Result<PgBouncerSettings, ConfigError> {
    let file_key = section.key("databases_file");
    let databases_file = PathBuf::from(section.string(
        "databases_file",
        "set it to the absolute path of the [databases] file pgbouncer.ini includes, \
         e.g. `databases_file: /etc/pgbouncer/raftgres-databases.ini`",
    )?);
    if !databases_file.is_absolute() {
        return Err(ctx.invalid(
            &file_key,
            format!(
                "must be an absolute path (pgbouncer resolves a relative %include against its \
                 working directory), got {:?}",
                databases_file.display()
            ),
        ));
    }
    let listen_key = section.key("listen");
    let listen_text = section.string(
        "listen",
        "set it to the address pgbouncer listens on, e.g. `listen: 127.0.0.1:6432`",
    )?;
    let listen = listen_address(&listen_text, PGBOUNCER_PORT_EXAMPLE)
        .map_err(|reason| ctx.invalid(&listen_key, reason))?;
    let mut taken = vec![
        ("raft.listen", raft.listen),
        ("restapi.listen", restapi.listen),
    ];
    if let Some(pg) = postgresql {
        taken.push(("postgresql.listen", pg.listen));
    }
    if let Some((other_key, other)) = taken.iter().find(|(_, o)| binds_collide(listen, *o)) {
        return Err(ctx.invalid(
            &listen_key,
            format!("{listen} uses the port of {other_key} ({other}); give pgbouncer its own port"),
        ));
    }
    let admin_user = section
        .string_opt("admin_user")?
        .unwrap_or_else(|| DEFAULT_PGBOUNCER_ADMIN.to_owned());
    ctx.check(&section.key("admin_user"), pg_name(&admin_user))?;
    if let Some(pg) = postgresql
        && pg.authentication.superuser.username == admin_user
    {
        return Err(ctx.invalid(
            &section.key("admin_user"),
            format!(
                "is the Postgres superuser `{admin_user}`; give pgbouncer's console a user of its \
                 own (default `{DEFAULT_PGBOUNCER_ADMIN}`), so its password opens nothing else"
            ),
        ));
    }
    let admin_password = section.secret_opt("admin_password")?;
    let dbname = section
        .string_opt("dbname")?
        .unwrap_or_else(|| DEFAULT_POSTGRES_ROLE.to_owned());
    ctx.check(&section.key("dbname"), pg_name(&dbname))?;
    let write_db = section
        .string_opt("write_db")?
        .unwrap_or_else(|| dbname.clone());
    ctx.check(&section.key("write_db"), pg_name(&write_db))?;
    let read_db = section.string_opt("read_db")?;
    if let Some(read_db) = &read_db {
        let key = section.key("read_db");
        ctx.check(&key, pg_name(read_db))?;
        if *read_db == write_db || *read_db == "pgbouncer" {
            return Err(ctx.invalid(
                &key,
                format!("must differ from write_db and from `pgbouncer` (the admin console), got {read_db:?}"),
            ));
        }
    }
    if write_db == "pgbouncer" {
        return Err(ctx.invalid(
            &section.key("write_db"),
            "`pgbouncer` is the admin console's name; choose another, e.g. the database name",
        ));
    }
    Ok(PgBouncerSettings {
        databases_file,
        listen,
        admin_user,
        admin_password,
        dbname,
        write_db,
        read_db,
    })
}

/// A database or user name pgbouncer's `[databases]` lines can carry as is.
fn pg_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_IDENTIFIER_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1-{MAX_IDENTIFIER_LEN} characters of letters, digits, `_` and `-`, got {value:?}"
        ))
    }
}

fn tags(ctx: &Ctx, mut section: Section<'_>) -> Result<Tags, ConfigError> {
    let nofailover = section.bool_or("nofailover", false)?;
    let priority = section.u64_or("failover_priority", 1)?;
    let failover_priority = u32::try_from(priority).map_err(|_| {
        ctx.invalid(
            &section.key("failover_priority"),
            format!("must be at most {}, got {priority}", u32::MAX),
        )
    })?;
    let nosync = section.bool_or("nosync", false)?;
    Ok(Tags {
        nofailover,
        failover_priority,
        nosync,
    })
}

fn raft(ctx: &Ctx, mut section: Section<'_>) -> Result<RaftSettings, ConfigError> {
    let listen_key = section.key("listen");
    let listen_text = section.string(
        "listen",
        "set it to the address the gRPC server binds, e.g. `listen: 127.0.0.1:7101`",
    )?;
    let listen = listen_address(&listen_text, RAFT_PORT_EXAMPLE)
        .map_err(|reason| ctx.invalid(&listen_key, reason))?;

    let advertise_key = section.key("advertise");
    let advertise = match section.string_opt("advertise")? {
        Some(advertise) => {
            ctx.check(
                &advertise_key,
                dialable_address(&advertise, RAFT_PORT_EXAMPLE),
            )?;
            advertise
        }
        None if listen.ip().is_unspecified() => {
            return Err(ctx.invalid(
                &advertise_key,
                format!(
                    "is required because {listen_key} binds every interface ({listen}); \
                     set it to the host:port peers should dial, e.g. 10.0.0.1:{}",
                    listen.port()
                ),
            ));
        }
        None => listen.to_string(),
    };

    let heartbeat_ms = section.u64_or("heartbeat_interval_ms", 100)?;
    let election_min_ms = section.u64_or("election_timeout_min_ms", 250)?;
    let election_max_ms = section.u64_or("election_timeout_max_ms", 500)?;
    let snapshot_every_logs = section.u64_or("snapshot_every_logs", 1000)?;
    let rpc_timeout_ms = section.u64_or("rpc_timeout_ms", 1000)?;

    let heartbeat_key = section.key("heartbeat_interval_ms");
    let election_min_key = section.key("election_timeout_min_ms");
    let election_max_key = section.key("election_timeout_max_ms");
    ctx.check(&heartbeat_key, positive(heartbeat_ms))?;
    if heartbeat_ms >= election_min_ms {
        return Err(ctx.invalid(
            &heartbeat_key,
            format!(
                "must be less than {election_min_key} ({election_min_ms}), got {heartbeat_ms}: \
                 followers would start elections between heartbeats"
            ),
        ));
    }
    if election_min_ms >= election_max_ms {
        return Err(ctx.invalid(
            &election_min_key,
            format!(
                "must be less than {election_max_key} ({election_max_ms}), got {election_min_ms}: \
                 each election timeout is drawn at random between the two"
            ),
        ));
    }
    if snapshot_every_logs < MIN_SNAPSHOT_EVERY_LOGS {
        return Err(ctx.invalid(
            &section.key("snapshot_every_logs"),
            format!("must be at least {MIN_SNAPSHOT_EVERY_LOGS}, got {snapshot_every_logs}"),
        ));
    }
    ctx.check(&section.key("rpc_timeout_ms"), positive(rpc_timeout_ms))?;
    let tls = raft_tls(ctx, &mut section)?;

    Ok(RaftSettings {
        listen,
        advertise,
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        election_timeout_min: Duration::from_millis(election_min_ms),
        election_timeout_max: Duration::from_millis(election_max_ms),
        snapshot_every_logs,
        rpc_timeout: Duration::from_millis(rpc_timeout_ms),
        tls,
    })
}

/// Mutual TLS between members: the three files together, or none.
fn raft_tls(ctx: &Ctx, section: &mut Section<'_>) -> Result<Option<RaftTls>, ConfigError> {
    let mut files = Vec::new();
    for name in ["tls_ca_file", "tls_cert_file", "tls_key_file"] {
        let key = section.key(name);
        let path = section.string_opt(name)?.map(PathBuf::from);
        if let Some(path) = &path
            && !path.is_absolute()
        {
            return Err(ctx.invalid(
                &key,
                format!("must be an absolute path, got {}", path.display()),
            ));
        }
        files.push((key, path));
    }
    match files.as_slice() {
        [(_, Some(ca)), (_, Some(cert)), (_, Some(key))] => Ok(Some(RaftTls {
            ca_file: ca.clone(),
            cert_file: cert.clone(),
            key_file: key.clone(),
        })),
        [(_, None), (_, None), (_, None)] => Ok(None),
        _ => {
            let (missing, _) = files
                .iter()
                .find(|(_, path)| path.is_none())
                .expect("one is missing");
            Err(ctx.invalid(
                missing,
                "is required with the other raft.tls_* files: mutual TLS needs the \
                 cluster's CA, this member's certificate and its key"
                    .to_owned(),
            ))
        }
    }
}

fn postgresql(
    ctx: &Ctx,
    mut section: Section<'_>,
    agent_data_dir: &Path,
    raft: &RaftSettings,
) -> Result<PostgresSettings, ConfigError> {
    let listen_key = section.key("listen");
    let listen_text = section.string(
        "listen",
        &format!(
            "set it to the address Postgres listens on, e.g. \
             `listen: 127.0.0.1:{POSTGRES_PORT_EXAMPLE}`"
        ),
    )?;
    let listen = listen_address(&listen_text, POSTGRES_PORT_EXAMPLE)
        .map_err(|reason| ctx.invalid(&listen_key, reason))?;
    if binds_collide(listen, raft.listen) {
        return Err(ctx.invalid(
            &listen_key,
            format!(
                "{listen} uses the port of raft.listen ({}); Postgres and the Raft server \
                 cannot both bind it, choose another port, e.g. {POSTGRES_PORT_EXAMPLE}",
                raft.listen
            ),
        ));
    }

    let connect_key = section.key("connect_address");
    let connect_address = match section.string_opt("connect_address")? {
        Some(address) => {
            ctx.check(
                &connect_key,
                dialable_address(&address, POSTGRES_PORT_EXAMPLE),
            )?;
            address
        }
        None if listen.ip().is_unspecified() => {
            return Err(ctx.invalid(
                &connect_key,
                format!(
                    "is required because {listen_key} binds every interface ({listen}); \
                     set it to the host:port other members and clients should connect to, \
                     e.g. 10.0.0.1:{}",
                    listen.port()
                ),
            ));
        }
        None => listen.to_string(),
    };

    let bin_dir = absolute_dir_or(ctx, &mut section, "bin_dir", || {
        PathBuf::from(DEFAULT_BIN_DIR)
    })?;
    let data_dir_key = section.key("data_dir");
    let data_dir = absolute_dir_or(ctx, &mut section, "data_dir", || {
        agent_data_dir.join("pgdata")
    })?;
    if data_dir == agent_data_dir {
        return Err(ctx.invalid(
            &data_dir_key,
            format!(
                "is the agent's own data_dir ({}); give Postgres a directory of its own, \
                 e.g. {}",
                agent_data_dir.display(),
                agent_data_dir.join("pgdata").display()
            ),
        ));
    }
    let socket_dir = absolute_dir_or(ctx, &mut section, "socket_dir", || {
        agent_data_dir.join("run")
    })?;

    let authentication = pg_authentication(
        ctx,
        section.section(
            "authentication",
            PG_AUTHENTICATION_KEYS,
            "give the superuser and replication logins, e.g. `authentication: {superuser: \
             {username: postgres, password_file: /etc/raftgres/superuser.pw}, replication: \
             {username: replicator, password_file: /etc/raftgres/replication.pw}}`; \
             PostgreSQL takes no login over TCP without a password",
        )?,
    )?;
    let pg_hba = pg_hba(ctx, &mut section)?;
    let pgpass = absolute_dir_or(ctx, &mut section, "pgpass", || {
        agent_data_dir.join("pgpass")
    })?;

    let restart_grace_ms = section.u64_or("restart_grace_ms", 2000)?;
    ctx.check(&section.key("restart_grace_ms"), positive(restart_grace_ms))?;

    let parameters_key = section.key("parameters");
    let mut parameters = BTreeMap::new();
    // Sorted, so that of several bad entries the same one is always reported.
    let entries: BTreeMap<String, Value> =
        section.table_or_empty("parameters")?.into_iter().collect();
    for (name, value) in entries {
        let key = format!("{parameters_key}.{name}");
        ctx.check(&key, parameter_name(&name))?;
        let text = ctx.setting_text(&key, value)?;
        parameters.insert(name, text);
    }
    let tls = pg_tls(
        ctx,
        section.section_or_empty("tls", PG_TLS_KEYS)?,
        &parameters,
    )?;

    Ok(PostgresSettings {
        listen,
        connect_address,
        bin_dir,
        data_dir,
        socket_dir,
        authentication,
        pg_hba,
        pgpass,
        restart_grace: Duration::from_millis(restart_grace_ms),
        parameters,
        tls,
    })
}

/// libpq's `sslmode` and `sslrootcert` for every connection to a member's
/// Postgres. A mode that requires TLS also makes this server refuse the
/// members' logins in clear, so it needs the server's own TLS.
fn pg_tls(
    ctx: &Ctx,
    mut section: Section<'_>,
    parameters: &BTreeMap<String, String>,
) -> Result<PgTls, ConfigError> {
    let mode_key = section.key("sslmode");
    let root_key = section.key("sslrootcert");
    let sslmode = match section.string_opt("sslmode")? {
        None => PgSslMode::Prefer,
        Some(text) => PgSslMode::ALL
            .into_iter()
            .find(|mode| mode.as_libpq() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = PgSslMode::ALL.iter().map(|m| m.as_libpq()).collect();
                let allow = if text == "allow" {
                    " (`allow` tries plain first and protects nothing `prefer` does not)"
                } else {
                    ""
                };
                ctx.invalid(
                    &mode_key,
                    format!("is {text:?}; expected one of {}{allow}", names.join(", ")),
                )
            })?,
    };
    let sslrootcert = section.string_opt("sslrootcert")?.map(PathBuf::from);
    match &sslrootcert {
        Some(path) if !path.is_absolute() => {
            return Err(ctx.invalid(
                &root_key,
                format!("must be an absolute path, got {:?}", path.display()),
            ));
        }
        Some(path) if !path.is_file() => {
            return Err(ctx.invalid(
                &root_key,
                format!(
                    "{} is not a readable file; give the CA certificate (PEM)",
                    path.display()
                ),
            ));
        }
        Some(_) if !sslmode.verifies() => {
            return Err(ctx.invalid(
                &root_key,
                format!(
                    "is given with sslmode {}, which does not check the server's certificate \
                     (libpq would under require, and not under prefer); use verify-ca or \
                     verify-full, or drop it",
                    sslmode.as_libpq()
                ),
            ));
        }
        None if sslmode.verifies() => {
            return Err(ctx.invalid(
                &root_key,
                format!(
                    "is missing: sslmode {} checks the server's certificate against this CA \
                     file",
                    sslmode.as_libpq()
                ),
            ));
        }
        _ => {}
    }
    let ssl_on = parameters
        .get("ssl")
        .is_some_and(|v| ["on", "true", "yes", "1"].contains(&v.to_ascii_lowercase().as_str()));
    if sslmode.requires_tls() && !ssl_on {
        return Err(ctx.invalid(
            &mode_key,
            format!(
                "is {}, which refuses the members' logins in clear, but this server has no TLS; \
                 set postgresql.parameters.ssl: on with ssl_cert_file and ssl_key_file, or \
                 use sslmode prefer",
                sslmode.as_libpq()
            ),
        ));
    }
    Ok(PgTls {
        sslmode,
        sslrootcert,
    })
}

fn pg_authentication(ctx: &Ctx, mut section: Section<'_>) -> Result<PgAuthentication, ConfigError> {
    let superuser = pg_login(
        ctx,
        section.section_or_empty("superuser", PG_LOGIN_KEYS)?,
        DEFAULT_POSTGRES_ROLE,
    )?;
    let replication = pg_login(
        ctx,
        section.section_or_empty("replication", PG_LOGIN_KEYS)?,
        DEFAULT_REPLICATION_ROLE,
    )?;
    let rewind = section
        .section_opt("rewind", PG_LOGIN_KEYS)?
        .map(|rewind| pg_login(ctx, rewind, DEFAULT_REWIND_ROLE))
        .transpose()?;
    let logins = [Some(&superuser), Some(&replication), rewind.as_ref()];
    let named: Vec<(&str, &PgLogin)> = ["superuser", "replication", "rewind"]
        .into_iter()
        .zip(logins)
        .filter_map(|(what, login)| login.map(|l| (what, l)))
        .collect();
    for (i, (what, login)) in named.iter().enumerate() {
        if let Some((other, _)) = named[..i]
            .iter()
            .find(|(_, o)| o.username == login.username && o.password != login.password)
        {
            return Err(ctx.invalid(
                &format!("{}.password", section.key(what)),
                format!(
                    "differs from {other}'s, but both log in as `{}`: a role has one password",
                    login.username
                ),
            ));
        }
    }
    Ok(PgAuthentication {
        superuser,
        replication,
        rewind,
    })
}

fn pg_login(
    ctx: &Ctx,
    mut section: Section<'_>,
    default_user: &str,
) -> Result<PgLogin, ConfigError> {
    let username = section
        .string_opt("username")?
        .unwrap_or_else(|| default_user.to_owned());
    ctx.check(&section.key("username"), role_name(&username))?;
    let password_key = section.key("password");
    let file_key = section.key("password_file");
    let env_name = format!(
        "RAFTGRES_{}",
        password_key.to_ascii_uppercase().replace('.', "__")
    );
    let password = section.secret_opt("password")?;
    let file = section.string_opt("password_file")?;
    let (password, password_file) = match (password, file) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                &file_key,
                format!("and {password_key} are both given; keep one"),
            ));
        }
        (Some(password), None) => (password, None),
        (None, Some(file)) => {
            let path = PathBuf::from(file);
            (read_password_file(ctx, &file_key, &path)?, Some(path))
        }
        (None, None) => {
            return Err(ctx.invalid(
                &password_key,
                format!(
                    "is missing: give it here, in {env_name}, or as {file_key} (a file only \
                     the agent's user may read); PostgreSQL takes no login over TCP without one"
                ),
            ));
        }
    };
    let key = if password_file.is_some() {
        &file_key
    } else {
        &password_key
    };
    ctx.check(key, pg_password(&password))?;
    Ok(PgLogin {
        username,
        password,
        password_file,
    })
}

/// The first line of a file only the agent's user may read.
fn read_password_file(ctx: &Ctx, key: &str, path: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    if !path.is_absolute() {
        return Err(ctx.invalid(
            key,
            format!("must be an absolute path, got {:?}", path.display()),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|cause| ctx.invalid(key, format!("cannot read {}: {cause}", path.display())))?;
    let mode = std::fs::metadata(path)
        .map_err(|cause| ctx.invalid(key, format!("cannot read {}: {cause}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ctx.invalid(
            key,
            format!(
                "{} has mode {:o}, so others may read the password; chmod 600 it",
                path.display(),
                mode & 0o7777
            ),
        ));
    }
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Never echoes the value: messages end up in logs.
fn pg_password(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err("is empty: PostgreSQL takes no login over TCP without a password".into())
    } else if value.contains(['\n', '\r', '\0']) {
        Err("holds a line break or NUL, which a libpq password file cannot carry".into())
    } else {
        Ok(())
    }
}

/// Operators' `pg_hba.conf` lines. A `trust` line over TCP would let anyone
/// who reaches the port (HAProxy, pgbouncer and the members included) in
/// as any role it names.
fn pg_hba(ctx: &Ctx, section: &mut Section<'_>) -> Result<Vec<String>, ConfigError> {
    let key = section.key("pg_hba");
    let Some(value) = section.take("pg_hba") else {
        return Ok(Vec::new());
    };
    let mut lines = Vec::new();
    for (i, item) in ctx.list(&key, value)?.into_iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        let line = item
            .into_string()
            .map_err(|_| ctx.invalid(&item_key, "must be one pg_hba.conf line, as text"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let reason = match words.first() {
            None => Some("is empty: give a pg_hba.conf line or delete the entry".to_owned()),
            Some(_) if line.contains(['\n', '\r', '\0']) => {
                Some("must be one line: no line breaks or NUL".to_owned())
            }
            Some(kind) if kind.starts_with("host") && words.contains(&"trust") => Some(format!(
                "{line:?} trusts logins over TCP; use scram-sha-256 (or cert), or `local ... \
                 peer` for the Unix socket"
            )),
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(ctx.invalid(&item_key, reason));
        }
        lines.push(line);
    }
    Ok(lines)
}

fn restapi(
    ctx: &Ctx,
    mut section: Section<'_>,
    raft: &RaftSettings,
    postgresql: Option<&PostgresSettings>,
) -> Result<RestApiSettings, ConfigError> {
    let listen_key = section.key("listen");
    let (listen, shown) = match section.string_opt("listen")? {
        Some(text) => {
            let listen = listen_address(&text, RESTAPI_PORT_EXAMPLE)
                .map_err(|reason| ctx.invalid(&listen_key, reason))?;
            (listen, listen.to_string())
        }
        // The user never wrote it, so say where the address came from.
        None => (
            DEFAULT_RESTAPI_LISTEN,
            format!("the default {DEFAULT_RESTAPI_LISTEN}"),
        ),
    };
    let mut others = vec![("raft.listen", "the Raft server", raft.listen)];
    if let Some(pg) = postgresql {
        others.push(("postgresql.listen", "Postgres", pg.listen));
    }
    let free = |candidate: SocketAddr| !others.iter().any(|&(_, _, o)| binds_collide(candidate, o));
    if let Some(&(other_key, server, other)) =
        others.iter().find(|&&(_, _, o)| binds_collide(listen, o))
    {
        // Three candidates for at most two taken ports: one is always free.
        let example = (0..3)
            .map(|offset| SocketAddr::new(listen.ip(), RESTAPI_PORT_EXAMPLE + offset))
            .find(|&candidate| free(candidate))
            .unwrap_or(DEFAULT_RESTAPI_LISTEN);
        return Err(ctx.invalid(
            &listen_key,
            format!(
                "{shown} uses the port of {other_key} ({other}); the REST API and {server} \
                 cannot both bind it, set {listen_key} to another port, e.g. {example}"
            ),
        ));
    }

    let connect_key = section.key("connect_address");
    let connect_address = match section.string_opt("connect_address")? {
        Some(address) => {
            ctx.check(
                &connect_key,
                dialable_address(&address, RESTAPI_PORT_EXAMPLE),
            )?;
            address
        }
        None if listen.ip().is_unspecified() => {
            return Err(ctx.invalid(
                &connect_key,
                format!(
                    "is required because {listen_key} binds every interface ({listen}); \
                     set it to the host:port other members and tools should connect to, \
                     e.g. 10.0.0.1:{}",
                    listen.port()
                ),
            ));
        }
        None => listen.to_string(),
    };

    let authentication = section
        .section_opt("authentication", AUTHENTICATION_KEYS)?
        .map(|auth| api_credentials(ctx, auth))
        .transpose()?;

    let tls = restapi_tls(ctx, &mut section)?;
    let allowlist_key = section.key("allowlist");
    let allowlist = match section.take("allowlist") {
        None => Vec::new(),
        Some(value) => ctx
            .list(&allowlist_key, value)?
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let key = format!("{allowlist_key}[{i}]");
                item.into_string()
                    .ok()
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| {
                        ctx.invalid(&key, "must be an IP address or a network in CIDR notation")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let allowlist_include_members = section.bool_or("allowlist_include_members", false)?;
    let authenticate_reads = section.bool_or("authenticate_reads", false)?;
    if authenticate_reads && authentication.is_none() {
        return Err(ctx.invalid(
            &section.key("authenticate_reads"),
            "needs restapi.authentication: reads would ask for credentials nobody has",
        ));
    }

    Ok(RestApiSettings {
        listen,
        connect_address,
        authentication,
        tls,
        allowlist,
        allowlist_include_members,
        authenticate_reads,
    })
}

/// Patroni's `certfile`, `keyfile`, `cafile` and `verify_client`.
fn restapi_tls(ctx: &Ctx, section: &mut Section<'_>) -> Result<Option<RestApiTls>, ConfigError> {
    let mut file = |name: &str| -> Result<Option<PathBuf>, ConfigError> {
        let key = section.key(name);
        let path = section.string_opt(name)?.map(PathBuf::from);
        match path {
            Some(path) if !path.is_absolute() => Err(ctx.invalid(
                &key,
                format!("must be an absolute path, got {}", path.display()),
            )),
            other => Ok(other),
        }
    };
    let certfile = file("certfile")?;
    let keyfile = file("keyfile")?;
    let cafile = file("cafile")?;
    let verify_key = section.key("verify_client");
    let verify_client = match section.string_opt("verify_client")?.as_deref() {
        None | Some("none") => VerifyClient::None,
        Some("optional") => VerifyClient::Optional,
        Some("required") => VerifyClient::Required,
        Some(other) => {
            return Err(ctx.invalid(
                &verify_key,
                format!("must be none, optional or required, got {other:?}"),
            ));
        }
    };
    let Some(certfile) = certfile else {
        if let Some((key, _)) = [("keyfile", keyfile.is_some()), ("cafile", cafile.is_some())]
            .into_iter()
            .find(|(_, set)| *set)
        {
            return Err(ctx.invalid(
                &section.key(key),
                "is set without restapi.certfile: TLS needs the server's certificate".to_owned(),
            ));
        }
        if verify_client != VerifyClient::None {
            return Err(ctx.invalid(
                &verify_key,
                "asks for client certificates, which need TLS: set restapi.certfile, \
                 keyfile and cafile"
                    .to_owned(),
            ));
        }
        return Ok(None);
    };
    let Some(keyfile) = keyfile else {
        return Err(ctx.invalid(
            &section.key("keyfile"),
            "is required with restapi.certfile: the server's private key".to_owned(),
        ));
    };
    if verify_client != VerifyClient::None && cafile.is_none() {
        return Err(ctx.invalid(
            &section.key("cafile"),
            format!(
                "is required with verify_client {}: the CA that signs client certificates",
                verify_client.name()
            ),
        ));
    }
    Ok(Some(RestApiTls {
        certfile,
        keyfile,
        cafile,
        verify_client,
    }))
}

fn api_credentials(ctx: &Ctx, mut section: Section<'_>) -> Result<ApiCredentials, ConfigError> {
    let username = section.string(
        "username",
        "set it to the user name clients send with HTTP basic auth to call the mutating \
         endpoints, e.g. `username: admin`, or remove the `authentication` section to \
         disable those endpoints",
    )?;
    ctx.check(&section.key("username"), basic_auth_username(&username))?;
    let password = section.secret(
        "password",
        "set it to the password clients send with HTTP basic auth, here or through \
         RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD, or remove the `authentication` \
         section to disable the mutating endpoints",
    )?;
    ctx.check(&section.key("password"), basic_auth_password(&password))?;
    Ok(ApiCredentials { username, password })
}

fn basic_auth_username(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err("must not be empty: give the user name clients send with HTTP basic auth".into())
    } else if value.contains(':') {
        Err(format!(
            "must not contain `:`, which HTTP basic auth uses to split user name and \
             password, got {value:?}"
        ))
    } else if value.chars().any(char::is_control) {
        Err(format!(
            "must not contain control characters, which an HTTP header cannot carry, \
             got {value:?}"
        ))
    } else {
        Ok(())
    }
}

/// Never echoes the value: messages end up in logs.
fn basic_auth_password(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err(
            "must not be empty: an empty password would let anyone call the mutating \
             endpoints"
                .into(),
        )
    } else if value.chars().any(char::is_control) {
        Err(
            "must not contain line breaks or other control characters, which an HTTP \
             header cannot carry"
                .into(),
        )
    } else {
        Ok(())
    }
}

/// Whether two servers binding `a` and `b` would fight over the port. A
/// wildcard bind takes the port on every address, so it collides with any
/// other bind of that port.
fn binds_collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// An optional absolute directory.
fn absolute_dir_or(
    ctx: &Ctx,
    section: &mut Section<'_>,
    name: &str,
    default: impl FnOnce() -> PathBuf,
) -> Result<PathBuf, ConfigError> {
    match section.string_opt(name)? {
        Some(text) => {
            let dir = PathBuf::from(text);
            if dir.is_absolute() {
                Ok(dir)
            } else {
                Err(ctx.invalid(
                    &section.key(name),
                    format!(
                        "must be an absolute path, got {:?}; delete the line to use the default",
                        dir.display()
                    ),
                ))
            }
        }
        None => Ok(default()),
    }
}

fn members(ctx: &Ctx, value: Option<Value>) -> Result<Vec<InitialMember>, ConfigError> {
    let missing = || {
        ctx.invalid(
            "members",
            "is missing or empty: list every initial voter with id, name and raft_addr",
        )
    };
    let items = match value {
        None => return Err(missing()),
        Some(value) if matches!(value.kind, config::ValueKind::Nil) => return Err(missing()),
        Some(value) => ctx.list("members", value)?,
    };
    if items.is_empty() {
        return Err(missing());
    }

    let mut members: Vec<InitialMember> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let prefix = format!("members[{index}]");
        let entries = ctx.table(&prefix, item)?;
        let mut section = Section::open(ctx, prefix.clone(), entries, MEMBER_KEYS)?;

        let id = section.u64("id", "set it to this voter's Raft id")?;
        ctx.check(&section.key("id"), positive_id(id))?;
        let name = section.string("name", "set it to this voter's member name")?;
        ctx.check(&section.key("name"), identifier(&name))?;
        let raft_addr = section.string(
            "raft_addr",
            &format!(
                "set it to the host:port this voter's Raft server is reached at, like {}",
                address_examples(RAFT_PORT_EXAMPLE)
            ),
        )?;
        ctx.check(
            &section.key("raft_addr"),
            dialable_address(&raft_addr, RAFT_PORT_EXAMPLE),
        )?;

        for (other_index, other) in members.iter().enumerate() {
            let clash = if other.id == id {
                Some(("id", id.to_string()))
            } else if other.name == name {
                Some(("name", format!("{name:?}")))
            } else if other.raft_addr == raft_addr {
                Some(("raft_addr", format!("{raft_addr:?}")))
            } else {
                None
            };
            if let Some((field, shown)) = clash {
                return Err(ctx.invalid(
                    &section.key(field),
                    format!(
                        "{shown} is already used by members[{other_index}]; \
                         every voter needs its own {field}"
                    ),
                ));
            }
        }
        members.push(InitialMember {
            id,
            name,
            raft_addr,
        });
    }
    Ok(members)
}

fn bootstrap(ctx: &Ctx, mut section: Section<'_>) -> Result<BootstrapSettings, ConfigError> {
    let ttl_ms = section.u64_or("ttl_ms", 3000)?;
    let loop_wait_ms = section.u64_or("loop_wait_ms", 250)?;
    let retry_timeout_ms = section.u64_or("retry_timeout_ms", 1000)?;
    let lease_margin_ms = section.u64_or("lease_margin_ms", 400)?;
    let maximum_lag_on_failover = section.u64_or("maximum_lag_on_failover", 1024 * 1024)?;

    let timing = LeaseTiming::from_millis(ttl_ms, loop_wait_ms, lease_margin_ms);
    timing
        .validate_new()
        .map_err(|e| ctx.invalid(&section.key(e.key()), e.message_in("bootstrap")))?;
    let ttl_key = section.key("ttl_ms");
    let retry_key = section.key("retry_timeout_ms");
    ctx.check(&retry_key, positive(retry_timeout_ms))?;
    if retry_timeout_ms > ttl_ms {
        return Err(ctx.invalid(
            &retry_key,
            format!(
                "must be at most {ttl_key} ({ttl_ms}), got {retry_timeout_ms}: a Raft \
                 operation that may wait longer than the lease lasts cannot keep it"
            ),
        ));
    }

    Ok(BootstrapSettings {
        timing,
        retry_timeout: Duration::from_millis(retry_timeout_ms),
        maximum_lag_on_failover,
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

fn identifier(value: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    if (1..=MAX_IDENTIFIER_LEN).contains(&value.len()) && value.bytes().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "must be 1 to {MAX_IDENTIFIER_LEN} characters from a-z, 0-9, `_` and `-`, \
             got {value:?}"
        ))
    }
}

/// A PostgreSQL role name the agent can use without quoting.
fn role_name(value: &str) -> Result<(), String> {
    let first_ok = |b: u8| b.is_ascii_lowercase() || b == b'_';
    let rest_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let bytes = value.as_bytes();
    match bytes.split_first() {
        Some((&first, rest))
            if bytes.len() <= MAX_IDENTIFIER_LEN
                && first_ok(first)
                && rest.iter().all(|&b| rest_ok(b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "must be 1 to {MAX_IDENTIFIER_LEN} characters from a-z, 0-9 and `_`, \
             not starting with a digit, got {value:?}"
        )),
    }
}

/// A PostgreSQL parameter name the agent does not set itself.
fn parameter_name(name: &str) -> Result<(), String> {
    let first_ok = |b: u8| b.is_ascii_lowercase() || b == b'_';
    let rest_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.';
    let well_formed = name
        .as_bytes()
        .split_first()
        .is_some_and(|(&first, rest)| first_ok(first) && rest.iter().all(|&b| rest_ok(b)));
    if !well_formed {
        return Err(format!(
            "parameter names start with a-z or `_` and continue with a-z, 0-9, `_` and `.`, \
             got {name:?}"
        ));
    }
    if raftgres_state::AGENT_MANAGED_PARAMETERS.contains(&name) {
        return Err(format!(
            "the agent owns the parameter {name:?} and sets it itself; remove it from \
             postgresql.parameters"
        ));
    }
    Ok(())
}

fn positive_id(id: u64) -> Result<(), String> {
    if id == 0 {
        Err("must be greater than 0: Raft ids start at 1".into())
    } else {
        Ok(())
    }
}

fn positive(value: u64) -> Result<(), String> {
    if value == 0 {
        Err("must be greater than 0".into())
    } else {
        Ok(())
    }
}

/// `example_port` only shapes the examples in the messages.
fn listen_address(text: &str, example_port: u16) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!(
            "expected an IP address and port like 127.0.0.1:{example_port} or \
             [::]:{example_port} (not a hostname), got {text:?}"
        )
    })?;
    if addr.port() == 0 {
        return Err(format!(
            "port 0 lets the system pick a port peers cannot know; choose a fixed port, \
             got {text:?}"
        ));
    }
    Ok(addr)
}

fn address_examples(port: u16) -> String {
    format!("10.0.0.1:{port}, node1.example:{port} or [::1]:{port}")
}

/// A `host:port` another member can dial. `example_port` only shapes the
/// examples in the messages.
fn dialable_address(text: &str, example_port: u16) -> Result<(), String> {
    let examples = address_examples(example_port);
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("expected host:port like {examples}, got {text:?}"));
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0);
    if !port_ok {
        return Err(format!(
            "expected a port from 1 to 65535 after the last `:`, got {text:?}"
        ));
    }
    let ip = if let Some(bracketed) = host.strip_prefix('[') {
        let v6 = bracketed
            .strip_suffix(']')
            .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
            .ok_or_else(|| format!("expected an IPv6 address inside [ ], got {text:?}"))?;
        Some(IpAddr::V6(v6))
    } else {
        let hostname_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !hostname_ok {
            return Err(format!(
                "expected host:port like {examples} (IPv6 inside [ ], no scheme), \
                 got {text:?}"
            ));
        }
        host.parse::<IpAddr>().ok()
    };
    if ip.is_some_and(|ip| ip.is_unspecified()) {
        return Err(format!(
            "{text:?} means every interface, which others cannot dial; give a concrete address"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialable_addresses() {
        for good in [
            "127.0.0.1:7101",
            "node1:1",
            "node-1.example.com:65535",
            "[::1]:7101",
            "[fe80::1]:80",
        ] {
            assert_eq!(dialable_address(good, 7101), Ok(()), "{good}");
        }
        for bad in [
            "",
            "7101",
            "node1",
            "node1:",
            ":7101",
            "node1:0",
            "node1:65536",
            "node1:+80",
            "node1: 80",
            "::1:7101",
            "[::1:7101",
            "[nothex]:7101",
            "http://node1:7101",
            "node 1:7101",
            "0.0.0.0:7101",
            "[::]:7101",
        ] {
            assert!(dialable_address(bad, 7101).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn identifiers() {
        assert_eq!(identifier("a"), Ok(()));
        assert_eq!(identifier("node_1-b"), Ok(()));
        assert_eq!(identifier(&"a".repeat(63)), Ok(()));
        for bad in ["", "Node1", "node.1", "node 1", "nöde", &"a".repeat(64)] {
            assert!(identifier(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn listen_addresses() {
        assert!(listen_address("0.0.0.0:7101", 7101).is_ok());
        assert!(listen_address("[::]:7101", 7101).is_ok());
        assert!(listen_address("127.0.0.1:0", 7101).is_err());
        assert!(listen_address("localhost:7101", 7101).is_err());
        let message = listen_address("localhost", 5432).unwrap_err();
        assert!(message.contains("127.0.0.1:5432"), "{message}");
    }

    #[test]
    fn role_names() {
        assert_eq!(role_name("postgres"), Ok(()));
        assert_eq!(role_name("_repl_2"), Ok(()));
        assert_eq!(role_name(&"a".repeat(63)), Ok(()));
        for bad in [
            "",
            "2pg",
            "Postgres",
            "repl-user",
            "pg.user",
            "pg user",
            &"a".repeat(64),
        ] {
            assert!(role_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn parameter_names() {
        for good in [
            "shared_buffers",
            "_x",
            "auto_explain.log_min_duration",
            "work_mem2",
        ] {
            assert_eq!(parameter_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Work_mem", "2x", ".x", "work-mem", "work mem"] {
            assert!(parameter_name(bad).is_err(), "{bad:?} was accepted");
        }
        for managed in raftgres_state::AGENT_MANAGED_PARAMETERS {
            let message = parameter_name(managed).unwrap_err();
            assert!(message.contains("the agent owns"), "{message}");
        }
    }
}
