//! "Primary isolated" (issue 3): every member's agent, Postgres and
//! pgbouncer run in a network namespace of their own, joined by a bridge;
//! the primary's link is cut, then healed (see `scenario.rs`).
//!
//! A lab scenario costs about a minute of real processes, so it runs once
//! for this binary ([`recording`]) and each test judges one property of
//! what it recorded. A scenario that cannot run to its end (a set-up step,
//! the network) fails every test with its error.
//!
//! The last test cuts off the Raft leader while it is a replica: the
//! primary must keep its lease through the election.
//!
//! Needs root (namespaces, veths, a bridge); skipped otherwise. Every address
//! is on the test's own bridge and namespaces (see `raftgres_lab::LabNetwork`).

mod scenario;

use raftgres_tests::http::Api;
use raftgres_tests::steady::{SteadyPrimary, raft_leader_on_a_replica};
use raftgres_tests::{PrimaryMonitor, run_scenario, until_streaming};
use scenario::{AfterPromotion, NetnsLab, Recording, after_cut, last_maybe_committed, ms};
use std::sync::OnceLock;
use std::time::Duration;

/// The scenario's recording, run on the first call; `None` when skipped.
fn recording() -> Option<&'static Recording> {
    static SCENARIO: OnceLock<Result<Option<Recording>, String>> = OnceLock::new();
    SCENARIO
        .get_or_init(|| run_scenario(scenario::run))
        .as_ref()
        .unwrap_or_else(|e| panic!("the isolation scenario failed: {e}"))
        .as_ref()
}

/// The recording and what followed the promotion, for a property that
/// only means something once the majority has promoted; `None` when skipped.
fn after_promotion() -> Option<(&'static Recording, &'static AfterPromotion)> {
    recording().map(|r| (r, r.promoted()))
}

#[test]
fn the_majority_promotes_one_of_its_own_under_a_newer_lease() {
    let Some(r) = recording() else { return };
    let p = r.promotion.as_ref().unwrap_or_else(|e| {
        panic!("no remaining member accepted a write within 30 s of the cut: {e}")
    });
    let new = &p.new.member;
    let status = p
        .new_status
        .as_ref()
        .unwrap_or_else(|e| panic!("{new} took writes but gave no status: {e}"));
    assert!(
        status.holds_lease,
        "{new} accepts writes without holding the lease: {status:?}"
    );
    assert!(
        status.lease_epoch > r.old_epoch,
        "the lease epoch did not grow: {} -> {status:?}",
        r.old_epoch
    );
}

/// Whatever the isolated primary may have committed (acknowledged, or cut
/// short mid-statement) was known by an instant earlier than the new
/// primary's first attempt that may have committed.
#[test]
fn the_isolated_primary_commits_nothing_after_the_majority_sends_its_first_write() {
    let Some((r, p)) = after_promotion() else {
        return;
    };
    let old_last =
        last_maybe_committed(&p.direct_isolated).expect("the writer committed before the cut");
    assert!(
        old_last < p.new.sent,
        "the isolated primary may have committed a write {} after the new primary's first \
         write was sent ({}): two writable primaries. Writer log after the cut: {:?}",
        ms(old_last - p.new.sent),
        p.new.member,
        after_cut(&p.direct_isolated, r.cut)
    );
}

/// A fence that only stalls its clients would also commit nothing; the
/// isolated primary must say no before the majority takes over.
#[test]
fn the_isolated_primary_refuses_writes_before_the_majority_promotes() {
    let Some((r, p)) = after_promotion() else {
        return;
    };
    let old_last =
        last_maybe_committed(&p.direct_isolated).expect("the writer committed before the cut");
    let refusals = p
        .direct_isolated
        .iter()
        .filter(|a| a.at > old_last && a.at < p.new.sent && !a.outcome.may_have_committed())
        .count();
    assert!(
        refusals > 0,
        "the writer did not see the old primary refuse a write before the promotion. Writer \
         log after the cut: {:?}",
        after_cut(&p.direct_isolated, r.cut)
    );
}

