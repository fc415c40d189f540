//! How long this member's proposals take to commit, counted in fixed
//! buckets so that the agent can export them as a Prometheus histogram.
//! Measured here because only the proposer knows when it asked: a forwarded
//! proposal counts on the member that made it, not on the leader that
//! committed it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds. A proposal costs a round trip
/// and an fsync on a majority: a few milliseconds on a healthy disk, a few
/// hundred on a stalling one, and up to the operation timeout (seconds) at
/// worst, so the bounds span 1 ms to 10 s.
pub const PROPOSAL_BUCKETS_S: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The proposal latencies recorded so far, as Prometheus's classic
/// histogram has them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Latencies {
    /// Each bucket's upper bound in seconds with how many proposals fell in
    /// it and in no lower one (not cumulative): [`PROPOSAL_BUCKETS_S`], then
    /// `f64::INFINITY` for the slower ones.
    pub buckets: Vec<(f64, u64)>,
    /// How many proposals were counted: the buckets' total.
    pub count: u64,
    /// Their durations added up.
    pub sum: Duration,
}

/// Where [`crate::Consensus::propose`] records. A mutex rather than one
/// atomic per bucket, so that a reader never sees a count that disagrees
/// with the buckets; a proposal holds it for a few additions.
#[derive(Clone, Default)]
pub(crate) struct LatencyRecorder(Arc<Mutex<Counts>>);

#[derive(Default)]
struct Counts {
    /// One per bound of [`PROPOSAL_BUCKETS_S`], then the overflow.
    buckets: [u64; PROPOSAL_BUCKETS_S.len() + 1],
    sum: Duration,
}

impl LatencyRecorder {
    pub(crate) fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = PROPOSAL_BUCKETS_S
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(PROPOSAL_BUCKETS_S.len());
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.buckets[bucket] += 1;
        counts.sum = counts.sum.saturating_add(took);
    }

    pub(crate) fn snapshot(&self) -> Latencies {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let bounds = PROPOSAL_BUCKETS_S.iter().copied().chain([f64::INFINITY]);
        Latencies {
            buckets: bounds.zip(counts.buckets).collect(),
            count: counts.buckets.iter().sum(),
            sum: counts.sum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_counts_in_the_lowest_bucket_that_holds_it() {
        let recorder = LatencyRecorder::default();
        for ms in [1, 2, 3, 30_000] {
            recorder.record(Duration::from_millis(ms));
        }
        let seen = recorder.snapshot();
        assert_eq!(seen.count, 4);
        assert_eq!(seen.sum, Duration::from_millis(30_006));
        let count_at = |bound: f64| {
            seen.buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, n)| *n)
        };
        // A bound holds a duration equal to it, as Prometheus's `le` says.
        assert_eq!(count_at(0.001), Some(1));
        assert_eq!(count_at(0.0025), Some(1));
        assert_eq!(count_at(0.005), Some(1));
        assert_eq!(count_at(f64::INFINITY), Some(1));
        assert_eq!(seen.buckets.len(), PROPOSAL_BUCKETS_S.len() + 1);
    }
}
