//! The agent rejects bad settings files with an error naming the problem and
//! a non-zero exit, and refuses to run as root.

use raftgres_tests::{agent_bin, shared_tempdir};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

const GOOD: &str = "scope: t\nname: n1\nnode_id: 1\ndata_dir: /tmp/raftgres-bad-config-never-created\nraft:\n  listen: 127.0.0.1:1\npostgresql:\n  listen: 127.0.0.1:2\nmembers:\n  - {id: 1, name: n1, raft_addr: \"127.0.0.1:1\"}\n";

/// Runs the agent on `config` as a non-root user, as in production.
fn run_agent(config: &str) -> (i32, String) {
    let dir = shared_tempdir("raftgres-bad-config-");
    let path = dir.path().join("agent.yml");
    std::fs::write(&path, config).expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut command = Command::new(agent_bin());
    command
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_BACKTRACE")
        // The Postgres passwords, so that the checks reach each case's
        // fault (a password in this world-readable file is refused).
        .env(
            "RAFTGRES_POSTGRESQL__AUTHENTICATION__SUPERUSER__PASSWORD",
            "bad-config-superuser",
        )
        .env(
            "RAFTGRES_POSTGRESQL__AUTHENTICATION__REPLICATION__PASSWORD",
            "bad-config-replication",
        );
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .expect("a postgres user to run the agent as");
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let out = command.output().expect("run the agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_files_are_rejected_with_the_key_named() {
    let cases = [
        (
            "unknown key",
            GOOD.replace("raft:\n  listen", "raft:\n  lisen"),
            "raft.lisen",
        ),
        (
            "unknown top-level key",
            format!("{GOOD}colour: blue\n"),
            "colour",
        ),
        (
            "wrong type",
            GOOD.replace("node_id: 1", "node_id: abc"),
            "node_id",
        ),
        (
            "missing member list",
            GOOD[..GOOD.find("members:").expect("members")].to_owned(),
            "members",
        ),
        (
            "empty member list",
            format!(
                "{}members: []\n",
                &GOOD[..GOOD.find("members:").expect("members")]
            ),
            "members",
        ),
        (
            "a host name in the REST allowlist",
            format!("{GOOD}restapi:\n  allowlist: [10.0.0.0/24, db1.example]\n"),
            "restapi.allowlist[1]",
        ),
        (
            "bad address",
            GOOD.replace("listen: 127.0.0.1:1", "listen: nowhere"),
            "raft.listen",
        ),
        (
            "no postgresql section on a database member",
            GOOD.replace("postgresql:\n  listen: 127.0.0.1:2\n", ""),
            "postgresql",
        ),
        (
            "postgresql parameter the agent owns",
            GOOD.replace(
                "listen: 127.0.0.1:2\n",
                "listen: 127.0.0.1:2\n  parameters: {port: 1}\n",
            ),
            "postgresql.parameters.port",
        ),
        (
            "relative pgbouncer databases file",
            format!("{GOOD}pgbouncer:\n  databases_file: databases.ini\n  listen: 127.0.0.1:3\n"),
            "pgbouncer.databases_file",
        ),
        (
            "pgbouncer on Postgres' port",
            format!("{GOOD}pgbouncer:\n  databases_file: /d.ini\n  listen: 127.0.0.1:2\n"),
            "pgbouncer.listen",
        ),
        (
            "unknown pgbouncer key",
            format!(
                "{GOOD}pgbouncer:\n  databases_file: /d.ini\n  listen: 127.0.0.1:3\n  pool_size: 5\n"
            ),
            "pgbouncer.pool_size",
        ),
        ("YAML syntax", "name: [unclosed\n".to_owned(), "agent.yml"),
    ];
    for (what, config, key) in cases {
        let (code, stderr) = run_agent(&config);
        assert_ne!(code, 0, "{what}: the agent accepted it");
        assert!(
            stderr.contains(key),
            "{what}: the error does not name {key:?}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "{what}: the agent panicked: {stderr}"
        );
    }
}

#[test]
fn the_agent_refuses_to_run_as_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: this check needs root, and CI runs as root");
        return;
    }
    let out = Command::new(agent_bin())
        .args(["--config", "/nonexistent.yml"])
        .output()
        .expect("run the agent");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refuses to run as root"), "{stderr}");
}
