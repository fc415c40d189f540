//! The settings file as written: which keys exist, their types and their
//! defaults, derived by serde. Unknown keys are refused (`deny_unknown_fields`),
//! a key written without a value is refused rather than defaulted, and a
//! default that depends on another key (`postgresql.data_dir` inside
//! `data_dir`, `connect_address` from `listen`) is applied by the rules that
//! turn this into [`crate::AgentConfig`]. The lab writes its members' files
//! from these types, so what it writes is what the agent reads.
//!
//! What each key means is documented on the typed settings in `model.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::{LogRotation, LogType, PgSslMode, VerifyClient};

pub(crate) const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 100;
pub(crate) const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 250;
pub(crate) const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 500;
pub(crate) const DEFAULT_SNAPSHOT_EVERY_LOGS: u64 = 1000;
pub(crate) const DEFAULT_RPC_TIMEOUT_MS: u64 = 1000;
pub(crate) const DEFAULT_RESTART_GRACE_MS: u64 = 2000;
pub(crate) const DEFAULT_CALLBACK_TIMEOUT_MS: u64 = 60_000;
pub(crate) const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
pub(crate) const DEFAULT_PGBOUNCER_ADMIN: &str = "pgbouncer_admin";
pub(crate) const DEFAULT_DBNAME: &str = "postgres";

/// The whole file. Field order is the order error messages list the keys in.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub scope: String,
    pub name: String,
    pub node_id: u64,
    pub data_dir: PathBuf,
    #[serde(default, skip_serializing_if = "is_default")]
    pub witness: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub tags: Tags,
    pub raft: Raft,
    /// Required unless `witness`, refused if it is: a rule, not the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<Postgres>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub restapi: RestApi,
    /// Absent and empty are one mistake, reported by the rules.
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub bootstrap: Bootstrap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer: Option<PgBouncer>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub log: Log,
}

impl Agent {
    /// The file's text: block YAML, keys sorted, with only the keys that
    /// differ from their defaults. Fails only on a path that is not UTF-8.
    pub fn to_yaml(&self) -> Result<String, serde_json::Error> {
        serde_json::to_value(self).map(|value| crate::yaml::emit(&value))
    }
}

/// Patroni's tags. The one section that takes keys of its own: any key
/// that is not a known tag is the operator's (`custom`), as in Patroni;
/// the rules refuse one spelled like a known tag.
#[derive(Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Tags {
    pub nofailover: bool,
    pub failover_priority: u32,
    pub nosync: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub noloadbalance: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub clonefrom: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicatefrom: Option<String>,
    /// Refused when true: it needs a `restore_command`, which the agent
    /// does not configure.
    #[serde(skip_serializing_if = "is_default")]
    pub nostream: bool,
    #[serde(flatten)]
    pub custom: BTreeMap<String, serde_json::Value>,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            nofailover: false,
            failover_priority: 1,
            nosync: false,
            noloadbalance: false,
            clonefrom: false,
            replicatefrom: None,
            nostream: false,
            custom: BTreeMap::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raft {
    pub listen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    #[serde(
        default = "number::<DEFAULT_HEARTBEAT_INTERVAL_MS>",
        skip_serializing_if = "is_number::<DEFAULT_HEARTBEAT_INTERVAL_MS>"
    )]
    pub heartbeat_interval_ms: u64,
    #[serde(
        default = "number::<DEFAULT_ELECTION_TIMEOUT_MIN_MS>",
        skip_serializing_if = "is_number::<DEFAULT_ELECTION_TIMEOUT_MIN_MS>"
    )]
    pub election_timeout_min_ms: u64,
    #[serde(
        default = "number::<DEFAULT_ELECTION_TIMEOUT_MAX_MS>",
        skip_serializing_if = "is_number::<DEFAULT_ELECTION_TIMEOUT_MAX_MS>"
    )]
    pub election_timeout_max_ms: u64,
    #[serde(
        default = "number::<DEFAULT_SNAPSHOT_EVERY_LOGS>",
        skip_serializing_if = "is_number::<DEFAULT_SNAPSHOT_EVERY_LOGS>"
    )]
    pub snapshot_every_logs: u64,
    #[serde(
        default = "number::<DEFAULT_RPC_TIMEOUT_MS>",
        skip_serializing_if = "is_number::<DEFAULT_RPC_TIMEOUT_MS>"
    )]
    pub rpc_timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

