//! Permanent replication slots (the config's `slots`, as Patroni's) on a
//! real lab: a physical slot set through `PATCH /config` appears on the
//! primary and on every replica; the replicas' copies follow the position
//! a consumer moved the primary's to, so after a switchover the new
//! primary has the slot where the consumer left it; removed from the
//! config, it stays while `ignore_slots` names it and is dropped
//! everywhere once that goes, while an operator's own slot stays; a
//! logical slot, which raftgres cannot keep across a failover yet, is
//! refused. A member removed from the cluster loses the slot its upstream
//! kept for it.

use raftgres_lab::Lab;
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::{
    dsn, execute_on, members_except, other_member, query_i64, settled_lab, until_holds,
    until_streaming,
};
use serde_json::json;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

/// `slot`'s `restart_lsn` in bytes on `name`'s server; `None` when it has
/// no such slot (or cannot be asked).
async fn slot_at(lab: &Lab, name: &str, slot: &str) -> Option<i64> {
    let sql = format!(
        "SELECT coalesce((SELECT pg_wal_lsn_diff(restart_lsn, '0/0')::bigint \
         FROM pg_replication_slots WHERE slot_name = '{slot}'), -1)"
    );
    query_i64(&dsn(lab, name), &sql)
        .await
        .ok()
        .filter(|at| *at >= 0)
}

fn all_members(lab: &Lab) -> Vec<String> {
    members_except(lab, &[])
}

/// Whether `keep_me`'s position on each of `names` is what `want` asks.
async fn on_each(lab: &Lab, names: &[String], want: impl Fn(Option<i64>) -> bool) -> bool {
    for name in names {
        if !want(slot_at(lab, name, "keep_me").await) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_slot_is_kept_everywhere_and_survives_a_switchover() {
    let (_dir, lab, primary) = settled_lab(3).await;
    let api = Api::authenticated(&lab);
    let base = api_url(&lab, &primary);

    let logical = json!({"slots": {"cdc": {"type": "logical", "database": "postgres",
                                           "plugin": "pgoutput"}}});
    let reply = api
        .send("PATCH", &base, "/config", &logical)
        .await
        .expect("PATCH /config");
    assert_eq!(reply.status, 400, "{reply:?}");
    let message = reply.body.to_string();
    assert!(message.contains("slots.cdc"), "{message}");
    assert!(message.contains("failover"), "{message}");

    let slots = json!({"slots": {"keep_me": {"type": "physical"}}});
    api.send_ok("PATCH", &base, "/config", &slots).await;
    let config = api.get(&base, "/config").await.expect("GET /config").body;
    assert_eq!(config["slots"], slots["slots"], "{config}");
    until_holds(WITHIN, "every member has the permanent slot", || async {
        on_each(&lab, &all_members(&lab), |at| at.is_some()).await
    })
    .await;

    // A consumer moves the primary's slot; the replicas' copies follow.
    execute_on(
        &lab,
        &primary,
        "CREATE TABLE slot_traffic AS SELECT g FROM generate_series(1, 20000) g; \
         SELECT pg_replication_slot_advance('keep_me', pg_current_wal_lsn())",
    )
    .await;
    let confirmed = slot_at(&lab, &primary, "keep_me")
        .await
        .expect("the primary's slot");
    let replicas = members_except(&lab, &[&primary]);
    until_holds(
        WITHIN,
        "the replicas' copies reach the consumer's position",
        || async { on_each(&lab, &replicas, |at| at == Some(confirmed)).await },
    )
    .await;

    // After a switchover the consumer continues from the new primary.
    let candidate = replicas[0].clone();
    let reply = api
        .switchover(&base, &primary, &candidate)
        .await
        .expect("POST /switchover");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        slot_at(&lab, &candidate, "keep_me").await,
        Some(confirmed),
        "the new primary keeps the slot where the consumer left it"
    );
    until_streaming(&lab, &primary, WITHIN, "the old primary streams again").await;
    until_holds(WITHIN, "every member still has the slot", || async {
        on_each(&lab, &all_members(&lab), |at| at.is_some()).await
    })
    .await;

    // Removed from the config: dropped everywhere; an operator's slot stays.
    execute_on(
        &lab,
        &candidate,
        "SELECT pg_create_physical_replication_slot('operators_own', true)",
    )
    .await;
    let new_base = api_url(&lab, &candidate);
    let unlisted = json!({"slots": {"keep_me": null},
                          "ignore_slots": [{"name": "keep_me", "type": "physical"}]});
    api.send_ok("PATCH", &new_base, "/config", &unlisted).await;
    // Several loop rounds (the lab's loop_wait is well under a second).
    tokio::time::sleep(Duration::from_secs(5)).await;
    for name in all_members(&lab) {
        assert!(
            slot_at(&lab, &name, "keep_me").await.is_some(),
            "ignore_slots keeps the slot on {name}"
        );
    }
    api.send_ok("PATCH", &new_base, "/config", &json!({"ignore_slots": []}))
        .await;
    until_holds(WITHIN, "the slot is dropped everywhere", || async {
        on_each(&lab, &all_members(&lab), |at| at.is_none()).await
    })
    .await;
    assert!(
        slot_at(&lab, &candidate, "operators_own").await.is_some(),
        "an operator's own slot is left alone"
    );
}

/// The slot a member's upstream keeps for it goes once the member is
/// removed from the cluster: kept, it would hold WAL on the primary for
/// ever and fill its disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_members_slot_is_dropped_and_the_others_stay() {
    let (_dir, mut lab, primary) = settled_lab(3).await;
    let api = Api::authenticated(&lab);
    let gone = other_member(&lab, &[&primary]);
    let kept = other_member(&lab, &[&primary, &gone]);
    let slot_of = |name: &str| raftgres_state::member_slot_name(name);
    until_holds(
        WITHIN,
        "the primary keeps a slot for each replica",
        || async {
            slot_at(&lab, &primary, &slot_of(&gone)).await.is_some()
                && slot_at(&lab, &primary, &slot_of(&kept)).await.is_some()
        },
    )
    .await;

    // Its host is lost, and the operator removes it.
    lab.kill_host(&gone).expect("kill the member's host");
    let reply = api
        .call(
            "DELETE",
            &api_url(&lab, &primary),
            &format!("/members/{gone}"),
            None,
            true,
        )
        .await
        .expect("DELETE /members");
    assert_eq!(reply.status, 200, "{reply:?}");

    until_holds(
        WITHIN,
        "the primary drops the removed member's slot",
        || async { slot_at(&lab, &primary, &slot_of(&gone)).await.is_none() },
    )
    .await;
    assert!(slot_at(&lab, &primary, &slot_of(&kept)).await.is_some());
    until_streaming(&lab, &kept, WITHIN, "the other replica still streams").await;
}
