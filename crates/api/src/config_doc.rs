//! The dynamic config as the REST API shows it (`GET /config`) and edits it
//! (`PATCH /config`, a JSON merge patch, RFC 7396; `PUT /config`, the
//! whole document). Pure: JSON in, JSON or [`ConfigValues`] out, every
//! error naming the dotted key.
//!
//! [`ConfigDocument`] is the document's one schema: serde derives both
//! directions from it. Hand-written code is left for what an edit needs
//! beyond a schema: which keys it may add or delete.

use std::collections::BTreeMap;

use raftgres_state::{ConfigValues, IgnoredSlot, LeaseTiming, PermanentSlot, SlotKind, SyncMode};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A patch that does not fit the config's shape. Answered with 400; each
/// message names the key and what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfigDocError {
    #[error("the config {0} must be a JSON object of keys")]
    NotAnObject(Edit),
    #[error("unknown config key `{key}`{hint}")]
    UnknownKey { key: String, hint: &'static str },
    #[error(
        "config key `{key}` cannot be deleted (only postgresql.parameters.* and slots.* \
         can): set it to a value instead of null"
    )]
    CannotDelete { key: String },
    /// `problem` says what the value must be.
    #[error("config key `{key}` {problem}")]
    Invalid { key: String, problem: String },
}

/// How a request edits the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    /// `PATCH`: a merge patch; `null` deletes, and only a parameter can go.
    Patch,
    /// `PUT`: the whole document; a key left out, or `null`, takes its
    /// default, as Patroni's `PUT /config` replaces the whole config.
    Replace,
}

impl std::fmt::Display for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Edit::Patch => "patch (PATCH)",
            Edit::Replace => "document (PUT)",
        })
    }
}

/// The maps a patch may add keys to and delete keys from.
const PARAMETERS: [&str; 2] = ["postgresql", "parameters"];
const SLOTS: [&str; 1] = ["slots"];

/// Patroni's keys whose raftgres name differs, or that raftgres has no use
/// for, so a Patroni script's patch is told what to send rather than just
/// refused.
const PATRONI_RENAMES: [(&str, &str); 4] = [
    ("ttl", ": use ttl_ms (milliseconds)"),
    ("loop_wait", ": use loop_wait_ms (milliseconds)"),
    ("retry_timeout", ": use retry_timeout_ms (milliseconds)"),
    (
        "member_slots_ttl",
        ": raftgres keeps a member's slot for as long as the member belongs to the \
         cluster, down or not, and has no timer for it (after `raftgresctl remove` the \
         slot is left for you to drop): remove the key",
    ),
];

/// The document of `GET /config`. Every key is required: an edit merges
/// into a whole document (the current one, or the defaults), so only a
/// deletion could leave one out, and [`check_edit`] refuses those.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDocument {
    #[serde(deserialize_with = "leaf")]
    ttl_ms: u64,
    #[serde(deserialize_with = "leaf")]
    loop_wait_ms: u64,
    #[serde(deserialize_with = "leaf")]
    retry_timeout_ms: u64,
    #[serde(deserialize_with = "leaf")]
    lease_margin_ms: u64,
    #[serde(deserialize_with = "leaf")]
    maximum_lag_on_failover: u64,
    #[serde(deserialize_with = "leaf")]
    synchronous_mode: SyncMode,
    #[serde(deserialize_with = "leaf")]
    synchronous_mode_strict: bool,
    #[serde(deserialize_with = "leaf")]
    synchronous_node_count: u32,
    postgresql: PostgresqlSection,
    #[serde(deserialize_with = "leaf")]
    pause: bool,
    slots: BTreeMap<String, SlotDocument>,
    ignore_slots: Vec<IgnoredSlotDocument>,
}

/// An `ignore_slots` entry, in Patroni's shape: the properties a slot
/// must all have to be left alone.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IgnoredSlotDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(
        default,
        rename = "type",
        deserialize_with = "optional_leaf",
        skip_serializing_if = "Option::is_none"
    )]
    kind: Option<SlotKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plugin: Option<String>,
}

/// A permanent slot, in Patroni's shape.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotDocument {
    #[serde(rename = "type", deserialize_with = "leaf")]
    kind: SlotKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plugin: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresqlSection {
    parameters: BTreeMap<String, Parameter>,
}

