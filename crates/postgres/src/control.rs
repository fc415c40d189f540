//! Control queries over a superuser connection to the local server.

use crate::error::{PgError, Result};
use crate::lsn::Lsn;
use crate::session::{Session, connect_local, query_error};
use crate::settings::PgSettings;
use crate::version::sql;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::PgLsn;
use tokio_postgres::{Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A server's own view, read in a few queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgStatus {
    pub in_recovery: bool,
    /// The timeline WAL is written on (primary) or, for a standby, the
    /// newest of: the one it receives, its last restartpoint's, and its
    /// minimum recovery point's. A standby's value can lag a promotion
    /// upstream until it receives WAL of the new timeline.
    pub timeline: u32,
    /// `pg_current_wal_lsn()` on a primary; on a standby the larger of
    /// `receive_lsn` and `replay_lsn`: what it could offer if promoted.
    pub wal_lsn: Lsn,
    /// Standby only: WAL received and flushed (`pg_last_wal_receive_lsn`).
    pub receive_lsn: Option<Lsn>,
    /// Standby only: WAL applied (`pg_last_wal_replay_lsn`).
    pub replay_lsn: Option<Lsn>,
    pub system_id: String,
    /// Standbys streaming from this server (`pg_stat_replication`).
    pub replication: Vec<ReplicationPeer>,
    /// This server's own WAL receiver (`pg_stat_wal_receiver`), if running.
    pub wal_receiver: Option<WalReceiver>,
    /// Standby only: a replay pause was requested (replay stops before the
    /// next record, so `replay_lsn` no longer moves).
    pub wal_replay_paused: bool,
    /// Settings changed in the configuration files that only a restart
    /// applies.
    pub pending_restart: Vec<PendingSetting>,
    /// `server_version_num`, e.g. `150004`.
    pub server_version: u32,
    /// `pg_postmaster_start_time()` as the server prints it.
    pub postmaster_start_time: String,
    /// `pg_conf_load_time()` as the server prints it: when the server last
    /// read its configuration files (at start, and at every reload).
    pub conf_load_time: String,
    /// Standby only: the commit time of the last transaction replayed
    /// (`pg_last_xact_replay_timestamp()`), as the server prints it.
    pub replay_timestamp: Option<String>,
    /// The same two instants in Unix milliseconds, for metrics.
    pub postmaster_start_unix_ms: i64,
    pub replay_unix_ms: Option<i64>,
}

