//! What a re-read settings file changes in a running agent: which keys it
//! can take at once, and which only a restart (or the cluster) applies.

use crate::AgentConfig;

/// The changed keys of a reload, by dotted key name, each in one list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Changed and applied by the running agent.
    pub applied: Vec<&'static str>,
    /// Changed, but the agent keeps the old value until it restarts: what
    /// it bound, the identity it joined the cluster with, where its data is.
    pub needs_restart: Vec<&'static str>,
    /// Changed, but read only when the cluster is first formed; a running
    /// cluster changes them with `PATCH /config` (`raftgresctl edit-config`).
    pub cluster_wide: Vec<&'static str>,
    /// Changed, but read only by an agent whose Raft store is empty, to form
    /// or join the group (`members`): nothing to apply, now or at a restart.
    pub first_start_only: Vec<&'static str>,
}

impl ReloadPlan {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
            && self.needs_restart.is_empty()
            && self.cluster_wide.is_empty()
            && self.first_start_only.is_empty()
    }
}

/// Compares the running settings with a freshly loaded (and so valid) file.
pub fn reload_plan(old: &AgentConfig, new: &AgentConfig) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    let mut applied = |key, changed: bool| {
        if changed {
            plan.applied.push(key);
        }
    };
    applied(
        "tags.nofailover",
        old.tags.nofailover != new.tags.nofailover,
    );
    applied(
        "tags.failover_priority",
        old.tags.failover_priority != new.tags.failover_priority,
    );
    applied("tags.nosync", old.tags.nosync != new.tags.nosync);
    applied(
        "restapi.authentication",
        old.restapi.authentication != new.restapi.authentication,
    );
    if let (Some(o), Some(n)) = (&old.postgresql, &new.postgresql) {
        applied("postgresql.parameters", o.parameters != n.parameters);
    }
    if let (Some(o), Some(n)) = (&old.pgbouncer, &new.pgbouncer) {
        applied("pgbouncer.admin_user", o.admin_user != n.admin_user);
        applied(
            "pgbouncer.admin_password",
            o.admin_password != n.admin_password,
        );
    }

    let mut restart = |key, changed: bool| {
        if changed {
            plan.needs_restart.push(key);
        }
    };
    restart("scope", old.scope != new.scope);
    restart("name", old.name != new.name);
    restart("node_id", old.node_id != new.node_id);
    restart("data_dir", old.data_dir != new.data_dir);
    restart("witness", old.witness != new.witness);
    let (o, n) = (&old.raft, &new.raft);
    restart("raft.listen", o.listen != n.listen);
    restart("raft.advertise", o.advertise != n.advertise);
    restart(
        "raft.heartbeat_interval_ms",
        o.heartbeat_interval != n.heartbeat_interval,
    );
    restart(
        "raft.election_timeout_min_ms",
        o.election_timeout_min != n.election_timeout_min,
    );
    restart(
        "raft.election_timeout_max_ms",
        o.election_timeout_max != n.election_timeout_max,
    );
    restart(
        "raft.snapshot_every_logs",
        o.snapshot_every_logs != n.snapshot_every_logs,
    );
    restart("raft.rpc_timeout_ms", o.rpc_timeout != n.rpc_timeout);
    restart("raft.tls_*_file", o.tls != n.tls);
    let (o, n) = (&old.restapi, &new.restapi);
    restart("restapi.listen", o.listen != n.listen);
    restart(
        "restapi.connect_address",
        o.connect_address != n.connect_address,
    );
    restart(
        "restapi TLS (certfile, keyfile, cafile, verify_client)",
        o.tls != n.tls,
    );
    restart(
        "restapi.authenticate_reads",
        o.authenticate_reads != n.authenticate_reads,
    );
    restart(
        "restapi.allowlist",
        o.allowlist != n.allowlist || o.allowlist_include_members != n.allowlist_include_members,
    );
    match (&old.postgresql, &new.postgresql) {
        (Some(o), Some(n)) => {
            restart("postgresql.listen", o.listen != n.listen);
            restart(
                "postgresql.connect_address",
                o.connect_address != n.connect_address,
            );
            restart("postgresql.bin_dir", o.bin_dir != n.bin_dir);
            restart("postgresql.data_dir", o.data_dir != n.data_dir);
            restart("postgresql.socket_dir", o.socket_dir != n.socket_dir);
            // An agent restart rewrites pg_hba.conf and the password file
            // and reloads Postgres. A changed password must be set in
            // Postgres first (ALTER ROLE on the primary): docs/security.md.
            restart(
                "postgresql.authentication",
                o.authentication != n.authentication,
            );
            restart("postgresql.pg_hba", o.pg_hba != n.pg_hba);
            restart("postgresql.pgpass", o.pgpass != n.pgpass);
            // The walreceiver's primary_conninfo and pg_hba.conf's members'
            // lines are written at start.
            restart("postgresql.tls", o.tls != n.tls);
            restart(
                "postgresql.restart_grace_ms",
                o.restart_grace != n.restart_grace,
            );
        }
        (None, None) => {}
        _ => restart("postgresql", true),
    }
    match (&old.pgbouncer, &new.pgbouncer) {
        (Some(o), Some(n)) => {
            restart(
                "pgbouncer.databases_file",
                o.databases_file != n.databases_file,
            );
            restart("pgbouncer.listen", o.listen != n.listen);
            restart("pgbouncer.dbname", o.dbname != n.dbname);
            restart("pgbouncer.write_db", o.write_db != n.write_db);
            restart("pgbouncer.read_db", o.read_db != n.read_db);
        }
        (None, None) => {}
        _ => restart("pgbouncer", true),
    }

    if old.members != new.members {
        plan.first_start_only.push("members");
    }

    let (o, n) = (&old.bootstrap, &new.bootstrap);
    let mut cluster = |key, changed: bool| {
        if changed {
            plan.cluster_wide.push(key);
        }
    };
    let (ot, nt) = (&o.timing, &n.timing);
    cluster("bootstrap.ttl_ms", ot.ttl != nt.ttl);
    cluster("bootstrap.loop_wait_ms", ot.loop_wait != nt.loop_wait);
    cluster(
        "bootstrap.retry_timeout_ms",
        o.retry_timeout != n.retry_timeout,
    );
    cluster("bootstrap.lease_margin_ms", ot.margin != nt.margin);
    cluster(
        "bootstrap.maximum_lag_on_failover",
        o.maximum_lag_on_failover != n.maximum_lag_on_failover,
    );
    plan
}

