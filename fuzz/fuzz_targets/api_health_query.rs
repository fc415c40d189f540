//! The query string of a health check (`/replica?lag=10MB&tag_zone=eu-1`),
//! which any load balancer or stranger sends: `parse_query` never panics,
//! and the router answers exactly as `parse_query` and `status` decide:
//! 400 for a query they refuse, else their 200 or 503.
//!
//! The first byte picks the path (any of `ROUTES`) and the member's health;
//! the rest is the query string, without the `?`.

#![no_main]

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;
use raftgres_api::{ROUTES, parse_query, status};
use raftgres_fuzz::{InMemoryOps, api, call, health};

/// One router per health shape, built once.
fn routers() -> &'static [Router; 8] {
    static ROUTERS: OnceLock<[Router; 8]> = OnceLock::new();
    ROUTERS.get_or_init(|| {
        std::array::from_fn(|shape| {
            let shape = shape as u8;
            api(Arc::new(InMemoryOps::new()), shape_health(shape))
        })
    })
}

fn shape_health(shape: u8) -> raftgres_api::NodeHealth {
    health(shape & 1 != 0, shape & 2 != 0, shape & 4 != 0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let (path, endpoint) = ROUTES[usize::from(pick >> 3) % ROUTES.len()];
    let shape = pick & 7;
    let health = shape_health(shape);

    let parsed = parse_query(Some(raw));
    let expected = match &parsed {
        Ok(query) => {
            let code = status(endpoint, &health, query, std::time::Duration::ZERO);
            assert!(
                code == StatusCode::OK || code == StatusCode::SERVICE_UNAVAILABLE,
                "a health check answered {code}"
            );
            code
        }
        Err(_) => StatusCode::BAD_REQUEST,
    };

    // Through the router too, when the query is one a client can send:
    // `http` refuses some bytes in a URI, and then no request exists.
    let Ok(uri) = format!("{path}?{raw}").parse::<Uri>() else {
        return;
    };
    if uri.query() != Some(raw) {
        return;
    }
    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        let request = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .body(Body::empty())
            .expect("a request from a parsed URI");
        let reply = call(&routers()[usize::from(shape)], request);
        assert_eq!(reply.status, expected, "{method} {uri}");
        if method == Method::GET {
            serde_json::from_slice::<serde_json::Value>(&reply.body)
                .expect("a GET health answer is JSON");
        } else {
            assert!(reply.body.is_empty(), "{method} {uri} has a body");
        }
    }
});
