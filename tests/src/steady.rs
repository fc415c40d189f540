//! "Losing the Raft leader is no failover": helpers that put Raft leadership
//! on a replica, then watch the primary while that leader is lost and
//! check afterwards that the primary never stopped taking writes.

use crate::http::Api;
use crate::{dsn, eventually, execute, holders, log_tails, status, streaming, writable};
use raftgres_lab::Lab;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The name of the member every member of `live` names as Raft leader, in
/// a term after `newer_than`, if they agree now.
async fn raft_leader_now(lab: &Lab, live: &[String], newer_than: u64) -> Option<String> {
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
    crate::member_with_id(lab, seen?)
}

/// Waits until every member of `live` names the same Raft leader, in a
/// term after `newer_than`.
pub async fn agreed_raft_leader(lab: &Lab, live: &[String], newer_than: u64) -> String {
    eventually(
        Duration::from_secs(20),
        "the live members agree on a Raft leader",
        || raft_leader_now(lab, live, newer_than),
    )
    .await
}

async fn history_len(api: &Api, lab: &Lab, name: &str) -> usize {
    api.history(&lab.member(name).expect("member").api_url)
        .await
        .len()
}

/// Waits until there is one primary and every replica streams, with the
/// Raft leader on a replica, and returns `(primary, raft_leader)`. While
/// the Raft leader is the primary, it asks for a switchover, since Raft
/// leadership stays where it is across one.
pub async fn raft_leader_on_a_replica(lab: &Lab, api: &Api) -> (String, String) {
    let names = lab.names();
    eventually(
        Duration::from_secs(120),
        "one primary, streaming replicas and the Raft leader on a replica",
        || async {
            let [primary] = writable(lab).await.try_into().ok()?;
            for name in names.iter().filter(|n| **n != primary) {
                if !streaming(lab, name).await {
                    return None;
                }
            }
            let leader = raft_leader_now(lab, &names, 0).await?;
            if leader != primary {
                return Some((primary, leader));
            }
            let candidate = names.iter().find(|n| **n != primary)?;
            let base = &lab.member(&primary).expect("member").api_url;
            let reply = api
                .send(
                    "POST",
                    base,
                    "/switchover",
                    &serde_json::json!({"leader": primary, "candidate": candidate}),
                )
                .await
                .expect("POST /switchover");
            // 412: a member restarted just before has not reported its status
            // yet; 503: the switchover was abandoned. Either way, look again.
            assert!([200, 412, 503].contains(&reply.status), "{reply:?}");
            None
        },
    )
    .await
}

/// What the primary looked like before the Raft leader was lost, and a
/// writer that keeps writing on it (table `steady`, created if missing).
pub struct SteadyPrimary {
    primary: String,
    term: u64,
    history: usize,
    stop: watch::Sender<bool>,
    writer: JoinHandle<(usize, Vec<String>)>,
}

impl SteadyPrimary {
    pub async fn start(lab: &Lab, api: &Api, primary: &str) -> SteadyPrimary {
        let target = dsn(lab, primary);
        execute(&target, "CREATE TABLE IF NOT EXISTS steady (id int)")
            .await
            .expect("create the table on the primary");
        let term = status(lab, primary).await.expect("status").raft_term;
        let history = history_len(api, lab, primary).await;
        let (stop, mut stopped) = watch::channel(false);
        let writer = tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !*stopped.borrow() {
                match execute(&target, "INSERT INTO steady VALUES (1)").await {
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
        tokio::time::sleep(Duration::from_millis(500)).await;
        SteadyPrimary {
            primary: primary.to_owned(),
            term,
            history,
            stop,
            writer,
        }
    }

    /// Call once the Raft leader is lost: waits for `live` to elect a new
    /// one, then long enough for a missed renewal to have moved the primary,
    /// and fails the test if it did, or if any write on it failed.
    pub async fn assert_unmoved(self, lab: &Lab, api: &Api, live: &[String], what: &str) {
        agreed_raft_leader(lab, live, self.term).await;
        // Well past the primary's deadline and a replica's view of expiry,
        // had the primary missed its renewals.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let _ = self.stop.send(true);
        let (ok, failed) = self.writer.await.expect("writer task");
        let primary = &self.primary;
        assert!(
            failed.is_empty(),
            "{what}: writes on the primary failed while Raft elected a leader ({ok} succeeded): {failed:?}\n{}",
            log_tails(lab, live)
        );
        assert!(ok > 50, "{what}: only {ok} writes succeeded");
        assert_eq!(writable(lab).await, vec![primary.clone()], "{what}");
        assert_eq!(holders(lab, live).await, vec![primary.clone()], "{what}");
        assert_eq!(
            history_len(api, lab, primary).await,
            self.history,
            "{what}: a failover was recorded"
        );
    }
}
