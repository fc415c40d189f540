//! `reload`: members' Postgres reread their configuration.

use super::pick::{Pick, confirm_chosen};
use super::{Failed, member_status};
use crate::client::{COMMIT_TIMEOUT, Call, endpoint};
use crate::cluster::{Cluster, Finder};
use anyhow::anyhow;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// How long `reload` waits for each member's Postgres to read its
/// configuration after the agent took the request.
const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// Each chosen member's agent rereads its settings file and has its
/// Postgres reread its configuration, which is waited for (its
/// `conf_load_time` in `GET /patroni` moves).
pub async fn reload(finder: &mut Finder, pick: Pick, force: bool) -> anyhow::Result<()> {
    let Some((cluster, members)) = confirm_chosen(finder, &pick, "reload", "reload", force).await?
    else {
        return Ok(());
    };
    let mut failed = Failed::default();
    for member in &members {
        if let Err(e) = reload_member(finder, &cluster, member).await {
            failed.add(member, e);
        }
    }
    failed.into_result("the reload of")
}

async fn reload_member(finder: &Finder, cluster: &Cluster, member: &str) -> anyhow::Result<()> {
    let base = cluster.member_api(member)?;
    let loaded = |doc: &Value| doc.get("conf_load_time").cloned();
    let before = loaded(&member_status(finder, &base).await?);
    let reply = finder
        .api
        .call(Call::change(
            Method::POST,
            endpoint(&base, &["reload"]),
            None,
            COMMIT_TIMEOUT,
        ))
        .await?;
    println!("{member}: {}", reply.message());
    let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
    loop {
        let doc = member_status(finder, &base).await?;
        match loaded(&doc) {
            Some(now) if Some(&now) != before.as_ref() => {
                println!("{member}: Postgres reloaded its configuration");
                return Ok(());
            }
            None => {
                let state = doc
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown");
                println!(
                    "{member}: Postgres is not running ({state}); it reads the new configuration when it starts"
                );
                return Ok(());
            }
            Some(_) if tokio::time::Instant::now() >= deadline => {
                return Err(anyhow!(
                    "Postgres did not reload its configuration within {RELOAD_WAIT:?}; see the agent's log"
                ));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
