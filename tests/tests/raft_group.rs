//! Three real agents on loopback: Raft leader loss and restart from disk, and
//! a Raft leader lost while it is a replica, which must not move the primary.

use nix::sys::signal::Signal;
use raftgres_lab::Lab;
use raftgres_tests::http::Api;
use raftgres_tests::{
    PrimaryMonitor, dsn, eventually, execute, holders, lab_dir, serial, start_lab, status,
    streaming, writable,
};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_raft_leader_elects_another_and_commits_go_on() {
    let _serial = serial().await;
    let dir = lab_dir();
    let (mut lab, _) = start_lab(&dir, 3, false).await;
    let monitor = PrimaryMonitor::start(&lab);
    let names = lab.names();
    let first = status(&lab, &names[0]).await.expect("status");
    let leader_id = eventually(Duration::from_secs(10), "a Raft leader", || async {
        status(&lab, &names[0])
            .await
            .ok()
            .filter(|s| s.raft_leader != 0)
            .map(|s| s.raft_leader)
    })
    .await;
    let leader = lab
        .description
        .members
        .iter()
        .find(|m| m.node_id == leader_id)
        .expect("leader member")
        .name
        .clone();
    let survivors: Vec<String> = names.iter().filter(|n| **n != leader).cloned().collect();
    let applied_before = status(&lab, &leader)
        .await
        .expect("leader status")
        .applied_index;
    lab.kill(&leader).expect("SIGKILL the Raft leader");

    let new_leader = eventually(
        Duration::from_secs(20),
        "a new Raft leader among the survivors",
        || async {
            let s = status(&lab, &survivors[0]).await.ok()?;
            (s.raft_leader != 0 && s.raft_leader != leader_id && s.raft_term > first.raft_term)
                .then_some(s.raft_leader)
        },
    )
    .await;
    // Lease renewals are commits: the applied index must keep growing on both survivors.
    for name in &survivors {
        let start = status(&lab, name)
            .await
            .expect("survivor status")
            .applied_index;
        eventually(Duration::from_secs(10), "commits continue", || async {
            let s = status(&lab, name).await.ok()?;
            (s.applied_index > start + 2 && s.raft_leader == new_leader).then_some(())
        })
        .await;
    }

    // The killed member restarts from its data directory with its state intact.
    lab.start(&leader).expect("restart");
    let first_seen = eventually(
        Duration::from_secs(10),
        "the restarted member answers",
        || async { status(&lab, &leader).await.ok() },
    )
    .await;
    assert!(
        first_seen.applied_index >= applied_before,
        "restarted member lost applied state: {} < {applied_before}",
        first_seen.applied_index
    );
    eventually(
        Duration::from_secs(15),
        "the restarted member catches up",
        || async {
            let me = status(&lab, &leader).await.ok()?;
            let other = status(&lab, &survivors[0]).await.ok()?;
            (me.raft_leader == other.raft_leader
                && me.lease_holder_seen == other.lease_holder_seen
                && me.applied_index + 5 >= other.applied_index
                && me.applied_index > applied_before)
                .then_some(())
        },
    )
    .await;
    monitor.assert_never_two().await;
}

/// The name of the member every live agent among `live` names as Raft leader.
async fn agreed_raft_leader(lab: &Lab, live: &[String], newer_than: u64) -> String {
    let id = eventually(
        Duration::from_secs(20),
        "the live members agree on a Raft leader",
        || async {
            let mut seen = None;
            for name in live {
                let s = status(lab, name).await.ok()?;
                if s.raft_leader == 0 || s.raft_term <= newer_than {
                    return None;
                }
                if seen.is_some_and(|id| id != s.raft_leader) {
                    return None;
                }
                seen = Some(s.raft_leader);
            }
            seen
        },
    )
    .await;
    lab.description
        .members
        .iter()
        .find(|m| m.node_id == id)
        .expect("the leader is a lab member")
        .name
        .clone()
}

async fn history_len(api: &Api, lab: &Lab, name: &str) -> usize {
    let base = &lab.member(name).expect("member").api_url;
    let reply = api.get(base, "/history").await.expect("GET /history");
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body.as_array().expect("history is an array").len()
}

