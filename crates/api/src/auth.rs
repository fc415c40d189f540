//! HTTP basic authentication for the mutating endpoints. [`WriteOps`] lives
//! in a private field of [`Gate`], and the [`Authorized`] extractor is the
//! only code that takes it out, after the checks: the compiler, not a
//! convention, keeps a handler without authentication from changing
//! anything.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use headers::Header as _;
use headers::authorization::{Authorization, Basic};

use crate::allowlist::Allowlist;
use crate::ops::WriteOps;
use crate::reply;
use crate::router::Shared;

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

/// Failed logins allowed from one address within [`FAILURE_WINDOW`]; one
/// more is refused with 429 until the window has passed.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it, finished windows are forgotten.
const MAX_TRACKED: usize = 10_000;

/// Failed logins per client address, so that a password cannot be guessed
/// at the speed of the network.
#[derive(Debug, Default)]
pub struct LoginGuard {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginGuard {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `client` must still wait, if it failed too often.
    fn blocked(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.lock();
        let (count, since) = failures.get(&client)?;
        let over = *since + FAILURE_WINDOW;
        (*count >= MAX_FAILURES && now < over).then(|| over - now)
    }

    fn failed(&self, client: IpAddr, now: Instant) {
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (_, since)| now < *since + FAILURE_WINDOW);
        }
        let entry = failures.entry(client).or_insert((0, now));
        if now >= entry.1 + FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }

    fn succeeded(&self, client: IpAddr) {
        self.lock().remove(&client);
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
    let given = Authorization::<Basic>::decode(&mut std::iter::once(header))
        .map_err(|_| AuthError::Malformed)?;
    // Compared whole, as the client sent it, so that a username with a
    // colon in it (RFC 7617 forbids one, the config does not) still matches
    // what curl sends for it.
    let given = format!("{}:{}", given.username(), given.password());
    let wanted = format!("{}:{}", expected.username, expected.password);
    if same_bytes(given.as_bytes(), wanted.as_bytes()) {
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

/// Who may call what: the credentials, the failed-login guard, the
/// allowlist, and the write interface they guard.
pub(crate) struct Gate {
    /// Private to this module: [`Authorized`] is the only way out.
    writes: Arc<dyn WriteOps>,
    /// `None`: every mutating call answers 403.
    auth: tokio::sync::watch::Receiver<Option<Credentials>>,
    logins: Arc<LoginGuard>,
    allowlist: Allowlist,
    authenticate_reads: bool,
}

impl Gate {
    pub(crate) fn new(
        writes: Arc<dyn WriteOps>,
        auth: tokio::sync::watch::Receiver<Option<Credentials>>,
        logins: Arc<LoginGuard>,
        allowlist: Allowlist,
        authenticate_reads: bool,
    ) -> Self {
        Gate {
            writes,
            auth,
            logins,
            allowlist,
            authenticate_reads,
        }
    }
}

/// Proof that the request passed the allowlist and [`check`]: the handle to
/// the agent's operations that the mutating handlers use.
pub(crate) struct Authorized {
    pub(crate) ops: Arc<dyn WriteOps>,
}

impl FromRequestParts<Arc<Shared>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Shared>) -> Result<Self, Response> {
        let gate = &ctx.gate;
        let client = client_of(parts);
        if !gate.allowlist.is_open() {
            let admitted = client.is_some_and(|c| gate.allowlist.admits(c, || ctx.reads.state()));
            if !admitted {
                let shown =
                    client.map_or_else(|| "an unknown address".to_owned(), |c| c.to_string());
                tracing::warn!(client = %shown, method = %parts.method, path = parts.uri.path(), "refused a mutating REST call from outside restapi.allowlist");
                return Err(reply::error(
                    StatusCode::FORBIDDEN,
                    &format!("{shown} is not in restapi.allowlist of this member"),
                ));
            }
        }
        if let Some(refused) =
            refuse_without_credentials(gate, parts, client, "a mutating REST call")
        {
            return Err(refused);
        }
        Ok(Authorized {
            ops: Arc::clone(&gate.writes),
        })
    }
}

/// The client's address, when served by `serve` (a router driven directly,
/// in tests, has none, and no limit).
fn client_of(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
}

/// The basic-auth check with the failed-login guard, for a mutating call
/// or, with `restapi.authenticate_reads`, a read (`what` says which): the
/// refusal, if any.
fn refuse_without_credentials(
    gate: &Gate,
    parts: &Parts,
    client: Option<IpAddr>,
    what: &str,
) -> Option<Response> {
    let now = Instant::now();
    if let Some(client) = client
        && let Some(wait) = gate.logins.blocked(client, now)
    {
        tracing::warn!(%client, method = %parts.method, path = parts.uri.path(), "refused {what}: too many failed logins");
        return Some(reply::error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many failed logins from {client}; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let outcome = check(
        gate.auth.borrow().as_ref(),
        parts.headers.get(AUTHORIZATION),
    );
    let shown = client.map_or_else(|| "unknown".to_owned(), |c| c.to_string());
    match outcome {
        Ok(()) => {
            if let Some(client) = client {
                gate.logins.succeeded(client);
            }
            tracing::debug!(client = %shown, method = %parts.method, path = parts.uri.path(), "authorized {what}");
            None
        }
        Err(err @ (AuthError::Wrong | AuthError::Malformed)) => {
            if let Some(client) = client {
                gate.logins.failed(client, now);
            }
            tracing::warn!(client = %shown, method = %parts.method, path = parts.uri.path(), %err, "failed login on the REST API");
            Some(err.into_response())
        }
        Err(err) => {
            tracing::info!(client = %shown, method = %parts.method, path = parts.uri.path(), %err, "refused {what}");
            Some(err.into_response())
        }
    }
}

/// With `restapi.authenticate_reads`, every read (health checks included)
/// needs the credentials too; mutating calls are checked by [`Authorized`].
pub(crate) async fn guard_reads(
    axum::extract::State(ctx): axum::extract::State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    let gate = &ctx.gate;
    if !gate.authenticate_reads
        || !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        )
    {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let client = client_of(&parts);
    if let Some(refused) = refuse_without_credentials(gate, &parts, client, "a REST read") {
        return refused;
    }
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

#[cfg(test)]
mod tests {
    use headers::authorization::Credentials as _;

    use super::*;

    fn admin() -> Credentials {
        Credentials {
            username: "admin".into(),
            password: "s3cret".into(),
        }
    }

    fn basic(user_password: &str) -> HeaderValue {
        let (username, password) = user_password.split_once(':').expect("user:password");
        Authorization::basic(username, password).0.encode()
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
    fn an_address_that_fails_too_often_waits_out_the_window() {
        let guard = LoginGuard::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for n in 0..MAX_FAILURES {
            assert_eq!(guard.blocked(a, t0), None, "after {n} failures");
            guard.failed(a, t0);
        }
        assert_eq!(guard.blocked(a, t0), Some(FAILURE_WINDOW));
        assert_eq!(
            guard.blocked(b, t0),
            None,
            "another address is not held back"
        );
        assert_eq!(
            guard.blocked(a, t0 + FAILURE_WINDOW),
            None,
            "the window passed"
        );
        guard.failed(a, t0 + FAILURE_WINDOW);
        assert_eq!(
            guard.blocked(a, t0 + FAILURE_WINDOW),
            None,
            "a new window counts afresh"
        );
        guard.succeeded(a);
        assert!(guard.lock().is_empty());
    }

    #[test]
    fn debug_hides_the_password() {
        let printed = format!("{:?}", admin());
        assert!(printed.contains("admin"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
    }
}
