//! JSON merge patches (RFC 7396) for `edit-config`: built from `-s`/`-p`
//! settings or from the difference between two documents, and shown as a
//! list of changes before they are sent. Applying one is `json_patch::merge`.

use serde_json::{Map, Value};

/// One `-s KEY=VALUE` or `-p PARAM=VALUE`, as a path into the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub path: Vec<String>,
    pub value: Value,
}

/// `-s postgresql.parameters.work_mem=4MB`: the key is split on dots.
pub fn parse_set(text: &str) -> Result<Setting, String> {
    let (key, value) = split_assignment(text, "-s KEY=VALUE")?;
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!(
            "-s {text}: {key:?} has an empty part; write dotted keys like postgresql.parameters.work_mem"
        ));
    }
    Ok(Setting {
        path,
        value: parse_value(value),
    })
}

/// `-p work_mem=4MB`. The name is kept whole, because Postgres parameters
/// such as `auto_explain.log_min_duration` contain dots themselves.
pub fn parse_pg_parameter(text: &str) -> Result<Setting, String> {
    let (name, value) = split_assignment(text, "-p PARAM=VALUE")?;
    Ok(Setting {
        path: vec!["postgresql".into(), "parameters".into(), name.to_owned()],
        value: parse_value(value),
    })
}

fn split_assignment<'a>(text: &'a str, usage: &str) -> Result<(&'a str, &'a str), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim(), value)),
        _ => Err(format!("{text:?} is not {usage}")),
    }
}

/// A JSON number, `true`, `false` or `null` (which deletes the key) is
/// taken as such; a JSON string in double quotes is unquoted, so `"on"` can
/// be told from `on`; anything else is the text as given.
pub fn parse_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null | Value::String(_))) => v,
        _ => Value::String(text.to_owned()),
    }
}

/// The settings as one merge patch. A key given twice, or given both as a
/// value and as a section, is an error rather than a silent choice.
pub fn settings_patch(settings: &[Setting]) -> Result<Value, String> {
    let mut root = Map::new();
    for setting in settings {
        let dotted = setting.path.join(".");
        let Some((leaf, sections)) = setting.path.split_last() else {
            return Err("an empty key".into());
        };
        let mut node = &mut root;
        for section in sections {
            let entry = node
                .entry(section.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            node = match entry {
                Value::Object(map) => map,
                _ => return Err(format!("{dotted}: {section} is also given a value")),
            };
        }
        if node.contains_key(leaf) {
            return Err(format!("{dotted} is given more than once"));
        }
        node.insert(leaf.clone(), setting.value.clone());
    }
    Ok(Value::Object(root))
}

/// The merge patch that turns `old` into `new`, or `None` when they are
/// equal. Removed keys become `null`; arrays are replaced whole, as RFC
/// 7396 has no way to patch inside them.
pub fn diff(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return Some(new.clone());
    };
    let mut patch = Map::new();
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in new {
        match old.get(key) {
            None => {
                patch.insert(key.clone(), value.clone());
            }
            Some(previous) => {
                if let Some(change) = diff(previous, value) {
                    patch.insert(key.clone(), change);
                }
            }
        }
    }
    Some(Value::Object(patch))
}

/// The patch as `-key: old` / `+key: new` lines with dotted keys, the way
/// a reviewer reads a diff.
pub fn describe(old: &Value, patch: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    describe_into(old, patch, "", &mut lines);
    lines
}

fn describe_into(old: &Value, patch: &Value, path: &str, lines: &mut Vec<String>) {
    if let Value::Object(changes) = patch
        && (!changes.is_empty() || old.is_object())
    {
        let old_map = match old {
            Value::Object(map) => Some(map),
            Value::Null => None,
            // Merging an object into a scalar replaces the scalar.
            other => {
                lines.push(format!("-{path}: {other}"));
                None
            }
        };
        for (key, change) in changes {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let previous = old_map.and_then(|m| m.get(key)).unwrap_or(&Value::Null);
            describe_into(previous, change, &child, lines);
        }
        return;
    }
    if !old.is_null() {
        lines.push(format!("-{path}: {old}"));
    }
    if !patch.is_null() {
        lines.push(format!("+{path}: {patch}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_json_scalars_or_text() {
        let cases = [
            ("4MB", json!("4MB")),
            ("200", json!(200)),
            ("0.9", json!(0.9)),
            ("true", json!(true)),
            ("null", Value::Null),
            ("\"on\"", json!("on")),
            ("on", json!("on")),
            ("", json!("")),
            ("[1]", json!("[1]")),
            ("a=b", json!("a=b")),
        ];
        for (text, want) in cases {
            assert_eq!(parse_value(text), want, "{text}");
        }
    }

    #[test]
    fn settings_become_one_nested_patch() {
        let settings = [
            parse_set("postgresql.parameters.work_mem=4MB").expect("valid"),
            parse_pg_parameter("auto_explain.log_min_duration=250").expect("valid"),
            parse_set("ttl_ms=5000").expect("valid"),
            parse_set("postgresql.parameters.old=null").expect("valid"),
            parse_set("synchronous_mode=true").expect("valid"),
        ];
        assert_eq!(
            settings_patch(&settings),
            Ok(json!({
                "ttl_ms": 5000,
                "synchronous_mode": true,
                "postgresql": {"parameters": {
                    "work_mem": "4MB",
                    "auto_explain.log_min_duration": 250,
                    "old": null
                }}
            }))
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(parse_set("work_mem").is_err());
        assert!(parse_set("=1").is_err());
        assert!(parse_set("a..b=1").is_err());
        assert!(parse_pg_parameter("=1").is_err());
        let twice = [parse_set("a=1"), parse_set("a=2")].map(|s| s.expect("valid"));
        assert!(settings_patch(&twice).is_err());
        let both = [parse_set("a=1"), parse_set("a.b=2")].map(|s| s.expect("valid"));
        assert!(settings_patch(&both).is_err());
    }

    #[test]
    fn diff_gives_the_patch_between_two_documents() {
        let old = json!({
            "ttl_ms": 3000, "pause": false, "list": [1, 2],
            "postgresql": {"parameters": {"work_mem": "1MB", "gone": "x"}}
        });
        let new = json!({
            "ttl_ms": 5000, "pause": false, "list": [1, 2, 3],
            "postgresql": {"parameters": {"work_mem": "1MB", "added": 5}}
        });
        let patch = diff(&old, &new).expect("different");
        assert_eq!(
            patch,
            json!({
                "ttl_ms": 5000, "list": [1, 2, 3],
                "postgresql": {"parameters": {"gone": null, "added": 5}}
            })
        );
        let mut patched = old.clone();
        json_patch::merge(&mut patched, &patch);
        assert_eq!(patched, new);
        assert_eq!(diff(&old, &old), None);
    }

    #[test]
    fn describe_lists_each_change_with_its_dotted_key() {
        let old = json!({"ttl_ms": 3000, "postgresql": {"parameters": {"gone": "x"}}, "s": 1});
        let patch = json!({
            "ttl_ms": 5000,
            "postgresql": {"parameters": {"gone": null, "work_mem": "4MB"}},
            "new": {"a": 1},
            "s": {"t": 2}
        });
        assert_eq!(
            describe(&old, &patch),
            [
                "+new.a: 1",
                "-postgresql.parameters.gone: \"x\"",
                "+postgresql.parameters.work_mem: \"4MB\"",
                "-s: 1",
                "+s.t: 2",
                "-ttl_ms: 3000",
                "+ttl_ms: 5000",
            ]
            .map(str::to_owned)
        );
    }
}
