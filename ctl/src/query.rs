//! `query`: SQL on a member's Postgres, as `patronictl query`. The member
//! comes from `GET /cluster`; the login and TLS from libpq's environment,
//! read here because tokio-postgres reads none of it. `drill` logs in and
//! connects through the same pieces.

use crate::cli::{Format, PgLoginArgs, QueryArgs, RoleFilter};
use crate::cluster::{ClusterView, Finder, MemberView};
use crate::error::CtlError;
use crate::format::{self, ResultSet};
use crate::{pg_tls, pgpass, prompt};
use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::{Client, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

/// patronictl's `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting, the TLS handshake, the login and the recovery check
/// together; past it the member counts as unreachable.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How to log in, settled once for every member and every round.
pub(crate) struct Login {
    pub(crate) user: String,
    pub(crate) dbname: String,
    /// `--password`'s answer, else `PGPASSWORD`.
    pub(crate) password: Option<String>,
    /// The password file, read when no password was given.
    passfile: Option<PathBuf>,
    tls_settings: raftgres_postgres::ClientTls,
    tls: Option<MakeRustlsConnect>,
}

pub async fn query(finder: &mut Finder, args: QueryArgs) -> anyhow::Result<()> {
    let sql = read_sql(&args)?;
    let login = login(&args.login).await?;
    let watch = args.watch_seconds.or(args.watch_every_2s.then_some(2));
    let role = match args.member {
        Some(_) => None,
        None => Some(args.role.unwrap_or(RoleFilter::Leader)),
    };
    let pick = Pick {
        member: args.member.as_deref(),
        role,
    };
    let Some(seconds) = watch else {
        let (client, at) = open_chosen(finder, &pick, &login).await?;
        let sets = client
            .simple_query(&sql)
            .await
            .map_err(|e| failed(&at, &e))?;
        return print_sets(&sets_of(sets), args.format, &args.delimiter);
    };
    // As patronictl: the time, then the result, every round until Ctrl-C;
    // a failed round is shown, and the next one finds the member again.
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut open: Option<(Client, String)> = None;
    loop {
        println!("{}", jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S"));
        let round = watch_round(finder, &pick, &login, &sql, &mut open);
        match round.await {
            Ok(sets) => print_sets(&sets, args.format, &args.delimiter)?,
            Err(e) => eprintln!("raftgresctl: {e:#}"),
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

/// One round of `--watch`: on the connection of the round before while it
/// lasts, else on a member found again.
async fn watch_round(
    finder: &mut Finder,
    pick: &Pick<'_>,
    login: &Login,
    sql: &str,
    open: &mut Option<(Client, String)>,
) -> anyhow::Result<Vec<ResultSet>> {
    let (client, at) = match open.take() {
        Some(kept) => kept,
        None => open_chosen(finder, pick, login).await?,
    };
    let result = client.simple_query(sql).await;
    let outcome = match result {
        Ok(messages) => Ok(sets_of(messages)),
        Err(e) => Err(failed(&at, &e).into()),
    };
    if !client.is_closed() {
        *open = Some((client, at));
    }
    outcome
}

/// `-c SQL`, or `-f FILE` (`-` for stdin).
fn read_sql(args: &QueryArgs) -> anyhow::Result<String> {
    match (&args.command, &args.file) {
        (Some(sql), _) => Ok(sql.clone()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut sql = String::new();
            std::io::stdin()
                .read_to_string(&mut sql)
                .context("cannot read the SQL from standard input")?;
            Ok(sql)
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the SQL file {}", path.display())),
        // clap requires one of them.
        (None, None) => bail!("give the SQL with -c SQL or -f FILE"),
    }
}

/// An environment variable; empty counts as unset, as for libpq.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The user, password and TLS for every connection, as libpq settles them:
/// the user `-U`, else `PGUSER`, else the login name; the password asked
/// on the terminal with `--password`, else `PGPASSWORD`, else the password
/// file's.
pub(crate) async fn login(args: &PgLoginArgs) -> anyhow::Result<Login> {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten();
    let user = match args.dbuser.clone().or_else(|| env("PGUSER")) {
        Some(user) => user,
        None => match &me {
            Some(me) => me.name.clone(),
            None => bail!("cannot tell your login name, libpq's default user: pass -U USER"),
        },
    };
    let home = env("HOME")
        .map(PathBuf::from)
        .or_else(|| me.as_ref().map(|m| m.dir.clone()));
    let password = if args.password {
        Some(prompt::password(format!("Password for {user}")).await?)
    } else {
        env("PGPASSWORD")
    };
    let tls_mode = pg_tls::mode(env("PGSSLMODE").as_deref())?;
    let root = pg_tls::root_cert(env("PGSSLROOTCERT"), home.as_deref());
    let tls_settings = pg_tls::settings(tls_mode, root);
    let tls = pg_tls::connector(&tls_settings)?;
    Ok(Login {
        user,
        dbname: args.dbname.clone(),
        password,
        passfile: pgpass::location(env("PGPASSFILE"), home),
        tls_settings,
        tls,
    })
}

/// `-m NAME`, else `-r ROLE`.
pub(crate) struct Pick<'a> {
    pub(crate) member: Option<&'a str>,
    pub(crate) role: Option<RoleFilter>,
}

/// A member and where its Postgres listens.
pub(crate) struct Candidate<'a> {
    pub(crate) name: &'a str,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
}

impl Candidate<'_> {
    /// How errors name it: `node1 (127.0.0.1:5432)`.
    pub(crate) fn describe(&self) -> String {
        if self.host.contains(':') {
            format!("{} ([{}]:{})", self.name, self.host, self.port)
        } else {
            format!("{} ({}:{})", self.name, self.host, self.port)
        }
    }
}

/// The members to try in order: the named one, or those of the role by
/// name (patronictl takes the first only; here an unreachable replica
/// makes way for the next).
fn candidates<'a>(view: &'a ClusterView, pick: &Pick) -> anyhow::Result<Vec<Candidate<'a>>> {
    let address = |m: &'a MemberView| {
        Some(Candidate {
            name: &m.name,
            host: m.host.as_deref()?,
            port: m.port?,
        })
    };
    if let Some(name) = pick.member {
        let member = view.member(name).ok_or_else(|| {
            anyhow::anyhow!(
                "{name} is not a member of cluster {} (members: {}); see `raftgresctl list`",
                view.scope(),
                view.member_names()
            )
        })?;
        return match address(member) {
            Some(candidate) => Ok(vec![candidate]),
            None => bail!(
                "{name} publishes no Postgres address (a witness, or not started yet); see `raftgresctl list`"
            ),
        };
    }
    let role = pick.role.unwrap_or(RoleFilter::Leader);
    let mut fitting: Vec<Candidate> = view
        .members
        .iter()
        .filter(|m| crate::operate::has_role(m, role))
        .filter_map(address)
        .collect();
    fitting.sort_by(|a, b| a.name.cmp(b.name));
    if fitting.is_empty() {
        return Err(CtlError::Unavailable(format!(
            "cluster {} has no member of role {role:?} with a Postgres address now; see `raftgresctl list`",
            view.scope()
        ))
        .into());
    }
    Ok(fitting)
}

