//! pgbouncer's admin console: the virtual database `pgbouncer`, spoken to
//! with the simple query protocol (it knows no other).

use crate::error::{PoolerError, Result};
use crate::routes::check_name;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

/// Where the admin console listens and who may use it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminTarget {
    /// An IP address, a host name, or pgbouncer's `unix_socket_dir` (`/...`).
    pub host: String,
    /// pgbouncer's `listen_port`.
    pub port: u16,
    /// A user listed in pgbouncer's `admin_users`.
    pub user: String,
    pub password: Option<String>,
    /// Bounds opening a connection, login included.
    pub connect_timeout: Duration,
    /// Bounds every command except PAUSE, which takes its own.
    pub command_timeout: Duration,
}

impl AdminTarget {
    /// Defaults that suit a pgbouncer on the same host: two seconds to
    /// connect, five for a command.
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> AdminTarget {
        AdminTarget {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(5),
        }
    }

    fn addr(&self) -> String {
        if self.host.starts_with('/') {
            format!("{}/.s.PGSQL.{}", self.host, self.port)
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

// Logs and test failures print targets; the password stays out of them.
impl fmt::Debug for AdminTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// One row of `SHOW DATABASES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseStatus {
    /// The client-facing name.
    pub name: String,
    /// The server's host; `None` for the admin console itself.
    pub host: Option<String>,
    pub port: u16,
    /// The database opened on the server.
    pub database: String,
    /// The entry's own `pool_mode`, if it overrides the default.
    pub pool_mode: Option<String>,
    pub current_connections: u32,
    /// PAUSEd or KILLed and not RESUMEd yet: new clients wait.
    pub paused: bool,
    /// DISABLEd: new clients are refused.
    pub disabled: bool,
}

/// One row of `SHOW POOLS`: a (database, user) pair's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    pub database: String,
    pub user: String,
    /// Clients linked to a server, or idle with nothing to run.
    pub cl_active: u32,
    /// Clients that sent a query and wait for a server connection (for
    /// example while the database is paused).
    pub cl_waiting: u32,
    pub sv_active: u32,
    pub sv_idle: u32,
    pub sv_used: u32,
    pub sv_login: u32,
    /// How long the oldest waiting client has waited.
    pub maxwait: Duration,
    pub pool_mode: String,
}

/// A client of one pgbouncer's admin console.
///
/// It keeps one connection and opens a new one when that is gone, or after
/// a command timed out (pgbouncer answers a console's commands in order, so
/// a late answer would be taken for the next command's).
pub struct Admin {
    target: AdminTarget,
    session: tokio::sync::Mutex<Option<Client>>,
}

impl Admin {
    /// Connects lazily, on the first command.
    pub fn new(target: AdminTarget) -> Admin {
        Admin {
            target,
            session: tokio::sync::Mutex::new(None),
        }
    }

    pub fn target(&self) -> &AdminTarget {
        &self.target
    }

    /// Re-reads pgbouncer.ini and the databases file it includes. Server
    /// connections to a changed entry close when released, and new ones
    /// reach the new address.
    pub async fn reload(&self) -> Result<()> {
        self.command("RELOAD").await.map(drop)
    }

    /// Waits for `db` (every database when `None`) to release its server
    /// connections, for at most `within`. In transaction pool mode PAUSE
    /// returns once the running transactions finish; in session mode only
    /// once the clients disconnect, which may be never. New clients, and
    /// queries of connected ones, wait until [`Admin::resume`].
    ///
    /// On [`PoolerError::PauseTimeout`] the database stays paused: RESUME to
    /// give up, as the console connection is dropped and the pause is not
    /// undone by that.
    ///
    /// Do not RELOAD a changed entry while paused and leave it so: a client
    /// arriving then makes pgbouncer 1.18 log in to the new server for its
    /// parameters, the pause closes that login, and the pool counts it as a
    /// failed login (see the crate documentation). RELOAD, then RESUME at once.
    pub async fn pause(&self, db: Option<&str>, within: Duration) -> Result<()> {
        let command = with_db("PAUSE", db)?;
        match self.run(&command, within).await {
            Err(PoolerError::Timeout {
                addr,
                command,
                after,
            }) => Err(PoolerError::PauseTimeout {
                addr,
                command,
                after,
            }),
            other => other.map(drop),
        }
    }

