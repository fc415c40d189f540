//! The router end to end, with a fake agent behind [`ReadOps`] and [`WriteOps`] that
//! records every call.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::to_bytes;
use axum::http::header::{AUTHORIZATION, ETAG, IF_MATCH, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, Request as HttpRequest};
use headers::authorization::{Authorization, Credentials as _};
use raftgres_state::{
    ClusterState, ConfigValues, DynamicConfig, Epoch, HistoryEntry, Lease, Lsn, Member, MemberRole,
    PgState, PostgresVersion, RestartOptions, RestartRole, ScheduledRestart, Switchover, Tags,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;
use crate::health::{NodeHealth, Role};
use crate::live::{Histogram, LiveFacts, RaftFacts};
use crate::ops::{MemberReport, OpError, OpFuture, SwitchoverOutcome, SwitchoverRequest};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    State,
    SetConfig(u64, ConfigValues),
    Switchover(SwitchoverRequest),
    CancelSwitchover,
    Failover(String),
    Restart(RestartOptions),
    ScheduleRestart(u64, RestartOptions),
    CancelRestart,
    Reload,
    Reinitialize(bool),
    RemoveMember(String),
}

/// Answers from `state` and `reports`; `refuse` makes every mutating call
/// fail with it.
struct FakeOps {
    state: Mutex<ClusterState>,
    reports: BTreeMap<String, MemberReport>,
    calls: Mutex<Vec<Call>>,
    refuse: Option<OpError>,
    switchover: SwitchoverOutcome,
    /// This member's scheduled restart, for the answers that depend on it.
    scheduled_restart: Mutex<Option<u64>>,
}

/// A member last heard from `age_ms` ago.
fn report(age_ms: u64, age_is_lower_bound: bool, stale: bool) -> MemberReport {
    MemberReport {
        age: Duration::from_millis(age_ms),
        age_is_lower_bound,
        stale,
    }
}

/// A member heard from `age_ms` ago, by an agent that saw it change.
fn heard(age_ms: u64) -> MemberReport {
    report(age_ms, false, false)
}

impl FakeOps {
    /// Every member of `state` reported 400 ms ago.
    fn new(state: ClusterState) -> Self {
        FakeOps {
            reports: state
                .members
                .keys()
                .map(|name| (name.clone(), heard(400)))
                .collect(),
            state: Mutex::new(state),
            calls: Mutex::new(Vec::new()),
            refuse: None,
            switchover: SwitchoverOutcome::Done {
                new_leader: "m2".into(),
            },
            scheduled_restart: Mutex::new(None),
        }
    }

    /// Every mutating call fails with `err`.
    fn refusing(err: OpError) -> Self {
        FakeOps {
            refuse: Some(err),
            ..FakeOps::new(cluster_state())
        }
    }

    fn record(&self, call: Call) {
        self.calls.lock().expect("calls lock").push(call);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }

    /// Calls other than reading the state.
    fn changes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| *call != Call::State)
            .collect()
    }

    fn outcome<T: Send + 'static>(&self, call: Call, ok: T) -> OpFuture<'_, T> {
        self.record(call);
        let result = match &self.refuse {
            Some(err) => Err(err.clone()),
            None => Ok(ok),
        };
        Box::pin(async move { result })
    }
}

impl ReadOps for FakeOps {
    fn state(&self) -> ClusterState {
        self.record(Call::State);
        self.state.lock().expect("state lock").clone()
    }

    fn member_reports(&self) -> BTreeMap<String, MemberReport> {
        self.reports.clone()
    }
}

impl WriteOps for FakeOps {
    fn set_config(
        &self,
        expected_version: u64,
        values: ConfigValues,
    ) -> OpFuture<'_, DynamicConfig> {
        self.record(Call::SetConfig(expected_version, values.clone()));
        let result = match &self.refuse {
            Some(err) => Err(err.clone()),
            None => {
                let mut state = self.state.lock().expect("state lock");
                let next = DynamicConfig {
                    version: expected_version + 1,
                    values,
                };
                state.config = Some(next.clone());
                Ok(next)
            }
        };
        Box::pin(async move { result })
    }

    fn switchover(&self, request: SwitchoverRequest) -> OpFuture<'_, SwitchoverOutcome> {
        self.outcome(Call::Switchover(request), self.switchover.clone())
    }

    fn cancel_switchover(&self) -> OpFuture<'_, ()> {
        self.record(Call::CancelSwitchover);
        let result = match self.state.lock().expect("state lock").switchover.take() {
            Some(_) => Ok(()),
            None => Err(OpError::NotFound("no switchover is scheduled".into())),
        };
        Box::pin(async move { result })
    }

    fn failover(&self, candidate: String) -> OpFuture<'_, String> {
        self.outcome(Call::Failover(candidate.clone()), candidate)
    }

    fn restart(&self, options: RestartOptions) -> OpFuture<'_, String> {
        self.outcome(Call::Restart(options), "restarted successfully".into())
    }

    fn schedule_restart(&self, at_unix_ms: u64, options: RestartOptions) -> OpFuture<'_, ()> {
        self.record(Call::ScheduleRestart(at_unix_ms, options));
        let mut scheduled = self.scheduled_restart.lock().expect("restart lock");
        let result = match *scheduled {
            Some(_) => Err(OpError::Conflict(
                "Cannot schedule restart: another restart is already scheduled".into(),
            )),
            None => {
                *scheduled = Some(at_unix_ms);
                Ok(())
            }
        };
        Box::pin(async move { result })
    }

    fn cancel_restart(&self) -> OpFuture<'_, ()> {
        self.record(Call::CancelRestart);
        let result = match self.scheduled_restart.lock().expect("restart lock").take() {
            Some(_) => Ok(()),
            None => Err(OpError::NotFound("no restarts are scheduled".into())),
        };
        Box::pin(async move { result })
    }

    fn reload(&self) -> OpFuture<'_, String> {
        self.outcome(Call::Reload, "reload scheduled".into())
    }

    fn reinitialize(&self, force: bool) -> OpFuture<'_, String> {
        self.outcome(Call::Reinitialize(force), "reinitialize started".into())
    }

    fn remove_member(&self, name: String) -> OpFuture<'_, String> {
        self.outcome(Call::RemoveMember(name.clone()), format!("removed {name}"))
    }

    fn config_defaults(&self) -> ConfigValues {
        ConfigValues {
            timing: raftgres_state::LeaseTiming::from_millis(3000, 250, 400),
            postgresql_parameters: BTreeMap::new(),
            ..config_values()
        }
    }
}

fn config_values() -> ConfigValues {
    ConfigValues {
        postgresql_parameters: [
            ("work_mem".to_owned(), "4MB".to_owned()),
            ("max_connections".to_owned(), "100".to_owned()),
        ]
        .into(),
        ..ConfigValues::new(
            raftgres_state::LeaseTiming::from_millis(3000, 500, 500),
            1000,
            1_048_576,
        )
    }
}

