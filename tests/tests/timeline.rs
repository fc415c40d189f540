//! Rule 10 under real processes: a fenced old primary that was never
//! rewound must not take the lease back and start on its old timeline,
//! which would drop the writes the primary after it acknowledged.

use nix::sys::signal::Signal;
use raftgres_tests::http::Api;
use raftgres_tests::{
    dsn, eventually, execute_on, freeze_agent, log_tail, monitored_lab, query_i64, status,
    streaming, until_holds, until_sole_writable, writable,
};
use std::time::{Duration, Instant};

/// Longer than a `ttl` (3 s) plus a failover: an old primary that is
/// allowed to compete takes a released lease within a second or two.
const MUST_NOT_LEAD_FOR: Duration = Duration::from_secs(10);

async fn has_row(dsn: &str, id: i64) -> bool {
    query_i64(dsn, &format!("SELECT count(*) FROM t WHERE id = {id}")).await == Ok(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrewound_old_primary_never_takes_the_lease_back() {
    let (_dir, mut lab, old, monitor) = monitored_lab(2, true).await;
    let api = Api::of(&lab);
    let member = |witness: bool| {
        lab.description
            .members
            .iter()
            .find(|m| m.witness == witness && m.name != old)
            .expect("member")
            .clone()
    };
    let new = member(false).name;
    let witness_api = member(true).api_url;
    // Lag must not be what keeps the old primary out: allow any.
    api.send_ok(
        "PATCH",
        &witness_api,
        "/config",
        &serde_json::json!({"maximum_lag_on_failover": 1u64 << 40}),
    )
    .await;
    // The checkpoint makes the old primary's stopped data show a recent LSN.
    execute_on(
        &lab,
        &old,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); CHECKPOINT",
    )
    .await;
    until_holds(
        Duration::from_secs(10),
        "the first row reaches the replica",
        || async { has_row(&dsn(&lab, &new), 1).await },
    )
    .await;

    // The old primary's agent freezes: its fence stops its Postgres, and the
    // replica takes over on timeline 2 and acknowledges a write.
    freeze_agent(&lab, &old);
    until_sole_writable(
        &lab,
        &new,
        Duration::from_secs(30),
        "the replica takes over",
    )
    .await;
    execute_on(&lab, &new, "INSERT INTO t VALUES (2)").await;
    eventually(
        Duration::from_secs(10),
        "the lease records timeline 2",
        || async {
            let reply = api.get(&witness_api, "/cluster").await.ok()?;
            (reply.body["lease"]["timeline"] == 2).then_some(())
        },
    )
    .await;

    // The new primary's agent stops and its lease runs out before the old
    // one was rewound; then the old one's agent comes back. (The frozen
    // agent goes first: a frozen peer holds up an agent's exit on SIGTERM.)
    lab.kill(&old).expect("SIGKILL the frozen agent");
    lab.signal(&new, Signal::SIGTERM)
        .expect("SIGTERM the new primary's agent");
    let exit = lab
        .wait_exit(&new, Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "{new}'s agent did not exit after SIGTERM\n{}",
                log_tail(&lab, &new)
            )
        });
    assert!(exit.success(), "{new}'s agent exited with {exit:?}");
    // Its keeper runs Postgres on until the lease deadline, then fences it.
    until_holds(
        Duration::from_secs(15),
        "the keeper fences the primary whose agent left",
        || async { writable(&lab).await.is_empty() },
    )
    .await;
    lab.start(&old).expect("restart the old primary's agent");
    eventually(
        Duration::from_secs(20),
        "the old primary's agent answers",
        || async { status(&lab, &old).await.ok() },
    )
    .await;

    // The lease is free, and the old primary's data on timeline 1 looks
    // like the best there is: it must still not lead.
    let watching = Instant::now();
    while watching.elapsed() < MUST_NOT_LEAD_FOR {
        let s = status(&lab, &old).await;
        assert!(
            !s.as_ref().is_ok_and(|s| s.holds_lease),
            "{old} took the lease with data on an old timeline: {s:?}\n{}",
            log_tail(&lab, &old)
        );
        assert!(
            writable(&lab).await.is_empty(),
            "a primary runs without the new primary's data\n{}",
            log_tail(&lab, &old)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The new primary comes back: it owns timeline 2, starts again as
    // primary, and the old one rewinds onto it.
    lab.start(&new).expect("restart the new primary's agent");
    until_sole_writable(
        &lab,
        &new,
        Duration::from_secs(30),
        "the new primary runs again",
    )
    .await;
    assert!(
        has_row(&dsn(&lab, &new), 2).await,
        "the acknowledged write is on the primary"
    );
    until_holds(
        Duration::from_secs(60),
        "the old primary rewinds and streams the acknowledged write",
        || async { streaming(&lab, &old).await && has_row(&dsn(&lab, &old), 2).await },
    )
    .await;
    monitor.assert_never_two().await;
}
