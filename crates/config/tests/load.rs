use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftgres_config::{
    AgentConfig, ApiCredentials, BootstrapSettings, Callbacks, ConfigError, InitialMember,
    LogRotation, LogSettings, LogType, PgAuthentication, PgLogin, PgSslMode, PgTls,
    PostgresSettings, RaftSettings, RaftTls, RestApiSettings, RestApiTls, Tags, VerifyClient, load,
    load_with_env,
};
use raftgres_state::LeaseTiming;
use tempfile::TempDir;

mod common;
use common::MINIMAL;

const FULL: &str = "\
scope: demo
name: node1
node_id: 1
data_dir: /var/lib/raftgres/node1
witness: false
tags:
  nofailover: true
  failover_priority: 7
  noloadbalance: true
  replicatefrom: node2
  zone: eu-1a
  rack: 4
raft:
  listen: 0.0.0.0:7101
  advertise: node1.example:7101
  heartbeat_interval_ms: 100
  election_timeout_min_ms: 500
  election_timeout_max_ms: 800
  snapshot_every_logs: 10
  rpc_timeout_ms: 300
  tls_ca_file: /etc/raftgres/ca.pem
  tls_cert_file: /etc/raftgres/node1.pem
  tls_key_file: /etc/raftgres/node1.key
postgresql:
  listen: 0.0.0.0:5433
  connect_address: node1.example:5433
  bin_dir: /usr/lib/postgresql/16/bin
  data_dir: /srv/pgdata/node1
  socket_dir: /tmp/raftgres-node1
  authentication:
    superuser:
      username: admin
      password: 'su: secret'
    replication:
      username: replicator
      password: repl-secret
    rewind:
      username: rewinder
      password: rewind-secret
  pg_hba:
    - hostssl all app 10.0.0.0/8 scram-sha-256
  pgpass: /run/raftgres/node1.pgpass
  restart_grace_ms: 5000
  parameters:
    shared_buffers: 128MB
    max_connections: 200
    fsync: false
    log_min_duration_statement: -1
    auto_explain.log_min_duration: '250'
  callbacks:
    on_start: sh -c 'exit 0'
    on_role_change: /bin/sh '/etc/raftgres/vip up.sh'
  pre_promote: /bin/sh -c 'exit 0'
  before_stop: /bin/true
  callback_timeout_ms: 5000
restapi:
  listen: 0.0.0.0:8009
  connect_address: node1.example:8009
  authentication:
    username: admin
    password: 'pass: word'
  certfile: /etc/raftgres/api.pem
  keyfile: /etc/raftgres/api.key
  cafile: /etc/raftgres/clients-ca.pem
  verify_client: required
  allowlist: [10.0.0.0/24, 192.0.2.7]
  allowlist_include_members: true
  authenticate_reads: true
members:
  - id: 1
    name: node1
    raft_addr: node1.example:7101
  - id: 2
    name: node2
    raft_addr: 127.0.0.1:7102
  - id: 3
    name: node3
    raft_addr: '[::1]:7103'
bootstrap:
  ttl_ms: 4500
  loop_wait_ms: 500
  retry_timeout_ms: 800
  lease_margin_ms: 600
  maximum_lag_on_failover: 42
";

/// The `postgresql` section of MINIMAL.
const MINIMAL_POSTGRESQL: &str = "postgresql:\n  listen: 127.0.0.1:5432\n  authentication: {superuser: {password: su-secret}, replication: {password: repl-secret}}\n";

/// MINIMAL without its `postgresql` section, as a witness must be.
fn minimal_witness() -> String {
    edit(MINIMAL, MINIMAL_POSTGRESQL, "witness: true\n")
}

struct SettingsFile {
    _dir: TempDir,
    path: PathBuf,
}

fn write_bytes(contents: &[u8]) -> SettingsFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raftgres.yml");
    std::fs::write(&path, contents).expect("write settings");
    // Private, as a file holding a secret must be.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    SettingsFile { _dir: dir, path }
}

fn load_env(yaml: &str, env: &[(&str, &str)]) -> (SettingsFile, Result<AgentConfig, ConfigError>) {
    let file = write_bytes(yaml.as_bytes());
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let result = load_with_env(&file.path, env);
    (file, result)
}

fn load_env_ok(yaml: &str, env: &[(&str, &str)]) -> AgentConfig {
    let (_file, result) = load_env(yaml, env);
    result.unwrap_or_else(|e| panic!("expected the settings to load, got: {e}"))
}

fn load_yaml(yaml: &str) -> AgentConfig {
    load_env_ok(yaml, &[])
}

/// A `restapi` section with only its addresses set.
fn plain_restapi(listen: &str, connect_address: &str) -> RestApiSettings {
    RestApiSettings {
        listen: listen.parse::<SocketAddr>().unwrap(),
        connect_address: connect_address.into(),
        authentication: None,
        tls: None,
        allowlist: Vec::new(),
        allowlist_include_members: false,
        authenticate_reads: false,
    }
}

fn error_env(yaml: &str, env: &[(&str, &str)]) -> (PathBuf, ConfigError) {
    let (file, result) = load_env(yaml, env);
    match result {
        Ok(config) => panic!("expected an error, loaded {config:?}"),
        Err(e) => (file.path.clone(), e),
    }
}

/// The message of loading `yaml` with `env`, which must fail.
fn env_error(yaml: &str, env: &[(&str, &str)]) -> String {
    error_env(yaml, env).1.to_string()
}

fn error(yaml: &str) -> String {
    error_env(yaml, &[]).1.to_string()
}

/// Replaces text that must be present, so a stale fixture fails loudly
/// instead of testing the unchanged file.
fn edit(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "fixture does not contain {from:?}");
    base.replacen(from, to, 1)
}

/// `message` contains every one of `parts`.
#[track_caller]
fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

/// The credentials `restapi.authentication` holds.
fn credentials(username: &str, password: &str) -> Option<ApiCredentials> {
    Some(ApiCredentials {
        username: username.into(),
        password: password.into(),
    })
}

/// Loading `yaml` fails with a message that names ``key `<key>` `` and
/// contains `detail` (`""` for the key alone); `what` says which case.
#[track_caller]
fn assert_refused(what: &str, yaml: &str, key: &str, detail: &str) {
    let message = error(yaml);
    assert!(
        message.contains(&format!("key `{key}`")) && message.contains(detail),
        "{what}: {message:?} does not name `{key}` with {detail:?}"
    );
}

#[test]
fn full_file_loads_every_value() {
    let config = load_yaml(FULL);
    assert_eq!(
        config,
        AgentConfig {
            scope: "demo".into(),
            name: "node1".into(),
            node_id: 1,
            data_dir: PathBuf::from("/var/lib/raftgres/node1"),
            witness: false,
            tags: Tags {
                nofailover: true,
                failover_priority: 7,
                noloadbalance: true,
                replicatefrom: Some("node2".into()),
                custom: [("rack", "4"), ("zone", "eu-1a")]
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into(),
                ..Tags::default()
            },
            raft: RaftSettings {
                listen: "0.0.0.0:7101".parse::<SocketAddr>().unwrap(),
                advertise: "node1.example:7101".into(),
                heartbeat_interval: Duration::from_millis(100),
                election_timeout_min: Duration::from_millis(500),
                election_timeout_max: Duration::from_millis(800),
                snapshot_every_logs: 10,
                rpc_timeout: Duration::from_millis(300),
                tls: Some(RaftTls {
                    ca_file: PathBuf::from("/etc/raftgres/ca.pem"),
                    cert_file: PathBuf::from("/etc/raftgres/node1.pem"),
                    key_file: PathBuf::from("/etc/raftgres/node1.key"),
                }),
            },
            postgresql: Some(PostgresSettings {
                listen: "0.0.0.0:5433".parse::<SocketAddr>().unwrap(),
                connect_address: "node1.example:5433".into(),
                bin_dir: PathBuf::from("/usr/lib/postgresql/16/bin"),
                data_dir: PathBuf::from("/srv/pgdata/node1"),
                socket_dir: PathBuf::from("/tmp/raftgres-node1"),
                authentication: PgAuthentication {
                    superuser: login("admin", "su: secret"),
                    replication: login("replicator", "repl-secret"),
                    rewind: Some(login("rewinder", "rewind-secret")),
                },
                pg_hba: vec!["hostssl all app 10.0.0.0/8 scram-sha-256".into()],
                pgpass: PathBuf::from("/run/raftgres/node1.pgpass"),
                restart_grace: Duration::from_millis(5000),
                parameters: BTreeMap::from([
                    ("auto_explain.log_min_duration".into(), "250".into()),
                    ("fsync".into(), "off".into()),
                    ("log_min_duration_statement".into(), "-1".into()),
                    ("max_connections".into(), "200".into()),
                    ("shared_buffers".into(), "128MB".into()),
                ]),
                tls: PgTls {
                    sslmode: PgSslMode::Prefer,
                    sslrootcert: None,
                },
                callbacks: Callbacks {
                    on_start: Some(words(&["sh", "-c", "exit 0"])),
                    on_role_change: Some(words(&["/bin/sh", "/etc/raftgres/vip up.sh"])),
                    ..Callbacks::default()
                },
                pre_promote: Some(words(&["/bin/sh", "-c", "exit 0"])),
                before_stop: Some(words(&["/bin/true"])),
                callback_timeout: Duration::from_millis(5000),
                create_replica_methods: vec![raftgres_config::ReplicaMethod::Basebackup {
                    options: vec![]
                }],
            }),
            restapi: RestApiSettings {
                listen: "0.0.0.0:8009".parse::<SocketAddr>().unwrap(),
                connect_address: "node1.example:8009".into(),
                authentication: credentials("admin", "pass: word"),
                tls: Some(RestApiTls {
                    certfile: PathBuf::from("/etc/raftgres/api.pem"),
                    keyfile: PathBuf::from("/etc/raftgres/api.key"),
                    cafile: Some(PathBuf::from("/etc/raftgres/clients-ca.pem")),
                    verify_client: VerifyClient::Required,
                }),
                allowlist: vec!["10.0.0.0/24".into(), "192.0.2.7".into()],
                allowlist_include_members: true,
                authenticate_reads: true,
            },
            pgbouncer: None,
            members: vec![
                InitialMember {
                    id: 1,
                    name: "node1".into(),
                    raft_addr: "node1.example:7101".into(),
                },
                InitialMember {
                    id: 2,
                    name: "node2".into(),
                    raft_addr: "127.0.0.1:7102".into(),
                },
                InitialMember {
                    id: 3,
                    name: "node3".into(),
                    raft_addr: "[::1]:7103".into(),
                },
            ],
            bootstrap: BootstrapSettings {
                timing: LeaseTiming::from_millis(4500, 500, 600),
                retry_timeout: Duration::from_millis(800),
                maximum_lag_on_failover: 42,
            },
            log: LogSettings {
                kind: LogType::Plain,
                filter: "info,openraft=warn".into(),
                dir: None,
                file_num: 4,
                rotation: LogRotation::Daily,
            },
        }
    );
}

