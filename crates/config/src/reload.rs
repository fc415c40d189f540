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

/// When a changed key takes effect.
#[derive(Clone, Copy)]
enum Takes {
    /// At once: [`reloaded`] copies it from the new file.
    Now(fn(&mut AgentConfig, &AgentConfig)),
    Restart,
    Cluster,
    FirstStart,
}

/// One line of [`KEYS`].
struct Key {
    /// As the plan names it.
    name: &'static str,
    takes: Takes,
    changed: fn(&AgentConfig, &AgentConfig) -> bool,
}

/// Changed inside an optional section both have; a section that comes or
/// goes is a line of its own.
fn within<S, T: PartialEq>(old: Option<&S>, new: Option<&S>, field: fn(&S) -> &T) -> bool {
    matches!((old, new), (Some(o), Some(n)) if field(o) != field(n))
}

/// A line for one field of [`AgentConfig`]: `section.field`, or
/// `section?field` inside an optional section, or `section?` for that
/// section coming or going. `Now` lines also copy the field.
macro_rules! key {
    (Now $name:literal, $($path:tt)+) => {
        Key {
            takes: Now(take!($($path)+)),
            ..key!(Restart $name, $($path)+)
        }
    };
    ($takes:ident $name:literal, $section:ident ?) => {
        Key {
            name: $name,
            takes: $takes,
            changed: |o, n| o.$section.is_some() != n.$section.is_some(),
        }
    };
    ($takes:ident $name:literal, $section:ident ? $field:ident) => {
        Key {
            name: $name,
            takes: $takes,
            changed: |o, n| within(o.$section.as_ref(), n.$section.as_ref(), |s| &s.$field),
        }
    };
    ($takes:ident $name:literal, $($field:ident).+) => {
        Key {
            name: $name,
            takes: $takes,
            changed: |o, n| o.$($field).+ != n.$($field).+,
        }
    };
}

/// Copies a field from the loaded settings into the running ones.
macro_rules! take {
    ($section:ident ? $field:ident) => {
        |run, new| {
            if let (Some(run), Some(new)) = (run.$section.as_mut(), &new.$section) {
                run.$field.clone_from(&new.$field);
            }
        }
    };
    ($($field:ident).+) => {
        |run, new| run.$($field).+.clone_from(&new.$($field).+)
    };
}

use Takes::{Cluster, FirstStart, Now, Restart};

