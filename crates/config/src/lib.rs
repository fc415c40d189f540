//! Loads the agent's settings: one YAML file plus `RAFTGRES_*` environment
//! overrides, validated into a typed [`AgentConfig`].
//!
//! The file's keys, types and defaults are [`schema`], derived by serde; the
//! rules serde cannot say (a value's form, the rules between keys) turn it
//! into [`AgentConfig`]. Whoever writes a settings file (the lab does)
//! builds a [`schema::Agent`] and serialises it.
//!
//! Architecture invariant: this crate knows nothing of Raft, Postgres or the
//! network; it only reads the file and the environment. It never panics and
//! never replaces a bad value with a default; every error names the file or
//! variable and the dotted key (`raft.listen`, `members[1].id`) and says what
//! to change. Defaults apply only to optional keys that are absent.
//!
//! Top-level keys: `scope`, `name`, `node_id`, `data_dir`, `witness`, `tags`,
//! `raft`, `postgresql`, `restapi`, `members` and `bootstrap`. Every member
//! except a witness needs a `postgresql` section with at least `listen`; a
//! witness runs no Postgres and must not have one. The `restapi` section is
//! optional for every member, witnesses included: `listen` defaults to
//! `127.0.0.1:8008` and `connect_address` to `listen`. Its optional
//! `authentication` subsection (`username` and `password`, both required and
//! non-empty) enables the mutating endpoints; the password never appears in
//! `Debug` output or error messages.
//!
//! Environment overrides: `RAFTGRES_NAME` sets `name`, `RAFTGRES_RAFT__LISTEN`
//! sets `raft.listen`, `RAFTGRES_POSTGRESQL__LISTEN` sets `postgresql.listen`,
//! `RAFTGRES_RESTAPI__LISTEN` sets `restapi.listen`,
//! `RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD` sets
//! `restapi.authentication.password` (`__` separates a section from its key,
//! at any depth). Any other `RAFTGRES_*` variable is rejected as an unknown
//! key.

mod de;
mod error;
mod model;
mod read;
mod reload;
mod rules;
pub mod schema;
mod source;
pub mod yaml;

use std::path::Path;

pub use error::ConfigError;
pub use model::{
    AgentConfig, ApiCredentials, BootstrapSettings, Callbacks, InitialMember, LogRotation,
    LogSettings, LogType, PgAuthentication, PgBouncerSettings, PgLogin, PgSslMode, PgTls,
    PostgresSettings, RaftSettings, RaftTls, ReplicaMethod, RestApiSettings, RestApiTls,
    VerifyClient,
};
pub use raftgres_state::Tags;
pub use reload::{ReloadPlan, reload_plan, reloaded};

/// Loads `path` with overrides from the process environment.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    // `std::env::vars` would panic on a variable that is not UTF-8.
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => env.push((name, value)),
            (name, _) => {
                let name = match name {
                    Ok(name) => name,
                    Err(raw) => raw.to_string_lossy().into_owned(),
                };
                // Skipping one of ours would silently fall back to the file.
                if source::is_override(&name) {
                    return Err(ConfigError::Env {
                        var: name,
                        reason: "is not UTF-8 text".into(),
                    });
                }
            }
        }
    }
    load_with_env(path, env)
}

/// Loads `path` with overrides taken from `env` instead of the process
/// environment; entries not starting with `RAFTGRES_` are ignored.
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<AgentConfig, ConfigError> {
    let merged = source::merge(path, env)?;
    let from_env: Vec<String> = merged.env_vars.keys().cloned().collect();
    let ctx = read::Ctx::new(path.to_path_buf(), merged.env_vars);
    let file = read::agent(&ctx, merged.root)?;
    let config = rules::agent_config(&ctx, file)?;
    refuse_exposed_secrets(path, &config, &from_env)?;
    Ok(config)
}

/// A secret read from the file is only as private as the file: refuse one
/// that group or others may read. One given in the environment instead
/// does not count.
fn refuse_exposed_secrets(
    path: &Path,
    config: &AgentConfig,
    from_env: &[String],
) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let inline = |login: Option<&PgLogin>| login.is_some_and(|l| l.password_file.is_none());
    let auth = config.postgresql.as_ref().map(|pg| &pg.authentication);
    let secrets = [
        (
            "restapi.authentication.password",
            config.restapi.authentication.is_some(),
        ),
        (
            "postgresql.authentication.superuser.password",
            inline(auth.map(|a| &a.superuser)),
        ),
        (
            "postgresql.authentication.replication.password",
            inline(auth.map(|a| &a.replication)),
        ),
        (
            "postgresql.authentication.rewind.password",
            inline(auth.and_then(|a| a.rewind.as_ref())),
        ),
        (
            "pgbouncer.admin_password",
            config
                .pgbouncer
                .as_ref()
                .is_some_and(|p| p.admin_password.is_some()),
        ),
    ];
    let Some(key) = secrets
        .iter()
        .find(|(key, present)| *present && !from_env.iter().any(|k| k == key))
        .map(|(key, _)| *key)
    else {
        return Ok(());
    };
    let mode = std::fs::metadata(path)
        .map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::Exposed {
            path: path.to_path_buf(),
            key: key.to_owned(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}