    /// Lets `db` (every database when `None`) work again after PAUSE or
    /// KILL. Resuming what is not paused succeeds, so a caller may resume
    /// after every repoint without tracking what it paused.
    pub async fn resume(&self, db: Option<&str>) -> Result<()> {
        let command = with_db("RESUME", db)?;
        match self.command(&command).await {
            // pgbouncer's answers to a RESUME with nothing to resume: "database
            // X is not paused", "pooler is not paused/suspended".
            Err(PoolerError::Rejected { reason, .. }) if reason.contains("not paused") => Ok(()),
            other => other.map(drop),
        }
    }

    /// Drops every client and server connection of `db` at once and leaves
    /// it paused: clients arriving after this wait until RESUME.
    pub async fn kill(&self, db: &str) -> Result<()> {
        self.command(&with_db("KILL", Some(db))?).await.map(drop)
    }

    /// Makes `db` refuse new clients at once ("database is disabled"),
    /// without pgbouncer dialing its server; connected clients stay.
    pub async fn disable(&self, db: &str) -> Result<()> {
        self.command(&with_db("DISABLE", Some(db))?).await.map(drop)
    }

    /// Lets `db` accept new clients again after DISABLE.
    pub async fn enable(&self, db: &str) -> Result<()> {
        self.command(&with_db("ENABLE", Some(db))?).await.map(drop)
    }

    /// Stops all traffic of `db` now: DISABLE (new clients are refused),
    /// KILL (connected ones are dropped), RESUME (clears the pause KILL
    /// leaves, which DISABLE makes unnecessary). In this order no client is
    /// left waiting on a paused pool, where its login would dial the server
    /// and could shut the pool for `server_login_retry`. Undo with
    /// [`Admin::enable`].
    pub async fn fence(&self, db: &str) -> Result<()> {
        self.disable(db).await?;
        self.kill(db).await?;
        self.resume(Some(db)).await
    }

    /// `SHOW VERSION`, e.g. `PgBouncer 1.18.0`.
    pub async fn version(&self) -> Result<String> {
        const COMMAND: &str = "SHOW VERSION";
        let versions = self
            .show(COMMAND, |row| Ok(row.text("version")?.to_owned()))
            .await?;
        versions
            .into_iter()
            .next()
            .ok_or_else(|| self.unexpected(COMMAND, "version"))
    }

    pub async fn show_databases(&self) -> Result<Vec<DatabaseStatus>> {
        self.show("SHOW DATABASES", |row| {
            Ok(DatabaseStatus {
                name: row.text("name")?.to_owned(),
                host: row.optional("host")?.map(str::to_owned),
                port: row.number("port")?,
                database: row.text("database")?.to_owned(),
                pool_mode: row.optional("pool_mode")?.map(str::to_owned),
                current_connections: row.number("current_connections")?,
                paused: row.flag("paused")?,
                disabled: row.flag("disabled")?,
            })
        })
        .await
    }

    pub async fn show_pools(&self) -> Result<Vec<PoolStatus>> {
        self.show("SHOW POOLS", |row| {
            let seconds: u64 = row.number("maxwait")?;
            let micros: u64 = row.number("maxwait_us")?;
            Ok(PoolStatus {
                database: row.text("database")?.to_owned(),
                user: row.text("user")?.to_owned(),
                cl_active: row.number("cl_active")?,
                cl_waiting: row.number("cl_waiting")?,
                sv_active: row.number("sv_active")?,
                sv_idle: row.number("sv_idle")?,
                sv_used: row.number("sv_used")?,
                sv_login: row.number("sv_login")?,
                maxwait: Duration::from_secs(seconds) + Duration::from_micros(micros),
                pool_mode: row.text("pool_mode")?.to_owned(),
            })
        })
        .await
    }

