//! Watching for two primaries throughout a test: by Postgres (writable),
//! by the REST API (`/primary` answering 200), or both at once.

use crate::http::ApiPrimaryMonitor;
use raftgres_lab::Lab;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Runs a round of observation again and again until stopped, and keeps
/// the largest set of members one round returned: the most that were
/// primary at one moment.
pub(crate) struct MostAtOnce {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl MostAtOnce {
    /// Starts `round`, then waits `pause` (or the stop) between rounds.
    pub(crate) fn start<F, Fut>(pause: Duration, mut round: F) -> MostAtOnce
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Vec<String>> + Send + 'static,
    {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut most = Vec::new();
            while !*stopped.borrow() {
                let now = round().await;
                if now.len() > most.len() {
                    most = now;
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stopped.changed() => {}
                }
            }
            most
        });
        MostAtOnce { stop, task }
    }

    /// Stops the rounds; the largest set seen.
    pub(crate) async fn finish(self) -> Vec<String> {
        let _ = self.stop.send(true);
        self.task.await.expect("monitor task")
    }
}

/// Polls every database member throughout a test and remembers the largest
/// number of writable primaries seen at one moment.
pub struct PrimaryMonitor {
    seen: MostAtOnce,
}

impl PrimaryMonitor {
    pub fn start(lab: &Lab) -> PrimaryMonitor {
        let dsns: Arc<Vec<(String, String)>> = Arc::new(
            lab.description
                .members
                .iter()
                .filter_map(|m| m.dsn.clone().map(|d| (m.name.clone(), d)))
                .collect(),
        );
        let seen = MostAtOnce::start(Duration::from_millis(50), move || {
            let dsns = Arc::clone(&dsns);
            async move {
                let mut now = Vec::new();
                for (name, dsn) in dsns.iter() {
                    if raftgres_lab::pg_query_bool(dsn, "SELECT NOT pg_is_in_recovery()").await
                        == Ok(true)
                    {
                        now.push(name.clone());
                    }
                }
                now
            }
        });
        PrimaryMonitor { seen }
    }

    /// Stops polling; whether two primaries were ever writable together.
    pub async fn two_seen(self) -> bool {
        self.seen.finish().await.len() > 1
    }

    /// Stops polling and fails the test if two primaries were ever writable together.
    pub async fn assert_never_two(self) {
        let names = self.seen.finish().await;
        let count = names.len();
        assert!(count <= 1, "{count} writable primaries at once: {names:?}");
    }
}

/// Both watches at once: never two writable Postgres servers, and never two
/// members answering 200 on `/primary`.
pub struct NeverTwoPrimaries {
    writable: PrimaryMonitor,
    api: ApiPrimaryMonitor,
}

impl NeverTwoPrimaries {
    pub fn start(lab: &Lab) -> NeverTwoPrimaries {
        NeverTwoPrimaries {
            writable: PrimaryMonitor::start(lab),
            api: ApiPrimaryMonitor::start(lab),
        }
    }

    /// Stops both and fails the test if either saw two primaries at once.
    pub async fn assert_never_two(self) {
        self.writable.assert_never_two().await;
        self.api.assert_never_two().await;
    }
}
