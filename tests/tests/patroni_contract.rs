//! Patroni's REST contract on a real lab: the requests a Patroni user's
//! load balancer, monitoring and scripts send, each with the status code
//! and the JSON keys Patroni 4 answers with (its documentation and
//! `patroni/api.py`). A key raftgres adds is allowed; a key Patroni has and
//! raftgres lacks fails the test, as does another status code.

use raftgres_tests::http::{Api, api_url};
use raftgres_tests::{any_replica, settled_lab};
use serde_json::{Value, json};

/// Where a dotted key (`xlog.location`, `members.0.name`) leads in `value`.
fn at<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.')
        .try_fold(value, |v, part| match part.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(part),
        })
}

/// One request and what Patroni answers to it.
struct Call {
    method: &'static str,
    path: &'static str,
    /// `true`: sent to the primary; `false`: to a replica.
    on_primary: bool,
    body: Option<Value>,
    status: u16,
    keys: &'static [&'static str],
}

const fn get(
    path: &'static str,
    on_primary: bool,
    status: u16,
    keys: &'static [&'static str],
) -> Call {
    Call {
        method: "GET",
        path,
        on_primary,
        body: None,
        status,
        keys,
    }
}

/// The health checks' document on every member. Patroni's also carries
/// `dcs_last_seen`; raftgres leaves it to `GET /patroni`, because these
/// bodies are rendered once per change, not per request
/// (docs/rest-api.md).
const HEALTH: &[&str] = &[
    "state",
    "postmaster_start_time",
    "role",
    "server_version",
    "timeline",
    "database_system_identifier",
    "patroni.version",
    "patroni.scope",
    "patroni.name",
];
/// `/patroni`'s keys on every member: the health checks' and this one;
/// then on a primary or a replica.
const STATUS: &[&str] = &["dcs_last_seen"];
const PRIMARY_STATUS: &[&str] = &[
    "xlog.location",
    "replication.0.application_name",
    "replication.0.state",
];
const REPLICA_STATUS: &[&str] = &[
    "xlog.received_location",
    "xlog.replayed_location",
    "xlog.replayed_timestamp",
    "xlog.paused",
    "replication_state",
];
const CLUSTER: &[&str] = &[
    "scope",
    "members.0.name",
    "members.0.role",
    "members.0.state",
    "members.0.api_url",
    "members.0.host",
    "members.0.port",
    "members.0.timeline",
    "members.0.tags",
];

fn calls() -> Vec<Call> {
    vec![
        // Health checks: HAProxy's `option httpchk` and Kubernetes probes.
        get("/", true, 200, HEALTH),
        get("/primary", true, 200, HEALTH),
        get("/master", true, 200, HEALTH),
        get("/read-write", true, 200, HEALTH),
        get("/leader", true, 200, HEALTH),
        get("/primary", false, 503, HEALTH),
        get("/replica", false, 200, HEALTH),
        get("/replica", true, 503, HEALTH),
        get("/read-only", true, 200, HEALTH),
        get("/read-only", false, 200, HEALTH),
        get("/standby-leader", true, 503, HEALTH),
        get("/async", false, 200, HEALTH),
        get("/sync", false, 503, HEALTH),
        get("/health", false, 200, HEALTH),
        get("/liveness", false, 200, &[]),
        get("/readiness", false, 200, &[]),
        // Monitoring.
        get("/patroni", true, 200, HEALTH),
        get("/patroni", true, 200, STATUS),
        get("/patroni", true, 200, PRIMARY_STATUS),
        get("/patroni", false, 200, REPLICA_STATUS),
        get("/cluster", false, 200, CLUSTER),
        get("/history", false, 200, &[]),
        get(
            "/config",
            false,
            200,
            &[
                "ttl_ms",
                "loop_wait_ms",
                "maximum_lag_on_failover",
                "slots",
                "ignore_slots",
            ],
        ),
        // Scripts: refused requests name what is wrong, as Patroni's do.
        Call {
            method: "POST",
            path: "/switchover",
            on_primary: false,
            body: Some(json!({"leader": "nobody-of-this-name"})),
            status: 412,
            keys: &[],
        },
        Call {
            method: "POST",
            path: "/failover",
            on_primary: false,
            body: Some(json!({})),
            status: 400,
            keys: &[],
        },
        Call {
            method: "DELETE",
            path: "/switchover",
            on_primary: false,
            body: None,
            status: 404,
            keys: &[],
        },
        Call {
            method: "POST",
            path: "/reinitialize",
            on_primary: true,
            body: Some(json!({})),
            status: 503,
            keys: &[],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_patronis_status_codes_and_keys() {
    let (_dir, lab, primary) = settled_lab(2).await;
    let api = Api::of(&lab);
    let replica = any_replica(&lab, &primary);

    let mut wrong = Vec::new();
    for call in calls() {
        let member = if call.on_primary { &primary } else { &replica };
        let body = call.body.as_ref().map(Value::to_string);
        let reply = api
            .call(
                call.method,
                &api_url(&lab, member),
                call.path,
                body.as_deref(),
                true,
            )
            .await;
        let what = format!(
            "{} {} on the {}",
            call.method,
            call.path,
            if call.on_primary {
                "primary"
            } else {
                "replica"
            }
        );
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                wrong.push(format!("{what}: {e}"));
                continue;
            }
        };
        if reply.status != call.status {
            wrong.push(format!(
                "{what}: status {}, Patroni answers {}: {}",
                reply.status, call.status, reply.body
            ));
        }
        for key in call.keys {
            if at(&reply.body, key).is_none() {
                wrong.push(format!("{what}: no `{key}` in {}", reply.body));
            }
        }
        if call.status >= 400 && call.method != "GET" && reply.body.to_string().len() < 10 {
            wrong.push(format!(
                "{what}: a refusal that says nothing: {}",
                reply.body
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Patroni 4's names: `primary`, not `master`; `running`.
    let status = api
        .get(&api_url(&lab, &primary), "/patroni")
        .await
        .expect("/patroni")
        .body;
    assert_eq!(status["role"], "primary");
    assert_eq!(status["state"], "running");
    let history = api
        .get(&api_url(&lab, &replica), "/history")
        .await
        .expect("/history")
        .body;
    assert!(history.is_array(), "{history}");
}