#[test]
fn minimal_file_gets_documented_defaults() {
    let config = load_yaml(MINIMAL);
    assert!(!config.witness);
    assert_eq!(
        config.tags,
        Tags {
            failover_priority: 1,
            ..Tags::default()
        }
    );
    assert_eq!(
        config.raft,
        RaftSettings {
            listen: "127.0.0.1:7101".parse::<SocketAddr>().unwrap(),
            advertise: "127.0.0.1:7101".into(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(250),
            election_timeout_max: Duration::from_millis(500),
            snapshot_every_logs: 1000,
            rpc_timeout: Duration::from_millis(1000),
            tls: None,
        }
    );
    // Inside the default renewal budget, 3000 - 400 - 250 = 2350 ms.
    assert_eq!(config.raft.worst_election(), Duration::from_millis(2250));
    assert_eq!(
        config.bootstrap,
        BootstrapSettings {
            timing: LeaseTiming::from_millis(3000, 250, 400),
            retry_timeout: Duration::from_millis(1000),
            maximum_lag_on_failover: 1024 * 1024,
        }
    );
    assert_eq!(
        config.postgresql,
        Some(PostgresSettings {
            listen: "127.0.0.1:5432".parse::<SocketAddr>().unwrap(),
            connect_address: "127.0.0.1:5432".into(),
            bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            data_dir: PathBuf::from("/var/lib/raftgres/node1/pgdata"),
            socket_dir: PathBuf::from("/var/lib/raftgres/node1/run"),
            authentication: PgAuthentication {
                superuser: login("postgres", "su-secret"),
                replication: login("replicator", "repl-secret"),
                rewind: None,
            },
            pg_hba: Vec::new(),
            pgpass: PathBuf::from("/var/lib/raftgres/node1/pgpass"),
            restart_grace: Duration::from_millis(2000),
            parameters: BTreeMap::new(),
            tls: PgTls {
                sslmode: PgSslMode::Prefer,
                sslrootcert: None,
            },
            callbacks: Callbacks::default(),
            pre_promote: None,
            before_stop: None,
            callback_timeout: Duration::from_millis(60_000),
            create_replica_methods: vec![raftgres_config::ReplicaMethod::Basebackup {
                options: vec![]
            }],
        })
    );
    assert_eq!(
        config.restapi,
        plain_restapi("127.0.0.1:8008", "127.0.0.1:8008")
    );
    assert_eq!(config.restapi.url(), "http://127.0.0.1:8008");
}

#[test]
fn empty_optional_sections_get_defaults() {
    let config = load_yaml(&format!(
        "{MINIMAL}tags: {{}}\nbootstrap: {{}}\nrestapi: {{}}\n"
    ));
    assert_eq!(config.tags.failover_priority, 1);
    assert_eq!(config.bootstrap.timing.ttl, Duration::from_millis(3000));
    assert_eq!(config.restapi, load_yaml(MINIMAL).restapi);
}

#[test]
fn ipv6_listen_defaults_advertise_to_the_bracketed_form() {
    let yaml = edit(MINIMAL, "listen: 127.0.0.1:7101", "listen: '[::1]:7101'");
    assert_eq!(load_yaml(&yaml).raft.advertise, "[::1]:7101");
}

#[test]
fn witness_may_leave_nofailover_false() {
    let config = load_yaml(&format!(
        "{}tags:\n  nofailover: false\n",
        minimal_witness()
    ));
    assert!(config.witness);
    assert!(!config.tags.nofailover);
}

#[test]
fn witness_has_no_postgresql_settings() {
    let config = load_yaml(&minimal_witness());
    assert!(config.witness);
    assert_eq!(config.postgresql, None);
}

#[test]
fn witness_with_a_postgresql_section_is_rejected() {
    let exact = |yaml: &str, env: &[(&str, &str)], suffix: &str| {
        let (path, e) = error_env(yaml, env);
        assert_eq!(
            e.to_string(),
            format!(
                "invalid settings in {}: key `postgresql`{suffix}: a witness runs no Postgres; \
                 remove this section",
                path.display()
            )
        );
    };
    exact(&format!("{MINIMAL}witness: true\n"), &[], "");
    // Even an empty section is a sign the file was meant for another member.
    exact(&format!("{}postgresql:\n", minimal_witness()), &[], "");
    exact(MINIMAL, &[("RAFTGRES_WITNESS", "true")], "");
    exact(
        &minimal_witness(),
        &[("RAFTGRES_POSTGRESQL__LISTEN", "127.0.0.1:5432")],
        " (set by environment variable RAFTGRES_POSTGRESQL__LISTEN)",
    );
}

#[test]
fn member_without_a_postgresql_section_is_told_to_add_one() {
    let yamls = [
        edit(MINIMAL, MINIMAL_POSTGRESQL, ""),
        edit(MINIMAL, MINIMAL_POSTGRESQL, "witness: false\n"),
    ];
    for yaml in &yamls {
        let message = error(yaml);
        assert_mentions(
            &message,
            &[
                "key `postgresql`: is missing",
                "`postgresql:` section with at least `listen`",
            ],
        );
    }
    let message = env_error(&minimal_witness(), &[("RAFTGRES_WITNESS", "false")]);
    assert_mentions(&message, &["key `postgresql`: is missing"]);

    let message = error(&edit(MINIMAL, MINIMAL_POSTGRESQL, "postgresql:\n"));
    assert_mentions(&message, &["key `postgresql`: is empty", "`listen`"]);
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

fn login(username: &str, password: &str) -> PgLogin {
    PgLogin {
        username: username.into(),
        password: password.into(),
        password_file: None,
    }
}

#[test]
fn a_password_comes_from_the_file_the_environment_or_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("superuser.pw");
    std::fs::write(&pw, "from a file\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let yaml = edit(
        MINIMAL,
        "superuser: {password: su-secret}",
        &format!("superuser: {{password_file: {}}}", pw.display()),
    );
    let auth = load_yaml(&yaml).postgresql.unwrap().authentication;
    assert_eq!(auth.superuser.password, "from a file");
    assert_eq!(auth.superuser.password_file.as_deref(), Some(pw.as_path()));
    assert!(!format!("{auth:?}").contains("from a file"));

    // Others may read it: refused, naming the file and its mode.
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let message = error(&yaml);
    assert!(
        message.contains("postgresql.authentication.superuser.password_file")
            && message.contains(&pw.display().to_string())
            && message.contains("644")
            && !message.contains("from a file"),
        "{message}"
    );

    let (_file, result) = load_env(
        MINIMAL,
        &[(
            "RAFTGRES_POSTGRESQL__AUTHENTICATION__REPLICATION__PASSWORD",
            "from the environment",
        )],
    );
    let auth = result.unwrap().postgresql.unwrap().authentication;
    assert_eq!(auth.replication.password, "from the environment");
}

#[test]
fn every_login_needs_a_password_and_one_role_has_one() {
    #[rustfmt::skip]
    let cases = [
        (edit(MINIMAL, "superuser: {password: su-secret}", "superuser: {}"), "postgresql.authentication.superuser.password", "RAFTGRES_POSTGRESQL__AUTHENTICATION__SUPERUSER__PASSWORD"),
        (edit(MINIMAL, "{password: repl-secret}", "{password: ''}"), "postgresql.authentication.replication.password", "is empty"),
        (edit(MINIMAL, "{password: repl-secret}", "{password: x, password_file: /etc/x}"), "postgresql.authentication.replication.password_file", "keep one"),
        (edit(MINIMAL, "{password: repl-secret}", "{username: postgres, password: other}"), "postgresql.authentication.replication.password", "a role has one password"),
        (edit(MINIMAL, MINIMAL_POSTGRESQL, "postgresql:\n  listen: 127.0.0.1:5432\n"), "postgresql.authentication", "no login over TCP without a password"),
        (edit(MINIMAL, "superuser: {password", "superuser: {username: Admin, password"), "postgresql.authentication.superuser.username", ""),
    ];
    for (yaml, key, hint) in cases {
        let message = error(&yaml);
        assert!(
            message.contains(key) && message.contains(hint) && !message.contains("su-secret"),
            "{key}: {message}"
        );
    }
}

#[test]
fn pg_hba_never_trusts_over_tcp() {
    let message = error(&with_postgresql(
        "  pg_hba:\n    - local all all peer\n    - host all all 0.0.0.0/0 trust\n",
    ));
    assert_mentions(
        &message,
        &["postgresql.pg_hba[1]", "trusts logins over TCP"],
    );
    let config = load_yaml(&with_postgresql("  pg_hba:\n    - local all all trust\n"));
    assert_eq!(
        config.postgresql.unwrap().pg_hba,
        vec!["local all all trust"]
    );
}

#[test]
fn postgres_tls_takes_libpq_modes_and_needs_the_servers_tls_to_require_it() {
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "").unwrap();
    let ssl = "  parameters: {ssl: on, ssl_cert_file: /etc/pg.pem, ssl_key_file: /etc/pg.key}\n";
    let yaml = with_postgresql(&format!(
        "{ssl}  tls: {{sslmode: verify-full, sslrootcert: {}}}\n",
        ca.display()
    ));
    assert_eq!(
        load_yaml(&yaml).postgresql.unwrap().tls,
        PgTls {
            sslmode: PgSslMode::VerifyFull,
            sslrootcert: Some(ca.clone()),
        }
    );
    let yaml = with_postgresql("  tls: {sslmode: disable}\n");
    assert_eq!(
        load_yaml(&yaml).postgresql.unwrap().tls.sslmode,
        PgSslMode::Disable
    );
    let missing = dir.path().join("missing.pem");
    #[rustfmt::skip]
    let cases = [
        ("  tls: {sslmode: allow}\n".to_owned(), "postgresql.tls.sslmode", "protects nothing"),
        ("  tls: {sslmode: Require}\n".to_owned(), "postgresql.tls.sslmode", "verify-full"),
        ("  tls: {sslmode: require}\n".to_owned(), "postgresql.tls.sslmode", "ssl: on"),
        (format!("{ssl}  tls: {{sslmode: verify-ca}}\n"), "postgresql.tls.sslrootcert", "is missing"),
        (format!("{ssl}  tls: {{sslmode: verify-ca, sslrootcert: ca.pem}}\n"), "postgresql.tls.sslrootcert", "absolute"),
        (format!("{ssl}  tls: {{sslmode: verify-ca, sslrootcert: {}}}\n", missing.display()), "postgresql.tls.sslrootcert", "not a readable file"),
        (format!("{ssl}  tls: {{sslmode: require, sslrootcert: {}}}\n", ca.display()), "postgresql.tls.sslrootcert", "does not check"),
        ("  tls: {sslmode: prefer, sslcert: /x}\n".to_owned(), "sslcert", ""),
    ];
    for (lines, key, hint) in cases {
        let message = error(&with_postgresql(&lines));
        assert!(
            message.contains(key) && message.contains(hint),
            "{lines}: {message}"
        );
    }
}