/// Every key of the settings file and when a change to it takes effect, in
/// the order the plan lists them.
const KEYS: &[Key] = &[
    key!(Now "tags.nofailover", tags.nofailover),
    key!(Now "tags.failover_priority", tags.failover_priority),
    key!(Now "tags.nosync", tags.nosync),
    key!(Now "tags.noloadbalance", tags.noloadbalance),
    key!(Now "tags.clonefrom", tags.clonefrom),
    key!(Now "tags.replicatefrom", tags.replicatefrom),
    key!(Now "tags (the operator's own)", tags.custom),
    key!(Now "restapi.authentication", restapi.authentication),
    key!(Now "postgresql.parameters", postgresql?parameters),
    key!(Now "postgresql.callbacks", postgresql?callbacks),
    key!(Now "postgresql.pre_promote", postgresql?pre_promote),
    key!(Now "postgresql.before_stop", postgresql?before_stop),
    key!(Now "postgresql.callback_timeout_ms", postgresql?callback_timeout),
    // Read at each clone; the methods' sections and `basebackup` are in it.
    key!(Now "postgresql.create_replica_methods", postgresql?create_replica_methods),
    key!(Now "pgbouncer.admin_user", pgbouncer?admin_user),
    key!(Now "pgbouncer.admin_password", pgbouncer?admin_password),
    // What the agent bound, the identity it joined the cluster with, where
    // its data is.
    key!(Restart "scope", scope),
    key!(Restart "name", name),
    key!(Restart "node_id", node_id),
    key!(Restart "data_dir", data_dir),
    key!(Restart "witness", witness),
    key!(Restart "raft.listen", raft.listen),
    key!(Restart "raft.advertise", raft.advertise),
    key!(Restart "raft.heartbeat_interval_ms", raft.heartbeat_interval),
    key!(Restart "raft.election_timeout_min_ms", raft.election_timeout_min),
    key!(Restart "raft.election_timeout_max_ms", raft.election_timeout_max),
    key!(Restart "raft.snapshot_every_logs", raft.snapshot_every_logs),
    key!(Restart "raft.rpc_timeout_ms", raft.rpc_timeout),
    key!(Restart "raft.tls_*_file", raft.tls),
    key!(Restart "restapi.listen", restapi.listen),
    key!(Restart "restapi.connect_address", restapi.connect_address),
    key!(Restart "restapi TLS (certfile, keyfile, cafile, verify_client)", restapi.tls),
    key!(Restart "restapi.authenticate_reads", restapi.authenticate_reads),
    Key {
        name: "restapi.allowlist",
        takes: Restart,
        changed: |o, n| {
            o.restapi.allowlist != n.restapi.allowlist
                || o.restapi.allowlist_include_members != n.restapi.allowlist_include_members
        },
    },
    key!(Restart "postgresql.listen", postgresql?listen),
    key!(Restart "postgresql.connect_address", postgresql?connect_address),
    key!(Restart "postgresql.bin_dir", postgresql?bin_dir),
    key!(Restart "postgresql.data_dir", postgresql?data_dir),
    key!(Restart "postgresql.socket_dir", postgresql?socket_dir),
    // An agent restart rewrites pg_hba.conf and the password file and
    // reloads Postgres. A changed password must be set in Postgres first
    // (ALTER ROLE on the primary): docs/security.md.
    key!(Restart "postgresql.authentication", postgresql?authentication),
    key!(Restart "postgresql.pg_hba", postgresql?pg_hba),
    key!(Restart "postgresql.pgpass", postgresql?pgpass),
    // The walreceiver's primary_conninfo and pg_hba.conf's members' lines
    // are written at start.
    key!(Restart "postgresql.tls", postgresql?tls),
    key!(Restart "postgresql.restart_grace_ms", postgresql?restart_grace),
    key!(Restart "postgresql", postgresql?),
    key!(Restart "pgbouncer.databases_file", pgbouncer?databases_file),
    key!(Restart "pgbouncer.listen", pgbouncer?listen),
    key!(Restart "pgbouncer.dbname", pgbouncer?dbname),
    key!(Restart "pgbouncer.write_db", pgbouncer?write_db),
    key!(Restart "pgbouncer.read_db", pgbouncer?read_db),
    key!(Restart "pgbouncer", pgbouncer?),
    // The log's writer and filter are set up once, before anything logs.
    key!(Restart "log.type", log.kind),
    key!(Restart "log.level, log.loggers", log.filter),
    key!(Restart "log.dir", log.dir),
    key!(Restart "log.file_num", log.file_num),
    key!(Restart "log.rotation", log.rotation),
    key!(FirstStart "members", members),
    key!(Cluster "bootstrap.ttl_ms", bootstrap.timing.ttl),
    key!(Cluster "bootstrap.loop_wait_ms", bootstrap.timing.loop_wait),
    key!(Cluster "bootstrap.retry_timeout_ms", bootstrap.retry_timeout),
    key!(Cluster "bootstrap.lease_margin_ms", bootstrap.timing.margin),
    key!(Cluster "bootstrap.maximum_lag_on_failover", bootstrap.maximum_lag_on_failover),
];

/// Compares the running settings with a freshly loaded (and so valid) file.
pub fn reload_plan(old: &AgentConfig, new: &AgentConfig) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    for key in KEYS.iter().filter(|key| (key.changed)(old, new)) {
        let list = match key.takes {
            Now(_) => &mut plan.applied,
            Restart => &mut plan.needs_restart,
            Cluster => &mut plan.cluster_wide,
            FirstStart => &mut plan.first_start_only,
        };
        list.push(key.name);
    }
    plan
}

/// The settings the agent runs with after a reload: `running` with every
/// key of [`ReloadPlan::applied`] taken from `loaded`, and every other key
/// kept as it was, so what the agent reports matches what it does.
pub fn reloaded(running: &AgentConfig, loaded: &AgentConfig) -> AgentConfig {
    let mut next = running.clone();
    for key in KEYS {
        if let Now(take) = key.takes {
            take(&mut next, loaded);
        }
    }
    next
}

#[cfg(test)]
mod tests;
