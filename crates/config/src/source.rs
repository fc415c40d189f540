use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use config::{Config, Environment, File, FileFormat, Source, Value};

use crate::ConfigError;

/// How the `config` crate matches the prefix: on the lowercased variable name.
const ENV_PREFIX: &str = "raftgres_";

/// The file and environment merged into one tree, plus where each
/// environment-provided key came from.
pub(crate) struct Merged {
    pub(crate) root: config::Map<String, Value>,
    /// Dotted key -> variable name.
    pub(crate) env_vars: BTreeMap<String, String>,
}

pub(crate) fn merge(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Merged, ConfigError> {
    let text = read_text(path)?;
    let EnvOverrides { by_var, by_key } = env_overrides(env)?;
    let root = Config::builder()
        // Read by us rather than `File::from(path)`: that one silently falls
        // back to `x.yaml` when `x.yml` is missing, replaces invalid UTF-8, and
        // reports a directory as "not found".
        .add_source(File::from_str(&text, FileFormat::Yaml))
        .add_source(
            Environment::with_prefix("RAFTGRES")
                // Without this the prefix separator defaults to `separator`,
                // and only `RAFTGRES__NAME` would match.
                .prefix_separator("_")
                .separator("__")
                // No `try_parsing`: it would turn `RAFTGRES_NAME=007` into the
                // integer 7 before we know the key wants text. Each key parses
                // its own text strictly instead.
                .source(Some(by_var)),
        )
        .build()
        .and_then(|merged| merged.collect())
        .map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(Merged {
        root,
        env_vars: by_key,
    })
}

/// Whether the `config` crate would take `var` as an override.
pub(crate) fn is_override(var: &str) -> bool {
    var.to_lowercase().starts_with(ENV_PREFIX)
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    let read_error = |cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    };
    let bytes = std::fs::read(path).map_err(read_error)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        read_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 text ({e})"),
        ))
    })?;
    // Some editors write a byte-order mark, which the YAML parser would glue
    // onto the first key.
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

/// Keeps the `RAFTGRES_*` variables and rejects those that could not name a
/// key or would overwrite each other, because the `config` crate merges those
/// in an unspecified order or turns them into odd paths (`X[0]` is a list).
fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<EnvOverrides, ConfigError> {
    let mut by_var = config::Map::default();
    let mut by_key: BTreeMap<String, String> = BTreeMap::new();
    for (var, value) in env {
        let lowered = var.to_lowercase();
        let Some(rest) = lowered.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.replace("__", ".");
        let well_formed = key.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        if !well_formed {
            return Err(ConfigError::Env {
                var,
                reason: "does not name a settings key: after RAFTGRES_ write the key in \
                         letters, digits and _, with __ between a section and its key, \
                         e.g. RAFTGRES_RAFT__LISTEN for raft.listen"
                    .into(),
            });
        }
        if let Some(other) = by_key.get(&key) {
            return Err(ConfigError::Env {
                reason: format!("sets `{key}` like {other} does; unset one of them"),
                var,
            });
        }
        by_key.insert(key, var.clone());
        by_var.insert(var, value);
    }
    for (outer, outer_var) in &by_key {
        let nested = format!("{outer}.");
        if let Some((inner, inner_var)) = by_key.iter().find(|(k, _)| k.starts_with(&nested)) {
            return Err(ConfigError::Env {
                var: outer_var.clone(),
                reason: format!(
                    "replaces all of `{outer}` while {inner_var} sets `{inner}` inside it; \
                     unset one of them"
                ),
            });
        }
    }
    Ok(EnvOverrides { by_var, by_key })
}

struct EnvOverrides {
    /// As handed to the `config` crate.
    by_var: config::Map<String, String>,
    /// Dotted key -> variable name.
    by_key: BTreeMap<String, String>,
}
