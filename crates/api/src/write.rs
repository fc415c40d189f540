//! The mutating endpoints: read and check the body, call
//! [`WriteOps`](crate::WriteOps), answer as Patroni does. Every handler
//! takes [`Authorized`] first, which runs before the body is read and is its
//! only way to the operations.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::header::IF_MATCH;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use headers::{ETag, HeaderMapExt as _, IfMatch};
use raftgres_state::{ConfigValues, PostgresVersion, RestartOptions, RestartRole};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Authorized;
use crate::cluster::rfc3339;
use crate::config_doc::{ConfigDocError, apply_patch, replace};
use crate::ops::{OpError, SwitchoverOutcome, SwitchoverRequest, WriteOps};
use crate::read::{NO_CONFIG_YET, config_etag, config_response};
use crate::reply;

/// The largest request body read; every valid body is far smaller.
pub(crate) const BODY_LIMIT_BYTES: usize = 64 * 1024;

type Answer = Result<Response, Refusal>;
type Body = Result<Bytes, BytesRejection>;

/// A request turned down before or by the operation: answered with
/// `status` and `{"error": message}`.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl From<OpError> for Refusal {
    fn from(err: OpError) -> Self {
        Refusal::new(reply::op_status(&err), err.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        reply::error(self.status, &self.message)
    }
}

/// Why a request body was refused. Answered with 400.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("invalid JSON body: {0}")]
    Syntax(serde_json::Error),
    /// Unknown fields, missing fields and wrong types: serde's message
    /// names the field.
    #[error("invalid request body: {0}")]
    Shape(serde_json::Error),
    #[error("a JSON body is required, e.g. {0}")]
    Missing(&'static str),
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, message)
}

fn bytes(body: Body) -> Result<Bytes, Refusal> {
    body.map_err(|rejection| {
        Refusal::new(
            rejection.status(),
            format!(
                "cannot read the request body (at most {} KiB): {}",
                BODY_LIMIT_BYTES / 1024,
                rejection.body_text()
            ),
        )
    })
}

/// `None` for an empty (or all-whitespace) body. The JSON is read whole
/// before its shape is checked, so a truncated body is called malformed
/// rather than blamed on whichever field came first.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, BodyError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(BodyError::Syntax)?;
    T::deserialize(value).map(Some).map_err(BodyError::Shape)
}

fn required<T: DeserializeOwned>(body: Body, example: &'static str) -> Result<T, Refusal> {
    parse(&bytes(body)?)
        .and_then(|parsed| parsed.ok_or(BodyError::Missing(example)))
        .map_err(|err| bad_request(err.to_string()))
}

/// An empty body is the same as `{}`.
fn optional<T: DeserializeOwned + Default>(body: Body) -> Result<T, Refusal> {
    parse(&bytes(body)?)
        .map(Option::unwrap_or_default)
        .map_err(|err| bad_request(err.to_string()))
}

/// Runs an operation as its own task, so that a client that hangs up
/// mid-switchover does not cancel the change halfway.
async fn detached<T: Send + 'static>(
    operation: impl Future<Output = Result<T, OpError>> + Send + 'static,
) -> Result<T, OpError> {
    tokio::spawn(operation).await.unwrap_or_else(|err| {
        tracing::error!(%err, "a REST operation's task failed");
        Err(OpError::Unavailable(format!(
            "the operation failed inside the agent ({err}); see the agent's log"
        )))
    })
}

#[derive(Serialize)]
struct Message {
    message: String,
}

fn message(message: String) -> Response {
    reply::json(StatusCode::OK, &Message { message })
}

/// 202: accepted, and the work goes on after the answer.
fn accepted(message: String) -> Response {
    reply::json(StatusCode::ACCEPTED, &Message { message })
}

fn answer<T>(result: Result<T, OpError>, ok: impl FnOnce(T) -> Response) -> Answer {
    result.map(ok).map_err(Refusal::from)
}

/// A body with no fields: `{}` or nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    leader: String,
    candidate: Option<String>,
    /// Patroni's other name for `candidate`.
    member: Option<String>,
    scheduled_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverBody {
    candidate: Option<String>,
    /// Patroni's other name for `candidate`.
    member: Option<String>,
    leader: Option<String>,
}

