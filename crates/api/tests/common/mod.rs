//! What the integration tests share.

use raftgres_api::{NodeHealth, Role};

/// pg1 of cluster `demo`: the running primary that holds the lease, at a
/// known WAL position. Each test file adds the values it reads.
pub fn running_primary() -> NodeHealth {
    NodeHealth {
        member: "pg1".into(),
        scope: "demo".into(),
        role: Role::Primary,
        holds_valid_lease: true,
        postgres_running: true,
        xlog_location: Some(50_331_744),
        ..NodeHealth::default()
    }
}

/// pg2, streaming from `primary` (whose other values it keeps).
pub fn streaming_replica(primary: NodeHealth) -> NodeHealth {
    NodeHealth {
        member: "pg2".into(),
        role: Role::Replica,
        holds_valid_lease: false,
        in_recovery: true,
        streaming: true,
        ..primary
    }
}

/// Implements `WriteOps` for a read-only fixture: any mutating operation
/// fails the test with `$why`.
macro_rules! refuse_writes {
    ($fixture:ty, $why:expr) => {
        impl raftgres_api::WriteOps for $fixture {
            fn set_config(
                &self,
                _: u64,
                _: raftgres_state::ConfigValues,
            ) -> raftgres_api::OpFuture<'_, raftgres_state::DynamicConfig> {
                panic!("{}", $why)
            }
            fn switchover(
                &self,
                _: raftgres_api::SwitchoverRequest,
            ) -> raftgres_api::OpFuture<'_, raftgres_api::SwitchoverOutcome> {
                panic!("{}", $why)
            }
            fn cancel_switchover(&self) -> raftgres_api::OpFuture<'_, ()> {
                panic!("{}", $why)
            }
            fn failover(&self, _: String) -> raftgres_api::OpFuture<'_, String> {
                panic!("{}", $why)
            }
            fn restart(
                &self,
                _: raftgres_state::RestartOptions,
            ) -> raftgres_api::OpFuture<'_, String> {
                panic!("{}", $why)
            }
            fn schedule_restart(
                &self,
                _: u64,
                _: raftgres_state::RestartOptions,
            ) -> raftgres_api::OpFuture<'_, ()> {
                panic!("{}", $why)
            }
            fn cancel_restart(&self) -> raftgres_api::OpFuture<'_, ()> {
                panic!("{}", $why)
            }
            fn reload(&self) -> raftgres_api::OpFuture<'_, String> {
                panic!("{}", $why)
            }
            fn reinitialize(&self, _: bool) -> raftgres_api::OpFuture<'_, String> {
                panic!("{}", $why)
            }
            fn remove_member(&self, _: String) -> raftgres_api::OpFuture<'_, String> {
                panic!("{}", $why)
            }
            fn config_defaults(&self) -> raftgres_state::ConfigValues {
                panic!("{}", $why)
            }
        }
    };
}

pub(crate) use refuse_writes;
