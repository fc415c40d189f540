//! The commands that change the cluster: switchover, failover, restart,
//! reinit, pause, resume, remove.

use crate::client::{
    CHANGE_TIMEOUT, COMMIT_TIMEOUT, Call, MEMBERSHIP_TIMEOUT, POSTGRES_TIMEOUT, endpoint,
};
use crate::cluster::{ClusterView, Finder, MemberView};
use crate::prompt::confirm;
use anyhow::anyhow;
use jiff::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

/// `--scheduled`: `None` for now, else a time that must lie ahead, since
/// a switchover scheduled in the past would happen at once by surprise.
pub fn parse_scheduled(text: &str, now: Timestamp) -> Result<Option<Timestamp>, String> {
    if text.trim().eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    let at: Timestamp = text.trim().parse().map_err(|e| {
        format!("--scheduled {text:?} is not an RFC 3339 time such as 2026-11-22T10:00:00Z, nor `now`: {e}")
    })?;
    if at <= now {
        return Err(format!(
            "--scheduled {at} is in the past (it is {now} now); give a later time or `now`"
        ));
    }
    Ok(Some(at))
}

pub async fn switchover(
    finder: &mut Finder,
    leader: Option<String>,
    candidate: Option<String>,
    scheduled: Option<String>,
    force: bool,
) -> anyhow::Result<()> {
    let at = match scheduled {
        Some(text) => parse_scheduled(&text, Timestamp::now()).map_err(|e| anyhow!(e))?,
        None => None,
    };
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
    let reply = finder
        .call_any(&cluster, &["switchover"], |url| {
            Call::change(Method::POST, url, Some(&body), CHANGE_TIMEOUT)
        })
        .await?;
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
    let reply = finder
        .call_any(&cluster, &["failover"], |url| {
            Call::change(Method::POST, url, Some(&body), CHANGE_TIMEOUT)
        })
        .await?;
    println!("{}", reply.message());
    Ok(())
}

/// `reinit`: asks the member's own agent to clone its data afresh.
pub async fn reinit(finder: &mut Finder, member: String, force: bool) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let base = cluster.member_api(&member)?;
    confirm(
        format!(
            "Are you sure you want to reinitialize member {member}? Its data directory is replaced by a fresh copy of the leader's."
        ),
        "reinitialize",
        force,
    )
    .await?;
    let body = json!({});
    let reply = finder
        .api
        .call(Call::change(
            Method::POST,
            endpoint(&base, &["reinitialize"]),
            Some(&body),
            POSTGRES_TIMEOUT,
        ))
        .await?;
    println!("{member}: {}", reply.message());
    Ok(())
}

/// The members `restart` acts on, in the order it restarts them: the named
/// ones (all that run Postgres when none is named), with `pending` only
/// those a setting waits on, replicas before the leader so that the
/// cluster keeps its primary for as long as it can.
pub fn restart_order(
    view: &ClusterView,
    named: &[String],
    pending: bool,
) -> anyhow::Result<Vec<String>> {
    for name in named {
        if view.member(name).is_none() {
            anyhow::bail!(
                "{name} is not a member of cluster {} (members: {}); see `raftgresctl list`",
                view.scope(),
                view.member_names()
            );
        }
    }
    let mut chosen: Vec<&MemberView> = view
        .members
        .iter()
        .filter(|m| {
            if named.is_empty() {
                m.role.as_deref() != Some("witness")
            } else {
                named.contains(&m.name)
            }
        })
        .filter(|m| !pending || m.pending_restart == Some(true))
        .collect();
    chosen.sort_by_key(|m| (m.is_leader(), m.name.clone()));
    Ok(chosen.into_iter().map(|m| m.name.clone()).collect())
}

pub async fn restart(
    finder: &mut Finder,
    named: Vec<String>,
    pending: bool,
    force: bool,
) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let members = restart_order(&cluster.view, &named, pending)?;
    if members.is_empty() {
        println!(
            "no member of cluster {} {}; nothing to restart",
            cluster.view.scope(),
            if pending {
                "waits for a restart"
            } else {
                "runs Postgres"
            }
        );
        return Ok(());
    }
    confirm(
        format!(
            "Are you sure you want to restart members {}?",
            members.join(", ")
        ),
        "restart",
        force,
    )
    .await?;
    let body = json!({"restart_pending": pending});
    let mut failed = Vec::new();
    for member in &members {
        let base = cluster.member_api(member)?;
        let outcome = finder
            .api
            .call(Call::change(
                Method::POST,
                endpoint(&base, &["restart"]),
                Some(&body),
                POSTGRES_TIMEOUT,
            ))
            .await;
        match outcome {
            Ok(reply) => println!("{member}: {}", reply.message()),
            Err(e) => {
                println!("{member}: failed: {e:#}");
                failed.push(member.as_str());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("the restart of {} failed", failed.join(", ")))
    }
}

/// `pause` and `resume`. Asking for the state the cluster is already in
/// succeeds without a change, so scripts can repeat it.
pub async fn set_pause(finder: &mut Finder, pause: bool) -> anyhow::Result<()> {
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
    println!("Success: cluster management is {word}");
    Ok(())
}

pub async fn remove(finder: &mut Finder, member: String, force: bool) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    confirm(
        format!(
            "Are you sure you want to remove member {member} from cluster {}?",
            cluster.view.scope()
        ),
        "remove",
        force,
    )
    .await?;
    let reply = finder
        .call_any(&cluster, &["members", &member], |url| {
            Call::change(Method::DELETE, url, None, MEMBERSHIP_TIMEOUT)
        })
        .await?;
    println!("{}", reply.message());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_takes_replicas_first_and_pending_ones_only_when_asked() {
        let view: ClusterView = serde_json::from_value(json!({
            "scope": "lab",
            "members": [
                {"name": "m1", "role": "leader", "pending_restart": true},
                {"name": "m3", "role": "replica"},
                {"name": "m2", "role": "sync_standby", "pending_restart": true},
                {"name": "w", "role": "witness"}
            ],
            "lease": {"holder": "m1", "epoch": 3}
        }))
        .expect("a /cluster document");
        let order = |named: &[&str], pending| {
            let named: Vec<String> = named.iter().map(|n| (*n).to_owned()).collect();
            restart_order(&view, &named, pending).map_err(|e| e.to_string())
        };
        assert_eq!(
            order(&[], false),
            Ok(vec!["m2".into(), "m3".into(), "m1".into()])
        );
        assert_eq!(order(&[], true), Ok(vec!["m2".into(), "m1".into()]));
        assert_eq!(
            order(&["m1", "m3"], false),
            Ok(vec!["m3".into(), "m1".into()])
        );
        assert_eq!(order(&["m3"], true), Ok(vec![]));
        let err = order(&["m9"], false).expect_err("not a member");
        assert!(err.contains("m9 is not a member of cluster lab"), "{err}");
    }

    #[test]
    fn scheduled_is_now_or_a_future_rfc_3339_time() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("valid");
        assert_eq!(parse_scheduled("now", now), Ok(None));
        assert_eq!(parse_scheduled(" NOW ", now), Ok(None));
        assert_eq!(
            parse_scheduled("2026-11-22T10:00:00+02:00", now).map(|t| t.map(|t| t.to_string())),
            Ok(Some("2026-11-22T08:00:00Z".to_owned()))
        );
        let past = parse_scheduled("2025-12-31T23:59:59Z", now).expect_err("past");
        assert!(past.contains("in the past"), "{past}");
        let bad = parse_scheduled("tomorrow", now).expect_err("not a time");
        assert!(bad.contains("RFC 3339"), "{bad}");
    }
}
