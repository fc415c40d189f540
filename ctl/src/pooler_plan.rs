//! The pure half of `raftgresctl pooler`: which servers a /cluster document
//! names, and which pgbouncer console commands take pgbouncer from what it
//! does now to that. No I/O; `pooler.rs` runs what this decides.
//!
//! The rules follow the agent's own pooler loop (and `raftgres_pooler`'s
//! account of pgbouncer 1.18): with no primary the write database is fenced
//! before its entry is pointed at no server, a new primary after a fence is
//! ENABLEd after the RELOAD, and a primary that moved while clients were
//! served gets KILL and RESUME so no session stays on the old one.

use crate::cluster::{ClusterView, MemberView};
use raftgres_pooler::{NO_SERVER_HOST, PoolerSettings, Routes, Target};
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

/// One step on pgbouncer's console, in the order [`Applied::plan`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// DISABLE, KILL, RESUME the write database: new clients are refused,
    /// connected ones dropped, and no login dials a dead server.
    Fence,
    /// Write the databases file and RELOAD; then ENABLE the read database,
    /// or DISABLE it while it has no server.
    Rewrite,
    /// ENABLE the write database after a fence.
    Enable,
    /// KILL and RESUME the write database: its sessions on the old primary
    /// go, and the next clients reach the new one.
    KillResume,
}

/// What this process knows pgbouncer does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The routes last written and RELOADed by this process.
    pub routes: Option<Routes>,
    /// Where the write database's server connections may go; `None` while
    /// fenced or pointed at no server.
    pub serving: Option<Target>,
    /// The write database is DISABLEd.
    pub fenced: bool,
}

impl Applied {
    /// After the fence this command starts with.
    pub fn fenced() -> Applied {
        Applied {
            routes: None,
            serving: None,
            fenced: true,
        }
    }

    /// From pgbouncer's `SHOW DATABASES` row of the write database (`--once`
    /// starts there, so a run that changes nothing drops no session).
    pub fn observed(host: Option<&str>, port: u16, disabled: bool) -> Applied {
        let serving = host
            .filter(|h| *h != NO_SERVER_HOST && !disabled)
            .map(|h| Target {
                host: h.to_owned(),
                port,
            });
        Applied {
            routes: None,
            serving,
            fenced: disabled,
        }
    }

    /// The console commands that take pgbouncer to `desired`; none when it
    /// is there already.
    pub fn plan(&self, desired: &Routes) -> Vec<Action> {
        let mut actions = Vec::new();
        let rewrite = self.routes.as_ref() != Some(desired);
        match &desired.write {
            None => {
                if !self.fenced {
                    actions.push(Action::Fence);
                }
                if rewrite {
                    actions.push(Action::Rewrite);
                }
            }
            Some(primary) => {
                if rewrite {
                    actions.push(Action::Rewrite);
                }
                if self.fenced {
                    actions.push(Action::Enable);
                } else if self.serving.as_ref() != Some(primary) {
                    actions.push(Action::KillResume);
                }
            }
        }
        actions
    }

    /// Records that `action`, planned for `desired`, succeeded. A failed
    /// one is not recorded, so the next round plans it again.
    pub fn record(&mut self, action: Action, desired: &Routes) {
        match action {
            Action::Fence => {
                self.fenced = true;
                self.serving = None;
            }
            Action::Rewrite => self.routes = Some(desired.clone()),
            Action::Enable => {
                self.fenced = false;
                self.serving = desired.write.clone();
            }
            Action::KillResume => self.serving = desired.write.clone(),
        }
    }

    /// pgbouncer sends the write database to a primary.
    pub fn serves(&self) -> bool {
        !self.fenced && self.serving.is_some()
    }
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

    /// One row per situation: what pgbouncer does now, where clients should
    /// go, and the console commands in order.
    #[test]
    fn the_console_commands_for_each_situation() {
        use Action::*;
        let s = settings(None);
        let at = |port| routes(&s, Some(target(port)), Vec::new());
        let nowhere = routes(&s, None, Vec::new());
        let serving = |port| Applied {
            routes: Some(at(port)),
            serving: Some(target(port)),
            fenced: false,
        };
        let fenced_nowhere = Applied {
            routes: Some(nowhere.clone()),
            serving: None,
            fenced: true,
        };
        let rows: Vec<(&str, Applied, Routes, Vec<Action>)> = vec![
            (
                "start, no leader yet",
                Applied::fenced(),
                nowhere.clone(),
                vec![Rewrite],
            ),
            (
                "start, a leader",
                Applied::fenced(),
                at(5432),
                vec![Rewrite, Enable],
            ),
            ("steady", serving(5432), at(5432), vec![]),
            (
                "leader lost",
                serving(5432),
                nowhere.clone(),
                vec![Fence, Rewrite],
            ),
            (
                "still no leader",
                fenced_nowhere.clone(),
                nowhere.clone(),
                vec![],
            ),
            (
                "a leader after a fence",
                fenced_nowhere,
                at(5433),
                vec![Rewrite, Enable],
            ),
            (
                "leader moved while serving",
                serving(5432),
                at(5433),
                vec![Rewrite, KillResume],
            ),
            (
                "only the replicas changed",
                serving(5432),
                routes(&s, Some(target(5432)), vec![target(5433)]),
                vec![Rewrite],
            ),
            (
                "--once finds it serving the leader",
                Applied::observed(Some("127.0.0.1"), 5432, false),
                at(5432),
                vec![Rewrite],
            ),
            (
                "--once finds it serving another server",
                Applied::observed(Some("127.0.0.1"), 5433, false),
                at(5432),
                vec![Rewrite, KillResume],
            ),
            (
                "--once finds it disabled",
                Applied::observed(Some("127.0.0.1"), 5432, true),
                at(5432),
                vec![Rewrite, Enable],
            ),
            (
                "--once finds no server, enabled, and no leader",
                Applied::observed(Some(NO_SERVER_HOST), 5432, false),
                nowhere.clone(),
                vec![Fence, Rewrite],
            ),
        ];
        for (situation, applied, desired, want) in rows {
            assert_eq!(applied.plan(&desired), want, "{situation}");
            let mut after = applied.clone();
            for action in want {
                after.record(action, &desired);
            }
            assert_eq!(after.plan(&desired), vec![], "{situation}: then nothing");
            assert_eq!(after.serves(), desired.write.is_some(), "{situation}");
            assert_eq!(after.serving, desired.write, "{situation}");
        }
    }

    #[test]
    fn a_failed_step_is_planned_again() {
        let s = settings(None);
        let desired = routes(&s, Some(target(5433)), Vec::new());
        let mut applied = Applied {
            routes: Some(routes(&s, Some(target(5432)), Vec::new())),
            serving: Some(target(5432)),
            fenced: false,
        };
        // The RELOAD went through, the KILL did not.
        applied.record(Action::Rewrite, &desired);
        assert_eq!(applied.plan(&desired), vec![Action::KillResume]);
        // A fence that went through is not repeated when the leader goes.
        let mut applied = Applied::fenced();
        let nowhere = routes(&s, None, Vec::new());
        assert_eq!(applied.plan(&nowhere), vec![Action::Rewrite]);
        applied.record(Action::Rewrite, &nowhere);
        assert!(applied.plan(&nowhere).is_empty());
    }
}
