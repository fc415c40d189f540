//! Finding the cluster: the first address that answers `GET /cluster` gives
//! the member list, and through it every other member's API.

use crate::client::{Api, Call, Reply, base_url, endpoint};
use crate::error::CtlError;
use crate::target::ExpectedScope;
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `GET /cluster`, read leniently: a field of an unexpected type is shown as
/// missing rather than failing the whole command; only a member without a
/// name is unreadable.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClusterView {
    #[serde(default, deserialize_with = "lenient")]
    pub scope: Option<String>,
    #[serde(default)]
    pub members: Vec<MemberView>,
    #[serde(default, deserialize_with = "lenient")]
    pub pause: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    pub scheduled_switchover: Option<ScheduledSwitchover>,
    #[serde(default, deserialize_with = "lenient")]
    pub lease: Option<LeaseView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MemberView {
    pub name: String,
    #[serde(default, deserialize_with = "lenient")]
    pub role: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub api_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub host: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "lenient")]
    pub timeline: Option<u64>,
    /// Patroni 4's positions: `X/Y`, or a word such as `"unknown"`, and
    /// their lags: bytes behind the leader, or such a word.
    #[serde(default)]
    pub receive_lsn: Option<Value>,
    #[serde(default)]
    pub receive_lag: Option<Value>,
    #[serde(default)]
    pub replay_lsn: Option<Value>,
    #[serde(default)]
    pub replay_lag: Option<Value>,
    /// Since the answering agent first saw this member's current record.
    #[serde(default, deserialize_with = "lenient")]
    pub report_age_ms: Option<u64>,
    /// The answering agent has watched for less time than the record is old.
    #[serde(default, deserialize_with = "lenient")]
    pub report_age_is_lower_bound: Option<bool>,
    /// Silent for a ttl or longer, as the answering agent judges it.
    #[serde(default, deserialize_with = "lenient")]
    pub stale: Option<bool>,
    /// A setting waits for a restart of the member's Postgres.
    #[serde(default, deserialize_with = "lenient")]
    pub pending_restart: Option<bool>,
    /// Which settings, each `{old_value, new_value}`.
    #[serde(default, deserialize_with = "lenient")]
    pub pending_restart_reason: Option<serde_json::Map<String, Value>>,
    /// A restart set for a later time: its `schedule` and conditions.
    #[serde(default, deserialize_with = "lenient")]
    pub scheduled_restart: Option<serde_json::Map<String, Value>>,
    #[serde(default, deserialize_with = "lenient")]
    pub tags: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScheduledSwitchover {
    #[serde(default, deserialize_with = "lenient")]
    pub at: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub from: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LeaseView {
    #[serde(default, deserialize_with = "lenient")]
    pub holder: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub epoch: Option<u64>,
}

fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(T::deserialize(value).ok())
}

impl MemberView {
    pub fn is_leader(&self) -> bool {
        self.role.as_deref() == Some("leader")
    }

    pub fn is_stale(&self) -> bool {
        self.stale == Some(true)
    }

    pub fn api_base(&self) -> Option<Url> {
        self.api_url.as_deref().and_then(|u| base_url(u).ok())
    }
}

impl ClusterView {
    pub fn scope(&self) -> &str {
        self.scope.as_deref().unwrap_or("(unnamed)")
    }

    pub fn paused(&self) -> bool {
        self.pause == Some(true)
    }

    pub fn leader(&self) -> Option<&MemberView> {
        self.members.iter().find(|m| m.is_leader())
    }

    /// The lease holder, by its member record or else by the lease itself.
    pub fn leader_name(&self) -> Option<&str> {
        self.leader()
            .map(|m| m.name.as_str())
            .or_else(|| self.lease.as_ref()?.holder.as_deref())
    }

    pub fn member(&self, name: &str) -> Option<&MemberView> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn member_names(&self) -> String {
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        names.join(", ")
    }
}

/// One answer to `GET /cluster`.
pub struct Cluster {
    /// The member that answered.
    pub via: Url,
    pub view: ClusterView,
}

