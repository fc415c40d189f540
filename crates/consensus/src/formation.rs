//! Whether a member with an empty Raft store forms a new group or joins a
//! running one. Pure: the answers of the configured peers in, a decision out.
//!
//! The danger is a new member forming a group of its own beside the running
//! one. So a member initializes only when no peer can be in a group: every
//! peer either cannot be reached at all or says it has never been in one.
//! A peer that is in a group but cannot add us right now (no leader during
//! an election, a timeout) means "ask again", never "form".

use crate::link::MembershipView;
use crate::types::NodeId;
use std::collections::BTreeMap;

/// What one configured peer said to "take me in".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAnswer {
    /// No connection at all: not started yet, or down.
    Unreachable,
    /// It answered: it has never been in a group either.
    Pristine,
    /// It is in a group but could not add us now; the error says why.
    Busy(String),
    /// Its group's membership after taking us in.
    Member(MembershipView),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinDecision {
    /// A peer's group has us as a voter.
    Joined(MembershipView),
    /// Nobody is in a group: form one from the configured voters.
    Initialize,
    /// Ask again shortly.
    Retry,
}

pub fn decide_join(
    me: NodeId,
    voters: &BTreeMap<NodeId, String>,
    answers: &[PeerAnswer],
) -> JoinDecision {
    if let Some(view) = answers.iter().find_map(|a| match a {
        PeerAnswer::Member(view) if view.voters.contains(&me) => Some(view),
        _ => None,
    }) {
        return JoinDecision::Joined(view.clone());
    }
    let nobody_in_a_group = answers
        .iter()
        .all(|a| matches!(a, PeerAnswer::Unreachable | PeerAnswer::Pristine));
    if nobody_in_a_group && voters.contains_key(&me) {
        JoinDecision::Initialize
    } else {
        JoinDecision::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[NodeId]) -> BTreeMap<NodeId, String> {
        ids.iter()
            .map(|id| (*id, format!("10.0.0.{id}:7000")))
            .collect()
    }

    fn view(voters: &[NodeId], learners: &[NodeId]) -> MembershipView {
        MembershipView {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
        }
    }

    #[test]
    fn a_group_that_has_us_as_voter_means_joined() {
        let v = view(&[1, 2, 3, 4], &[]);
        for others in [
            vec![PeerAnswer::Unreachable, PeerAnswer::Pristine],
            vec![
                PeerAnswer::Busy("no leader".into()),
                PeerAnswer::Unreachable,
            ],
            vec![],
        ] {
            let mut answers = others.clone();
            answers.push(PeerAnswer::Member(v.clone()));
            assert_eq!(
                decide_join(4, &voters(&[1, 2, 3, 4]), &answers),
                JoinDecision::Joined(v.clone()),
                "{answers:?}"
            );
        }
    }

    #[test]
    fn a_group_that_has_us_only_as_learner_is_asked_again() {
        let answers = [PeerAnswer::Member(view(&[1, 2, 3], &[4]))];
        assert_eq!(
            decide_join(4, &voters(&[1, 2, 3, 4]), &answers),
            JoinDecision::Retry
        );
    }

    #[test]
    fn nobody_in_a_group_forms_one() {
        for answers in [
            vec![PeerAnswer::Unreachable, PeerAnswer::Unreachable],
            vec![PeerAnswer::Pristine, PeerAnswer::Unreachable],
            vec![PeerAnswer::Pristine, PeerAnswer::Pristine],
            // A single configured member has no peer to ask.
            vec![],
        ] {
            assert_eq!(
                decide_join(1, &voters(&[1, 2, 3]), &answers),
                JoinDecision::Initialize,
                "{answers:?}"
            );
        }
    }

    #[test]
    fn a_busy_group_is_never_answered_by_forming_another() {
        for answers in [
            vec![
                PeerAnswer::Busy("no leader".into()),
                PeerAnswer::Unreachable,
            ],
            vec![PeerAnswer::Pristine, PeerAnswer::Busy("timeout".into())],
            vec![
                PeerAnswer::Member(view(&[1, 2, 3], &[])),
                PeerAnswer::Unreachable,
            ],
        ] {
            assert_eq!(
                decide_join(4, &voters(&[1, 2, 3, 4]), &answers),
                JoinDecision::Retry,
                "{answers:?}"
            );
        }
    }

    #[test]
    fn a_member_outside_the_configured_voters_never_forms() {
        assert_eq!(
            decide_join(9, &voters(&[1, 2, 3]), &[PeerAnswer::Unreachable]),
            JoinDecision::Retry
        );
    }
}