/// Why one member could not be used.
pub(crate) enum Failure {
    /// Its Postgres answered and said no (the login, the database): the
    /// next member would say the same.
    Refused(String),
    /// It could not be reached, or is not of the role asked for.
    Unusable(String),
    /// Something on this side, such as a password file others may read.
    Local(anyhow::Error),
}

/// A connection to the first member of `pick` that can be used, and how
/// errors name it.
pub(crate) async fn open_chosen(
    finder: &mut Finder,
    pick: &Pick<'_>,
    login: &Login,
) -> anyhow::Result<(Client, String)> {
    let cluster = finder.cluster().await?;
    let mut unusable = Vec::new();
    for candidate in candidates(&cluster.view, pick)? {
        let opened = tokio::time::timeout(OPEN_TIMEOUT, open(&candidate, login, pick.role)).await;
        match opened {
            Ok(Ok(client)) => return Ok((client, candidate.describe())),
            Ok(Err(Failure::Refused(why))) => return Err(CtlError::PgRefused(why).into()),
            Ok(Err(Failure::Unusable(why))) => unusable.push(why),
            Ok(Err(Failure::Local(error))) => return Err(error),
            Err(_) => unusable.push(format!(
                "{}: no answer within {OPEN_TIMEOUT:?}",
                candidate.describe()
            )),
        }
    }
    Err(CtlError::Unavailable(format!(
        "cannot run the query: {}; see `raftgresctl list` for the members' state",
        unusable.join("; ")
    ))
    .into())
}

