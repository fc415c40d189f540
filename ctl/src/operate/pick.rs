//! Which members `restart`, `reload` and `flush restart` act on, and the
//! question asked before they do.

use crate::cli::RoleFilter;
use crate::cluster::{Cluster, ClusterView, Finder, MemberView};
use crate::prompt::confirm;

/// Which members a command acts on.
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
pub(super) fn chosen(view: &ClusterView, pick: &Pick) -> anyhow::Result<Vec<String>> {
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

/// The members `pick` chooses for `action` (`restart`, `reload`), once
/// the user confirmed `question` (`restart`, `schedule a restart at T of`)
/// on them; `None` when none is chosen, which is said and is no error.
pub(super) async fn confirm_chosen(
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
