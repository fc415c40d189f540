//! What the agent's parts send each other: an operator's request for the
//! local Postgres, a reload request, and the settings a reload changes. A
//! leaf, so the parts depend on it and not on each other.

use raftgres_api::OpError;
use raftgres_config::{AgentConfig, Callbacks};
use raftgres_state::RestartOptions;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::oneshot;

/// What an operator asks of this member's Postgres through the REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Now, if the conditions hold.
    Restart(RestartOptions),
    Reload,
    Reinitialize,
}

/// An [`Operation`] and where its outcome goes: once it is done, but for
/// [`Operation::Reinitialize`], once the clone has started (the caller
/// then follows it in `GET /patroni`). A request whose caller stopped
/// waiting before the Postgres loop took it is dropped, not run.
pub struct OperationRequest {
    pub operation: Operation,
    pub reply: oneshot::Sender<Result<String, OpError>>,
}

/// Who asked: `POST /reload` waits for the outcome, SIGHUP only logs it.
pub type ReloadReply = Option<oneshot::Sender<Result<String, OpError>>>;

/// The settings the loops read afresh after a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSettings {
    /// `postgresql.parameters`, written into the managed conf.
    pub parameters: BTreeMap<String, String>,
    /// `tags`, published in this member's record.
    pub tags: raftgres_state::Tags,
    /// `pgbouncer.admin_user` and `admin_password`.
    pub pooler_admin: Option<(String, Option<String>)>,
    /// `postgresql.callbacks`, `pre_promote`, `before_stop` and
    /// `callback_timeout_ms`.
    pub scripts: Scripts,
    /// `postgresql.create_replica_methods`, with `postgresql.basebackup`
    /// and the methods' sections: read at each clone.
    pub replica_methods: Vec<raftgres_postgres::ReplicaMethod>,
}

/// The operator's scripts for the local Postgres.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scripts {
    pub callbacks: Callbacks,
    pub pre_promote: Option<Vec<String>>,
    pub before_stop: Option<Vec<String>>,
    pub timeout: Duration,
}

impl LiveSettings {
    pub fn of(config: &AgentConfig) -> LiveSettings {
        LiveSettings {
            parameters: config
                .postgresql
                .as_ref()
                .map(|pg| pg.parameters.clone())
                .unwrap_or_default(),
            tags: config.tags.clone(),
            pooler_admin: config
                .pgbouncer
                .as_ref()
                .map(|p| (p.admin_user.clone(), p.admin_password.clone())),
            scripts: config
                .postgresql
                .as_ref()
                .map(|pg| Scripts {
                    callbacks: pg.callbacks.clone(),
                    pre_promote: pg.pre_promote.clone(),
                    before_stop: pg.before_stop.clone(),
                    timeout: pg.callback_timeout,
                })
                .unwrap_or_default(),
            replica_methods: config
                .postgresql
                .as_ref()
                .map(|pg| {
                    pg.create_replica_methods
                        .iter()
                        .map(replica_method)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

fn replica_method(method: &raftgres_config::ReplicaMethod) -> raftgres_postgres::ReplicaMethod {
    use raftgres_config::ReplicaMethod as Configured;
    use raftgres_postgres::{CommandMethod, ReplicaMethod};
    match method {
        Configured::Basebackup { options } => ReplicaMethod::Basebackup {
            options: options.clone(),
        },
        Configured::Command {
            name,
            command,
            no_params,
            options,
        } => ReplicaMethod::Command(CommandMethod {
            name: name.clone(),
            command: command.clone(),
            no_params: *no_params,
            options: options.clone(),
        }),
    }
}