/// A Postgres parameter, kept as the text Postgres will read.
#[derive(Serialize)]
#[serde(transparent)]
struct Parameter(String);

impl<'de> Deserialize<'de> for Parameter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        leaf(deserializer)
    }
}

impl From<&ConfigValues> for ConfigDocument {
    fn from(values: &ConfigValues) -> Self {
        ConfigDocument {
            ttl_ms: values.timing.ttl_ms(),
            loop_wait_ms: values.timing.loop_wait_ms(),
            retry_timeout_ms: values.retry_timeout_ms,
            lease_margin_ms: values.timing.margin_ms(),
            maximum_lag_on_failover: values.maximum_lag_on_failover,
            synchronous_mode: values.synchronous_mode,
            synchronous_mode_strict: values.synchronous_mode_strict,
            synchronous_node_count: values.synchronous_node_count,
            postgresql: PostgresqlSection {
                parameters: values
                    .postgresql_parameters
                    .iter()
                    .map(|(name, value)| (name.clone(), Parameter(value.clone())))
                    .collect(),
            },
            pause: values.pause,
            slots: values
                .slots
                .iter()
                .map(|(name, slot)| {
                    let slot = SlotDocument {
                        kind: slot.kind,
                        database: slot.database.clone(),
                        plugin: slot.plugin.clone(),
                    };
                    (name.clone(), slot)
                })
                .collect(),
            ignore_slots: values
                .ignore_slots
                .iter()
                .map(|entry| IgnoredSlotDocument {
                    name: entry.name.clone(),
                    kind: entry.kind,
                    database: entry.database.clone(),
                    plugin: entry.plugin.clone(),
                })
                .collect(),
        }
    }
}

impl From<ConfigDocument> for ConfigValues {
    fn from(doc: ConfigDocument) -> Self {
        ConfigValues {
            timing: LeaseTiming::from_millis(doc.ttl_ms, doc.loop_wait_ms, doc.lease_margin_ms),
            retry_timeout_ms: doc.retry_timeout_ms,
            maximum_lag_on_failover: doc.maximum_lag_on_failover,
            synchronous_mode: doc.synchronous_mode,
            synchronous_mode_strict: doc.synchronous_mode_strict,
            synchronous_node_count: doc.synchronous_node_count,
            postgresql_parameters: doc
                .postgresql
                .parameters
                .into_iter()
                .map(|(name, Parameter(value))| (name, value))
                .collect(),
            pause: doc.pause,
            slots: doc
                .slots
                .into_iter()
                .map(|(name, slot)| {
                    let slot = PermanentSlot {
                        kind: slot.kind,
                        database: slot.database,
                        plugin: slot.plugin,
                    };
                    (name, slot)
                })
                .collect(),
            ignore_slots: doc
                .ignore_slots
                .into_iter()
                .map(|entry| IgnoredSlot {
                    name: entry.name,
                    kind: entry.kind,
                    database: entry.database,
                    plugin: entry.plugin,
                })
                .collect(),
        }
    }
}

/// A value of the document, read from JSON or refused with what it must
/// be: serde's own messages name Rust types (`expected u64`), not what an
/// operator should send.
trait Leaf: Sized {
    const MUST_BE: &'static str;
    fn read(value: &Value) -> Option<Self>;
}

fn leaf<'de, D: Deserializer<'de>, T: Leaf>(deserializer: D) -> Result<T, D::Error> {
    let value = Value::deserialize(deserializer)?;
    T::read(&value).ok_or_else(|| D::Error::custom(format!("must be {}", T::MUST_BE)))
}

fn optional_leaf<'de, D: Deserializer<'de>, T: Leaf>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    leaf(deserializer).map(Some)
}

impl Leaf for u64 {
    const MUST_BE: &'static str = "a non-negative integer";
    fn read(value: &Value) -> Option<Self> {
        value.as_u64()
    }
}

impl Leaf for u32 {
    const MUST_BE: &'static str = "an integer from 0 to 4294967295";
    fn read(value: &Value) -> Option<Self> {
        value.as_u64().and_then(|n| u32::try_from(n).ok())
    }
}

