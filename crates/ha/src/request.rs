//! An operator's switchover or failover, judged against the state read
//! when the request arrives: refused with the reason the API returns, or
//! turned into the change to commit. The agent only reads, commits and
//! waits.

use crate::candidacy::{holder_running_primary, tagged_in};
use crate::switchover::switchover_candidate;
use raftgres_state::{ClusterState, Epoch, PgState, Switchover};

/// Why a request is refused. `Invalid`: the request itself cannot be
/// honoured as asked (the REST API answers 400); `Precondition`: the
/// cluster is not in a state to honour it now (412).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Invalid(String),
    Precondition(String),
}

/// The holder, when its record says it runs the primary and it still
/// reports (`fresh`, by name).
pub fn healthy_leader<'a>(
    state: &'a ClusterState,
    fresh: &dyn Fn(&str) -> bool,
) -> Option<&'a str> {
    holder_running_primary(state)
        .filter(|m| fresh(&m.name))
        .map(|m| m.name.as_str())
}

/// A switchover the holder is to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverPlan {
    /// What to commit (`RequestSwitchover`).
    pub request: Switchover,
    /// The member that will be primary; for a scheduled switchover with
    /// no named candidate, the one that would be chosen now.
    pub candidate: String,
}

/// Patroni's switchover: a healthy leader, `leader` (when named) being it,
/// and a fit candidate (`candidate`, or the best one). In maintenance mode
/// only a named candidate and no schedule, since with nobody named the
/// holder's choice would be the automatic one that pause turns off.
/// `scheduled_at_unix_ms` is a time still to come, or `None`.
pub fn plan_switchover(
    state: &ClusterState,
    leader: Option<&str>,
    candidate: Option<&str>,
    scheduled_at_unix_ms: Option<u64>,
    fresh: &dyn Fn(&str) -> bool,
) -> Result<SwitchoverPlan, Refusal> {
    if state.paused() {
        if candidate.is_none() {
            return Err(Refusal::Invalid(
                "the cluster is paused: a switchover needs a named candidate (`candidate`) \
                 in maintenance mode, as in Patroni; name one, or resume the cluster first \
                 (raftgresctl resume)"
                    .into(),
            ));
        }
        if scheduled_at_unix_ms.is_some() {
            return Err(Refusal::Invalid(
                "the cluster is paused: a switchover cannot be scheduled in maintenance mode, \
                 as in Patroni; leave scheduled_at out, or resume the cluster first \
                 (raftgresctl resume)"
                    .into(),
            ));
        }
    }
    let Some(holder) = healthy_leader(state, fresh) else {
        return Err(Refusal::Precondition(
            "there is no healthy leader to switch over from; use a failover to a named candidate"
                .into(),
        ));
    };
    if let Some(named) = leader
        && named != holder
    {
        return Err(Refusal::Precondition(format!(
            "leader name does not match: {named} is not the leader, {holder} is"
        )));
    }
    let chosen = switchover_candidate(state, candidate, &|m| fresh(&m.name))
        .map_err(Refusal::Precondition)?;
    // A scheduled one keeps the candidate the operator named, or lets the
    // holder pick the best one at that time.
    let to = match scheduled_at_unix_ms {
        Some(_) => candidate.map(str::to_owned),
        None => Some(chosen.clone()),
    };
    Ok(SwitchoverPlan {
        request: Switchover {
            from: Some(holder.to_owned()),
            to,
            at_unix_ms: scheduled_at_unix_ms,
        },
        candidate: chosen,
    })
}

/// What a failover to a named candidate takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverPlan {
    /// The candidate already holds the lease (a failover ran while the
    /// request waited); the operator's wish comes true once it runs.
    AlreadyHolds,
    /// Commit this request: a switchover from a healthy leader, as in
    /// Patroni, or, without one, a request the candidate acts on once the
    /// lease is free.
    Request(Switchover),
}

/// Patroni's failover to `candidate`: a member that may lead, is not
/// already the healthy leader, and runs Postgres; with a healthy leader it
/// must also be fit for a switchover.
pub fn plan_failover(
    state: &ClusterState,
    candidate: &str,
    fresh: &dyn Fn(&str) -> bool,
) -> Result<FailoverPlan, Refusal> {
    let Some(m) = state.members.get(candidate) else {
        return Err(Refusal::Precondition(format!(
            "candidate {candidate} is not a member of this cluster"
        )));
    };
    if !tagged_in(m) {
        return Err(Refusal::Precondition(format!(
            "{candidate} may not become primary (witness, nofailover or failover_priority 0)"
        )));
    }
    let leader = healthy_leader(state, fresh);
    if leader == Some(candidate) {
        return Err(Refusal::Precondition(format!(
            "{candidate} is already the leader"
        )));
    }
    if state.lease.is_held_by(candidate) {
        return Ok(FailoverPlan::AlreadyHolds);
    }
    if m.pg_state != PgState::Running {
        return Err(Refusal::Precondition(format!(
            "{candidate} is not running Postgres (state {:?}); it cannot take over",
            m.pg_state
        )));
    }
    if leader.is_some() {
        switchover_candidate(state, Some(candidate), &|m| fresh(&m.name))
            .map_err(Refusal::Precondition)?;
    }
    Ok(FailoverPlan::Request(Switchover {
        from: leader.map(str::to_owned),
        to: Some(candidate.to_owned()),
        at_unix_ms: None,
    }))
}

/// Whether another member took the lease before a failover request, made
/// when the lease was at `before`, could commit: a replica that decided on
/// an older view can win the expired lease and so clear the request. The
/// operator's wish still stands, and asking once more makes it a
/// switchover from that member.
pub fn failover_overtaken(before: Epoch, now: &ClusterState, candidate: &str) -> bool {
    now.switchover.is_none()
        && now.lease.epoch > before
        && now.lease.holder.as_deref().is_some_and(|h| h != candidate)
}

#[cfg(test)]
mod tests;