#[test]
fn postgresql_connect_address_defaults_to_listen() {
    let yaml = edit(
        MINIMAL,
        "listen: 127.0.0.1:5432",
        "listen: '[fe80::1]:5432'",
    );
    let postgresql = load_yaml(&yaml).postgresql.unwrap();
    assert_eq!(postgresql.connect_address, "[fe80::1]:5432");

    // Another IP may reuse the Raft port.
    let yaml = edit(MINIMAL, "listen: 127.0.0.1:5432", "listen: 127.0.0.2:7101");
    let postgresql = load_yaml(&yaml).postgresql.unwrap();
    assert_eq!(postgresql.connect_address, "127.0.0.2:7101");
}

#[test]
fn postgresql_parameter_values_are_rendered_as_text() {
    let yaml = edit(
        MINIMAL,
        MINIMAL_POSTGRESQL,
        &format!(
            "{MINIMAL_POSTGRESQL}  parameters:
    text: 64MB
    quoted_number: '007'
    quoted_on: 'on'
    empty_text: ''
    integer: 42
    negative: -1
    large: 9223372036854775807
    enabled: true
    disabled: false
    _private: x
    custom.setting_2: y
"
        ),
    );
    let parameters = load_yaml(&yaml).postgresql.unwrap().parameters;
    let expected: BTreeMap<String, String> = [
        ("text", "64MB"),
        ("quoted_number", "007"),
        ("quoted_on", "on"),
        ("empty_text", ""),
        ("integer", "42"),
        ("negative", "-1"),
        ("large", "9223372036854775807"),
        ("enabled", "on"),
        ("disabled", "off"),
        ("_private", "x"),
        ("custom.setting_2", "y"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(parameters, expected);

    let yaml = edit(
        MINIMAL,
        MINIMAL_POSTGRESQL,
        &format!("{MINIMAL_POSTGRESQL}  parameters: {{}}\n"),
    );
    assert!(load_yaml(&yaml).postgresql.unwrap().parameters.is_empty());
}

#[test]
fn parameters_the_agent_manages_are_rejected() {
    for name in raftgres_state::AGENT_MANAGED_PARAMETERS {
        let yaml = edit(
            MINIMAL,
            MINIMAL_POSTGRESQL,
            &format!("{MINIMAL_POSTGRESQL}  parameters:\n    work_mem: 4MB\n    {name}: x\n"),
        );
        let message = error(&yaml);
        assert!(
            message.contains(&format!("key `postgresql.parameters.{name}`"))
                && message.contains("the agent owns"),
            "{name}: {message:?}"
        );
    }
}

#[test]
fn environment_overrides_postgresql_keys() {
    let postgresql = load_env_ok(
        MINIMAL,
        &[
            ("RAFTGRES_POSTGRESQL__LISTEN", "10.0.0.5:6543"),
            (
                "RAFTGRES_POSTGRESQL__AUTHENTICATION__SUPERUSER__USERNAME",
                "admin",
            ),
            ("RAFTGRES_POSTGRESQL__RESTART_GRACE_MS", "750"),
            ("RAFTGRES_POSTGRESQL__SOCKET_DIR", "/run/pg"),
        ],
    )
    .postgresql
    .unwrap();
    assert_eq!(
        postgresql.listen,
        "10.0.0.5:6543".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(postgresql.connect_address, "10.0.0.5:6543");
    assert_eq!(postgresql.authentication.superuser.username, "admin");
    assert_eq!(postgresql.restart_grace, Duration::from_millis(750));
    assert_eq!(postgresql.socket_dir, PathBuf::from("/run/pg"));

    // The variable alone can supply the section.
    let postgresql = load_env_ok(
        &edit(MINIMAL, MINIMAL_POSTGRESQL, ""),
        &[
            ("RAFTGRES_POSTGRESQL__LISTEN", "127.0.0.1:5433"),
            (
                "RAFTGRES_POSTGRESQL__AUTHENTICATION__SUPERUSER__PASSWORD",
                "su",
            ),
            (
                "RAFTGRES_POSTGRESQL__AUTHENTICATION__REPLICATION__PASSWORD",
                "repl",
            ),
        ],
    )
    .postgresql
    .unwrap();
    assert_eq!(postgresql.connect_address, "127.0.0.1:5433");

    let message = env_error(
        MINIMAL,
        &[("RAFTGRES_POSTGRESQL__LISTEN", "localhost:5432")],
    );
    assert_mentions(
        &message,
        &[
            "key `postgresql.listen`",
            "RAFTGRES_POSTGRESQL__LISTEN",
            "127.0.0.1:5432",
        ],
    );
}

#[test]
fn environment_overrides_strings_numbers_bools_and_nested_keys() {
    // The file has no `postgresql` section, which only a witness may omit.
    let config = load_env_ok(
        &edit(MINIMAL, MINIMAL_POSTGRESQL, ""),
        &[
            ("RAFTGRES_NAME", "node2"),
            ("RAFTGRES_NODE_ID", "2"),
            ("RAFTGRES_WITNESS", "true"),
            ("RAFTGRES_RAFT__LISTEN", "127.0.0.1:7102"),
            ("RAFTGRES_RAFT__HEARTBEAT_INTERVAL_MS", "50"),
            ("RAFTGRES_TAGS__FAILOVER_PRIORITY", "0"),
            ("PATH", "/usr/bin"),
            ("RAFTGRESX", "not ours"),
        ],
    );
    assert_eq!(config.name, "node2");
    assert_eq!(config.node_id, 2);
    assert!(config.witness);
    assert_eq!(
        config.raft.listen,
        "127.0.0.1:7102".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.raft.advertise, "127.0.0.1:7102");
    assert_eq!(config.raft.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(config.tags.failover_priority, 0);
    assert_eq!(config.postgresql, None);
}

#[test]
fn environment_keeps_text_as_written() {
    let yaml = edit(MINIMAL, "scope: demo", "scope: x");
    let (_file, result) = load_env(&yaml, &[("RAFTGRES_SCOPE", "007")]);
    assert_eq!(result.unwrap().scope, "007");
}

#[test]
fn environment_variable_names_are_case_insensitive() {
    let (_file, result) = load_env(MINIMAL, &[("raftgres_scope", "lower")]);
    assert_eq!(result.unwrap().scope, "lower");
}

#[test]
fn environment_errors_name_the_key_and_the_variable() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, &[&str])] = &[
        ("RAFTGRES_NODE_ID", "abc", &["key `node_id`", "RAFTGRES_NODE_ID", "\"abc\""]),
        ("RAFTGRES_WITNESS", "1", &["key `witness`", "RAFTGRES_WITNESS", "true or false"]),
        ("RAFTGRES_RAFT__LISEN", "1.2.3.4:5", &["unknown key `raft.lisen`", "RAFTGRES_RAFT__LISEN", "`listen`"]),
        ("RAFTGRES_BOGUS", "x", &["unknown key `bogus`", "RAFTGRES_BOGUS"]),
        ("RAFTGRES_RAFT", "x", &["key `raft`", "RAFTGRES_RAFT", "section"]),
        ("RAFTGRES_MEMBERS", "x", &["key `members`", "RAFTGRES_MEMBERS", "list"]),
        ("RAFTGRES_RESTAPI__PORT", "8008", &["unknown key `restapi.port`", "RAFTGRES_RESTAPI__PORT", "`listen`, `connect_address`"]),
        ("RAFTGRES_RESTAPI", "127.0.0.1:8008", &["key `restapi`", "RAFTGRES_RESTAPI", "section"]),
        ("RAFTGRES_RAFT__HEARTBEAT_INTERVAL_MS", "5000", &["key `raft.heartbeat_interval_ms`", "RAFTGRES_RAFT__HEARTBEAT_INTERVAL_MS"]),
        ("RAFTGRES_MEMBERS__0__ID", "7", &["key `members`", "RAFTGRES_MEMBERS__0__ID", "list"]),
        ("RAFTGRES_X[0]", "q", &["RAFTGRES_X[0]", "does not name a settings key"]),
        ("RAFTGRES_RAFT____LISTEN", "q", &["RAFTGRES_RAFT____LISTEN", "does not name a settings key"]),
        ("RAFTGRES_", "q", &["RAFTGRES_", "does not name a settings key"]),
    ];
    for (var, value, expected) in cases {
        let message = env_error(MINIMAL, &[(var, value)]);
        for part in *expected {
            assert!(
                message.contains(part),
                "{var}={value}: {message:?} lacks {part:?}"
            );
        }
    }
}

#[test]
fn conflicting_environment_variables_are_rejected() {
    let (_, e) = error_env(
        MINIMAL,
        &[("RAFTGRES_NAME", "node1"), ("raftgres_name", "node2")],
    );
    let message = e.to_string();
    assert!(matches!(e, ConfigError::Env { .. }), "{message}");
    assert_mentions(&message, &["`name`"]);

    let message = env_error(
        MINIMAL,
        &[
            ("RAFTGRES_RAFT", "x"),
            ("RAFTGRES_RAFT__LISTEN", "1.2.3.4:5"),
        ],
    );
    assert_mentions(
        &message,
        &[
            "environment variable RAFTGRES_RAFT:",
            "RAFTGRES_RAFT__LISTEN",
        ],
    );
}

#[test]
fn each_validation_rule_names_its_key() {
    let long = "a".repeat(64);
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("uppercase scope", edit(MINIMAL, "scope: demo", "scope: Demo"), "scope"),
        ("long scope", edit(MINIMAL, "scope: demo", &format!("scope: {long}")), "scope"),
        ("empty name", edit(MINIMAL, "name: node1\nnode_id", "name: ''\nnode_id"), "name"),
        ("dotted name", edit(MINIMAL, "name: node1\nnode_id", "name: node.1\nnode_id"), "name"),
        ("node_id 0", edit(MINIMAL, "node_id: 1", "node_id: 0"), "node_id"),
        ("relative data_dir", edit(MINIMAL, "data_dir: /var/lib/raftgres/node1", "data_dir: var/lib"), "data_dir"),
        ("listen not an address", edit(MINIMAL, "listen: 127.0.0.1:7101", "listen: abc"), "raft.listen"),
        ("listen hostname", edit(MINIMAL, "listen: 127.0.0.1:7101", "listen: localhost:7101"), "raft.listen"),
        ("listen port 0", edit(MINIMAL, "listen: 127.0.0.1:7101", "listen: 127.0.0.1:0"), "raft.listen"),
        ("unspecified listen without advertise", edit(MINIMAL, "listen: 127.0.0.1:7101", "listen: 0.0.0.0:7101"), "raft.advertise"),
        ("advertise without port", edit(FULL, "advertise: node1.example:7101", "advertise: node1.example"), "raft.advertise"),
        ("advertise unspecified", edit(FULL, "advertise: node1.example:7101", "advertise: 0.0.0.0:7101"), "raft.advertise"),
        ("heartbeat 0", edit(FULL, "heartbeat_interval_ms: 100", "heartbeat_interval_ms: 0"), "raft.heartbeat_interval_ms"),
        ("heartbeat not below election minimum", edit(FULL, "heartbeat_interval_ms: 100", "heartbeat_interval_ms: 500"), "raft.heartbeat_interval_ms"),
        ("election minimum not below maximum", edit(FULL, "election_timeout_max_ms: 800", "election_timeout_max_ms: 500"), "raft.election_timeout_min_ms"),
        ("snapshot too often", edit(FULL, "snapshot_every_logs: 10", "snapshot_every_logs: 9"), "raft.snapshot_every_logs"),
        ("rpc timeout 0", edit(FULL, "rpc_timeout_ms: 300", "rpc_timeout_ms: 0"), "raft.rpc_timeout_ms"),
        ("a TLS key without its certificate", edit(FULL, "  tls_cert_file: /etc/raftgres/node1.pem\n", ""), "raft.tls_cert_file"),
        ("authenticated reads without credentials", edit(FULL, "  authentication:\n    username: admin\n    password: 'pass: word'\n", ""), "restapi.authenticate_reads"),
        ("REST TLS without a key", edit(FULL, "  keyfile: /etc/raftgres/api.key\n", ""), "restapi.keyfile"),
        ("client certificates without their CA", edit(FULL, "  cafile: /etc/raftgres/clients-ca.pem\n", ""), "restapi.cafile"),
        ("an unknown verify_client", edit(FULL, "verify_client: required", "verify_client: always"), "restapi.verify_client"),
        ("client certificates without TLS", edit(FULL, "  certfile: /etc/raftgres/api.pem\n  keyfile: /etc/raftgres/api.key\n  cafile: /etc/raftgres/clients-ca.pem\n", ""), "restapi.verify_client"),
        ("a relative TLS file", edit(FULL, "tls_ca_file: /etc/raftgres/ca.pem", "tls_ca_file: ca.pem"), "raft.tls_ca_file"),
        ("priority beyond u32", edit(FULL, "failover_priority: 7", "failover_priority: 4294967296"), "tags.failover_priority"),
        ("member id 0", edit(FULL, "- id: 2", "- id: 0"), "members[1].id"),
        ("duplicate member id", edit(FULL, "- id: 3", "- id: 2"), "members[2].id"),
        ("duplicate member name", edit(FULL, "name: node3", "name: node2"), "members[2].name"),
        ("invalid member name", edit(FULL, "name: node3", "name: Node3"), "members[2].name"),
        ("duplicate raft_addr", edit(FULL, "raft_addr: 127.0.0.1:7102", "raft_addr: node1.example:7101"), "members[1].raft_addr"),
        ("raft_addr without port", edit(FULL, "raft_addr: 127.0.0.1:7102", "raft_addr: 127.0.0.1"), "members[1].raft_addr"),
        ("raft_addr port 0", edit(FULL, "raft_addr: 127.0.0.1:7102", "raft_addr: 127.0.0.1:0"), "members[1].raft_addr"),
        ("raft_addr port too large", edit(FULL, "raft_addr: 127.0.0.1:7102", "raft_addr: 127.0.0.1:65536"), "members[1].raft_addr"),
        ("raft_addr with scheme", edit(FULL, "raft_addr: 127.0.0.1:7102", "raft_addr: http://node2:7102"), "members[1].raft_addr"),
        ("self not a member", edit(FULL, "node_id: 1", "node_id: 9"), "node_id"),
        ("self named differently", edit(FULL, "name: node1\nnode_id", "name: other\nnode_id"), "name"),
        ("ttl 0", edit(FULL, "ttl_ms: 4500", "ttl_ms: 0"), "bootstrap.ttl_ms"),
        ("margin not below ttl", edit(FULL, "lease_margin_ms: 600", "lease_margin_ms: 4500"), "bootstrap.lease_margin_ms"),
        ("loop wait 0", edit(FULL, "loop_wait_ms: 500", "loop_wait_ms: 0"), "bootstrap.loop_wait_ms"),
        ("no renewal before the deadline", edit(FULL, "loop_wait_ms: 500", "loop_wait_ms: 3900"), "bootstrap.loop_wait_ms"),
        ("loop wait overflowing with the margin", edit(FULL, "loop_wait_ms: 500", "loop_wait_ms: 18446744073709551615"), "bootstrap.loop_wait_ms"),
        ("a Raft election outlasting the renewal budget", edit(FULL, "election_timeout_max_ms: 800", "election_timeout_max_ms: 1000"), "raft.election_timeout_max_ms"),
        ("a ttl too short for the Raft election", edit(FULL, "ttl_ms: 4500", "ttl_ms: 3900"), "raft.election_timeout_max_ms"),
        ("retry timeout 0", edit(FULL, "retry_timeout_ms: 800", "retry_timeout_ms: 0"), "bootstrap.retry_timeout_ms"),
        ("a retry timeout longer than the lease", edit(FULL, "retry_timeout_ms: 800", "retry_timeout_ms: 4501"), "bootstrap.retry_timeout_ms"),
        ("a ttl in seconds times a thousand", edit(FULL, "ttl_ms: 4500", "ttl_ms: 4500000"), "bootstrap.ttl_ms"),
    ];
    for (what, yaml, key) in cases {
        assert_refused(what, &yaml, key, "");
    }
}