fn member(name: &str, port: u16) -> Member {
    Member {
        api_url: Some(format!("http://127.0.0.1:{}", port + 3000)),
        pg_address: Some(format!("127.0.0.1:{port}")),
        role: MemberRole::Replica,
        pg_state: PgState::Running,
        timeline: Some(2),
        receive_lsn: Some(Lsn(0x3000_0000)),
        replay_lsn: Some(Lsn(0x3000_0000)),
        streaming: true,
        tags: Tags {
            nofailover: false,
            failover_priority: 1,
            nosync: false,
            ..Tags::default()
        },
        heartbeat: 9,
        ..Member::new(name, u64::from(port), format!("127.0.0.1:{}", port + 1000))
    }
}

/// m1 leads at epoch 3; m2 streams 4 KiB behind; m3 is in the sync set
/// with an unknown position; w votes only.
fn cluster_state() -> ClusterState {
    let m1 = Member {
        role: MemberRole::Primary,
        streaming: false,
        replay_lsn: None,
        ..member("m1", 5432)
    };
    let m2 = Member {
        replay_lsn: Some(Lsn(0x3000_0000 - 4096)),
        ..member("m2", 5433)
    };
    let m3 = Member {
        pg_address: Some("[::1]:5434".into()),
        replay_lsn: None,
        streaming: false,
        pg_state: PgState::Starting,
        tags: Tags {
            nofailover: true,
            failover_priority: 0,
            nosync: false,
            ..Tags::default()
        },
        ..member("m3", 5434)
    };
    let w = Member {
        role: MemberRole::Witness,
        witness: true,
        pg_address: None,
        pg_state: PgState::Absent,
        timeline: None,
        receive_lsn: None,
        replay_lsn: None,
        streaming: false,
        ..member("w", 5435)
    };
    #[rustfmt::skip]
    let history = [
        // epoch, from, to, timeline, LSN, reason, at
        (1, None, "m1", 1, None, "bootstrap", 1_795_341_600_000),
        (2, Some("m1"), "m2", 1, Some(50_331_808), "switchover", 1_795_341_601_500),
        (3, Some("m2"), "m1", 2, Some(67_108_864), "failover", 1_795_341_700_000),
    ];
    let history = history
        .into_iter()
        .map(
            |(epoch, previous, new, timeline, lsn, reason, at)| HistoryEntry {
                epoch: Epoch(epoch),
                previous_holder: previous.map(Into::into),
                new_holder: new.into(),
                timeline: Some(timeline),
                lsn: lsn.map(Lsn),
                reason: reason.into(),
                at_unix_ms: at,
            },
        )
        .collect();
    ClusterState {
        identity: None,
        config: Some(DynamicConfig {
            version: 7,
            values: config_values(),
        }),
        lease: Lease {
            holder: Some("m1".into()),
            epoch: Epoch(3),
            revision: 40,
            ttl_ms: 3000,
            last_lsn: Some(Lsn(0x3000_0000)),
            timeline: Some(2),
            timeline_owner: Some("m1".into()),
        },
        members: [m1, m2, m3, w]
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect(),
        sync_set: ["m3".to_owned()].into(),
        synchronous: true,
        sync_quorum: None,
        positions: Default::default(),
        switchover: None,
        history,
    }
}

/// m1 holding the lease, running, not paused, with no tags.
fn primary_health() -> NodeHealth {
    NodeHealth {
        member: "m1".into(),
        scope: "lab".into(),
        role: Role::Primary,
        holds_valid_lease: true,
        postgres_running: true,
        timeline: Some(2),
        xlog_location: Some(0x3000_0000),
        server: crate::ServerFacts {
            server_version: Some(150_004),
            ..Default::default()
        },
        ..NodeHealth::default()
    }
}

fn admin() -> Credentials {
    Credentials {
        username: "admin".into(),
        password: "s3cret".into(),
    }
}

struct Api {
    router: Router,
    ops: Arc<FakeOps>,
}

fn api_with(ops: FakeOps, health: NodeHealth, auth: Option<Credentials>) -> Api {
    api_from(ops, Arc::new(move || health.clone()), auth)
}

/// A source with live figures beside its health, as the agent's is.
struct WithLive {
    health: NodeHealth,
    live: LiveFacts,
}

impl HealthSource for WithLive {
    fn snapshot(&self) -> (Arc<crate::HealthSnapshot>, Duration) {
        let snapshot = crate::HealthSnapshot::fixed(self.health.clone());
        (Arc::new(snapshot), Duration::ZERO)
    }

    fn live(&self) -> LiveFacts {
        self.live.clone()
    }
}

/// The router over `state` on the primary m1, whose live figures are `live`.
fn api_live(state: ClusterState, live: LiveFacts) -> Api {
    let source = WithLive {
        health: primary_health(),
        live,
    };
    api_from(FakeOps::new(state), Arc::new(source), Some(admin()))
}

fn api_from(ops: FakeOps, health: Arc<dyn HealthSource>, auth: Option<Credentials>) -> Api {
    let ops = Arc::new(ops);
    let router = router(ApiContext {
        health,
        ops: Arc::clone(&ops) as Arc<dyn WriteOps>,
        auth: tokio::sync::watch::channel(auth).1,
        logins: Default::default(),
        allowlist: Default::default(),
        authenticate_reads: false,
    });
    Api { router, ops }
}

/// The router over `ops`, on a primary, with the admin's credentials configured.
fn api_over(ops: FakeOps) -> Api {
    api_with(ops, primary_health(), Some(admin()))
}

/// The router over `state`, on a primary, with the admin's credentials configured.
fn api_of(state: ClusterState) -> Api {
    api_over(FakeOps::new(state))
}

fn api() -> Api {
    api_of(cluster_state())
}

/// `cluster_state()` with a switchover scheduled.
fn state_with_switchover(switchover: Switchover) -> ClusterState {
    ClusterState {
        switchover: Some(switchover),
        ..cluster_state()
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn error(&self) -> String {
        match self.json() {
            Value::Object(map) => match map.get("error") {
                Some(Value::String(message)) => message.clone(),
                _ => panic!("no error message in {map:?}"),
            },
            other => panic!("not an error document: {other}"),
        }
    }

    fn etag(&self) -> Option<&[u8]> {
        self.headers.get(ETAG).map(|v| v.as_bytes())
    }

    /// The answer is `status` with an error message containing `needle`.
    #[track_caller]
    fn assert_error(&self, status: StatusCode, needle: &str) {
        self.assert_error_for("", status, needle);
    }

    /// [`Answer::assert_error`] for the request described by `what`.
    #[track_caller]
    fn assert_error_for(&self, what: &str, status: StatusCode, needle: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.text());
        assert!(self.error().contains(needle), "{what}: {}", self.error());
    }

    /// The answer is `status` with exactly the document `want`.
    #[track_caller]
    fn assert_json(&self, status: StatusCode, want: Value) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.json(), want);
    }
}

/// Every line of `samples` is a whole line of `text`.
#[track_caller]
fn assert_lines(text: &str, samples: &[&str]) {
    for sample in samples {
        assert!(
            text.lines().any(|l| l == *sample),
            "no `{sample}` in:\n{text}"
        );
    }
}

