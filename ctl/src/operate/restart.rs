//! `restart`: members' Postgres restarted now, or at a scheduled time.

use super::pick::{Pick, confirm_chosen};
use super::{Failed, post_to_member, scheduled_at};
use crate::client::{COMMIT_TIMEOUT, Call, POSTGRES_TIMEOUT, endpoint};
use crate::cluster::{Cluster, Finder};
use crate::error::CtlError;
use reqwest::Method;
use serde_json::json;

/// `restart`'s options beyond the members: patronictl's `--scheduled`,
/// `--pg-version` and `--timeout`.
pub struct RestartWhen {
    pub scheduled: Option<String>,
    pub pg_version: Option<String>,
    pub timeout: Option<String>,
}

pub async fn restart(
    finder: &mut Finder,
    mut pick: Pick,
    when: RestartWhen,
    force: bool,
) -> anyhow::Result<()> {
    let at = scheduled_at(when.scheduled.as_deref())?;
    let mut body = json!({"restart_pending": pick.pending});
    if let Some(version) = when.pg_version {
        body["postgres_version"] = version.into();
    }
    if let Some(timeout) = when.timeout {
        body["timeout"] = timeout.into();
    }
    let question = match at {
        None => "restart".to_owned(),
        Some(at) => {
            body["schedule"] = at.to_string().into();
            // As patronictl: whether a setting waits is judged when the
            // restart runs, so every member chosen gets it.
            pick.pending = false;
            format!("schedule a restart at {at} of")
        }
    };
    let Some((cluster, members)) =
        confirm_chosen(finder, &pick, "restart", &question, force).await?
    else {
        return Ok(());
    };
    if at.is_some() && force {
        // As patronictl: --force replaces a restart already scheduled.
        for member in members
            .iter()
            .filter(|m| has_scheduled_restart(&cluster, m))
        {
            let base = cluster.member_api(member)?;
            match cancel_restart(finder, &base).await {
                Ok(()) | Err(CtlError::Refused { status: 404, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut failed = Failed::default();
    for member in &members {
        let base = cluster.member_api(member)?;
        post_to_member(
            finder,
            member,
            &base,
            "restart",
            Some(&body),
            POSTGRES_TIMEOUT,
            &mut failed,
        )
        .await;
    }
    failed.into_result("the restart of")
}

/// Whether `list` shows a scheduled restart for `member`.
pub(super) fn has_scheduled_restart(cluster: &Cluster, member: &str) -> bool {
    cluster
        .view
        .member(member)
        .is_some_and(|m| m.scheduled_restart.is_some())
}

/// `DELETE /restart` on the member at `base`.
pub(super) async fn cancel_restart(finder: &Finder, base: &reqwest::Url) -> Result<(), CtlError> {
    finder
        .api
        .call(Call::change(
            Method::DELETE,
            endpoint(base, &["restart"]),
            None,
            COMMIT_TIMEOUT,
        ))
        .await
        .map(|_| ())
}