/// The settings the agent runs with after a reload: `running` with every
/// key of [`ReloadPlan::applied`] taken from `loaded`, and every other key
/// kept as it was, so what the agent reports matches what it does.
pub fn reloaded(running: &AgentConfig, loaded: &AgentConfig) -> AgentConfig {
    let mut next = running.clone();
    next.tags = loaded.tags.clone();
    next.restapi.authentication = loaded.restapi.authentication.clone();
    if let (Some(pg), Some(new)) = (next.postgresql.as_mut(), &loaded.postgresql) {
        pg.parameters = new.parameters.clone();
    }
    if let (Some(pgb), Some(new)) = (next.pgbouncer.as_mut(), &loaded.pgbouncer) {
        pgb.admin_user = new.admin_user.clone();
        pgb.admin_password = new.admin_password.clone();
    }
    next
}

#[cfg(test)]
mod tests {
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
        let cases = [
            (
                BASE.replace("work_mem: 4MB", "work_mem: 7MB"),
                "postgresql.parameters",
            ),
            (
                BASE.replace("    work_mem: 4MB\n", "    work_mem: 4MB\n    geqo: off\n"),
                "postgresql.parameters",
            ),
            (
                BASE.replace("name: node1\n", "name: node1\ntags: {nofailover: true}\n"),
                "tags.nofailover",
            ),
            (
                BASE.replace(
                    "name: node1\n",
                    "name: node1\ntags: {failover_priority: 5}\n",
                ),
                "tags.failover_priority",
            ),
            (
                BASE.replace("    password: old\n", "    password: new\n"),
                "restapi.authentication",
            ),
            (
                BASE.replace(
                    "  authentication:\n    username: admin\n    password: old\n",
                    "",
                ),
                "restapi.authentication",
            ),
            (
                BASE.replace("  admin_password: old\n", "  admin_password: new\n"),
                "pgbouncer.admin_password",
            ),
            (
                BASE.replace(
                    "  admin_password: old\n",
                    "  admin_user: pgb\n  admin_password: old\n",
                ),
                "pgbouncer.admin_user",
            ),
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
        let cases: Vec<(String, &[&str])> = vec![
            (BASE.replace("scope: demo", "scope: other"), &["scope"]),
            (
                BASE.replace("name: node1", "name: node9")
                    .replace("name: node1,", "name: node9,"),
                &["name"],
            ),
            (
                BASE.replace("node_id: 1", "node_id: 2")
                    .replace("{id: 1,", "{id: 2,"),
                &["node_id"],
            ),
            (
                BASE.replace("data_dir: /var/lib/raftgres/node1", "data_dir: /srv/node1"),
                // The Postgres directories default to inside it.
                &[
                    "data_dir",
                    "postgresql.data_dir",
                    "postgresql.pgpass",
                    "postgresql.socket_dir",
                ],
            ),
            (witness.to_owned(), &["witness", "postgresql"]),
            (
                BASE.replace(
                    "  listen: 127.0.0.1:7101\n",
                    "  listen: 127.0.0.1:7101\n  advertise: node1:7101\n",
                ),
                &["raft.advertise"],
            ),
            (
                BASE.replace(
                    "  listen: 127.0.0.1:7101\n",
                    "  listen: 127.0.0.1:7101\n  heartbeat_interval_ms: 110\n",
                ),
                &["raft.heartbeat_interval_ms"],
            ),
            (
                BASE.replace(
                    "  listen: 127.0.0.1:7101\n",
                    "  listen: 127.0.0.1:7101\n  election_timeout_min_ms: 400\n",
                ),
                &["raft.election_timeout_min_ms"],
            ),
            (
                BASE.replace(
                    "  listen: 127.0.0.1:7101\n",
                    "  listen: 127.0.0.1:7101\n  election_timeout_max_ms: 520\n",
                ),
                &["raft.election_timeout_max_ms"],
            ),
            (
                BASE.replace(
                    "  listen: 127.0.0.1:7101\n",
                    "  listen: 127.0.0.1:7101\n  snapshot_every_logs: 50\n",
                ),
                &["raft.snapshot_every_logs"],
            ),
            (
                BASE.replace(
                    "  listen: 127.0.0.1:7101\n",
                    "  listen: 127.0.0.1:7101\n  rpc_timeout_ms: 900\n",
                ),
                &["raft.rpc_timeout_ms"],
            ),
            (
                BASE.replace("127.0.0.1:7101\npostgresql", "127.0.0.1:7109\npostgresql")
                    .replace("\"127.0.0.1:7101\"", "\"127.0.0.1:7109\""),
                &["raft.listen", "raft.advertise"],
            ),
            (
                BASE.replace("listen: 127.0.0.1:8008", "listen: 127.0.0.1:8009"),
                &["restapi.listen", "restapi.connect_address"],
            ),
            (
                BASE.replace("listen: 127.0.0.1:5432", "listen: 127.0.0.1:5433"),
                &["postgresql.listen", "postgresql.connect_address"],
            ),
            (
                BASE.replace("  parameters:", "  bin_dir: /opt/pg/bin\n  parameters:"),
                &["postgresql.bin_dir"],
            ),
            (
                BASE.replace("{password: su}", "{username: admin, password: su}"),
                &["postgresql.authentication"],
            ),
            (
                BASE.replace("{password: repl}", "{password: other}"),
                &["postgresql.authentication"],
            ),
            (
                BASE.replace(
                    "  parameters:",
                    "  pg_hba: [\"host all all 10.0.0.0/8 scram-sha-256\"]\n  parameters:",
                ),
                &["postgresql.pg_hba"],
            ),
            (
                BASE.replace(
                    "  parameters:",
                    "  pgpass: /run/raftgres/pgpass\n  parameters:",
                ),
                &["postgresql.pgpass"],
            ),
            (
                BASE.replace("  parameters:", "  tls: {sslmode: disable}\n  parameters:"),
                &["postgresql.tls"],
            ),
            (
                BASE.replace("  parameters:", "  restart_grace_ms: 5000\n  parameters:"),
                &["postgresql.restart_grace_ms"],
            ),
            (
                BASE.replace("/etc/pgbouncer/db.ini", "/etc/pgbouncer/other.ini"),
                &["pgbouncer.databases_file"],
            ),
            (
                BASE.replace("listen: 127.0.0.1:6432", "listen: 127.0.0.1:6433"),
                &["pgbouncer.listen"],
            ),
            (
                BASE.replace(
                    "  admin_password: old\n",
                    "  admin_password: old\n  read_db: app_ro\n",
                ),
                &["pgbouncer.read_db"],
            ),
            (
                BASE.replace(
                    "  admin_password: old\n",
                    "  admin_password: old\n  dbname: app\n",
                ),
                &["pgbouncer.dbname", "pgbouncer.write_db"],
            ),
            (
                BASE[..BASE.find("pgbouncer:").expect("pgbouncer")].to_owned()
                    + &BASE[BASE.find("members:").expect("members")..],
                &["pgbouncer"],
            ),
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
            plan.applied.is_empty()
                && plan.needs_restart.is_empty()
                && plan.cluster_wide.is_empty(),
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
}
