//! The axum router and server. A health request: parse the query, take one
//! snapshot, decide the status code, and only then, for `GET`, build a body.

use crate::tls::ServerTls;
use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, delete, on, post};
use tokio::net::TcpListener;

use crate::auth::{Credentials, Gate, LoginGuard};
use crate::body;
use crate::health::HealthSource;
use crate::ops::{ReadOps, WriteOps};
use crate::query::parse_query;
pub use crate::server::ServeLimits;
use crate::status::{Endpoint, ROUTES, status};
use crate::{read, reply, write};

const HEALTH_METHODS: MethodFilter = MethodFilter::GET
    .or(MethodFilter::HEAD)
    .or(MethodFilter::OPTIONS);
const ALLOWED: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");
const ALLOWED_CONFIG: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS, PATCH, PUT");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// What the API serves from: the agent's health snapshot, its replicated
/// state and operations, and the credentials the mutating calls need.
#[derive(Clone)]
pub struct ApiContext {
    pub health: Arc<dyn HealthSource>,
    pub ops: Arc<dyn WriteOps>,
    /// `None`: every mutating call answers 403. A watch, so that the agent
    /// can swap the credentials when it reloads its settings file.
    pub auth: tokio::sync::watch::Receiver<Option<Credentials>>,
    /// Failed logins per client address.
    pub logins: Arc<LoginGuard>,
    /// Who may call the mutating endpoints (`restapi.allowlist`).
    pub allowlist: crate::allowlist::Allowlist,
    /// Reads need the credentials too (`restapi.authenticate_reads`).
    pub authenticate_reads: bool,
}

/// The router's state, what every handler may extract: health and reads.
/// The write interface sits inside [`Gate`], out of the handlers' reach
/// except through the authenticated extractor.
pub(crate) struct Shared {
    pub(crate) health: Arc<dyn HealthSource>,
    pub(crate) reads: Arc<dyn ReadOps>,
    pub(crate) gate: Gate,
}

impl From<ApiContext> for Shared {
    fn from(ctx: ApiContext) -> Self {
        Shared {
            health: ctx.health,
            reads: ctx.ops.clone(),
            gate: Gate::new(
                ctx.ops,
                ctx.auth,
                ctx.logins,
                ctx.allowlist,
                ctx.authenticate_reads,
            ),
        }
    }
}

type Context = Arc<Shared>;

/// Every endpoint of `docs/rest-api.md`. The health endpoints of [`ROUTES`]
/// answer `GET`, `HEAD` and `OPTIONS` from one [`HealthSource`] snapshot:
/// `GET` carries the JSON status document; `HEAD` and `OPTIONS` carry no
/// body, and `OPTIONS` says `Allow`. A bad query value is a 400 naming the
/// parameter; an unknown path a 404; another method a 405. `/cluster`,
/// `/history`, `/config` and `/metrics` read the applied state the same
/// way. The mutating endpoints need basic auth (401/403 otherwise) and
/// take bodies up to 64 KiB.
pub fn router(ctx: ApiContext) -> Router {
    let mut router = Router::new();
    for &(path, endpoint) in ROUTES {
        router = router.route(
            path,
            on(
                HEALTH_METHODS,
                move |State(ctx): State<Context>, request: Request| async move {
                    respond(endpoint, ctx.health.as_ref(), &request)
                },
            ),
        );
    }
    let router = router
        .route("/cluster", document(ALLOWED, read::cluster))
        .route("/history", document(ALLOWED, read::history))
        .route("/metrics", document(ALLOWED, read::metrics))
        .route(
            "/config",
            document(ALLOWED_CONFIG, read::config)
                .patch(write::patch_config)
                .put(write::put_config),
        )
        .route(
            "/switchover",
            post(write::switchover).delete(write::cancel_switchover),
        )
        .route("/failover", post(write::failover))
        .route(
            "/restart",
            post(write::restart).delete(write::cancel_restart),
        )
        .route("/reload", post(write::reload))
        .route("/reinitialize", post(write::reinitialize))
        .route("/members/{name}", delete(write::remove_member))
        .layer(DefaultBodyLimit::max(write::BODY_LIMIT_BYTES))
        .fallback(not_found);
    let ctx = Arc::new(Shared::from(ctx));
    router
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            crate::auth::guard_reads,
        ))
        .with_state(ctx)
}

