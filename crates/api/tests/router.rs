//! The router through tower's `oneshot`: methods, bodies, 400 and 404.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use headers::authorization::Credentials as _;
use raftgres_api::{
    ApiContext, HealthSource, MemberReport, NodeHealth, ROUTES, ReadOps, Role, router,
};
use raftgres_state::ClusterState;
use tower::ServiceExt;

/// The health endpoints must answer from the health snapshot alone.
struct Untouchable;

const TOUCHED: &str = "a health endpoint called the operations";

impl ReadOps for Untouchable {
    fn state(&self) -> ClusterState {
        panic!("{TOUCHED}")
    }
    fn member_reports(&self) -> BTreeMap<String, MemberReport> {
        panic!("{TOUCHED}")
    }
}

common::refuse_writes!(Untouchable, TOUCHED);

fn context(health: impl HealthSource) -> ApiContext {
    ApiContext {
        health: Arc::new(health),
        ops: Arc::new(Untouchable),
        auth: tokio::sync::watch::channel(None).1,
        logins: Default::default(),
        allowlist: Default::default(),
        authenticate_reads: false,
    }
}

fn primary() -> NodeHealth {
    NodeHealth {
        timeline: Some(2),
        server: raftgres_api::ServerFacts {
            server_version: Some(150_004),
            ..Default::default()
        },
        tags: BTreeMap::from([
            ("nofailover".to_owned(), "false".to_owned()),
            ("failover_priority".to_owned(), "1".to_owned()),
            ("zone".to_owned(), "eu-1".to_owned()),
        ]),
        ..common::running_primary()
    }
}

