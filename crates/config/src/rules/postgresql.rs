//! `postgresql`: the local server, the roles the members log in as, and
//! how they reach each other's Postgres.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::{absolute, binds_collide, listen_address, parameter_name, positive, role_name};
use super::{absolute_dir, absolute_or, reached_at};
use crate::read::Ctx;
use crate::schema;
use crate::{
    Callbacks, ConfigError, PgAuthentication, PgLogin, PgTls, PostgresSettings, RaftSettings,
};

const POSTGRES_PORT_EXAMPLE: u16 = 5432;
const DEFAULT_SUPERUSER: &str = "postgres";
const DEFAULT_REPLICATION_USER: &str = "replicator";
const DEFAULT_REWIND_USER: &str = "rewind";

pub(super) fn settings(
    ctx: &Ctx,
    file: schema::Postgres,
    agent_data_dir: &Path,
    raft: &RaftSettings,
) -> Result<PostgresSettings, ConfigError> {
    let listen = listen_address(&file.listen, POSTGRES_PORT_EXAMPLE)
        .map_err(|reason| ctx.invalid("postgresql.listen", reason))?;
    if binds_collide(listen, raft.listen) {
        return Err(ctx.invalid(
            "postgresql.listen",
            format!(
                "{listen} uses the port of raft.listen ({}); Postgres and the Raft server \
                 cannot both bind it, choose another port, e.g. {POSTGRES_PORT_EXAMPLE}",
                raft.listen
            ),
        ));
    }
    let connect_address = reached_at(
        ctx,
        ("postgresql.connect_address", file.connect_address),
        ("postgresql.listen", listen),
        POSTGRES_PORT_EXAMPLE,
        "other members and clients should connect to",
    )?;

    absolute_dir(ctx, "postgresql.bin_dir", &file.bin_dir)?;
    let data_dir = absolute_or(ctx, "postgresql.data_dir", file.data_dir, || {
        agent_data_dir.join("pgdata")
    })?;
    if data_dir == agent_data_dir {
        return Err(ctx.invalid(
            "postgresql.data_dir",
            format!(
                "is the agent's own data_dir ({}); give Postgres a directory of its own, \
                 e.g. {}",
                agent_data_dir.display(),
                agent_data_dir.join("pgdata").display()
            ),
        ));
    }
    let socket_dir = absolute_or(ctx, "postgresql.socket_dir", file.socket_dir, || {
        agent_data_dir.join("run")
    })?;
    let authentication = authentication(ctx, file.authentication)?;
    let pg_hba = pg_hba(ctx, file.pg_hba)?;
    let pgpass = absolute_or(ctx, "postgresql.pgpass", file.pgpass, || {
        agent_data_dir.join("pgpass")
    })?;
    ctx.check(
        "postgresql.restart_grace_ms",
        positive(file.restart_grace_ms),
    )?;
    for name in file.parameters.keys() {
        ctx.check(
            &format!("postgresql.parameters.{name}"),
            parameter_name(name),
        )?;
    }
    let tls = tls(ctx, file.tls, &file.parameters)?;
    let callbacks = callbacks(ctx, file.callbacks)?;
    let script = |key: &str, line: Option<String>| {
        line.map(|line| command_line(&line).map_err(|reason| ctx.invalid(key, reason)))
            .transpose()
    };
    let pre_promote = script("postgresql.pre_promote", file.pre_promote)?;
    let before_stop = script("postgresql.before_stop", file.before_stop)?;
    ctx.check(
        "postgresql.callback_timeout_ms",
        positive(file.callback_timeout_ms),
    )?;
    let create_replica_methods = super::replica_methods::methods(
        ctx,
        file.create_replica_methods,
        file.basebackup,
        file.replica_method_sections,
    )?;

    Ok(PostgresSettings {
        listen,
        connect_address,
        bin_dir: file.bin_dir,
        data_dir,
        socket_dir,
        authentication,
        pg_hba,
        pgpass,
        restart_grace: Duration::from_millis(file.restart_grace_ms),
        parameters: file.parameters,
        tls,
        callbacks,
        pre_promote,
        before_stop,
        callback_timeout: Duration::from_millis(file.callback_timeout_ms),
        create_replica_methods,
    })
}

fn callbacks(ctx: &Ctx, file: schema::Callbacks) -> Result<Callbacks, ConfigError> {
    let command = |event: &str, line: Option<String>| {
        line.map(|line| {
            command_line(&line)
                .map_err(|reason| ctx.invalid(&format!("postgresql.callbacks.{event}"), reason))
        })
        .transpose()
    };
    Ok(Callbacks {
        on_start: command("on_start", file.on_start)?,
        on_stop: command("on_stop", file.on_stop)?,
        on_restart: command("on_restart", file.on_restart)?,
        on_reload: command("on_reload", file.on_reload)?,
        on_role_change: command("on_role_change", file.on_role_change)?,
    })
}

