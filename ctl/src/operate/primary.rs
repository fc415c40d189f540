//! `switchover` and `failover`: the primary role goes to another member.

use super::scheduled_at;
use crate::client::{CHANGE_TIMEOUT, Call, Reply};
use crate::cluster::{Cluster, Finder};
use crate::error::CtlError;
use crate::prompt::confirm;
use anyhow::anyhow;
use reqwest::Method;
use serde_json::{Value, json};

pub async fn switchover(
    finder: &mut Finder,
    leader: Option<String>,
    candidate: Option<String>,
    scheduled: Option<String>,
    force: bool,
) -> anyhow::Result<()> {
    let at = scheduled_at(scheduled.as_deref())?;
    let cluster = finder.cluster().await?;
    let view = &cluster.view;
    let leader = leader
        .or_else(|| view.leader_name().map(str::to_owned))
        .ok_or_else(|| {
            anyhow!(
                "cluster {} has no leader now, so there is none to switch over from; use `raftgresctl failover --candidate NAME`",
                view.scope()
            )
        })?;
    let when = at.map(|t| format!(" at {t}")).unwrap_or_default();
    confirm(
        format!(
            "Are you sure you want to switchover cluster {}, demoting current leader {leader}{when}?",
            view.scope()
        ),
        "switchover",
        force,
    )
    .await?;
    let mut body = json!({"leader": leader});
    if let Some(candidate) = candidate {
        body["candidate"] = candidate.into();
    }
    if let Some(at) = at {
        body["scheduled_at"] = at.to_string().into();
    }
    let reply = change_primary(finder, &cluster, "switchover", &body).await?;
    println!("{}", reply.message());
    if reply.status == 202 {
        let at = reply
            .body
            .get("scheduled_at")
            .and_then(Value::as_str)
            .map_or_else(|| when.trim_start_matches(" at ").to_owned(), str::to_owned);
        println!("Switchover scheduled at: {at}");
    }
    Ok(())
}

pub async fn failover(finder: &mut Finder, candidate: String, force: bool) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let view = &cluster.view;
    let demoting = view
        .leader_name()
        .map(|name| format!(", demoting current leader {name}"))
        .unwrap_or_default();
    confirm(
        format!(
            "Are you sure you want to failover cluster {} to {candidate}{demoting}?",
            view.scope()
        ),
        "failover",
        force,
    )
    .await?;
    let body = json!({"candidate": candidate});
    let reply = change_primary(finder, &cluster, "failover", &body).await?;
    println!("{}", reply.message());
    Ok(())
}

/// `POST /switchover` or `/failover` (`verb`) with `body`, to the first
/// member that can be reached; the agent answers once the new primary
/// runs (`leader` in the reply), or when it is scheduled.
pub async fn change_primary(
    finder: &Finder,
    cluster: &Cluster,
    verb: &str,
    body: &Value,
) -> Result<Reply, CtlError> {
    finder
        .call_any(cluster, &[verb], |url| {
            Call::change(Method::POST, url, Some(body), CHANGE_TIMEOUT)
        })
        .await
}
