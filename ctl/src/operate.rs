//! The commands that change the cluster: switchover, failover, restart,
//! reinit, pause, resume, remove.

use crate::cli::{FlushTarget, RoleFilter};
use crate::client::{
    CHANGE_TIMEOUT, COMMIT_TIMEOUT, Call, MEMBERSHIP_TIMEOUT, POSTGRES_TIMEOUT, endpoint,
};
use crate::cluster::{Cluster, ClusterView, Finder, MemberView};
use crate::prompt::confirm;
use anyhow::anyhow;
use jiff::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

/// How long `pause --wait` and `resume --wait` wait for every member.
const PAUSE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

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

/// Which members `restart` and `reload` act on.
pub struct Pick {
    /// By name; none names every member that runs Postgres.
    pub named: Vec<String>,
    pub role: Option<RoleFilter>,
    /// Only those a changed setting waits on to restart.
    pub pending: bool,
    /// Only the first of them.
    pub any: bool,
}

/// The members `pick` chooses, in the order they are acted on: replicas
/// before the leader, so that the cluster keeps its primary for as long as
/// it can. A named member that does not exist is an error.
pub fn chosen(view: &ClusterView, pick: &Pick) -> anyhow::Result<Vec<String>> {
    for name in &pick.named {
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
            if pick.named.is_empty() {
                m.role.as_deref() != Some("witness")
            } else {
                pick.named.contains(&m.name)
            }
        })
        .filter(|m| pick.role.is_none_or(|role| has_role(m, role)))
        .filter(|m| !pick.pending || m.pending_restart == Some(true))
        .collect();
    chosen.sort_by_key(|m| (m.is_leader(), m.name.clone()));
    if pick.any {
        chosen.truncate(1);
    }
    Ok(chosen.into_iter().map(|m| m.name.clone()).collect())
}

/// `--role`: a witness runs no Postgres and has no role of these.
pub fn has_role(member: &MemberView, role: RoleFilter) -> bool {
    let witness = member.role.as_deref() == Some("witness");
    match role {
        RoleFilter::Leader => member.is_leader(),
        RoleFilter::Replica => !member.is_leader() && !witness,
        RoleFilter::Any => !witness,
    }
}

pub async fn restart(finder: &mut Finder, pick: Pick, force: bool) -> anyhow::Result<()> {
    let body = json!({"restart_pending": pick.pending});
    on_chosen(finder, &pick, "restart", Some(&body), force).await
}

/// `reload`: each chosen member's Postgres rereads its configuration.
pub async fn reload(finder: &mut Finder, pick: Pick, force: bool) -> anyhow::Result<()> {
    on_chosen(finder, &pick, "reload", None, force).await
}

/// `verb` (the REST path too) on the members `pick` chooses, once
/// confirmed; none chosen is said, and is no error.
async fn on_chosen(
    finder: &mut Finder,
    pick: &Pick,
    verb: &str,
    body: Option<&Value>,
    force: bool,
) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let members = chosen(&cluster.view, pick)?;
    if members.is_empty() {
        let which = if pick.pending {
            "waits for a restart"
        } else {
            "was chosen"
        };
        println!(
            "no member of cluster {} {which}; nothing to {verb}",
            cluster.view.scope()
        );
        return Ok(());
    }
    confirm(
        format!(
            "Are you sure you want to {verb} members {}?",
            members.join(", ")
        ),
        verb,
        force,
    )
    .await?;
    each_member(finder, &cluster, &members, verb, body).await
}

/// POSTs `path` to each of `members` in turn, says how each went, and
/// fails naming those that failed.
async fn each_member(
    finder: &mut Finder,
    cluster: &Cluster,
    members: &[String],
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for member in members {
        let base = cluster.member_api(member)?;
        let outcome = finder
            .api
            .call(Call::change(
                Method::POST,
                endpoint(&base, &[path]),
                body,
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
        Err(anyhow!("the {path} of {} failed", failed.join(", ")))
    }
}

/// `flush switchover`: the pending switchover is cancelled.
pub async fn flush(finder: &mut Finder, target: FlushTarget, force: bool) -> anyhow::Result<()> {
    let FlushTarget::Switchover = target;
    let cluster = finder.cluster().await?;
    if cluster.view.scheduled_switchover.is_none() {
        println!("No pending scheduled switchover");
        return Ok(());
    }
    confirm(
        "Are you sure you want to discard the scheduled switchover?".to_owned(),
        "flush",
        force,
    )
    .await?;
    let reply = finder
        .call_any(&cluster, &["switchover"], |url| {
            Call::change(Method::DELETE, url, None, COMMIT_TIMEOUT)
        })
        .await?;
    println!("Success: {}", reply.message());
    Ok(())
}

/// `pause` and `resume`. Asking for the state the cluster is already in
/// succeeds without a change, so scripts can repeat it. With `wait`, until
/// every member's own status says so.
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
                Ok(base) => finder
                    .api
                    .call(Call::get(endpoint(&base, &["patroni"])))
                    .await
                    .is_ok_and(|reply| reply.body.get("pause") == Some(&Value::Bool(pause))),
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
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
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
        let order = |named: &[&str], role, pending, any| {
            let pick = Pick {
                named: named.iter().map(|n| (*n).to_owned()).collect(),
                role,
                pending,
                any,
            };
            chosen(&view, &pick).map_err(|e| e.to_string())
        };
        let names = |names: &[&str]| Ok(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>());
        assert_eq!(order(&[], None, false, false), names(&["m2", "m3", "m1"]));
        assert_eq!(order(&[], None, true, false), names(&["m2", "m1"]));
        assert_eq!(
            order(&["m1", "m3"], None, false, false),
            names(&["m3", "m1"])
        );
        assert_eq!(order(&["m3"], None, true, false), names(&[]));
        assert_eq!(
            order(&[], Some(RoleFilter::Leader), false, false),
            names(&["m1"])
        );
        assert_eq!(
            order(&[], Some(RoleFilter::Replica), false, false),
            names(&["m2", "m3"])
        );
        assert_eq!(
            order(&[], Some(RoleFilter::Any), false, true),
            names(&["m2"])
        );
        assert_eq!(
            order(&["m1"], Some(RoleFilter::Replica), false, false),
            names(&[])
        );
        let err = order(&["m9"], None, false, false).expect_err("not a member");
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