/// Connects to `candidate` and, for a role, checks that its Postgres is of
/// it now: `/cluster` may be a moment behind a change of primary.
pub(crate) async fn open(
    candidate: &Candidate<'_>,
    login: &Login,
    role: Option<RoleFilter>,
) -> Result<Client, Failure> {
    let at = candidate.describe();
    let mut config = tokio_postgres::Config::new();
    config
        .host(candidate.host)
        .port(candidate.port)
        .user(&login.user)
        .dbname(&login.dbname)
        .application_name("raftgresctl")
        .connect_timeout(CONNECT_TIMEOUT)
        .ssl_mode(login.tls_settings.tokio_mode());
    let client = connect(config, login, candidate.host, candidate.port, &at).await?;
    let Some(role) = role.filter(|r| *r != RoleFilter::Any) else {
        return Ok(client);
    };
    match (role, in_recovery(&client, &at).await?) {
        (RoleFilter::Leader, Some(false)) | (RoleFilter::Replica, Some(true)) => Ok(client),
        (RoleFilter::Leader, _) => Err(Failure::Unusable(format!(
            "{at} is in recovery, not the primary: the cluster's view is behind a change of \
             primary; run the query again"
        ))),
        _ => Err(Failure::Unusable(format!(
            "{at} is not in recovery, so not a replica now"
        ))),
    }
}

/// `pg_is_in_recovery()`: whether the server at `at` is a standby now;
/// `None` when it did not say.
pub(crate) async fn in_recovery(client: &Client, at: &str) -> Result<Option<bool>, Failure> {
    let rows = client
        .simple_query("SELECT pg_catalog.pg_is_in_recovery()")
        .await
        .map_err(|e| Failure::Unusable(format!("{at}: {}", error_text(&e))))?;
    Ok(rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "t"),
        _ => None,
    }))
}

/// Connects with `config`, which names the server, the user and the
/// database; the password, unless `config` has one, as libpq finds it for
/// `host` and `port`, and TLS as `login` says. `at` names the server in
/// errors.
pub(crate) async fn connect(
    mut config: tokio_postgres::Config,
    login: &Login,
    host: &str,
    port: u16,
    at: &str,
) -> Result<Client, Failure> {
    let password = match (config.get_password(), &login.password, &login.passfile) {
        (Some(_), _, _) => None,
        (None, Some(password), _) => Some(password.clone()),
        (None, None, Some(file)) => {
            let wanted = pgpass::Login {
                host,
                port,
                dbname: config.get_dbname().unwrap_or(&login.dbname),
                user: config.get_user().unwrap_or(&login.user),
            };
            pgpass::lookup(file, &wanted).map_err(Failure::Local)?
        }
        (None, None, None) => None,
    };
    let no_password = password.is_none() && config.get_password().is_none();
    if let Some(password) = password {
        config.password(password);
    }
    let connected = match &login.tls {
        Some(tls) => config
            .connect(tls.clone())
            .await
            .map(|(client, connection)| {
                // Errors of the connection reach us through the client's calls.
                tokio::spawn(connection);
                client
            }),
        None => config
            .connect(tokio_postgres::NoTls)
            .await
            .map(|(client, connection)| {
                tokio::spawn(connection);
                client
            }),
    };
    connected.map_err(|e| connect_failure(at, login, no_password, &e))
}

/// A failed connection: refused by the server (the login, the database),
/// or not reached.
fn connect_failure(
    at: &str,
    login: &Login,
    no_password: bool,
    error: &tokio_postgres::Error,
) -> Failure {
    let user = &login.user;
    if no_password && error_text(error).contains("password missing") {
        let passfile = login
            .passfile
            .as_ref()
            .map_or_else(|| "~/.pgpass".to_owned(), |p| p.display().to_string());
        return Failure::Refused(format!(
            "{at} asks {user} for a password, and none was given: pass --password, set \
             PGPASSWORD, or add `host:port:dbname:user:password` to {passfile} (mode 600); \
             the user is -U (default PGUSER, else your login name)"
        ));
    }
    if let Some(db) = error.as_db_error() {
        // Shutting down, starting, or out of connections (classes 57 and
        // 53): no login is taken now, and another member may take one.
        if matches!(&db.code().code()[..2], "57" | "53") {
            return Failure::Unusable(format!("{at}: {}", db_text(db)));
        }
        return Failure::Refused(format!(
            "{at} refused the login of {user} to database {}: {}; the user is -U (default \
             PGUSER, else your login name), the password from --password, PGPASSWORD or the \
             password file, the database -d",
            login.dbname,
            db_text(db)
        ));
    }
    let text = error_text(error);
    let hint = if raftgres_postgres::refused_certificate(error).is_some() {
        "; check PGSSLMODE and PGSSLROOTCERT (the CA of the members' Postgres certificates)"
    } else {
        ""
    };
    Failure::Unusable(format!("cannot connect to {at}: {text}{hint}"))
}

