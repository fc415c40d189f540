//! Where a /cluster document says `raftgresctl pooler` should send clients.
//! Pure; the steps that take pgbouncer there come from `raftgres_pooler`'s
//! planner, the same one the agent uses.

use crate::cluster::{ClusterView, MemberView};
use raftgres_pooler::{PoolerSettings, Routes, Target};
use reqwest::Url;

/// The member /cluster names as the primary. Its own `GET /primary` must
/// still confirm it: the document may come from a member cut off from the
/// majority, and the lease holder is `leader` before it is promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub name: String,
    pub target: Target,
    /// Where to confirm it; `None` when /cluster gives no usable api_url.
    pub api: Option<Url>,
}

fn target_of(member: &MemberView) -> Option<Target> {
    Some(Target {
        host: member.host.clone().filter(|h| !h.is_empty())?,
        port: member.port.filter(|p| *p != 0)?,
    })
}

/// The member with role `leader` and state `running` (or a stale record,
/// which says nothing either way) and a Postgres address; otherwise why
/// there is none, for the log. Staleness is the answering member's
/// judgement, wrong on a member cut off from the majority, so a stale
/// leader is left to its own `GET /primary` to confirm or refuse.
pub fn leader(view: &ClusterView) -> Result<Leader, String> {
    let Some(member) = view.leader() else {
        return Err(
            match view.lease.as_ref().and_then(|l| l.holder.as_deref()) {
                Some(holder) => format!("lease holder {holder} is not among the members"),
                None => "nobody holds the lease".to_owned(),
            },
        );
    };
    let state = member.state.as_deref().unwrap_or("unknown");
    if state != "running" && !member.is_stale() {
        return Err(format!("leader {} is {state}, not running", member.name));
    }
    let Some(target) = target_of(member) else {
        return Err(format!(
            "leader {} has no Postgres host and port in /cluster",
            member.name
        ));
    };
    Ok(Leader {
        name: member.name.clone(),
        target,
        api: member.api_base(),
    })
}

/// The members whose state is `streaming`, in /cluster's order.
pub fn replicas(view: &ClusterView) -> Vec<Target> {
    view.members
        .iter()
        .filter(|m| !m.is_leader() && m.state.as_deref() == Some("streaming"))
        .filter_map(target_of)
        .collect()
}

/// The routes to apply: reads fall back to the primary while no replica
/// streams, as a member's own pgbouncer does.
pub fn routes(settings: &PoolerSettings, write: Option<Target>, mut read: Vec<Target>) -> Routes {
    if read.is_empty() {
        read.extend(write.clone());
    }
    settings.routes(write, read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftgres_pooler::AdminTarget;
    use serde::Deserialize;
    use serde_json::json;
    use std::time::Duration;

    fn settings(read_db: Option<&str>) -> PoolerSettings {
        PoolerSettings {
            databases_file: "/etc/pgbouncer/raftgres-databases.ini".into(),
            admin: AdminTarget::new("127.0.0.1", 6432, "postgres"),
            write_db: "app".into(),
            read_db: read_db.map(str::to_owned),
            dbname: "app".into(),
            pause_timeout: Duration::from_secs(10),
        }
    }

    fn target(port: u16) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn view(members: serde_json::Value) -> ClusterView {
        ClusterView::deserialize(
            &json!({ "members": members, "lease": {"holder": null, "epoch": 1} }),
        )
        .expect("a /cluster document")
    }

    fn member(name: &str, role: &str, state: &str, port: u16) -> serde_json::Value {
        json!({"name": name, "role": role, "state": state, "host": "127.0.0.1", "port": port,
               "api_url": format!("http://127.0.0.1:{}/patroni", port + 1000)})
    }

    #[test]
    fn the_leader_is_the_running_member_with_role_leader() {
        let cluster = view(json!([
            member("m1", "replica", "streaming", 5433),
            member("m2", "leader", "running", 5432),
            member("m3", "sync_standby", "streaming", 5434),
            member("m4", "replica", "starting", 5435),
            {"name": "w", "role": "witness", "state": "running"},
        ]));
        let found = leader(&cluster).expect("a leader");
        assert_eq!(found.name, "m2");
        assert_eq!(found.target, target(5432));
        assert_eq!(
            found.api.map(String::from).as_deref(),
            Some("http://127.0.0.1:6432/")
        );
        assert_eq!(replicas(&cluster), vec![target(5433), target(5434)]);
    }

    #[test]
    fn a_stale_leader_is_left_to_its_own_confirmation() {
        let mut stale = member("m1", "leader", "unknown", 5432);
        stale["stale"] = json!(true);
        let found = leader(&view(json!([stale]))).expect("a leader to confirm");
        assert_eq!(found.target, target(5432));
        let not_stale = view(json!([member("m1", "leader", "unknown", 5432)]));
        assert!(leader(&not_stale).is_err(), "its Postgres state is unknown");
    }

    #[test]
    fn no_leader_says_why() {
        let cases = [
            (
                view(json!([member("m1", "replica", "running", 5432)])),
                "nobody holds the lease",
            ),
            (
                view(json!([member("m1", "leader", "starting", 5432)])),
                "leader m1 is starting",
            ),
            (
                view(json!([member("m1", "leader", "stopped", 5432)])),
                "leader m1 is stopped",
            ),
            (
                view(json!([{"name": "m1", "role": "leader", "state": "running"}])),
                "leader m1 has no Postgres host and port",
            ),
            (
                ClusterView::deserialize(&json!({"members": [], "lease": {"holder": "m9"}}))
                    .expect("lenient"),
                "lease holder m9 is not among the members",
            ),
        ];
        for (cluster, want) in cases {
            let why = leader(&cluster).expect_err(want);
            assert!(why.contains(want), "{why:?} lacks {want:?}");
        }
    }

    #[test]
    fn reads_fall_back_to_the_primary_and_to_nothing() {
        let s = settings(Some("app_ro"));
        let lonely = routes(&s, Some(target(5432)), Vec::new());
        assert_eq!(lonely.read, vec![target(5432)]);
        let none = routes(&s, None, Vec::new());
        assert_eq!(none.without_server(), vec!["app", "app_ro"]);
        let both = routes(&s, Some(target(5432)), vec![target(5433)]);
        assert_eq!(both.read, vec![target(5433)]);
        assert_eq!(both.write_db, "app");
    }
}