/// The margin's floor is `ttl_ms / 500` (rounded up) plus 100 ms
/// (docs/lease.md, "The margin's floor"): with FULL's ttl of 4500 ms, 109 ms.
#[test]
fn lease_margin_below_its_floor_is_refused() {
    for margin in ["0", "1", "108"] {
        let message = error(&edit(
            FULL,
            "lease_margin_ms: 600",
            &format!("lease_margin_ms: {margin}"),
        ));
        for named in [
            "key `bootstrap.lease_margin_ms`",
            "at least 109",
            "bootstrap.ttl_ms",
            "docs/lease.md",
        ] {
            assert!(
                message.contains(named),
                "{margin}: {named} missing from {message:?}"
            );
        }
    }
    let at_floor = load_yaml(&edit(FULL, "lease_margin_ms: 600", "lease_margin_ms: 109"));
    assert_eq!(at_floor.bootstrap.timing.margin, Duration::from_millis(109));
    // The shipped defaults (ttl 3000, margin 400) sit well above it.
    assert_eq!(
        load_yaml(MINIMAL).bootstrap.timing.margin,
        Duration::from_millis(400)
    );
}

/// The address rules `postgresql` and `restapi` share, for a section on
/// `port` whose `connect_address` in FULL is `node1.example:<full_port>`:
/// (what, the settings, the key named). `listen` is the settings with the
/// section's `listen` set to its argument.
fn address_rules(
    section: &str,
    port: u16,
    full_port: u16,
    with_scheme: &str,
    listen: impl Fn(&str) -> String,
) -> Vec<(&'static str, String, String)> {
    let connect = |to: &str| {
        let from = format!("connect_address: node1.example:{full_port}");
        edit(FULL, &from, &format!("connect_address: {to}"))
    };
    let (listen_key, connect_key) = (
        format!("{section}.listen"),
        format!("{section}.connect_address"),
    );
    #[rustfmt::skip]
    let rules = vec![
        ("listen not an address", listen("abc"), &listen_key),
        ("listen hostname", listen(&format!("localhost:{port}")), &listen_key),
        ("listen port 0", listen("127.0.0.1:0"), &listen_key),
        ("listen port too large", listen("127.0.0.1:65536"), &listen_key),
        ("wildcard listen without connect_address", listen(&format!("0.0.0.0:{port}")), &connect_key),
        ("IPv6 wildcard listen without connect_address", listen(&format!("'[::]:{port}'")), &connect_key),
        ("connect_address unspecified", connect(&format!("0.0.0.0:{full_port}")), &connect_key),
        ("connect_address IPv6 unspecified", connect(&format!("'[::]:{full_port}'")), &connect_key),
        ("connect_address without port", connect("node1.example"), &connect_key),
        ("connect_address with scheme", connect(with_scheme), &connect_key),
    ];
    rules
        .into_iter()
        .map(|(what, yaml, key)| (what, yaml, key.clone()))
        .collect()
}