/// Writes one row every 50 ms on `dsn` until stopped; returns how many
/// statements succeeded and the errors of those that failed.
fn start_writer(dsn: String) -> (watch::Sender<bool>, JoinHandle<(usize, Vec<String>)>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let (mut ok, mut failed) = (0, Vec::new());
        while !*stopped.borrow() {
            match execute(&dsn, "INSERT INTO steady VALUES (1)").await {
                Ok(()) => ok += 1,
                Err(e) => failed.push(e),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stopped.changed() => {}
            }
        }
        (ok, failed)
    });
    (stop, task)
}

/// With default timings, the primary must keep its lease while the Raft
/// group elects a new leader: losing a replica that happens to lead Raft
/// (a crash, or a restart during a rolling upgrade) is not a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_raft_leader_while_it_is_a_replica_is_no_failover() {
    let _serial = serial().await;
    let dir = lab_dir();
    let (mut lab, mut primary) = start_lab(&dir, 3, false).await;
    let api = Api::for_lab(&dir.path().join("lab.json"));
    let monitor = PrimaryMonitor::start(&lab);
    let names = lab.names();
    execute(&dsn(&lab, &primary), "CREATE TABLE steady (id int)")
        .await
        .expect("create table");

    for signal in [Signal::SIGKILL, Signal::SIGTERM] {
        for name in names.iter().filter(|n| **n != primary) {
            eventually(Duration::from_secs(60), "every replica streams", || async {
                streaming(&lab, name).await.then_some(())
            })
            .await;
        }
        let mut leader = agreed_raft_leader(&lab, &names, 0).await;
        if leader == primary {
            // Raft leadership stays where it is across a switchover, so this
            // makes the Raft leader a replica.
            let candidate = names
                .iter()
                .find(|n| **n != primary)
                .expect("a replica")
                .clone();
            let base = lab.member(&primary).expect("member").api_url.clone();
            // A member restarted in the previous round may not have reported
            // its status yet, which the switchover refuses with 412.
            eventually(
                Duration::from_secs(30),
                "the switchover is accepted",
                || async {
                    let reply = api
                        .send(
                            "POST",
                            &base,
                            "/switchover",
                            &serde_json::json!({"leader": primary, "candidate": candidate}),
                        )
                        .await
                        .expect("POST /switchover");
                    assert!(reply.status == 200 || reply.status == 412, "{reply:?}");
                    (reply.status == 200).then_some(())
                },
            )
            .await;
            primary = candidate;
            eventually(
                Duration::from_secs(60),
                "the old primary streams again",
                || async { streaming(&lab, &leader).await.then_some(()) },
            )
            .await;
            leader = agreed_raft_leader(&lab, &names, 0).await;
        }
        assert_ne!(leader, primary, "the Raft leader must be a replica here");
        let term = status(&lab, &primary).await.expect("status").raft_term;
        let entries = history_len(&api, &lab, &primary).await;
        let (stop, writer) = start_writer(dsn(&lab, &primary));
        tokio::time::sleep(Duration::from_millis(500)).await;

        lab.signal(&leader, signal).expect("signal the Raft leader");
        lab.wait_exit(&leader, Duration::from_secs(30))
            .expect("the Raft leader's agent exits");
        let live: Vec<String> = names.iter().filter(|n| **n != leader).cloned().collect();
        agreed_raft_leader(&lab, &live, term).await;
        // Long past the holder's deadline and a replica's view of expiry, had
        // the primary missed its renewals.
        tokio::time::sleep(Duration::from_secs(6)).await;

        let _ = stop.send(true);
        let (ok, failed) = writer.await.expect("writer task");
        assert!(
            failed.is_empty(),
            "{signal}: writes on the primary failed while Raft elected a leader ({ok} succeeded): {failed:?}"
        );
        assert!(ok > 50, "{signal}: only {ok} writes succeeded");
        assert_eq!(writable(&lab).await, vec![primary.clone()], "{signal}");
        assert_eq!(
            holders(&lab, &live).await,
            vec![primary.clone()],
            "{signal}"
        );
        assert_eq!(
            history_len(&api, &lab, &primary).await,
            entries,
            "{signal}: a failover was recorded"
        );

        lab.start(&leader).expect("restart the old Raft leader");
    }
    monitor.assert_never_two().await;
}
