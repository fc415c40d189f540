//! Planned and requested changes of primary through the REST API, on a real
//! lab: a switchover hands over without losing a committed row and the old
//! primary rejoins; a scheduled one waits for its time and can be cancelled;
//! a failover to a named candidate works with the primary gone; unfit
//! requests are refused with 412; an agent restarted in the middle of a
//! switchover completes it; a paused cluster switches over or fails over
//! only to a named candidate. Never two primaries meanwhile.

use raftgres_lab::Lab;
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::settle::roles_settled;
use raftgres_tests::{
    NeverTwoPrimaries, PrimaryMonitor, any_replica, count_rows, dsn, eventually, execute_on,
    members_except, monitored_lab, other_member, postmaster_pid, query_i64, serial_lab,
    settled_lab, until_sole_writable, until_streaming, writable,
};
use serde_json::{Value, json};
use std::time::Duration;

async fn last_history_reason(api: &Api, base: &str) -> String {
    let entries = api.history(base).await;
    let last = entries.last().expect("a history entry");
    last[2].as_str().expect("reason").to_owned()
}

/// Sends `body` as a switchover request to `base`, which must refuse it
/// with `status` and an error that names `why`.
async fn assert_switchover_refused(api: &Api, base: &str, body: &Value, status: u16, why: &str) {
    let reply = api
        .send("POST", base, "/switchover", body)
        .await
        .expect("POST /switchover");
    assert_eq!(reply.status, status, "{body}: {reply:?}");
    let error = reply.body["error"].as_str().unwrap_or_default();
    assert!(error.contains(why), "{body}: {error}");
}