#[test]
fn postgresql_addresses_name_their_key() {
    let listen = |to: &str| edit(MINIMAL, "listen: 127.0.0.1:5432", &format!("listen: {to}"));
    for (what, yaml, key) in
        address_rules("postgresql", 5432, 5433, "postgres://node1:5433", listen)
    {
        assert_refused(what, &yaml, &key, "");
    }
}

#[test]
fn restapi_addresses_name_their_key() {
    let listen = |to: &str| with_restapi(&format!("  listen: {to}\n"));
    for (what, yaml, key) in
        address_rules("restapi", 8008, 8009, "http://node1.example:8009", listen)
    {
        assert_refused(what, &yaml, &key, "");
    }
}

/// MINIMAL with `lines` (each indented as a key of `postgresql`) added to its
/// `postgresql` section.
fn with_postgresql(lines: &str) -> String {
    edit(
        MINIMAL,
        MINIMAL_POSTGRESQL,
        &format!("{MINIMAL_POSTGRESQL}{lines}"),
    )
}

#[test]
fn each_postgresql_rule_names_its_key() {
    let listen = |to: &str| edit(MINIMAL, "listen: 127.0.0.1:5432", &format!("listen: {to}"));
    let superuser = |name: &str| {
        let line = |name| format!("username: {name}\n      password: 'su");
        edit(FULL, &line("admin"), &line(name))
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("listen on the Raft address", listen("127.0.0.1:7101"), "postgresql.listen"),
        ("listen on the Raft port of every interface", listen("0.0.0.0:7101"), "postgresql.listen"),
        ("listen on the port of a Raft server bound to every interface", edit(FULL, "listen: 0.0.0.0:5433", "listen: 127.0.0.1:7101"), "postgresql.listen"),
        ("relative bin_dir", with_postgresql("  bin_dir: bin\n"), "postgresql.bin_dir"),
        ("empty bin_dir", with_postgresql("  bin_dir: ''\n"), "postgresql.bin_dir"),
        ("relative data_dir", with_postgresql("  data_dir: pgdata\n"), "postgresql.data_dir"),
        ("data_dir is the agent's", with_postgresql("  data_dir: /var/lib/raftgres/node1\n"), "postgresql.data_dir"),
        ("data_dir is the agent's, spelled with a trailing slash", with_postgresql("  data_dir: /var/lib/raftgres/node1/\n"), "postgresql.data_dir"),
        ("relative socket_dir", with_postgresql("  socket_dir: run\n"), "postgresql.socket_dir"),
        ("uppercase superuser", superuser("Admin"), "postgresql.authentication.superuser.username"),
        ("superuser starting with a digit", superuser("1admin"), "postgresql.authentication.superuser.username"),
        ("superuser with a dash", superuser("pg-admin"), "postgresql.authentication.superuser.username"),
        ("long superuser", superuser(&"a".repeat(64)), "postgresql.authentication.superuser.username"),
        ("empty superuser", superuser("''"), "postgresql.authentication.superuser.username"),
        ("invalid replication user", edit(FULL, "username: replicator", "username: Replicator"), "postgresql.authentication.replication.username"),
        ("restart grace 0", edit(FULL, "restart_grace_ms: 5000", "restart_grace_ms: 0"), "postgresql.restart_grace_ms"),
        ("uppercase parameter name", with_postgresql("  parameters:\n    Work_mem: 4MB\n"), "postgresql.parameters.Work_mem"),
        ("parameter name starting with a digit", with_postgresql("  parameters:\n    2pc: on\n"), "postgresql.parameters.2pc"),
        ("parameter name with a dash", with_postgresql("  parameters:\n    work-mem: 4MB\n"), "postgresql.parameters.work-mem"),
        ("managed parameter", edit(FULL, "    fsync: false", "    port: 5434"), "postgresql.parameters.port"),
        ("parameter value with a line break", with_postgresql("  parameters:\n    work_mem: \"4MB\\nport = 1\"\n"), "postgresql.parameters.work_mem"),
        ("nostream, which needs a restore_command", with_tags("  nostream: true\n"), "tags.nostream"),
        ("replicatefrom itself", with_tags("  replicatefrom: node1\n"), "tags.replicatefrom"),
        ("replicatefrom no member name", with_tags("  replicatefrom: Node 2\n"), "tags.replicatefrom"),
        ("a misspelt known tag", with_tags("  nofailvoer: true\n"), "tags.nofailvoer"),
        ("part of a known tag", with_tags("  priority: 2\n"), "tags.priority"),
        ("an own tag with a list value", with_tags("  zones: [a, b]\n"), "tags.zones"),
        ("callback with an unclosed quote", with_postgresql("  callbacks:\n    on_start: /bin/sh 'up\n"), "postgresql.callbacks.on_start"),
        ("empty callback", with_postgresql("  callbacks:\n    on_stop: ''\n"), "postgresql.callbacks.on_stop"),
        ("callback on a relative path", with_postgresql("  callbacks:\n    on_restart: bin/vip up\n"), "postgresql.callbacks.on_restart"),
        ("callback not in PATH", with_postgresql("  callbacks:\n    on_reload: no-such-raftgres-callback\n"), "postgresql.callbacks.on_reload"),
        ("callback that is not executable", with_postgresql("  callbacks:\n    on_role_change: /etc/passwd\n"), "postgresql.callbacks.on_role_change"),
        ("callback for an unknown event", with_postgresql("  callbacks:\n    on_promote: /bin/true\n"), "postgresql.callbacks.on_promote"),
        ("callback timeout 0", with_postgresql("  callback_timeout_ms: 0\n"), "postgresql.callback_timeout_ms"),
        ("pre_promote not in PATH", with_postgresql("  pre_promote: no-such-raftgres-fence\n"), "postgresql.pre_promote"),
        ("empty before_stop", with_postgresql("  before_stop: ''\n"), "postgresql.before_stop"),
    ];
    for (what, yaml, key) in cases {
        assert_refused(what, &yaml, key, "");
    }
}

#[test]
fn log_section_is_read() {
    let config = load_yaml(&format!(
        "{MINIMAL}log:\n  type: json\n  level: warning\n  loggers: {{raftgres_consensus: DEBUG, openraft: CRITICAL}}\n  dir: /var/log/raftgres\n  file_num: 7\n  rotation: hourly\n"
    ));
    assert_eq!(
        config.log,
        LogSettings {
            kind: LogType::Json,
            filter: "warn,openraft=error,raftgres_consensus=debug".into(),
            dir: Some(PathBuf::from("/var/log/raftgres")),
            file_num: 7,
            rotation: LogRotation::Hourly,
        }
    );
}