/// An error of the SQL, or of the connection while it ran.
pub(crate) fn failed(at: &str, error: &tokio_postgres::Error) -> CtlError {
    match error.as_db_error() {
        Some(db) => CtlError::PgRefused(format!("{at}: {}", db_text(db))),
        None => CtlError::Unavailable(format!(
            "{at}: {}; the statement may or may not have run",
            error_text(error)
        )),
    }
}

/// Postgres's own words: `ERROR: message (SQLSTATE code)`, its detail and hint.
fn db_text(db: &tokio_postgres::error::DbError) -> String {
    let mut text = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let Some(detail) = db.detail() {
        text.push_str(&format!("; DETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("; HINT: {hint}"));
    }
    text
}

/// The error with its causes, which tokio-postgres's own text leaves out.
fn error_text(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

/// The result sets of a simple query, in order; a statement without rows
/// (an INSERT, a SET) has none.
fn sets_of(messages: Vec<SimpleQueryMessage>) -> Vec<ResultSet> {
    let mut sets = Vec::new();
    let mut current: Option<ResultSet> = None;
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                sets.extend(current.take());
                current = Some(ResultSet {
                    columns: columns.iter().map(|c| c.name().to_owned()).collect(),
                    rows: Vec::new(),
                });
            }
            SimpleQueryMessage::Row(row) => {
                let set = current.get_or_insert_with(|| ResultSet {
                    columns: row.columns().iter().map(|c| c.name().to_owned()).collect(),
                    rows: Vec::new(),
                });
                set.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                );
            }
            SimpleQueryMessage::CommandComplete(_) => sets.extend(current.take()),
            _ => {}
        }
    }
    sets.extend(current);
    sets
}

/// Each result set in `format`: tables and tsv one after another with a
/// blank line between, JSON a document each, YAML a `---` between.
fn print_sets(sets: &[ResultSet], output: Format, delimiter: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, set) in sets.iter().enumerate() {
        let text = match output {
            Format::Pretty => format::result_table(set),
            Format::Tsv => format::result_tsv(set, delimiter),
            Format::Json => format::result_json(set),
            Format::Yaml => format::result_yaml(set),
        };
        if i > 0 {
            match output {
                Format::Pretty | Format::Tsv => writeln!(out)?,
                Format::Json => {}
                Format::Yaml => writeln!(out, "---")?,
            }
        }
        write!(out, "{text}")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn view() -> ClusterView {
        ClusterView::deserialize(&json!({"scope": "lab", "members": [
            {"name": "m3", "role": "replica", "host": "10.0.0.3", "port": 5432},
            {"name": "m1", "role": "leader", "host": "10.0.0.1", "port": 5432},
            {"name": "w", "role": "witness"},
            {"name": "m2", "role": "replica", "host": "::1", "port": 5433},
            {"name": "m4", "role": "replica"}
        ]}))
        .expect("lenient")
    }

    fn names(pick: Pick) -> Vec<String> {
        candidates(&view(), &pick)
            .expect("some")
            .iter()
            .map(Candidate::describe)
            .collect()
    }

    #[test]
    fn the_leader_by_default_replicas_by_name_and_the_named_member() {
        assert_eq!(
            names(Pick {
                member: None,
                role: None
            }),
            ["m1 (10.0.0.1:5432)"]
        );
        assert_eq!(
            names(Pick {
                member: None,
                role: Some(RoleFilter::Replica)
            }),
            ["m2 ([::1]:5433)", "m3 (10.0.0.3:5432)"]
        );
        assert_eq!(
            names(Pick {
                member: None,
                role: Some(RoleFilter::Any)
            })
            .len(),
            3
        );
        assert_eq!(
            names(Pick {
                member: Some("m3"),
                role: None
            }),
            ["m3 (10.0.0.3:5432)"]
        );
        for (name, want) in [
            ("nobody", "not a member"),
            ("w", "no Postgres address"),
            ("m4", "no Postgres address"),
        ] {
            let pick = Pick {
                member: Some(name),
                role: None,
            };
            let err = candidates(&view(), &pick).err().expect(name).to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        let leaderless =
            ClusterView::deserialize(&json!({"scope": "lab", "members": []})).expect("lenient");
        let pick = Pick {
            member: None,
            role: None,
        };
        let err = candidates(&leaderless, &pick).err().expect("no leader");
        assert_eq!(
            err.downcast_ref::<CtlError>().map(CtlError::exit_code),
            Some(crate::error::EXIT_UNAVAILABLE)
        );
    }
}