impl Cluster {
    /// Where a cluster-wide call goes: the member that answered first, then
    /// the others, each only if the one before could not be reached.
    pub fn api_bases(&self) -> Vec<Url> {
        let mut bases = vec![self.via.clone()];
        for base in self.view.members.iter().filter_map(MemberView::api_base) {
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
        bases
    }

    /// The API of one member, for calls that act on that member itself.
    pub fn member_api(&self, name: &str) -> anyhow::Result<Url> {
        let Some(member) = self.view.member(name) else {
            anyhow::bail!(
                "{name} is not a member of cluster {} (members: {}); see `raftgresctl list`",
                self.view.scope(),
                self.view.member_names()
            );
        };
        member.api_base().ok_or_else(|| {
            anyhow::anyhow!(
                "member {name} has no usable api_url ({:?}) in /cluster; its agent may not have reported yet",
                member.api_url
            )
        })
    }
}

/// Remembers every address that can answer for the cluster, so that a
/// long `--watch` keeps going when the member it started from goes down.
pub struct Finder {
    pub api: Api,
    seeds: Vec<Url>,
    known: Vec<Url>,
    scope: Option<ExpectedScope>,
}

impl Finder {
    pub fn new(api: Api, seeds: Vec<Url>, scope: Option<ExpectedScope>) -> Finder {
        Finder {
            api,
            known: seeds.clone(),
            seeds,
            scope,
        }
    }