#[test]
fn the_old_primary_commits_nothing_after_the_promotion_through_the_heal() {
    let Some((r, p)) = after_promotion() else {
        return;
    };
    let isolated = last_maybe_committed(&p.direct_isolated).expect("committed writes");
    let whole = last_maybe_committed(&p.direct_whole).expect("committed writes");
    assert_eq!(
        whole,
        isolated,
        "the old primary took a write after the promotion: {:?}",
        p.direct_whole
            .iter()
            .filter(|a| a.at > p.new.sent && a.outcome.may_have_committed())
            .map(|a| format!("{} after the cut: {}", ms(a.at - r.cut), a.outcome))
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_isolated_primarys_pgbouncer_acknowledges_nothing_once_the_majority_promotes() {
    let Some((r, p)) = after_promotion() else {
        return;
    };
    let (new, sent) = (&p.new.member, p.new.sent);
    let acked = p
        .pooled
        .iter()
        .filter(|a| a.at >= sent && a.outcome.is_committed())
        .count();
    assert!(
        acked == 0,
        "the isolated old primary's pgbouncer acknowledged {acked} writes after {new}'s first \
         write was sent: two writable primaries. Its writer after the cut: {:?}\n{}",
        after_cut(&p.pooled, r.cut),
        p.old_logs_isolated
    );
    // Without an attempt after the promotion, the check above proves nothing.
    let tried = p.pooled.iter().filter(|a| a.sent >= sent).count();
    assert!(
        tried > 0,
        "the pgbouncer writer made no attempt after the promotion: {:?}",
        after_cut(&p.pooled, r.cut)
    );
}

#[test]
fn every_surviving_members_pgbouncer_sends_writes_to_the_new_primary() {
    let Some((_, p)) = after_promotion() else {
        return;
    };
    let failed: Vec<&String> = p
        .survivors
        .iter()
        .filter_map(|(_, took)| took.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{}",
        failed
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn after_the_heal_the_old_primary_streams_from_the_new_one_with_its_writes() {
    let Some((_, p)) = after_promotion() else {
        return;
    };
    if let Err(e) = &p.rejoined {
        panic!("{e}");
    }
}

#[test]
fn the_old_primary_rejoins_by_pg_rewind_not_a_fresh_clone() {
    let Some((r, p)) = after_promotion() else {
        return;
    };
    let log = p
        .old_agent_log
        .as_ref()
        .unwrap_or_else(|e| panic!("the old primary's agent log: {e}"));
    assert!(
        log.contains("rewound to the primary"),
        "{} rejoined without pg_rewind{}\n{}",
        r.old,
        if log.contains("cloning afresh") {
            " (the rewind failed and it cloned afresh)"
        } else {
            ""
        },
        p.old_logs_rejoined
    );
}

#[test]
fn the_lease_stays_with_the_new_primary_after_the_heal() {
    let Some((_, p)) = after_promotion() else {
        return;
    };
    let holder = p
        .healed_holder
        .as_ref()
        .unwrap_or_else(|e| panic!("the healed cluster is not healthy: {e}"));
    assert_eq!(
        *holder, p.new.member,
        "the lease stays with the new primary"
    );
}

#[test]
fn every_write_acknowledged_through_the_old_primarys_pgbouncer_before_the_cut_survives() {
    let Some((r, p)) = after_promotion() else {
        return;
    };
    let new = &p.new.member;
    let rows = p.final_rows();
    let lost: Vec<i64> = r
        .acked_before
        .iter()
        .filter(|n| !rows.contains(n))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "rows acknowledged through {}'s pgbouncer before the cut are missing on {new}: {lost:?}",
        r.old
    );
}

#[test]
fn no_write_sent_through_the_old_primarys_pgbouncer_after_the_cut_survives() {
    let Some((r, p)) = after_promotion() else {
        return;
    };
    let new = &p.new.member;
    let rows = p.final_rows();
    let survived: Vec<i64> = p
        .pooled
        .iter()
        .filter(|a| a.sent >= r.cut)
        .filter_map(|a| a.n)
        .filter(|n| rows.contains(n))
        .collect();
    assert!(
        survived.is_empty(),
        "rows sent through {}'s pgbouncer after the cut are on {new}: {survived:?}; \
         the writer after the cut: {:?}",
        r.old,
        after_cut(&p.pooled, r.cut)
    );
}

/// The partition flavour of "losing the Raft leader is no failover": the
/// Raft leader, a replica, is cut off, so the primary's renewals in flight
/// to it stall (no resets) instead of failing at once. The primary must
/// keep its lease through the election all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_raft_leader_that_is_a_replica_moves_no_primary() {
    let Some((env, _)) = NetnsLab::up().await else {
        return;
    };
    let (lab, net) = (&env.lab, &env.net);
    let api = Api::for_lab(&env.dir.path().join("lab.json"));
    let monitor = PrimaryMonitor::start(lab);
    let (primary, leader) = raft_leader_on_a_replica(lab, &api).await;
    let leader_ns = lab
        .member(&leader)
        .expect("member")
        .netns
        .clone()
        .expect("the Raft leader runs in a namespace");
    let steady = SteadyPrimary::start(lab, &api, &primary).await;
    net.isolate(&leader_ns).expect("cut the Raft leader's link");
    let live: Vec<String> = lab.names().into_iter().filter(|n| *n != leader).collect();
    steady
        .assert_unmoved(lab, &api, &live, "Raft leader isolated")
        .await;
    net.heal(&leader_ns).expect("heal the Raft leader's link");
    until_streaming(
        lab,
        &leader,
        Duration::from_secs(60),
        "the healed replica streams again",
    )
    .await;
    monitor.assert_never_two().await;
}