impl Raft {
    /// Every other key at its default.
    pub fn new(listen: String) -> Raft {
        Raft {
            listen,
            advertise: None,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            snapshot_every_logs: DEFAULT_SNAPSHOT_EVERY_LOGS,
            rpc_timeout_ms: DEFAULT_RPC_TIMEOUT_MS,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    pub listen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_address: Option<String>,
    #[serde(
        default = "default_bin_dir",
        skip_serializing_if = "is_default_bin_dir"
    )]
    pub bin_dir: PathBuf,
    /// Default `<data_dir>/pgdata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Default `<data_dir>/run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_dir: Option<PathBuf>,
    pub authentication: PgAuthentication,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pg_hba: Vec<String>,
    /// Default `<data_dir>/pgpass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgpass: Option<PathBuf>,
    #[serde(
        default = "number::<DEFAULT_RESTART_GRACE_MS>",
        skip_serializing_if = "is_number::<DEFAULT_RESTART_GRACE_MS>"
    )]
    pub restart_grace_ms: u64,
    /// Each value as PostgreSQL reads it; the file may also give a whole
    /// number or true/false, read as its digits or `on`/`off`.
    #[serde(
        default,
        deserialize_with = "parameter_texts",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub parameters: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub tls: PgTls,
    #[serde(default, skip_serializing_if = "is_default")]
    pub callbacks: Callbacks,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_stop: Option<String>,
    #[serde(
        default = "number::<DEFAULT_CALLBACK_TIMEOUT_MS>",
        skip_serializing_if = "is_number::<DEFAULT_CALLBACK_TIMEOUT_MS>"
    )]
    pub callback_timeout_ms: u64,
    /// Patroni's: the ways a replica is created, tried in order.
    #[serde(
        default = "default_replica_methods",
        skip_serializing_if = "is_default_replica_methods"
    )]
    pub create_replica_methods: Vec<String>,
    /// pg_basebackup's extra options: a list of flags and one-key
    /// sections, or one section of keys, as Patroni takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basebackup: Option<serde_json::Value>,
    /// The sections of the methods `create_replica_methods` names, by name:
    /// keys of `postgresql` named by another key's value, which serde
    /// cannot derive, so `read` takes them out of the section before the
    /// rest is read (and `deny_unknown_fields` stays for every other key).
    /// Written back as keys of `postgresql`.
    #[serde(flatten, skip_deserializing)]
    pub replica_method_sections: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl Postgres {
    /// Every other key at its default.
    pub fn new(listen: String, authentication: PgAuthentication) -> Postgres {
        Postgres {
            listen,
            connect_address: None,
            bin_dir: default_bin_dir(),
            data_dir: None,
            socket_dir: None,
            authentication,
            pg_hba: Vec::new(),
            pgpass: None,
            restart_grace_ms: DEFAULT_RESTART_GRACE_MS,
            parameters: BTreeMap::new(),
            tls: PgTls::default(),
            callbacks: Callbacks::default(),
            pre_promote: None,
            before_stop: None,
            callback_timeout_ms: DEFAULT_CALLBACK_TIMEOUT_MS,
            create_replica_methods: default_replica_methods(),
            basebackup: None,
            replica_method_sections: BTreeMap::new(),
        }
    }
}

/// `postgresql.callbacks`, Patroni's: a command line for each event.
#[derive(Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Callbacks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_restart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_reload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_role_change: Option<String>,
}

#[derive(Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PgTls {
    pub sslmode: PgSslMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgAuthentication {
    #[serde(default, skip_serializing_if = "is_default")]
    pub superuser: PgLogin,
    #[serde(default, skip_serializing_if = "is_default")]
    pub replication: PgLogin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewind: Option<PgLogin>,
}

/// The user name defaults by role (`postgres`, `replicator`, `rewind`);
/// the password is given here, in the environment, or in `password_file`.
#[derive(Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PgLogin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