    pub async fn cluster(&mut self) -> Result<Cluster, CtlError> {
        let mut failures = Vec::new();
        for base in &self.known {
            match self.api.call(Call::get(endpoint(base, &["cluster"]))).await {
                Ok(reply) => match read_cluster(&reply) {
                    Ok(view) if !serves(&view, self.scope.as_ref()) => {
                        let expected = self.scope.as_ref().map(|e| e.describe());
                        failures.push(format!(
                            "{base} serves cluster {}, not {}",
                            view.scope(),
                            expected.unwrap_or_default()
                        ));
                    }
                    Ok(view) => {
                        let cluster = Cluster {
                            via: base.clone(),
                            view,
                        };
                        let mut known = cluster.api_bases();
                        for seed in &self.seeds {
                            if !known.contains(seed) {
                                known.push(seed.clone());
                            }
                        }
                        self.known = known;
                        return Ok(cluster);
                    }
                    Err(e) => failures.push(format!("{base}: {e}")),
                },
                Err(CtlError::Unreachable { cause, .. }) => {
                    failures.push(format!("{base}: {cause}"));
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(CtlError::Unavailable(format!(
            "cannot reach any member (tried {}); pass --url or --lab",
            failures.join("; ")
        )))
    }

    /// Sends a cluster-wide call to the first member that can be reached.
    /// Only a failed connect moves on: a request that may have arrived is
    /// never sent twice.
    pub async fn call_any<'body>(
        &self,
        cluster: &Cluster,
        path: &[&str],
        make: impl Fn(Url) -> Call<'body>,
    ) -> Result<Reply, CtlError> {
        let mut failures = Vec::new();
        let mut bases = cluster.api_bases();
        let method = bases.first().map(|b| make(endpoint(b, path)).method);
        if method.is_some_and(|m| self.api.needs_credentials(&m)) {
            // Only the agents the user named get the credentials, in the
            // order the cluster gives, then the others the user named.
            bases.retain(|b| self.api.may_send_credentials(b));
            for seed in &self.seeds {
                if !bases.contains(seed) {
                    bases.push(seed.clone());
                }
            }
        }
        for base in bases {
            match self.api.call(make(endpoint(&base, path))).await {
                Err(CtlError::Unreachable { url, cause }) => {
                    failures.push(format!("{url}: {cause}"));
                }
                other => return other,
            }
        }
        Err(CtlError::Unavailable(format!(
            "cannot reach any member (tried {}); check that the agents run",
            failures.join("; ")
        )))
    }
}

/// Whether `view` is the cluster a settings file named, when one did.
fn serves(view: &ClusterView, scope: Option<&ExpectedScope>) -> bool {
    scope.is_none_or(|expected| view.scope.as_deref() == Some(expected.scope.as_str()))
}

fn read_cluster(reply: &Reply) -> Result<ClusterView, String> {
    ClusterView::deserialize(&reply.body).map_err(|e| {
        format!("its /cluster document is not what raftgresctl expects ({e}); compare versions with `raftgresctl version`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_documented_cluster_document() {
        let doc = json!({
            "scope": "lab",
            "members": [
                {"name": "m1", "role": "leader", "state": "running",
                 "api_url": "http://127.0.0.1:8008/patroni", "host": "127.0.0.1", "port": 5432,
                 "timeline": 2, "tags": {"nofailover": false}},
                {"name": "m2", "role": "replica", "state": "streaming",
                 "api_url": "http://127.0.0.1:8009/patroni", "host": "127.0.0.1", "port": 5433,
                 "timeline": 2, "lag": "unknown"}
            ],
            "pause": false,
            "scheduled_switchover": {"at": "2026-11-22T10:00:00Z", "to": "m2"},
            "lease": {"holder": "m1", "epoch": 3}
        });
        let view = ClusterView::deserialize(&doc).expect("documented shape");
        assert_eq!(view.leader().map(|m| m.name.as_str()), Some("m1"));
        let without_roles = ClusterView::deserialize(&json!({
            "members": [{"name": "m1"}], "lease": {"holder": "m1", "epoch": 1}
        }))
        .expect("lenient");
        assert_eq!(without_roles.leader_name(), Some("m1"));
        assert_eq!(
            view.member("m2")
                .and_then(MemberView::api_base)
                .map(String::from),
            Some("http://127.0.0.1:8009/".to_owned())
        );
        assert_eq!(view.lease.and_then(|l| l.epoch), Some(3));
        let scheduled = view.scheduled_switchover.expect("scheduled");
        assert_eq!(scheduled.from, None);
    }

    #[test]
    fn a_field_of_the_wrong_type_reads_as_missing() {
        let view = ClusterView::deserialize(&json!({
            "scope": 7, "pause": "yes", "lease": [],
            "members": [{"name": "m1", "role": 1, "port": 99999, "timeline": -1, "host": null}]
        }))
        .expect("lenient");
        assert_eq!(view.scope(), "(unnamed)");
        assert!(!view.paused());
        let m = &view.members[0];
        assert_eq!((m.role.clone(), m.port, m.timeline), (None, None, None));
    }

    #[test]
    fn a_settings_file_s_scope_must_be_the_cluster_s() {
        let view =
            ClusterView::deserialize(&json!({"scope": "lab", "members": []})).expect("lenient");
        let expected = |scope: &str| ExpectedScope {
            scope: scope.into(),
            file: "/etc/raftgres/agent.yml".into(),
        };
        assert!(serves(&view, None));
        assert!(serves(&view, Some(&expected("lab"))));
        assert!(!serves(&view, Some(&expected("other"))));
        let unnamed = ClusterView::default();
        assert!(!serves(&unnamed, Some(&expected("lab"))));
        assert_eq!(
            expected("other").describe(),
            "other (the scope in /etc/raftgres/agent.yml)"
        );
    }

    #[test]
    fn api_bases_start_with_the_member_that_answered() {
        let view = ClusterView::deserialize(&json!({"members": [
            {"name": "m1", "api_url": "http://h1:8008/patroni"},
            {"name": "m2", "api_url": "http://h2:8008/patroni"},
            {"name": "w", "api_url": "not a url"}
        ]}))
        .expect("lenient");
        let cluster = Cluster {
            via: base_url("h2:8008").expect("valid"),
            view,
        };
        let bases: Vec<String> = cluster.api_bases().into_iter().map(String::from).collect();
        assert_eq!(bases, ["http://h2:8008/", "http://h1:8008/"]);
        assert!(cluster.member_api("m9").is_err());
        assert!(cluster.member_api("w").is_err());
    }
}