const ADMIN: Option<&str> = Some("admin:s3cret");

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        user_password: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut request = HttpRequest::builder().method(method).uri(path);
        if let Some(user_password) = user_password {
            let (username, password) = user_password.split_once(':').expect("user:password");
            request = request.header(
                AUTHORIZATION,
                Authorization::basic(username, password).0.encode(),
            );
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Body::from(body.to_owned()))
            .expect("a valid request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.expect("a readable body");
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.to_vec(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, &[], "").await
    }

    async fn admin(&self, method: Method, path: &str, body: &str) -> Answer {
        self.call(method, path, ADMIN, &[], body).await
    }

    async fn post(&self, path: &str, body: &str) -> Answer {
        self.admin(Method::POST, path, body).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.admin(Method::DELETE, path, "").await
    }

    async fn patch_config(&self, body: &str) -> Answer {
        self.admin(Method::PATCH, "/config", body).await
    }

    async fn put_config(&self, body: &str) -> Answer {
        self.admin(Method::PUT, "/config", body).await
    }

    /// `method` /config with `If-Match: "<version>"`.
    async fn config_if(&self, method: Method, version: u64, body: &str) -> Answer {
        let etag = format!("\"{version}\"");
        let headers = [(IF_MATCH.as_str(), etag.as_str())];
        self.call(method, "/config", ADMIN, &headers, body).await
    }

    /// The body of GET /metrics.
    async fn metrics(&self) -> String {
        self.get("/metrics").await.text()
    }
}

/// The router over a config that changes under each write: every write
/// conflicts.
fn api_behind_a_newer_config() -> Api {
    api_over(FakeOps::refusing(OpError::Conflict(
        "config version changed: re-read and retry".into(),
    )))
}

/// A switchover from m1 to m2, the body most tests send.
const M1_TO_M2: &str = r#"{"leader": "m1", "candidate": "m2"}"#;

/// A time far ahead, for scheduled restarts, and in Unix milliseconds.
const LATER: &str = "2099-01-01T00:00:00Z";
const LATER_UNIX_MS: u64 = 4_070_908_800_000;

