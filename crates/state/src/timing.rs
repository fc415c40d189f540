//! The lease's timing: ttl, loop_wait and margin in one type, with the
//! rules between them, for the settings file, `PATCH /config`, the state
//! machine and every judgement of time in the agent.
//!
//! Two ttls are in play, and each governs its own thing:
//! - the dynamic config's ([`crate::ClusterState::timing`]): what the next
//!   acquire or renewal carries, how often the holder renews, and how long
//!   a member's report stays fresh;
//! - the lease record's own copy ([`crate::Lease::ttl`]): when the lease
//!   expires for observers and the holder's deadline. A config change never
//!   shortens a lease that is running.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest ttl accepted (10 minutes). A longer lease is almost always
/// seconds typed as milliseconds, and would leave a dead primary unreplaced
/// for that long.
pub const MAX_TTL_MS: u64 = 600_000;

/// Clock-rate bound: each member's `CLOCK_MONOTONIC` runs within 1000 ppm
/// of real time (NTP slews at most 500 ppm, crystals drift about 100 ppm),
/// so the holder's and an observer's clocks disagree by up to `ttl / 500`.
const MARGIN_RATE_DIVISOR: u64 = 500;
/// Reaction bound: the holder's timers waking late on a loaded host, plus
/// the fence finding and SIGKILLing every server process.
const MARGIN_REACTION_MS: u64 = 100;

/// The smallest `lease_margin_ms` the lease rules are safe with for a lease
/// of `ttl_ms` (docs/lease.md, "The margin's floor").
pub fn margin_floor_ms(ttl_ms: u64) -> u64 {
    ttl_ms
        .div_ceil(MARGIN_RATE_DIVISOR)
        .saturating_add(MARGIN_REACTION_MS)
}

/// How long a lease lasts, how often its holder's loops run, and how much
/// sooner than observers the holder gives up. Written as the `ttl_ms`,
/// `loop_wait_ms` and `lease_margin_ms` keys, in whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTiming {
    #[serde(rename = "ttl_ms", with = "millis")]
    pub ttl: Duration,
    #[serde(rename = "loop_wait_ms", with = "millis")]
    pub loop_wait: Duration,
    #[serde(rename = "lease_margin_ms", with = "millis")]
    pub margin: Duration,
}

/// A timing the lease rules cannot work with. [`TimingError::key`] names
/// the setting to change; the message says why, naming the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error("must be greater than 0")]
    TtlZero,
    #[error(
        "must be at most {MAX_TTL_MS} (10 minutes), got {ttl_ms}: it is in milliseconds, \
         and a longer lease leaves a dead primary unreplaced that long"
    )]
    TtlTooLong { ttl_ms: u64 },
    #[error(
        "must be less than ttl_ms ({ttl_ms}), got {margin_ms}: the holder's deadline is \
         ttl minus this margin"
    )]
    MarginNotBelowTtl { margin_ms: u64, ttl_ms: u64 },
    #[error(
        "must be at least {floor_ms} with ttl_ms {ttl_ms} (ttl_ms / 500 + 100), got \
         {margin_ms}: it covers clock-rate drift between members and the holder's fencing \
         delay; see docs/lease.md, \"The margin's floor\""
    )]
    MarginBelowFloor {
        margin_ms: u64,
        floor_ms: u64,
        ttl_ms: u64,
    },
    #[error("must be greater than 0")]
    LoopWaitZero,
    #[error(
        "plus lease_margin_ms ({margin_ms}) must be less than ttl_ms ({ttl_ms}), got \
         {loop_wait_ms}: the holder must renew at least once before its deadline"
    )]
    NoRenewalBeforeDeadline {
        loop_wait_ms: u64,
        margin_ms: u64,
        ttl_ms: u64,
    },
    #[error(
        "ttl_ms ({ttl_ms}) minus lease_margin_ms ({margin_ms}) minus loop_wait_ms \
         ({loop_wait_ms}) leaves the primary {budget_ms} ms without a renewal, but a Raft \
         election can take up to {election_ms} ms with this member's raft settings (three and \
         a half times raft.election_timeout_max_ms plus five times raft.heartbeat_interval_ms): \
         losing the Raft leader would fail the primary over. Raise ttl_ms, lower loop_wait_ms \
         or lease_margin_ms, or lower the Raft election timeouts"
    )]
    ElectionOutlastsBudget {
        ttl_ms: u64,
        margin_ms: u64,
        loop_wait_ms: u64,
        budget_ms: u64,
        election_ms: u64,
    },
}

