//! The operations that go on after their answer, on a real lab: a restart
//! scheduled a few seconds ahead (`POST /restart` with `schedule`) happens
//! at its time and not before, and shows in `/patroni` and `/cluster`
//! meanwhile; `DELETE /restart` (and `raftgresctl flush restart`) cancels
//! one; `raftgresctl reinit --wait` follows a replica's fresh clone to its
//! end, after which the replica streams again. Never two primaries.

use raftgres_lab::Lab;
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::process::output_within;
use raftgres_tests::settle::until_eq;
use raftgres_tests::{
    PrimaryMonitor, a_write_reaches, any_replica, ctl_bin, data_file, dsn, eventually, query_i64,
    settled_lab, until_streaming, writable,
};
use serde_json::{Value, json};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);
/// How far ahead a test schedules: the lab must show the restart, and the
/// test see Postgres untouched, before its time.
const AHEAD: Duration = Duration::from_secs(8);

/// When `name`'s postmaster started, in Unix milliseconds, asked of
/// Postgres itself; `None` while it does not answer.
async fn started_ms(lab: &Lab, name: &str) -> Option<i64> {
    query_i64(
        &dsn(lab, name),
        "SELECT (extract(epoch FROM pg_postmaster_start_time()) * 1000)::bigint",
    )
    .await
    .ok()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `at_ms` as the agents write times: RFC 3339 UTC.
fn rfc3339(at_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(at_ms)
        .expect("a time")
        .to_string()
}

/// `name`'s `scheduled_restart` in its own `/patroni` and in `/cluster` as
/// `via` answers it (`Null` where it is absent).
async fn shown(api: &Api, lab: &Lab, name: &str, via: &str) -> (Value, Value) {
    let own = api
        .get(&api_url(lab, name), "/patroni")
        .await
        .map(|r| r.body["scheduled_restart"].clone())
        .unwrap_or(Value::Null);
    let listed = api
        .get(&api_url(lab, via), "/cluster")
        .await
        .ok()
        .and_then(|r| {
            r.body["members"]
                .as_array()?
                .iter()
                .find(|m| m["name"] == name)
                .map(|m| m["scheduled_restart"].clone())
        })
        .unwrap_or(Value::Null);
    (own, listed)
}

/// Waits up to `within` until neither `name`'s `/patroni` nor `via`'s
/// `/cluster` shows a scheduled restart.
async fn until_none_shown(api: &Api, lab: &Lab, name: &str, via: &str, within: Duration) {
    until_eq(
        within,
        "no scheduled restart in /patroni or /cluster",
        &(Value::Null, Value::Null),
        || shown(api, lab, name, via),
    )
    .await;
}

/// Waits until `name`'s Postgres answers and says when it started.
async fn start_of(lab: &Lab, name: &str) -> i64 {
    eventually(WITHIN, "the replica's Postgres answers", || {
        started_ms(lab, name)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_restart_happens_at_its_time_and_shows_meanwhile() {
    let (_dir, lab, primary) = settled_lab(2).await;
    let monitor = PrimaryMonitor::start(&lab);
    let api = Api::of(&lab);
    let replica = any_replica(&lab, &primary);
    let before = start_of(&lab, &replica).await;

    let at_ms = now_ms() + AHEAD.as_millis() as i64;
    let at = rfc3339(at_ms);
    let body = json!({"schedule": at, "role": "replica", "timeout": "60"});
    let reply = api
        .send_accepted("POST", &api_url(&lab, &replica), "/restart", &body)
        .await;
    assert_eq!(
        reply.body,
        json!({"message": "Restart scheduled", "schedule": at}),
        "{reply:?}"
    );
    let want = json!({"schedule": at, "role": "replica", "timeout": 60});
    until_eq(
        Duration::from_secs(5),
        "the restart shows in /patroni and in the primary's /cluster",
        &(want.clone(), want),
        || shown(&api, &lab, &replica, &primary),
    )
    .await;
    // One at a time, as Patroni.
    let again = api
        .send("POST", &api_url(&lab, &replica), "/restart", &body)
        .await
        .expect("POST /restart");
    assert_eq!(again.status, 409, "{again:?}");

    // Untouched until its time.
    while now_ms() < at_ms - 1_000 {
        assert_eq!(
            started_ms(&lab, &replica).await,
            Some(before),
            "Postgres restarted before the scheduled time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = eventually(WITHIN, "the replica restarts at its time", || async {
        started_ms(&lab, &replica).await.filter(|s| *s != before)
    })
    .await;
    assert!(
        after >= at_ms - 100,
        "Postgres started at {} before its scheduled time {at}",
        rfc3339(after)
    );
    until_none_shown(&api, &lab, &replica, &primary, Duration::from_secs(10)).await;
    until_streaming(&lab, &replica, WITHIN, "the restarted replica streams").await;
    assert_eq!(writable(&lab).await, vec![primary.clone()]);
    monitor.assert_never_two().await;
}

/// Runs `raftgresctl --lab DIR args...`, bounded; exit code and output.
async fn ctl(lab: &Lab, args: &[&str]) -> (Option<i32>, String, String) {
    let out = output_within(
        tokio::process::Command::new(ctl_bin())
            .arg("--lab")
            .arg(&lab.description.dir)
            .args(args),
        Duration::from_secs(180),
        &format!("raftgresctl {args:?}"),
    )
    .await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_restart_is_cancelled_and_does_not_happen() {
    let (_dir, lab, primary) = settled_lab(2).await;
    let api = Api::of(&lab);
    let replica = any_replica(&lab, &primary);
    let before = start_of(&lab, &replica).await;
    let base = api_url(&lab, &replica);

    // Through the API: DELETE, then a second DELETE finds none.
    let at_ms = now_ms() + AHEAD.as_millis() as i64;
    let body = json!({"schedule": rfc3339(at_ms)});
    api.send_accepted("POST", &base, "/restart", &body).await;
    let deleted = api.send_ok("DELETE", &base, "/restart", &json!({})).await;
    assert_eq!(
        deleted.body,
        json!({"message": "scheduled restart deleted"})
    );
    let none = api
        .send("DELETE", &base, "/restart", &json!({}))
        .await
        .expect("DELETE /restart");
    assert_eq!(none.status, 404, "{none:?}");
    assert_eq!(none.body["error"], "no restarts are scheduled", "{none:?}");
    until_none_shown(&api, &lab, &replica, &primary, Duration::from_secs(5)).await;

    // Through raftgresctl: `restart --scheduled`, shown by `list`, then
    // `flush restart`.
    let later = rfc3339(at_ms + 2_000);
    let (code, out, err) = ctl(
        &lab,
        &["restart", &replica, "--scheduled", &later, "--force"],
    )
    .await;
    assert_eq!(code, Some(0), "restart --scheduled:\n{out}\n{err}");
    assert!(out.contains("Restart scheduled"), "{out}");
    let (code, out, err) = ctl(&lab, &["list"]).await;
    assert_eq!(code, Some(0), "list:\n{out}\n{err}");
    assert!(
        out.contains("Scheduled restart") && out.contains(&later),
        "list shows no scheduled restart:\n{out}"
    );
    let (code, out, err) = ctl(&lab, &["flush", "restart", "--force"]).await;
    assert_eq!(code, Some(0), "flush restart:\n{out}\n{err}");
    assert!(
        out.contains(&format!(
            "Success: flush scheduled restart for member {replica}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("No scheduled restart for member {primary}")),
        "{out}"
    );

    // Past both times and the grace of a late one, Postgres is untouched.
    while now_ms() < at_ms + 2_000 + 5_000 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        started_ms(&lab, &replica).await,
        Some(before),
        "a cancelled restart happened"
    );
    assert_eq!(
        shown(&api, &lab, &replica, &primary).await,
        (Value::Null, Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinit_wait_follows_a_fresh_clone_and_the_replica_streams_again() {
    let (_dir, lab, primary) = settled_lab(2).await;
    let monitor = PrimaryMonitor::start(&lab);
    let replica = any_replica(&lab, &primary);
    let before = start_of(&lab, &replica).await;
    // A file of the old data directory that no clone has.
    let marker = data_file(&lab, &replica, "pgdata/raftgres-test-old-data");
    std::fs::write(&marker, "old").expect("write the marker");

    let (code, out, err) = ctl(&lab, &["reinit", &replica, "--wait", "--force"]).await;
    assert_eq!(code, Some(0), "reinit --wait:\n{out}\n{err}");
    assert!(
        out.contains(&format!("{replica}: reinitialize started")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Reinitialize is completed on: {replica}")),
        "{out}"
    );
    // Over when raftgresctl says so: fresh data, a new postmaster.
    assert!(!marker.exists(), "the old data directory is still there");
    assert_ne!(started_ms(&lab, &replica).await, Some(before));

    until_streaming(&lab, &replica, WITHIN, "the fresh replica streams").await;
    a_write_reaches(
        &lab,
        &primary,
        &replica,
        "after_reinit",
        WITHIN,
        "the fresh replica replays new writes",
    )
    .await;
    assert_eq!(writable(&lab).await, vec![primary.clone()]);
    monitor.assert_never_two().await;
}
