//! The dynamic config as the REST API shows it (`GET /config`) and edits it
//! (`PATCH /config`, a JSON merge patch, RFC 7396). Pure: JSON in, JSON or
//! [`ConfigValues`] out, every error naming the dotted key.

use std::collections::BTreeMap;

use raftgres_state::{ConfigValues, LeaseTiming, SyncMode};
use serde_json::{Map, Value};

/// A patch or document that does not fit the config's shape. Answered
/// with 400; each message names the key and what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfigDocError {
    #[error("the config patch must be a JSON object of keys to change")]
    NotAnObject,
    #[error("unknown config key `{key}`{hint}")]
    UnknownKey { key: String, hint: &'static str },
    #[error(
        "config key `{key}` cannot be deleted (only postgresql.parameters.* can): \
         set it to a value instead of null"
    )]
    CannotDelete { key: String },
    #[error("config key `{key}` must be {expected}")]
    WrongType { key: String, expected: &'static str },
    #[error("config key `{key}` is missing")]
    Missing { key: String },
}

const TTL_MS: &str = "ttl_ms";
const LOOP_WAIT_MS: &str = "loop_wait_ms";
const RETRY_TIMEOUT_MS: &str = "retry_timeout_ms";
const LEASE_MARGIN_MS: &str = "lease_margin_ms";
const MAXIMUM_LAG_ON_FAILOVER: &str = "maximum_lag_on_failover";
const SYNCHRONOUS_MODE: &str = "synchronous_mode";
const SYNCHRONOUS_MODE_STRICT: &str = "synchronous_mode_strict";
const SYNCHRONOUS_NODE_COUNT: &str = "synchronous_node_count";
const POSTGRESQL: &str = "postgresql";
const PARAMETERS: &str = "parameters";
const PAUSE: &str = "pause";

const TOP_LEVEL_KEYS: [&str; 10] = [
    TTL_MS,
    LOOP_WAIT_MS,
    RETRY_TIMEOUT_MS,
    LEASE_MARGIN_MS,
    MAXIMUM_LAG_ON_FAILOVER,
    SYNCHRONOUS_MODE,
    SYNCHRONOUS_MODE_STRICT,
    SYNCHRONOUS_NODE_COUNT,
    POSTGRESQL,
    PAUSE,
];

/// Patroni's keys whose raftgres name differs, so a Patroni script's patch
/// is told what to send rather than just refused.
const PATRONI_RENAMES: [(&str, &str); 3] = [
    ("ttl", ": use ttl_ms (milliseconds)"),
    ("loop_wait", ": use loop_wait_ms (milliseconds)"),
    ("retry_timeout", ": use retry_timeout_ms (milliseconds)"),
];

fn unknown(key: String, name: &str) -> ConfigDocError {
    let hint = PATRONI_RENAMES
        .iter()
        .find(|(patroni, _)| *patroni == name)
        .map_or("", |(_, hint)| *hint);
    ConfigDocError::UnknownKey { key, hint }
}

/// The config document of `GET /config`.
pub(crate) fn to_document(values: &ConfigValues) -> Value {
    let parameters: Map<String, Value> = values
        .postgresql_parameters
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    let mut postgresql = Map::new();
    postgresql.insert(PARAMETERS.into(), Value::Object(parameters));
    let mut doc = Map::new();
    doc.insert(TTL_MS.into(), values.timing.ttl_ms().into());
    doc.insert(LOOP_WAIT_MS.into(), values.timing.loop_wait_ms().into());
    doc.insert(RETRY_TIMEOUT_MS.into(), values.retry_timeout_ms.into());
    doc.insert(LEASE_MARGIN_MS.into(), values.timing.margin_ms().into());
    doc.insert(
        MAXIMUM_LAG_ON_FAILOVER.into(),
        values.maximum_lag_on_failover.into(),
    );
    doc.insert(
        SYNCHRONOUS_MODE.into(),
        serde_json::to_value(values.synchronous_mode).unwrap_or(Value::Null),
    );
    doc.insert(
        SYNCHRONOUS_MODE_STRICT.into(),
        values.synchronous_mode_strict.into(),
    );
    doc.insert(
        SYNCHRONOUS_NODE_COUNT.into(),
        values.synchronous_node_count.into(),
    );
    doc.insert(POSTGRESQL.into(), Value::Object(postgresql));
    doc.insert(PAUSE.into(), values.pause.into());
    Value::Object(doc)
}