/// A read endpoint for `GET`, `HEAD` and `OPTIONS`.
fn document(allow: HeaderValue, make: fn(&Shared) -> Response) -> MethodRouter<Context> {
    on(
        HEALTH_METHODS,
        move |State(ctx): State<Context>, method: Method| async move {
            reply::for_method(&method, allow, || make(&ctx))
        },
    )
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets
/// requests in flight finish, with the default [`ServeLimits`].
pub async fn serve(
    listener: TcpListener,
    ctx: ApiContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_limits(listener, ctx, shutdown, ServeLimits::default()).await
}

/// [`serve`] with other [`ServeLimits`].
pub async fn serve_with_limits(
    listener: TcpListener,
    ctx: ApiContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> io::Result<()> {
    crate::server::serve_with(listener, router(ctx), shutdown, limits, None).await
}

/// [`serve_with_limits`] over TLS (`restapi.certfile`).
pub async fn serve_tls(
    listener: TcpListener,
    ctx: ApiContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
    tls: ServerTls,
) -> io::Result<()> {
    crate::server::serve_with(listener, router(ctx), shutdown, limits, Some(tls)).await
}

fn respond(endpoint: Endpoint, source: &dyn HealthSource, request: &Request) -> Response {
    let method = request.method();
    let query = match parse_query(request.uri().query()) {
        Ok(query) => query,
        Err(err) => {
            tracing::debug!(path = request.uri().path(), %err, "bad health check query");
            return reply(method, StatusCode::BAD_REQUEST, || {
                body::error(&err.to_string())
            });
        }
    };
    if let Some(why) = &query.ignored_lag {
        warn_ignored_lag(request.uri().path(), why);
    }
    let (snapshot, now) = source.snapshot();
    let rendered = snapshot.at(now);
    let code = status(endpoint, &rendered.health, &query, source.loops_quiet());
    reply_bytes(method, code, || match endpoint {
        // The status document itself: built per request with the one field
        // that moves too often for the snapshot.
        Endpoint::Patroni => Bytes::from(body::document(
            &rendered.health,
            Some(source.live().dcs_last_seen()),
        )),
        _ => rendered.body.clone(),
    })
}

/// Says at most once a minute that a check's `?lag=` was ignored: a load
/// balancer repeats its checks several times a second.
fn warn_ignored_lag(path: &str, why: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    const EVERY_S: u64 = 60;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    static LAST_S: AtomicU64 = AtomicU64::new(0);
    // Counted from EVERY_S, so that the first one is said.
    let now = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
        + EVERY_S;
    let last = LAST_S.load(Ordering::Relaxed);
    if now >= last + EVERY_S
        && LAST_S
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            path,
            reason = why,
            "a health check's lag is no byte count; answered with no lag limit, as Patroni does (said once a minute)"
        );
    }
}

async fn not_found(request: Request) -> Response {
    reply(request.method(), StatusCode::NOT_FOUND, || {
        body::error(&format!("no endpoint at {}", request.uri().path()))
    })
}

/// A JSON body for `GET` only; `make_body` is not called otherwise.
fn reply(method: &Method, code: StatusCode, make_body: impl FnOnce() -> Vec<u8>) -> Response {
    reply_bytes(method, code, || Bytes::from(make_body()))
}

fn reply_bytes(method: &Method, code: StatusCode, make_body: impl FnOnce() -> Bytes) -> Response {
    let mut response = if *method == Method::GET {
        let mut response = Response::new(Body::from(make_body()));
        response.headers_mut().insert(CONTENT_TYPE, JSON);
        response
    } else {
        Response::new(Body::empty())
    };
    *response.status_mut() = code;
    if *method == Method::OPTIONS {
        response.headers_mut().insert(ALLOW, ALLOWED);
    }
    response
}

#[cfg(test)]
mod tests;
