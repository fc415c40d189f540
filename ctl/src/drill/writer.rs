//! The drill's client: numbered autocommit INSERTs at a steady rate through
//! the entry point, each recorded with when it was sent and how it ended.
//! It behaves as an application would: one connection, a new one after any
//! error, no retry of a failed write.

use super::measure::{Ack, Write};
use crate::query::{self, Candidate, Failure, Login};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, SimpleQueryMessage};

/// One server's connect, TLS handshake and login (libpq's
/// `connect_timeout` as a client would set it).
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// One INSERT; past it the write counts as failed, though it may commit.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server and how the report names it.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Server {
    fn candidate(&self) -> Candidate<'_> {
        Candidate {
            name: &self.name,
            host: &self.host,
            port: self.port,
        }
    }
}

/// Where the writes go.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Every member's Postgres, the one that takes writes now: as a libpq
    /// client with all of them in its connection string and
    /// `target_session_attrs=read-write` finds it, trying first the one
    /// that worked last.
    Primary(Vec<Server>),
    /// One address: HAProxy's write port or a pgbouncer.
    Server(Server),
    /// A libpq connection string as given (several hosts and
    /// `target_session_attrs` work as in libpq).
    Dsn(Box<tokio_postgres::Config>),
}

impl Entry {
    /// How the report names it; a connection string without its password.
    pub fn describe(&self) -> String {
        match self {
            Entry::Primary(servers) => {
                let all: Vec<String> = servers.iter().map(|s| s.candidate().describe()).collect();
                format!("the primary among {}", all.join(", "))
            }
            Entry::Server(server) => server.candidate().describe(),
            Entry::Dsn(config) => {
                let ports = config.get_ports();
                let hosts: Vec<String> = config
                    .get_hosts()
                    .iter()
                    .enumerate()
                    .map(|(i, host)| {
                        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                        match host {
                            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                            Host::Tcp(name) => format!("{name}:{port}"),
                            Host::Unix(dir) => format!("{}:{port}", dir.display()),
                        }
                    })
                    .collect();
                format!("the connection string's {}", hosts.join(", "))
            }
        }
    }

    /// A new connection, and how errors name its server.
    async fn open(&self, login: &Login, preferred: &mut usize) -> Result<(Client, String), String> {
        match self {
            Entry::Primary(servers) => {
                let mut why = Vec::new();
                let count = servers.len();
                for i in (0..count).map(|i| (*preferred + i) % count) {
                    let candidate = servers[i].candidate();
                    let at = candidate.describe();
                    let writable = async {
                        let client = query::open(&candidate, login, None).await?;
                        match query::in_recovery(&client, &at).await? {
                            Some(false) => Ok(client),
                            _ => Err(Failure::Unusable(format!("{at} is in recovery"))),
                        }
                    };
                    let opened = tokio::time::timeout(OPEN_TIMEOUT, writable).await;
                    match opened {
                        Ok(Ok(client)) => {
                            *preferred = i;
                            return Ok((client, at));
                        }
                        Ok(Err(failure)) => why.push(failure_text(failure)),
                        Err(_) => why.push(format!("{at}: no answer within {OPEN_TIMEOUT:?}")),
                    }
                }
                Err(format!("no writable primary: {}", why.join("; ")))
            }
            Entry::Server(server) => {
                let candidate = server.candidate();
                let opened =
                    tokio::time::timeout(OPEN_TIMEOUT, query::open(&candidate, login, None)).await;
                match opened {
                    Ok(Ok(client)) => Ok((client, candidate.describe())),
                    Ok(Err(failure)) => Err(failure_text(failure)),
                    Err(_) => Err(format!(
                        "{}: no answer within {OPEN_TIMEOUT:?}",
                        candidate.describe()
                    )),
                }
            }
            Entry::Dsn(given) => {
                let at = self.describe();
                let mut config = tokio_postgres::Config::clone(given);
                if config.get_user().is_none() {
                    config.user(&login.user);
                }
                if config.get_dbname().is_none() {
                    config.dbname(&login.dbname);
                }
                if config.get_application_name().is_none() {
                    config.application_name("raftgresctl drill");
                }
                if config.get_connect_timeout().is_none() {
                    config.connect_timeout(OPEN_TIMEOUT);
                }
                // The password file is looked up for the first host, as
                // one password goes to every host.
                let host = match config.get_hosts().first() {
                    Some(Host::Tcp(name)) => name.clone(),
                    // libpq's password file names a socket `localhost`.
                    Some(Host::Unix(_)) | None => "localhost".to_owned(),
                };
                let port = config.get_ports().first().copied().unwrap_or(5432);
                let timeout =
                    OPEN_TIMEOUT * u32::try_from(config.get_hosts().len().max(1)).unwrap_or(1);
                let opened =
                    tokio::time::timeout(timeout, query::connect(config, login, &host, port, &at))
                        .await;
                match opened {
                    Ok(Ok(client)) => Ok((client, at)),
                    Ok(Err(failure)) => Err(failure_text(failure)),
                    Err(_) => Err(format!("{at}: no answer within {timeout:?}")),
                }
            }
        }
    }
}

fn failure_text(failure: Failure) -> String {
    match failure {
        Failure::Refused(why) | Failure::Unusable(why) => why,
        Failure::Local(error) => format!("{error:#}"),
    }
}

/// The writer, until told to stop; `log` gets every write as it ends.
pub struct Writer {
    pub entry: Entry,
    pub login: Arc<Login>,
    pub table: String,
    pub writes_per_second: u32,
    /// The drill's start, which every time is measured from.
    pub start: Instant,
    pub log: Arc<Mutex<Vec<Write>>>,
}

impl Writer {
    /// Writes until `stop` turns true; the write in flight then ends first,
    /// since its answer decides whether it counts as acknowledged.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let period = Duration::from_secs(1) / self.writes_per_second;
        let mut ticks = tokio::time::interval(period);
        // A slow write delays the next, as in a client that waits for its
        // answer; the ticks it overran are skipped, not sent in a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut open: Option<(Client, String)> = None;
        let mut preferred = 0;
        for seq in 1.. {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return,
                _ = ticks.tick() => {}
            }
            let sent_at = self.start.elapsed();
            let outcome = self.write(seq, &mut open, &mut preferred).await;
            let write = Write {
                seq,
                sent_at,
                outcome,
            };
            // A poisoned lock means the drill itself panicked.
            if let Ok(mut log) = self.log.lock() {
                log.push(write);
            }
        }
    }

    /// One write on the open connection, or on a new one.
    async fn write(
        &self,
        seq: u64,
        open: &mut Option<(Client, String)>,
        preferred: &mut usize,
    ) -> Result<Ack, String> {
        let (client, at) = match open.take() {
            Some((client, at)) if !client.is_closed() => (client, at),
            _ => self.entry.open(&self.login, preferred).await?,
        };
        let sql = format!(
            "INSERT INTO {} (seq) VALUES ({seq}) RETURNING pg_catalog.current_setting('cluster_name')",
            self.table
        );
        match tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query(&sql)).await {
            Ok(Ok(messages)) => {
                let by = messages
                    .iter()
                    .find_map(|m| match m {
                        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                        _ => None,
                    })
                    .unwrap_or_default();
                *open = Some((client, at));
                Ok(Ack {
                    at: self.start.elapsed(),
                    by,
                })
            }
            // The connection is dropped after any error, as a pool drops
            // one it cannot trust.
            Ok(Err(e)) => Err(query::failed(&at, &e).to_string()),
            Err(_) => Err(format!(
                "{at}: no answer within {STATEMENT_TIMEOUT:?}; the write may have committed"
            )),
        }
    }
}