/// A callback's words, split as Patroni splits them (Python's `shlex`),
/// whose program exists now: a missing script found at the first failover
/// would be found too late.
pub(super) fn command_line(line: &str) -> Result<Vec<String>, String> {
    let words = shlex::split(line).ok_or_else(|| {
        format!("{line:?} cannot be split into words (an unclosed quote?); quote as a shell would")
    })?;
    let Some(program) = words.first() else {
        return Err("is empty; give a command, or leave the key out".into());
    };
    let path = if program.contains('/') {
        absolute(Path::new(program))?;
        Some(PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|dirs| {
            std::env::split_paths(&dirs)
                .map(|dir| dir.join(program))
                .find(|path| path.is_file())
        })
    };
    let Some(path) = path else {
        return Err(format!(
            "{program} is not found in PATH; give its absolute path"
        ));
    };
    let executable = std::fs::metadata(&path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
    if !executable {
        return Err(format!(
            "{} is not an executable file; create it, or chmod +x it",
            path.display()
        ));
    }
    Ok(words)
}

/// libpq's `sslmode` and `sslrootcert` for every connection to a member's
/// Postgres. A mode that requires TLS also makes this server refuse the
/// members' logins in clear, so it needs the server's own TLS.
fn tls(
    ctx: &Ctx,
    file: schema::PgTls,
    parameters: &BTreeMap<String, String>,
) -> Result<PgTls, ConfigError> {
    let root_key = "postgresql.tls.sslrootcert";
    let sslmode = file.sslmode;
    let reason = match &file.sslrootcert {
        Some(path) if !path.is_absolute() => absolute(path).err(),
        Some(path) if !path.is_file() => Some(format!(
            "{} is not a readable file; give the CA certificate (PEM)",
            path.display()
        )),
        Some(_) if !sslmode.verifies() => Some(format!(
            "is given with sslmode {}, which does not check the server's certificate \
             (libpq would under require, and not under prefer); use verify-ca or \
             verify-full, or drop it",
            sslmode.as_libpq()
        )),
        None if sslmode.verifies() => Some(format!(
            "is missing: sslmode {} checks the server's certificate against this CA file",
            sslmode.as_libpq()
        )),
        _ => None,
    };
    if let Some(reason) = reason {
        return Err(ctx.invalid(root_key, reason));
    }
    let ssl_on = parameters
        .get("ssl")
        .is_some_and(|v| ["on", "true", "yes", "1"].contains(&v.to_ascii_lowercase().as_str()));
    if sslmode.requires_tls() && !ssl_on {
        return Err(ctx.invalid(
            "postgresql.tls.sslmode",
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
        sslrootcert: file.sslrootcert,
    })
}

fn authentication(
    ctx: &Ctx,
    file: schema::PgAuthentication,
) -> Result<PgAuthentication, ConfigError> {
    let superuser = login(ctx, "superuser", file.superuser, DEFAULT_SUPERUSER)?;
    let replication = login(
        ctx,
        "replication",
        file.replication,
        DEFAULT_REPLICATION_USER,
    )?;
    let rewind = file
        .rewind
        .map(|rewind| login(ctx, "rewind", rewind, DEFAULT_REWIND_USER))
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
                &format!("postgresql.authentication.{what}.password"),
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

/// One role of `postgresql.authentication`; `role` is its key there.
fn login(
    ctx: &Ctx,
    role: &str,
    file: schema::PgLogin,
    default_user: &str,
) -> Result<PgLogin, ConfigError> {
    let key = |field: &str| format!("postgresql.authentication.{role}.{field}");
    let username = file.username.unwrap_or_else(|| default_user.to_owned());
    ctx.check(&key("username"), role_name(&username))?;
    let (password_key, file_key) = (key("password"), key("password_file"));
    let (password, password_file) = match (file.password, file.password_file) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                &file_key,
                format!("and {password_key} are both given; keep one"),
            ));
        }
        (Some(password), None) => (password, None),
        (None, Some(path)) => (read_password_file(ctx, &file_key, &path)?, Some(path)),
        (None, None) => {
            let env_name = format!(
                "RAFTGRES_{}",
                password_key.to_ascii_uppercase().replace('.', "__")
            );
            return Err(ctx.invalid(
                &password_key,
                format!(
                    "is missing: give it here, in {env_name}, or as {file_key} (a file only \
                     the agent's user may read); PostgreSQL takes no login over TCP without a \
                     password"
                ),
            ));
        }
    };
    let given_at = if password_file.is_some() {
        &file_key
    } else {
        &password_key
    };
    ctx.check(given_at, password_text(&password))?;
    Ok(PgLogin {
        username,
        password,
        password_file,
    })
}

/// The first line of a file only the agent's user may read.
fn read_password_file(ctx: &Ctx, key: &str, path: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    ctx.check(key, absolute(path))?;
    let unreadable = |cause| ctx.invalid(key, format!("cannot read {}: {cause}", path.display()));
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
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
fn password_text(value: &str) -> Result<(), String> {
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
fn pg_hba(ctx: &Ctx, lines: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for (i, line) in lines.iter().enumerate() {
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
            return Err(ctx.invalid(&format!("postgresql.pg_hba[{i}]"), reason));
        }
    }
    Ok(lines)
}