impl Leaf for bool {
    const MUST_BE: &'static str = "true or false";
    fn read(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

impl Leaf for SlotKind {
    const MUST_BE: &'static str = "\"physical\" or \"logical\"";
    fn read(value: &Value) -> Option<Self> {
        match value.as_str()? {
            "physical" => Some(SlotKind::Physical),
            "logical" => Some(SlotKind::Logical),
            _ => None,
        }
    }
}

/// Patroni's values only: stricter than [`SyncMode`]'s own reading, which
/// also takes the words of older settings files ("on", "off").
impl Leaf for SyncMode {
    const MUST_BE: &'static str = "true, false or \"quorum\"";
    fn read(value: &Value) -> Option<Self> {
        match value {
            Value::Bool(false) => Some(SyncMode::Off),
            Value::Bool(true) => Some(SyncMode::On),
            Value::String(text) if text.eq_ignore_ascii_case("quorum") => Some(SyncMode::Quorum),
            _ => None,
        }
    }
}

/// Patroni scripts send numbers and booleans too (`"max_connections": 100`).
impl Leaf for Parameter {
    const MUST_BE: &'static str = "a string, a number or a boolean";
    fn read(value: &Value) -> Option<Self> {
        match value {
            Value::String(text) => Some(Parameter(text.clone())),
            Value::Number(number) => Some(Parameter(number.to_string())),
            Value::Bool(flag) => Some(Parameter(if *flag { "on" } else { "off" }.to_owned())),
            _ => None,
        }
    }
}

/// The config document of `GET /config`.
pub(crate) fn to_document(values: &ConfigValues) -> Value {
    // Every key is a string and every value plain data, which is all that
    // could make this fail.
    serde_json::to_value(ConfigDocument::from(values))
        .expect("the config document always encodes as JSON")
}

/// `current` with the merge patch `patch` applied. Deleting (`null`) is
/// allowed only for single parameters under `postgresql.parameters`, so a
/// patch can never leave a required key unset.
pub(crate) fn apply_patch(
    current: &ConfigValues,
    patch: &Value,
) -> Result<ConfigValues, ConfigDocError> {
    let mut doc = to_document(current);
    check_edit(&doc, patch, &[], Edit::Patch)?;
    json_patch::merge(&mut doc, patch);
    from_document(doc)
}

/// The config `document` describes whole, every key it leaves out (or
/// sets to `null`) at its value in `defaults`: `PUT /config`.
pub(crate) fn replace(
    defaults: &ConfigValues,
    document: &Value,
) -> Result<ConfigValues, ConfigDocError> {
    let mut doc = to_document(defaults);
    check_edit(&doc, document, &[], Edit::Replace)?;
    json_patch::merge(&mut doc, &without_nulls(document, &[]));
    from_document(doc)
}

fn from_document(doc: Value) -> Result<ConfigValues, ConfigDocError> {
    serde_path_to_error::deserialize::<_, ConfigDocument>(doc)
        .map(ConfigValues::from)
        .map_err(|err| ConfigDocError::Invalid {
            key: err.path().to_string(),
            problem: err.into_inner().to_string(),
        })
}

/// `document` without its `null`s outside `postgresql.parameters`, where
/// a merge would delete the default's key instead of keeping it. A `null`
/// parameter stays: merged into the defaults, it leaves the parameter out.
fn without_nulls(document: &Value, path: &[&str]) -> Value {
    match document {
        Value::Object(keys) if path != PARAMETERS && path != SLOTS => Value::Object(
            keys.iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| {
                    let at: Vec<&str> = path.iter().copied().chain([key.as_str()]).collect();
                    (key.clone(), without_nulls(value, &at))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Judges the edit against the whole document `doc` before merging,
/// because the merge turns a `null` into an absent key, and an unknown key
/// set to `null` into nothing at all. The values' types are left to the
/// schema, except where an object would be replaced by something else:
/// serde's message there names a Rust struct, not what to send.
fn check_edit(doc: &Value, edit: &Value, path: &[&str], how: Edit) -> Result<(), ConfigDocError> {
    let Value::Object(changes) = edit else {
        return Err(match path {
            [] => ConfigDocError::NotAnObject(how),
            _ => ConfigDocError::Invalid {
                key: path.join("."),
                problem: "must be an object".into(),
            },
        });
    };
    if path == PARAMETERS {
        return Ok(());
    }
    if path == SLOTS {
        // A slot is added whole, or deleted with `null`.
        return match changes
            .iter()
            .find(|(_, slot)| !slot.is_object() && !slot.is_null())
        {
            Some((name, _)) => Err(ConfigDocError::Invalid {
                key: format!("slots.{name}"),
                problem: "must be an object such as {\"type\": \"physical\"}, or null \
                          to remove the slot"
                    .into(),
            }),
            None => Ok(()),
        };
    }
    for (key, change) in changes {
        let at: Vec<&str> = path.iter().copied().chain([key.as_str()]).collect();
        let dotted = at.join(".");
        let Some(now) = doc.get(key) else {
            let hint = PATRONI_RENAMES
                .iter()
                .find(|(patroni, _)| patroni == key)
                .map_or("", |(_, hint)| *hint);
            return Err(ConfigDocError::UnknownKey { key: dotted, hint });
        };
        match (now, change) {
            (_, Value::Null) if how == Edit::Replace => {}
            (_, Value::Null) => return Err(ConfigDocError::CannotDelete { key: dotted }),
            (Value::Object(_), _) => check_edit(now, change, &at, how)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values() -> ConfigValues {
        ConfigValues {
            postgresql_parameters: [("work_mem".to_owned(), "4MB".to_owned())].into(),
            ..ConfigValues::new(LeaseTiming::from_millis(3000, 500, 500), 1000, 1_048_576)
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
                   "postgresql": {"parameters": {"work_mem": "4MB"}}, "pause": false,
                   "slots": {}, "ignore_slots": []})
        );
    }

    #[test]
    fn a_slot_is_added_shown_and_removed_whole() {
        let patch = json!({"slots": {"keep_me": {"type": "physical"}}});
        let added = apply_patch(&values(), &patch).unwrap();
        let mut want = values();
        want.slots
            .insert("keep_me".into(), PermanentSlot::physical());
        assert_eq!(added, want);
        assert_eq!(to_document(&added)["slots"], patch["slots"]);
        let removed = apply_patch(&added, &json!({"slots": {"keep_me": null}}));
        assert_eq!(removed, Ok(values()));
        let replaced = replace(
            &values(),
            &json!({"slots": {"keep_me": {"type": "physical"}}}),
        );
        assert_eq!(replaced.map(|v| v.slots), Ok(want.slots));
    }

    #[test]
    fn a_logical_slot_is_read_and_then_refused_by_validation() {
        let patch = json!({"slots": {"cdc": {"type": "logical", "database": "app",
                                             "plugin": "pgoutput"}}});
        let read = apply_patch(&values(), &patch).unwrap();
        let err = read.validate_edit().unwrap_err();
        assert!(err.starts_with("slots.cdc:"), "{err}");
        assert!(err.contains("failover"), "{err}");
    }

    #[test]
    fn a_malformed_slot_is_refused_naming_its_key() {
        for (patch, key) in [
            (json!({"slots": {"s": "physical"}}), "slots.s"),
            (json!({"slots": {"s": {"type": "wal"}}}), "slots.s.type"),
            (json!({"slots": {"s": {}}}), "slots.s"),
            (
                json!({"slots": {"s": {"type": "physical", "x": 1}}}),
                "slots.s.x",
            ),
            (json!({"slots": 1}), "slots"),
        ] {
            match apply_patch(&values(), &patch) {
                Err(ConfigDocError::Invalid { key: got, .. }) => assert_eq!(got, key, "{patch}"),
                other => panic!("{patch}: {other:?}"),
            }
        }
    }

    #[test]
    fn member_slots_ttl_is_refused_saying_why() {
        let err = apply_patch(&values(), &json!({"member_slots_ttl": "30min"})).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`member_slots_ttl`"), "{message}");
        assert!(message.contains("no timer"), "{message}");
    }

    #[test]
    fn ignore_slots_is_read_in_patronis_shape_and_replaced_whole() {
        let patch = json!({"ignore_slots": [{"name": "cdc", "type": "logical",
                                             "database": "app", "plugin": "pgoutput"},
                                            {"type": "physical"}]});
        let read = apply_patch(&values(), &patch).unwrap();
        assert_eq!(read.ignore_slots.len(), 2);
        assert_eq!(read.ignore_slots[1].kind, Some(SlotKind::Physical));
        assert_eq!(to_document(&read)["ignore_slots"], patch["ignore_slots"]);
        let emptied = apply_patch(&read, &json!({"ignore_slots": []}));
        assert_eq!(emptied, Ok(values()));
        for (patch, key) in [
            (
                json!({"ignore_slots": [{"type": "wal"}]}),
                "ignore_slots[0].type",
            ),
            (
                json!({"ignore_slots": [{"slot": "x"}]}),
                "ignore_slots[0].slot",
            ),
            (json!({"ignore_slots": {"name": "x"}}), "ignore_slots"),
        ] {
            match apply_patch(&values(), &patch) {
                Err(ConfigDocError::Invalid { key: got, .. }) => assert_eq!(got, key, "{patch}"),
                other => panic!("{patch}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_empty_patch_changes_nothing() {
        assert_eq!(apply_patch(&values(), &json!({})), Ok(values()));
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
                Err(err @ ConfigDocError::Invalid { .. }) => {
                    let message = err.to_string();
                    let want = format!("config key `{key}` must be ");
                    assert!(message.starts_with(&want), "{patch}: {message}");
                }
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

    fn defaults() -> ConfigValues {
        ConfigValues::new(LeaseTiming::from_millis(3000, 250, 400), 1000, 1_048_576)
    }

    #[test]
    fn a_replacement_sets_what_it_names_and_defaults_the_rest() {
        let replaced = replace(
            &defaults(),
            &json!({"ttl_ms": 5000, "synchronous_mode": "quorum",
                    "postgresql": {"parameters": {"work_mem": "8MB", "jit": false}}}),
        );
        let mut want = defaults();
        want.timing.ttl = std::time::Duration::from_millis(5000);
        want.synchronous_mode = SyncMode::Quorum;
        want.postgresql_parameters = [
            ("work_mem".to_owned(), "8MB".to_owned()),
            ("jit".to_owned(), "off".to_owned()),
        ]
        .into();
        assert_eq!(replaced, Ok(want));
        assert_eq!(replace(&defaults(), &json!({})), Ok(defaults()));
    }

    #[test]
    fn null_in_a_replacement_means_the_default() {
        let replaced = replace(
            &defaults(),
            &json!({"ttl_ms": null, "pause": true, "postgresql": null,
                    "maximum_lag_on_failover": 7}),
        );
        let mut want = defaults();
        want.pause = true;
        want.maximum_lag_on_failover = 7;
        assert_eq!(replaced, Ok(want));
        let replaced = replace(
            &defaults(),
            &json!({"postgresql": {"parameters": {"work_mem": null, "jit": "on"}}}),
        );
        let mut want = defaults();
        want.postgresql_parameters = [("jit".to_owned(), "on".to_owned())].into();
        assert_eq!(replaced, Ok(want));
    }

    /// Everything a patch is refused for but deletions, a replacement is
    /// refused for too, naming the key.
    #[test]
    fn a_replacement_is_checked_as_a_patch_is() {
        for (document, want) in [
            (
                json!({"ttl": 30}),
                "unknown config key `ttl`: use ttl_ms (milliseconds)",
            ),
            (
                json!({"postgresql": {"use_pg_rewind": true}}),
                "unknown config key `postgresql.use_pg_rewind`",
            ),
            (json!({"ttl_ms": "3s"}), "config key `ttl_ms` must be "),
            (
                json!({"postgresql": 1}),
                "config key `postgresql` must be an object",
            ),
            (
                json!({"postgresql": {"parameters": []}}),
                "config key `postgresql.parameters` must be ",
            ),
            (
                json!([]),
                "the config document (PUT) must be a JSON object of keys",
            ),
        ] {
            let message = replace(&defaults(), &document)
                .expect_err("refused")
                .to_string();
            assert!(message.starts_with(want), "{document}: {message}");
        }
    }

    #[test]
    fn a_patch_must_be_an_object() {
        assert_eq!(
            apply_patch(&values(), &json!([1])),
            Err(ConfigDocError::NotAnObject(Edit::Patch))
        );
    }
}
