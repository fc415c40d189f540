//! The agents' REST health endpoints on a real lab: `/primary` answers 200
//! on exactly the member whose Postgres takes writes, `/replica` on the
//! streaming replicas, for GET, HEAD and OPTIONS (HAProxy's httpchk), and
//! the answer moves with a failover. Each agent serves what its last probe
//! of its own Postgres saw, so every check waits (bounded) for the answer it
//! asserts rather than taking one snapshot right after `lab up`.

use raftgres_tests::http::lab_client;
use raftgres_tests::settle::{SETTLE_WITHIN, until_eq};
use raftgres_tests::{members_except, monitored_lab, new_primary};
use std::time::Duration;

/// The status code of one request to every member, over the lab's
/// verified HTTPS, for each method HAProxy's `httpchk` may use.
async fn statuses(lab: &raftgres_lab::Lab, path: &str) -> Vec<(String, u16)> {
    let client = lab_client(lab, Duration::from_secs(2));
    let mut out = Vec::new();
    for m in &lab.description.members {
        for method in ["GET", "HEAD", "OPTIONS"] {
            let verb = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
            let code = match client
                .request(verb, format!("{}{path}", m.api_url))
                .send()
                .await
            {
                Ok(reply) => reply.status().as_u16(),
                Err(_) => 0,
            };
            out.push((format!("{} {method}", m.name), code));
        }
    }
    out
}

fn expect(lab: &raftgres_lab::Lab, ok: &[&str]) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for m in &lab.description.members {
        for method in ["GET", "HEAD", "OPTIONS"] {
            let code = if ok.contains(&m.name.as_str()) {
                200
            } else {
                503
            };
            out.push((format!("{} {method}", m.name), code));
        }
    }
    out
}

/// Waits until each of `paths` answers 200 on the members in `passing`
/// and 503 on every other.
async fn until_passed_by(lab: &raftgres_lab::Lab, paths: &[&str], passing: &[&str]) {
    for path in paths {
        until_eq(
            SETTLE_WITHIN,
            &format!("{path} passed by {passing:?} only"),
            &expect(lab, passing),
            || statuses(lab, path),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_and_replica_checks_follow_the_writable_postgres() {
    let (_dir, mut lab, primary, monitor) = monitored_lab(3, false).await;
    let replicas = members_except(&lab, &[&primary]);
    let replica_refs: Vec<&str> = replicas.iter().map(String::as_str).collect();
    // A typo in the limit is no limit, as in Patroni: every replica stays in.
    until_passed_by(&lab, &["/replica", "/replica?lag=10mb"], &replica_refs).await;
    until_passed_by(
        &lab,
        &["/primary", "/", "/leader", "/read-write", "/master"],
        &[&primary],
    )
    .await;
    let primary_url = lab.member(&primary).unwrap().api_url.clone();
    for (path, code) in [
        ("/replica?replication_state=catchup", 400),
        ("/no-such-check", 404),
    ] {
        until_eq(SETTLE_WITHIN, path, &Ok(code), || async {
            let client = lab_client(&lab, Duration::from_secs(2));
            match client.get(format!("{primary_url}{path}")).send().await {
                Ok(reply) => Ok(reply.status().as_u16()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }

    lab.kill(&primary).expect("SIGKILL the primary's agent");
    let new = new_primary(&lab, &primary, Duration::from_secs(30)).await;
    let among_survivors = |table: Vec<(String, u16)>| -> Vec<(String, u16)> {
        table
            .into_iter()
            .filter(|(who, _)| {
                replica_refs
                    .iter()
                    .any(|s| who.starts_with(&format!("{s} ")))
            })
            .collect()
    };
    until_eq(
        SETTLE_WITHIN,
        "/primary moves to the new primary",
        &among_survivors(expect(&lab, &[&new])),
        || async { among_survivors(statuses(&lab, "/primary").await) },
    )
    .await;
    monitor.assert_never_two().await;
}
