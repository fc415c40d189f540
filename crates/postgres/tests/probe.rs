//! The repeated status look: one kept session, replaced when the server
//! restarts or every `REOPEN_EVERY`, and a stopped postmaster named at once.

mod common;

use common::Node;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres_postgres::{PgError, Probe, REOPEN_EVERY};
use std::time::{Duration, Instant};

/// The control sessions the server has now, by backend PID.
async fn control_backends(node: &Node) -> Vec<i32> {
    node.client()
        .await
        .query(
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = 'raftgres-control' ORDER BY pid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_look_keeps_one_session_and_names_a_stopped_postmaster() {
    let Some(mut node) = common::solo_node().await else {
        return;
    };
    let mut probe = Probe::new(&node.settings);
    let pid = node.pm().pid();

    // Many looks, one backend: no connection per look.
    let first = probe.status(Some(pid)).await.unwrap();
    assert!(!first.in_recovery);
    let kept = control_backends(&node).await;
    assert_eq!(kept.len(), 1, "one kept control session, found {kept:?}");
    for _ in 0..5 {
        probe.status(Some(pid)).await.unwrap();
    }
    assert_eq!(control_backends(&node).await, kept);

    // Past REOPEN_EVERY a new connection replaces the kept one: proof that
    // the postmaster still accepts connections.
    tokio::time::sleep(REOPEN_EVERY).await;
    probe.status(Some(pid)).await.unwrap();
    let renewed = common::eventually(
        "the kept session replaced",
        Duration::from_secs(10),
        || async { Some(control_backends(&node).await).filter(|b| b.len() == 1 && *b != kept) },
    )
    .await;
    let kept = renewed;

    // A stopped postmaster is named at once, although the kept backend
    // would still answer, and the session is let go.
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
    common::eventually("the postmaster stopped", Duration::from_secs(5), || async {
        (common::proc_state(pid) == Some('T')).then_some(())
    })
    .await;
    let asked = Instant::now();
    let err = probe.status(Some(pid)).await.unwrap_err();
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
    assert!(
        matches!(err, PgError::PostmasterStopped { pid: p } if p == pid),
        "{err}"
    );
    assert!(err.to_string().contains("kill -CONT"), "{err}");
    assert!(asked.elapsed() < Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    let after_stop = loop {
        match probe.status(Some(pid)).await {
            Ok(status) => break status,
            Err(e) => assert!(Instant::now() < deadline, "no answer after SIGCONT: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!after_stop.in_recovery);
    // The dropped session's backend exits when it reads the closed socket.
    let reopened = common::eventually(
        "one control session again",
        Duration::from_secs(10),
        || async { Some(control_backends(&node).await).filter(|b| b.len() == 1) },
    )
    .await;
    assert_ne!(
        reopened, kept,
        "the session was not replaced after the stop"
    );

    // A restart ends the kept backend; the next look answers from a new
    // session instead of failing.
    node.stop_fast().await;
    assert!(probe.status(None).await.is_err());
    node.start().await;
    let pid = node.pm().pid();
    let restarted = probe.status(Some(pid)).await.unwrap();
    assert_eq!(restarted.system_id, first.system_id);
    assert_eq!(control_backends(&node).await.len(), 1);
    probe.status(Some(pid)).await.unwrap();
    assert_eq!(control_backends(&node).await.len(), 1);
}
