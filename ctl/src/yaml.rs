//! JSON documents from the API shown and edited as YAML, and read back.

pub use raftgres_config::yaml::emit;
use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// One YAML document as JSON; `path` names where a bad value sits.
pub fn from_yaml(yaml: &Yaml, path: &str) -> Result<Value, String> {
    let at = |p: &str| {
        if p.is_empty() {
            "the top level".to_owned()
        } else {
            p.to_owned()
        }
    };
    match yaml {
        Yaml::Null => Ok(Value::Null),
        Yaml::Boolean(b) => Ok(Value::Bool(*b)),
        Yaml::Integer(i) => Ok(Value::Number((*i).into())),
        Yaml::Real(text) => serde_json::from_str::<Number>(text)
            .or_else(|_| {
                text.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .ok_or(())
            })
            .map(Value::Number)
            .map_err(|()| format!("{}: {text} is not a finite number", at(path))),
        Yaml::String(s) => Ok(Value::String(s.clone())),
        Yaml::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| from_yaml(item, &format!("{}[{i}]", at(path))))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (key, item) in hash {
                let key = match key {
                    Yaml::String(s) | Yaml::Real(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("{}: the key {other:?} is not text", at(path))),
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let value = from_yaml(item, &child)?;
                if map.insert(key, value).is_some() {
                    return Err(format!("{child} is given twice"));
                }
            }
            Ok(Value::Object(map))
        }
        Yaml::Alias(_) => Err(format!("{}: YAML aliases are not supported", at(path))),
        Yaml::BadValue => Err(format!("{}: a value YAML could not read", at(path))),
    }
}

/// Reads text holding one YAML document; an empty text is `Null`.
pub fn parse(text: &str) -> Result<Value, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    match docs.as_slice() {
        [] => Ok(Value::Null),
        [doc] => from_yaml(doc, ""),
        _ => Err("it holds more than one YAML document".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emits_block_yaml_that_reads_back_unchanged() {
        let config = json!({
            "ttl_ms": 3000, "synchronous_mode": false, "pause": null,
            "maximum_lag_on_failover": 18446744073709551615_u64,
            "ratio": 0.5,
            "postgresql": {"parameters": {"work_mem": "4MB", "tricky": "on", "num": "10", "empty": ""}},
            "list": [1, "two"], "nothing": {}
        });
        let text = emit(&config);
        assert!(!text.starts_with("---"), "{text}");
        assert!(text.contains("ttl_ms: 3000\n"), "{text}");
        assert!(text.contains("    work_mem: 4MB\n"), "{text}");
        assert_eq!(parse(&text), Ok(config));
    }

    #[test]
    fn parse_errors_name_the_place() {
        assert!(parse("a: [").is_err());
        assert_eq!(parse(""), Ok(Value::Null));
        let error = parse("a:\n  b: .nan\n").expect_err("nan");
        assert!(error.starts_with("a.b:"), "{error}");
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        assert_eq!(parse("1: x"), Ok(json!({"1": "x"})));
    }
}
