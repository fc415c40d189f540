//! `remove`: a member leaves the Raft group and the cluster state.

use crate::client::{Call, MEMBERSHIP_TIMEOUT};
use crate::cluster::Finder;
use crate::prompt::confirm;
use reqwest::Method;

pub async fn remove(finder: &mut Finder, member: String, force: bool) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    confirm(
        format!(
            "Are you sure you want to remove member {member} from cluster {}?",
            cluster.view.scope()
        ),
        "remove",
        force,
    )
    .await?;
    let reply = finder
        .call_any(&cluster, &["members", &member], |url| {
            Call::change(Method::DELETE, url, None, MEMBERSHIP_TIMEOUT)
        })
        .await?;
    println!("{}", reply.message());
    Ok(())
}
