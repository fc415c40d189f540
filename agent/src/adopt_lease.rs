//! Taking over, at start, the lease a previous agent on this member held
//! and the keeper still enforces.

use crate::belief::SharedBelief;
use crate::clock::mono_now;
use raftgres_consensus::Consensus;

/// A restarted agent takes over the lease its predecessor held: the keeper
/// still enforces that lease's deadline, and the replicated state still
/// names this member at that epoch. The deadline was granted by a renewal
/// that committed, so believing it until then is as safe as it was for the
/// agent that sent it; the lease loop renews it as usual.
pub async fn adopt_lease(
    consensus: &Consensus,
    me: &str,
    status: &raftgres_keeper::KeeperStatus,
    belief: &SharedBelief,
) {
    let Some(armed) = status.armed else { return };
    let deadline = raftgres_ha::MonoInstant(std::time::Duration::from_nanos(armed.deadline_ns));
    let now = mono_now();
    if deadline <= now {
        return;
    }
    let epoch = raftgres_state::Epoch(armed.epoch);
    // The local copy may lag the log this member had acknowledged; wait for
    // it, but never past the deadline.
    let mut states = consensus.subscribe();
    let _ = tokio::time::timeout(
        deadline - now,
        states.wait_for(|v| v.state.lease.epoch >= epoch),
    )
    .await;
    let state = consensus.local().state;
    let now = mono_now();
    if !(state.lease.is_held_by(me) && state.lease.epoch == epoch && now < deadline) {
        tracing::info!(member = me, %epoch, "the keeper's armed lease is no longer ours");
        return;
    }
    let margin = state
        .timing()
        .map_or(std::time::Duration::ZERO, |t| t.margin);
    let adopted = raftgres_ha::HolderLease::adopted(epoch, deadline, state.lease.ttl(), margin);
    crate::belief::update(belief, |b| b.set_holding(adopted));
    tracing::info!(member = me, %epoch, left_ms = (deadline - now).as_millis() as u64, "took over the lease the keeper still enforces");
}
