//! Sending this member's record to the replicated state, which is how the
//! other members see it report: the Postgres loop sends it with its live
//! fields, a witness's heartbeat as it was applied.

use raftgres_consensus::Consensus;
use raftgres_state::{Command, Member};

/// Commits `record`, named `what` in the log. The next heartbeat sends a
/// record again, so a refusal or a commit that did not happen is only
/// logged.
pub async fn publish_record(consensus: &Consensus, record: Member, what: &str) {
    let me = record.name.clone();
    match consensus
        .propose(Command::PublishMember { member: record })
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(rejection)) => tracing::error!(member = %me, %rejection, "{what} refused"),
        Err(e) => tracing::debug!(member = %me, error = %e, "{what} not committed"),
    }
}