fn replica() -> NodeHealth {
    NodeHealth {
        lag_bytes: Some(2 << 20),
        ..common::streaming_replica(primary())
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

async fn call(health: NodeHealth, method: Method, uri: &str) -> Reply {
    let app = router(context(move || health.clone()));
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let (parts, body) = app.oneshot(request).await.unwrap().into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.to_vec(),
    }
}

#[tokio::test]
async fn primary_get_head_options() {
    for (health, want) in [
        (primary(), StatusCode::OK),
        (replica(), StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let get = call(health.clone(), Method::GET, "/primary").await;
        assert_eq!(get.status, want);
        assert_eq!(get.headers[header::CONTENT_TYPE], "application/json");
        let doc = get.json();
        assert_eq!(doc["patroni"]["scope"], "demo");
        assert_eq!(doc["patroni"]["name"], health.member.as_str());

        let head = call(health.clone(), Method::HEAD, "/primary").await;
        assert_eq!(head.status, want);
        assert!(head.body.is_empty(), "HEAD has no body");

        let options = call(health, Method::OPTIONS, "/primary").await;
        assert_eq!(options.status, want);
        assert!(options.body.is_empty(), "OPTIONS has no body");
        assert_eq!(options.headers[header::ALLOW], "GET, HEAD, OPTIONS");
    }
}

#[tokio::test]
async fn replica_get_head_options() {
    for (health, want) in [
        (replica(), StatusCode::OK),
        (primary(), StatusCode::SERVICE_UNAVAILABLE),
    ] {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            let reply = call(health.clone(), method.clone(), "/replica").await;
            assert_eq!(reply.status, want, "{method} /replica as {:?}", health.role);
            assert_eq!(reply.body.is_empty(), method != Method::GET, "{method}");
        }
    }
    let below = call(replica(), Method::OPTIONS, "/replica?lag=1MB").await;
    assert_eq!(below.status, StatusCode::SERVICE_UNAVAILABLE);
    let above = call(replica(), Method::OPTIONS, "/replica?lag=4MB&tag_zone=eu-1").await;
    assert_eq!(above.status, StatusCode::OK);
    let other_zone = call(replica(), Method::OPTIONS, "/replica?tag_zone=us-1").await;
    assert_eq!(other_zone.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn every_primary_alias_answers_like_primary() {
    let aliases = ["/", "/primary", "/read-write", "/master"];
    for alias in aliases {
        assert_eq!(
            call(primary(), Method::OPTIONS, alias).await.status,
            StatusCode::OK,
            "{alias}"
        );
        assert_eq!(
            call(replica(), Method::OPTIONS, alias).await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{alias}"
        );
    }
    for (path, _) in ROUTES {
        let status = call(primary(), Method::HEAD, path).await.status;
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {status}"
        );
    }
}

/// A member whose loops have been quiet for a fixed time.
struct Stalled {
    health: NodeHealth,
    quiet: Duration,
}

impl HealthSource for Stalled {
    fn snapshot(&self) -> (Arc<raftgres_api::HealthSnapshot>, Duration) {
        (
            Arc::new(raftgres_api::HealthSnapshot::fixed(self.health.clone())),
            Duration::ZERO,
        )
    }

    fn loops_quiet(&self) -> Duration {
        self.quiet
    }
}

/// `/liveness` asks the source how long its loops have been quiet.
#[tokio::test]
async fn liveness_fails_once_the_loops_stall() {
    let ttl = Duration::from_secs(3);
    for (quiet, want) in [
        (Duration::from_millis(200), StatusCode::OK),
        (ttl, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let health = NodeHealth {
            ttl: Some(ttl),
            ..primary()
        };
        let app = router(context(Stalled { health, quiet }));
        let request = Request::builder()
            .method(Method::GET)
            .uri("/liveness")
            .body(Body::empty())
            .unwrap();
        let reply = app.oneshot(request).await.unwrap();
        assert_eq!(reply.status(), want, "loops quiet for {quiet:?}");
    }
}

/// Patroni's `/leader`: the lease, not a writable Postgres.
#[tokio::test]
async fn leader_means_holding_the_lease() {
    assert_eq!(
        call(primary(), Method::OPTIONS, "/leader").await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(replica(), Method::OPTIONS, "/leader").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let mut stopped = primary();
    stopped.role = Role::Unknown;
    stopped.postgres_running = false;
    assert_eq!(
        call(stopped.clone(), Method::OPTIONS, "/leader")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(stopped, Method::OPTIONS, "/primary").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// A typo in `?lag=` must not take every replica out of a load balancer:
/// as Patroni, the check answers as if no limit were given.
#[tokio::test]
async fn a_lag_that_is_no_byte_count_is_ignored_as_patroni_does() {
    for path in [
        "/replica?lag=abc",
        "/replica?lag=10mb",
        "/readiness?lag=1,5MB",
    ] {
        let reply = call(replica(), Method::GET, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
    let limited = call(replica(), Method::OPTIONS, "/replica?lag=1MB").await;
    assert_eq!(limited.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn other_bad_query_values_are_400_naming_the_parameter() {
    let reply = call(replica(), Method::GET, "/replica?replication_state=catchup").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let error = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("`replication_state`"), "{error}");
    assert!(error.contains("catchup"), "{error}");

    let head = call(replica(), Method::HEAD, "/readiness?tag_zone=%zz").await;
    assert_eq!(head.status, StatusCode::BAD_REQUEST);
    assert!(head.body.is_empty());
}

/// Unknown paths are 404 whatever the method; a known path is 405 to a
/// method it does not serve.
#[tokio::test]
async fn requests_outside_the_routes_are_404_or_405() {
    let mut refused = vec![(Method::POST, "/primary", StatusCode::METHOD_NOT_ALLOWED)];
    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        for path in ["/nope", "/primary/x", "/replicas"] {
            refused.push((method.clone(), path, StatusCode::NOT_FOUND));
        }
    }
    for (method, path, status) in refused {
        let reply = call(primary(), method.clone(), path).await;
        assert_eq!(reply.status, status, "{method} {path}");
    }
}

#[tokio::test]
async fn patroni_document() {
    let reply = call(primary(), Method::GET, "/patroni").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        serde_json::json!({
            "state": "running",
            "role": "primary",
            "server_version": 150004,
            "xlog": {"location": 50331744},
            "timeline": 2,
            "pause": false,
            "tags": {"failover_priority": 1, "nofailover": false, "zone": "eu-1"},
            // As Patroni before its first contact: this source knows none.
            "dcs_last_seen": 0,
            "patroni": {"version": env!("CARGO_PKG_VERSION"), "scope": "demo", "name": "pg1"},
        })
    );

    let stopped = NodeHealth {
        postgres_running: false,
        paused: true,
        ..replica()
    };
    let reply = call(stopped, Method::GET, "/patroni").await;
    assert_eq!(reply.status, StatusCode::OK, "/patroni is always 200");
    let doc = reply.json();
    assert_eq!(doc["state"], "stopped");
    assert_eq!(doc["role"], "replica");
    assert_eq!(doc["pause"], true);
    assert_eq!(
        doc["xlog"],
        serde_json::json!({"received_location": 50331744, "replayed_location": 50331744,
                           "replayed_timestamp": null, "paused": false})
    );

    // What the last look at the server saw, in Patroni's fields.
    let standby = raftgres_api::Standby {
        usename: Some("replicator".into()),
        application_name: "pg2".into(),
        client_addr: Some("10.0.0.2".into()),
        state: "streaming".into(),
        sync_state: "async".into(),
        sync_priority: 0,
    };
    let seen = |health: NodeHealth| NodeHealth {
        pg_state: "running",
        server: raftgres_api::ServerFacts {
            server_version: Some(150_004),
            system_identifier: Some("7716578823424005220".into()),
            postmaster_start_time: Some("2026-12-07 15:06:54.87+00".into()),
            postmaster_start_unix_ms: Some(1_796_656_014_870),
            conf_load_time: Some("2026-12-07 15:08:12.5+00".into()),
            received_lsn: Some(50_331_800),
            replayed_lsn: Some(50_331_744),
            replayed_timestamp: Some("2026-12-07 15:07:00.01+00".into()),
            replayed_unix_ms: Some(1_796_656_020_010),
            replay_paused: true,
            replication: vec![standby.clone()],
            progress: None,
        },
        ..health
    };
    let doc = call(seen(primary()), Method::GET, "/patroni").await.json();
    assert_eq!(doc["database_system_identifier"], "7716578823424005220");
    assert_eq!(doc["postmaster_start_time"], "2026-12-07 15:06:54.87+00");
    assert_eq!(doc["conf_load_time"], "2026-12-07 15:08:12.5+00");
    assert_eq!(
        doc["replication"],
        serde_json::json!([{"usename": "replicator", "application_name": "pg2",
            "client_addr": "10.0.0.2", "state": "streaming", "sync_state": "async",
            "sync_priority": 0}])
    );
    let doc = call(seen(replica()), Method::GET, "/patroni").await.json();
    assert_eq!(
        doc["xlog"],
        serde_json::json!({"received_location": 50331800, "replayed_location": 50331744,
                           "replayed_timestamp": "2026-12-07 15:07:00.01+00", "paused": true})
    );
    assert!(
        doc.get("replication").is_none(),
        "a replica lists no standbys"
    );
    let creating = NodeHealth {
        pg_state: "creating replica",
        postgres_running: false,
        ..replica()
    };
    let doc = call(creating.clone(), Method::GET, "/patroni").await.json();
    assert_eq!(doc["state"], "creating replica");
    assert!(doc.get("progress").is_none(), "no copy has reported yet");
    let copying = NodeHealth {
        server: raftgres_api::ServerFacts {
            progress: Some(raftgres_api::CopyProgress {
                action: "clone",
                method: Some("basebackup".into()),
                done_bytes: 3 << 20,
                total_bytes: 12 << 20,
                bytes_per_second: 1 << 20,
            }),
            ..Default::default()
        },
        ..creating
    };
    let doc = call(copying, Method::GET, "/patroni").await.json();
    assert_eq!(
        doc["progress"],
        serde_json::json!({"action": "clone", "method": "basebackup", "done_bytes": 3145728,
            "total_bytes": 12582912, "bytes_per_second": 1048576})
    );

    let streaming = call(replica(), Method::GET, "/replica").await.json();
    assert_eq!(streaming["replication_state"], "streaming");

    let waiting = NodeHealth {
        pending_restart: BTreeMap::from([(
            "max_connections".to_owned(),
            raftgres_state::PendingRestart {
                old_value: "100".into(),
                new_value: Some("150".into()),
            },
        )]),
        ..replica()
    };
    let doc = call(waiting, Method::GET, "/patroni").await.json();
    assert_eq!(doc["pending_restart"], true);
    assert_eq!(
        doc["pending_restart_reason"],
        serde_json::json!({"max_connections": {"old_value": "100", "new_value": "150"}})
    );
}

/// A server on a free port of `bind`, reached at `to` (127.0.0.1).
struct Running {
    to: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Serves `ctx` with `limits`, or by `serve`'s defaults when `None`.
    async fn start(bind: &str, ctx: ApiContext, limits: Option<raftgres_api::ServeLimits>) -> Self {
        let listener = tokio::net::TcpListener::bind(format!("{bind}:0"))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let to = format!("127.0.0.1:{port}").parse().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = match limits {
            None => tokio::spawn(raftgres_api::serve(listener, ctx, shutdown)),
            Some(limits) => tokio::spawn(raftgres_api::serve_with_limits(
                listener, ctx, shutdown, limits,
            )),
        };
        Running { to, stop, server }
    }

    /// Asks the server to stop and waits until it has, without an error.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }
}

/// The admin's credentials, the ones the tests configure.
fn admin() -> Option<raftgres_api::Credentials> {
    Some(raftgres_api::Credentials {
        username: "admin".into(),
        password: "s3cret".into(),
    })
}

#[tokio::test]
async fn serve_answers_over_tcp_and_shuts_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let running = Running::start("127.0.0.1", context(primary), None).await;

    let mut stream = tokio::net::TcpStream::connect(running.to).await.unwrap();
    stream
        .write_all(b"OPTIONS /primary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    running.stop().await;
}

/// A GET of `/primary` over a socket bound to `from`, within two seconds.
async fn probe_from(from: &str, to: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(format!("{from}:0").parse().ok()?).ok()?;
        let mut stream = socket.connect(to).await.ok()?;
        stream
            .write_all(b"GET /primary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
}

/// Idle sockets are closed after the header-read timeout, and one address
/// holding all it may does not keep another's health checks out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_does_not_stop_health_checks() {
    use tokio::io::AsyncReadExt;
    let limits = raftgres_api::ServeLimits {
        header_read_timeout: Duration::from_millis(500),
        max_connections: 200,
        max_connections_per_address: 50,
        shutdown_grace: Duration::from_secs(2),
    };
    let running = Running::start("0.0.0.0", context(primary), Some(limits)).await;
    let to = running.to;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(to).await.unwrap());
    }
    let answer = probe_from("127.0.0.2", to)
        .await
        .expect("a health check from another address is answered");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    // The server closes an idle socket it took once the timeout passes.
    let mut first = idle.remove(0);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "an idle connection stayed open: {read:?}"
    );
    drop(idle);
    // With the flood gone, the flooded address is served again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(answer) = probe_from("127.0.0.1", to).await
            && answer.starts_with("HTTP/1.1 200 OK\r\n")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flooded address stayed refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
}

/// A POST of `/reload` with `user:password` over a socket bound to `from`:
/// the status code.
async fn login_from(from: &str, to: std::net::SocketAddr, user_password: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let (username, password) = user_password.split_once(':').unwrap();
    let auth = headers::Authorization::basic(username, password).0.encode();
    let auth = auth.to_str().unwrap();
    stream
        .write_all(
            format!(
                "POST /reload HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Password guessing is slowed per address: after five failures an
/// address is answered 429 even with the right password, while another
/// address is still judged on its credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_per_address() {
    let ctx = ApiContext {
        auth: tokio::sync::watch::channel(admin()).1,
        ..context(primary)
    };
    let running = Running::start("0.0.0.0", ctx, None).await;
    let to = running.to;
    for attempt in 0..5 {
        assert_eq!(
            login_from("127.0.0.1", to, "admin:guess").await,
            401,
            "attempt {attempt}"
        );
    }
    assert_eq!(login_from("127.0.0.1", to, "admin:s3cret").await, 429);
    assert_eq!(login_from("127.0.0.2", to, "admin:guess").await, 401);
    running.stop().await;
}

/// With `restapi.allowlist`, a mutating call from another address is
/// refused before its credentials are looked at (so it counts for no
/// failed login either); one from inside goes on to the credentials.
#[tokio::test]
async fn the_allowlist_keeps_other_addresses_from_the_mutating_endpoints() {
    let ctx = ApiContext {
        auth: tokio::sync::watch::channel(admin()).1,
        allowlist: raftgres_api::Allowlist {
            nets: vec!["127.0.0.2/32".parse().unwrap()],
            include_members: false,
        },
        ..context(primary)
    };
    let running = Running::start("0.0.0.0", ctx, None).await;
    let to = running.to;
    assert_eq!(login_from("127.0.0.3", to, "admin:s3cret").await, 403);
    assert_eq!(login_from("127.0.0.2", to, "admin:guess").await, 401);
    // Reads stay open to health checks from anywhere.
    let answer = probe_from("127.0.0.3", to).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    running.stop().await;
}

/// With `authenticate_reads`, a health check or a document without the
/// credentials gets 401, as a mutating call does; with them, its answer.
#[tokio::test]
async fn reads_can_require_the_credentials_too() {
    let guarded = |authenticate_reads| ApiContext {
        auth: tokio::sync::watch::channel(admin()).1,
        authenticate_reads,
        ..context(primary)
    };
    let basic = headers::Authorization::basic("admin", "s3cret").0.encode();
    for (path, method) in [("/primary", Method::GET), ("/primary", Method::OPTIONS)] {
        let status = async |authenticate_reads, authorization: Option<&header::HeaderValue>| {
            let mut request = Request::builder().method(method.clone()).uri(path);
            if let Some(authorization) = authorization {
                request = request.header(header::AUTHORIZATION, authorization);
            }
            let request = request.body(Body::empty()).unwrap();
            let app = raftgres_api::router(guarded(authenticate_reads));
            app.oneshot(request).await.unwrap().status()
        };
        let open = status(false, None).await;
        assert_eq!(open, StatusCode::OK, "{method} {path} open");
        let refused = status(true, None).await;
        assert_eq!(refused, StatusCode::UNAUTHORIZED, "{method} {path}");
        let allowed = status(true, Some(&basic)).await;
        assert_eq!(allowed, StatusCode::OK, "{method} {path} with credentials");
    }
}

/// Patroni's refusals of a switchover or failover body come before any
/// operation: a time in the past (422) and `candidate` and `member`, its
/// other name, naming different members (400). `Untouchable` panics if an
/// operation or the state is reached.
#[tokio::test]
async fn switchover_and_failover_bodies_are_refused_before_any_operation() {
    let basic = headers::Authorization::basic("admin", "s3cret").0.encode();
    #[rustfmt::skip]
    let rows = [
        ("/switchover", r#"{"leader": "m1", "candidate": "m2", "scheduled_at": "2001-02-03T04:05:06Z"}"#, StatusCode::UNPROCESSABLE_ENTITY, "cannot schedule a switchover in the past"),
        ("/switchover", r#"{"leader": "m1", "scheduled_at": "2001-02-03T04:05:06+01:00"}"#, StatusCode::UNPROCESSABLE_ENTITY, "`2001-02-03T04:05:06+01:00` is before now"),
        ("/switchover", r#"{"leader": "m1", "scheduled_at": "soon"}"#, StatusCode::BAD_REQUEST, "`soon` is not an RFC 3339 time"),
        ("/switchover", r#"{"leader": "m1", "candidate": "m2", "member": "m3"}"#, StatusCode::BAD_REQUEST, "`candidate` (m2) and `member` (m3) name different members"),
        ("/failover", r#"{"candidate": "m2", "member": "m3"}"#, StatusCode::BAD_REQUEST, "`candidate` (m2) and `member` (m3) name different members"),
        ("/failover", r#"{"leader": "m1"}"#, StatusCode::BAD_REQUEST, "`candidate` (or `member`) must name the member to promote"),
    ];
    for (path, body, want, needle) in rows {
        let ctx = ApiContext {
            auth: tokio::sync::watch::channel(admin()).1,
            ..context(primary)
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::AUTHORIZATION, &basic)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let response = raftgres_api::router(ctx).oneshot(request).await.unwrap();
        let status = response.status();
        let body_bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&body_bytes).expect("JSON");
        let error = answer["error"].as_str().unwrap_or_default();
        assert_eq!(status, want, "{path} {body}: {answer}");
        assert!(error.contains(needle), "{path} {body}: {error}");
    }
}

mod tls {
    use super::*;
    use raftgres_api::{ServeLimits, ServerTls, VerifyClient};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    /// A certificate and its key, in PEM.
    struct Leaf {
        cert: String,
        key: String,
    }

    impl Ca {
        fn new() -> Ca {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "test CA");
            let pem = params.self_signed(&key).unwrap().pem();
            Ca {
                pem,
                issuer: Issuer::new(params, key),
            }
        }

        fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &self.issuer).unwrap().pem();
            Leaf {
                cert,
                key: key.serialize_pem(),
            }
        }
    }

    /// Serves over TLS on a loopback port; returns the `https://localhost:PORT` base.
    async fn serve(ca: &Ca, verify: VerifyClient) -> String {
        let server = ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
        let tls = ServerTls::from_pem(
            server.cert.as_bytes(),
            server.key.as_bytes(),
            Some(ca.pem.as_bytes()),
            verify,
        )
        .expect("server TLS");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(raftgres_api::serve_tls(
            listener,
            context(primary),
            std::future::pending(),
            ServeLimits::default(),
            tls,
        ));
        format!("localhost:{port}")
    }

    fn client(ca: &Ca, identity: Option<&Leaf>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap());
        if let Some(leaf) = identity {
            let pem = format!("{}{}", leaf.cert, leaf.key);
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    async fn get(client: &reqwest::Client, url: String) -> Result<u16, String> {
        client
            .get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    }

    #[tokio::test]
    async fn required_client_certificates_keep_out_everyone_else() {
        let ca = Ca::new();
        let addr = serve(&ca, VerifyClient::Required).await;
        let member = ca.leaf("admin", ExtendedKeyUsagePurpose::ClientAuth);
        let url = format!("https://{addr}/primary");
        assert_eq!(get(&client(&ca, Some(&member)), url.clone()).await, Ok(200));
        assert!(
            get(&client(&ca, None), url.clone()).await.is_err(),
            "no certificate"
        );
        let stranger = Ca::new().leaf("admin", ExtendedKeyUsagePurpose::ClientAuth);
        assert!(
            get(&client(&ca, Some(&stranger)), url).await.is_err(),
            "a certificate from another CA"
        );
        // Plain HTTP to the TLS port: no answer.
        assert!(
            get(&client(&ca, None), format!("http://{addr}/primary"))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn optional_client_certificates_admit_anonymous_clients_only() {
        let ca = Ca::new();
        let addr = serve(&ca, VerifyClient::Optional).await;
        let url = format!("https://{addr}/primary");
        assert_eq!(get(&client(&ca, None), url.clone()).await, Ok(200));
        let stranger = Ca::new().leaf("admin", ExtendedKeyUsagePurpose::ClientAuth);
        assert!(get(&client(&ca, Some(&stranger)), url).await.is_err());
    }

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_key() {
        let ca = Ca::new();
        let server = ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
        let err = ServerTls::from_pem(
            server.cert.as_bytes(),
            server.key.as_bytes(),
            None,
            VerifyClient::Required,
        )
        .unwrap_err();
        assert!(err.to_string().contains("set restapi.cafile"), "{err}");
        let err = ServerTls::from_pem(
            server.cert.as_bytes(),
            b"not a key",
            None,
            VerifyClient::None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("restapi.keyfile"), "{err}");
        let err =
            ServerTls::from_pem(b"", server.key.as_bytes(), None, VerifyClient::None).unwrap_err();
        assert!(err.to_string().contains("restapi.certfile"), "{err}");
    }
}
