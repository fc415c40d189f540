//! Bringing a standby's data back in line with its source, by pg_rewind or
//! a fresh pg_basebackup, with the copy's progress in the status document.

use super::*;

/// How the data is brought in line.
pub(super) enum Copy {
    /// pg_rewind, falling back to a clone when the rewind itself fails.
    Rewind,
    Clone,
}

impl PgLoop {
    /// Stops Postgres, copies from the member `source` as `copy` says, and
    /// starts again as its standby.
    pub(super) async fn copy_then_follow(
        &self,
        local: &mut Local,
        state: &ClusterState,
        source: &str,
        copy: Copy,
    ) -> anyhow::Result<()> {
        let Some(up) = upstream_of(state, source) else {
            return Ok(());
        };
        self.stop_postgres(local).await?;
        let slot = member_slot_name(self.me());
        let system_id = state.identity.as_ref().map(|i| i.system_id.as_str());
        match copy {
            Copy::Rewind => self.rewind_or_clone(&up, &slot, source, system_id).await?,
            Copy::Clone => {
                self.clone_from(&up, &slot, system_id).await?;
                tracing::info!(member = self.me(), %source, "cloned from the primary");
            }
        }
        local.down_since = None;
        self.start(local, self.streaming_from(up), Some(source.to_owned()))
            .await
    }

    /// A source that cannot be reached (just restarting, say) is retried
    /// on the next round: the data is intact and a clone would need the
    /// same source. Any other failure (pg_rewind's own, or the crash
    /// recovery it needs first) falls back to a fresh clone, which keeps
    /// the old data until the copy is complete.
    async fn rewind_or_clone(
        &self,
        up: &Upstream,
        slot: &str,
        source: &str,
        system_id: Option<&str>,
    ) -> anyhow::Result<()> {
        let sink = ProgressSink::new(None);
        let rewound = rewind(&self.settings, up, Some(slot), Some(&sink));
        match self.showing_progress("rewind", &sink, rewound).await {
            Ok(()) => tracing::info!(member = self.me(), %source, "rewound to the primary"),
            Err(e @ (PgError::Connect { .. } | PgError::Timeout { .. })) => {
                tracing::warn!(member = self.me(), %source, error = %e, "rewind source not reachable; retrying the rewind");
                return Err(e.into());
            }
            Err(e) => {
                tracing::warn!(member = self.me(), error = %e, "rewind failed; cloning afresh");
                self.clone_from(up, slot, system_id).await?;
            }
        }
        Ok(())
    }

    /// A fresh copy of `up`'s data by the first of
    /// `postgresql.create_replica_methods` that succeeds, its progress (and
    /// the method running) shown in the API.
    async fn clone_from(
        &self,
        up: &Upstream,
        slot: &str,
        system_id: Option<&str>,
    ) -> Result<(), PgError> {
        let methods = self.live.borrow().replica_methods.clone();
        let source = ReplicaSource {
            upstream: up,
            slot: Some(slot),
            scope: &self.scope,
            system_id,
        };
        let sink = ProgressSink::new(None);
        let cloned = create_replica(&self.settings, &methods, &source, Some(&sink), |method| {
            // A program reports no progress: the method it is shows.
            sink.send_replace(None);
            self.facts.send_modify(|facts| {
                facts.progress = Some(raftgres_api::CopyProgress {
                    action: "clone",
                    method: Some(method.to_owned()),
                    ..Default::default()
                });
            });
        });
        self.showing_progress("clone", &sink, cloned)
            .await
            .map(drop)
    }
    /// Runs `copy`, publishing what it reports into `sink` in the status
    /// document (`progress`, with the rate since its first report) until
    /// it ends.
    async fn showing_progress<T>(
        &self,
        action: &'static str,
        sink: &ProgressSink,
        copy: impl std::future::Future<Output = T>,
    ) -> T {
        let mut reports = sink.subscribe();
        let forward = async {
            let mut first: Option<(Instant, u64)> = None;
            while reports.changed().await.is_ok() {
                let Some(report) = *reports.borrow_and_update() else {
                    continue;
                };
                let (since, from) = *first.get_or_insert((Instant::now(), report.done_bytes));
                let seconds = since.elapsed().as_secs_f64();
                let bytes_per_second = if seconds >= 1.0 {
                    (report.done_bytes.saturating_sub(from) as f64 / seconds) as u64
                } else {
                    0
                };
                self.facts.send_modify(|facts| {
                    let method = facts.progress.take().and_then(|p| p.method);
                    facts.progress = Some(raftgres_api::CopyProgress {
                        action,
                        method,
                        done_bytes: report.done_bytes,
                        total_bytes: report.total_bytes,
                        bytes_per_second,
                    });
                });
            }
        };
        // `forward` ends only with the sink, which outlives `copy`.
        let outcome = tokio::select! {
            outcome = copy => outcome,
            outcome = async { forward.await; std::future::pending::<T>().await } => outcome,
        };
        self.facts.send_modify(|facts| facts.progress = None);
        outcome
    }
}
