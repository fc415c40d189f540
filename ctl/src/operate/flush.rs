//! `flush restart` and `flush switchover`: a scheduled event discarded.

use super::Failed;
use super::pick::{Pick, chosen};
use super::restart::{cancel_restart, has_scheduled_restart};
use crate::cli::{FlushTarget, RoleFilter};
use crate::client::{COMMIT_TIMEOUT, Call};
use crate::cluster::Finder;
use crate::error::CtlError;
use crate::prompt::confirm;
use reqwest::Method;

/// `flush restart`: the chosen members' scheduled restarts are cancelled;
/// `flush switchover`: the pending switchover is.
pub async fn flush(
    finder: &mut Finder,
    target: FlushTarget,
    members: Vec<String>,
    role: Option<RoleFilter>,
    force: bool,
) -> anyhow::Result<()> {
    if target == FlushTarget::Restart {
        let pick = Pick {
            named: members,
            role,
            pending: false,
            any: false,
        };
        return flush_restarts(finder, &pick, force).await;
    }
    if !members.is_empty() || role.is_some() {
        anyhow::bail!(
            "flush switchover takes no members or --role: the cluster has one pending switchover"
        );
    }
    let cluster = finder.cluster().await?;
    if cluster.view.scheduled_switchover.is_none() {
        println!("No pending scheduled switchover");
        return Ok(());
    }
    confirm(
        "Are you sure you want to discard the scheduled switchover?".to_owned(),
        "flush",
        force,
    )
    .await?;
    let reply = finder
        .call_any(&cluster, &["switchover"], |url| {
            Call::change(Method::DELETE, url, None, COMMIT_TIMEOUT)
        })
        .await?;
    println!("Success: {}", reply.message());
    Ok(())
}

/// Cancels the scheduled restart of each member `pick` chooses that has
/// one, as `list` shows it; the others are named.
async fn flush_restarts(finder: &mut Finder, pick: &Pick, force: bool) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let (scheduled, none): (Vec<String>, Vec<String>) = chosen(&cluster.view, pick)?
        .into_iter()
        .partition(|m| has_scheduled_restart(&cluster, m));
    for member in &none {
        println!("No scheduled restart for member {member}");
    }
    if scheduled.is_empty() {
        return Ok(());
    }
    confirm(
        format!(
            "Are you sure you want to discard the scheduled restarts of members {}?",
            scheduled.join(", ")
        ),
        "flush",
        force,
    )
    .await?;
    let mut failed = Failed::default();
    for member in &scheduled {
        let base = cluster.member_api(member)?;
        match cancel_restart(finder, &base).await {
            Ok(()) => println!("Success: flush scheduled restart for member {member}"),
            // Run or cancelled since the list was read.
            Err(CtlError::Refused { status: 404, .. }) => {
                println!("No scheduled restart for member {member}")
            }
            Err(e) => failed.add(member, e),
        }
    }
    failed.into_result("cancelling the scheduled restart of")
}