#[test]
fn each_log_rule_names_its_key() {
    let log = |lines: &str| format!("{MINIMAL}log:\n{lines}");
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown level", log("  level: VERBOSE\n"), "log.level"),
        ("unknown type", log("  type: xml\n"), "log.type"),
        ("a Python format string", log("  format: '%(message)s'\n"), "log.format"),
        ("rotation by size", log("  file_size: 1000000\n"), "log.file_size"),
        ("unknown rotation", log("  rotation: weekly\n"), "log.rotation"),
        ("a logger that is no module path", log("  loggers: {Raftgres-Consensus: DEBUG}\n"), "log.loggers.Raftgres-Consensus"),
        ("a logger at an unknown level", log("  loggers: {openraft: LOUD}\n"), "log.loggers.openraft"),
        ("relative dir", log("  dir: logs\n"), "log.dir"),
        ("no file kept", log("  file_num: 0\n"), "log.file_num"),
    ];
    for (what, yaml, key) in cases {
        assert_refused(what, &yaml, key, "");
    }
}

/// MINIMAL with a `tags` section of `lines`.
fn with_tags(lines: &str) -> String {
    format!("{MINIMAL}tags:\n{lines}")
}

/// MINIMAL with a `restapi` section of `lines` (each indented as a key of
/// `restapi`).
fn with_restapi(lines: &str) -> String {
    format!("{MINIMAL}restapi:\n{lines}")
}

#[test]
fn restapi_section_is_read() {
    let config = load_yaml(&with_restapi(
        "  listen: 10.0.0.1:9008\n  connect_address: node1.example:9008\n",
    ));
    assert_eq!(
        config.restapi,
        plain_restapi("10.0.0.1:9008", "node1.example:9008")
    );
    assert_eq!(config.restapi.url(), "http://node1.example:9008");
}

#[test]
fn restapi_connect_address_defaults_to_listen() {
    let restapi = load_yaml(&with_restapi("  listen: 10.0.0.1:9008\n")).restapi;
    assert_eq!(restapi.connect_address, "10.0.0.1:9008");
    assert_eq!(restapi.url(), "http://10.0.0.1:9008");

    let restapi = load_yaml(&with_restapi("  listen: '[::1]:8008'\n")).restapi;
    assert_eq!(restapi.connect_address, "[::1]:8008");
    assert_eq!(restapi.url(), "http://[::1]:8008");

    let restapi = load_yaml(&with_restapi(
        "  listen: '[::]:8008'\n  connect_address: '[fe80::1]:8008'\n",
    ))
    .restapi;
    assert_eq!(restapi.url(), "http://[fe80::1]:8008");

    // Another IP may reuse the Raft port or the Postgres port.
    for listen in ["127.0.0.2:7101", "127.0.0.2:5432"] {
        let restapi = load_yaml(&with_restapi(&format!("  listen: {listen}\n"))).restapi;
        assert_eq!(restapi.connect_address, listen);
    }
}

#[test]
fn witness_serves_the_restapi_too() {
    let config = load_yaml(&minimal_witness());
    assert_eq!(config.restapi, load_yaml(MINIMAL).restapi);

    // No Postgres runs on a witness, so its usual port is free.
    let config = load_yaml(&format!(
        "{}restapi:\n  listen: 127.0.0.1:5432\n  connect_address: witness.example:5432\n",
        minimal_witness()
    ));
    assert_eq!(
        config.restapi,
        plain_restapi("127.0.0.1:5432", "witness.example:5432")
    );
}

#[test]
fn environment_overrides_restapi_keys() {
    let restapi = load_env_ok(
        &with_restapi("  listen: 127.0.0.1:8010\n"),
        &[
            ("RAFTGRES_RESTAPI__LISTEN", "0.0.0.0:9008"),
            ("RAFTGRES_RESTAPI__CONNECT_ADDRESS", "node1.example:9008"),
        ],
    )
    .restapi;
    assert_eq!(restapi, plain_restapi("0.0.0.0:9008", "node1.example:9008"));

    // The variable alone can supply the section, on a witness too.
    let restapi = load_env_ok(
        &minimal_witness(),
        &[("RAFTGRES_RESTAPI__LISTEN", "127.0.0.1:8011")],
    )
    .restapi;
    assert_eq!(restapi.url(), "http://127.0.0.1:8011");

    #[rustfmt::skip]
    let cases: &[(&str, &str, &[&str])] = &[
        ("RAFTGRES_RESTAPI__LISTEN", "localhost:8008", &["key `restapi.listen`", "127.0.0.1:8008"]),
        ("RAFTGRES_RESTAPI__LISTEN", "127.0.0.1:7101", &["key `restapi.listen`", "raft.listen"]),
        ("RAFTGRES_RESTAPI__CONNECT_ADDRESS", "0.0.0.0:8008", &["key `restapi.connect_address`", "every interface"]),
    ];
    for (var, value, expected) in cases {
        let message = env_error(MINIMAL, &[(var, value)]);
        let by = format!("(set by environment variable {var})");
        for part in expected.iter().copied().chain([by.as_str()]) {
            assert!(
                message.contains(part),
                "{var}={value}: {message:?} lacks {part:?}"
            );
        }
    }
}

#[test]
fn restapi_port_collisions_name_the_other_key() {
    let witness_raft_on_8008 = edit(
        &minimal_witness(),
        "listen: 127.0.0.1:7101",
        "listen: 127.0.0.1:8008",
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("the Raft address", with_restapi("  listen: 127.0.0.1:7101\n"), "raft.listen"),
        ("the Raft port of every interface", with_restapi("  listen: 0.0.0.0:7101\n  connect_address: node1.example:7101\n"), "raft.listen"),
        ("the port of a Raft server bound to every interface", edit(FULL, "listen: 0.0.0.0:8009", "listen: 127.0.0.1:7101"), "raft.listen"),
        ("the Postgres address", with_restapi("  listen: 127.0.0.1:5432\n"), "postgresql.listen"),
        ("the Postgres port of every IPv6 interface", with_restapi("  listen: '[::]:5432'\n  connect_address: node1.example:5432\n"), "postgresql.listen"),
        ("the port of a Postgres bound to every interface", edit(FULL, "listen: 0.0.0.0:8009", "listen: 10.0.0.1:5433"), "postgresql.listen"),
        ("the default on the Raft port", edit(MINIMAL, "listen: 127.0.0.1:7101", "listen: 127.0.0.1:8008"), "raft.listen"),
        ("the default on a witness's Raft port", witness_raft_on_8008, "raft.listen"),
        ("the default on the Postgres port", edit(MINIMAL, "listen: 127.0.0.1:5432", "listen: 127.0.0.1:8008"), "postgresql.listen"),
    ];
    for (what, yaml, other) in cases {
        let message = error(&yaml);
        assert!(
            message.contains("key `restapi.listen`")
                && message.contains(&format!("uses the port of {other}")),
            "{what}: {message:?} does not name `restapi.listen` and {other}"
        );
    }
}

#[test]
fn restapi_port_collision_message_format() {
    let (path, e) = error_env(&with_restapi("  listen: 127.0.0.1:7101\n"), &[]);
    assert_eq!(
        e.to_string(),
        format!(
            "invalid settings in {}: key `restapi.listen`: 127.0.0.1:7101 uses the port of \
             raft.listen (127.0.0.1:7101); the REST API and the Raft server cannot both bind \
             it, set restapi.listen to another port, e.g. 127.0.0.1:8008",
            path.display()
        )
    );

    // An absent key is reported as the default, and the example skips the
    // ports already taken.
    let yaml = edit(
        &edit(MINIMAL, "listen: 127.0.0.1:7101", "listen: 127.0.0.1:8008"),
        "listen: 127.0.0.1:5432",
        "listen: 127.0.0.1:8009",
    );
    let (path, e) = error_env(&yaml, &[]);
    assert_eq!(
        e.to_string(),
        format!(
            "invalid settings in {}: key `restapi.listen`: the default 127.0.0.1:8008 uses the \
             port of raft.listen (127.0.0.1:8008); the REST API and the Raft server cannot \
             both bind it, set restapi.listen to another port, e.g. 127.0.0.1:8010",
            path.display()
        )
    );
}

#[test]
fn each_restapi_rule_names_its_key() {
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("listen without port", with_restapi("  listen: 127.0.0.1\n"), "restapi.listen"),
        ("empty listen", with_restapi("  listen: ''\n"), "restapi.listen"),
        ("empty connect_address", with_restapi("  connect_address: ''\n"), "restapi.connect_address"),
    ];
    for (what, yaml, key) in cases {
        assert_refused(what, &yaml, key, "");
    }
}

#[test]
fn missing_required_keys_are_named() {
    #[rustfmt::skip]
    let cases: Vec<(String, &str)> = vec![
        (edit(MINIMAL, "scope: demo\n", ""), "scope"),
        (edit(MINIMAL, "name: node1\nnode_id", "node_id"), "name"),
        (edit(MINIMAL, "node_id: 1\n", ""), "node_id"),
        (edit(MINIMAL, "data_dir: /var/lib/raftgres/node1\n", ""), "data_dir"),
        (edit(MINIMAL, "raft:\n  listen: 127.0.0.1:7101\n", ""), "raft"),
        (edit(MINIMAL, "  listen: 127.0.0.1:7101\n", "  rpc_timeout_ms: 5\n"), "raft.listen"),
        (edit(MINIMAL, "  - id: 2\n    name", "  - name"), "members[1].id"),
        (edit(MINIMAL, "    name: node2\n", ""), "members[1].name"),
        (edit(MINIMAL, "    raft_addr: 127.0.0.1:7102\n", ""), "members[1].raft_addr"),
        (edit(MINIMAL, MINIMAL_POSTGRESQL, ""), "postgresql"),
        (edit(MINIMAL, "  listen: 127.0.0.1:5432\n", "  restart_grace_ms: 100\n"), "postgresql.listen"),
        (String::new(), "scope"),
    ];
    for (yaml, key) in cases {
        assert_refused("a missing key", &yaml, key, "missing");
    }
}

