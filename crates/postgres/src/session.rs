//! Connections to a server: opened with the member's TLS settings and
//! bounded in time, and sessions whose every query is bounded too.

use crate::error::{PgError, Result, describe};
use crate::settings::PgSettings;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement, ToStatement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A connection with every query bounded. Dropping it (also on timeout)
/// closes the connection, which makes the server cancel a running query at
/// its next check.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) query_timeout: Duration,
}

impl Session {
    pub(crate) async fn query_one<T: ?Sized + ToStatement>(
        &self,
        operation: &'static str,
        sql: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row> {
        self.query(operation, sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| PgError::Query {
                operation,
                reason: "the query returned no row".to_owned(),
            })
    }

    pub(crate) async fn query<T: ?Sized + ToStatement>(
        &self,
        operation: &'static str,
        sql: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        self.query_bounded(operation, self.query_timeout, sql, params)
            .await
    }

    pub(crate) async fn query_bounded<T: ?Sized + ToStatement>(
        &self,
        operation: &'static str,
        bound: Duration,
        sql: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        self.try_query(operation, bound, sql, params)
            .await?
            .map_err(|e| query_error(operation, &e))
    }

    /// Prepares `sql` once for many runs on this session: the server
    /// parses and plans it here, not at every run.
    pub(crate) async fn prepare(&self, operation: &'static str, sql: &str) -> Result<Statement> {
        tokio::time::timeout(self.query_timeout, self.client.prepare(sql))
            .await
            .map_err(|_| PgError::Timeout {
                operation,
                after: self.query_timeout,
            })?
            .map_err(|e| query_error(operation, &e))
    }

    /// The outer error is about getting an answer in time; the inner one is
    /// the server's answer, left to the caller to interpret.
    pub(crate) async fn try_query<T: ?Sized + ToStatement>(
        &self,
        operation: &'static str,
        bound: Duration,
        sql: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Result<Vec<Row>, tokio_postgres::Error>> {
        tokio::time::timeout(bound, self.client.query(sql, params))
            .await
            .map_err(|_| PgError::Timeout {
                operation,
                after: bound,
            })
    }
}

/// Opens a connection to database `postgres`, bounded by
/// `settings.connect_timeout`.
/// `tls` is `settings.tls.connector()`, which callers that connect often
/// build once.
pub(crate) async fn connect(
    settings: &PgSettings,
    tls: Option<MakeRustlsConnect>,
    host: &str,
    port: u16,
    login: &crate::settings::Login,
) -> Result<Client> {
    let addr = crate::Upstream {
        host: host.to_owned(),
        port,
    }
    .to_string();
    let mut config = config_for(settings, login);
    config
        .host(host)
        .port(port)
        .ssl_mode(settings.tls.tokio_mode());
    finish(settings, &config, tls, addr).await
}

/// Opens the superuser's connection to this member's own server: over its
/// Unix socket by `peer` authentication where this process runs as the OS
/// user the superuser is named after (pg_hba's `local all all peer`,
/// `conf.rs`), else as [`connect`] does over TCP. The socket spares the
/// SCRAM key derivation (4096 HMAC rounds) and the TLS handshake, which at
/// one probe every `loop_wait` were most of an idle agent's CPU. `tls` is
/// only built for TCP.
pub(crate) async fn connect_local<F>(settings: &PgSettings, tls: F) -> Result<Client>
where
    F: AsyncFnOnce() -> Result<Option<MakeRustlsConnect>>,
{
    if !settings.superuser_is_peer() {
        return connect(
            settings,
            tls().await?,
            settings.control_host(),
            settings.port,
            &settings.superuser,
        )
        .await;
    }
    let mut config = config_for(settings, &settings.superuser);
    config
        .host_path(&settings.socket_dir)
        .port(settings.port)
        .ssl_mode(tokio_postgres::config::SslMode::Disable);
    let addr = format!(
        "{}/.s.PGSQL.{}",
        settings.socket_dir.display(),
        settings.port
    );
    finish(settings, &config, None, addr).await
}

fn config_for(settings: &PgSettings, login: &crate::settings::Login) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .user(&login.user)
        .password(login.password.expose())
        .dbname("postgres")
        .application_name("raftgres-control")
        .connect_timeout(settings.connect_timeout);
    config
}

async fn finish(
    settings: &PgSettings,
    config: &tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    addr: String,
) -> Result<Client> {
    // The two kinds of connection differ in type only.
    type Driver = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>> + Send,
        >,
    >;
    let connecting = async {
        match tls {
            Some(tls) => config
                .connect(tls)
                .await
                .map(|(client, connection)| (client, Box::pin(connection) as Driver)),
            None => config
                .connect(NoTls)
                .await
                .map(|(client, connection)| (client, Box::pin(connection) as Driver)),
        }
    };
    let connected = tokio::time::timeout(settings.connect_timeout, connecting)
        .await
        .map_err(|_| PgError::Connect {
            addr: addr.clone(),
            reason: format!("no answer within {:?}", settings.connect_timeout),
        })?;
    let (client, connection) =
        connected.map_err(|e| match crate::tls::refused_certificate(&e) {
            Some(reason) => PgError::Tls {
                reason: format!(
                    "{addr}'s certificate is refused under sslmode {}: {reason}",
                    settings.tls.mode.as_libpq()
                ),
            },
            None => PgError::Connect {
                addr: addr.clone(),
                reason: describe(&e),
            },
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(addr, error = %describe(&e), "control connection ended");
        }
    });
    Ok(client)
}

pub(crate) fn query_error(operation: &'static str, e: &tokio_postgres::Error) -> PgError {
    PgError::Query {
        operation,
        reason: describe(e),
    }
}
