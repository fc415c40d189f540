//! What each part of the agent is given, read from its settings file:
//! Raft's identity and timing, the Postgres driver's settings, the pooler's,
//! the member record it registers, the cluster's first dynamic config, and
//! the TLS and allowlist of its two servers.

use anyhow::Context;
use raftgres_config::AgentConfig;
use raftgres_consensus::transport::tls::PeerTls;
use raftgres_consensus::{OperationTimeout, Settings};
use raftgres_state::{ConfigValues, Member, MemberRole, PgState};

pub(crate) fn settings(config: &AgentConfig, operation_timeout: &OperationTimeout) -> Settings {
    Settings {
        node_id: config.node_id,
        cluster_name: config.scope.clone(),
        heartbeat_interval: config.raft.heartbeat_interval,
        election_timeout_min: config.raft.election_timeout_min,
        election_timeout_max: config.raft.election_timeout_max,
        snapshot_every_logs: config.raft.snapshot_every_logs,
        operation_timeout: operation_timeout.clone(),
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn bootstrap_values(config: &AgentConfig) -> ConfigValues {
    let b = &config.bootstrap;
    ConfigValues::new(b.timing, ms(b.retry_timeout), b.maximum_lag_on_failover)
}

/// The dynamic config of a cluster whose settings files set none of
/// `bootstrap.*`: what `PUT /config` gives the keys it leaves out. The
/// schema's defaults, the same on every member of one version, where a
/// member's own `bootstrap` section may differ from the others'.
pub(crate) fn config_defaults() -> ConfigValues {
    let b = raftgres_config::schema::Bootstrap::default();
    ConfigValues::new(
        raftgres_state::LeaseTiming::from_millis(b.ttl_ms, b.loop_wait_ms, b.lease_margin_ms),
        b.retry_timeout_ms,
        b.maximum_lag_on_failover,
    )
}

pub(crate) fn pg_settings(
    config: &AgentConfig,
    pg: &raftgres_config::PostgresSettings,
) -> anyhow::Result<raftgres_postgres::PgSettings> {
    use raftgres_config::PgSslMode;
    use raftgres_postgres::SslMode;
    std::fs::create_dir_all(&pg.socket_dir).with_context(|| {
        format!(
            "cannot create postgresql.socket_dir {}",
            pg.socket_dir.display()
        )
    })?;
    let mut s = raftgres_postgres::PgSettings::new(&pg.data_dir, pg.listen.port(), &config.name);
    s.bin_dir = pg.bin_dir.clone();
    s.host = pg.listen.ip().to_string();
    s.socket_dir = pg.socket_dir.clone();
    let login = |l: &raftgres_config::PgLogin| {
        raftgres_postgres::Login::new(l.username.clone(), l.password.clone())
    };
    s.superuser = login(&pg.authentication.superuser);
    s.replication = login(&pg.authentication.replication);
    s.rewind = pg.authentication.rewind.as_ref().map(login);
    s.passfile = pg.pgpass.clone();
    s.hba = pg.pg_hba.clone();
    s.tls = raftgres_postgres::ClientTls {
        mode: match pg.tls.sslmode {
            PgSslMode::Disable => SslMode::Disable,
            PgSslMode::Prefer => SslMode::Prefer,
            PgSslMode::Require => SslMode::Require,
            PgSslMode::VerifyCa => SslMode::VerifyCa,
            PgSslMode::VerifyFull => SslMode::VerifyFull,
        },
        root_cert: pg.tls.sslrootcert.clone(),
    };
    s.parameters = pg.parameters.clone();
    s.log_file = Some(config.data_dir.join("postgres.log"));
    s.validate().context("invalid postgresql settings")?;
    Ok(s)
}

pub(crate) fn pooler_settings(
    pgb: &raftgres_config::PgBouncerSettings,
) -> anyhow::Result<raftgres_pooler::PoolerSettings> {
    let mut admin = raftgres_pooler::AdminTarget::new(
        pgb.listen.ip().to_string(),
        pgb.listen.port(),
        pgb.admin_user.clone(),
    );
    admin.password = pgb.admin_password.clone();
    let settings = raftgres_pooler::PoolerSettings {
        databases_file: pgb.databases_file.clone(),
        admin,
        write_db: pgb.write_db.clone(),
        read_db: pgb.read_db.clone(),
        dbname: pgb.dbname.clone(),
        pause_timeout: PAUSE_TIMEOUT,
    };
    settings.validate().context("invalid pgbouncer settings")?;
    Ok(settings)
}

/// How long a switchover waits for running transactions before it stops
/// the old primary anyway.
const PAUSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) fn member_record(config: &AgentConfig) -> Member {
    Member {
        api_url: Some(config.restapi.url()),
        pg_address: config
            .postgresql
            .as_ref()
            .map(|pg| pg.connect_address.clone()),
        role: if config.witness {
            MemberRole::Witness
        } else {
            MemberRole::Unknown
        },
        pg_state: if config.witness {
            PgState::Absent
        } else {
            PgState::Unknown
        },
        tags: config.tags.clone(),
        witness: config.witness,
        ..Member::new(
            config.name.clone(),
            config.node_id,
            config.raft.advertise.clone(),
        )
    }
}

/// Refuses a private key that group or others may read; `key` names the setting.
fn check_private(key: &str, path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {key} {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{key} {} may be read by others (mode {:o}): run `chmod 600` on it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// `restapi.allowlist` and `allowlist_include_members`.
pub(crate) fn api_allowlist(config: &AgentConfig) -> anyhow::Result<raftgres_api::Allowlist> {
    let nets = config
        .restapi
        .allowlist
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            entry
                .parse::<raftgres_api::IpNet>()
                .map_err(|reason| anyhow::anyhow!("restapi.allowlist[{i}]: {reason}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(raftgres_api::Allowlist {
        nets,
        include_members: config.restapi.allowlist_include_members,
    })
}

/// The REST API's TLS, when `restapi.certfile` is set.
pub(crate) fn api_tls(config: &AgentConfig) -> anyhow::Result<Option<raftgres_api::ServerTls>> {
    let Some(tls) = &config.restapi.tls else {
        return Ok(None);
    };
    check_private("restapi.keyfile", &tls.keyfile)?;
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {key} {}", path.display()))
    };
    let cert = read("restapi.certfile", &tls.certfile)?;
    let key = read("restapi.keyfile", &tls.keyfile)?;
    let ca = tls
        .cafile
        .as_deref()
        .map(|path| read("restapi.cafile", path))
        .transpose()?;
    let verify = match tls.verify_client {
        raftgres_config::VerifyClient::None => raftgres_api::VerifyClient::None,
        raftgres_config::VerifyClient::Optional => raftgres_api::VerifyClient::Optional,
        raftgres_config::VerifyClient::Required => raftgres_api::VerifyClient::Required,
    };
    Ok(Some(raftgres_api::ServerTls::from_pem(
        &cert,
        &key,
        ca.as_deref(),
        verify,
    )?))
}

/// The member's mutual-TLS files, when `raft.tls_*` names them. The key
/// must be readable by the agent's user only.
pub(crate) fn peer_tls(config: &AgentConfig) -> anyhow::Result<Option<PeerTls>> {
    let Some(tls) = &config.raft.tls else {
        return Ok(None);
    };
    check_private("raft.tls_key_file", &tls.key_file)?;
    Ok(Some(PeerTls::from_files(
        &tls.ca_file,
        &tls.cert_file,
        &tls.key_file,
    )?))
}
