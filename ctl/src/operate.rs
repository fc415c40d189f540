//! The commands that change the cluster: switchover, failover, restart,
//! reinit, pause, resume, remove.

use crate::cli::{FlushTarget, RoleFilter};
use crate::client::{
    CHANGE_TIMEOUT, COMMIT_TIMEOUT, Call, MEMBERSHIP_TIMEOUT, POSTGRES_TIMEOUT, Reply, endpoint,
};
use crate::cluster::{Cluster, ClusterView, Finder, MemberView};
use crate::error::CtlError;
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

/// `reinit`: asks each member's own agent to clone its data afresh. The
/// agent answers once the clone has started; with `wait`, until each has
/// its fresh copy, its progress on stderr when that is a terminal.
pub async fn reinit(
    finder: &mut Finder,
    members: Vec<String>,
    force: bool,
    wait: bool,
) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let bases = members
        .iter()
        .map(|member| Ok((member.clone(), cluster.member_api(member)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    confirm(
        format!(
            "Are you sure you want to reinitialize members {}? Their data directories are replaced by a fresh copy of the leader's.",
            members.join(", ")
        ),
        "reinitialize",
        force,
    )
    .await?;
    let body = json!({});
    let mut failed = Vec::new();
    let mut started = Vec::new();
    for (member, base) in bases {
        // Before the request: a postmaster that started since is the new copy's.
        let before = if wait {
            member_status(finder, &base)
                .await
                .ok()
                .and_then(|doc| doc.get("postmaster_start_time").cloned())
        } else {
            None
        };
        let reply = finder
            .api
            .call(Call::change(
                Method::POST,
                endpoint(&base, &["reinitialize"]),
                Some(&body),
                // The agent answers once its Postgres loop took the request.
                CHANGE_TIMEOUT,
            ))
            .await;
        match reply {
            Ok(reply) => {
                println!("{member}: {}", reply.message());
                started.push(Reinit::new(member, base, before));
            }
            Err(e) => {
                println!("{member}: failed: {e:#}");
                failed.push(member);
            }
        }
    }
    if wait && !started.is_empty() {
        let names: Vec<&str> = started.iter().map(|r| r.member.as_str()).collect();
        println!(
            "Waiting for reinitialize to complete on: {}",
            names.join(", ")
        );
        failed.extend(wait_for_reinits(finder, started).await);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("the reinitialize of {} failed", failed.join(", ")))
    }
}

/// How long a reinitialize may take to show in `GET /patroni`, and a
/// member may go without answering while it copies.
const REINIT_SILENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// A reinitialize `reinit --wait` follows.
struct Reinit {
    member: String,
    base: reqwest::Url,
    /// `postmaster_start_time` before the request.
    before: Option<Value>,
    /// `GET /patroni` said `creating replica` once.
    seen: bool,
    /// When the member last answered (or the wait began).
    heard: tokio::time::Instant,
}

impl Reinit {
    fn new(member: String, base: reqwest::Url, before: Option<Value>) -> Reinit {
        Reinit {
            member,
            base,
            before,
            seen: false,
            heard: tokio::time::Instant::now(),
        }
    }

    /// `None` while it goes on; the outcome once it is over.
    fn judge(&mut self, doc: &Value) -> Option<Result<(), String>> {
        self.heard = tokio::time::Instant::now();
        let state = doc
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        if state == "creating replica" {
            self.seen = true;
            return None;
        }
        // A copy too quick to be seen left a new postmaster behind.
        let restarted = doc
            .get("postmaster_start_time")
            .is_some_and(|now| self.before.as_ref() != Some(now));
        if !self.seen && !restarted {
            return None;
        }
        Some(if state == "running" {
            Ok(())
        } else {
            Err(format!(
                "its Postgres is {state} after the reinitialize; see its agent's log"
            ))
        })
    }
}

/// Follows each reinitialize in its member's `GET /patroni` until it is
/// over; returns the members whose reinitialize failed.
async fn wait_for_reinits(finder: &Finder, mut waiting: Vec<Reinit>) -> Vec<String> {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    let mut failed = Vec::new();
    while !waiting.is_empty() {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let mut next = Vec::new();
        for mut reinit in waiting {
            let outcome = match member_status(finder, &reinit.base).await {
                Ok(doc) => {
                    if terminal
                        && let Some(line) = doc
                            .get("progress")
                            .and_then(|p| progress_line(&reinit.member, p))
                    {
                        eprint!("\r{line}\x1b[K");
                        let _ = std::io::stderr().flush();
                    }
                    reinit.judge(&doc)
                }
                Err(_) => None,
            };
            let outcome = outcome.or_else(|| {
                (reinit.heard.elapsed() > REINIT_SILENCE).then(|| {
                    Err(if reinit.seen {
                        format!("it stopped answering for {REINIT_SILENCE:?} while copying")
                    } else {
                        format!(
                            "no reinitialize showed in its GET /patroni within {REINIT_SILENCE:?}"
                        )
                    })
                })
            });
            if terminal && outcome.is_some() {
                eprint!("\r\x1b[K");
            }
            match outcome {
                None => next.push(reinit),
                Some(Ok(())) => println!("Reinitialize is completed on: {}", reinit.member),
                Some(Err(why)) => {
                    println!("{}: reinitialize failed: {why}", reinit.member);
                    failed.push(reinit.member);
                }
            }
        }
        waiting = next;
    }
    failed
}

/// A member's own `GET /patroni`.
async fn member_status(finder: &Finder, base: &reqwest::Url) -> Result<Value, CtlError> {
    finder
        .api
        .call(Call::get(endpoint(base, &["patroni"])))
        .await
        .map(|reply| reply.body)
}

/// One line of a copy's progress as `GET /patroni` reports it: bytes done
/// of the total, the share, and the rate.
pub fn progress_line(member: &str, progress: &Value) -> Option<String> {
    let bytes = |key: &str| progress.get(key).and_then(Value::as_u64);
    let (done, total) = (bytes("done_bytes")?, bytes("total_bytes")?);
    let rate = bytes("bytes_per_second").unwrap_or(0);
    let action = progress
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("copy");
    let mb = |bytes: u64| format!("{:.1} MB", bytes as f64 / 1_048_576.0);
    let percent = done.min(total) * 100 / total.max(1);
    Some(format!(
        "{member}: {action} {} of {} ({percent}%), {}/s",
        mb(done),
        mb(total),
        mb(rate)
    ))
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

/// `restart`'s options beyond the members: patronictl's `--scheduled`,
/// `--pg-version` and `--timeout`.
pub struct RestartWhen {
    pub scheduled: Option<String>,
    pub pg_version: Option<String>,
    pub timeout: Option<String>,
}

pub async fn restart(
    finder: &mut Finder,
    mut pick: Pick,
    when: RestartWhen,
    force: bool,
) -> anyhow::Result<()> {
    let at = match &when.scheduled {
        Some(text) => parse_scheduled(text, Timestamp::now()).map_err(|e| anyhow!(e))?,
        None => None,
    };
    let mut body = json!({"restart_pending": pick.pending});
    if let Some(version) = when.pg_version {
        body["postgres_version"] = version.into();
    }
    if let Some(timeout) = when.timeout {
        body["timeout"] = timeout.into();
    }
    let Some(at) = at else {
        let Some((cluster, members)) =
            confirm_chosen(finder, &pick, "restart", "restart", force).await?
        else {
            return Ok(());
        };
        return each_member(finder, &cluster, &members, "restart", Some(&body)).await;
    };
    body["schedule"] = at.to_string().into();
    // As patronictl: whether a setting waits is judged when the restart
    // runs, so every member chosen gets it.
    pick.pending = false;
    let question = format!("schedule a restart at {at} of");
    let Some((cluster, members)) =
        confirm_chosen(finder, &pick, "restart", &question, force).await?
    else {
        return Ok(());
    };
    if force {
        // As patronictl: --force replaces a restart already scheduled.
        let replaced: Vec<String> = members
            .iter()
            .filter(|m| {
                cluster
                    .view
                    .member(m)
                    .is_some_and(|m| m.scheduled_restart.is_some())
            })
            .cloned()
            .collect();
        for member in &replaced {
            let base = cluster.member_api(member)?;
            match cancel_restart(finder, &base).await {
                Ok(()) | Err(CtlError::Refused { status: 404, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    each_member(finder, &cluster, &members, "restart", Some(&body)).await
}

/// `DELETE /restart` on the member at `base`.
async fn cancel_restart(finder: &Finder, base: &reqwest::Url) -> Result<(), CtlError> {
    finder
        .api
        .call(Call::change(
            Method::DELETE,
            endpoint(base, &["restart"]),
            None,
            COMMIT_TIMEOUT,
        ))
        .await
        .map(|_| ())
}

/// How long `reload` waits for each member's Postgres to read its
/// configuration after the agent took the request.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `reload`: each chosen member's agent rereads its settings file and has
/// its Postgres reread its configuration, which is waited for (its
/// `conf_load_time` in `GET /patroni` moves).
pub async fn reload(finder: &mut Finder, pick: Pick, force: bool) -> anyhow::Result<()> {
    let Some((cluster, members)) = confirm_chosen(finder, &pick, "reload", "reload", force).await?
    else {
        return Ok(());
    };
    let mut failed = Vec::new();
    for member in &members {
        if let Err(e) = reload_member(finder, &cluster, member).await {
            println!("{member}: failed: {e:#}");
            failed.push(member.as_str());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("the reload of {} failed", failed.join(", ")))
    }
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
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// The members `pick` chooses for `action` (`restart`, `reload`), once
/// the user confirmed `question` (`restart`, `schedule a restart at T of`)
/// on them; `None` when none is chosen, which is said and is no error.
async fn confirm_chosen(
    finder: &mut Finder,
    pick: &Pick,
    action: &str,
    question: &str,
    force: bool,
) -> anyhow::Result<Option<(Cluster, Vec<String>)>> {
    let cluster = finder.cluster().await?;
    let members = chosen(&cluster.view, pick)?;
    if members.is_empty() {
        let which = if pick.pending {
            "waits for a restart"
        } else {
            "was chosen"
        };
        println!(
            "no member of cluster {} {which}; nothing to {action}",
            cluster.view.scope()
        );
        return Ok(None);
    }
    confirm(
        format!(
            "Are you sure you want to {question} members {}?",
            members.join(", ")
        ),
        action,
        force,
    )
    .await?;
    Ok(Some((cluster, members)))
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

/// `flush restart`: the chosen members' scheduled restarts are cancelled;
/// `flush switchover`: the pending switchover is.
pub async fn flush(
    finder: &mut Finder,
    target: FlushTarget,
    members: Vec<String>,
    role: Option<RoleFilter>,
    force: bool,
) -> anyhow::Result<()> {
    if target == FlushTarget::Restart {
        let pick = Pick {
            named: members,
            role,
            pending: false,
            any: false,
        };
        return flush_restarts(finder, &pick, force).await;
    }
    if !members.is_empty() || role.is_some() {
        anyhow::bail!(
            "flush switchover takes no members or --role: the cluster has one pending switchover"
        );
    }
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

/// Cancels the scheduled restart of each member `pick` chooses that has
/// one, as `list` shows it; the others are named.
async fn flush_restarts(finder: &mut Finder, pick: &Pick, force: bool) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let (scheduled, none): (Vec<String>, Vec<String>) =
        chosen(&cluster.view, pick)?.into_iter().partition(|m| {
            cluster
                .view
                .member(m)
                .is_some_and(|m| m.scheduled_restart.is_some())
        });
    for member in &none {
        println!("No scheduled restart for member {member}");
    }
    if scheduled.is_empty() {
        return Ok(());
    }
    confirm(
        format!(
            "Are you sure you want to discard the scheduled restarts of members {}?",
            scheduled.join(", ")
        ),
        "flush",
        force,
    )
    .await?;
    let mut failed = Vec::new();
    for member in &scheduled {
        let base = cluster.member_api(member)?;
        match cancel_restart(finder, &base).await {
            Ok(()) => println!("Success: flush scheduled restart for member {member}"),
            // Run or cancelled since the list was read.
            Err(CtlError::Refused { status: 404, .. }) => {
                println!("No scheduled restart for member {member}")
            }
            Err(e) => {
                println!("{member}: failed: {e:#}");
                failed.push(member.as_str());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "cancelling the scheduled restart of {} failed",
            failed.join(", ")
        ))
    }
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
    fn progress_shows_bytes_share_and_rate() {
        let progress = json!({"action": "clone", "done_bytes": 3 << 20,
                              "total_bytes": 12 << 20, "bytes_per_second": 1 << 19});
        assert_eq!(
            progress_line("m2", &progress).as_deref(),
            Some("m2: clone 3.0 MB of 12.0 MB (25%), 0.5 MB/s")
        );
        let unknown_total = json!({"action": "rewind", "done_bytes": 5, "total_bytes": 0});
        assert_eq!(
            progress_line("m2", &unknown_total).as_deref(),
            Some("m2: rewind 0.0 MB of 0.0 MB (0%), 0.0 MB/s")
        );
        assert_eq!(progress_line("m2", &json!({"done_bytes": 1})), None);
    }

    #[test]
    fn a_reinitialize_is_over_once_it_was_seen_or_left_a_new_postmaster() {
        let base: reqwest::Url = "http://127.0.0.1:8008".parse().expect("a URL");
        let before = Some(json!("2026-12-07 15:06:54.87+00"));
        let doc =
            |state: &str, started: &str| json!({"state": state, "postmaster_start_time": started});
        let old = "2026-12-07 15:06:54.87+00";
        let new = "2026-12-07 15:09:00.01+00";

        let mut reinit = Reinit::new("m2".into(), base.clone(), before.clone());
        assert_eq!(reinit.judge(&doc("running", old)), None, "not begun yet");
        assert_eq!(reinit.judge(&json!({"state": "creating replica"})), None);
        assert_eq!(
            reinit.judge(&doc("starting", old)).map(|r| r.is_err()),
            Some(true)
        );

        let mut reinit = Reinit::new("m2".into(), base.clone(), before.clone());
        assert_eq!(reinit.judge(&json!({"state": "creating replica"})), None);
        assert_eq!(reinit.judge(&doc("running", new)), Some(Ok(())));

        // Too quick to be seen: the new postmaster tells.
        let mut reinit = Reinit::new("m2".into(), base, before);
        assert_eq!(reinit.judge(&doc("running", new)), Some(Ok(())));
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
