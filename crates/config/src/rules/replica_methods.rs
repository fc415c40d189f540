//! `postgresql.create_replica_methods`, `postgresql.basebackup` and the
//! sections of custom methods, as Patroni reads them, minus what raftgres
//! does not build: `keep_data` (a method always writes into a fresh
//! directory, so a failing one leaves the old data intact) and `no_leader`
//! (a replica is created only from a running member).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::postgresql::command_line;
use crate::read::{Ctx, postgres_keys};
use crate::schema::BASEBACKUP_METHOD;
use crate::{ConfigError, ReplicaMethod};

const METHODS_KEY: &str = "postgresql.create_replica_methods";

/// pg_basebackup options the agent sets itself: a second value would
/// fight ours (where it writes, how it streams WAL, whom it logs in as)
/// or break what the agent reads (the progress lines).
const OURS: &[&str] = &[
    "D",
    "pgdata",
    "X",
    "wal-method",
    "S",
    "slot",
    "R",
    "write-recovery-conf",
    "d",
    "dbname",
    "h",
    "host",
    "p",
    "port",
    "U",
    "username",
    "P",
    "progress",
];

pub(super) fn methods(
    ctx: &Ctx,
    names: Vec<String>,
    basebackup: Option<Value>,
    mut sections: BTreeMap<String, BTreeMap<String, Value>>,
) -> Result<Vec<ReplicaMethod>, ConfigError> {
    if names.is_empty() {
        return Err(ctx.invalid(
            METHODS_KEY,
            "is empty: list at least one method, e.g. [basebackup]",
        ));
    }
    let options = basebackup_options(basebackup)
        .map_err(|(key, reason)| ctx.invalid(&format!("postgresql.basebackup{key}"), reason))?;
    let mut seen = BTreeSet::new();
    let mut methods = Vec::new();
    for name in names {
        if !seen.insert(name.clone()) {
            return Err(ctx.invalid(METHODS_KEY, format!("lists {name} twice")));
        }
        if name == BASEBACKUP_METHOD {
            methods.push(ReplicaMethod::Basebackup {
                options: options.clone(),
            });
            continue;
        }
        if postgres_keys().contains(&name.as_str()) || name.is_empty() {
            return Err(ctx.invalid(
                METHODS_KEY,
                format!(
                    "lists {name:?}, which is not a method name but a key of postgresql; \
                     name the method and its section otherwise, e.g. wal_g"
                ),
            ));
        }
        let key = format!("postgresql.{name}");
        let Some(section) = sections.remove(&name) else {
            return Err(ctx.invalid(
                &key,
                format!(
                    "is missing: {METHODS_KEY} lists {name}, so add a section \
                     `{name}: {{command: /path/to/program}}` under postgresql"
                ),
            ));
        };
        methods.push(
            command_method(name, section)
                .map_err(|(k, reason)| ctx.invalid(&format!("{key}{k}"), reason))?,
        );
    }
    Ok(methods)
}

/// A key below the section that is wrong (`.command`), and why.
type Refusal = (String, String);

fn command_method(
    name: String,
    mut section: BTreeMap<String, Value>,
) -> Result<ReplicaMethod, Refusal> {
    let command = match section.remove("command") {
        Some(Value::String(line)) => {
            command_line(&line).map_err(|reason| (".command".to_owned(), reason))?
        }
        Some(other) => {
            return Err((
                ".command".into(),
                format!("expected a command line, got {other}"),
            ));
        }
        None => {
            return Err((
                ".command".into(),
                "is missing: give the program to run, e.g. `command: /usr/local/bin/restore`"
                    .into(),
            ));
        }
    };
    let no_params = switch(&mut section, "no_params")?;
    if switch(&mut section, "keep_data")? {
        return Err((
            ".keep_data".into(),
            "is not built: a method always writes into a fresh directory beside the data \
             directory, so that a failing one leaves the old data intact; remove the key"
                .into(),
        ));
    }
    if switch(&mut section, "no_leader")? {
        return Err((
            ".no_leader".into(),
            "is not built: raftgres creates a replica only from a running member; remove \
             the key"
                .into(),
        ));
    }
    let options = section
        .into_iter()
        .map(|(key, value)| {
            let text = scalar(&value).ok_or_else(|| {
                (
                    format!(".{key}"),
                    format!("expected a single value (passed as --{key}=VALUE), got {value}"),
                )
            })?;
            Ok((key, text))
        })
        .collect::<Result<_, Refusal>>()?;
    Ok(ReplicaMethod::Command {
        name,
        command,
        no_params,
        options,
    })
}

