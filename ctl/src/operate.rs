//! The commands that change the cluster: switchover, failover, restart,
//! reload, reinit, flush, pause, resume, remove. What they share is here:
//! `--scheduled`, a member's own status, and the tally of members that
//! failed.

mod flush;
mod pause;
mod pick;
mod primary;
mod reinit;
mod reload;
mod remove;
mod restart;

pub use flush::flush;
pub use pause::set_pause;
pub use pick::{Pick, has_role};
pub use primary::{change_primary, failover, switchover};
pub use reinit::reinit;
pub use reload::reload;
pub use remove::remove;
pub use restart::{RestartWhen, restart};

use crate::client::{Call, endpoint};
use crate::cluster::Finder;
use crate::error::CtlError;
use anyhow::anyhow;
use jiff::Timestamp;
use reqwest::Method;
use serde_json::Value;
use std::fmt::Display;
use std::time::Duration;

/// `--scheduled`: `None` for now, else a time that must lie ahead, since
/// a switchover scheduled in the past would happen at once by surprise.
fn parse_scheduled(text: &str, now: Timestamp) -> Result<Option<Timestamp>, String> {
    if text.trim().eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    let at: Timestamp = text.trim().parse().map_err(|e| {
        format!("--scheduled {text:?} is not an RFC 3339 time such as 2026-11-22T10:00:00Z, nor `now`: {e}")
    })?;
    if at <= now {
        return Err(format!(
            "--scheduled {at} is in the past (it is {now} now); give a later time or `now`"
        ));
    }
    Ok(Some(at))
}

/// `--scheduled` as given on the command line, judged against the clock.
fn scheduled_at(text: Option<&str>) -> anyhow::Result<Option<Timestamp>> {
    match text {
        Some(text) => parse_scheduled(text, Timestamp::now()).map_err(|e| anyhow!(e)),
        None => Ok(None),
    }
}

/// A member's own `GET /patroni`.
async fn member_status(finder: &Finder, base: &reqwest::Url) -> Result<Value, CtlError> {
    finder
        .api
        .call(Call::get(endpoint(base, &["patroni"])))
        .await
        .map(|reply| reply.body)
}

/// POSTs `path` with `body` to `member`'s own agent at `base` and says how
/// it went; a failure goes to `failed`. True when the agent took it.
async fn post_to_member(
    finder: &Finder,
    member: &str,
    base: &reqwest::Url,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
    failed: &mut Failed,
) -> bool {
    let outcome = finder
        .api
        .call(Call::change(
            Method::POST,
            endpoint(base, &[path]),
            body,
            timeout,
        ))
        .await;
    match outcome {
        Ok(reply) => {
            println!("{member}: {}", reply.message());
            true
        }
        Err(e) => {
            failed.add(member, e);
            false
        }
    }
}

/// The members a command acting on each in turn failed on. Each failure
/// is said when it happens, and the command goes on to the next member;
/// only at the end does it fail, naming them all.
#[derive(Default)]
struct Failed(Vec<String>);

impl Failed {
    fn add(&mut self, member: &str, why: impl Display) {
        println!("{member}: failed: {why:#}");
        self.push(member.to_owned());
    }

    /// A failure already said in the command's own words.
    fn push(&mut self, member: String) {
        self.0.push(member);
    }

    /// `what` names the action: `the restart of` (then the members, then
    /// `failed`).
    fn into_result(self, what: &str) -> anyhow::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("{what} {} failed", self.0.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_is_now_or_a_future_rfc_3339_time() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("valid");
        assert_eq!(parse_scheduled("now", now), Ok(None));
        assert_eq!(parse_scheduled(" NOW ", now), Ok(None));
        assert_eq!(
            parse_scheduled("2026-11-22T10:00:00+02:00", now).map(|t| t.map(|t| t.to_string())),
            Ok(Some("2026-11-22T08:00:00Z".to_owned()))
        );
        let past = parse_scheduled("2025-12-31T23:59:59Z", now).expect_err("past");
        assert!(past.contains("in the past"), "{past}");
        let bad = parse_scheduled("tomorrow", now).expect_err("not a time");
        assert!(bad.contains("RFC 3339"), "{bad}");
    }
}