/// A setting whose configured value waits for a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSetting {
    pub name: String,
    /// The value the server runs with, as `SHOW` prints it.
    pub running: String,
    /// The value in the configuration files, as written there.
    pub configured: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationPeer {
    /// The role the standby logged in as.
    pub usename: Option<String>,
    pub application_name: String,
    pub client_addr: Option<String>,
    /// `startup`, `catchup`, `streaming`, `backup` or `stopping`.
    pub state: String,
    /// `async`, `potential`, `sync` or `quorum`.
    pub sync_state: String,
    /// Its place in `synchronous_standby_names` (0: not named there).
    pub sync_priority: i32,
    pub sent_lsn: Option<Lsn>,
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalReceiver {
    /// `streaming`, `waiting`, `starting`, `stopping`, ...
    pub status: String,
    pub sender_host: Option<String>,
    pub sender_port: Option<u16>,
    pub received_timeline: u32,
    pub slot_name: Option<String>,
}

impl WalReceiver {
    /// `host:port` of the upstream, when the receiver is connected.
    pub fn upstream(&self) -> Option<String> {
        let host = self.sender_host.as_deref()?;
        let port = self.sender_port?;
        Some(
            crate::Upstream {
                host: host.to_owned(),
                port,
            }
            .to_string(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSlot {
    pub name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    /// A client (normally a standby) is using it now.
    pub active: bool,
    /// Oldest WAL the slot still holds on to.
    pub restart_lsn: Option<Lsn>,
}

/// Control queries to the local server at `host:port` as the superuser.
///
/// Each call opens its own connection (over the Unix socket where it can,
/// see `session::connect_local`) and closes it when done: the calls are
/// rare, and a kept-open connection would be a client that a smart
/// shutdown waits for and would need repair after every restart. The
/// repeated status look keeps one anyway, for its cost; [`crate::Probe`]
/// says how it makes up for that.
pub struct Control {
    settings: PgSettings,
    /// Built at the first connection and kept: building it reads the CA
    /// file and sets up rustls, which every probe would otherwise repeat.
    tls: tokio::sync::OnceCell<Option<MakeRustlsConnect>>,
}

impl Control {
    pub fn new(settings: &PgSettings) -> Control {
        Control {
            settings: settings.clone(),
            tls: tokio::sync::OnceCell::new(),
        }
    }

    /// Reads the server's role, position and replication peers over a
    /// connection of its own (see [`crate::Probe`] for the repeated look).
    pub async fn status(&self) -> Result<PgStatus> {
        let session = self.session().await?;
        read_status(&session, &StatusQueries::prepare(&session).await?).await
    }

    /// Promotes a standby and waits up to `wait` for it to finish. Returns
    /// whether the server is a primary afterwards; an already promoted server
    /// answers `true`, so a retry after a lost answer is harmless.
    ///
    /// After a promotion the control file keeps the old timeline until the
    /// next checkpoint completes; run [`Control::checkpoint`] before anyone
    /// `pg_rewind`s from this server ([`crate::rewind`] does it itself).
    pub async fn promote(&self, wait: Duration) -> Result<bool> {
        /// How often a promotion in progress is looked at.
        const PROMOTE_POLL: Duration = Duration::from_millis(5);
        const OP: &str = "promoting";
        let session = self.session().await?;
        let in_recovery = async || {
            let row = session
                .query_one(OP, "SELECT pg_is_in_recovery()", &[])
                .await?;
            get::<bool>(&row, 0, OP)
        };
        if !in_recovery().await? {
            tracing::info!("promote: the server is already a primary");
            return Ok(true);
        }
        // pg_promote's own wait looks every 100 ms, which the clients of a
        // switchover would wait out; so signal without waiting and look
        // here more often.
        let row = session
            .query_one(OP, "SELECT pg_promote(false)", &[])
            .await?;
        if !get::<bool>(&row, 0, OP)? {
            tracing::warn!("promote: the server refused the promotion signal");
            return Ok(false);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if !in_recovery().await? {
                tracing::info!("promoted");
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(?wait, "promote: the server is still in recovery");
                return Ok(false);
            }
            tokio::time::sleep(PROMOTE_POLL).await;
        }
    }

    /// A server setting as a new session sees it: once it shows a reloaded
    /// value, the postmaster has read the new configuration.
    pub async fn setting(&self, name: &str) -> Result<String> {
        const OP: &str = "reading a server setting";
        let session = self.session().await?;
        let row = session
            .query_one(OP, "SELECT current_setting($1)", &[&name])
            .await?;
        get(&row, 0, OP)
    }

    /// Runs `CHECKPOINT`, which may take as long as writing every dirty
    /// buffer; hence its own bound.
    pub async fn checkpoint(&self, timeout: Duration) -> Result<()> {
        let session = self.session().await?;
        session
            .query_bounded("CHECKPOINT", timeout, "CHECKPOINT", &[])
            .await?;
        Ok(())
    }

    /// Creates a physical slot that holds WAL from now on, even before its
    /// standby connects. Succeeds if the slot exists already.
    pub async fn create_physical_slot(&self, name: &str) -> Result<()> {
        const OP: &str = "creating a replication slot";
        let sql = "SELECT pg_create_physical_replication_slot($1, true)";
        match self.slot_call(OP, sql, name, "created").await? {
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok(()),
            answer => answer.map_err(|e| query_error(OP, &e)),
        }
    }

    /// Drops a slot; succeeds if it does not exist.
    pub async fn drop_slot(&self, name: &str) -> Result<()> {
        const OP: &str = "dropping a replication slot";
        let sql = "SELECT pg_drop_replication_slot($1)";
        match self.slot_call(OP, sql, name, "dropped").await? {
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) => Err(PgError::SlotActive {
                name: name.to_owned(),
            }),
            answer => answer.map_err(|e| query_error(OP, &e)),
        }
    }

    /// Runs a slot function on `name`. The server's refusal is left to the
    /// caller, which knows which refusals mean "already so".
    async fn slot_call(
        &self,
        operation: &'static str,
        sql: &str,
        name: &str,
        done: &str,
    ) -> Result<std::result::Result<(), tokio_postgres::Error>> {
        check_slot_name(name)?;
        let session = self.session().await?;
        let answer = session
            .try_query(operation, session.query_timeout, sql, &[&name])
            .await?;
        Ok(answer.map(|_| tracing::info!(slot = name, "{done} replication slot")))
    }

    /// Moves a physical slot forward to `to`; on a standby Postgres stops
    /// it at the replayed position. The caller never asks to go backwards,
    /// which the server refuses.
    pub async fn advance_slot(&self, name: &str, to: Lsn) -> Result<()> {
        const OP: &str = "advancing a replication slot";
        check_slot_name(name)?;
        let session = self.session().await?;
        session
            .query(
                OP,
                "SELECT pg_replication_slot_advance($1, $2)",
                &[&name, &PgLsn::from(to.0)],
            )
            .await?;
        tracing::debug!(slot = name, %to, "advanced replication slot");
        Ok(())
    }

    pub async fn list_slots(&self) -> Result<Vec<ReplicationSlot>> {
        const OP: &str = "listing replication slots";
        let session = self.session().await?;
        session
            .query(
                OP,
                "SELECT slot_name::text, slot_type, active, restart_lsn
             FROM pg_replication_slots ORDER BY slot_name",
                &[],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(ReplicationSlot {
                    name: get(row, 0, OP)?,
                    slot_type: get(row, 1, OP)?,
                    active: get(row, 2, OP)?,
                    restart_lsn: get::<Option<PgLsn>>(row, 3, OP)?.map(Lsn::from),
                })
            })
            .collect()
    }

    /// Asks a standby to stop applying WAL (it keeps receiving it).
    pub async fn pause_wal_replay(&self) -> Result<()> {
        self.in_recovery_call("pausing WAL replay", "SELECT pg_wal_replay_pause()")
            .await
    }

    pub async fn resume_wal_replay(&self) -> Result<()> {
        self.in_recovery_call("resuming WAL replay", "SELECT pg_wal_replay_resume()")
            .await
    }

    async fn in_recovery_call(&self, operation: &'static str, sql: &str) -> Result<()> {
        let session = self.session().await?;
        match session
            .try_query(operation, self.settings.query_timeout, sql, &[])
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) => {
                Err(PgError::NotInRecovery { operation })
            }
            Err(e) => Err(query_error(operation, &e)),
        }
    }

    /// One connection for the queries of one call.
    pub(crate) async fn session(&self) -> Result<Session> {
        let s = &self.settings;
        let tls = async || {
            self.tls
                .get_or_try_init(|| async { s.tls.connector() })
                .await
                .cloned()
        };
        Ok(Session {
            client: connect_local(s, tls).await?,
            query_timeout: s.query_timeout,
        })
    }
}

/// The status queries, prepared once per session: a kept session (see
/// [`crate::Probe`]) then runs them at every look without the server
/// parsing and planning them again.
pub(crate) struct StatusQueries {
    local: Statement,
    replication: Statement,
    pending_restart: Statement,
    wal_receiver: Statement,
}

impl StatusQueries {
    pub(crate) async fn prepare(session: &Session) -> Result<StatusQueries> {
        const OP: &str = "preparing the status queries";
        // One statement, so the role and the positions are read together.
        let local = format!(
            "SELECT s.r,
                    (SELECT system_identifier FROM pg_control_system())::text,
                    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END,
                    CASE WHEN pg_is_in_recovery() THEN NULL
                         ELSE pg_walfile_name(pg_current_wal_lsn()) END,
                    pg_last_wal_receive_lsn(),
                    pg_last_wal_replay_lsn(),
                    CASE WHEN pg_is_in_recovery() THEN {pause_state} END,
                    (SELECT timeline_id FROM pg_control_checkpoint()),
                    (SELECT min_recovery_end_timeline FROM pg_control_recovery()),
                    current_setting('server_version_num')::int,
                    pg_postmaster_start_time()::text,
                    CASE WHEN pg_is_in_recovery() THEN pg_last_xact_replay_timestamp()::text END,
                    (extract(epoch FROM pg_postmaster_start_time()) * 1000)::int8,
                    CASE WHEN pg_is_in_recovery()
                         THEN (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000)::int8 END,
                    pg_conf_load_time()::text
             FROM (SELECT pg_is_in_recovery() AS r) s",
            pause_state = sql::REPLAY_PAUSE_STATE
        );
        Ok(StatusQueries {
            local: session.prepare(OP, &local).await?,
            replication: session
                .prepare(
                    OP,
                    "SELECT application_name, client_addr::text, state, sync_state,
                            sent_lsn, write_lsn, flush_lsn, replay_lsn,
                            usename::text, sync_priority
                     FROM pg_stat_replication ORDER BY application_name",
                )
                .await?,
            // The files are parsed only for a setting that waits for a
            // restart, so a server with none pays for one catalog scan.
            pending_restart: session
                .prepare(
                    OP,
                    "SELECT s.name, current_setting(s.name),
                            (SELECT f.setting FROM pg_file_settings f
                             WHERE f.name = s.name ORDER BY f.seqno DESC LIMIT 1)
                     FROM pg_settings s WHERE s.pending_restart ORDER BY s.name",
                )
                .await?,
            wal_receiver: session
                .prepare(
                    OP,
                    "SELECT status, sender_host, sender_port, received_tli, slot_name
                     FROM pg_stat_wal_receiver",
                )
                .await?,
        })
    }
}

/// The status, read with `queries` prepared on `session`.
pub(crate) async fn read_status(session: &Session, queries: &StatusQueries) -> Result<PgStatus> {
    const OP: &str = "reading the server status";
    // Polled together, the four go out in one pipeline: one round trip.
    let (local, replication, pending_restart, receivers) = tokio::try_join!(
        session.query_one(OP, &queries.local, &[]),
        session.query("reading pg_stat_replication", &queries.replication, &[]),
        session.query("reading pg_settings", &queries.pending_restart, &[]),
        session.query("reading pg_stat_wal_receiver", &queries.wal_receiver, &[]),
    )?;
    let in_recovery: bool = get(&local, 0, OP)?;
    let system_id: String = get(&local, 1, OP)?;
    let current: Option<PgLsn> = get(&local, 2, OP)?;
    let walfile: Option<String> = get(&local, 3, OP)?;
    let receive_lsn = get::<Option<PgLsn>>(&local, 4, OP)?.map(Lsn::from);
    let replay_lsn = get::<Option<PgLsn>>(&local, 5, OP)?.map(Lsn::from);
    let pause_state: Option<String> = get(&local, 6, OP)?;
    let checkpoint_tli: Option<i32> = get(&local, 7, OP)?;
    let min_recovery_tli: Option<i32> = get(&local, 8, OP)?;
    let server_version: i32 = get(&local, 9, OP)?;
    let postmaster_start_time: String = get(&local, 10, OP)?;
    let replay_timestamp: Option<String> = get(&local, 11, OP)?;
    let postmaster_start_unix_ms: i64 = get(&local, 12, OP)?;
    let replay_unix_ms: Option<i64> = get(&local, 13, OP)?;
    let conf_load_time: String = get(&local, 14, OP)?;

    let replication = replication
        .iter()
        .map(replication_peer)
        .collect::<Result<Vec<_>>>()?;
    let pending_restart = pending_restart
        .iter()
        .map(|row| {
            Ok(PendingSetting {
                name: get(row, 0, OP)?,
                running: get(row, 1, OP)?,
                configured: get(row, 2, OP)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let wal_receiver = receivers.first().map(wal_receiver).transpose()?;

    let (timeline, wal_lsn) = if in_recovery {
        let timeline = [
            wal_receiver.as_ref().map(|w| w.received_timeline),
            checkpoint_tli.and_then(|t| u32::try_from(t).ok()),
            min_recovery_tli.and_then(|t| u32::try_from(t).ok()),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let wal_lsn = receive_lsn.max(replay_lsn).unwrap_or_default();
        (timeline, wal_lsn)
    } else {
        let timeline = walfile
            .as_deref()
            .and_then(timeline_of_walfile)
            .ok_or_else(|| PgError::Query {
                operation: OP,
                reason: format!("pg_walfile_name gave {walfile:?}, not a WAL file name"),
            })?;
        (timeline, current.map(Lsn::from).unwrap_or_default())
    };
    Ok(PgStatus {
        in_recovery,
        timeline,
        wal_lsn,
        receive_lsn: receive_lsn.filter(|_| in_recovery),
        replay_lsn: replay_lsn.filter(|_| in_recovery),
        system_id,
        replication,
        wal_receiver,
        wal_replay_paused: pause_state.is_some_and(|s| s != sql::NOT_PAUSED),
        pending_restart,
        server_version: u32::try_from(server_version).unwrap_or_default(),
        postmaster_start_time,
        conf_load_time,
        replay_timestamp,
        postmaster_start_unix_ms,
        replay_unix_ms,
    })
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    operation: &'static str,
) -> Result<T> {
    row.try_get(index).map_err(|e| query_error(operation, &e))
}

fn replication_peer(row: &Row) -> Result<ReplicationPeer> {
    const OP: &str = "reading pg_stat_replication";
    let lsn = |i| get::<Option<PgLsn>>(row, i, OP).map(|l| l.map(Lsn::from));
    Ok(ReplicationPeer {
        application_name: get::<Option<String>>(row, 0, OP)?.unwrap_or_default(),
        client_addr: get(row, 1, OP)?,
        state: get::<Option<String>>(row, 2, OP)?.unwrap_or_default(),
        sync_state: get::<Option<String>>(row, 3, OP)?.unwrap_or_default(),
        sent_lsn: lsn(4)?,
        write_lsn: lsn(5)?,
        flush_lsn: lsn(6)?,
        replay_lsn: lsn(7)?,
        usename: get(row, 8, OP)?,
        sync_priority: get::<Option<i32>>(row, 9, OP)?.unwrap_or_default(),
    })
}

fn wal_receiver(row: &Row) -> Result<WalReceiver> {
    const OP: &str = "reading pg_stat_wal_receiver";
    Ok(WalReceiver {
        status: get::<Option<String>>(row, 0, OP)?.unwrap_or_default(),
        sender_host: get(row, 1, OP)?,
        sender_port: get::<Option<i32>>(row, 2, OP)?.and_then(|p| u16::try_from(p).ok()),
        received_timeline: get::<Option<i32>>(row, 3, OP)?
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(0),
        slot_name: get(row, 4, OP)?,
    })
}

/// A WAL file name is timeline, log and segment as 8 hex digits each.
fn timeline_of_walfile(name: &str) -> Option<u32> {
    if name.len() != 24 {
        return None;
    }
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

/// PostgreSQL's own rule for slot names, checked here for a clearer error.
pub(crate) fn check_slot_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PgError::InvalidInput {
            what: "replication slot name",
            value: name.to_owned(),
            reason: "must be 1 to 63 lowercase letters, digits or '_'",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_from_walfile_name() {
        assert_eq!(timeline_of_walfile("000000010000000000000001"), Some(1));
        assert_eq!(timeline_of_walfile("0000000A0000000200000003"), Some(10));
        assert_eq!(timeline_of_walfile("00000001"), None);
        assert_eq!(timeline_of_walfile("zzzzzzzz0000000000000001"), None);
    }

    #[test]
    fn slot_names() {
        assert!(check_slot_name("node-1").is_err());
        assert!(check_slot_name(&"x".repeat(64)).is_err());
        assert!(check_slot_name("").is_err());
        check_slot_name("node_1").unwrap();
    }
}
