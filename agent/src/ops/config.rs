//! A change of the cluster's dynamic config: its server settings judged by
//! this member's Postgres and its timing by this member's Raft settings
//! before it is committed.

use super::AgentOps;
use raftgres_api::OpError;
use raftgres_postgres::{PgError, check_parameters};
use raftgres_state::{Applied, Command, ConfigValues, DynamicConfig};

impl AgentOps {
    pub(super) async fn do_set_config(
        &self,
        expected_version: u64,
        values: ConfigValues,
    ) -> Result<DynamicConfig, OpError> {
        let before = self
            .consensus
            .local()
            .state
            .config
            .clone()
            .map(|c| c.values);
        // Only a change is judged, so that an edit of anything else
        // still works on a cluster whose members differ.
        let parameters_before = before.as_ref().map(|v| &v.postgresql_parameters);
        if parameters_before != Some(&values.postgresql_parameters)
            && let Some(postgres) = &self.postgres
        {
            match check_parameters(postgres, &values.postgresql_parameters).await {
                Ok(()) => {}
                Err(PgError::ParametersRefused { reason }) => {
                    return Err(OpError::Invalid(format!(
                        "postgresql.parameters: PostgreSQL refuses them ({reason}); \
                         nothing was changed"
                    )));
                }
                Err(e) => {
                    tracing::warn!(member = %self.member, error = %e, "cannot have Postgres check postgresql.parameters; each member checks them before it applies them")
                }
            }
        }
        let budget_before = before.as_ref().map(|v| v.timing.renewal_budget());
        if budget_before != Some(values.timing.renewal_budget()) {
            values
                .timing
                .rides_out(self.worst_raft_election)
                .map_err(|e| OpError::Invalid(e.to_string()))?;
        }
        match self
            .commit(Command::SetConfig {
                expected_version,
                values,
            })
            .await?
        {
            Applied::Config { config } => Ok(config),
            other => Err(OpError::Unavailable(format!(
                "unexpected answer to a config change: {other:?}"
            ))),
        }
    }
}
