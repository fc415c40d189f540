//! From the merged tree to the [`schema`], every error naming its dotted key
//! (`raft.listen`, `members[1].id`) and, when the value came from the
//! environment, the variable that set it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use config::{Value, ValueKind};
use serde::Deserialize;

use crate::ConfigError;
use crate::de::{Problem, Strict};
use crate::schema;

/// What every error needs besides the key: the file, and which keys came from
/// environment variables.
pub(crate) struct Ctx {
    path: PathBuf,
    env_vars: BTreeMap<String, String>,
}

impl Ctx {
    pub(crate) fn new(path: PathBuf, env_vars: BTreeMap<String, String>) -> Self {
        Self { path, env_vars }
    }

    pub(crate) fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key: key.to_owned(),
            reason: reason.into(),
            env_var: self.env_var(key),
        }
    }

    /// Turns a validation outcome into an error naming `key`.
    pub(crate) fn check(&self, key: &str, outcome: Result<(), String>) -> Result<(), ConfigError> {
        outcome.map_err(|reason| self.invalid(key, reason))
    }

    /// `key`, which must be given, is not.
    pub(crate) fn missing(&self, key: &str) -> ConfigError {
        let hint = hint(key).unwrap_or("give it a value");
        self.invalid(key, format!("is missing: {hint}"))
    }

    fn unknown(&self, key: &str, known: &[&str]) -> ConfigError {
        ConfigError::UnknownKey {
            path: self.path.clone(),
            key: key.to_owned(),
            known: known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            env_var: self.env_var(key),
        }
    }

    /// The variable that set `key` or something inside it: a variable for
    /// `raft.listen` turns a scalar `raft` into a section.
    fn env_var(&self, key: &str) -> Option<String> {
        self.env_vars
            .iter()
            .find(|(k, _)| {
                k.strip_prefix(key)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .map(|(_, var)| var.clone())
    }

    fn problem(&self, key: &str, problem: Problem) -> ConfigError {
        match problem {
            Problem::Unknown { known } => self.unknown(key, known),
            Problem::Missing { field } if key.is_empty() => self.missing(field),
            Problem::Missing { field } => self.missing(&format!("{key}.{field}")),
            Problem::Empty => {
                let hint = match hint(key) {
                    Some(hint) => hint,
                    None if key.ends_with(']') => "give it a value, or delete the entry",
                    None => "give it a value, or delete the line to use the default",
                };
                self.invalid(key, format!("is empty: {hint}"))
            }
            Problem::Invalid(reason) => self.invalid(key, reason),
        }
    }
}

/// Reads the merged tree as the schema.
pub(crate) fn agent(
    ctx: &Ctx,
    root: config::Map<String, Value>,
) -> Result<schema::Agent, ConfigError> {
    witness_has_no_postgresql(ctx, &root)?;
    let mut root = root;
    let sections = replica_method_sections(ctx, &mut root)?;
    let root = Value::new(None, ValueKind::Table(root));
    let mut agent: schema::Agent = serde_path_to_error::deserialize(Strict(root)).map_err(|e| {
        let key = match e.path().to_string() {
            // How the library names the top level.
            root if root == "." => String::new(),
            key => key,
        };
        ctx.problem(&key, e.into_inner())
    })?;
    if let Some(pg) = agent.postgresql.as_mut() {
        pg.replica_method_sections = sections;
    }
    Ok(agent)
}

/// The keys of the `postgresql` section, as the schema knows them: what
/// it answers for a key it does not know.
pub(crate) fn postgres_keys() -> &'static [&'static str] {
    let mut probe = config::Map::new();
    probe.insert("\u{1}".to_owned(), Value::new(None, ValueKind::Nil));
    match schema::Postgres::deserialize(Strict(Value::new(None, ValueKind::Table(probe)))) {
        Err(Problem::Unknown { known }) => known,
        _ => &[],
    }
}

/// Takes the section of each custom method `postgresql.create_replica_methods`
/// names (Patroni's `postgresql.<method>`) out of `postgresql`, read as
/// keys and values; the rules check them. A list the schema cannot read
/// takes nothing: the schema then names the problem.
fn replica_method_sections(
    ctx: &Ctx,
    root: &mut config::Map<String, Value>,
) -> Result<BTreeMap<String, BTreeMap<String, serde_json::Value>>, ConfigError> {
    let mut sections = BTreeMap::new();
    let Some(ValueKind::Table(pg)) = root.get_mut("postgresql").map(|v| &mut v.kind) else {
        return Ok(sections);
    };
    let Some(listed) = pg.get("create_replica_methods") else {
        return Ok(sections);
    };
    let Ok(names) = Vec::<String>::deserialize(Strict(listed.clone())) else {
        return Ok(sections);
    };
    let known = postgres_keys();
    for name in names {
        if name == schema::BASEBACKUP_METHOD || known.contains(&name.as_str()) {
            continue;
        }
        let Some(section) = pg.remove(&name) else {
            continue;
        };
        let key = format!("postgresql.{name}");
        let read = serde_path_to_error::deserialize(Strict(section)).map_err(|e| {
            let inner = e.path().to_string();
            let key = if inner == "." {
                key.clone()
            } else {
                format!("{key}.{inner}")
            };
            ctx.problem(&key, e.into_inner())
        })?;
        sections.insert(name, read);
    }
    Ok(sections)
}

