//! The status documents beyond health: `/cluster`, `/history`, `/config`
//! and `/metrics`. Each reads this member's applied state once (and, for
//! `/cluster` and `/metrics`, its member reports): no Raft round trip, so
//! they answer on a member cut off from the majority too.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use headers::{ETag, HeaderMapExt as _};
use raftgres_state::DynamicConfig;

use crate::cluster::{cluster_document, history_document};
use crate::config_doc::to_document;
use crate::metrics;
use crate::reply;
use crate::router::Shared;

pub(crate) fn cluster(ctx: &Shared) -> Response {
    let state = ctx.reads.state();
    let reports = ctx.reads.member_reports();
    let (snapshot, now) = ctx.health.snapshot();
    let scope = &snapshot.at(now).health.scope;
    reply::json(StatusCode::OK, &cluster_document(&state, scope, &reports))
}

pub(crate) fn history(ctx: &Shared) -> Response {
    let state = ctx.reads.state();
    reply::json(StatusCode::OK, &history_document(&state))
}

pub(crate) fn config(ctx: &Shared) -> Response {
    match ctx.reads.state().config {
        Some(config) => config_response(StatusCode::OK, &config),
        None => reply::error(StatusCode::SERVICE_UNAVAILABLE, NO_CONFIG_YET),
    }
}

pub(crate) fn metrics(ctx: &Shared) -> Response {
    let state = ctx.reads.state();
    let reports = ctx.reads.member_reports();
    let (snapshot, now) = ctx.health.snapshot();
    let live = ctx.health.live();
    match metrics::render(&state, &snapshot.at(now).health, &reports, &live) {
        Ok(text) => reply::with_body(
            StatusCode::OK,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
            text.into_bytes(),
        ),
        Err(err) => {
            tracing::error!(%err, "cannot encode the metrics");
            reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot encode the metrics: {err}"),
            )
        }
    }
}

/// The config document with its version as the `ETag`, for `If-Match`.
pub(crate) fn config_response(code: StatusCode, config: &DynamicConfig) -> Response {
    let mut response = reply::json(code, &to_document(&config.values));
    response
        .headers_mut()
        .typed_insert(config_etag(config.version));
    response
}

/// The entity tag of the config at `version`: the one `GET /config` sends
/// and `If-Match` is compared with.
pub(crate) fn config_etag(version: u64) -> ETag {
    format!("\"{version}\"")
        .parse()
        .expect("a quoted number is an entity tag")
}

pub(crate) const NO_CONFIG_YET: &str =
    "the cluster has no dynamic config yet: it is still bootstrapping; retry shortly";
