//! `log`: the level names Patroni's files use, a level per module, and
//! where the files go.

use super::values::absolute;
use crate::read::Ctx;
use crate::schema;
use crate::{ConfigError, LogSettings};

/// Patroni's (Python's) level names, and `tracing`'s own.
fn level(name: &str) -> Result<&'static str, String> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" | "FATAL" => "error",
        _ => {
            return Err(format!(
                "{name:?} is not a level; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            ));
        }
    })
}

/// A Rust module path as `tracing` names targets: `raftgres_consensus`,
/// `openraft::engine`.
fn module(name: &str) -> Result<(), String> {
    let part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if name.split("::").all(part) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a module path; name a crate or module as the log lines show it, \
             e.g. raftgres_consensus or openraft"
        ))
    }
}

pub(super) fn settings(ctx: &Ctx, file: schema::Log) -> Result<LogSettings, ConfigError> {
    let mut filter = level(&file.level)
        .map_err(|reason| ctx.invalid("log.level", reason))?
        .to_owned();
    // openraft logs every election and retry at info: a warn floor keeps
    // the agent's own lines readable unless the operator asks for more.
    if !file.loggers.contains_key("openraft") {
        filter.push_str(",openraft=warn");
    }
    for (name, value) in &file.loggers {
        let key = format!("log.loggers.{name}");
        ctx.check(&key, module(name))?;
        let value = level(value).map_err(|reason| ctx.invalid(&key, reason))?;
        filter.push_str(&format!(",{name}={value}"));
    }
    if let Some(dir) = &file.dir {
        ctx.check("log.dir", absolute(dir))?;
    }
    if file.file_num == 0 {
        return Err(ctx.invalid(
            "log.file_num",
            "must be at least 1: it counts the files kept, the current one included",
        ));
    }
    Ok(LogSettings {
        kind: file.kind,
        filter,
        dir: file.dir,
        file_num: file.file_num as usize,
        rotation: file.rotation,
    })
}
