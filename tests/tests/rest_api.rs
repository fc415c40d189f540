//! The agents' REST API on a real lab, as docs/rest-api.md describes it:
//! every health endpoint's status code for GET, HEAD and OPTIONS on a
//! primary, a replica, a lagging replica, in a paused cluster and on a
//! member whose Postgres is stopped; `PATCH /config` compare-and-set;
//! authentication and body errors of the mutating calls; `POST /restart`
//! on a replica; and `/metrics`. Never two primaries meanwhile.

use nix::sys::signal::Signal;
use raftgres_lab::Lab;
use raftgres_tests::http::{Api, Credentials, Exchange, api_url};
use raftgres_tests::settle::{poll_client, until, until_codes};
use raftgres_tests::{
    NeverTwoPrimaries, a_write_reaches, eventually, execute_on, members_except, postmaster_pid,
    serial_lab, until_holds, until_streaming, writable,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Every health check, with the query HAProxy setups commonly use.
const CHECKS: [&str; 10] = [
    "/primary",
    "/replica",
    "/replica?lag=1MB",
    "/read-only",
    "/standby-leader",
    "/sync",
    "/async",
    "/health",
    "/liveness",
    "/readiness",
];
const METHODS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];

// The codes of CHECKS, in order, per docs/rest-api.md's table.
/// Holds the lease and takes writes.
const PRIMARY: [u16; 10] = [200, 503, 503, 200, 503, 503, 503, 200, 200, 200];
/// Streams, within 1 MB of the leader.
const REPLICA: [u16; 10] = [503, 200, 200, 200, 503, 503, 200, 200, 200, 200];
/// Streams, but replays more than 1 MB behind: `?lag=` tells, and so does
/// `/readiness`, whose limit is `maximum_lag_on_failover` (1 MB) as Patroni's.
const LAGGING: [u16; 10] = [503, 200, 503, 200, 503, 503, 200, 200, 200, 503];
/// Its Postgres is stopped; the agent still answers.
const STOPPED: [u16; 10] = [503, 503, 503, 503, 503, 503, 503, 503, 200, 503];

const SETTLE_WITHIN: Duration = Duration::from_secs(15);

/// "METHOD /check" and its status code (0: no answer), for every check.
async fn table(client: &reqwest::Client, base: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for check in CHECKS {
        for method in METHODS {
            let method_ = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let code = client
                .request(method_, format!("{base}{check}"))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            out.push((format!("{method} {check}"), code));
        }
    }
    out
}

fn expected(codes: &[u16; 10]) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for (check, code) in CHECKS.iter().zip(codes) {
        for method in METHODS {
            out.push((format!("{method} {check}"), *code));
        }
    }
    out
}

/// Waits up to [`SETTLE_WITHIN`] for `name`'s checks, as `what`, to
/// answer `codes`; fails with the last table seen.
async fn expect_table(
    client: &reqwest::Client,
    lab: &Lab,
    name: &str,
    what: &str,
    codes: &[u16; 10],
) {
    expect_table_within(client, lab, name, what, codes, SETTLE_WITHIN).await;
}