/// Reads a complete config document, strictly: every key present, none
/// unknown, each of its type. Parameter values may be strings, numbers or
/// booleans (Patroni scripts send `"max_connections": 100`); they are kept
/// as the text Postgres will read.
pub(crate) fn from_document(doc: &Value) -> Result<ConfigValues, ConfigDocError> {
    let doc = doc.as_object().ok_or(ConfigDocError::NotAnObject)?;
    if let Some(key) = doc
        .keys()
        .find(|key| !TOP_LEVEL_KEYS.contains(&key.as_str()))
    {
        return Err(unknown(key.clone(), key));
    }
    let field = |key: &str| {
        doc.get(key).ok_or_else(|| ConfigDocError::Missing {
            key: key.to_owned(),
        })
    };
    let postgresql = field(POSTGRESQL)?
        .as_object()
        .ok_or_else(|| wrong_type(POSTGRESQL, "an object"))?;
    if let Some(key) = postgresql.keys().find(|key| *key != PARAMETERS) {
        return Err(unknown(format!("{POSTGRESQL}.{key}"), key));
    }
    let parameters = postgresql
        .get(PARAMETERS)
        .ok_or_else(|| ConfigDocError::Missing {
            key: format!("{POSTGRESQL}.{PARAMETERS}"),
        })?
        .as_object()
        .ok_or_else(|| wrong_type(&format!("{POSTGRESQL}.{PARAMETERS}"), "an object"))?;
    Ok(ConfigValues {
        timing: LeaseTiming::from_millis(
            unsigned(TTL_MS, field(TTL_MS)?)?,
            unsigned(LOOP_WAIT_MS, field(LOOP_WAIT_MS)?)?,
            unsigned(LEASE_MARGIN_MS, field(LEASE_MARGIN_MS)?)?,
        ),
        retry_timeout_ms: unsigned(RETRY_TIMEOUT_MS, field(RETRY_TIMEOUT_MS)?)?,
        maximum_lag_on_failover: unsigned(
            MAXIMUM_LAG_ON_FAILOVER,
            field(MAXIMUM_LAG_ON_FAILOVER)?,
        )?,
        synchronous_mode: synchronous_mode(field(SYNCHRONOUS_MODE)?)?,
        synchronous_mode_strict: boolean(SYNCHRONOUS_MODE_STRICT, field(SYNCHRONOUS_MODE_STRICT)?)?,
        synchronous_node_count: {
            let count = unsigned(SYNCHRONOUS_NODE_COUNT, field(SYNCHRONOUS_NODE_COUNT)?)?;
            u32::try_from(count).map_err(|_| {
                wrong_type(SYNCHRONOUS_NODE_COUNT, "an integer from 0 to 4294967295")
            })?
        },
        postgresql_parameters: parameters
            .iter()
            .map(|(name, value)| Ok((name.clone(), parameter(name, value)?)))
            .collect::<Result<BTreeMap<_, _>, ConfigDocError>>()?,
        pause: boolean(PAUSE, field(PAUSE)?)?,
    })
}

/// `current` with the merge patch `patch` applied. Deleting (`null`) is
/// allowed only for single parameters under `postgresql.parameters`, so a
/// patch can never leave a required key unset.
pub(crate) fn apply_patch(
    current: &ConfigValues,
    patch: &Value,
) -> Result<ConfigValues, ConfigDocError> {
    check_deletions(patch)?;
    let mut doc = to_document(current);
    merge(&mut doc, patch);
    from_document(&doc)
}

