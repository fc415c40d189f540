//! The axum router and server. Each request: parse the query, take one
//! snapshot, decide the status code, and only then, for `GET`, build a body.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::body;
use crate::health::HealthSource;
use crate::query::parse_query;
use crate::status::{Endpoint, ROUTES, status};

type Source = Arc<dyn HealthSource>;

const HEALTH_METHODS: MethodFilter = MethodFilter::GET
    .or(MethodFilter::HEAD)
    .or(MethodFilter::OPTIONS);
const ALLOWED: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The health endpoints of [`ROUTES`], each answering `GET`, `HEAD` and
/// `OPTIONS` (other methods get 405). `GET` carries the JSON status
/// document; `HEAD` and `OPTIONS` carry no body, and `OPTIONS` says `Allow`.
/// A bad query value is a 400 naming the parameter; an unknown path a 404.
pub fn router(source: Arc<dyn HealthSource>) -> Router {
    let mut router = Router::new();
    for &(path, endpoint) in ROUTES {
        router = router.route(
            path,
            on(
                HEALTH_METHODS,
                move |State(source): State<Source>, request: Request| async move {
                    respond(endpoint, source.as_ref(), &request)
                },
            ),
        );
    }
    router.fallback(not_found).with_state(source)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn HealthSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY on a REST connection");
        }
    });
    axum::serve(listener, router(source))
        .with_graceful_shutdown(shutdown)
        .await
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
    let health = source.health();
    let code = status(endpoint, &health, &query);
    reply(method, code, || body::document(&health))
}

async fn not_found(request: Request) -> Response {
    reply(request.method(), StatusCode::NOT_FOUND, || {
        body::error(&format!("no endpoint at {}", request.uri().path()))
    })
}

/// A JSON body for `GET` only; `make_body` is not called otherwise.
fn reply(method: &Method, code: StatusCode, make_body: impl FnOnce() -> Vec<u8>) -> Response {
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
