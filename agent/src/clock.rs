//! The agent's only clock: CLOCK_MONOTONIC, which wall-clock jumps never move.
//! It is machine-wide, so instants reported by agents on one host compare.

use nix::time::{ClockId, clock_gettime};
use raftgres_ha::MonoInstant;
use std::time::Duration;

pub fn mono_now() -> MonoInstant {
    // CLOCK_MONOTONIC cannot fail on a working Linux kernel. If it ever does,
    // no substitute value is safe for both the holder and the observers, so
    // the agent stops (its Postgres is fenced by the lease rules).
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => MonoInstant(Duration::new(
            u64::try_from(ts.tv_sec()).unwrap_or(0),
            u32::try_from(ts.tv_nsec()).unwrap_or(0),
        )),
        Err(e) => {
            tracing::error!(error = %e, "CLOCK_MONOTONIC is unreadable; stopping the agent");
            std::process::exit(70)
        }
    }
}

pub fn nanos(at: MonoInstant) -> u64 {
    u64::try_from(at.0.as_nanos()).unwrap_or(u64::MAX)
}

/// Wall-clock milliseconds since the epoch, for what is scheduled or
/// recorded in wall time (switchovers, history); never for the lease.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