/// [`expect_table`], waiting up to `within`.
async fn expect_table_within(
    client: &reqwest::Client,
    lab: &Lab,
    name: &str,
    what: &str,
    codes: &[u16; 10],
    within: Duration,
) {
    let base = api_url(lab, name);
    let want = expected(codes);
    let deadline = Instant::now() + within;
    loop {
        let got = table(client, &base).await;
        if got == want {
            return;
        }
        if Instant::now() >= deadline {
            let wrong: Vec<String> = got
                .iter()
                .zip(&want)
                .filter(|(g, w)| g != w)
                .map(|((check, got), (_, want))| format!("{check}: {got}, want {want}"))
                .collect();
            panic!("{name} as {what}, after {within:?}: {wrong:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn patroni(api: &Api, base: &str) -> Value {
    let reply = api.get(base, "/patroni").await.expect("GET /patroni");
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

/// Pauses (or resumes) the cluster through the member at `base`.
async fn set_pause(api: &Api, base: &str, pause: bool) {
    let body = json!({ "pause": pause });
    let reply = api.send_ok("PATCH", base, "/config", &body).await;
    assert_eq!(reply.body["pause"], json!(pause), "{reply:?}");
}

async fn metrics(api: &Api, base: &str) -> Exchange {
    let reply = api
        .exchange("GET", base, "/metrics", None, Credentials::Anonymous, &[])
        .await
        .expect("GET /metrics");
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_answer_per_role_lag_pause_and_stopped_postgres() {
    let (_dir, lab, primary) = serial_lab(3, false).await;
    let api = Api::authenticated(&lab);
    let client = poll_client(&lab);
    let monitor = NeverTwoPrimaries::start(&lab);
    let replicas = members_except(&lab, &[&primary]);
    let (lagging, other) = (replicas[0].clone(), replicas[1].clone());

    expect_table(&client, &lab, &primary, "primary", &PRIMARY).await;
    for r in &replicas {
        expect_table(&client, &lab, r, "replica", &REPLICA).await;
    }

    // A replica whose replay is paused keeps streaming but falls behind.
    execute_on(&lab, &lagging, "SELECT pg_wal_replay_pause()").await;
    execute_on(
        &lab,
        &primary,
        "CREATE TABLE t AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 5000) g",
    )
    .await;
    let lagging_url = api_url(&lab, &lagging);
    until_codes(
        &client,
        &lagging_url,
        &[("/replica?lag=1kB", 503), ("/replica", 200)],
        SETTLE_WITHIN,
        "the paused replica fails /replica?lag=1kB and passes /replica",
    )
    .await;
    expect_table(&client, &lab, &lagging, "lagging replica", &LAGGING).await;
    expect_table(&client, &lab, &other, "replica", &REPLICA).await;
    expect_table(&client, &lab, &primary, "primary", &PRIMARY).await;
    // Replay paused, WAL still received: ready by what it received
    // (Patroni 4's mode=write), not by what it replayed.
    until_codes(
        &client,
        &lagging_url,
        &[("/readiness?mode=write", 200), ("/readiness", 503)],
        SETTLE_WITHIN,
        "the paused replica is ready with mode=write only",
    )
    .await;
    let doc = patroni(&api, &lagging_url).await;
    assert_eq!(doc["role"], json!("replica"), "{doc}");
    assert_eq!(doc["state"], json!("running"), "{doc}");
    // Patroni's fields from the server itself: a paused replay, received
    // WAL ahead of replayed, the cluster's identity.
    assert_eq!(doc["xlog"]["paused"], json!(true), "{doc}");
    let received = doc["xlog"]["received_location"].as_u64().expect("received");
    let replayed = doc["xlog"]["replayed_location"].as_u64().expect("replayed");
    assert!(received > replayed, "{doc}");
    assert!(doc["postmaster_start_time"].is_string(), "{doc}");
    assert!(
        doc["server_version"].as_u64().unwrap_or(0) >= 150_000,
        "{doc}"
    );
    let system_id = doc["database_system_identifier"].clone();
    assert!(system_id.is_string(), "{doc}");
    let primary_doc = patroni(&api, &api_url(&lab, &primary)).await;
    assert_eq!(primary_doc["database_system_identifier"], system_id);
    let standbys: Vec<&str> = primary_doc["replication"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["application_name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(standbys.len(), 2, "{primary_doc}");
    // Patroni's series, for a Patroni dashboard: the primary says so, the
    // paused replica too, with Patroni's labels.
    let series = |text: &str, name: &str, member: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains(&format!("name=\"{member}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    let on_primary = metrics(&api, &api_url(&lab, &primary)).await.text;
    assert_eq!(
        series(&on_primary, "patroni_primary", &primary).as_deref(),
        Some("1"),
        "{on_primary}"
    );
    assert!(
        series(&on_primary, "patroni_postgres_server_version", &primary).is_some(),
        "{on_primary}"
    );
    let on_lagging = metrics(&api, &lagging_url).await.text;
    assert_eq!(
        series(&on_lagging, "patroni_replica", &lagging).as_deref(),
        Some("1"),
        "{on_lagging}"
    );
    assert_eq!(
        series(&on_lagging, "patroni_xlog_paused", &lagging).as_deref(),
        Some("1"),
        "{on_lagging}"
    );
    execute_on(&lab, &lagging, "SELECT pg_wal_replay_resume()").await;
    expect_table(&client, &lab, &lagging, "replica caught up", &REPLICA).await;

    // Maintenance mode: the checks answer as before, and every member says so.
    set_pause(&api, &api_url(&lab, &primary), true).await;
    for name in lab.names() {
        let base = api_url(&lab, &name);
        until_holds(
            Duration::from_secs(5),
            "every member's /patroni says pause",
            || async { patroni(&api, &base).await["pause"] == json!(true) },
        )
        .await;
    }
    let pause_metric = metrics(&api, &api_url(&lab, &other)).await;
    assert!(
        has_line(&pause_metric.text, "raftgres_pause 1"),
        "{}",
        pause_metric.text
    );
    expect_table(&client, &lab, &primary, "paused primary", &PRIMARY).await;
    for r in &replicas {
        expect_table(&client, &lab, r, "paused replica", &REPLICA).await;
    }

    // Paused, the agent leaves a stopped Postgres stopped.
    let pid = postmaster_pid(&lab, &other).expect("the replica's postmaster pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGINT)
        .expect("SIGINT (fast shutdown) to the replica's postmaster");
    expect_table(
        &client,
        &lab,
        &other,
        "member with Postgres stopped",
        &STOPPED,
    )
    .await;
    let other_url = api_url(&lab, &other);
    let stays = Instant::now() + Duration::from_secs(3);
    while Instant::now() < stays {
        assert_eq!(
            table(&client, &other_url).await,
            expected(&STOPPED),
            "the paused agent of {other} acted on its stopped Postgres"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let doc = patroni(&api, &other_url).await;
    assert_eq!(doc["state"], json!("stopped"), "{doc}");
    assert_eq!(doc["pause"], json!(true), "{doc}");
    let stopped_metrics = metrics(&api, &other_url).await;
    assert!(
        has_line(&stopped_metrics.text, "raftgres_postgres_running 0"),
        "{}",
        stopped_metrics.text
    );
    expect_table(&client, &lab, &primary, "paused primary", &PRIMARY).await;

    // Resumed, the agent starts it again as a replica.
    set_pause(&api, &api_url(&lab, &primary), false).await;
    expect_table_within(
        &client,
        &lab,
        &other,
        "replica after resume",
        &REPLICA,
        Duration::from_secs(30),
    )
    .await;
    until_streaming(&lab, &other, Duration::from_secs(10), "it streams again").await;
    assert_eq!(patroni(&api, &other_url).await["pause"], json!(false));
    assert_eq!(writable(&lab).await, vec![primary.clone()]);
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_calls_check_auth_bodies_versions_and_restart_a_replica() {
    let (_dir, lab, primary) = serial_lab(3, false).await;
    let api = Api::authenticated(&lab);
    let monitor = NeverTwoPrimaries::start(&lab);
    let replicas = members_except(&lab, &[&primary]);
    let replica = replicas[0].clone();
    let base = api_url(&lab, &primary);
    let replica_url = api_url(&lab, &replica);

    // /metrics: OpenMetrics text from each member's own view, which follows
    // its agent's first probes after `lab up`.
    let on_primary = [
        "raftgres_primary 1".to_owned(),
        format!("raftgres_lease_holder{{member=\"{primary}\"}} 1"),
        format!("raftgres_lease_holder{{member=\"{replica}\"}} 0"),
        "raftgres_pause 0".to_owned(),
        "raftgres_postgres_running 1".to_owned(),
        "# EOF".to_owned(),
    ];
    let text = until(
        SETTLE_WITHIN,
        &format!("the primary's /metrics to show {on_primary:?}"),
        || metrics(&api, &base),
        |text| on_primary.iter().all(|line| has_line(&text.text, line)),
    )
    .await;
    assert!(
        text.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        text.headers
    );
    let on_replica = [
        "raftgres_primary 0".to_owned(),
        format!("raftgres_lease_holder{{member=\"{primary}\"}} 1"),
        "raftgres_postgres_running 1".to_owned(),
    ];
    for r in &replicas {
        let at = api_url(&lab, r);
        until(
            SETTLE_WITHIN,
            &format!("{r}'s /metrics to show {on_replica:?} and a replication lag"),
            || metrics(&api, &at),
            |text| {
                on_replica.iter().all(|line| has_line(&text.text, line))
                    && text
                        .text
                        .lines()
                        .any(|l| l.starts_with("raftgres_replication_lag_bytes "))
            },
        )
        .await;
    }

    // Unauthenticated or wrongly authenticated changes are refused, and
    // change nothing: the bodies are valid, so only auth stops them.
    let pid_before = postmaster_pid(&lab, &replica).expect("the replica's postmaster pid");
    let switchover = json!({"leader": primary, "candidate": replica}).to_string();
    let pause = json!({"pause": true}).to_string();
    let calls: [(&str, &str, &str, Option<&str>); 3] = [
        (
            "POST",
            base.as_str(),
            "/switchover",
            Some(switchover.as_str()),
        ),
        ("PATCH", base.as_str(), "/config", Some(pause.as_str())),
        ("POST", replica_url.as_str(), "/restart", None),
    ];
    for (method, at, path, body) in calls {
        for credentials in [
            Credentials::Anonymous,
            Credentials::Basic("raftgres", "not-the-password"),
            Credentials::Basic("admin", "admin"),
        ] {
            let reply = api
                .exchange(method, at, path, body, credentials, &[])
                .await
                .expect("request");
            let what = format!("{method} {path} with {credentials:?}");
            assert_eq!(reply.status, 401, "{what}: {reply:?}");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Basic realm=\"raftgres\""),
                "{what}: {reply:?}"
            );
            assert!(reply.body["error"].is_string(), "{what}: {reply:?}");
        }
    }
    assert_eq!(writable(&lab).await, vec![primary.clone()]);
    assert_eq!(postmaster_pid(&lab, &replica), Some(pid_before));
    let config = api.get(&base, "/config").await.expect("GET /config");
    assert_eq!(config.body["pause"], json!(false), "{config:?}");

    // Malformed JSON, unknown fields and Patroni's key names: 400 naming them.
    let reply = api
        .exchange(
            "POST",
            &base,
            "/switchover",
            Some(r#"{"leader": "#),
            Credentials::Lab,
            &[],
        )
        .await
        .expect("POST /switchover");
    assert_eq!(reply.status, 400, "{reply:?}");
    let error = reply.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("JSON"), "{reply:?}");
    for (method, at, path, body, field) in [
        (
            "POST",
            base.as_str(),
            "/switchover",
            json!({"leader": primary, "bogus_field": 1}),
            "bogus_field",
        ),
        (
            "PATCH",
            base.as_str(),
            "/config",
            json!({"bogus_key": 1}),
            "bogus_key",
        ),
        (
            "POST",
            replica_url.as_str(),
            "/restart",
            json!({"bogus_option": true}),
            "bogus_option",
        ),
        (
            "PATCH",
            base.as_str(),
            "/config",
            json!({"ttl": 30}),
            "ttl_ms",
        ),
        // Valid as a lease, but shorter than a Raft election may take.
        (
            "PATCH",
            base.as_str(),
            "/config",
            json!({"ttl_ms": 1500}),
            "a Raft election can take up to",
        ),
        (
            "PATCH",
            base.as_str(),
            "/config",
            json!({"synchronous_mode": "sometimes"}),
            "synchronous_mode` must be true, false or \"quorum\"",
        ),
    ] {
        let reply = api
            .send(method, at, path, &body)
            .await
            .expect("an authenticated call");
        assert_eq!(reply.status, 400, "{method} {path} {body}: {reply:?}");
        let error = reply.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(field), "{method} {path} {body}: {reply:?}");
    }
    assert_eq!(writable(&lab).await, vec![primary.clone()]);
    assert_eq!(postmaster_pid(&lab, &replica), Some(pid_before));

    // PATCH /config compare-and-set with If-Match.
    let before = api
        .exchange("GET", &base, "/config", None, Credentials::Anonymous, &[])
        .await
        .expect("GET /config");
    assert_eq!(before.status, 200, "{before:?}");
    let etag = before.header("etag").expect("an ETag").to_owned();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
    let old_lag = before.body["maximum_lag_on_failover"]
        .as_u64()
        .expect("maximum_lag_on_failover");
    let new_lag = old_lag + 4096;
    let patched = api
        .exchange(
            "PATCH",
            &base,
            "/config",
            Some(&json!({"maximum_lag_on_failover": new_lag}).to_string()),
            Credentials::Lab,
            &[("if-match", &etag)],
        )
        .await
        .expect("PATCH /config");
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["maximum_lag_on_failover"], json!(new_lag));
    let new_etag = patched.header("etag").expect("a new ETag").to_owned();
    assert_ne!(new_etag, etag, "a change makes a new version");
    let stale = api
        .exchange(
            "PATCH",
            &base,
            "/config",
            Some(&json!({"maximum_lag_on_failover": new_lag + 4096}).to_string()),
            Credentials::Lab,
            &[("if-match", &etag)],
        )
        .await
        .expect("PATCH /config with a stale If-Match");
    // 412 from this member's copy of the state; 409 from the commit's
    // compare-and-set when that copy had not applied the change yet.
    assert!([412, 409].contains(&stale.status), "{stale:?}");
    assert!(stale.body["error"].is_string(), "{stale:?}");
    for name in lab.names() {
        let at = api_url(&lab, &name);
        eventually(
            Duration::from_secs(5),
            "every member has the first change only",
            || async {
                let now = api
                    .exchange("GET", &at, "/config", None, Credentials::Anonymous, &[])
                    .await
                    .ok()?;
                (now.status == 200
                    && now.body["maximum_lag_on_failover"] == json!(new_lag)
                    && now.header("etag") == Some(new_etag.as_str()))
                .then_some(())
            },
        )
        .await;
    }

    // POST /restart on a replica: a new postmaster that streams again.
    let restart_started = Instant::now();
    let reply = api
        .call("POST", &replica_url, "/restart", None, true)
        .await
        .expect("POST /restart");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body["message"].is_string(), "{reply:?}");
    eprintln!("restart answered after {:?}", restart_started.elapsed());
    let pid_after = postmaster_pid(&lab, &replica).expect("a postmaster after the restart");
    assert_ne!(
        pid_after, pid_before,
        "POST /restart did not restart Postgres"
    );
    until_streaming(
        &lab,
        &replica,
        Duration::from_secs(30),
        "the restarted replica streams again",
    )
    .await;
    a_write_reaches(
        &lab,
        &primary,
        &replica,
        "after_restart",
        Duration::from_secs(10),
        "the restarted replica replays new writes",
    )
    .await;
    assert_eq!(writable(&lab).await, vec![primary.clone()]);
    monitor.assert_never_two().await;
}
