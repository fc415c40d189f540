//! Waiting, bounded, for the state a test asserts. `lab up` returns once
//! Postgres is healthy, but each agent serves and publishes its view only
//! after its next probe of its own Postgres, so a check taken at once can
//! see the moment before (a replica answering 503 on `/replica`, or a
//! switchover refused because the candidate is not yet shown streaming).

use raftgres_lab::Lab;
use serde_json::Value;
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// The longest the agents may take to agree with a healthy lab or a change.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(20);

/// Polls `observe` until `done` accepts what it returned, and returns that;
/// panics after `within` with the last value seen.
pub async fn until<T, F, Fut>(
    within: Duration,
    what: &str,
    mut observe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let seen = observe().await;
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}; last seen: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `observe` until it returns `want`; panics after `within` with the
/// last value seen and the one wanted.
pub async fn until_eq<T, F, Fut>(within: Duration, what: &str, want: &T, observe: F)
where
    T: Debug + PartialEq,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    until(
        within,
        &format!("{what}, want {want:#?}"),
        observe,
        |seen| seen == want,
    )
    .await;
}

/// A client of `lab`'s agents whose every request is bounded, for polling.
pub fn poll_client(lab: &Lab) -> reqwest::Client {
    crate::http::lab_client(lab, Duration::from_secs(2))
}

/// The status code of `GET base + path`; 0 when there is no answer.
pub async fn get_code(client: &reqwest::Client, base: &str, path: &str) -> u16 {
    client
        .get(format!("{base}{path}"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Waits until `GET base + path` answers `code` for every `(path, code)`
/// of `codes` in one pass; panics after `within` saying `what` was awaited.
pub async fn until_codes(
    client: &reqwest::Client,
    base: &str,
    codes: &[(&str, u16)],
    within: Duration,
    what: &str,
) {
    crate::until_holds(within, what, || async {
        for (path, code) in codes {
            if get_code(client, base, path).await != *code {
                return false;
            }
        }
        true
    })
    .await
}

/// Waits until every agent agrees that `primary` is the primary and every
/// other database member a streaming replica: each answers `/primary` and
/// `/replica` for its role, and each one's `/cluster` (its own copy of the
/// state, which switchover requests are judged against) shows `primary` as
/// the running leader and the others streaming.
pub async fn roles_settled(lab: &Lab, primary: &str) {
    let client = poll_client(lab);
    until_eq(
        SETTLE_WITHIN,
        "every agent agrees on the roles",
        &expected_roles(lab, primary),
        || observed_roles(&client, lab),
    )
    .await;
}

fn database_members(lab: &Lab) -> Vec<(&str, &str)> {
    lab.description
        .members
        .iter()
        .filter(|m| m.dsn.is_some())
        .map(|m| (m.name.as_str(), m.api_url.as_str()))
        .collect()
}

fn expected_roles(lab: &Lab, primary: &str) -> Vec<String> {
    let members = database_members(lab);
    let mut out = Vec::new();
    for (name, _) in &members {
        let (on_primary, on_replica) = if *name == primary {
            (200, 503)
        } else {
            (503, 200)
        };
        out.push(format!("{name} /primary {on_primary}"));
        out.push(format!("{name} /replica {on_replica}"));
    }
    for (viewer, _) in &members {
        for (name, _) in &members {
            let shown = if *name == primary {
                "leader running"
            } else {
                "replica streaming"
            };
            out.push(format!("{viewer}'s /cluster: {name} {shown}"));
        }
    }
    out
}

async fn observed_roles(client: &reqwest::Client, lab: &Lab) -> Vec<String> {
    let members = database_members(lab);
    let mut out = Vec::new();
    for (name, url) in &members {
        for path in ["/primary", "/replica"] {
            out.push(format!(
                "{name} {path} {}",
                get_code(client, url, path).await
            ));
        }
    }
    for (viewer, url) in &members {
        let listed = cluster_members(client, url).await;
        for (name, _) in &members {
            let shown =
                listed
                    .iter()
                    .find(|m| m["name"] == *name)
                    .map_or("absent".to_owned(), |m| {
                        format!(
                            "{} {}",
                            m["role"].as_str().unwrap_or("?"),
                            m["state"].as_str().unwrap_or("?")
                        )
                    });
            out.push(format!("{viewer}'s /cluster: {name} {shown}"));
        }
    }
    out
}

/// The `members` of one agent's `GET /cluster`; empty when it does not answer.
async fn cluster_members(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let Ok(reply) = client.get(format!("{base}/cluster")).send().await else {
        return Vec::new();
    };
    let Ok(doc) = reply.json::<Value>().await else {
        return Vec::new();
    };
    doc["members"].as_array().cloned().unwrap_or_default()
}
