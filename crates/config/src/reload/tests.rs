use super::*;

const BASE: &str = "scope: demo\nname: node1\nnode_id: 1\ndata_dir: /var/lib/raftgres/node1\n\
    raft:\n  listen: 127.0.0.1:7101\n\
    postgresql:\n  listen: 127.0.0.1:5432\n  authentication:\n    superuser: {password: su}\n    replication: {password: repl}\n  parameters:\n    work_mem: 4MB\n\
    restapi:\n  listen: 127.0.0.1:8008\n  authentication:\n    username: admin\n    password: old\n\
    pgbouncer:\n  databases_file: /etc/pgbouncer/db.ini\n  listen: 127.0.0.1:6432\n  admin_password: old\n\
    members:\n  - {id: 1, name: node1, raft_addr: \"127.0.0.1:7101\"}\n";

fn load(text: &str) -> Result<AgentConfig, crate::ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.yml");
    std::fs::write(&path, text).expect("write");
    // It holds the API password: only a private file is read.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    crate::load_with_env(&path, [])
}

fn base() -> AgentConfig {
    load(BASE).expect("the base settings are valid")
}

fn plan_for(edited: &str) -> ReloadPlan {
    reload_plan(
        &base(),
        &load(edited).expect("the edited settings are valid"),
    )
}

#[test]
fn an_unchanged_file_changes_nothing() {
    let plan = plan_for(BASE);
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(reloaded(&base(), &base()), base());
}

#[test]
fn reloadable_keys_are_applied() {
    #[rustfmt::skip]
    let cases = [
        (BASE.replace("work_mem: 4MB", "work_mem: 7MB"), "postgresql.parameters"),
        (BASE.replace("    work_mem: 4MB\n", "    work_mem: 4MB\n    geqo: off\n"), "postgresql.parameters"),
        (BASE.replace("  parameters:\n", "  callbacks: {on_role_change: /bin/true}\n  parameters:\n"), "postgresql.callbacks"),
        (BASE.replace("  parameters:\n", "  callback_timeout_ms: 500\n  parameters:\n"), "postgresql.callback_timeout_ms"),
        (BASE.replace("  parameters:\n", "  pre_promote: /bin/true\n  parameters:\n"), "postgresql.pre_promote"),
        (BASE.replace("  parameters:\n", "  before_stop: /bin/true\n  parameters:\n"), "postgresql.before_stop"),
        (BASE.replace("name: node1\n", "name: node1\ntags: {nofailover: true}\n"), "tags.nofailover"),
        (BASE.replace("name: node1\n", "name: node1\ntags: {failover_priority: 5}\n"), "tags.failover_priority"),
        (BASE.replace("name: node1\n", "name: node1\ntags: {noloadbalance: true}\n"), "tags.noloadbalance"),
        (BASE.replace("name: node1\n", "name: node1\ntags: {zone: eu-1b}\n"), "tags (the operator's own)"),
        (BASE.replace("    password: old\n", "    password: new\n"), "restapi.authentication"),
        (BASE.replace("  authentication:\n    username: admin\n    password: old\n", ""), "restapi.authentication"),
        (BASE.replace("  admin_password: old\n", "  admin_password: new\n"), "pgbouncer.admin_password"),
        (BASE.replace("  admin_password: old\n", "  admin_user: pgb\n  admin_password: old\n"), "pgbouncer.admin_user"),
    ];
    for (edited, key) in cases {
        let loaded = load(&edited).expect(key);
        let plan = reload_plan(&base(), &loaded);
        assert_eq!(
            plan,
            ReloadPlan {
                applied: vec![key],
                ..ReloadPlan::default()
            },
            "{key}"
        );
        // Only reloadable keys changed: the agent runs with the file as written.
        assert_eq!(reloaded(&base(), &loaded), loaded, "{key}");
    }
}