#[test]
fn missing_or_empty_member_list_is_explained() {
    let without = MINIMAL.split("members:").next().unwrap().to_owned();
    for (yaml, what) in [
        (without.clone(), "is missing or empty"),
        (format!("{without}members: []\n"), "is missing or empty"),
        (format!("{without}members:\n"), "is empty"),
    ] {
        let message = error(&yaml);
        assert_mentions(
            &message,
            &[&format!(
                "key `members`: {what}: list every initial voter with id, name and raft_addr"
            )],
        );
    }
}

#[test]
fn unknown_keys_are_named_with_the_known_ones() {
    #[rustfmt::skip]
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("{MINIMAL}bogus: 1\n"), "bogus", "`scope`"),
        (format!("Name: x\n{MINIMAL}"), "Name", "`name`"),
        (edit(MINIMAL, "  listen: 127.0.0.1:7101\n", "  listen: 127.0.0.1:7101\n  lisen: x\n"), "raft.lisen", "`listen`, `advertise`"),
        // The typo is reported, not the key it leaves missing.
        (edit(MINIMAL, "  listen: 127.0.0.1:7101\n", "  lisen: 127.0.0.1:7101\n"), "raft.lisen", "`listen`"),
        (edit(MINIMAL, "    name: node2\n", "    nme: node2\n"), "members[1].nme", "`id`, `name`, `raft_addr`"),
        (format!("{MINIMAL}bootstrap:\n  ttl: 2\n"), "bootstrap.ttl", "`ttl_ms`"),
        (with_postgresql("  restart_grace: 5\n"), "postgresql.restart_grace", "`listen`, `connect_address`, `bin_dir`, `data_dir`, `socket_dir`, `authentication`, `pg_hba`, `pgpass`, `restart_grace_ms`, `parameters`"),
        (format!("{MINIMAL}rest_api: {{}}\n"), "rest_api", "`postgresql`, `restapi`, `members`"),
        (with_restapi("  listen: 127.0.0.1:8008\n  port: 8008\n"), "restapi.port", "known keys here are `listen`, `connect_address`, `authentication`"),
    ];
    for (yaml, key, known) in cases {
        let (path, e) = error_env(&yaml, &[]);
        let message = e.to_string();
        assert!(
            message.contains(&format!("unknown key `{key}`")),
            "{message:?} does not name `{key}`"
        );
        assert!(message.contains(known), "{message:?} lacks {known}");
        assert!(
            message.contains(&path.display().to_string()),
            "{message:?} lacks the file"
        );
    }
}

#[test]
fn unknown_key_message_format() {
    let (path, e) = error_env(&format!("{MINIMAL}bootstrap:\n  ttl: 2\n"), &[]);
    assert_eq!(
        e.to_string(),
        format!(
            "invalid settings in {}: unknown key `bootstrap.ttl`: known keys here are \
             `ttl_ms`, `loop_wait_ms`, `retry_timeout_ms`, `lease_margin_ms`, \
             `maximum_lag_on_failover`",
            path.display()
        )
    );
}

#[test]
fn invalid_value_message_format() {
    let (path, e) = error_env(&edit(MINIMAL, "listen: 127.0.0.1:7101", "listen: abc"), &[]);
    assert_eq!(
        e.to_string(),
        format!(
            "invalid settings in {}: key `raft.listen`: expected an IP address and port like \
             127.0.0.1:7101 or [::]:7101 (not a hostname), got \"abc\"",
            path.display()
        )
    );
    match e {
        ConfigError::Invalid { key, env_var, .. } => {
            assert_eq!(key, "raft.listen");
            assert_eq!(env_var, None);
        }
        other => panic!("unexpected variant {other:?}"),
    }
}

#[test]
fn wrong_types_are_named_and_never_coerced() {
    #[rustfmt::skip]
    let cases: Vec<(String, &str, &str)> = vec![
        (edit(MINIMAL, "node_id: 1", "node_id: abc"), "node_id", "\"abc\""),
        (edit(MINIMAL, "node_id: 1", "node_id: 1.7"), "node_id", "1.7"),
        (edit(MINIMAL, "node_id: 1", "node_id: true"), "node_id", "true"),
        (edit(MINIMAL, "node_id: 1", "node_id: -1"), "node_id", "-1"),
        (edit(MINIMAL, "node_id: 1", "node_id: yes"), "node_id", "\"yes\""),
        (edit(MINIMAL, "node_id: 1", "node_id: [1]"), "node_id", "a list"),
        (format!("{MINIMAL}witness: 1\n"), "witness", "true or false"),
        (format!("{MINIMAL}witness: yes\n"), "witness", "true or false"),
        (edit(MINIMAL, "scope: demo", "scope: 007"), "scope", "quotes"),
        (edit(MINIMAL, "scope: demo", "scope: {a: 1}"), "scope", "section"),
        (edit(MINIMAL, "raft:\n  listen: 127.0.0.1:7101\n", "raft: 5\n"), "raft", "section"),
        (edit(MINIMAL, "  listen: 127.0.0.1:7101", "  listen: 127.0.0.1:7101\n  rpc_timeout_ms: 1s"), "raft.rpc_timeout_ms", "\"1s\""),
        (format!("{}members: node1\n", MINIMAL.split("members:").next().unwrap()), "members", "list"),
        (format!("{}members:\n  - node1\n", MINIMAL.split("members:").next().unwrap()), "members[0]", "section"),
        (format!("{MINIMAL}tags: [1]\n"), "tags", "section"),
        (format!("{MINIMAL}tags:\n"), "tags", "is empty"),
        (format!("{MINIMAL}witness:\n"), "witness", "is empty"),
        (edit(MINIMAL, MINIMAL_POSTGRESQL, "postgresql: 127.0.0.1:5432\n"), "postgresql", "section"),
        (edit(MINIMAL, "listen: 127.0.0.1:5432", "listen: 5432"), "postgresql.listen", "quotes"),
        (with_postgresql("  pgpass: 123\n"), "postgresql.pgpass", "quotes"),
        (with_postgresql("  bin_dir:\n"), "postgresql.bin_dir", "is empty"),
        (with_postgresql("  restart_grace_ms: 1.5\n"), "postgresql.restart_grace_ms", "1.5"),
        (with_postgresql("  restart_grace_ms: 2s\n"), "postgresql.restart_grace_ms", "\"2s\""),
        (with_postgresql("  parameters: [work_mem]\n"), "postgresql.parameters", "section"),
        (with_postgresql("  parameters:\n"), "postgresql.parameters", "is empty"),
        (with_postgresql("  parameters:\n    random_page_cost: 1.10\n"), "postgresql.parameters.random_page_cost", "quotes"),
        // Beyond i64 the YAML reader already made it a float.
        (with_postgresql("  parameters:\n    huge: 18446744073709551615\n"), "postgresql.parameters.huge", "quotes"),
        (with_postgresql("  parameters:\n    work_mem:\n"), "postgresql.parameters.work_mem", "is empty"),
        (with_postgresql("  parameters:\n    work_mem: [4MB]\n"), "postgresql.parameters.work_mem", "a list"),
        (with_postgresql("  parameters:\n    work_mem: {a: 1}\n"), "postgresql.parameters.work_mem", "section"),
        (format!("{MINIMAL}restapi: 8008\n"), "restapi", "section"),
        (format!("{MINIMAL}restapi:\n"), "restapi", "is empty"),
        (with_restapi("  listen: 8008\n"), "restapi.listen", "quotes"),
        (with_restapi("  listen:\n"), "restapi.listen", "is empty"),
        (with_restapi("  connect_address: [node1.example:8008]\n"), "restapi.connect_address", "a list"),
        (edit(MINIMAL, "node_id: 1", "node_id:"), "node_id", "is empty"),
    ];
    for (yaml, key, detail) in cases {
        assert_refused("a wrong type", &yaml, key, detail);
    }
}

#[test]
fn missing_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yml");
    // `config::File` would otherwise pick up a neighbour with another extension.
    std::fs::write(dir.path().join("absent.yaml"), MINIMAL).unwrap();
    let e = load_with_env(&path, []).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    let e = load_with_env(dir.path(), []).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );
}

#[test]
fn unreadable_text_names_the_file() {
    let file = write_bytes(b"scope: \xff\xfe\n");
    let message = load_with_env(&file.path, []).unwrap_err().to_string();
    assert_mentions(&message, &[&file.path.display().to_string()]);
    assert_mentions(&message, &["UTF-8"]);
}

#[test]
fn byte_order_mark_is_ignored() {
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend_from_slice(MINIMAL.as_bytes());
    let file = write_bytes(&bytes);
    assert_eq!(load_with_env(&file.path, []).unwrap().scope, "demo");
}

#[test]
fn yaml_that_cannot_be_parsed_names_the_file() {
    for yaml in [
        "scope: demo\n  name: [node1\n",
        "scope: demo\nscope: other\n",
        "scope: demo\n---\nscope: other\n",
        "- scope\n- name\n",
        "just text\n",
    ] {
        let (path, e) = error_env(yaml, &[]);
        assert!(matches!(e, ConfigError::Syntax { .. }), "{yaml:?}: {e:?}");
        assert!(
            e.to_string().contains(&path.display().to_string()),
            "{yaml:?}: {e}"
        );
    }
}

