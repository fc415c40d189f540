//! Patroni's tags on a real lab, added by a reload: `replicatefrom` makes a
//! replica stream from another replica (cascading), with its slot there and
//! none left on the primary, and it streams from the primary again once the
//! tag goes; `noloadbalance` takes a replica out of HAProxy's read port;
//! an operator's own tag is shown in `/cluster` and matched by
//! `?tag_<key>=<value>`; a reinitialize clones from the member tagged
//! `clonefrom`.

use raftgres_lab::Lab;
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::{
    a_write_reaches, dsn, other_member, query_i64, settled_lab, until_holds, until_streaming,
};
use serde_json::json;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

/// Replaces `name`'s tags with `tags` (YAML flow mapping) and reloads it.
async fn set_tags(lab: &Lab, api: &Api, name: &str, tags: &str) {
    let member = lab.member(name).expect("member");
    let text = std::fs::read_to_string(&member.config).expect("settings");
    let untagged: String = text
        .lines()
        .filter(|line| !line.starts_with("tags:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let reply = api
        .reload_with(member, &format!("tags: {tags}\n{untagged}"))
        .await;
    assert!(reply.contains("tags"), "{reply}");
}

/// How many of `standby`'s walreceivers `name`'s server feeds right now.
async fn feeds(lab: &Lab, name: &str, standby: &str) -> i64 {
    query_i64(
        &dsn(lab, name),
        &format!(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE application_name = '{standby}' AND state = 'streaming'"
        ),
    )
    .await
    .unwrap_or(-1)
}

/// Whether `name`'s server has a slot named after `standby`.
async fn has_slot_for(lab: &Lab, name: &str, standby: &str) -> bool {
    let slot = standby.replace('-', "_");
    query_i64(
        &dsn(lab, name),
        &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    )
    .await
        == Ok(1)
}

/// The Postgres port that served one new connection through `dsn`.
async fn served_by(dsn: &str) -> Option<i64> {
    query_i64(dsn, "SELECT inet_server_port()::bigint")
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_cascade_balance_and_match() {
    let (_dir, lab, primary) = settled_lab(3).await;
    let api = Api::of(&lab);
    let feeder = other_member(&lab, &[&primary]);
    let cascading = other_member(&lab, &[&primary, &feeder]);

    set_tags(&lab, &api, &feeder, "{zone: eu-1a}").await;
    set_tags(
        &lab,
        &api,
        &cascading,
        &format!("{{replicatefrom: {feeder}, noloadbalance: true, zone: eu-1b}}"),
    )
    .await;

    // Cascading: fed by the replica, through a slot there; the primary's
    // slot for it is dropped once unused, so it keeps no WAL for nothing.
    until_holds(WITHIN, "the replica feeds the cascading member", || async {
        feeds(&lab, &feeder, &cascading).await == 1
    })
    .await;
    assert!(has_slot_for(&lab, &feeder, &cascading).await);
    until_holds(WITHIN, "the primary drops its unused slot", || async {
        !has_slot_for(&lab, &primary, &cascading).await
    })
    .await;
    assert_eq!(feeds(&lab, &primary, &cascading).await, 0);
    a_write_reaches(
        &lab,
        &primary,
        &cascading,
        "cascaded",
        WITHIN,
        "a write reaches the cascading member",
    )
    .await;

    // Tags in /cluster, and health checks that route on them.
    let cluster = api
        .get(&api_url(&lab, &primary), "/cluster")
        .await
        .expect("/cluster")
        .body;
    let tags = cluster["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["name"] == json!(cascading))
        .map(|m| m["tags"].clone())
        .expect("the cascading member");
    assert_eq!(tags["replicatefrom"], json!(feeder), "{tags}");
    assert_eq!(tags["noloadbalance"], json!(true), "{tags}");
    assert_eq!(tags["zone"], json!("eu-1b"), "{tags}");
    let status = |name: &str, path: &str| {
        let url = api_url(&lab, name);
        let path = path.to_owned();
        let api = &api;
        async move { api.get(&url, &path).await.map(|r| r.status).unwrap_or(0) }
    };
    assert_eq!(status(&cascading, "/replica").await, 503, "noloadbalance");
    assert_eq!(status(&feeder, "/replica?tag_zone=eu-1a").await, 200);
    assert_eq!(status(&feeder, "/replica?tag_zone=eu-1b").await, 503);

    // HAProxy's read port checks /replica: it leaves the member out.
    let read = lab.haproxy_dsn(false).expect("the lab runs HAProxy");
    let feeder_port = i64::from(lab.member(&feeder).expect("member").pg_port.expect("port"));
    until_holds(
        WITHIN,
        "the read port reaches only the balanced replica",
        || async {
            let mut seen = Vec::new();
            for _ in 0..6 {
                seen.push(served_by(&read).await);
            }
            seen.iter().all(|port| *port == Some(feeder_port))
        },
    )
    .await;

    // Without the tag it streams from the primary again, through a slot there.
    set_tags(&lab, &api, &cascading, "{}").await;
    until_holds(WITHIN, "the primary feeds it again", || async {
        feeds(&lab, &primary, &cascading).await == 1
    })
    .await;
    assert!(has_slot_for(&lab, &primary, &cascading).await);
    until_holds(
        WITHIN,
        "the replica drops the slot it no longer serves",
        || async { !has_slot_for(&lab, &feeder, &cascading).await },
    )
    .await;
    until_streaming(&lab, &cascading, WITHIN, "the member streams").await;
}

/// A reinitialize clones from a member tagged `clonefrom`, as Patroni's
/// `get_clone_member` picks, sparing the primary the copy; the fresh
/// replica then streams from the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinitialize_clones_from_the_member_tagged_clonefrom() {
    let (_dir, lab, primary) = settled_lab(3).await;
    let api = Api::authenticated(&lab);
    let source = other_member(&lab, &[&primary]);
    let target = other_member(&lab, &[&primary, &source]);
    set_tags(&lab, &api, &source, "{clonefrom: true}").await;
    // The target judges on its own copy of the state.
    until_holds(WITHIN, "the target's state shows the tag", || async {
        let Ok(cluster) = api.get(&api_url(&lab, &target), "/cluster").await else {
            return false;
        };
        cluster.body["members"].as_array().is_some_and(|members| {
            members
                .iter()
                .any(|m| m["name"] == json!(source) && m["tags"]["clonefrom"] == json!(true))
        })
    })
    .await;
    until_streaming(&lab, &source, WITHIN, "the tagged member streams").await;

    let reply = api
        .send_ok(
            "POST",
            &api_url(&lab, &target),
            "/reinitialize",
            &json!({"force": true}),
        )
        .await;
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("cloning from {source}")),
        "{reply:?}"
    );
    until_streaming(&lab, &target, WITHIN, "the fresh replica streams").await;
    assert_eq!(feeds(&lab, &primary, &target).await, 1);
    a_write_reaches(
        &lab,
        &primary,
        &target,
        "after_reinit_from_clonefrom",
        WITHIN,
        "the fresh replica replays new writes",
    )
    .await;
}
