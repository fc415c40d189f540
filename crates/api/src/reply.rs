//! Responses of the endpoints beyond health: JSON documents, the error
//! document, and [`OpError`]'s status codes.

use axum::body::Body;
use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::Serialize;

use crate::body;
use crate::ops::OpError;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// `document` as a JSON body with status `code`.
pub(crate) fn json(code: StatusCode, document: &impl Serialize) -> Response {
    match serde_json::to_vec(document) {
        Ok(bytes) => with_body(code, JSON, bytes),
        Err(err) => {
            tracing::error!(%err, "cannot serialize a REST answer");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot serialize the answer: {err}"),
            )
        }
    }
}

/// `{"error": message}` with status `code`.
pub(crate) fn error(code: StatusCode, message: &str) -> Response {
    with_body(code, JSON, body::error(message))
}

pub(crate) fn with_body(code: StatusCode, content_type: HeaderValue, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = code;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

pub(crate) fn op_status(err: &OpError) -> StatusCode {
    match err {
        OpError::Invalid(_) => StatusCode::BAD_REQUEST,
        OpError::NotFound(_) => StatusCode::NOT_FOUND,
        OpError::Conflict(_) => StatusCode::CONFLICT,
        OpError::Precondition(_) => StatusCode::PRECONDITION_FAILED,
        OpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A read endpoint's answer for `method`: `make` is not called for
/// `OPTIONS`, which gets `allow` and no body; `HEAD` keeps the status and
/// headers of `GET` without its body.
pub(crate) fn for_method(
    method: &Method,
    allow: HeaderValue,
    make: impl FnOnce() -> Response,
) -> Response {
    if *method == Method::OPTIONS {
        let mut response = Response::new(Body::empty());
        response.headers_mut().insert(ALLOW, allow);
        return response;
    }
    let response = make();
    if *method == Method::HEAD {
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    response
}