#[test]
fn restart_only_keys_are_kept_and_named() {
    let witness = "scope: demo\nname: node1\nnode_id: 1\ndata_dir: /var/lib/raftgres/node1\n\
        witness: true\nraft:\n  listen: 127.0.0.1:7101\n\
        restapi:\n  listen: 127.0.0.1:8008\n  authentication:\n    username: admin\n    password: old\n\
        pgbouncer:\n  databases_file: /etc/pgbouncer/db.ini\n  listen: 127.0.0.1:6432\n  admin_password: old\n\
        members:\n  - {id: 1, name: node1, raft_addr: \"127.0.0.1:7101\"}\n";
    // BASE with `line` added to the section.
    let raft = |line: &str| {
        BASE.replace(
            "  listen: 127.0.0.1:7101\n",
            &format!("  listen: 127.0.0.1:7101\n  {line}\n"),
        )
    };
    let postgresql =
        |line: &str| BASE.replace("  parameters:", &format!("  {line}\n  parameters:"));
    let pgbouncer = |line: &str| {
        BASE.replace(
            "  admin_password: old\n",
            &format!("  admin_password: old\n  {line}\n"),
        )
    };
    #[rustfmt::skip]
    let cases: Vec<(String, &[&str])> = vec![
        (BASE.replace("scope: demo", "scope: other"), &["scope"]),
        (BASE.replace("name: node1", "name: node9").replace("name: node1,", "name: node9,"), &["name"]),
        (BASE.replace("node_id: 1", "node_id: 2").replace("{id: 1,", "{id: 2,"), &["node_id"]),
        // The Postgres directories default to inside it.
        (BASE.replace("data_dir: /var/lib/raftgres/node1", "data_dir: /srv/node1"), &["data_dir", "postgresql.data_dir", "postgresql.pgpass", "postgresql.socket_dir"]),
        (witness.to_owned(), &["witness", "postgresql"]),
        (raft("advertise: node1:7101"), &["raft.advertise"]),
        (raft("heartbeat_interval_ms: 110"), &["raft.heartbeat_interval_ms"]),
        (raft("election_timeout_min_ms: 400"), &["raft.election_timeout_min_ms"]),
        (raft("election_timeout_max_ms: 520"), &["raft.election_timeout_max_ms"]),
        (raft("snapshot_every_logs: 50"), &["raft.snapshot_every_logs"]),
        (raft("rpc_timeout_ms: 900"), &["raft.rpc_timeout_ms"]),
        (BASE.replace("127.0.0.1:7101\npostgresql", "127.0.0.1:7109\npostgresql").replace("\"127.0.0.1:7101\"", "\"127.0.0.1:7109\""), &["raft.listen", "raft.advertise"]),
        (BASE.replace("listen: 127.0.0.1:8008", "listen: 127.0.0.1:8009"), &["restapi.listen", "restapi.connect_address"]),
        (BASE.replace("listen: 127.0.0.1:5432", "listen: 127.0.0.1:5433"), &["postgresql.listen", "postgresql.connect_address"]),
        (postgresql("bin_dir: /opt/pg/bin"), &["postgresql.bin_dir"]),
        (BASE.replace("{password: su}", "{username: admin, password: su}"), &["postgresql.authentication"]),
        (BASE.replace("{password: repl}", "{password: other}"), &["postgresql.authentication"]),
        (postgresql("pg_hba: [\"host all all 10.0.0.0/8 scram-sha-256\"]"), &["postgresql.pg_hba"]),
        (postgresql("pgpass: /run/raftgres/pgpass"), &["postgresql.pgpass"]),
        (postgresql("tls: {sslmode: disable}"), &["postgresql.tls"]),
        (postgresql("restart_grace_ms: 5000"), &["postgresql.restart_grace_ms"]),
        (BASE.replace("/etc/pgbouncer/db.ini", "/etc/pgbouncer/other.ini"), &["pgbouncer.databases_file"]),
        (BASE.replace("listen: 127.0.0.1:6432", "listen: 127.0.0.1:6433"), &["pgbouncer.listen"]),
        (pgbouncer("read_db: app_ro"), &["pgbouncer.read_db"]),
        (pgbouncer("dbname: app"), &["pgbouncer.dbname", "pgbouncer.write_db"]),
        (BASE[..BASE.find("pgbouncer:").expect("pgbouncer")].to_owned() + &BASE[BASE.find("members:").expect("members")..], &["pgbouncer"]),
    ];
    for (edited, keys) in cases {
        let loaded = load(&edited).expect(keys[0]);
        let plan = reload_plan(&base(), &loaded);
        let mut named = plan.needs_restart.clone();
        named.sort_unstable();
        let mut want = keys.to_vec();
        want.sort_unstable();
        // The superuser also becomes pgbouncer's default admin user, which reloads.
        let applied_ok = plan.applied.is_empty() || plan.applied == ["pgbouncer.admin_user"];
        assert!(applied_ok, "{keys:?}: {plan:?}");
        assert_eq!(named, want, "{keys:?}");
        let running = reloaded(&base(), &loaded);
        assert_eq!(
            reload_plan(&base(), &running).needs_restart,
            Vec::<&str>::new(),
            "{keys:?}: a restart-only key was applied"
        );
    }
}

