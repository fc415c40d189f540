//! A paused cluster (Patroni's maintenance mode): nothing changes role on
//! its own, but a change the operator asked for by naming the member to
//! take over still runs to its end, as Patroni allows. Pause only chooses
//! which of the usual steps may run; each step keeps its own lease rules
//! (docs/lease.md), so no rule is weaker while paused.

use crate::local::PgView;
use crate::postgres::{PgAction, PgObservation};
use crate::switchover::{failover_candidate, switchover_under_way};
use raftgres_state::ClusterState;

/// Why a holder abandons a switchover with no candidate once it is due
/// while paused (one scheduled before the pause): with nobody named, it
/// would be the automatic choice that pause turns off.
pub(crate) const UNNAMED_WHILE_PAUSED: &str = "the cluster is paused, and a paused cluster switches over only to a named candidate (as Patroni's maintenance mode does); ask again naming one, or resume the cluster";

/// The only member that competes for an expired lease while paused: the
/// candidate a switchover or failover request names, once its time has
/// come. Without such a request nobody competes, so a dead holder is not
/// replaced on its own.
pub(crate) fn paused_candidate(state: &ClusterState, now_unix_ms: u64) -> Option<&str> {
    failover_candidate(state).filter(|_| switchover_under_way(state, now_unix_ms))
}

/// Whether `action`, the one the table picks for an unpaused cluster, runs
/// while paused. What runs is each step of a requested change of primary:
/// the holder's (a due request that names its candidate: see
/// `UNNAMED_WHILE_PAUSED`), the new holder's, the old primary's and the
/// replicas'. Everything else waits for `resume`: no start of a stopped
/// server, no clone, and no promotion of a holder that already ran as
/// primary under this lease (an operator who demoted it by hand meant it).
pub(crate) fn runs_while_paused(o: &PgObservation<'_>, action: &PgAction) -> bool {
    match action {
        // Safety never pauses.
        PgAction::Fence => true,
        // Only a due switchover leads to them.
        PgAction::StopForSwitchover | PgAction::AbandonSwitchover { .. } => true,
        // The lease came to this member since its Postgres last ran as
        // primary: while paused only a switchover's transfer or a named
        // candidate's acquire gives it. Bringing the replica up as primary
        // finishes that change; leaving it would leave no primary at all.
        PgAction::Promote | PgAction::StartReplica { upstream: None } => {
            o.holds_lease && o.state.lease.timeline_owner.as_deref() != Some(o.me)
        }
        // This member stopped its primary for a switchover: it starts
        // again as primary once the switchover was abandoned, or rewinds to
        // the new primary once it handed over (the last step of a
        // switchover; Patroni restarts a demoted leader as a replica too).
        PgAction::StartPrimary | PgAction::Rewind { .. } => {
            matches!(o.pg, PgView::Stopped { .. }) && o.switchover_stopped_at.is_some()
        }
        // A running replica points at the primary that holds the lease (a
        // new one after a switchover), as Patroni's replicas do when paused.
        PgAction::Follow { .. } => true,
        PgAction::None
        | PgAction::InitDb
        | PgAction::RecordIdentity { .. }
        | PgAction::StartReplica { upstream: Some(_) }
        | PgAction::Clone { .. } => false,
    }
}