/// Whether a member has a `postgresql` section depends on `witness`, and a
/// witness's must be absent whatever it holds: a file or an environment
/// shared with the database members is the usual cause, and it should be
/// told so before the schema complains about what the section lacks.
fn witness_has_no_postgresql(
    ctx: &Ctx,
    root: &config::Map<String, Value>,
) -> Result<(), ConfigError> {
    let Some(witness) = root.get("witness") else {
        return Ok(());
    };
    let witness =
        bool::deserialize(Strict(witness.clone())).map_err(|p| ctx.problem("witness", p))?;
    if witness && root.contains_key("postgresql") {
        return Err(ctx.invalid(
            "postgresql",
            "a witness runs no Postgres; remove this section",
        ));
    }
    Ok(())
}

/// What to write where a value must be given: every key the schema
/// requires, and `members` and `postgresql`, which the rules require.
/// Indices are left out: `members[2].id` is `members[].id` here.
fn hint(key: &str) -> Option<&'static str> {
    let mut generic = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => in_index = true,
            ']' => {
                in_index = false;
                generic.push_str("[]");
            }
            _ if in_index => {}
            _ => generic.push(c),
        }
    }
    Some(match generic.as_str() {
        "scope" => "set it to the cluster name, e.g. `scope: demo`",
        "name" => "set it to this member's name, e.g. `name: node1`",
        "node_id" => "set it to this member's Raft id, e.g. `node_id: 1`",
        "data_dir" => "set it to an absolute directory, e.g. `data_dir: /var/lib/raftgres/node1`",
        "raft" => "add a `raft:` section with at least `listen`, e.g. `listen: 127.0.0.1:7101`",
        "raft.listen" => {
            "set it to the address the gRPC server binds, e.g. `listen: 127.0.0.1:7101`"
        }
        "members" => "list every initial voter with id, name and raft_addr",
        "members[].id" => "set it to this voter's Raft id",
        "members[].name" => "set it to this voter's member name",
        "members[].raft_addr" => {
            "set it to the host:port this voter's Raft server is reached at, like \
             10.0.0.1:7101, node1.example:7101 or [::1]:7101"
        }
        "postgresql" => {
            "every member except a witness runs Postgres; add a `postgresql:` section with \
             at least `listen`, e.g. `listen: 127.0.0.1:5432`"
        }
        "postgresql.listen" => {
            "set it to the address Postgres listens on, e.g. `listen: 127.0.0.1:5432`"
        }
        "postgresql.authentication" => {
            "give the superuser and replication logins, e.g. `authentication: {superuser: \
             {username: postgres, password_file: /etc/raftgres/superuser.pw}, replication: \
             {username: replicator, password_file: /etc/raftgres/replication.pw}}`; \
             PostgreSQL takes no login over TCP without a password"
        }
        "restapi.authentication.username" => {
            "set it to the user name clients send with HTTP basic auth to call the mutating \
             endpoints, e.g. `username: admin`, or remove the `authentication` section to \
             disable those endpoints"
        }
        "restapi.authentication.password" => {
            "set it to the password clients send with HTTP basic auth, here or through \
             RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD, or remove the `authentication` \
             section to disable the mutating endpoints"
        }
        "pgbouncer.databases_file" => {
            "set it to the absolute path of the [databases] file pgbouncer.ini includes, \
             e.g. `databases_file: /etc/pgbouncer/raftgres-databases.ini`"
        }
        "pgbouncer.listen" => {
            "set it to the address pgbouncer listens on, e.g. `listen: 127.0.0.1:6432`"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tests::{every_key, tree};

    #[derive(Clone)]
    enum Step {
        Key(String),
        Index(usize),
    }

    /// Every key in `kind`, as the steps that reach it.
    fn keys(kind: &ValueKind, at: &[Step], out: &mut Vec<Vec<Step>>) {
        let mut into = |step: Step, value: &Value, is_key: bool| {
            let steps = [at, &[step]].concat();
            if is_key {
                out.push(steps.clone());
            }
            keys(&value.kind, &steps, out);
        };
        match kind {
            ValueKind::Table(table) => {
                for (key, value) in table {
                    into(Step::Key(key.clone()), value, true);
                }
            }
            ValueKind::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    into(Step::Index(index), item, false);
                }
            }
            _ => {}
        }
    }

    fn remove(kind: &mut ValueKind, steps: &[Step]) {
        match (kind, steps) {
            (ValueKind::Table(table), [Step::Key(key)]) => {
                table.remove(key);
            }
            (ValueKind::Table(table), [Step::Key(key), rest @ ..]) => {
                if let Some(value) = table.get_mut(key) {
                    remove(&mut value.kind, rest);
                }
            }
            (ValueKind::Array(items), [Step::Index(index), rest @ ..]) => {
                remove(&mut items[*index].kind, rest);
            }
            _ => panic!("no such key"),
        }
    }

    /// Leaving out any one key of a file that has them all: when the schema
    /// misses it, the message says what to write there.
    #[test]
    fn every_key_the_schema_requires_says_what_to_write() {
        let ctx = Ctx::new("agent.yml".into(), BTreeMap::new());
        let full = ValueKind::Table(tree(&every_key().to_yaml().expect("UTF-8 paths")));
        let mut all = Vec::new();
        keys(&full, &[], &mut all);
        let mut required = 0;
        for steps in all {
            let mut pruned = full.clone();
            remove(&mut pruned, &steps);
            let ValueKind::Table(root) = pruned else {
                panic!("the top level is a table");
            };
            if let Err(e) = agent(&ctx, root)
                && e.to_string().contains("is missing")
            {
                required += 1;
                assert!(!e.to_string().contains("give it a value"), "{e}");
            }
        }
        // scope, name, node_id, data_dir, raft, raft.listen, the three keys of
        // a member, postgresql.listen, postgresql.authentication, the two of
        // restapi.authentication and of pgbouncer.
        assert_eq!(required, 15);
    }
}
