//! Stopping and starting the postmaster through the keeper, with the
//! hooks and callbacks that go with each, and waiting for it to answer.

use super::*;

impl PgLoop {
    /// Stops the postmaster cleanly (the keeper fences it if it does not
    /// stop in time), and calls `on_stop` when it did stop a server.
    pub(super) async fn stop_postgres(&self, local: &mut Local) -> anyhow::Result<()> {
        if !local.running {
            return Ok(());
        }
        self.stop_server(local).await?;
        self.call_back(
            CallbackEvent::OnStop,
            local.callback_role.unwrap_or(CallbackRole::Replica),
        );
        Ok(())
    }

    /// Stops the postmaster as part of another step, which calls back.
    async fn stop_server(&self, local: &mut Local) -> anyhow::Result<()> {
        if !local.running {
            return Ok(());
        }
        self.before_stop().await;
        self.keeper(
            Request::Stop {
                mode: StopMode::Fast,
                timeout_ms: STOP_TIMEOUT.as_millis() as u64,
            },
            STOP_TIMEOUT + FENCE_TIMEOUT,
        )
        .await
        .context("cannot stop Postgres")?;
        local.running = false;
        Ok(())
    }

    /// Runs `before_stop`, if configured, and waits for it: as Patroni's,
    /// its outcome does not hold the stop back.
    async fn before_stop(&self) {
        self.run_hook("before_stop", |s| &s.before_stop).await;
    }

    pub(super) async fn start(
        &self,
        local: &mut Local,
        role: Role,
        upstream: Option<String>,
    ) -> anyhow::Result<()> {
        self.start_within(local, role, upstream, START_TIMEOUT)
            .await
    }

    /// [`Self::start`], failing if the server does not accept connections
    /// within `ready_within` (a restart's `timeout`). The server is left
    /// as it is then: the next rounds find it unanswering, and fence it
    /// (and the leader gives up its lease) as any server that stops
    /// answering.
    pub(in crate::pg_loop) async fn start_within(
        &self,
        local: &mut Local,
        role: Role,
        upstream: Option<String>,
        ready_within: Duration,
    ) -> anyhow::Result<()> {
        let was_running = local.running;
        self.stop_server(local).await?;
        let primary = matches!(role, Role::Primary);
        if primary {
            self.require_lease()?;
        }
        self.write_conf(local, &role)?;
        local.upstream = upstream;
        self.keeper(Request::Start { primary }, START_REQUEST)
            .await
            .context("cannot start Postgres")?;
        local.running = true;
        self.wait_ready(ready_within).await?;
        let role = callback_role(&role);
        self.call_back(after_start(local.callback_role, role, was_running), role);
        local.callback_role = Some(role);
        Ok(())
    }

    /// Waits until the server answers a query (a standby: accepts read-only
    /// connections), the postmaster exits, or `timeout` passes.
    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let log = self.settings.log_path();
        loop {
            let keeper = self
                .keeper(Request::Status, raftgres_keeper::client::QUICK)
                .await?;
            let Some(pid) = keeper.postmaster_pid else {
                bail!(
                    "Postgres exited while starting ({}); see {}",
                    keeper.last_exit.as_deref().unwrap_or("no status"),
                    log.display()
                );
            };
            let last = match Control::new(&self.settings).status().await {
                Ok(_) => {
                    tracing::info!(member = self.me(), pid, "Postgres accepts connections");
                    return Ok(());
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "Postgres (pid {pid}) did not accept connections within {timeout:?}: {last}; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