    /// Each row of `command`'s answer, read with `read`.
    async fn show<T>(
        &self,
        command: &str,
        read: impl Fn(Reply<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.rows(command)
            .await?
            .iter()
            .map(|row| {
                read(Reply {
                    admin: self,
                    command,
                    row,
                })
            })
            .collect()
    }

    async fn command(&self, command: &str) -> Result<Vec<SimpleQueryMessage>> {
        self.run(command, self.target.command_timeout).await
    }

    async fn rows(&self, command: &str) -> Result<Vec<SimpleQueryRow>> {
        Ok(self
            .command(command)
            .await?
            .into_iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect())
    }

    /// Runs one command within `within`, connecting first if needed.
    async fn run(&self, command: &str, within: Duration) -> Result<Vec<SimpleQueryMessage>> {
        let mut session = self.session.lock().await;
        if session.as_ref().is_none_or(Client::is_closed) {
            *session = Some(self.connect().await?);
        }
        let Some(client) = session.as_ref() else {
            return Err(self.connect_error("no connection".to_owned()));
        };
        match tokio::time::timeout(within, client.simple_query(command)).await {
            Ok(Ok(messages)) => Ok(messages),
            Ok(Err(e)) => match e.as_db_error() {
                Some(db) => Err(PoolerError::Rejected {
                    addr: self.target.addr(),
                    command: command.to_owned(),
                    reason: db.message().to_owned(),
                }),
                None => {
                    *session = None;
                    Err(self.connect_error(describe(&e)))
                }
            },
            Err(_) => {
                *session = None;
                Err(PoolerError::Timeout {
                    addr: self.target.addr(),
                    command: command.to_owned(),
                    after: within,
                })
            }
        }
    }

    async fn connect(&self) -> Result<Client> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.target.host)
            .port(self.target.port)
            .user(&self.target.user)
            .dbname("pgbouncer")
            .connect_timeout(self.target.connect_timeout);
        if let Some(password) = &self.target.password {
            config.password(password);
        }
        let (client, connection) =
            match tokio::time::timeout(self.target.connect_timeout, config.connect(NoTls)).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Err(self.connect_error(describe(&e))),
                Err(_) => {
                    return Err(self.connect_error(format!(
                        "no login within {:?}",
                        self.target.connect_timeout
                    )));
                }
            };
        // Ends by itself once the client is dropped or the server hangs up.
        tokio::spawn(connection);
        Ok(client)
    }

    fn connect_error(&self, reason: String) -> PoolerError {
        PoolerError::Connect {
            addr: self.target.addr(),
            user: self.target.user.clone(),
            reason,
        }
    }

    fn unexpected(&self, command: &str, column: &'static str) -> PoolerError {
        PoolerError::UnexpectedReply {
            addr: self.target.addr(),
            command: command.to_owned(),
            column,
        }
    }
}

/// One row of the console's answer to `command`; a column that is missing
/// or unreadable is an unexpected reply, named with the command.
struct Reply<'a> {
    admin: &'a Admin,
    command: &'a str,
    row: &'a SimpleQueryRow,
}

impl<'a> Reply<'a> {
    fn unexpected(&self, column: &'static str) -> PoolerError {
        self.admin.unexpected(self.command, column)
    }

    fn optional(&self, column: &'static str) -> Result<Option<&'a str>> {
        self.row
            .try_get(column)
            .map_err(|_| self.unexpected(column))
    }

    fn text(&self, column: &'static str) -> Result<&'a str> {
        self.optional(column)?
            .ok_or_else(|| self.unexpected(column))
    }

    fn number<T: FromStr>(&self, column: &'static str) -> Result<T> {
        self.text(column)?
            .parse()
            .map_err(|_| self.unexpected(column))
    }

    fn flag(&self, column: &'static str) -> Result<bool> {
        match self.text(column)? {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(self.unexpected(column)),
        }
    }
}

/// `VERB` or `VERB db`; the console takes names unquoted, so only names
/// that need no quoting are sent.
fn with_db(verb: &str, db: Option<&str>) -> Result<String> {
    match db {
        None => Ok(verb.to_owned()),
        Some(db) => {
            check_name("database", db)?;
            Ok(format!("{verb} {db}"))
        }
    }
}

/// A client-side error with its causes, e.g. "error connecting to server:
/// Connection refused (os error 111)".
fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_only_plain_databases() {
        assert_eq!(with_db("PAUSE", None).expect("global"), "PAUSE");
        assert_eq!(with_db("KILL", Some("app_ro")).expect("db"), "KILL app_ro");
        for bad in ["app; SHUTDOWN", "", "pgbouncer"] {
            with_db("KILL", Some(bad)).expect_err(bad);
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let mut target = AdminTarget::new("127.0.0.1", 6432, "postgres");
        target.password = Some("s3cret".into());
        let shown = format!("{target:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn addresses_read_as_libpq_users_expect() {
        assert_eq!(
            AdminTarget::new("127.0.0.1", 6432, "u").addr(),
            "127.0.0.1:6432"
        );
        assert_eq!(AdminTarget::new("::1", 6432, "u").addr(), "[::1]:6432");
        assert_eq!(
            AdminTarget::new("/run/pgb", 6432, "u").addr(),
            "/run/pgb/.s.PGSQL.6432"
        );
    }
}
