//! SIGHUP and `POST /reload`: re-read the settings file, apply what can
//! change while running, name what cannot, then have the Postgres loop
//! reload Postgres. One reload at a time, in order; the caller is answered
//! once the settings are applied, and Postgres reloads after (its
//! `conf_load_time` in `GET /patroni` moves then).

use crate::requests::{LiveSettings, Operation, OperationRequest, ReloadReply};
use crate::send_if_changed::SendIfChanged;
use raftgres_api::{Credentials, OpError};
use raftgres_config::{AgentConfig, reload_plan, reloaded};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

pub fn credentials(config: &AgentConfig) -> Option<Credentials> {
    config.restapi.authentication.as_ref().map(|a| Credentials {
        username: a.username.clone(),
        password: a.password.clone(),
    })
}

/// How long a reload's outcome is waited for, to log it: the Postgres
/// loop takes it once the step it is in has ended.
const POSTGRES_RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

pub struct Reloader {
    pub path: PathBuf,
    pub running: AgentConfig,
    pub live: watch::Sender<LiveSettings>,
    pub auth: watch::Sender<Option<Credentials>>,
    /// The Postgres loop; `None` on a witness.
    pub operations: Option<mpsc::Sender<OperationRequest>>,
    pub notifier: Arc<crate::systemd::SdNotifier>,
}

impl Reloader {
    pub async fn run(mut self, mut requests: mpsc::Receiver<ReloadReply>) {
        while let Some(reply) = requests.recv().await {
            self.notifier.send(&reloading());
            let outcome = self.reload().await;
            self.notifier.send(&[sd_notify::NotifyState::Ready]);
            match &outcome {
                Ok(message) => tracing::info!(member = %self.running.name, %message, "reload done"),
                Err(e) => {
                    tracing::error!(member = %self.running.name, error = %e, "reload failed; the agent keeps running with its previous settings")
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
    }

    async fn reload(&mut self) -> Result<String, OpError> {
        let loaded = raftgres_config::load(&self.path).map_err(|e| {
            OpError::Invalid(format!(
                "{e}; nothing changed, the agent keeps its previous settings"
            ))
        })?;
        let plan = reload_plan(&self.running, &loaded);
        for key in &plan.needs_restart {
            tracing::warn!(member = %self.running.name, key, "changed in the settings file, but only a restart applies it; keeping the running value");
        }
        for key in &plan.cluster_wide {
            tracing::warn!(member = %self.running.name, key, "changed in the settings file, but it is read only when the cluster is first formed; change it with `raftgresctl edit-config` (PATCH /config)");
        }
        for key in &plan.first_start_only {
            tracing::info!(member = %self.running.name, key, "changed in the settings file; it is read only by an agent with an empty Raft store, to form or join the group. The running group takes a new member when that member starts, and loses one with `raftgresctl remove`");
        }
        for key in &plan.applied {
            tracing::info!(member = %self.running.name, key, "applying the changed setting");
        }
        self.running = reloaded(&self.running, &loaded);
        self.live.send_if_changed(LiveSettings::of(&self.running));
        self.auth.send_if_changed(credentials(&self.running));
        let mut message = format!(
            "re-read {}: applied [{}], needs a restart [{}]",
            self.path.display(),
            plan.applied.join(", "),
            plan.needs_restart.join(", ")
        );
        // As Patroni's /reload: Postgres is told to reload even when only its
        // files changed by hand. The loop may be busy for long (a clone), so
        // its outcome is logged rather than waited for.
        if let Some(operations) = &self.operations {
            let outcome = crate::ops::send_to_pg_loop(operations, Operation::Reload).await?;
            let member = self.running.name.clone();
            tokio::spawn(async move {
                let done = crate::ops::answer(outcome, "the Postgres loop", POSTGRES_RELOAD_WAIT);
                if let Err(e) = done.await {
                    tracing::warn!(%member, error = %e, "Postgres was not reloaded");
                }
            });
            message.push_str("; Postgres reloads its configuration next");
        }
        Ok(message)
    }
}

fn reloading() -> [sd_notify::NotifyState<'static>; 2] {
    // systemd 253+ fails a reload whose RELOADING=1 lacks MONOTONIC_USEC.
    let now = crate::clock::mono_now().0;
    [
        sd_notify::NotifyState::Reloading,
        sd_notify::NotifyState::MonotonicUsec(now.as_micros() as i128),
    ]
}