/// Every mutating call, each with a body it would accept, and its status
/// then (in this order: the restart scheduled is the one deleted).
const MUTATING: [(&str, &str, &str, StatusCode); 12] = [
    ("PATCH", "/config", r#"{"pause": true}"#, StatusCode::OK),
    ("PUT", "/config", r#"{"pause": true}"#, StatusCode::OK),
    ("POST", "/switchover", r#"{"leader": "m1"}"#, StatusCode::OK),
    ("DELETE", "/switchover", "", StatusCode::OK),
    (
        "POST",
        "/failover",
        r#"{"candidate": "m2"}"#,
        StatusCode::OK,
    ),
    ("POST", "/restart", "", StatusCode::OK),
    (
        "POST",
        "/restart",
        r#"{"schedule": "2099-01-01T00:00:00Z"}"#,
        StatusCode::ACCEPTED,
    ),
    ("DELETE", "/restart", "", StatusCode::OK),
    ("POST", "/reload", "{}", StatusCode::ACCEPTED),
    (
        "POST",
        "/reinitialize",
        r#"{"force": true}"#,
        StatusCode::OK,
    ),
    ("DELETE", "/members/m2", "", StatusCode::OK),
    ("POST", "/switchover", M1_TO_M2, StatusCode::OK),
];

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("a method name")
}

#[tokio::test]
async fn health_endpoints_never_touch_operations() {
    let api = api();
    for path in ["/primary", "/replica", "/patroni", "/health", "/readiness"] {
        let answer = api.get(path).await;
        assert!(
            answer.status == StatusCode::OK || answer.status == StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            answer.status
        );
    }
    assert_eq!(api.get("/primary").await.status, StatusCode::OK);
    assert_eq!(api.ops.calls(), []);
}

#[tokio::test]
async fn mutating_calls_without_credentials_get_401_and_reach_nothing() {
    let api = api();
    for (name, path, body, _) in MUTATING {
        for credentials in [None, Some("admin:wrong"), Some("admin:s3cret ")] {
            let answer = api.call(method(name), path, credentials, &[], body).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name} {path}");
            assert_eq!(
                answer.headers.get(WWW_AUTHENTICATE).map(|v| v.as_bytes()),
                Some(&b"Basic realm=\"raftgres\""[..]),
                "{name} {path}"
            );
            assert!(!answer.error().is_empty());
        }
    }
    assert_eq!(api.ops.calls(), []);
}

#[tokio::test]
async fn mutating_calls_are_forbidden_without_configured_credentials() {
    let api = api_with(FakeOps::new(cluster_state()), primary_health(), None);
    for (name, path, body, _) in MUTATING {
        let answer = api.call(method(name), path, ADMIN, &[], body).await;
        answer.assert_error_for(
            &format!("{name} {path}"),
            StatusCode::FORBIDDEN,
            "restapi.authentication",
        );
    }
    assert_eq!(api.ops.calls(), []);
}

#[tokio::test]
async fn every_mutating_call_passes_with_credentials() {
    let api = api_of(state_with_switchover(Switchover {
        from: Some("m1".into()),
        to: None,
        at_unix_ms: None,
    }));
    for (name, path, body, status) in MUTATING {
        let answer = api.admin(method(name), path, body).await;
        assert_eq!(answer.status, status, "{name} {path}: {}", answer.text());
    }
    let mut pause = config_values();
    pause.pause = true;
    let mut defaults_paused = api.ops.config_defaults();
    defaults_paused.pause = true;
    assert_eq!(
        api.ops.changes(),
        [
            Call::SetConfig(7, pause),
            Call::SetConfig(8, defaults_paused),
            Call::Switchover(SwitchoverRequest {
                leader: Some("m1".into()),
                ..SwitchoverRequest::default()
            }),
            Call::CancelSwitchover,
            Call::Failover("m2".into()),
            Call::Restart(RestartOptions::default()),
            Call::ScheduleRestart(LATER_UNIX_MS, RestartOptions::default()),
            Call::CancelRestart,
            Call::Reload,
            Call::Reinitialize(true),
            Call::RemoveMember("m2".into()),
            Call::Switchover(SwitchoverRequest {
                leader: Some("m1".into()),
                candidate: Some("m2".into()),
                scheduled_at_unix_ms: None,
            }),
        ]
    );
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let api = api();
    for (name, path) in [
        ("POST", "/switchover"),
        ("POST", "/failover"),
        ("POST", "/restart"),
        ("PATCH", "/config"),
    ] {
        let answer = api.admin(method(name), path, r#"{"leader": "#).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            answer.error().starts_with("invalid JSON body: "),
            "{}",
            answer.error()
        );
    }
    assert_eq!(api.ops.changes(), []);
}

#[tokio::test]
async fn unknown_fields_and_wrong_types_are_400_naming_the_field() {
    let api = api();
    #[rustfmt::skip]
    let rows = [
        ("/switchover", r#"{"leader": "m1", "master": "m1"}"#, "master"),
        ("/switchover", r#"{"candidate": "m2"}"#, "leader"),
        ("/switchover", r#"{"leader": 1}"#, "invalid type"),
        ("/failover", r#"{"candidate": "m2", "force": true}"#, "force"),
        ("/restart", r#"{"schedule": "now"}"#, "schedule `now`"),
        ("/restart", r#"{"colour": "red"}"#, "colour"),
        ("/restart", r#"{"role": "leader"}"#, "role \"leader\""),
        ("/restart", r#"{"postgres_version": "15"}"#, "postgres_version \"15\""),
        ("/restart", r#"{"timeout": 0}"#, "timeout 0 must be"),
        ("/restart", r#"{"restart_pending": "yes"}"#, "invalid type"),
        ("/reinitialize", r#"{"force": "yes"}"#, "invalid type"),
    ];
    for (path, body, field) in rows {
        let answer = api.post(path, body).await;
        answer.assert_error_for(&format!("{path} {body}"), StatusCode::BAD_REQUEST, field);
    }
    assert_eq!(api.ops.changes(), []);
}

#[tokio::test]
async fn required_bodies_say_what_to_send() {
    let api = api();
    let answer = api.post("/switchover", "").await;
    answer.assert_error(StatusCode::BAD_REQUEST, "\"leader\"");
    assert_eq!(api.ops.changes(), []);
}

#[tokio::test]
async fn bodies_over_64_kib_are_refused() {
    let api = api();
    let body = format!(r#"{{"leader": "{}"}}"#, "m".repeat(70 * 1024));
    let answer = api.post("/switchover", &body).await;
    answer.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "64 KiB");
    assert_eq!(api.ops.changes(), []);
}

#[tokio::test]
async fn get_config_carries_the_version_as_etag() {
    let answer = api().get("/config").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.etag(), Some(&b"\"7\""[..]));
    assert_eq!(answer.json()["ttl_ms"], json!(3000));
    assert_eq!(
        answer.json()["postgresql"],
        json!({"parameters": {"work_mem": "4MB", "max_connections": "100"}})
    );
}

#[tokio::test]
async fn patch_config_merges_and_deletes_a_parameter() {
    let api = api();
    let answer = api
        .patch_config(
            r#"{"ttl_ms": 4000, "postgresql": {"parameters": {"work_mem": null, "jit": "off"}}}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.etag(), Some(&b"\"8\""[..]));
    assert_eq!(answer.json()["ttl_ms"], json!(4000));
    assert_eq!(
        answer.json()["postgresql"],
        json!({"parameters": {"jit": "off", "max_connections": "100"}})
    );
    let mut want = config_values();
    want.timing.ttl = std::time::Duration::from_millis(4000);
    want.postgresql_parameters.remove("work_mem");
    want.postgresql_parameters
        .insert("jit".into(), "off".into());
    assert_eq!(api.ops.changes(), [Call::SetConfig(7, want)]);
}

/// PATCH and PUT alike: a stale `If-Match` is 412 and changes nothing,
/// the current version's applies.
#[tokio::test]
async fn config_writes_honour_if_match() {
    for method in [Method::PATCH, Method::PUT] {
        let api = api();
        let stale = api.config_if(method.clone(), 6, r#"{"pause": true}"#).await;
        stale.assert_error(StatusCode::PRECONDITION_FAILED, "version 7");
        assert_eq!(api.ops.changes(), [], "{method}");

        let current = api.config_if(method.clone(), 7, r#"{"pause": true}"#).await;
        assert_eq!(
            current.status,
            StatusCode::OK,
            "{method}: {}",
            current.text()
        );
        assert_eq!(current.json()["pause"], json!(true), "{method}");
    }
}

#[tokio::test]
async fn patch_config_conflict_is_a_409() {
    let api = api_behind_a_newer_config();
    let answer = api.patch_config(r#"{"pause": true}"#).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.error(), "config version changed: re-read and retry");
}

/// PATCH and PUT refuse the same mistakes (PUT, a whole document, also an
/// unknown key or no body), naming what to fix, and change nothing.
#[tokio::test]
async fn config_writes_refuse_bad_keys_and_values() {
    let api = api();
    let (patch, put) = (Method::PATCH, Method::PUT);
    #[rustfmt::skip]
    let rows = [
        (&patch, r#"{"ttl": 30}"#, "use ttl_ms"),
        (&patch, r#"{"ttl_ms": null}"#, "ttl_ms"),
        (&patch, r#"{"ttl_ms": "3s"}"#, "ttl_ms"),
        (&patch, r#"{"lease_margin_ms": 3000}"#, "lease_margin_ms must be less than ttl_ms (3000), got 3000"),
        (&patch, r#"{"lease_margin_ms": 0}"#, "lease_margin_ms must be at least 106 with ttl_ms 3000"),
        (&patch, r#"[]"#, "JSON object"),
        (&patch, r#"{"synchronous_mode": "sometimes"}"#, "synchronous_mode` must be true, false or \"quorum\""),
        (&patch, r#"{"synchronous_node_count": 0}"#, "synchronous_node_count must be at least 1"),
        (&patch, r#"{"postgresql": {"parameters": {"primary_conninfo": "host=x"}}}"#, "postgresql.parameters.primary_conninfo is set by the agent"),
        (&patch, r#"{"postgresql": {"parameters": {"synchronous_standby_names": "*"}}}"#, "postgresql.parameters.synchronous_standby_names is set by the agent"),
        (&patch, r#"{"ttl_ms": 3000000}"#, "ttl_ms must be at most 600000 (10 minutes), got 3000000"),
        (&patch, r#"{"retry_timeout_ms": 60000}"#, "retry_timeout_ms (60000) must be at most ttl_ms"),
        (&put, r#"{"ttl": 30}"#, "use ttl_ms"),
        (&put, r#"{"colour": null}"#, "unknown config key `colour`"),
        (&put, r#"{"ttl_ms": "3s"}"#, "ttl_ms"),
        (&put, r#"[]"#, "the config document (PUT) must be a JSON object"),
        (&put, "", "a JSON body is required"),
        (&put, r#"{"lease_margin_ms": 3000}"#, "lease_margin_ms must be less than ttl_ms (3000), got 3000"),
        (&put, r#"{"postgresql": {"parameters": {"port": "5433"}}}"#, "postgresql.parameters.port is set by the agent"),
    ];
    for (method, body, needle) in rows {
        let answer = api.admin(method.clone(), "/config", body).await;
        answer.assert_error_for(&format!("{method} {body}"), StatusCode::BAD_REQUEST, needle);
    }
    assert_eq!(api.ops.changes(), []);
}

#[tokio::test]
async fn put_config_replaces_the_whole_config_and_defaults_the_rest() {
    let api = api();
    let document = r#"{"ttl_ms": 4000, "postgresql": {"parameters": {"jit": "off"}}}"#;
    let answer = api.put_config(document).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.etag(), Some(&b"\"8\""[..]));
    let mut want = api.ops.config_defaults();
    want.timing.ttl = std::time::Duration::from_millis(4000);
    want.postgresql_parameters = [("jit".to_owned(), "off".to_owned())].into();
    // The old parameters are gone, and loop_wait_ms is back at its default.
    assert_eq!(
        answer.json()["postgresql"],
        json!({"parameters": {"jit": "off"}})
    );
    assert_eq!(answer.json()["loop_wait_ms"], json!(250));
    assert_eq!(api.ops.changes(), [Call::SetConfig(7, want.clone())]);

    // The same document again changes nothing: no write, no new version.
    let again = api.put_config(document).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.etag(), Some(&b"\"8\""[..]));
    assert_eq!(api.ops.changes(), [Call::SetConfig(7, want)]);
}

#[tokio::test]
async fn put_config_conflict_is_a_409() {
    let answer = api_behind_a_newer_config()
        .put_config(r#"{"pause": true}"#)
        .await;
    answer.assert_error(StatusCode::CONFLICT, "config version changed");
}

#[tokio::test]
async fn options_on_config_names_put() {
    let answer = api().call(Method::OPTIONS, "/config", None, &[], "").await;
    assert_eq!(
        answer.headers.get("allow").map(|v| v.as_bytes()),
        Some(&b"GET, HEAD, OPTIONS, PATCH, PUT"[..])
    );
}

#[tokio::test]
async fn a_restart_is_scheduled_once_and_deleted_as_patroni_does() {
    let api = api();
    let body = format!(
        r#"{{"schedule": "{LATER}", "role": "replica", "postgres_version": "16.1",
            "timeout": "2min", "restart_pending": true}}"#
    );
    let scheduled = api.post("/restart", &body).await;
    scheduled.assert_json(
        StatusCode::ACCEPTED,
        json!({"message": "Restart scheduled", "schedule": LATER}),
    );
    let options = RestartOptions {
        role: Some(RestartRole::Replica),
        postgres_version: Some(PostgresVersion::parse("16.1").expect("a version")),
        restart_pending: true,
        timeout_ms: Some(120_000),
    };

    // A second one while the first is pending: Patroni's 409.
    let again = api
        .post("/restart", r#"{"schedule": "2099-06-01T00:00:00+02:00"}"#)
        .await;
    again.assert_error(
        StatusCode::CONFLICT,
        "Cannot schedule restart: another restart is already scheduled",
    );

    let deleted = api.delete("/restart").await;
    deleted.assert_json(
        StatusCode::OK,
        json!({"message": "scheduled restart deleted"}),
    );
    let none = api.delete("/restart").await;
    none.assert_error(StatusCode::NOT_FOUND, "no restarts are scheduled");
    assert_eq!(
        api.ops.changes(),
        [
            Call::ScheduleRestart(LATER_UNIX_MS, options),
            Call::ScheduleRestart(4_083_948_000_000, RestartOptions::default()),
            Call::CancelRestart,
            Call::CancelRestart,
        ]
    );
}

#[tokio::test]
async fn a_restart_scheduled_in_the_past_is_422_and_without_an_offset_400() {
    let api = api();
    let past = api
        .post("/restart", r#"{"schedule": "2020-01-01T00:00:00Z"}"#)
        .await;
    past.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "cannot schedule a restart in the past: schedule `2020-01-01T00:00:00Z`",
    );
    let local = api
        .post("/restart", r#"{"schedule": "2099-01-01T00:00:00"}"#)
        .await;
    local.assert_error(
        StatusCode::BAD_REQUEST,
        "not an RFC 3339 time with an offset",
    );
    assert_eq!(api.ops.changes(), []);
}

#[tokio::test]
async fn a_restart_whose_conditions_fail_is_503() {
    let api = api_over(FakeOps::refusing(OpError::Unavailable(
        "restart conditions are not satisfied: no setting waits for a restart here".into(),
    )));
    let answer = api.post("/restart", r#"{"restart_pending": true}"#).await;
    answer.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "restart conditions are not satisfied",
    );
}

#[tokio::test]
async fn reload_is_accepted_and_goes_on() {
    let answer = api().post("/reload", "").await;
    answer.assert_json(StatusCode::ACCEPTED, json!({"message": "reload scheduled"}));
}

/// `cluster_state()` with m2's restart scheduled, and the restart itself.
fn state_with_scheduled_restart() -> (ClusterState, ScheduledRestart) {
    let restart = ScheduledRestart {
        at_unix_ms: LATER_UNIX_MS,
        options: RestartOptions {
            postgres_version: Some(PostgresVersion::parse("16.1").expect("a version")),
            timeout_ms: Some(90_000),
            ..RestartOptions::default()
        },
        postmaster_start_unix_ms: Some(1_700_000_000_000),
    };
    let mut state = cluster_state();
    state.members.get_mut("m2").expect("m2").scheduled_restart = Some(Box::new(restart.clone()));
    (state, restart)
}

#[tokio::test]
async fn a_scheduled_restart_shows_in_cluster_and_patroni() {
    let (state, restart) = state_with_scheduled_restart();
    let shown = json!({"schedule": LATER, "postgres_version": "16.1", "timeout": 90});
    let doc = api_of(state).get("/cluster").await.json();
    let members = members_by_name(&doc);
    assert_eq!(members["m2"]["scheduled_restart"], shown);
    assert_eq!(members["m1"].get("scheduled_restart"), None);

    let health = NodeHealth {
        scheduled_restart: Some(restart),
        ..primary_health()
    };
    let api = api_with(FakeOps::new(cluster_state()), health, Some(admin()));
    let status = api.get("/patroni").await.json();
    assert_eq!(status["scheduled_restart"], shown);
    let plain = api_of(cluster_state()).get("/patroni").await.json();
    assert_eq!(plain.get("scheduled_restart"), None);
}

#[tokio::test]
async fn switchover_done_is_200_with_the_new_leader() {
    api().post("/switchover", M1_TO_M2).await.assert_json(
        StatusCode::OK,
        json!({"message": "Successfully switched over to \"m2\"", "leader": "m2"}),
    );
}

#[tokio::test]
async fn switchover_scheduled_is_202_with_the_time() {
    let api = api_over(FakeOps {
        switchover: SwitchoverOutcome::Scheduled {
            at_unix_ms: 4_099_024_800_000,
        },
        ..FakeOps::new(cluster_state())
    });
    let body = r#"{"leader": "m1", "scheduled_at": "2099-11-22T11:00:00+01:00"}"#;
    api.post("/switchover", body).await.assert_json(
        StatusCode::ACCEPTED,
        json!({"message": "Switchover scheduled", "scheduled_at": "2099-11-22T10:00:00Z"}),
    );
    assert_eq!(
        api.ops.changes(),
        [Call::Switchover(SwitchoverRequest {
            leader: Some("m1".into()),
            candidate: None,
            scheduled_at_unix_ms: Some(4_099_024_800_000),
        })]
    );
}

#[tokio::test]
async fn switchover_bad_time_is_400() {
    let api = api();
    let body = r#"{"leader": "m1", "scheduled_at": "at noon"}"#;
    let answer = api.post("/switchover", body).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "at noon");
    assert_eq!(api.ops.changes(), []);
}

/// Patroni's "Cannot schedule switchover in the past", with both times.
#[tokio::test]
async fn switchover_scheduled_in_the_past_is_422() {
    let api = api();
    let body = r#"{"leader": "m1", "candidate": "m2", "scheduled_at": "2020-01-01T00:00:00Z"}"#;
    let answer = api.post("/switchover", body).await;
    answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "in the past");
    let error = answer.error();
    assert!(
        error.contains("`2020-01-01T00:00:00Z` is before now ("),
        "{error}"
    );
    let now = error
        .split_once("before now (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(now, _)| now)
        .expect("now in the message");
    let now: jiff::Timestamp = now.parse().expect("now as an RFC 3339 time");
    let age = jiff::Timestamp::now().duration_since(now);
    assert!(age.abs().as_secs() < 60, "now in the message is {now}");
    assert_eq!(api.ops.changes(), []);
}

/// Patroni takes `member` for `candidate` in both calls.
#[tokio::test]
async fn member_is_another_name_for_candidate() {
    let api = api();
    for (path, body) in [
        ("/switchover", r#"{"leader": "m1", "member": "m2"}"#),
        ("/failover", r#"{"member": "m2"}"#),
        ("/failover", r#"{"candidate": "m2", "member": "m2"}"#),
    ] {
        let answer = api.post(path, body).await;
        assert_eq!(answer.status, StatusCode::OK, "{body}: {}", answer.text());
    }
    assert_eq!(
        api.ops.changes(),
        [
            Call::Switchover(SwitchoverRequest {
                leader: Some("m1".into()),
                candidate: Some("m2".into()),
                scheduled_at_unix_ms: None,
            }),
            Call::Failover("m2".into()),
            Call::Failover("m2".into()),
        ]
    );
}

#[tokio::test]
async fn candidate_and_member_naming_different_members_is_400() {
    let api = api();
    for (path, body) in [
        (
            "/switchover",
            r#"{"leader": "m1", "candidate": "m2", "member": "m3"}"#,
        ),
        ("/failover", r#"{"candidate": "m2", "member": "m3"}"#),
    ] {
        let answer = api.post(path, body).await;
        answer.assert_error_for(
            body,
            StatusCode::BAD_REQUEST,
            "`candidate` (m2) and `member` (m3)",
        );
    }
    for body in [r#"{}"#, r#"{"member": ""}"#, r#"{"leader": "m1"}"#] {
        let answer = api.post("/failover", body).await;
        answer.assert_error_for(body, StatusCode::BAD_REQUEST, "`candidate` (or `member`)");
    }
    assert_eq!(api.ops.changes(), []);
}

#[tokio::test]
async fn operation_errors_map_to_their_status() {
    #[rustfmt::skip]
    let rows = [
        (OpError::Invalid("bad".into()), StatusCode::BAD_REQUEST),
        (OpError::NotFound("who".into()), StatusCode::NOT_FOUND),
        (OpError::Conflict("raced".into()), StatusCode::CONFLICT),
        (OpError::Precondition("m2 lags".into()), StatusCode::PRECONDITION_FAILED),
        (OpError::Unavailable("no quorum".into()), StatusCode::SERVICE_UNAVAILABLE),
    ];
    for (err, status) in rows {
        let api = api_over(FakeOps::refusing(err.clone()));
        let answer = api.post("/switchover", M1_TO_M2).await;
        assert_eq!(answer.status, status, "{err:?}");
        assert_eq!(answer.json(), json!({"error": err.to_string()}));
    }
}

#[tokio::test]
async fn cancelling_no_switchover_is_404() {
    let answer = api().delete("/switchover").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error(), "no switchover is scheduled");
}

#[tokio::test]
async fn failover_naming_the_wrong_leader_is_412() {
    let api = api();
    let answer = api
        .post("/failover", r#"{"candidate": "m2", "leader": "m3"}"#)
        .await;
    answer.assert_error(StatusCode::PRECONDITION_FAILED, "m3");
    assert_eq!(api.ops.changes(), []);

    let answer = api
        .post("/failover", r#"{"candidate": "m2", "leader": "m1"}"#)
        .await;
    answer.assert_json(
        StatusCode::OK,
        json!({"message": "Successfully failed over to \"m2\"", "leader": "m2"}),
    );
}

#[tokio::test]
async fn local_operations_answer_their_message() {
    let api = api();
    let message = |text: &str| json!({ "message": text });
    let answer = api.post("/restart", "").await;
    assert_eq!(answer.json(), message("restarted successfully"));
    let answer = api.post("/restart", r#"{"restart_pending": true}"#).await;
    assert_eq!(answer.json(), message("restarted successfully"));
    let answer = api.post("/reinitialize", "{}").await;
    assert_eq!(answer.json(), message("reinitialize started"));
    let answer = api.delete("/members/m%203").await;
    assert_eq!(answer.json(), message("removed m 3"));
    assert_eq!(
        api.ops.changes(),
        [
            Call::Restart(RestartOptions::default()),
            Call::Restart(RestartOptions {
                restart_pending: true,
                ..RestartOptions::default()
            }),
            Call::Reinitialize(false),
            Call::RemoveMember("m 3".into())
        ]
    );
}

/// Found by the `api_bodies` fuzz target: a member name that does not
/// percent-decode to UTF-8 was refused by axum in plain text.
#[tokio::test]
async fn a_member_name_that_is_not_utf8_is_refused_with_an_error_document() {
    let api = api();
    let answer = api.delete("/members/%31%E4").await;
    answer.assert_error(StatusCode::BAD_REQUEST, "member name");
    assert!(api.ops.changes().is_empty(), "nothing reached the agent");
}

#[tokio::test]
async fn cluster_document_has_patronis_shape() {
    let api = api_of(state_with_switchover(Switchover {
        from: None,
        to: Some("m2".into()),
        at_unix_ms: Some(1_795_341_600_000),
    }));
    let tags = json!({"nofailover": false, "failover_priority": 1});
    api.get("/cluster").await.assert_json(
        StatusCode::OK,
        json!({
            "scope": "lab",
            "members": [
                {"name": "m1", "role": "leader", "state": "running",
                 "api_url": "http://127.0.0.1:8432/patroni", "host": "127.0.0.1", "port": 5432,
                 "timeline": 2, "tags": tags,
                 "report_age_ms": 400, "report_age_is_lower_bound": false, "stale": false},
                {"name": "m2", "role": "replica", "state": "streaming",
                 "api_url": "http://127.0.0.1:8433/patroni", "host": "127.0.0.1", "port": 5433,
                 "timeline": 2, "lag": 4096, "tags": tags,
                 "lsn": "0/2FFFF000", "replay_lsn": "0/2FFFF000", "replay_lag": 4096,
                 "receive_lsn": "0/30000000", "receive_lag": 0,
                 "report_age_ms": 400, "report_age_is_lower_bound": false, "stale": false},
                {"name": "m3", "role": "sync_standby", "state": "starting",
                 "api_url": "http://127.0.0.1:8434/patroni", "host": "::1", "port": 5434,
                 "timeline": 2, "lag": "unknown",
                 "lsn": "unknown", "replay_lsn": "unknown", "replay_lag": "unknown",
                 "receive_lsn": "0/30000000", "receive_lag": 0,
                 "tags": {"nofailover": true, "failover_priority": 0},
                 "report_age_ms": 400, "report_age_is_lower_bound": false, "stale": false},
                {"name": "w", "role": "witness", "state": "running",
                 "api_url": "http://127.0.0.1:8435/patroni", "tags": tags,
                 "report_age_ms": 400, "report_age_is_lower_bound": false, "stale": false},
            ],
            "pause": false,
            "scheduled_switchover": {"at": "2026-11-22T10:00:00Z", "to": "m2"},
            "lease": {"holder": "m1", "epoch": 3, "timeline": 2},
        }),
    );
}

/// The members of `/cluster` by name.
fn members_by_name(doc: &Value) -> BTreeMap<String, Value> {
    doc["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["name"].as_str().expect("name").to_owned(), m.clone()))
        .collect()
}

#[tokio::test]
async fn a_silent_member_shows_unknown_with_its_age_and_no_lag() {
    let mut ops = FakeOps::new(cluster_state());
    ops.reports = BTreeMap::from([
        ("m1".to_owned(), report(9_500, false, true)),
        ("m2".to_owned(), report(12_345, false, true)),
        ("w".to_owned(), report(3_100, true, true)),
    ]);
    let api = api_over(ops);
    let members = members_by_name(&api.get("/cluster").await.json());

    let m1 = &members["m1"];
    assert_eq!(
        (&m1["role"], &m1["state"], m1.get("lag")),
        (&json!("leader"), &json!("unknown"), None),
        "a silent leader keeps its role and still has no lag: {m1}"
    );
    let m2 = &members["m2"];
    assert_eq!(
        (&m2["role"], &m2["state"], m2.get("lag")),
        (&json!("replica"), &json!("unknown"), Some(&Value::Null)),
        "a silent replica's last lag is not news: {m2}"
    );
    assert_eq!(
        (&m2["report_age_ms"], &m2["stale"], &m2["timeline"]),
        (&json!(12_345), &json!(true), &json!(2)),
        "{m2}"
    );
    let w = &members["w"];
    assert_eq!(
        (&w["role"], &w["state"], &w["report_age_is_lower_bound"]),
        (&json!("witness"), &json!("unknown"), &json!(true)),
        "{w}"
    );
    let m3 = &members["m3"];
    assert_eq!(
        (
            &m3["state"],
            &m3["lag"],
            &m3["stale"],
            m3.get("report_age_ms")
        ),
        (&json!("starting"), &json!("unknown"), &json!(false), None),
        "a member not observed yet is shown as its record says: {m3}"
    );
}

#[tokio::test]
async fn history_has_patronis_arrays() {
    api().get("/history").await.assert_json(
        StatusCode::OK,
        json!([
            [1, null, "bootstrap", "2026-11-22T10:00:00Z", "m1"],
            [1, 50_331_808, "switchover", "2026-11-22T10:00:01.5Z", "m2"],
            [2, 67_108_864, "failover", "2026-11-22T10:01:40Z", "m1"],
        ]),
    );
}

#[tokio::test]
async fn metrics_report_the_snapshot() {
    let mut state = cluster_state();
    if let Some(config) = &mut state.config {
        config.values.pause = true;
    }
    let answer = api_of(state).get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/openmetrics-text")),
        "{:?}",
        answer.headers
    );
    let text = answer.text();
    assert_lines(
        &text,
        &[
            "raftgres_primary 1",
            "raftgres_lease_holder{member=\"m1\"} 1",
            "raftgres_lease_holder{member=\"m2\"} 0",
            "raftgres_lease_holder{member=\"m3\"} 0",
            "raftgres_lease_epoch 3",
            "raftgres_timeline 2",
            "raftgres_wal_lsn_bytes 805306368",
            "raftgres_failovers_total 2",
            "raftgres_pause 1",
            "raftgres_postgres_running 1",
            "raftgres_synchronous_mode 1",
            "raftgres_synchronous_standbys 1",
            "raftgres_sync_standby 0",
            "raftgres_member_report_age_seconds{member=\"m1\"} 0.4",
            "raftgres_member_report_age_seconds{member=\"w\"} 0.4",
            "raftgres_member_stale{member=\"m2\"} 0",
            "raftgres_member_stale{member=\"w\"} 0",
        ],
    );
    assert!(
        !text.contains("raftgres_lease_holder{member=\"w\"}"),
        "{text}"
    );
    // The leader has no lag to report.
    assert!(!text.contains("raftgres_replication_lag_bytes "), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// Patroni's exposition lines: each series with the lab's `scope` and
/// `member`'s `name`, and its value.
fn patroni_lines(member: &str, series: &[(&str, &str)]) -> Vec<String> {
    series
        .iter()
        .map(|(name, value)| format!("{name}{{scope=\"lab\",name=\"{member}\"}} {value}"))
        .collect()
}

/// Requires `text` to hold [`patroni_lines`] of `member`.
fn assert_patroni_lines(text: &str, member: &str, series: &[(&str, &str)]) {
    let lines = patroni_lines(member, series);
    assert_lines(text, &lines.iter().map(String::as_str).collect::<Vec<_>>());
}

/// GET /metrics of a member whose health is `health`.
async fn metrics_of(health: NodeHealth) -> String {
    api_with(FakeOps::new(cluster_state()), health, Some(admin()))
        .metrics()
        .await
}

/// m2, a streaming replica of m1.
fn replica_health() -> NodeHealth {
    NodeHealth {
        member: "m2".into(),
        role: Role::Replica,
        holds_valid_lease: false,
        in_recovery: true,
        streaming: true,
        ..primary_health()
    }
}

/// Patroni's series, by its names and labels, for a Patroni dashboard.
#[tokio::test]
async fn metrics_carry_patronis_series() {
    let primary = NodeHealth {
        pending_restart: [(
            "max_connections".to_owned(),
            raftgres_state::PendingRestart {
                old_value: "100".into(),
                new_value: Some("150".into()),
            },
        )]
        .into(),
        server: crate::ServerFacts {
            server_version: Some(150_004),
            postmaster_start_unix_ms: Some(1_796_656_014_500),
            ..Default::default()
        },
        ..primary_health()
    };
    let replica = NodeHealth {
        server: crate::ServerFacts {
            received_lsn: Some(4096),
            replayed_lsn: Some(2048),
            replay_paused: true,
            replayed_unix_ms: Some(1_796_656_020_250),
            ..Default::default()
        },
        ..replica_health()
    };
    // Each member's series, and one it must not carry.
    #[rustfmt::skip]
    let rows = [
        (primary, "m1", &[
            ("patroni_version", "100"),
            ("patroni_postgres_running", "1"),
            ("patroni_primary", "1"),
            ("patroni_replica", "0"),
            ("patroni_standby_leader", "0"),
            ("patroni_sync_standby", "0"),
            ("patroni_cluster_unlocked", "0"),
            ("patroni_pending_restart", "1"),
            ("patroni_is_paused", "0"),
            ("patroni_postgres_server_version", "150004"),
            ("patroni_postgres_timeline", "2"),
            ("patroni_xlog_location", "805306368"),
            ("patroni_postmaster_start_time", "1796656014.5"),
        ][..], "patroni_xlog_received_location"),
        (replica, "m2", &[
            ("patroni_primary", "0"),
            ("patroni_replica", "1"),
            ("patroni_postgres_streaming", "1"),
            ("patroni_xlog_received_location", "4096"),
            ("patroni_xlog_replayed_location", "2048"),
            ("patroni_xlog_paused", "1"),
            ("patroni_xlog_replayed_timestamp", "1796656020.25"),
        ][..], "patroni_xlog_location{"),
    ];
    for (health, member, series, absent) in rows {
        let text = metrics_of(health).await;
        assert_patroni_lines(&text, member, series);
        assert!(!text.contains(absent), "{text}");
    }
}

/// Live figures of a follower of m2 in term 7, in touch a moment ago.
fn live_facts(leader: Option<u64>) -> LiveFacts {
    LiveFacts {
        lease_left: Some(Duration::from_millis(2250)),
        last_current_unix_ms: Some(1_796_656_020_750),
        raft: Some(RaftFacts {
            term: 7,
            leader,
            commit_index: 120,
            applied_index: 118,
            proposal_latency: Histogram {
                buckets: vec![(0.005, 2), (0.05, 1), (f64::INFINITY, 1)],
                count: 4,
                sum_seconds: 2.5,
            },
        }),
    }
}

/// raftgres's own view of the lease and of Raft, and Patroni's
/// `dcs_last_seen` in whole seconds.
#[tokio::test]
async fn metrics_carry_the_raft_view_and_the_lease_time_left() {
    // m2's Raft node id is its port.
    let text = api_live(cluster_state(), live_facts(Some(5433)))
        .metrics()
        .await;
    let dcs = patroni_lines("m1", &[("patroni_dcs_last_seen", "1796656020")]);
    assert_lines(
        &text,
        &[
            "raftgres_lease_remaining_seconds 2.25",
            "raftgres_raft_term 7",
            "raftgres_raft_leader{member=\"m2\"} 1",
            "raftgres_raft_leader{member=\"m1\"} 0",
            "raftgres_raft_leader{member=\"m3\"} 0",
            "raftgres_raft_leader{member=\"w\"} 0",
            "raftgres_raft_commit_index 120",
            "raftgres_raft_applied_index 118",
            "# TYPE raftgres_raft_proposal_duration_seconds histogram",
            "raftgres_raft_proposal_duration_seconds_sum 2.5",
            "raftgres_raft_proposal_duration_seconds_count 4",
            "raftgres_raft_proposal_duration_seconds_bucket{le=\"0.005\"} 2",
            "raftgres_raft_proposal_duration_seconds_bucket{le=\"0.05\"} 3",
            "raftgres_raft_proposal_duration_seconds_bucket{le=\"+Inf\"} 4",
            &dcs[0],
        ],
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[tokio::test]
async fn the_raft_leader_is_named_even_before_its_record_is_applied() {
    let text = api_live(cluster_state(), live_facts(Some(9)))
        .metrics()
        .await;
    assert_lines(
        &text,
        &[
            "raftgres_raft_leader{member=\"9\"} 1",
            "raftgres_raft_leader{member=\"m2\"} 0",
        ],
    );
    let text = api_live(cluster_state(), live_facts(None)).metrics().await;
    for member in ["m1", "m2", "m3", "w"] {
        assert_lines(
            &text,
            &[&format!("raftgres_raft_leader{{member=\"{member}\"}} 0")],
        );
    }
}

/// A source that knows no live figures leaves raftgres's out, and reports
/// Patroni's `dcs_last_seen` as Patroni does before its first contact.
#[tokio::test]
async fn metrics_without_live_figures() {
    let text = api().get("/metrics").await.text();
    assert!(!text.contains("raftgres_raft_"), "{text}");
    assert!(!text.contains("raftgres_lease_remaining_seconds"), "{text}");
    let dcs = patroni_lines("m1", &[("patroni_dcs_last_seen", "0")]);
    assert_lines(&text, &[&dcs[0]]);
}

#[tokio::test]
async fn only_the_status_document_carries_dcs_last_seen() {
    let api = api_live(cluster_state(), live_facts(Some(5433)));
    let doc = api.get("/patroni").await.json();
    assert_eq!(doc["dcs_last_seen"], json!(1_796_656_020), "{doc}");
    let health = api.get("/primary").await.json();
    assert!(health.get("dcs_last_seen").is_none(), "{health}");
    assert_eq!(health["role"], doc["role"]);
}

#[tokio::test]
async fn metrics_mark_a_silent_member_stale() {
    let mut ops = FakeOps::new(cluster_state());
    ops.reports.insert("m2".into(), report(12_500, false, true));
    ops.reports.remove("m3");
    let text = api_over(ops).get("/metrics").await.text();
    assert_lines(
        &text,
        &[
            "raftgres_member_report_age_seconds{member=\"m2\"} 12.5",
            "raftgres_member_stale{member=\"m2\"} 1",
            "raftgres_member_stale{member=\"m1\"} 0",
        ],
    );
    assert!(
        !text.contains("raftgres_member_report_age_seconds{member=\"m3\"}")
            && !text.contains("raftgres_member_stale{member=\"m3\"}"),
        "a member not observed yet has no series: {text}"
    );
}

#[tokio::test]
async fn metrics_of_a_lagging_replica() {
    let health = NodeHealth {
        lag_bytes: Some(4096),
        ..replica_health()
    };
    let api = api_with(FakeOps::new(cluster_state()), health, Some(admin()));
    let text = api.get("/metrics").await.text();
    assert_lines(
        &text,
        &["raftgres_primary 0", "raftgres_replication_lag_bytes 4096"],
    );
}

#[tokio::test]
async fn read_documents_answer_head_and_options_without_a_body() {
    let api = api();
    for path in ["/cluster", "/history", "/config", "/metrics"] {
        let head = api.call(Method::HEAD, path, None, &[], "").await;
        assert_eq!(head.status, StatusCode::OK, "{path}");
        assert!(head.body.is_empty(), "{path}");
        let options = api.call(Method::OPTIONS, path, None, &[], "").await;
        assert_eq!(options.status, StatusCode::OK, "{path}");
        assert!(options.headers.contains_key(ALLOW), "{path}");
        let post = api.call(Method::POST, path, ADMIN, &[], "{}").await;
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
}