/// A true/false key, also as the text an environment variable gives.
fn switch(section: &mut BTreeMap<String, Value>, key: &str) -> Result<bool, Refusal> {
    match section.remove(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(other) => Err((
            format!(".{key}"),
            format!("expected true or false, got {other}"),
        )),
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Patroni's `postgresql.basebackup`: a list whose items are a flag
/// (`verbose`) or a one-key section (`{max-rate: 100M}`), or a section of
/// keys; each becomes `--flag` or `--key=value`.
fn basebackup_options(value: Option<Value>) -> Result<Vec<String>, Refusal> {
    let option = |at: String, key: &str, value: Option<&Value>| -> Result<String, Refusal> {
        let name = key.trim_start_matches('-');
        if name.is_empty() {
            return Err((at, "is empty: name a pg_basebackup option".into()));
        }
        if OURS.contains(&name) {
            return Err((
                at,
                format!(
                    "{key} is set by raftgres itself (it chooses where the copy goes, how WAL \
                     streams, whom it logs in as, and reads the progress); remove it"
                ),
            ));
        }
        match value {
            None => Ok(format!("--{name}")),
            Some(value) => {
                let text = scalar(value).ok_or_else(|| {
                    (
                        at,
                        format!("expected a single value for {key}, got {value}"),
                    )
                })?;
                Ok(format!("--{name}={text}"))
            }
        }
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(flag) => option(format!("[{i}]"), flag, None),
                Value::Object(entry) if entry.len() == 1 => {
                    let (key, value) = entry.iter().next().expect("one entry");
                    option(format!("[{i}].{key}"), key, Some(value))
                }
                other => Err((
                    format!("[{i}]"),
                    format!(
                        "expected a flag or a one-key section like {{max-rate: 100M}}, got {other}"
                    ),
                )),
            })
            .collect(),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(key, value)| option(format!(".{key}"), key, Some(value)))
            .collect(),
        Some(other) => Err((
            String::new(),
            format!("expected a list of options or a section of keys, got {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_of_patroni_s_forms_become_options() {
        assert_eq!(
            basebackup_options(Some(json!([{"max-rate": "100M"}, "verbose"]))).unwrap(),
            ["--max-rate=100M", "--verbose"]
        );
        assert_eq!(
            basebackup_options(Some(json!({"max-rate": "100M", "checkpoint": "spread"}))).unwrap(),
            ["--checkpoint=spread", "--max-rate=100M"]
        );
        assert!(basebackup_options(None).unwrap().is_empty());
    }

    #[test]
    fn options_raftgres_sets_are_refused_by_their_key() {
        for (value, key) in [
            (json!(["progress"]), "[0]"),
            (
                json!(["verbose", {"wal-method": "fetch"}]),
                "[1].wal-method",
            ),
            (json!({"pgdata": "/tmp/x"}), ".pgdata"),
            (json!({"-D": "/tmp/x"}), ".-D"),
            (json!(["R"]), "[0]"),
            (json!({"slot": "s"}), ".slot"),
            (json!({"dbname": "x"}), ".dbname"),
        ] {
            let (at, reason) = basebackup_options(Some(value.clone())).unwrap_err();
            assert_eq!(at, key, "{value}");
            assert!(reason.contains("set by raftgres"), "{reason}");
        }
    }

    #[test]
    fn a_section_s_other_keys_become_options_and_keep_data_is_refused() {
        let section = |extra: Value| -> BTreeMap<String, Value> {
            let mut map: BTreeMap<String, Value> =
                serde_json::from_value(extra).expect("a section");
            map.insert("command".into(), json!("/bin/true --x"));
            map
        };
        let method = command_method(
            "wal_g".into(),
            section(json!({"no_params": "true", "envdir": "/etc/wal-g", "threads": 4})),
        )
        .unwrap();
        assert_eq!(
            method,
            ReplicaMethod::Command {
                name: "wal_g".into(),
                command: vec!["/bin/true".into(), "--x".into()],
                no_params: true,
                options: vec![
                    ("envdir".into(), "/etc/wal-g".into()),
                    ("threads".into(), "4".into())
                ],
            }
        );
        for key in ["keep_data", "no_leader"] {
            let (at, reason) =
                command_method("wal_g".into(), section(json!({key: true}))).unwrap_err();
            assert_eq!(at, format!(".{key}"));
            assert!(reason.contains("not built"), "{reason}");
        }
        let (at, _) = command_method("wal_g".into(), BTreeMap::new()).unwrap_err();
        assert_eq!(at, ".command");
    }
}