#[derive(Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RestApi {
    /// Default 127.0.0.1:8008, applied by the rules so that a clash can say
    /// the address was never written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<BasicAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
    #[serde(skip_serializing_if = "is_default")]
    pub verify_client: VerifyClient,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowlist: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub allowlist_include_members: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub authenticate_reads: bool,
}

/// `restapi.authentication`.
#[derive(Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgBouncer {
    pub databases_file: PathBuf,
    pub listen: String,
    #[serde(default = "default_pgbouncer_admin")]
    pub admin_user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
    #[serde(default = "default_dbname")]
    pub dbname: String,
    /// Default `dbname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_db: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_db: Option<String>,
}

/// One entry of `members`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub raft_addr: String,
}

#[derive(Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Bootstrap {
    pub ttl_ms: u64,
    pub loop_wait_ms: u64,
    pub retry_timeout_ms: u64,
    pub lease_margin_ms: u64,
    pub maximum_lag_on_failover: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            ttl_ms: 3000,
            loop_wait_ms: 250,
            retry_timeout_ms: 1000,
            lease_margin_ms: 400,
            maximum_lag_on_failover: 1024 * 1024,
        }
    }
}

/// `log`, Patroni's keys (`type`, `level`, `loggers`, `dir`, `file_num`),
/// rotated by time (`rotation`) where Patroni rotates by size.
#[derive(Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    #[serde(rename = "type", skip_serializing_if = "is_default")]
    pub kind: LogType,
    #[serde(skip_serializing_if = "is_default_level")]
    pub level: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub loggers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "is_default_file_num")]
    pub file_num: u32,
    #[serde(skip_serializing_if = "is_default")]
    pub rotation: LogRotation,
}

const DEFAULT_LOG_LEVEL: &str = "INFO";
const DEFAULT_LOG_FILE_NUM: u32 = 4;

impl Default for Log {
    fn default() -> Self {
        Log {
            kind: LogType::default(),
            level: DEFAULT_LOG_LEVEL.to_owned(),
            loggers: BTreeMap::new(),
            dir: None,
            file_num: DEFAULT_LOG_FILE_NUM,
            rotation: LogRotation::default(),
        }
    }
}

fn is_default_level(level: &str) -> bool {
    level == DEFAULT_LOG_LEVEL
}

fn is_default_file_num(n: &u32) -> bool {
    *n == DEFAULT_LOG_FILE_NUM
}

fn number<const N: u64>() -> u64 {
    N
}

fn is_number<const N: u64>(value: &u64) -> bool {
    *value == N
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

pub(crate) const BASEBACKUP_METHOD: &str = "basebackup";

fn default_replica_methods() -> Vec<String> {
    vec![BASEBACKUP_METHOD.to_owned()]
}

fn is_default_replica_methods(methods: &Vec<String>) -> bool {
    *methods == default_replica_methods()
}

fn default_bin_dir() -> PathBuf {
    PathBuf::from(DEFAULT_BIN_DIR)
}

fn is_default_bin_dir(dir: &std::path::Path) -> bool {
    dir.as_os_str() == DEFAULT_BIN_DIR
}

fn default_pgbouncer_admin() -> String {
    DEFAULT_PGBOUNCER_ADMIN.to_owned()
}

fn default_dbname() -> String {
    DEFAULT_DBNAME.to_owned()
}

/// `postgresql.parameters`, each value turned into the text PostgreSQL
/// reads.
fn parameter_texts<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let texts: BTreeMap<String, ParameterText> = BTreeMap::deserialize(deserializer)?;
    Ok(texts
        .into_iter()
        .map(|(name, text)| (name, text.0))
        .collect())
}

/// A PostgreSQL parameter value: text, a whole number (its digits) or a
/// switch (`on`/`off`).
struct ParameterText(String);

impl<'de> Deserialize<'de> for ParameterText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ParameterVisitor)
    }
}

struct ParameterVisitor;

impl ParameterVisitor {
    fn text<E: de::Error>(text: String) -> Result<ParameterText, E> {
        // A line break would end the line in postgresql.conf and let the
        // rest set any parameter, including the ones the agent owns.
        if text.chars().any(char::is_control) {
            return Err(E::custom(format!(
                "must not contain line breaks or other control characters, got {text:?}"
            )));
        }
        Ok(ParameterText(text))
    }
}

