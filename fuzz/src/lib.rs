//! What the REST targets share: an API router over an in-memory cluster, as
//! `crates/api/tests/router.rs` drives it, and one runtime to drive it on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use raftgres_api::{
    ApiContext, Credentials, MemberReport, NodeHealth, OpError, OpFuture, ReadOps, Role,
    SwitchoverOutcome, SwitchoverRequest, WriteOps, router,
};
use raftgres_state::{
    ClusterState, Command, ConfigValues, DynamicConfig, Epoch, Lease, Member, MemberRole, PgState,
    RestartOptions,
};
use tower::ServiceExt;

pub const USER: &str = "admin";
pub const PASSWORD: &str = "fuzz-password";

/// The runtime every request runs on; the handlers spawn tasks, so it must
/// be a real one, but one thread is enough.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Sends `request` through `router` and reads the whole answer.
pub fn call(router: &Router, request: Request<Body>) -> Reply {
    runtime().block_on(async {
        let response = router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("an in-memory body reads")
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    })
}

/// A valid config, as a bootstrap would write it.
pub fn config_values() -> ConfigValues {
    ConfigValues {
        postgresql_parameters: BTreeMap::from([("work_mem".to_owned(), "4MB".to_owned())]),
        ..ConfigValues::new(
            raftgres_state::LeaseTiming::from_millis(30_000, 10_000, 2_000),
            10_000,
            1 << 20,
        )
    }
}

fn member(name: &str, node_id: u64) -> Member {
    Member {
        api_url: Some(format!("http://127.0.0.1:{}", 8000 + node_id)),
        pg_address: Some(format!("127.0.0.1:{}", 5431 + node_id)),
        role: MemberRole::Replica,
        pg_state: PgState::Running,
        timeline: Some(1),
        streaming: true,
        heartbeat: 1,
        ..Member::new(name, node_id, format!("127.0.0.1:{}", 7100 + node_id))
    }
}

/// m1 holds the lease; m2 and m3 replicate.
pub fn cluster_state() -> ClusterState {
    ClusterState {
        config: Some(DynamicConfig {
            version: 1,
            values: config_values(),
        }),
        lease: Lease {
            holder: Some("m1".into()),
            epoch: Epoch(1),
            revision: 1,
            ttl_ms: 30_000,
            ..Lease::default()
        },
        members: [member("m1", 1), member("m2", 2), member("m3", 3)]
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect(),
        ..ClusterState::default()
    }
}

/// The agent's side, in memory. A config change goes through the state
/// machine's own `apply`, which must accept whatever the API let through:
/// a value the API accepts and the cluster refuses would be an edit that
/// answers 200 and never takes effect.
pub struct InMemoryOps {
    pub state: Mutex<ClusterState>,
}

impl InMemoryOps {
    pub fn new() -> Self {
        InMemoryOps {
            state: Mutex::new(cluster_state()),
        }
    }

    pub fn reset(&self) {
        *self.state.lock().unwrap() = cluster_state();
    }
}

impl Default for InMemoryOps {
    fn default() -> Self {
        Self::new()
    }
}

fn named(what: &str, name: &str) {
    assert!(!name.is_empty(), "the API passed an empty {what}");
}

impl ReadOps for InMemoryOps {
    fn state(&self) -> ClusterState {
        self.state.lock().unwrap().clone()
    }

    fn member_reports(&self) -> BTreeMap<String, MemberReport> {
        BTreeMap::new()
    }
}