/// Waits (up to 60 s) until the old primary streams from the new one.
async fn until_old_primary_streams(lab: &Lab, old: &str) {
    let what = "the old primary streams from the new one";
    until_streaming(lab, old, Duration::from_secs(60), what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_hands_over_and_the_old_primary_rejoins() {
    let (_dir, lab, old) = serial_lab(3, false).await;
    let api = Api::authenticated(&lab);
    let monitor = NeverTwoPrimaries::start(&lab);
    execute_on(
        &lab,
        &old,
        "CREATE TABLE before_switchover (id int); INSERT INTO before_switchover VALUES (1)",
    )
    .await;
    let candidate = any_replica(&lab, &old);
    // The candidate must be shown streaming for the switchover to be accepted.
    roles_settled(&lab, &old).await;
    let other = other_member(&lab, &[&old, &candidate]);
    // Sent to a replica that is not the candidate: any member forwards it.
    let reply = api
        .send_ok(
            "POST",
            &api_url(&lab, &other),
            "/switchover",
            &json!({"leader": old, "candidate": candidate}),
        )
        .await;
    assert_eq!(reply.body["leader"], json!(candidate));
    assert_eq!(writable(&lab).await, vec![candidate.clone()]);
    assert_eq!(
        count_rows(&lab, &candidate, "before_switchover").await,
        Ok(1),
        "the committed row must be on the new primary"
    );
    until_old_primary_streams(&lab, &old).await;
    assert_eq!(
        last_history_reason(&api, &api_url(&lab, &old)).await,
        "switchover"
    );
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_switchover_waits_for_its_time_and_can_be_cancelled() {
    // A request needs a healthy leader, as this member's copy shows it.
    let (_dir, lab, old) = settled_lab(3).await;
    let api = Api::authenticated(&lab);
    let base = api_url(&lab, &old);
    let in_an_hour = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    let reply = api
        .send(
            "POST",
            &base,
            "/switchover",
            &json!({"leader": old, "scheduled_at": in_an_hour.to_string()}),
        )
        .await
        .expect("POST /switchover");
    assert_eq!(reply.status, 202, "{reply:?}");
    // /cluster is this member's own copy of the state, as in Patroni: it
    // shows the committed request once this member has applied it.
    eventually(
        Duration::from_secs(5),
        "/cluster shows the scheduled switchover",
        || async {
            let cluster = api.get(&base, "/cluster").await.ok()?;
            (cluster.body["scheduled_switchover"]["from"] == json!(old)).then_some(())
        },
    )
    .await;
    let reply = api
        .call("DELETE", &base, "/switchover", None, true)
        .await
        .expect("DELETE /switchover");
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = api
        .call("DELETE", &base, "/switchover", None, true)
        .await
        .expect("DELETE /switchover again");
    assert_eq!(reply.status, 404, "{reply:?}");

    let candidate = any_replica(&lab, &old);
    until_streaming(
        &lab,
        &candidate,
        Duration::from_secs(20),
        "the candidate streams",
    )
    .await;
    // Requests are judged on the published state, which trails Postgres.
    roles_settled(&lab, &old).await;
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    let reply = api
        .send(
            "POST",
            &base,
            "/switchover",
            &json!({"leader": old, "candidate": candidate, "scheduled_at": soon.to_string()}),
        )
        .await
        .expect("POST /switchover");
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(
        writable(&lab).await,
        vec![old.clone()],
        "not before its time"
    );
    until_sole_writable(
        &lab,
        &candidate,
        Duration::from_secs(40),
        "the scheduled switchover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfit_requests_are_refused_with_412() {
    // Until the leader is shown healthy, every request is refused for that
    // reason instead of the one each row asserts.
    let (_dir, lab, primary) = settled_lab(3).await;
    let api = Api::authenticated(&lab);
    let base = api_url(&lab, &primary);
    let replica = any_replica(&lab, &primary);
    for (body, why) in [
        (json!({"leader": replica, "candidate": primary}), "leader"),
        (json!({"leader": primary, "candidate": "nobody"}), "nobody"),
        (
            json!({"leader": primary, "candidate": primary}),
            primary.as_str(),
        ),
    ] {
        assert_switchover_refused(&api, &base, &body, 412, why).await;
    }
    let reply = api
        .send("POST", &base, "/failover", &json!({"candidate": "nobody"}))
        .await
        .expect("POST /failover");
    assert_eq!(reply.status, 412, "{reply:?}");
    assert_eq!(writable(&lab).await, vec![primary]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_named_candidate_works_without_a_primary() {
    let (_dir, mut lab, old) = serial_lab(3, false).await;
    let api = Api::authenticated(&lab);
    let monitor = PrimaryMonitor::start(&lab);
    let replicas = members_except(&lab, &[&old]);
    for r in &replicas {
        until_streaming(&lab, r, Duration::from_secs(20), "replicas stream").await;
    }
    // The failover is judged on the published state, which trails Postgres.
    roles_settled(&lab, &old).await;
    // The last by name: automatic failover prefers the first on a tie, so
    // only the request makes this one win.
    let candidate = replicas.last().expect("replica").clone();
    let other = replicas.first().expect("replica").clone();
    lab.kill(&old).expect("SIGKILL the primary's agent");
    api.send_ok(
        "POST",
        &api_url(&lab, &other),
        "/failover",
        &json!({"candidate": candidate}),
    )
    .await;
    assert_eq!(writable(&lab).await, vec![candidate.clone()]);
    // The request usually lands before the lease expires ("manual
    // failover"). When the dead primary also led Raft, the election can let
    // the lease expire first: the candidate may win it on its own, or the
    // other replica wins it and, being then a healthy leader, honours the
    // request as a switchover (as Patroni turns a failover with a healthy
    // leader into one).
    let history = api.history(&api_url(&lab, &other)).await;
    let last = history.last().expect("a history entry");
    assert_eq!(last[4].as_str(), Some(candidate.as_str()), "{history:?}");
    match last[2].as_str().unwrap_or_default() {
        "manual failover" | "lease expired" => {}
        "switchover" => {
            let before = &history[history.len() - 2];
            assert_eq!(before[4].as_str(), Some(other.as_str()), "{history:?}");
            assert_eq!(before[2].as_str(), Some("lease expired"), "{history:?}");
        }
        reason => panic!("unexpected reason {reason}: {history:?}"),
    }
    monitor.assert_never_two().await;
}

/// An agent restarted while its primary is stopped for a switchover carries
/// on with the handover. The candidate's replay is held (its startup
/// process SIGSTOPped) so that the restart surely comes before the handover;
/// without the fix the new agent started the primary again, the candidate
/// never saw the second shutdown checkpoint, and the switchover was
/// abandoned after a 10 s write outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_in_the_middle_of_a_switchover_completes_it() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (_dir, mut lab, old, monitor) = monitored_lab(3, false).await;
    roles_settled(&lab, &old).await;
    let candidate = any_replica(&lab, &old);
    let startup = query_i64(
        &dsn(&lab, &candidate),
        "SELECT pid::bigint FROM pg_stat_activity WHERE backend_type = 'startup'",
    )
    .await
    .expect("the candidate's startup process");
    let startup = Pid::from_raw(startup as i32);
    kill(startup, Signal::SIGSTOP).expect("hold the candidate's replay");
    let other = other_member(&lab, &[&old, &candidate]);
    // Sent to the third member: the old primary's agent goes away meanwhile.
    let request = {
        let (api, url) = (Api::authenticated(&lab), api_url(&lab, &other));
        let body = json!({"leader": old, "candidate": candidate});
        tokio::spawn(async move { api.send("POST", &url, "/switchover", &body).await })
    };
    eventually(
        Duration::from_secs(30),
        "the primary's Postgres to stop for the switchover",
        || async { postmaster_pid(&lab, &old).is_none().then_some(()) },
    )
    .await;
    let restarted = lab.restart_agent(&old, Duration::from_secs(30));
    kill(startup, Signal::SIGCONT).expect("let the candidate replay");
    restarted.expect("restart the old primary's agent");
    let reply = request
        .await
        .expect("the request task")
        .expect("POST /switchover");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["leader"], json!(candidate));
    assert_eq!(writable(&lab).await, vec![candidate.clone()]);
    until_old_primary_streams(&lab, &old).await;
    monitor.assert_never_two().await;
}

/// Pauses (or resumes) the cluster as `raftgresctl pause` does, and waits
/// until every member's own status says so.
async fn set_pause(api: &Api, lab: &Lab, pause: bool) {
    let body = json!({ "pause": pause });
    let reply = api
        .send_ok("PATCH", &api_url(lab, &lab.names()[0]), "/config", &body)
        .await;
    assert_eq!(reply.body["pause"], json!(pause), "{reply:?}");
    for name in lab.names() {
        until_paused(api, &api_url(lab, &name), pause).await;
    }
}

/// Waits (up to 10 s) until the member at `base` reports `pause`.
async fn until_paused(api: &Api, base: &str, pause: bool) {
    eventually(
        Duration::from_secs(10),
        "/patroni shows the pause",
        || async {
            let doc = api.get(base, "/patroni").await.ok()?;
            (doc.body["pause"] == json!(pause)).then_some(())
        },
    )
    .await;
}

/// Paused (Patroni's maintenance mode), a switchover to a named candidate
/// is carried out to its end (the old primary rejoins, the replicas follow)
/// and the cluster stays paused; one without a candidate, or scheduled, is
/// refused at once, as Patroni refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_cluster_switches_over_only_to_a_named_candidate() {
    let (_dir, lab, old, monitor) = monitored_lab(3, false).await;
    let api = Api::authenticated(&lab);
    roles_settled(&lab, &old).await;
    set_pause(&api, &lab, true).await;
    let base = api_url(&lab, &old);
    let in_an_hour = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    let candidate = any_replica(&lab, &old);
    for (body, why) in [
        (json!({"leader": old}), "needs a named candidate"),
        (
            json!({"leader": old, "candidate": candidate, "scheduled_at": in_an_hour.to_string()}),
            "cannot be scheduled",
        ),
    ] {
        assert_switchover_refused(&api, &base, &body, 400, why).await;
    }
    assert_eq!(writable(&lab).await, vec![old.clone()]);

    // `member` is Patroni's other name for `candidate`.
    let reply = api
        .send_ok(
            "POST",
            &base,
            "/switchover",
            &json!({"leader": old, "member": candidate}),
        )
        .await;
    assert_eq!(reply.body["leader"], json!(candidate));
    assert_eq!(writable(&lab).await, vec![candidate.clone()]);
    // Every step ran while paused: the old primary rewound and streams,
    // the third member follows the new primary.
    roles_settled(&lab, &candidate).await;
    for name in lab.names() {
        until_paused(&api, &api_url(&lab, &name), true).await;
    }
    let config = api.get(&base, "/config").await.expect("GET /config");
    assert_eq!(config.body["pause"], json!(true), "{config:?}");
    monitor.assert_never_two().await;
}

/// Paused, a primary whose agent dies is not replaced on its own; a
/// failover to a named candidate is carried out at once, as in Patroni,
/// and the cluster stays paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_cluster_fails_over_only_to_a_named_candidate() {
    let (_dir, mut lab, old, monitor) = monitored_lab(3, false).await;
    let api = Api::authenticated(&lab);
    roles_settled(&lab, &old).await;
    set_pause(&api, &lab, true).await;
    let replicas = members_except(&lab, &[&old]);
    // The last by name: it would not win an automatic failover on a tie.
    let candidate = replicas.last().expect("replica").clone();
    let other = replicas.first().expect("replica").clone();
    lab.kill(&old).expect("SIGKILL the primary's agent");
    // Its keeper fences the primary at the lease deadline (one ttl, 3 s);
    // nobody takes over in the next three ttls.
    eventually(
        Duration::from_secs(15),
        "the dead agent's primary to be fenced",
        || async { writable(&lab).await.is_empty().then_some(()) },
    )
    .await;
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(9);
    while tokio::time::Instant::now() < quiet_until {
        assert_eq!(
            writable(&lab).await,
            Vec::<String>::new(),
            "a paused cluster failed over on its own"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let reply = api
        .send_ok(
            "POST",
            &api_url(&lab, &other),
            "/failover",
            &json!({"member": candidate}),
        )
        .await;
    assert_eq!(reply.body["leader"], json!(candidate));
    assert_eq!(writable(&lab).await, vec![candidate.clone()]);
    let history = api.history(&api_url(&lab, &other)).await;
    let last = history.last().expect("a history entry");
    assert_eq!(last[2].as_str(), Some("manual failover"), "{history:?}");
    until_streaming(
        &lab,
        &other,
        Duration::from_secs(30),
        "the other replica follows the new primary",
    )
    .await;
    for name in [&candidate, &other] {
        until_paused(&api, &api_url(&lab, name), true).await;
    }
    monitor.assert_never_two().await;
}
