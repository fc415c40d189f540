//! HTTP basic authentication for the mutating endpoints. The only way a
//! handler gets at [`Operations`] for a change is the [`Authorized`]
//! extractor, so no mutating call can reach the agent unauthenticated.

use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::ops::Operations;
use crate::reply;
use crate::router::ApiContext;

/// `restapi.authentication` from the agent's config.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// Never the password: contexts and configs end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a mutating request was refused before it reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error(
        "the mutating endpoints are disabled on this member: set restapi.authentication \
         (username and password) in its config and restart the agent"
    )]
    Disabled,
    #[error(
        "authentication required: send HTTP basic auth with restapi.authentication's username and password"
    )]
    Missing,
    #[error(
        "the Authorization header is not valid HTTP basic auth (`Basic <base64 of user:password>`)"
    )]
    Malformed,
    #[error("wrong username or password")]
    Wrong,
}

impl AuthError {
    fn into_response(self) -> Response {
        if self == AuthError::Disabled {
            return reply::error(StatusCode::FORBIDDEN, &self.to_string());
        }
        let mut response = reply::error(StatusCode::UNAUTHORIZED, &self.to_string());
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"raftgres\""),
        );
        response
    }
}

/// Whether `header` (the `Authorization` value) carries `expected`.
pub(crate) fn check(
    expected: Option<&Credentials>,
    header: Option<&HeaderValue>,
) -> Result<(), AuthError> {
    let expected = expected.ok_or(AuthError::Disabled)?;
    let header = header.ok_or(AuthError::Missing)?;
    let encoded = header
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, rest) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .ok_or(AuthError::Malformed)?;
    let given = STANDARD.decode(encoded).map_err(|_| AuthError::Malformed)?;
    let mut wanted = Vec::with_capacity(expected.username.len() + 1 + expected.password.len());
    wanted.extend_from_slice(expected.username.as_bytes());
    wanted.push(b':');
    wanted.extend_from_slice(expected.password.as_bytes());
    if same_bytes(&given, &wanted) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

/// Compares every byte, so the time taken does not tell how long a prefix
/// of the password was right.
fn same_bytes(given: &[u8], wanted: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != wanted.len());
    for (index, want) in wanted.iter().enumerate() {
        difference |= given.get(index).copied().unwrap_or(!want) ^ want;
    }
    std::hint::black_box(difference) == 0
}

/// Proof that the request passed [`check`]: the handle to the agent's
/// operations that the mutating handlers use.
pub(crate) struct Authorized {
    pub(crate) ops: Arc<dyn Operations>,
}

impl FromRequestParts<Arc<ApiContext>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<ApiContext>,
    ) -> Result<Self, Response> {
        let outcome = check(ctx.auth.borrow().as_ref(), parts.headers.get(AUTHORIZATION));
        match outcome {
            Ok(()) => {
                tracing::info!(method = %parts.method, path = parts.uri.path(), "authorized a mutating REST call");
                Ok(Authorized {
                    ops: Arc::clone(&ctx.ops),
                })
            }
            Err(err) => {
                tracing::info!(method = %parts.method, path = parts.uri.path(), %err, "refused a mutating REST call");
                Err(err.into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Credentials {
        Credentials {
            username: "admin".into(),
            password: "s3cret".into(),
        }
    }

    fn basic(user_password: &str) -> HeaderValue {
        HeaderValue::try_from(format!("Basic {}", STANDARD.encode(user_password)))
            .expect("base64 is a valid header value")
    }

    #[test]
    fn right_credentials_pass() {
        assert_eq!(check(Some(&admin()), Some(&basic("admin:s3cret"))), Ok(()));
    }

    #[test]
    fn wrong_or_partial_credentials_fail() {
        for given in ["admin:s3cre", "admin:s3cret!", "admin:", "admi:s3cret", ":"] {
            assert_eq!(
                check(Some(&admin()), Some(&basic(given))),
                Err(AuthError::Wrong),
                "{given}"
            );
        }
    }

    #[test]
    fn no_configured_credentials_disable_every_call() {
        assert_eq!(
            check(None, Some(&basic("admin:s3cret"))),
            Err(AuthError::Disabled)
        );
    }

    #[test]
    fn missing_and_malformed_headers() {
        assert_eq!(check(Some(&admin()), None), Err(AuthError::Missing));
        for header in ["Bearer abc", "Basic !!!", "Basic"] {
            assert_eq!(
                check(Some(&admin()), Some(&HeaderValue::from_static(header))),
                Err(AuthError::Malformed),
                "{header}"
            );
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let printed = format!("{:?}", admin());
        assert!(printed.contains("admin"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
    }
}
