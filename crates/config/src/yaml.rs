//! Block YAML from a JSON document, as settings files are written: the lab
//! writes its members' files with it and `raftgresctl` its YAML output, and
//! the YAML reader the settings are loaded with reads both back unchanged.

use serde_json::Value;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

fn to_yaml(value: &Value) -> Yaml {
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            // A float, or an integer above i64::MAX: YAML keeps its text,
            // and a reader reads that text back as the same number.
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Object(map) => {
            let mut hash = Hash::new();
            for (key, item) in map {
                hash.insert(Yaml::String(key.clone()), to_yaml(item));
            }
            Yaml::Hash(hash)
        }
    }
}

/// YAML text without the `---` document marker, ending in a newline.
pub fn emit(value: &Value) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an empty output would still be
    // visible rather than a crash.
    let _ = YamlEmitter::new(&mut out).dump(&to_yaml(value));
    let body = out
        .strip_prefix("---\n")
        .or_else(|| out.strip_prefix("--- "))
        .unwrap_or(&out);
    format!("{body}\n")
}
