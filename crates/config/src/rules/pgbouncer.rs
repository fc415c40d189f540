//! `pgbouncer`: the pooler beside this member that the agent keeps pointed
//! at the primary.

use super::values::{absolute, binds_collide, listen_address, pg_name};
use crate::read::Ctx;
use crate::schema::{self, DEFAULT_PGBOUNCER_ADMIN};
use crate::{ConfigError, PgBouncerSettings, PostgresSettings, RaftSettings, RestApiSettings};

const PGBOUNCER_PORT_EXAMPLE: u16 = 6432;
/// The database name of pgbouncer's admin console.
const CONSOLE: &str = "pgbouncer";

pub(super) fn settings(
    ctx: &Ctx,
    file: schema::PgBouncer,
    raft: &RaftSettings,
    postgresql: Option<&PostgresSettings>,
    restapi: &RestApiSettings,
) -> Result<PgBouncerSettings, ConfigError> {
    absolute(&file.databases_file).map_err(|reason| {
        ctx.invalid(
            "pgbouncer.databases_file",
            format!(
                "{reason} (pgbouncer resolves a relative %include against its working \
                 directory)"
            ),
        )
    })?;
    let listen = listen_address(&file.listen, PGBOUNCER_PORT_EXAMPLE)
        .map_err(|reason| ctx.invalid("pgbouncer.listen", reason))?;
    let mut taken = vec![
        ("raft.listen", raft.listen),
        ("restapi.listen", restapi.listen),
    ];
    if let Some(pg) = postgresql {
        taken.push(("postgresql.listen", pg.listen));
    }
    if let Some((other_key, other)) = taken.iter().find(|(_, o)| binds_collide(listen, *o)) {
        return Err(ctx.invalid(
            "pgbouncer.listen",
            format!("{listen} uses the port of {other_key} ({other}); give pgbouncer its own port"),
        ));
    }
    let admin_user = file.admin_user;
    ctx.check("pgbouncer.admin_user", pg_name(&admin_user))?;
    if let Some(pg) = postgresql
        && pg.authentication.superuser.username == admin_user
    {
        return Err(ctx.invalid(
            "pgbouncer.admin_user",
            format!(
                "is the Postgres superuser `{admin_user}`; give pgbouncer's console a user of its \
                 own (default `{DEFAULT_PGBOUNCER_ADMIN}`), so its password opens nothing else"
            ),
        ));
    }
    let dbname = file.dbname;
    ctx.check("pgbouncer.dbname", pg_name(&dbname))?;
    let write_db = file.write_db.unwrap_or_else(|| dbname.clone());
    ctx.check("pgbouncer.write_db", pg_name(&write_db))?;
    if let Some(read_db) = &file.read_db {
        ctx.check("pgbouncer.read_db", pg_name(read_db))?;
        if *read_db == write_db || read_db == CONSOLE {
            return Err(ctx.invalid(
                "pgbouncer.read_db",
                format!(
                    "must differ from write_db and from `{CONSOLE}` (the admin console), got \
                     {read_db:?}"
                ),
            ));
        }
    }
    if write_db == CONSOLE {
        return Err(ctx.invalid(
            "pgbouncer.write_db",
            format!(
                "`{CONSOLE}` is the admin console's name; choose another, e.g. the database name"
            ),
        ));
    }
    Ok(PgBouncerSettings {
        databases_file: file.databases_file,
        listen,
        admin_user,
        admin_password: file.admin_password,
        dbname,
        write_db,
        read_db: file.read_db,
    })
}