#[test]
fn load_reads_the_process_environment() {
    let file = write_bytes(MINIMAL.as_bytes());
    // The test process is not expected to carry RAFTGRES_* variables.
    assert_eq!(load(Path::new(&file.path)).unwrap(), load_yaml(MINIMAL));
}

/// MINIMAL with an `authentication` section of `lines` (each indented as a
/// key of `restapi.authentication`).
fn with_authentication(lines: &str) -> String {
    with_restapi(&format!("  authentication:\n{lines}"))
}

const PASSWORD: &str = "s3cret-Pa55";

#[test]
fn restapi_authentication_is_read() {
    let restapi = load_yaml(&with_authentication(&format!(
        "    username: admin\n    password: {PASSWORD}\n"
    )))
    .restapi;
    assert_eq!(restapi.authentication, credentials("admin", PASSWORD));
    // Without the section the mutating endpoints stay disabled.
    assert_eq!(load_yaml(MINIMAL).restapi.authentication, None);
}

#[test]
fn restapi_password_is_never_printed() {
    let config = load_yaml(&with_authentication(&format!(
        "    username: admin\n    password: {PASSWORD}\n"
    )));
    for shown in [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{:?}", config.restapi.authentication),
    ] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("admin"), "{shown}");
    }

    // Nor in the messages about a bad one.
    for (value, detail) in [
        ("12345678", "whole number"),
        ("[s3cret]", "a list"),
        ("\"s3cret\\nline\"", "control characters"),
    ] {
        let message = error(&with_authentication(&format!(
            "    username: admin\n    password: {value}\n"
        )));
        assert_mentions(&message, &["key `restapi.authentication.password`", detail]);
        for leak in ["12345678", "s3cret"] {
            assert!(!message.contains(leak), "{message:?} shows the password");
        }
    }
}

#[test]
fn restapi_authentication_keys_are_required_and_not_empty() {
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("missing password", with_authentication("    username: admin\n"), "restapi.authentication.password", "is missing"),
        ("missing username", with_authentication(&format!("    password: {PASSWORD}\n")), "restapi.authentication.username", "is missing"),
        ("empty section", with_restapi("  authentication: {}\n"), "restapi.authentication.username", "is missing"),
        ("section without a value", with_restapi("  authentication:\n"), "restapi.authentication", "is empty"),
        ("section as text", with_restapi("  authentication: admin\n"), "restapi.authentication", "section"),
        ("empty password", with_authentication("    username: admin\n    password: ''\n"), "restapi.authentication.password", "must not be empty"),
        ("password without a value", with_authentication("    username: admin\n    password:\n"), "restapi.authentication.password", "is empty"),
        ("empty username", with_authentication(&format!("    username: ''\n    password: {PASSWORD}\n")), "restapi.authentication.username", "must not be empty"),
        ("username with a colon", with_authentication(&format!("    username: 'a:b'\n    password: {PASSWORD}\n")), "restapi.authentication.username", "`:`"),
        ("username as a number", with_authentication(&format!("    username: 42\n    password: {PASSWORD}\n")), "restapi.authentication.username", "quotes"),
    ];
    for (what, yaml, key, detail) in cases {
        assert_refused(what, &yaml, key, detail);
    }
}

#[test]
fn missing_password_message_format() {
    let (path, e) = error_env(&with_authentication("    username: admin\n"), &[]);
    assert_eq!(
        e.to_string(),
        format!(
            "invalid settings in {}: key `restapi.authentication.password`: is missing: set \
             it to the password clients send with HTTP basic auth, here or through \
             RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD, or remove the `authentication` \
             section to disable the mutating endpoints",
            path.display()
        )
    );
}

#[test]
fn unknown_authentication_key_is_named() {
    let message = error(&with_authentication(&format!(
        "    username: admin\n    password: {PASSWORD}\n    user: x\n"
    )));
    assert_mentions(
        &message,
        &[
            "unknown key `restapi.authentication.user`",
            "known keys here are `username`, `password`",
        ],
    );
}

#[test]
fn environment_overrides_restapi_authentication() {
    // The usual split: the user name in the file, the password from a secret.
    let restapi = load_env_ok(
        &with_authentication("    username: admin\n"),
        &[("RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD", PASSWORD)],
    )
    .restapi;
    assert_eq!(restapi.authentication, credentials("admin", PASSWORD));

    // The variables alone can supply the section, and override the file.
    let restapi = load_env_ok(
        &with_authentication("    username: admin\n    password: old\n"),
        &[
            ("RAFTGRES_RESTAPI__AUTHENTICATION__USERNAME", "ops"),
            ("RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD", "007"),
        ],
    )
    .restapi;
    assert_eq!(restapi.authentication, credentials("ops", "007"));
    let restapi = load_env_ok(
        MINIMAL,
        &[
            ("RAFTGRES_RESTAPI__AUTHENTICATION__USERNAME", "ops"),
            ("RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD", PASSWORD),
        ],
    )
    .restapi;
    assert_eq!(
        restapi.authentication.map(|a| a.username),
        Some("ops".into())
    );

    let message = env_error(
        &with_authentication("    username: admin\n"),
        &[("RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD", "")],
    );
    assert_mentions(
        &message,
        &[
            "key `restapi.authentication.password`",
            "must not be empty",
            "(set by environment variable RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD)",
        ],
    );

    // A password without a user name is incomplete, not silently ignored.
    let message = env_error(
        MINIMAL,
        &[("RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD", PASSWORD)],
    );
    assert_mentions(
        &message,
        &["key `restapi.authentication.username`: is missing"],
    );
    assert!(!message.contains(PASSWORD), "{message:?}");
}

#[test]
fn pgbouncer_section_loads_with_defaults() {
    let config = load_yaml(&format!(
        "{MINIMAL}pgbouncer:\n  databases_file: /etc/pgbouncer/raftgres.ini\n  listen: 127.0.0.1:6432\n"
    ));
    let pgb = config.pgbouncer.expect("pgbouncer section");
    assert_eq!(
        pgb.databases_file,
        PathBuf::from("/etc/pgbouncer/raftgres.ini")
    );
    assert_eq!(pgb.listen.port(), 6432);
    assert_eq!(pgb.admin_user, "pgbouncer_admin");
    assert_eq!(pgb.admin_password, None);
    assert_eq!(pgb.dbname, "postgres");
    assert_eq!(pgb.write_db, "postgres");
    assert_eq!(pgb.read_db, None);
    assert!(load_yaml(MINIMAL).pgbouncer.is_none());
}

#[test]
fn pgbouncer_admin_password_is_never_shown() {
    let (_file, config) = load_env(
        &format!(
            "{MINIMAL}pgbouncer:\n  databases_file: /d.ini\n  listen: 127.0.0.1:6432\n  read_db: app_ro\n"
        ),
        &[("RAFTGRES_PGBOUNCER__ADMIN_PASSWORD", "s3cret-pgb")],
    );
    let pgb = config.expect("loads").pgbouncer.expect("section");
    assert_eq!(pgb.admin_password.as_deref(), Some("s3cret-pgb"));
    assert_eq!(pgb.read_db.as_deref(), Some("app_ro"));
    assert!(!format!("{pgb:?}").contains("s3cret-pgb"));
}

#[test]
fn bad_pgbouncer_settings_name_the_key() {
    let base = format!("{MINIMAL}pgbouncer:\n  databases_file: /d.ini\n  listen: 127.0.0.1:6432\n");
    #[rustfmt::skip]
    let cases = [
        (edit(&base, "/d.ini", "d.ini"), "pgbouncer.databases_file", "absolute"),
        (edit(&base, "127.0.0.1:6432", "127.0.0.1:5432"), "pgbouncer.listen", "postgresql.listen"),
        (format!("{base}  read_db: postgres\n"), "pgbouncer.read_db", "differ"),
        (format!("{base}  write_db: pgbouncer\n"), "pgbouncer.write_db", "admin console"),
        (format!("{base}  dbname: \"my db\"\n"), "pgbouncer.dbname", "letters"),
        (format!("{base}  pool: 3\n"), "pgbouncer.pool", ""),
        (format!("{MINIMAL}pgbouncer:\n  listen: 127.0.0.1:6432\n"), "pgbouncer.databases_file", "missing"),
    ];
    for (yaml, key, why) in cases {
        let message = error(&yaml);
        assert!(
            message.contains(key) && message.contains(why),
            "{key}/{why}: {message}"
        );
    }
}

/// A secret in a file others may read is refused, naming the file, the key
/// and the mode; the same secret from the environment is not the file's.
#[test]
fn a_secret_in_a_file_others_may_read_is_refused() {
    let yaml = format!(
        "{}restapi:\n  authentication: {{username: admin, password: s3cret}}\n",
        minimal_witness()
    );
    let file = write_bytes(yaml.as_bytes());
    assert!(
        load_with_env(&file.path, []).is_ok(),
        "a private file is read"
    );
    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = load_with_env(&file.path, []).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ConfigError::Exposed { mode: 0o640, .. })
            && text.contains("restapi.authentication.password")
            && text.contains(&file.path.display().to_string())
            && text.contains("0640")
            && !text.contains("s3cret"),
        "{text}"
    );
    let from_env = format!(
        "{}restapi:\n  authentication: {{username: admin}}\n",
        minimal_witness()
    );
    let file = write_bytes(from_env.as_bytes());
    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = [(
        "RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD".to_owned(),
        "s3cret".to_owned(),
    )];
    assert!(
        load_with_env(&file.path, env).is_ok(),
        "the secret is not in the file"
    );
}
