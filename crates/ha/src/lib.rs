//! The HA decision: pure functions from what a member observes to what it
//! should do next. Time is passed in as instants of the member's monotonic
//! clock, so tests control it completely.
//!
//! Architecture invariant: pure. No I/O, no clock, no Raft types; it reads
//! the replicated model from `raftgres-state` and returns actions.

mod callbacks;
mod candidacy;
mod cascade;
mod decide;
mod lease;
mod local;
mod parameters;
mod pause;
mod peers;
mod permanent_slots;
mod pooler;
mod postgres;
mod request;
mod restart;
mod switchover;
mod sync;
#[cfg(test)]
mod testing;
mod timeline;

pub use callbacks::{CallbackEvent, CallbackRole, after_start};
pub use candidacy::{
    Rank, Unfit, holder_running_primary, live_rival, may_compete, rank, recorded_rank, tagged_in,
    within_lag,
};
pub use cascade::{clone_source, slot_holders, upstream_for};
pub use decide::{LeaseAction, Observation, decide, promotion_veto_holds};
pub use lease::{HolderLease, LeaseObserver, MonoInstant};
pub use local::{DataInfo, PgView};
pub use parameters::postgres_parameters;
pub use peers::{PeerObserver, ReportAge, heartbeat_interval};
pub use permanent_slots::{
    LocalSlot, PermanentSlotPlan, SlotServer, permanent_slot_names, plan_permanent_slots,
};
pub use pooler::{PoolerPlan, pooler_plan, poolers_paused};
pub use postgres::{PgAction, PgObservation, decide_postgres, may_disarm};
pub use request::{
    FailoverPlan, Refusal, SwitchoverPlan, failover_overtaken, healthy_leader, plan_failover,
    plan_switchover,
};
pub use restart::{
    Dropped, RestartSubject, SCHEDULED_RESTART_GRACE, ScheduledStep, Unmet, restart_conditions,
    scheduled_restart_step,
};
pub use switchover::{
    SWITCHOVER_CATCHUP, due_switchover, failover_candidate, handover_target, switchover_candidate,
    switchover_under_way, unfit_candidate,
};
pub use sync::{
    Configured, StandbyView, SyncStep, WaitFor, hands_over_after_crash, plan_sync, wait_for,
};
pub use timeline::{OffTimeline, data_on_current_timeline, on_current_timeline};