impl TimingError {
    /// The setting to change, as the dynamic config names it.
    pub fn key(&self) -> &'static str {
        match self {
            TimingError::TtlZero
            | TimingError::TtlTooLong { .. }
            | TimingError::ElectionOutlastsBudget { .. } => "ttl_ms",
            TimingError::MarginNotBelowTtl { .. } | TimingError::MarginBelowFloor { .. } => {
                "lease_margin_ms"
            }
            TimingError::LoopWaitZero | TimingError::NoRenewalBeforeDeadline { .. } => {
                "loop_wait_ms"
            }
        }
    }
}

impl TimingError {
    /// The message with the keys it names written as they appear under
    /// `section` (the settings file keeps them under `bootstrap`).
    pub fn message_in(&self, section: &str) -> String {
        // No key's name is part of another's, so each is replaced once.
        ["ttl_ms", "loop_wait_ms", "lease_margin_ms"]
            .iter()
            .fold(self.to_string(), |message, key| {
                message.replace(key, &format!("{section}.{key}"))
            })
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LeaseTiming {
    pub fn from_millis(ttl_ms: u64, loop_wait_ms: u64, margin_ms: u64) -> LeaseTiming {
        LeaseTiming {
            ttl: Duration::from_millis(ttl_ms),
            loop_wait: Duration::from_millis(loop_wait_ms),
            margin: Duration::from_millis(margin_ms),
        }
    }

    pub fn ttl_ms(&self) -> u64 {
        ms(self.ttl)
    }

    pub fn loop_wait_ms(&self) -> u64 {
        ms(self.loop_wait)
    }

    pub fn margin_ms(&self) -> u64 {
        ms(self.margin)
    }

    /// The relations the lease rules depend on. The state machine applies
    /// exactly these to committed entries, so they never tighten: members
    /// of two versions must apply the same entry alike. New limits go in
    /// [`LeaseTiming::validate_new`].
    pub fn validate(&self) -> Result<(), TimingError> {
        let (ttl_ms, loop_wait_ms, margin_ms) =
            (self.ttl_ms(), self.loop_wait_ms(), self.margin_ms());
        if ttl_ms == 0 {
            return Err(TimingError::TtlZero);
        }
        if margin_ms >= ttl_ms {
            return Err(TimingError::MarginNotBelowTtl { margin_ms, ttl_ms });
        }
        let floor_ms = margin_floor_ms(ttl_ms);
        if margin_ms < floor_ms {
            return Err(TimingError::MarginBelowFloor {
                margin_ms,
                floor_ms,
                ttl_ms,
            });
        }
        if loop_wait_ms == 0 {
            return Err(TimingError::LoopWaitZero);
        }
        if loop_wait_ms.saturating_add(margin_ms) >= ttl_ms {
            return Err(TimingError::NoRenewalBeforeDeadline {
                loop_wait_ms,
                margin_ms,
                ttl_ms,
            });
        }
        Ok(())
    }

    /// What a new value (the settings file, an edit) must pass on top of
    /// [`LeaseTiming::validate`]. The ttl's bound comes first: a ttl in the
    /// wrong unit fails every other rule too, and this message names the
    /// mistake.
    pub fn validate_new(&self) -> Result<(), TimingError> {
        let ttl_ms = self.ttl_ms();
        if ttl_ms > MAX_TTL_MS {
            return Err(TimingError::TtlTooLong { ttl_ms });
        }
        self.validate()
    }

    /// How long the primary can go without a committed renewal and still
    /// renew in time: its deadline is `ttl - margin` after the last renewal
    /// that committed, and the next may leave up to `loop_wait` after it.
    pub fn renewal_budget(&self) -> Duration {
        self.ttl
            .saturating_sub(self.margin)
            .saturating_sub(self.loop_wait)
    }

    /// Whether the primary rides out a Raft election that takes up to
    /// `worst_election`: losing the Raft leader stops every commit,
    /// renewals included, until a new one is elected. Not a safety rule; a
    /// timing that fails it turns each loss of the Raft leader into a
    /// failover.
    pub fn rides_out(&self, worst_election: Duration) -> Result<(), TimingError> {
        let budget = self.renewal_budget();
        if budget > worst_election {
            return Ok(());
        }
        Err(TimingError::ElectionOutlastsBudget {
            ttl_ms: self.ttl_ms(),
            margin_ms: self.margin_ms(),
            loop_wait_ms: self.loop_wait_ms(),
            budget_ms: ms(budget),
            election_ms: ms(worst_election),
        })
    }
}

/// A duration as whole milliseconds, the unit of every `*_ms` key.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::ms(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ttl: u64, loop_wait: u64, margin: u64) -> LeaseTiming {
        LeaseTiming::from_millis(ttl, loop_wait, margin)
    }

