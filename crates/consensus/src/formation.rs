//! Whether a member with an empty Raft store forms a new group or joins a
//! running one, and whether a group takes in a member that asks. Pure: what
//! the peers (or the membership) say in, a decision out.
//!
//! The danger is a new member forming a group of its own beside the running
//! one. So a member initializes only when no peer can be in a group: every
//! peer either cannot be reached at all or says it has never been in one.
//! A peer that is in a group but cannot add us right now (no leader during
//! an election, a timeout) means "ask again", never "form".
//!
//! The other danger is a member that lost its store (a wiped or replaced
//! disk) taking its old place: it has lost its vote and its log, so it could
//! vote twice in one term, or help elect a leader that lacks a committed
//! entry. Each store has an incarnation, the group records it per member,
//! and a store of another incarnation never takes a recorded place.

use crate::link::MembershipView;
use crate::types::{Incarnation, NodeId, UNCLAIMED};
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
    /// Its group knows our node id under another incarnation.
    Refused,
    /// Its group's membership after taking us in.
    Member(MembershipView),
}

/// Whether a member may form a new group when no peer is in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewGroup {
    Allowed,
    /// It may only join a running group; the reason says why.
    Forbidden {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinDecision {
    /// A peer's group has us as a voter.
    Joined(MembershipView),
    /// Nobody is in a group: form one from the configured voters.
    Initialize,
    /// Ask again shortly.
    Retry,
    /// The group knows our node id under another incarnation: this store
    /// must not take that place.
    Refused,
    /// Nobody is in a group, and this member may not form one.
    MayNotForm { reason: String },
}

pub fn decide_join(
    me: NodeId,
    voters: &BTreeMap<NodeId, String>,
    answers: &[PeerAnswer],
    new_group: &NewGroup,
) -> JoinDecision {
    // A refusal comes from the group's leader, and no later answer of the
    // same round can make this store the one the group recorded.
    if answers.contains(&PeerAnswer::Refused) {
        return JoinDecision::Refused;
    }
    if let Some(view) = answers.iter().find_map(|a| match a {
        PeerAnswer::Member(view) if view.voters.contains(&me) => Some(view),
        _ => None,
    }) {
        return JoinDecision::Joined(view.clone());
    }
    let nobody_in_a_group = answers
        .iter()
        .all(|a| matches!(a, PeerAnswer::Unreachable | PeerAnswer::Pristine));
    if !nobody_in_a_group || !voters.contains_key(&me) {
        return JoinDecision::Retry;
    }
    match new_group {
        NewGroup::Allowed => JoinDecision::Initialize,
        NewGroup::Forbidden { reason } => JoinDecision::MayNotForm {
            reason: reason.clone(),
        },
    }
}

/// What the group's leader does when a store of incarnation `asking` asks
/// to be member `node_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The id is not in the group: add it as a learner, and promote it to
    /// voter once it has caught up.
    Add,
    /// The place is this store's, or was never claimed (a voter the group
    /// was formed with): record the incarnation and address, keep the place.
    Keep,
    /// The place belongs to another incarnation, which held its vote and
    /// log: refuse. It must be removed before this store may join.
    Refuse { recorded: Incarnation },
}

pub fn decide_admission(recorded: Option<Incarnation>, asking: Incarnation) -> Admission {
    match recorded {
        None => Admission::Add,
        Some(r) if r == asking || r == UNCLAIMED => Admission::Keep,
        Some(r) => Admission::Refuse { recorded: r },
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
                decide_join(4, &voters(&[1, 2, 3, 4]), &answers, &NewGroup::Allowed),
                JoinDecision::Joined(v.clone()),
                "{answers:?}"
            );
        }
    }

    #[test]
    fn a_group_that_has_us_only_as_learner_is_asked_again() {
        let answers = [PeerAnswer::Member(view(&[1, 2, 3], &[4]))];
        assert_eq!(
            decide_join(4, &voters(&[1, 2, 3, 4]), &answers, &NewGroup::Allowed),
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
                decide_join(1, &voters(&[1, 2, 3]), &answers, &NewGroup::Allowed),
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
                decide_join(4, &voters(&[1, 2, 3, 4]), &answers, &NewGroup::Allowed),
                JoinDecision::Retry,
                "{answers:?}"
            );
        }
    }

    #[test]
    fn a_member_outside_the_configured_voters_never_forms() {
        assert_eq!(
            decide_join(
                9,
                &voters(&[1, 2, 3]),
                &[PeerAnswer::Unreachable],
                &NewGroup::Allowed
            ),
            JoinDecision::Retry
        );
    }

    #[test]
    fn a_refusal_wins_over_every_other_answer() {
        for others in [
            vec![],
            vec![PeerAnswer::Member(view(&[1, 2, 3, 4], &[]))],
            vec![PeerAnswer::Pristine, PeerAnswer::Unreachable],
            vec![PeerAnswer::Busy("no leader".into())],
        ] {
            let mut answers = others.clone();
            answers.insert(0, PeerAnswer::Refused);
            assert_eq!(
                decide_join(4, &voters(&[1, 2, 3, 4]), &answers, &NewGroup::Allowed),
                JoinDecision::Refused,
                "{answers:?}"
            );
        }
    }

    #[test]
    fn a_member_forbidden_to_form_says_why_instead() {
        let forbidden = NewGroup::Forbidden {
            reason: "old data".into(),
        };
        assert_eq!(
            decide_join(
                1,
                &voters(&[1, 2, 3]),
                &[PeerAnswer::Unreachable, PeerAnswer::Pristine],
                &forbidden
            ),
            JoinDecision::MayNotForm {
                reason: "old data".into()
            }
        );
        // It still joins a running group, and waits for a busy one.
        let v = view(&[1, 2, 3], &[]);
        assert_eq!(
            decide_join(
                1,
                &voters(&[1, 2, 3]),
                &[PeerAnswer::Member(v.clone())],
                &forbidden
            ),
            JoinDecision::Joined(v)
        );
        assert_eq!(
            decide_join(
                1,
                &voters(&[1, 2, 3]),
                &[PeerAnswer::Busy("no leader".into())],
                &forbidden
            ),
            JoinDecision::Retry
        );
    }

    #[test]
    fn admission_by_recorded_incarnation() {
        for (recorded, asking, expected) in [
            (None, 7, Admission::Add),
            (Some(7), 7, Admission::Keep),
            (Some(UNCLAIMED), 7, Admission::Keep),
            (Some(5), 7, Admission::Refuse { recorded: 5 }),
        ] {
            assert_eq!(
                decide_admission(recorded, asking),
                expected,
                "{recorded:?} {asking}"
            );
        }
    }
}