/// Patroni's restart body: when, the conditions, and the timeout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    /// An RFC 3339 time ahead: a scheduled restart.
    schedule: Option<String>,
    /// Only if the member runs in this role then.
    role: Option<String>,
    /// Only if the running server's version is lower.
    postgres_version: Option<String>,
    /// How long the restart may take; see [`parse_timeout`].
    timeout: Option<Value>,
    /// Only if a setting waits for a restart.
    #[serde(default)]
    restart_pending: bool,
}

/// The longest `timeout` a restart takes: it is how long the member may be
/// without a running Postgres, and, on the leader, without a primary.
const MAX_RESTART_TIMEOUT_S: u64 = 3600;

/// Patroni's `timeout`: whole seconds, as a number or as text with an
/// optional unit (`30`, `"30"`, `"30s"`, `"2min"`, `"1h"`; patronictl
/// sends text), positive and at most [`MAX_RESTART_TIMEOUT_S`]. In
/// milliseconds.
fn parse_timeout(value: &Value) -> Result<u64, Refusal> {
    let seconds = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => {
            let text = text.trim();
            let digits = text.bytes().take_while(u8::is_ascii_digit).count();
            let (number, unit) = text.split_at(digits);
            let scale = match unit.trim() {
                "" | "s" => Some(1),
                "min" => Some(60),
                "h" => Some(3600),
                _ => None,
            };
            number
                .parse::<u64>()
                .ok()
                .zip(scale)
                .and_then(|(n, scale)| n.checked_mul(scale))
        }
        _ => None,
    };
    match seconds {
        Some(seconds @ 1..=MAX_RESTART_TIMEOUT_S) => Ok(seconds * 1000),
        _ => Err(bad_request(format!(
            "timeout {value} must be a whole number of seconds from 1 to \
             {MAX_RESTART_TIMEOUT_S}, as a number or as text such as \"90\", \"90s\" or \"5min\""
        ))),
    }
}