/// Looks at the patch before merging, because the merge turns a `null`
/// into an absent key and an unknown key set to `null` into nothing at all.
fn check_deletions(patch: &Value) -> Result<(), ConfigDocError> {
    let patch = patch.as_object().ok_or(ConfigDocError::NotAnObject)?;
    for (key, value) in patch {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            return Err(unknown(key.clone(), key));
        }
        if value.is_null() {
            return Err(ConfigDocError::CannotDelete { key: key.clone() });
        }
    }
    let Some(Value::Object(postgresql)) = patch.get(POSTGRESQL) else {
        return Ok(());
    };
    for (key, value) in postgresql {
        let dotted = format!("{POSTGRESQL}.{key}");
        if key != PARAMETERS {
            return Err(unknown(dotted, key));
        }
        if value.is_null() {
            return Err(ConfigDocError::CannotDelete { key: dotted });
        }
    }
    Ok(())
}

/// RFC 7396: objects merge key by key, `null` removes a key, anything else
/// replaces the target.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn wrong_type(key: &str, expected: &'static str) -> ConfigDocError {
    ConfigDocError::WrongType {
        key: key.to_owned(),
        expected,
    }
}

fn unsigned(key: &str, value: &Value) -> Result<u64, ConfigDocError> {
    value
        .as_u64()
        .ok_or_else(|| wrong_type(key, "a non-negative integer"))
}

fn boolean(key: &str, value: &Value) -> Result<bool, ConfigDocError> {
    value
        .as_bool()
        .ok_or_else(|| wrong_type(key, "true or false"))
}

/// Patroni's values: true, false, or "quorum".
fn synchronous_mode(value: &Value) -> Result<SyncMode, ConfigDocError> {
    match value {
        Value::Bool(false) => Ok(SyncMode::Off),
        Value::Bool(true) => Ok(SyncMode::On),
        Value::String(text) if text.eq_ignore_ascii_case("quorum") => Ok(SyncMode::Quorum),
        _ => Err(wrong_type(SYNCHRONOUS_MODE, "true, false or \"quorum\"")),
    }
}