#[test]
fn members_are_read_only_at_the_first_start() {
    let edited = format!("{BASE}  - {{id: 2, name: node2, raft_addr: \"127.0.0.1:7102\"}}\n");
    let plan = plan_for(&edited);
    assert_eq!(plan.first_start_only, ["members"], "{plan:?}");
    assert!(
        plan.applied.is_empty() && plan.needs_restart.is_empty() && plan.cluster_wide.is_empty(),
        "{plan:?}"
    );
    assert!(!plan.is_empty());
}

#[test]
fn bootstrap_keys_belong_to_the_cluster() {
    let edited = format!(
        "{BASE}bootstrap:\n  ttl_ms: 3500\n  loop_wait_ms: 500\n  retry_timeout_ms: 900\n  lease_margin_ms: 300\n  maximum_lag_on_failover: 1\n"
    );
    let plan = plan_for(&edited);
    assert_eq!(
        plan.cluster_wide,
        [
            "bootstrap.ttl_ms",
            "bootstrap.loop_wait_ms",
            "bootstrap.retry_timeout_ms",
            "bootstrap.lease_margin_ms",
            "bootstrap.maximum_lag_on_failover",
        ]
    );
    assert!(
        plan.applied.is_empty() && plan.needs_restart.is_empty(),
        "{plan:?}"
    );
}

#[test]
fn an_invalid_file_is_an_error_naming_the_key() {
    let err = load(&BASE.replace("work_mem: 4MB", "Work_Mem: 4MB")).unwrap_err();
    assert!(
        err.to_string().contains("postgresql.parameters.Work_Mem"),
        "{err}"
    );
    let err = load(&BASE.replace("node_id: 1", "node_id: one")).unwrap_err();
    assert!(err.to_string().contains("node_id"), "{err}");
    assert!(load("name: [unclosed\n").is_err());
}

/// The plan's name for file keys it reports together.
const REPORTED_AS: &[(&str, &str)] = &[
    ("raft.tls_ca_file", "raft.tls_*_file"),
    ("raft.tls_cert_file", "raft.tls_*_file"),
    ("raft.tls_key_file", "raft.tls_*_file"),
    ("restapi.certfile", RESTAPI_TLS),
    ("restapi.keyfile", RESTAPI_TLS),
    ("restapi.cafile", RESTAPI_TLS),
    ("restapi.verify_client", RESTAPI_TLS),
    ("restapi.allowlist_include_members", "restapi.allowlist"),
    ("tags.zone", OWN_TAGS),
    ("tags.rack", OWN_TAGS),
    ("log.level", LOG_FILTER),
    ("log.loggers.openraft", LOG_FILTER),
    ("postgresql.basebackup", REPLICA_METHODS),
    ("postgresql.wal_g.command", REPLICA_METHODS),
    ("postgresql.wal_g.envdir", REPLICA_METHODS),
];
/// The methods' sections and pg_basebackup's options change the methods.
const REPLICA_METHODS: &str = "postgresql.create_replica_methods";
const LOG_FILTER: &str = "log.level, log.loggers";
const OWN_TAGS: &str = "tags (the operator's own)";
const RESTAPI_TLS: &str = "restapi TLS (certfile, keyfile, cafile, verify_client)";

fn leaves(value: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let key = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                leaves(value, &key, out);
            }
        }
        _ => out.push(at.to_owned()),
    }
}

/// A key without a line would be neither applied nor named on a reload.
#[test]
fn every_key_of_the_file_has_one_line() {
    let file = serde_json::to_value(crate::schema::tests::every_key()).expect("serialisable");
    let mut keys = Vec::new();
    leaves(&file, "", &mut keys);
    for key in keys {
        let named = REPORTED_AS
            .iter()
            .find(|(file_key, _)| *file_key == key)
            .map_or(key.as_str(), |(_, name)| name);
        // A line inside a section stands for the keys within it too
        // (`postgresql.parameters.work_mem`); a section's own line only
        // for the section coming or going.
        let lines = KEYS
            .iter()
            .filter(|line| {
                line.name == named
                    || (line.name.contains('.') && named.starts_with(&format!("{}.", line.name)))
            })
            .count();
        assert_eq!(lines, 1, "{key}");
    }
}
