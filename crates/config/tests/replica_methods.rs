//! `postgresql.create_replica_methods`, `postgresql.basebackup` and the
//! methods' own sections, as a settings file gives them.

use std::os::unix::fs::PermissionsExt;

use raftgres_config::{ConfigError, ReplicaMethod, load};

mod common;
use common::MINIMAL;

/// MINIMAL with `lines` added to its `postgresql` section.
fn with(lines: &str) -> String {
    MINIMAL.replacen(
        "  listen: 127.0.0.1:5432\n",
        &format!("  listen: 127.0.0.1:5432\n{lines}"),
        1,
    )
}

fn load_yaml(yaml: &str) -> Result<Vec<ReplicaMethod>, ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raftgres.yml");
    std::fs::write(&path, yaml).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    load(&path).map(|config| {
        config
            .postgresql
            .expect("a postgresql section")
            .create_replica_methods
    })
}

#[track_caller]
fn refused(yaml: &str, key: &str, detail: &str) {
    let message = load_yaml(yaml).expect_err("refused").to_string();
    assert!(
        message.contains(&format!("key `{key}`")) && message.contains(detail),
        "{message:?} does not name `{key}` with {detail:?}"
    );
}

#[test]
fn by_default_only_pg_basebackup_creates_a_replica() {
    assert_eq!(
        load_yaml(MINIMAL).unwrap(),
        [ReplicaMethod::Basebackup { options: vec![] }]
    );
}

#[test]
fn methods_are_kept_in_order_with_their_sections_and_options() {
    let methods = load_yaml(&with(
        "  create_replica_methods: [wal_g, basebackup]\n  \
         wal_g:\n    command: /bin/true --restore\n    no_params: true\n    envdir: /etc/wal-g\n  \
         basebackup: [{max-rate: 100M}, verbose]\n",
    ))
    .unwrap();
    assert_eq!(
        methods,
        [
            ReplicaMethod::Command {
                name: "wal_g".into(),
                command: vec!["/bin/true".into(), "--restore".into()],
                no_params: true,
                options: vec![("envdir".into(), "/etc/wal-g".into())],
            },
            ReplicaMethod::Basebackup {
                options: vec!["--max-rate=100M".into(), "--verbose".into()],
            },
        ]
    );
    let mapping = load_yaml(&with(
        "  basebackup: {max-rate: 100M, checkpoint: spread}\n",
    ))
    .unwrap();
    assert_eq!(
        mapping,
        [ReplicaMethod::Basebackup {
            options: vec!["--checkpoint=spread".into(), "--max-rate=100M".into()],
        }]
    );
}

#[test]
fn a_listed_method_needs_a_section_with_a_command() {
    refused(
        &with("  create_replica_methods: [wal_g, basebackup]\n"),
        "postgresql.wal_g",
        "add a section",
    );
    refused(
        &with("  create_replica_methods: [wal_g]\n  wal_g: {no_params: true}\n"),
        "postgresql.wal_g.command",
        "is missing",
    );
    refused(
        &with("  create_replica_methods: [wal_g]\n  wal_g: {command: /nonexistent/restore}\n"),
        "postgresql.wal_g.command",
        "",
    );
    refused(
        &with("  create_replica_methods: []\n"),
        "postgresql.create_replica_methods",
        "at least one",
    );
    refused(
        &with("  create_replica_methods: [basebackup, basebackup]\n"),
        "postgresql.create_replica_methods",
        "twice",
    );
    refused(
        &with("  create_replica_methods: [callbacks]\n"),
        "postgresql.create_replica_methods",
        "key of postgresql",
    );
}

#[test]
fn what_is_not_built_is_refused_by_its_key() {
    refused(
        &with(
            "  create_replica_methods: [wal_g]\n  wal_g: {command: /bin/true, keep_data: true}\n",
        ),
        "postgresql.wal_g.keep_data",
        "not built",
    );
    refused(
        &with(
            "  create_replica_methods: [wal_g]\n  wal_g: {command: /bin/true, no_leader: true}\n",
        ),
        "postgresql.wal_g.no_leader",
        "not built",
    );
    refused(
        &with("  basebackup: [verbose, {wal-method: fetch}]\n"),
        "postgresql.basebackup[1].wal-method",
        "set by raftgres",
    );
    refused(
        &with("  basebackup: {pgdata: /elsewhere}\n"),
        "postgresql.basebackup.pgdata",
        "set by raftgres",
    );
}

#[test]
fn a_section_not_listed_is_an_unknown_key() {
    refused(
        &with("  wal_g: {command: /bin/true}\n"),
        "postgresql.wal_g",
        "",
    );
}

#[test]
fn the_lab_writes_method_sections_back_where_the_agent_reads_them() {
    use raftgres_config::schema::{PgAuthentication, Postgres};
    let mut pg = Postgres::new(
        "127.0.0.1:5432".into(),
        serde_json::from_value::<PgAuthentication>(serde_json::json!({
            "superuser": {"password": "su-secret"},
            "replication": {"password": "repl-secret"}
        }))
        .expect("authentication"),
    );
    pg.create_replica_methods = vec!["copy".into(), "basebackup".into()];
    pg.replica_method_sections.insert(
        "copy".into(),
        [("command".to_owned(), serde_json::json!("/bin/true"))].into(),
    );
    let text = serde_json::to_value(&pg).expect("serialize");
    assert_eq!(text["copy"]["command"], "/bin/true", "{text}");
}
