use super::*;
use crate::testing::{cluster, paused, streaming};

fn all_fresh(_: &str) -> bool {
    true
}

fn refused_because(
    case: &str,
    result: Result<impl std::fmt::Debug, Refusal>,
    precondition: bool,
    why: &str,
) {
    match result {
        Err(Refusal::Precondition(reason)) if precondition && reason.contains(why) => {}
        Err(Refusal::Invalid(reason)) if !precondition && reason.contains(why) => {}
        other => panic!("{case}: expected a refusal ({why}), got {other:?}"),
    }
}

#[test]
fn a_switchover_goes_from_the_healthy_leader_to_the_best_or_named_replica() {
    let s = streaming(cluster(Some("a")));
    let best = plan_switchover(&s, None, None, None, &all_fresh).unwrap();
    assert_eq!(best.candidate, "b");
    assert_eq!(
        best.request,
        Switchover {
            from: Some("a".into()),
            to: Some("b".into()),
            at_unix_ms: None
        }
    );
    let named = plan_switchover(&s, Some("a"), Some("c"), None, &all_fresh).unwrap();
    assert_eq!(named.request.to.as_deref(), Some("c"));
}

#[test]
fn a_scheduled_switchover_leaves_the_choice_to_the_holder_unless_one_is_named() {
    let s = streaming(cluster(Some("a")));
    let open = plan_switchover(&s, None, None, Some(99), &all_fresh).unwrap();
    assert_eq!(open.request.to, None);
    assert_eq!(open.request.at_unix_ms, Some(99));
    let named = plan_switchover(&s, None, Some("c"), Some(99), &all_fresh).unwrap();
    assert_eq!(named.request.to.as_deref(), Some("c"));
}

#[test]
fn switchovers_are_refused_with_the_reason() {
    let s = streaming(cluster(Some("a")));
    let stale_a = |name: &str| name != "a";
    let cases: Vec<(&str, Result<SwitchoverPlan, Refusal>, bool, &str)> = vec![
        (
            "paused, nobody named",
            plan_switchover(&paused(s.clone()), None, None, None, &all_fresh),
            false,
            "needs a named candidate",
        ),
        (
            "paused, scheduled",
            plan_switchover(&paused(s.clone()), None, Some("b"), Some(9), &all_fresh),
            false,
            "cannot be scheduled",
        ),
        (
            "no holder",
            plan_switchover(&streaming(cluster(None)), None, None, None, &all_fresh),
            true,
            "no healthy leader",
        ),
        (
            "the holder is stale",
            plan_switchover(&s, None, None, None, &stale_a),
            true,
            "no healthy leader",
        ),
        (
            "another leader named",
            plan_switchover(&s, Some("b"), None, None, &all_fresh),
            true,
            "b is not the leader, a is",
        ),
        (
            "unfit candidate",
            plan_switchover(&s, None, Some("x"), None, &all_fresh),
            true,
            "not a member",
        ),
    ];
    for (case, result, precondition, why) in cases {
        refused_because(case, result, precondition, why);
    }
}

#[test]
fn a_paused_cluster_switches_over_to_a_named_candidate_at_once() {
    let s = paused(streaming(cluster(Some("a"))));
    let plan = plan_switchover(&s, None, Some("c"), None, &all_fresh).unwrap();
    assert_eq!(plan.request.to.as_deref(), Some("c"));
}

#[test]
fn a_failover_with_a_healthy_leader_is_a_switchover_and_without_one_a_request() {
    let s = streaming(cluster(Some("a")));
    assert_eq!(
        plan_failover(&s, "c", &all_fresh),
        Ok(FailoverPlan::Request(Switchover {
            from: Some("a".into()),
            to: Some("c".into()),
            at_unix_ms: None
        }))
    );
    let mut leaderless = s.clone();
    leaderless.members.get_mut("a").unwrap().pg_state = PgState::Crashed;
    assert_eq!(
        plan_failover(&leaderless, "c", &all_fresh),
        Ok(FailoverPlan::Request(Switchover {
            from: None,
            to: Some("c".into()),
            at_unix_ms: None
        }))
    );
    let mut taken = s.clone();
    taken.lease.holder = Some("c".into());
    assert_eq!(
        plan_failover(&taken, "c", &all_fresh),
        Ok(FailoverPlan::AlreadyHolds)
    );
}

#[test]
fn failovers_are_refused_with_the_reason() {
    let s = streaming(cluster(Some("a")));
    let mut stopped = s.clone();
    stopped.members.get_mut("c").unwrap().pg_state = PgState::Stopped;
    let mut tagged_out = s.clone();
    tagged_out.members.get_mut("c").unwrap().tags.nofailover = true;
    let mut lagging = s.clone();
    lagging.members.get_mut("c").unwrap().replay_lsn = Some(raftgres_state::Lsn(10));
    let cases = [
        ("unknown", &s, "x", "not a member"),
        ("the leader itself", &s, "a", "already the leader"),
        ("nofailover", &tagged_out, "c", "may not become primary"),
        ("stopped", &stopped, "c", "not running Postgres"),
        (
            "unfit for a switchover",
            &lagging,
            "c",
            "maximum_lag_on_failover",
        ),
    ];
    for (case, state, candidate, why) in cases {
        refused_because(case, plan_failover(state, candidate, &all_fresh), true, why);
    }
}

#[test]
fn a_failover_is_overtaken_only_by_another_member_taking_the_lease() {
    let mut s = cluster(Some("b"));
    s.lease.epoch = Epoch(2);
    assert!(failover_overtaken(Epoch(1), &s, "c"));
    assert!(!failover_overtaken(Epoch(2), &s, "c"), "same epoch");
    assert!(
        !failover_overtaken(Epoch(1), &s, "b"),
        "the candidate took it"
    );
    s.switchover = Some(Switchover {
        from: None,
        to: Some("c".into()),
        at_unix_ms: None,
    });
    assert!(!failover_overtaken(Epoch(1), &s, "c"), "still pending");
}