fn parameter(name: &str, value: &Value) -> Result<String, ConfigDocError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(if *flag { "on" } else { "off" }.to_owned()),
        _ => Err(wrong_type(
            &format!("{POSTGRESQL}.{PARAMETERS}.{name}"),
            "a string, a number or a boolean",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values() -> ConfigValues {
        ConfigValues {
            timing: LeaseTiming::from_millis(3000, 500, 500),
            retry_timeout_ms: 1000,
            maximum_lag_on_failover: 1_048_576,
            synchronous_mode: raftgres_state::SyncMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            postgresql_parameters: [("work_mem".to_owned(), "4MB".to_owned())].into(),
            pause: false,
        }
    }

    #[test]
    fn document_has_the_contract_shape() {
        assert_eq!(
            to_document(&values()),
            json!({"ttl_ms": 3000, "loop_wait_ms": 500, "retry_timeout_ms": 1000,
                   "lease_margin_ms": 500, "maximum_lag_on_failover": 1_048_576,
                   "synchronous_mode": false, "synchronous_mode_strict": false,
                   "synchronous_node_count": 1,
                   "postgresql": {"parameters": {"work_mem": "4MB"}}, "pause": false})
        );
    }

    #[test]
    fn document_round_trips() {
        assert_eq!(from_document(&to_document(&values())), Ok(values()));
    }

    #[test]
    fn patch_sets_keys_and_keeps_the_rest() {
        let patched = apply_patch(
            &values(),
            &json!({"ttl_ms": 5000, "pause": true,
                    "postgresql": {"parameters": {"max_connections": 200, "jit": false}}}),
        );
        let mut want = values();
        want.timing.ttl = std::time::Duration::from_millis(5000);
        want.pause = true;
        want.postgresql_parameters
            .insert("max_connections".into(), "200".into());
        want.postgresql_parameters
            .insert("jit".into(), "off".into());
        assert_eq!(patched, Ok(want));
    }

    #[test]
    fn null_deletes_a_parameter() {
        let patched = apply_patch(
            &values(),
            &json!({"postgresql": {"parameters": {"work_mem": null, "absent": null}}}),
        );
        let mut want = values();
        want.postgresql_parameters.clear();
        assert_eq!(patched, Ok(want));
    }

    #[test]
    fn null_elsewhere_is_refused_naming_the_key() {
        for (patch, key) in [
            (json!({"ttl_ms": null}), "ttl_ms"),
            (json!({"postgresql": null}), "postgresql"),
            (
                json!({"postgresql": {"parameters": null}}),
                "postgresql.parameters",
            ),
        ] {
            assert_eq!(
                apply_patch(&values(), &patch),
                Err(ConfigDocError::CannotDelete { key: key.into() }),
                "{patch}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused_naming_them() {
        for (patch, key) in [
            (json!({"colour": 1}), "colour"),
            (json!({"colour": null}), "colour"),
            (
                json!({"postgresql": {"use_pg_rewind": true}}),
                "postgresql.use_pg_rewind",
            ),
        ] {
            assert_eq!(
                apply_patch(&values(), &patch),
                Err(ConfigDocError::UnknownKey {
                    key: key.into(),
                    hint: ""
                }),
                "{patch}"
            );
        }
    }

    #[test]
    fn patroni_keys_name_the_raftgres_key() {
        for (patroni, ours) in [
            ("ttl", "ttl_ms"),
            ("loop_wait", "loop_wait_ms"),
            ("retry_timeout", "retry_timeout_ms"),
        ] {
            let err = apply_patch(&values(), &json!({ patroni: 30 })).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(&format!("`{patroni}`")), "{message}");
            assert!(message.contains(&format!("use {ours}")), "{message}");
        }
    }

    #[test]
    fn wrong_types_are_refused_naming_the_key() {
        for (patch, key) in [
            (json!({"ttl_ms": "3s"}), "ttl_ms"),
            (json!({"ttl_ms": -1}), "ttl_ms"),
            (json!({"ttl_ms": 1.5}), "ttl_ms"),
            (json!({"pause": "yes"}), "pause"),
            (json!({"synchronous_mode": "on"}), "synchronous_mode"),
            (
                json!({"synchronous_node_count": 5_000_000_000_u64}),
                "synchronous_node_count",
            ),
            (json!({"postgresql": 1}), "postgresql"),
            (
                json!({"postgresql": {"parameters": []}}),
                "postgresql.parameters",
            ),
            (
                json!({"postgresql": {"parameters": {"work_mem": {"a": 1}}}}),
                "postgresql.parameters.work_mem",
            ),
        ] {
            match apply_patch(&values(), &patch) {
                Err(ConfigDocError::WrongType { key: got, .. }) => assert_eq!(got, key, "{patch}"),
                other => panic!("{patch}: {other:?}"),
            }
        }
    }

    #[test]
    fn quorum_mode_reads_and_shows_as_patroni_writes_it() {
        let patched = apply_patch(&values(), &json!({"synchronous_mode": "quorum"})).unwrap();
        assert_eq!(patched.synchronous_mode, SyncMode::Quorum);
        assert_eq!(to_document(&patched)["synchronous_mode"], json!("quorum"));
        let patched = apply_patch(&patched, &json!({"synchronous_mode": true})).unwrap();
        assert_eq!(to_document(&patched)["synchronous_mode"], json!(true));
    }

    #[test]
    fn a_patch_must_be_an_object() {
        assert_eq!(
            apply_patch(&values(), &json!([1])),
            Err(ConfigDocError::NotAnObject)
        );
    }

    #[test]
    fn a_document_missing_a_key_is_refused() {
        let mut doc = to_document(&values());
        if let Value::Object(map) = &mut doc {
            map.remove("pause");
        }
        assert_eq!(
            from_document(&doc),
            Err(ConfigDocError::Missing {
                key: "pause".into()
            })
        );
    }
}
