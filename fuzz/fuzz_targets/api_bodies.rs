//! The bodies of the mutating REST calls, authenticated, through the
//! router: `PATCH /config` (a JSON merge patch) and `PUT /config` (the
//! whole config), with or without `If-Match`, `POST /switchover`,
//! `/failover`, `/restart`, `/reload`, `/reinitialize`, `DELETE /restart`
//! and `DELETE /members/{name}`.
//!
//! Properties: no panic; every answer is one of the documented codes with
//! a JSON body; what the API passes on is well formed (no empty names; a
//! config the state machine accepts, see `InMemoryOps`); and a config edit
//! is idempotent: sending an accepted patch again, or the document it
//! answered with, changes nothing (same version).
//!
//! The first byte picks the call, the second the `If-Match` header of a
//! patch; the rest is the body (for `DELETE /members/`, the name).

#![no_main]

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, ETAG, IF_MATCH};
use axum::http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use raftgres_fuzz::{InMemoryOps, Reply, api, basic_auth, call, health};

/// New calls go at the end, so that each seed keeps its call.
const CALLS: [(Method, &str); 9] = [
    (Method::PATCH, "/config"),
    (Method::POST, "/switchover"),
    (Method::POST, "/failover"),
    (Method::POST, "/restart"),
    (Method::POST, "/reload"),
    (Method::POST, "/reinitialize"),
    (Method::DELETE, "/members/"),
    (Method::PUT, "/config"),
    (Method::DELETE, "/restart"),
];

const IF_MATCHES: [Option<&str>; 5] = [
    None,
    Some("*"),
    Some("\"1\""),
    Some("\"9\""),
    Some("W/\"1\""),
];

fn fixture() -> &'static (Arc<InMemoryOps>, Router) {
    static FIXTURE: OnceLock<(Arc<InMemoryOps>, Router)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ops = Arc::new(InMemoryOps::new());
        let router = api(Arc::clone(&ops), health(true, true, false));
        (ops, router)
    })
}

fn send(
    router: &Router,
    method: &Method,
    path: &str,
    if_match: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(AUTHORIZATION, basic_auth());
    if let Some(tag) = if_match {
        request = request.header(IF_MATCH, tag);
    }
    let request = request.body(Body::from(body)).expect("a request");
    let reply = call(router, request);
    assert!(
        matches!(
            reply.status.as_u16(),
            200 | 202 | 400 | 404 | 405 | 409 | 412 | 413 | 422 | 503
        ),
        "{method} {path} answered {}",
        reply.status
    );
    if !reply.body.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} answered {} with a body that is not JSON: {e}",
                reply.status
            )
        });
    }
    reply
}

fuzz_target!(|data: &[u8]| {
    let [pick, tag, body @ ..] = data else {
        return;
    };
    let (ops, router) = fixture();
    ops.reset();
    let (method, path) = &CALLS[usize::from(*pick) % CALLS.len()];
    let if_match = IF_MATCHES[usize::from(*tag) % IF_MATCHES.len()];

    if *path == "/members/" {
        // The name is a path segment: percent-encode it as a client would.
        let name: String = body.iter().map(|b| format!("%{b:02X}")).collect();
        send(
            router,
            method,
            &format!("/members/{name}"),
            None,
            Vec::new(),
        );
        return;
    }

    let reply = send(router, method, path, if_match, body.to_vec());
    if *path != "/config" || reply.status != StatusCode::OK {
        return;
    }
    // An accepted edit, sent again, changes nothing; nor does sending back
    // the document it answered with (what `edit-config` does).
    let version = reply
        .headers
        .get(ETAG)
        .cloned()
        .expect("PATCH and PUT /config answer with an ETag");
    let again = send(router, method, path, None, body.to_vec());
    assert_eq!(again.status, StatusCode::OK, "the same patch, sent again");
    assert_eq!(
        again.headers.get(ETAG),
        Some(&version),
        "the same patch changed the config again"
    );
    let whole = send(router, method, path, None, reply.body);
    assert_eq!(
        whole.status,
        StatusCode::OK,
        "the answered document, sent back"
    );
    assert_eq!(
        whole.headers.get(ETAG),
        Some(&version),
        "the answered document changed the config"
    );
});