impl WriteOps for InMemoryOps {
    fn set_config(
        &self,
        expected_version: u64,
        values: ConfigValues,
    ) -> OpFuture<'_, DynamicConfig> {
        let applied = self.state.lock().unwrap().apply(&Command::SetConfig {
            expected_version,
            values: values.clone(),
        });
        let config = match applied {
            Ok(raftgres_state::Applied::Config { config }) => config,
            other => panic!("the API accepted {values:?}, the state machine answered {other:?}"),
        };
        Box::pin(async move { Ok(config) })
    }

    fn switchover(&self, request: SwitchoverRequest) -> OpFuture<'_, SwitchoverOutcome> {
        let leader = request.leader.expect("a switchover names the leader");
        named("leader", &leader);
        if let Some(candidate) = &request.candidate {
            named("candidate", candidate);
        }
        Box::pin(async move {
            match request.scheduled_at_unix_ms {
                Some(at_unix_ms) => Ok(SwitchoverOutcome::Scheduled { at_unix_ms }),
                None => Ok(SwitchoverOutcome::Done {
                    new_leader: request.candidate.unwrap_or_else(|| "m2".into()),
                }),
            }
        })
    }

    fn cancel_switchover(&self) -> OpFuture<'_, ()> {
        Box::pin(async { Err(OpError::NotFound("no scheduled switchover".into())) })
    }

    fn failover(&self, candidate: String) -> OpFuture<'_, String> {
        named("candidate", &candidate);
        Box::pin(async move { Ok(candidate) })
    }

    fn restart(&self, options: RestartOptions) -> OpFuture<'_, String> {
        Box::pin(async move {
            if options.restart_pending {
                Err(OpError::Unavailable("no restart pending".into()))
            } else {
                Ok("restarted".into())
            }
        })
    }

    fn schedule_restart(&self, at_unix_ms: u64, _: RestartOptions) -> OpFuture<'_, ()> {
        Box::pin(async move {
            if at_unix_ms % 2 == 0 {
                Ok(())
            } else {
                Err(OpError::Conflict(
                    "another restart is already scheduled".into(),
                ))
            }
        })
    }

    fn cancel_restart(&self) -> OpFuture<'_, ()> {
        Box::pin(async { Err(OpError::NotFound("no restarts are scheduled".into())) })
    }

    fn reload(&self) -> OpFuture<'_, String> {
        Box::pin(async { Ok("reload scheduled".into()) })
    }

    fn reinitialize(&self, force: bool) -> OpFuture<'_, String> {
        Box::pin(async move {
            if force {
                Ok("reinitialized".into())
            } else {
                Err(OpError::Precondition("m1 is the primary".into()))
            }
        })
    }

    fn remove_member(&self, name: String) -> OpFuture<'_, String> {
        named("member", &name);
        Box::pin(async move { Err(OpError::NotFound(format!("no member {name}"))) })
    }

    fn config_defaults(&self) -> ConfigValues {
        config_values()
    }
}

/// A replica 2 MiB behind, or the primary, with a tag to filter on.
pub fn health(primary: bool, running: bool, streaming: bool) -> NodeHealth {
    NodeHealth {
        member: if primary { "m1" } else { "m2" }.into(),
        scope: "fuzz".into(),
        role: if primary {
            Role::Primary
        } else {
            Role::Replica
        },
        holds_valid_lease: primary,
        postgres_running: running,
        in_recovery: !primary,
        streaming: streaming && !primary,
        lag_bytes: (!primary).then_some(2 << 20),
        receive_lag_bytes: (!primary).then_some(1 << 20),
        maximum_lag_on_failover: Some(1 << 20),
        ttl: Some(std::time::Duration::from_secs(3)),
        timeline: Some(1),
        paused: false,
        tags: BTreeMap::from([
            ("zone".to_owned(), "eu-1".to_owned()),
            ("nofailover".to_owned(), "false".to_owned()),
        ]),
        xlog_location: Some(50_331_744),
        pg_state: if running { "running" } else { "stopped" },
        server: raftgres_api::ServerFacts {
            server_version: Some(150_004),
            ..Default::default()
        },
        sync_standby: false,
        quorum_standby: false,
        pending_restart: BTreeMap::new(),
        scheduled_restart: None,
    }
}

/// A router with credentials set, over `ops` and `health`.
pub fn api(ops: Arc<InMemoryOps>, health: NodeHealth) -> Router {
    router(ApiContext {
        health: Arc::new(move || health.clone()),
        ops,
        auth: tokio::sync::watch::channel(Some(Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        }))
        .1,
        logins: Default::default(),
        allowlist: Default::default(),
        authenticate_reads: false,
    })
}

/// The `Authorization` header for [`USER`] and [`PASSWORD`].
pub fn basic_auth() -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    format!("Basic {token}")
}
