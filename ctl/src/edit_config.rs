//! `edit-config`: read the config and its version, build the new document
//! from -s/-p or in $EDITOR, and send the difference with `If-Match`.

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
            "edit-config without -s or -p opens $EDITOR, which needs a terminal; pass -s KEY=VALUE or -p PARAM=VALUE instead"
        );
    }
    let file = tempfile::Builder::new()
        .prefix("raftgres-config-")
        .suffix(".yaml")
        .tempfile()
        .context("cannot create a temporary file for the editor")?;
    std::fs::write(file.path(), format!("{EDIT_HEADER}{}", yaml::emit(current)))
        .with_context(|| format!("cannot write {}", file.path().display()))?;
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    // Through the shell, because $EDITOR may carry arguments
    // ("code --wait"); the path goes in as "$1", never into the script.
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status()
        .await
        .with_context(|| format!("cannot run the editor {editor:?}; set EDITOR"))?;
    if !status.success() {
        bail!("the editor {editor:?} exited with {status}; nothing was changed");
    }
    let text = std::fs::read_to_string(file.path())
        .with_context(|| format!("cannot read back {}", file.path().display()))?;
    match yaml::parse(&text) {
        Ok(Value::Null) => bail!("the edited config is empty; nothing was changed"),
        Ok(doc @ Value::Object(_)) => Ok(doc),
        Ok(_) => bail!("the edited config must be a mapping of keys; nothing was changed"),
        Err(e) => bail!("the edited config cannot be used: {e}; nothing was changed"),
    }
}