    #[test]
    fn each_rule_names_the_key_to_change() {
        let cases = [
            (t(0, 250, 400), "ttl_ms", "greater than 0"),
            (
                t(3000, 250, 3000),
                "lease_margin_ms",
                "less than ttl_ms (3000)",
            ),
            (t(3000, 250, 105), "lease_margin_ms", "at least 106"),
            (t(3000, 0, 400), "loop_wait_ms", "greater than 0"),
            (t(3000, 2600, 400), "loop_wait_ms", "renew at least once"),
        ];
        for (timing, key, says) in cases {
            let e = timing.validate().unwrap_err();
            assert_eq!(e.key(), key, "{timing:?}");
            assert!(e.to_string().contains(says), "{timing:?}: {e}");
        }
        assert_eq!(t(3000, 250, 400).validate(), Ok(()));
        assert_eq!(t(3000, 250, 106).validate(), Ok(()), "the floor itself");
        assert_eq!(t(3000, 2599, 400).validate(), Ok(()), "one ms to renew in");
    }

    #[test]
    fn messages_can_name_the_keys_under_their_section() {
        let e = t(3000, 2600, 400).validate().unwrap_err();
        assert_eq!(
            e.message_in("bootstrap"),
            "plus bootstrap.lease_margin_ms (400) must be less than bootstrap.ttl_ms (3000), \
             got 2600: the holder must renew at least once before its deadline"
        );
    }

    #[test]
    fn new_values_are_bounded_but_committed_ones_are_not() {
        let long = t(MAX_TTL_MS + 1, 250, 2000);
        assert_eq!(long.validate(), Ok(()));
        let e = long.validate_new().unwrap_err();
        assert_eq!(
            (e.key(), e.to_string().contains("in milliseconds")),
            ("ttl_ms", true)
        );
        assert_eq!(t(MAX_TTL_MS, 250, 2000).validate_new(), Ok(()));
    }

    #[test]
    fn the_budget_is_what_is_left_after_margin_and_loop_wait() {
        let timing = t(3000, 250, 400);
        assert_eq!(timing.renewal_budget(), Duration::from_millis(2350));
        assert_eq!(timing.rides_out(Duration::from_millis(2349)), Ok(()));
        for worst in [2350, 5000] {
            let e = timing.rides_out(Duration::from_millis(worst)).unwrap_err();
            let message = e.to_string();
            for named in [
                "ttl_ms (3000)",
                "lease_margin_ms (400)",
                "loop_wait_ms (250)",
                "2350 ms without a renewal",
                &format!("up to {worst} ms"),
            ] {
                assert!(message.contains(named), "{named} missing from {message}");
            }
        }
        assert_eq!(t(100, 90, 50).renewal_budget(), Duration::ZERO);
    }

    #[test]
    fn written_as_the_millisecond_keys() {
        let timing = t(3000, 250, 400);
        let json = serde_json::to_value(timing).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"ttl_ms": 3000, "loop_wait_ms": 250, "lease_margin_ms": 400})
        );
        assert_eq!(serde_json::from_value::<LeaseTiming>(json).unwrap(), timing);
    }

    #[test]
    fn the_margin_floor_grows_with_the_ttl() {
        assert_eq!(margin_floor_ms(3000), 106);
        assert_eq!(margin_floor_ms(3001), 107);
        assert_eq!(margin_floor_ms(MAX_TTL_MS), 1300);
        assert_eq!(margin_floor_ms(u64::MAX), u64::MAX.div_ceil(500) + 100);
    }
}