impl Visitor<'_> for ParameterVisitor {
    type Value = ParameterText;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("text, a whole number, or true or false")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ParameterText, E> {
        Self::text(text.to_owned())
    }

    fn visit_bool<E: de::Error>(self, on: bool) -> Result<ParameterText, E> {
        Ok(ParameterText(if on { "on" } else { "off" }.to_owned()))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<ParameterText, E> {
        Ok(ParameterText(n.to_string()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<ParameterText, E> {
        Ok(ParameterText(n.to_string()))
    }

    // A float has already lost its spelling (`1.10` reads as 1.1).
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<ParameterText, E> {
        Err(E::custom(format!(
            "expected text, a whole number, or true or false, got {f}; put the value in \
             quotes to pass it as written"
        )))
    }

    fn visit_unit<E: de::Error>(self) -> Result<ParameterText, E> {
        Err(E::custom(
            "is empty: give it a value, or delete the line to leave the parameter to PostgreSQL",
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file that writes every key, each away from its default; a field
    /// added to the schema must be added here to compile.
    pub(crate) fn every_key() -> Agent {
        let login = |user: &str| PgLogin {
            username: Some(user.into()),
            password: Some(format!("{user}-secret")),
            password_file: None,
        };
        Agent {
            scope: "demo".into(),
            name: "node1".into(),
            node_id: 1,
            data_dir: "/var/lib/raftgres/node1".into(),
            witness: false,
            tags: Tags {
                nofailover: true,
                failover_priority: 7,
                nosync: true,
                noloadbalance: true,
                clonefrom: true,
                replicatefrom: Some("node2".into()),
                nostream: false,
                custom: [
                    ("zone".to_owned(), serde_json::json!("eu-1a")),
                    ("rack".to_owned(), serde_json::json!(4)),
                ]
                .into(),
            },
            raft: Raft {
                listen: "0.0.0.0:7101".into(),
                advertise: Some("node1.example:7101".into()),
                heartbeat_interval_ms: 90,
                election_timeout_min_ms: 200,
                election_timeout_max_ms: 400,
                snapshot_every_logs: 50,
                rpc_timeout_ms: 900,
                tls_ca_file: Some("/etc/raftgres/ca.pem".into()),
                tls_cert_file: Some("/etc/raftgres/node1.pem".into()),
                tls_key_file: Some("/etc/raftgres/node1.key".into()),
            },
            postgresql: Some(Postgres {
                listen: "127.0.0.1:5433".into(),
                connect_address: Some("node1.example:5433".into()),
                bin_dir: "/usr/lib/postgresql/16/bin".into(),
                data_dir: Some("/srv/pgdata".into()),
                socket_dir: Some("/run/raftgres".into()),
                authentication: PgAuthentication {
                    superuser: login("admin"),
                    replication: login("streamer"),
                    rewind: Some(PgLogin {
                        password: None,
                        password_file: Some("/etc/raftgres/rewind.pw".into()),
                        ..login("rewinder")
                    }),
                },
                pg_hba: vec!["hostssl all app 10.0.0.0/8 scram-sha-256".into()],
                pgpass: Some("/run/raftgres/pgpass".into()),
                restart_grace_ms: 5000,
                parameters: [
                    ("ssl", "on"),
                    ("work_mem", "4MB"),
                    ("max_connections", "200"),
                ]
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .into(),
                tls: PgTls {
                    sslmode: PgSslMode::VerifyFull,
                    sslrootcert: Some("/etc/raftgres/ca.pem".into()),
                },
                callbacks: Callbacks {
                    on_start: Some("/usr/local/bin/cb start".into()),
                    on_stop: Some("/usr/local/bin/cb stop".into()),
                    on_restart: Some("/usr/local/bin/cb restart".into()),
                    on_reload: Some("/usr/local/bin/cb reload".into()),
                    on_role_change: Some("/usr/local/bin/vip 'eth0:1'".into()),
                },
                pre_promote: Some("/usr/local/bin/fence-old-primary".into()),
                before_stop: Some("/usr/local/bin/drain".into()),
                callback_timeout_ms: 5000,
                create_replica_methods: vec!["wal_g".into(), "basebackup".into()],
                basebackup: Some(serde_json::json!([{"max-rate": "100M"}, "verbose"])),
                replica_method_sections: [(
                    "wal_g".to_owned(),
                    [
                        ("command", "/usr/local/bin/wal-g-restore"),
                        ("envdir", "/etc/wal-g"),
                    ]
                    .map(|(k, v)| (k.to_owned(), serde_json::json!(v)))
                    .into(),
                )]
                .into(),
            }),
            restapi: RestApi {
                listen: Some("0.0.0.0:8009".into()),
                connect_address: Some("node1.example:8009".into()),
                authentication: Some(BasicAuth {
                    username: "admin".into(),
                    password: "007".into(),
                }),
                certfile: Some("/etc/raftgres/api.pem".into()),
                keyfile: Some("/etc/raftgres/api.key".into()),
                cafile: Some("/etc/raftgres/clients.pem".into()),
                verify_client: VerifyClient::Required,
                allowlist: vec!["10.0.0.0/24".into()],
                allowlist_include_members: true,
                authenticate_reads: true,
            },
            members: vec![Member {
                id: 1,
                name: "node1".into(),
                raft_addr: "node1.example:7101".into(),
            }],
            bootstrap: Bootstrap {
                ttl_ms: 4500,
                loop_wait_ms: 500,
                retry_timeout_ms: 800,
                lease_margin_ms: 600,
                maximum_lag_on_failover: 42,
            },
            log: Log {
                kind: LogType::Json,
                level: "DEBUG".into(),
                loggers: [("openraft".to_owned(), "INFO".to_owned())].into(),
                dir: Some("/var/log/raftgres".into()),
                file_num: 9,
                rotation: LogRotation::Hourly,
            },
            pgbouncer: Some(PgBouncer {
                databases_file: "/etc/pgbouncer/raftgres.ini".into(),
                listen: "127.0.0.1:6432".into(),
                admin_user: "console".into(),
                admin_password: Some("true".into()),
                dbname: "app".into(),
                write_db: Some("app_rw".into()),
                read_db: Some("app_ro".into()),
            }),
        }
    }

    /// `text` as the loader's tree, without an environment.
    pub(crate) fn tree(text: &str) -> config::Map<String, config::Value> {
        use config::Source;
        config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Yaml))
            .build()
            .and_then(|merged| merged.collect())
            .expect("YAML")
    }

    fn reread(text: &str) -> Agent {
        let ctx = crate::read::Ctx::new("written.yml".into(), Default::default());
        crate::read::agent(&ctx, tree(text)).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn what_the_schema_writes_reads_back_the_same() {
        let written = every_key();
        let text = written.to_yaml().expect("UTF-8 paths");
        let json = |agent: &Agent| serde_json::to_value(agent).expect("serialisable");
        assert_eq!(json(&reread(&text)), json(&written), "{text}");
    }

    #[test]
    fn defaults_are_left_out_of_what_is_written() {
        let mut minimal = every_key();
        minimal.tags = Tags::default();
        minimal.raft = Raft::new("127.0.0.1:7101".into());
        minimal.restapi = RestApi::default();
        minimal.bootstrap = Bootstrap::default();
        minimal.postgresql = None;
        minimal.pgbouncer = None;
        minimal.log = Log::default();
        let text = minimal.to_yaml().expect("UTF-8 paths");
        assert_eq!(
            text,
            "data_dir: /var/lib/raftgres/node1\nmembers:\n  - id: 1\n    name: node1\n    \
             raft_addr: \"node1.example:7101\"\nname: node1\nnode_id: 1\nraft:\n  \
             listen: \"127.0.0.1:7101\"\nscope: demo\n"
        );
        let pg = Postgres::new(
            "127.0.0.1:5432".into(),
            PgAuthentication {
                superuser: PgLogin::default(),
                replication: PgLogin::default(),
                rewind: None,
            },
        );
        let pg = serde_json::to_value(pg).expect("serialisable");
        assert_eq!(
            pg,
            serde_json::json!({"listen": "127.0.0.1:5432", "authentication": {}})
        );
    }
}
