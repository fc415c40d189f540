//! The lease under real signals: a stopped holder loses it only after its
//! deadline, and never believes it holds it again; a witness never holds it.

use nix::sys::signal::Signal;
use raftgres_tests::{
    data_file, freeze_agent, holders, members_except, monitored_lab, never_claims_the_lease,
    new_holder, status, thaw_agent, until_sole_writable,
};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_holder_loses_the_lease_only_after_its_deadline() {
    let (_dir, lab, old, monitor) = monitored_lab(3, false).await;
    let names = lab.names();
    let others = members_except(&lab, &[&old]);
    freeze_agent(&lab, &old);

    let new = new_holder(&lab, &others, Duration::from_secs(20)).await;
    let new_status = status(&lab, &new).await.expect("new holder status");

    thaw_agent(&lab, &old);
    // From the first answer on, the old holder must never claim the lease.
    let mut answers = never_claims_the_lease(&lab, &old, Duration::from_secs(3)).await;
    assert!(answers.len() > 10);
    let old_status = answers.pop().expect("the old holder answers after SIGCONT");
    assert!(
        new_status.lease_epoch > old_status.lease_epoch,
        "epoch must grow: {new_status:?} vs {old_status:?}"
    );
    // Both instants are CLOCK_MONOTONIC on this machine, so they compare.
    assert!(
        new_status.lease_acquire_sent_mono_ns > old_status.lease_deadline_mono_ns,
        "the new holder sent its acquire at {} ns, before the old holder's deadline {} ns",
        new_status.lease_acquire_sent_mono_ns,
        old_status.lease_deadline_mono_ns
    );
    assert_eq!(
        holders(&lab, &names).await,
        vec![new.clone()],
        "exactly one holder after the dust settles"
    );
    assert_eq!(
        old_status.lease_holder_seen, new,
        "the old holder sees the new one"
    );
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_votes_but_never_holds_the_lease() {
    let (_dir, mut lab, first, monitor) = monitored_lab(2, true).await;
    let witness = lab
        .description
        .members
        .iter()
        .find(|m| m.witness)
        .expect("witness")
        .name
        .clone();
    let other = lab
        .description
        .members
        .iter()
        .find(|m| !m.witness && m.name != first)
        .expect("second database member")
        .name
        .clone();
    lab.kill(&first).expect("SIGKILL the holder");
    // Two of three voters remain (one is the witness): the group still commits,
    // and the lease goes to the remaining database member, never the witness.
    let started = Instant::now();
    loop {
        let w = status(&lab, &witness).await.expect("witness status");
        assert!(!w.holds_lease, "the witness holds the lease: {w:?}");
        assert!(w.witness);
        if status(&lab, &other).await.is_ok_and(|s| s.holds_lease) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{other} never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let w = status(&lab, &witness).await.expect("witness status");
    assert_eq!(w.lease_holder_seen, other);
    assert!(!w.holds_lease);
    assert!(
        lab.member(&witness).expect("witness").dsn.is_none(),
        "a witness runs no Postgres"
    );
    until_sole_writable(
        &lab,
        &other,
        Duration::from_secs(20),
        "the remaining database member's Postgres takes writes",
    )
    .await;
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_the_keeper_fences_when_no_agent_returns() {
    let (_dir, mut lab, old, monitor) = monitored_lab(3, false).await;
    let others = members_except(&lab, &[&old]);
    let old_epoch = status(&lab, &old).await.expect("holder status").lease_epoch;
    lab.signal(&old, Signal::SIGTERM)
        .expect("SIGTERM the holder");
    let exit = lab
        .wait_exit(&old, Duration::from_secs(15))
        .expect("the agent exits after SIGTERM");
    assert!(exit.success(), "the agent exited with {exit:?}");
    let keeper_log = data_file(&lab, &old, "keeper.log");
    // A survivor takes the lease once it expires.
    let new = new_holder(&lab, &others, Duration::from_secs(15)).await;
    assert!(status(&lab, &new).await.expect("new holder").lease_epoch > old_epoch);
    let log = std::fs::read_to_string(&keeper_log).expect("keeper log");
    assert!(
        log.contains("lease deadline passed unrenewed"),
        "the keeper did not fence at the deadline:\n{log}"
    );
    monitor.assert_never_two().await;
}
