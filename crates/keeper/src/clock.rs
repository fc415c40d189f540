//! CLOCK_MONOTONIC in nanoseconds: machine-wide, so a deadline the agent
//! computes means the same instant to the keeper and its guard, and
//! wall-clock jumps never move it.

use nix::time::{ClockId, clock_gettime};

pub fn mono_ns() -> u64 {
    // It cannot fail on a working Linux kernel. If it ever did, the end of
    // time is the one safe answer: every deadline has then passed, so the
    // keeper fences rather than trust a lease it cannot time.
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => u64::try_from(ts.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(ts.tv_nsec()).unwrap_or(0)),
        Err(_) => u64::MAX,
    }
}
