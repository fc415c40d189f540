//! `pause` and `resume`: maintenance mode on and off.

use super::member_status;
use crate::client::{COMMIT_TIMEOUT, Call};
use crate::cluster::{Cluster, Finder};
use anyhow::anyhow;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// How long `pause --wait` and `resume --wait` wait for every member.
const PAUSE_WAIT: Duration = Duration::from_secs(30);

/// Asking for the state the cluster is already in succeeds without a
/// change, so scripts can repeat it. With `wait`, until every member's own
/// status says so.
pub async fn set_pause(finder: &mut Finder, pause: bool, wait: bool) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let word = if pause { "paused" } else { "resumed" };
    if cluster.view.paused() == pause {
        println!(
            "cluster {} is already {}; nothing to do",
            cluster.view.scope(),
            if pause { "paused" } else { "not paused" }
        );
        return Ok(());
    }
    let body = json!({"pause": pause});
    finder
        .call_any(&cluster, &["config"], |url| {
            Call::change(Method::PATCH, url, Some(&body), COMMIT_TIMEOUT)
        })
        .await?;
    if wait {
        println!(
            "'{}' request sent, waiting until every member has it",
            if pause { "pause" } else { "resume" }
        );
        wait_for_pause(finder, &cluster, pause).await?;
    }
    println!("Success: cluster management is {word}");
    Ok(())
}

/// Until each member's `GET /patroni` says `pause` is `pause`, bounded by
/// [`PAUSE_WAIT`]; the members still behind are named.
async fn wait_for_pause(finder: &mut Finder, cluster: &Cluster, pause: bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PAUSE_WAIT;
    let members: Vec<String> = cluster
        .view
        .members
        .iter()
        .map(|m| m.name.clone())
        .collect();
    loop {
        let mut behind = Vec::new();
        for member in &members {
            let agrees = match cluster.member_api(member) {
                Ok(base) => member_status(finder, &base)
                    .await
                    .is_ok_and(|doc| doc.get("pause") == Some(&Value::Bool(pause))),
                Err(_) => false,
            };
            if !agrees {
                behind.push(member.as_str());
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow!(
                "{} did not say {} within {PAUSE_WAIT:?}; see `raftgresctl list` and their agents' logs",
                behind.join(", "),
                if pause { "paused" } else { "resumed" }
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
