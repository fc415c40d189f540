//! `edit-config`: read the config and its version, build the new document
//! from -s/-p or in $VISUAL or $EDITOR, and send the difference with `If-Match`.

use crate::client::{COMMIT_TIMEOUT, Call};
use crate::cluster::Finder;
use crate::error::CtlError;
use crate::patch::{self, Setting};
use crate::prompt::confirm;
use crate::yaml;
use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use serde_json::Value;
use std::io::IsTerminal;

const EDIT_HEADER: &str = "\
# The raftgres dynamic config. Save and quit to review the change before it is sent.
# Removing a postgresql.parameters key deletes it; durations are in milliseconds.
# An empty file changes nothing.
";

pub async fn edit_config(
    finder: &mut Finder,
    set: &[String],
    pg: &[String],
    force: bool,
) -> anyhow::Result<()> {
    let settings: Vec<Setting> = set
        .iter()
        .map(|s| patch::parse_set(s))
        .chain(pg.iter().map(|p| patch::parse_pg_parameter(p)))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!(e))?;
    let cluster = finder.cluster().await?;
    let reply = finder.call_any(&cluster, &["config"], Call::get).await?;
    let current = reply.body;
    if !current.is_object() {
        return Err(CtlError::Unavailable(format!(
            "GET /config on {} did not answer a JSON object; compare versions with `raftgresctl version`",
            cluster.via
        ))
        .into());
    }
    let version = reply.etag;
    let wanted = if settings.is_empty() {
        edit_in_editor(&current).await?
    } else {
        let changes = patch::settings_patch(&settings).map_err(|e| anyhow!(e))?;
        let mut wanted = current.clone();
        json_patch::merge(&mut wanted, &changes);
        wanted
    };
    let Some(change) = patch::diff(&current, &wanted) else {
        println!("no changes; nothing was sent");
        return Ok(());
    };
    println!("Changes to the config of cluster {}:", cluster.view.scope());
    for line in patch::describe(&current, &change) {
        println!("{line}");
    }
    confirm("Apply these changes?".into(), "edit-config", force).await?;
    if version.is_none() {
        eprintln!(
            "raftgresctl: warning: the agent sent no ETag, so a change made meanwhile by someone else cannot be detected"
        );
    }
    let sent = finder
        .call_any(&cluster, &["config"], |url| Call {
            method: Method::PATCH,
            url,
            body: Some(&change),
            if_match: version.as_deref(),
            timeout: COMMIT_TIMEOUT,
        })
        .await;
    match sent {
        Ok(reply) => {
            match reply.etag {
                Some(v) => println!("config updated (version {})", v.trim_matches('"')),
                None => println!("config updated"),
            }
            Ok(())
        }
        Err(CtlError::Refused {
            call,
            status: status @ (409 | 412),
            message,
        }) => Err(CtlError::Refused {
            call,
            status,
            message: format!(
                "{message}; the config changed after raftgresctl read it (version {}), so nothing was applied: run edit-config again to start from the current config",
                version.as_deref().unwrap_or("unknown")
            ),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

async fn edit_in_editor(current: &Value) -> anyhow::Result<Value> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "edit-config without -s or -p opens $VISUAL or $EDITOR, which needs a terminal; pass -s KEY=VALUE or -p PARAM=VALUE instead"
        );
    }
    let Ok(editor) = edit::get_editor() else {
        bail!(
            "no editor found: set VISUAL or EDITOR to an installed one, or pass -s KEY=VALUE or -p PARAM=VALUE instead"
        );
    };
    let document = format!("{EDIT_HEADER}{}", yaml::emit(current));
    // The editor owns the terminal until it exits; blocking a worker for
    // that long would stall the runtime.
    let text = tokio::task::spawn_blocking(move || {
        let mut file = edit::Builder::new();
        file.prefix("raftgres-config-").suffix(".yaml");
        edit::edit_with_builder(document, &file)
    })
    .await
    .context("the editor could not be run")?
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => {
            anyhow!("the edited config is not UTF-8; nothing was changed")
        }
        // The editor exited with an error; edit's message names the
        // command and the status.
        std::io::ErrorKind::Other => anyhow!("{e}; nothing was changed"),
        _ => anyhow!(
            "cannot edit the config with {}: {e}; nothing was changed",
            editor.display()
        ),
    })?;
    match yaml::parse(&text) {
        Ok(Value::Null) => bail!("the edited config is empty; nothing was changed"),
        Ok(doc @ Value::Object(_)) => Ok(doc),
        Ok(_) => bail!("the edited config must be a mapping of keys; nothing was changed"),
        Err(e) => bail!("the edited config cannot be used: {e}; nothing was changed"),
    }
}