fn restart_options(body: &RestartBody) -> Result<RestartOptions, Refusal> {
    let invalid = |err: raftgres_state::RestartError| bad_request(err.to_string());
    Ok(RestartOptions {
        role: non_empty(body.role.clone())
            .map(|role| RestartRole::parse(&role))
            .transpose()
            .map_err(invalid)?,
        postgres_version: non_empty(body.postgres_version.clone())
            .map(|version| PostgresVersion::parse(&version))
            .transpose()
            .map_err(invalid)?,
        restart_pending: body.restart_pending,
        timeout_ms: body.timeout.as_ref().map(parse_timeout).transpose()?,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReinitializeBody {
    #[serde(default)]
    force: bool,
}

/// What a time in a request schedules, for the messages about it.
#[derive(Debug, Clone, Copy)]
struct Scheduling {
    what: &'static str,
    /// The body's key that holds the time.
    key: &'static str,
    /// What leaving the key out does.
    at_once: &'static str,
}

const SWITCHOVER: Scheduling = Scheduling {
    what: "switchover",
    key: "scheduled_at",
    at_once: "switch over now",
};

const RESTART: Scheduling = Scheduling {
    what: "restart",
    key: "schedule",
    at_once: "restart now",
};

/// An RFC 3339 time with an offset, as Unix milliseconds. A time before
/// `now` is refused with 422, as Patroni refuses it, rather than run at
/// once: the operator meant some other moment.
fn parse_scheduled_at(text: &str, now: jiff::Timestamp, of: Scheduling) -> Result<u64, Refusal> {
    let Scheduling { what, key, at_once } = of;
    let at: jiff::Timestamp = text.parse().map_err(|err| {
        bad_request(format!(
            "{key} `{text}` is not an RFC 3339 time with an offset, \
             such as 2026-11-22T10:00:00Z: {err}"
        ))
    })?;
    match u64::try_from(at.as_millisecond()) {
        Ok(unix_ms) if at >= now => Ok(unix_ms),
        _ => Err(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "cannot schedule a {what} in the past: {key} `{text}` is before now \
                 ({}); give a later time, or leave {key} out to {at_once}",
                now.round(jiff::Unit::Millisecond).unwrap_or(now)
            ),
        )),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

/// The member to take over: `candidate`, or `member`, Patroni's other name
/// for it. Naming two different members is refused rather than settled by
/// a rule the operator would have to know.
fn candidate_of(
    candidate: Option<String>,
    member: Option<String>,
) -> Result<Option<String>, Refusal> {
    match (non_empty(candidate), non_empty(member)) {
        (Some(candidate), Some(member)) if candidate != member => Err(bad_request(format!(
            "`candidate` ({candidate}) and `member` ({member}) name different members; \
             `member` is another name for `candidate`: send one of them"
        ))),
        (candidate, member) => Ok(candidate.or(member)),
    }
}

pub(crate) async fn switchover(Authorized { ops }: Authorized, body: Body) -> Answer {
    let body: SwitchoverBody = required(body, r#"{"leader": "m1", "candidate": "m2"}"#)?;
    if body.leader.is_empty() {
        return Err(bad_request(
            "`leader` must name the current leader; see GET /cluster",
        ));
    }
    let candidate = candidate_of(body.candidate, body.member)?;
    let scheduled_at_unix_ms = non_empty(body.scheduled_at)
        .map(|text| parse_scheduled_at(&text, jiff::Timestamp::now(), SWITCHOVER))
        .transpose()?;
    let request = SwitchoverRequest {
        leader: Some(body.leader),
        candidate,
        scheduled_at_unix_ms,
    };
    let outcome = detached(async move { ops.switchover(request).await }).await;
    answer(outcome, |outcome| match outcome {
        SwitchoverOutcome::Done { new_leader } => switched("switched over", new_leader),
        SwitchoverOutcome::Scheduled { at_unix_ms } => {
            #[derive(Serialize)]
            struct Scheduled {
                message: &'static str,
                scheduled_at: Option<String>,
            }
            reply::json(
                StatusCode::ACCEPTED,
                &Scheduled {
                    message: "Switchover scheduled",
                    scheduled_at: rfc3339(at_unix_ms),
                },
            )
        }
    })
}

/// Patroni's answer once `new_leader` is the primary.
fn switched(verb: &str, new_leader: String) -> Response {
    #[derive(Serialize)]
    struct Switched {
        message: String,
        leader: String,
    }
    reply::json(
        StatusCode::OK,
        &Switched {
            message: format!("Successfully {verb} to \"{new_leader}\""),
            leader: new_leader,
        },
    )
}

pub(crate) async fn cancel_switchover(Authorized { ops }: Authorized) -> Answer {
    let outcome = detached(async move { ops.cancel_switchover().await }).await;
    answer(outcome, |()| message("scheduled switchover deleted".into()))
}

pub(crate) async fn failover(Authorized { ops }: Authorized, body: Body) -> Answer {
    let body: FailoverBody = required(body, r#"{"candidate": "m2"}"#)?;
    let Some(candidate) = candidate_of(body.candidate, body.member)? else {
        return Err(bad_request(
            "`candidate` (or `member`) must name the member to promote; see GET /cluster",
        ));
    };
    if let Some(leader) = non_empty(body.leader) {
        let state = ops.state();
        if !state.lease.is_held_by(&leader) {
            let holder = state.lease.holder.as_deref().unwrap_or("nobody");
            return Err(Refusal::new(
                StatusCode::PRECONDITION_FAILED,
                format!(
                    "leader `{leader}` does not hold the lease ({holder} does); \
                     send the current leader or leave `leader` out"
                ),
            ));
        }
    }
    let outcome = detached(async move { ops.failover(candidate).await }).await;
    answer(outcome, |new_leader| switched("failed over", new_leader))
}

/// Now (200 once Postgres runs again), or at `schedule` (202), as Patroni.
pub(crate) async fn restart(Authorized { ops }: Authorized, body: Body) -> Answer {
    let body: RestartBody = optional(body)?;
    let options = restart_options(&body)?;
    let Some(at_unix_ms) = non_empty(body.schedule)
        .map(|text| parse_scheduled_at(&text, jiff::Timestamp::now(), RESTART))
        .transpose()?
    else {
        return answer(
            detached(async move { ops.restart(options).await }).await,
            message,
        );
    };
    let outcome = detached(async move { ops.schedule_restart(at_unix_ms, options).await }).await;
    answer(outcome, |()| {
        #[derive(Serialize)]
        struct Scheduled {
            message: &'static str,
            schedule: Option<String>,
        }
        reply::json(
            StatusCode::ACCEPTED,
            &Scheduled {
                message: "Restart scheduled",
                schedule: rfc3339(at_unix_ms),
            },
        )
    })
}

pub(crate) async fn cancel_restart(Authorized { ops }: Authorized) -> Answer {
    let outcome = detached(async move { ops.cancel_restart().await }).await;
    answer(outcome, |()| message("scheduled restart deleted".into()))
}

/// 202 once the settings file is read and applied (400 if it is invalid);
/// Postgres reloads after the answer, as Patroni's "reload scheduled".
pub(crate) async fn reload(Authorized { ops }: Authorized, body: Body) -> Answer {
    let NoFields {} = optional(body)?;
    answer(detached(async move { ops.reload().await }).await, accepted)
}

pub(crate) async fn reinitialize(Authorized { ops }: Authorized, body: Body) -> Answer {
    let ReinitializeBody { force } = optional(body)?;
    answer(
        detached(async move { ops.reinitialize(force).await }).await,
        message,
    )
}

/// The name arrives percent-encoded; one that does not decode to UTF-8 is
/// refused here, because axum's own rejection would answer in plain text
/// rather than with the `{"error": ...}` document every error carries.
pub(crate) async fn remove_member(
    Authorized { ops }: Authorized,
    name: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(name) = name.map_err(|rejection| {
        Refusal::new(
            rejection.status(),
            format!(
                "the member name in the path is not valid: {}; send the name as \
                 GET /cluster lists it, percent-encoded UTF-8",
                rejection.body_text()
            ),
        )
    })?;
    answer(
        detached(async move { ops.remove_member(name).await }).await,
        message,
    )
}

const IF_MATCH_HELP: &str =
    "If-Match must be the quoted config version from GET /config's ETag, such as \"7\"";

/// `If-Match`, read by the `headers` crate, which compares strongly (a weak
/// tag never matches, as RFC 9110 wants) and lets `*` match anything. The
/// crate skips a list entry that is not an entity tag; such an entry is
/// refused here instead, because an unquoted `7` is a client that forgot
/// the quotes, and a 412 would send it to fetch a version it already has.
/// Splitting at every comma also refuses a quoted tag with a comma in it,
/// which no config version has.
fn parse_if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, &'static str> {
    let Some(if_match) = headers
        .typed_try_get::<IfMatch>()
        .map_err(|_| IF_MATCH_HELP)?
    else {
        return Ok(None);
    };
    if !if_match.is_any() {
        for value in headers.get_all(IF_MATCH) {
            let tags = value.to_str().map_err(|_| IF_MATCH_HELP)?;
            if tags
                .split(',')
                .any(|tag| tag.trim().parse::<ETag>().is_err())
            {
                return Err(IF_MATCH_HELP);
            }
        }
    }
    Ok(Some(if_match))
}

pub(crate) async fn patch_config(
    Authorized { ops }: Authorized,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let patch: Value = required(
        body,
        r#"{"postgresql": {"parameters": {"work_mem": "8MB"}}}"#,
    )?;
    edit_config(ops, &headers, |current| apply_patch(current, &patch)).await
}

/// Patroni's `PUT /config`: the body is the whole config, and every key it
/// leaves out goes back to its default.
pub(crate) async fn put_config(
    Authorized { ops }: Authorized,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let document: Value = required(
        body,
        r#"{"ttl_ms": 3000, "postgresql": {"parameters": {"work_mem": "8MB"}}}"#,
    )?;
    let defaults = ops.config_defaults();
    edit_config(ops, &headers, |_| replace(&defaults, &document)).await
}

/// A config edit, `PATCH` or `PUT`: `If-Match` against this member's copy,
/// `edit` of the current values, the edit rules, then a compare-and-set
/// on the version the edit started from.
async fn edit_config(
    ops: Arc<dyn WriteOps>,
    headers: &HeaderMap,
    edit: impl FnOnce(&ConfigValues) -> Result<ConfigValues, ConfigDocError>,
) -> Answer {
    let if_match = parse_if_match(headers).map_err(bad_request)?;
    let Some(current) = ops.state().config else {
        return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, NO_CONFIG_YET));
    };
    if let Some(if_match) =
        if_match.filter(|if_match| !if_match.precondition_passes(&config_etag(current.version)))
    {
        tracing::debug!(?if_match, version = current.version, "If-Match failed");
        return Err(Refusal::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "the config is at version {} now, not the one in If-Match: \
                 GET /config again and apply your change to it",
                current.version
            ),
        ));
    }
    let values = edit(&current.values).map_err(|err| bad_request(err.to_string()))?;
    values
        .validate_edit()
        .map_err(|message| bad_request(format!("invalid config: {message}")))?;
    if values == current.values {
        // Nothing changes: no Raft write, no new version.
        return Ok(config_response(StatusCode::OK, &current));
    }
    let version = current.version;
    let outcome = detached(async move { ops.set_config(version, values).await }).await;
    answer(outcome, |config| config_response(StatusCode::OK, &config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn if_match(values: &[&'static str]) -> Result<Option<IfMatch>, &'static str> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IF_MATCH, axum::http::HeaderValue::from_static(value));
        }
        parse_if_match(&headers)
    }

    fn allows(values: &[&'static str], version: u64) -> bool {
        let if_match = if_match(values)
            .expect("a valid If-Match")
            .expect("If-Match");
        if_match.precondition_passes(&config_etag(version))
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(if_match(&[]), Ok(None));
        assert!(allows(&["*"], 7));
        assert!(allows(&["\"7\""], 7));
        assert!(!allows(&["\"7\""], 8));
        assert!(allows(&["\"6\", \"7\""], 7));
        assert!(allows(&["\"6\"", "\"7\""], 7));
        assert!(!allows(&["\"6\", W/\"7\", \"x\""], 7));
        assert!(!allows(&["W/\"7\""], 7));
        assert!(!allows(&["\"07\""], 7), "entity tags compare as bytes");
    }

    #[test]
    fn if_match_without_quotes_is_refused() {
        for bad in ["7", "\"6\", 7", "", "*, \"7\""] {
            assert_eq!(if_match(&[bad]), Err(IF_MATCH_HELP), "{bad}");
        }
        assert_eq!(if_match(&["\"6\"", "7"]), Err(IF_MATCH_HELP));
    }

    #[test]
    fn scheduled_at_is_rfc3339_with_an_offset_and_not_past() {
        let now: jiff::Timestamp = "2026-11-22T09:00:00.1234Z".parse().expect("a time");
        let at =
            |text| parse_scheduled_at(text, now, SWITCHOVER).map_err(|r| (r.status, r.message));
        assert_eq!(at("2026-11-22T10:00:00Z"), Ok(1_795_341_600_000));
        assert_eq!(at("2026-11-22T11:00:00+01:00"), Ok(1_795_341_600_000));
        assert_eq!(at("2026-11-22T09:00:00.1234Z"), Ok(1_795_338_000_123));
        for bad in ["2026-11-22 10:00", "tomorrow", "10:00:00Z"] {
            let (status, message) = at(bad).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(message.contains(bad), "{message}");
        }
        for past in [
            "2026-11-22T08:59:59Z",
            "2026-11-22T09:00:00.1233Z",
            "1969-12-31T23:59:59Z",
        ] {
            let (status, message) = at(past).unwrap_err();
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{past}");
            assert!(message.contains(past), "{message}");
            assert!(message.contains("(2026-11-22T09:00:00.123Z)"), "{message}");
            assert!(
                message.contains("cannot schedule a switchover in the past"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_restart_in_the_past_is_named_as_one() {
        let now: jiff::Timestamp = "2026-11-22T09:00:00Z".parse().expect("a time");
        let refusal = parse_scheduled_at("2026-11-22T08:00:00Z", now, RESTART).unwrap_err();
        assert_eq!(refusal.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            refusal.message.starts_with(
                "cannot schedule a restart in the past: schedule `2026-11-22T08:00:00Z`"
            ),
            "{}",
            refusal.message
        );
        assert!(
            refusal
                .message
                .ends_with("leave schedule out to restart now"),
            "{}",
            refusal.message
        );
        let refusal = parse_scheduled_at("soon", now, RESTART).unwrap_err();
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        assert!(
            refusal.message.starts_with("schedule `soon`"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn timeouts_are_whole_seconds_as_patronictl_sends_them() {
        use serde_json::json;
        let timeout = |value: Value| parse_timeout(&value).map_err(|r| (r.status, r.message));
        for (value, ms) in [
            (json!(30), 30_000),
            (json!("30"), 30_000),
            (json!("30s"), 30_000),
            (json!(" 2min "), 120_000),
            (json!("1h"), 3_600_000),
            (json!(3600), 3_600_000),
        ] {
            assert_eq!(timeout(value.clone()), Ok(ms), "{value}");
        }
        for value in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!(3601),
            json!("2h"),
            json!("30ms"),
            json!("s"),
            json!(""),
            json!("ten"),
            json!(true),
            json!(null),
        ] {
            let (status, message) = timeout(value.clone()).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
            assert!(
                message.starts_with(&format!("timeout {value} must be")),
                "{message}"
            );
        }
    }

    #[test]
    fn restart_conditions_are_read_or_refused_naming_them() {
        let options = |body: &str| {
            restart_options(&serde_json::from_str(body).expect("a restart body"))
                .map_err(|r| (r.status, r.message))
        };
        assert_eq!(options("{}"), Ok(RestartOptions::default()));
        assert_eq!(
            options(
                r#"{"role": "master", "postgres_version": "15.4", "restart_pending": true, "timeout": "90"}"#
            ),
            Ok(RestartOptions {
                role: Some(RestartRole::Primary),
                postgres_version: Some(PostgresVersion::parse("15.4").expect("a version")),
                restart_pending: true,
                timeout_ms: Some(90_000),
            })
        );
        assert_eq!(
            options(r#"{"role": "", "postgres_version": ""}"#),
            Ok(RestartOptions::default())
        );
        for (body, needle) in [
            (r#"{"role": "leader"}"#, "role \"leader\""),
            (r#"{"role": "standby_leader"}"#, "no standby clusters"),
            (r#"{"postgres_version": "15"}"#, "postgres_version \"15\""),
        ] {
            let (status, message) = options(body).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(message.contains(needle), "{body}: {message}");
        }
    }

    #[test]
    fn member_is_another_name_for_candidate() {
        let of = |candidate: Option<&str>, member: Option<&str>| {
            candidate_of(candidate.map(Into::into), member.map(Into::into))
                .map_err(|r| (r.status, r.message))
        };
        assert_eq!(of(Some("m2"), None), Ok(Some("m2".into())));
        assert_eq!(of(None, Some("m2")), Ok(Some("m2".into())));
        assert_eq!(of(Some("m2"), Some("m2")), Ok(Some("m2".into())));
        assert_eq!(of(Some(""), Some("m2")), Ok(Some("m2".into())));
        assert_eq!(of(None, Some("")), Ok(None));
        let (status, message) = of(Some("m2"), Some("m3")).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            message.contains("`candidate` (m2) and `member` (m3)"),
            "{message}"
        );
    }

    #[test]
    fn empty_bodies_are_none_and_errors_are_classified() {
        assert!(matches!(parse::<NoFields>(b" \n"), Ok(None)));
        assert!(matches!(parse::<NoFields>(b"{}"), Ok(Some(NoFields {}))));
        assert!(matches!(parse::<NoFields>(b"{"), Err(BodyError::Syntax(_))));
        assert!(matches!(
            parse::<NoFields>(br#"{"x": "#),
            Err(BodyError::Syntax(_))
        ));
        assert!(matches!(
            parse::<NoFields>(br#"{"x": 1}"#),
            Err(BodyError::Shape(_))
        ));
    }
}
