//! One run's report, the checker's figures (write gaps, split-brain
//! writes, panics in logs), and the Markdown table of many runs.

use super::*;

/// What one run of one fault showed.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub fault: Fault,
    pub replication: Replication,
    pub run: u32,
    pub old_primary: String,
    pub new_primary: String,
    /// From the fault to the first write, sent after it through the entry
    /// point (HAProxy, else pgbouncer), that the final primary acknowledged;
    /// without an entry point, until one primary answered.
    pub writes_again: Option<Duration>,
    /// The longest time, from the fault on, without an acknowledged write
    /// through the entry point.
    pub longest_write_gap: Option<Duration>,
    /// Writes a member acknowledged after another member's first.
    pub split_brain_writes: usize,
    /// Acknowledged writes missing on the final primary.
    pub lost_acknowledged: usize,
    pub acknowledged: usize,
    pub two_writable: bool,
    /// The old primary is the final one, with the postmaster it had
    /// before the fault.
    pub primary_kept: bool,
    pub timeline_before: i32,
    pub timeline_after: i32,
    /// The timelines acknowledged writes were made on.
    pub timelines_written: BTreeSet<i32>,
    pub panics: Vec<String>,
}

impl RunReport {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "fault": self.fault.name(),
            "replication": self.replication.name(),
            "run": self.run,
            "old_primary": self.old_primary,
            "new_primary": self.new_primary,
            "writes_again_ms": self.writes_again.map(|d| d.as_millis() as u64),
            "longest_write_gap_ms": self.longest_write_gap.map(|d| d.as_millis() as u64),
            "split_brain_writes": self.split_brain_writes,
            "lost_acknowledged_writes": self.lost_acknowledged,
            "acknowledged_writes": self.acknowledged,
            "two_writable_at_once": self.two_writable,
            "primary_kept": self.primary_kept,
            "timeline_before": self.timeline_before,
            "timeline_after": self.timeline_after,
            "timelines_written": self.timelines_written,
            "panics": self.panics,
        })
    }

    /// The verdict: what must hold in every run. Safety for every fault;
    /// for the faults that must not cost a failover, the primary kept.
    pub fn assert_safe(&self) {
        assert_eq!(
            self.split_brain_writes,
            0,
            "{} run {}: writes acknowledged by an old primary after the new one's first: {self:?}",
            self.fault.name(),
            self.run
        );
        assert!(
            !self.two_writable,
            "{} run {}: two writable primaries at once",
            self.fault.name(),
            self.run
        );
        assert!(
            self.replication == Replication::Asynchronous || self.lost_acknowledged == 0,
            "{} run {} in synchronous mode: {} acknowledged writes lost",
            self.fault.name(),
            self.run,
            self.lost_acknowledged
        );
        assert!(
            self.panics.is_empty(),
            "{} run {}: panics {:?}",
            self.fault.name(),
            self.run,
            self.panics
        );
        assert!(
            self.primary_kept || !self.fault.keeps_primary(),
            "{} run {}: the primary moved or its Postgres restarted ({} -> {}), which this fault must not cost",
            self.fault.name(),
            self.run,
            self.old_primary,
            self.new_primary
        );
        assert!(
            self.writes_again.is_some(),
            "{} run {}: no write succeeded within {RECOVERY_BOUND:?} of the fault",
            self.fault.name(),
            self.run
        );
    }
}

/// The longest time from `from` on without one of `acks`, up to the last.
pub(super) fn longest_gap(acks: &[&Ack], from: Instant) -> Option<Duration> {
    let mut times: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    times.sort();
    let mut previous = from;
    let mut longest = None;
    for at in times {
        longest = longest.max(Some(at - previous));
        previous = at;
    }
    longest
}

/// Acks a member gave after a later member's first ack.
pub(super) fn split_brain(acks: &[Ack]) -> usize {
    let mut first: BTreeMap<&str, Instant> = BTreeMap::new();
    for a in acks.iter().filter(|a| a.member != "long") {
        let at = first.entry(a.member.as_str()).or_insert(a.at);
        *at = (*at).min(a.at);
    }
    acks.iter()
        .filter(|a| {
            let mine = first.get(a.member.as_str()).copied().unwrap_or(a.at);
            first
                .iter()
                .any(|(m, at)| *m != a.member && *at > mine && a.at > *at)
        })
        .count()
}

pub(super) fn panics_in_logs(lab: &Lab) -> Vec<String> {
    let mut found = Vec::new();
    for m in &lab.description.members {
        for log in [m.log.clone(), m.data_dir.join("keeper.log")] {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("panicked")) {
                found.push(format!("{}: {line}", log.display()));
            }
        }
    }
    found
}

/// One figure of each run that has it, in seconds, in ascending order.
pub(super) fn sorted_secs(
    runs: &[&RunReport],
    figure: impl Fn(&RunReport) -> Option<Duration>,
) -> Vec<f64> {
    let mut secs: Vec<f64> = runs
        .iter()
        .filter_map(|r| figure(r).map(|d| d.as_secs_f64()))
        .collect();
    secs.sort_by(f64::total_cmp);
    secs
}

/// The Markdown table of a set of runs: per fault, runs, time to writes
/// again (min / median / max), the longest write gap, runs that kept the
/// primary, split-brain writes, lost acknowledged writes.
pub fn markdown(reports: &[RunReport]) -> String {
    let mut out = String::from(
        "| fault | mode | runs | writes again min / median / max (s) | longest write gap median / max (s) | primary kept | split-brain writes | lost acknowledged writes | two writable | panics |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (fault, replication) in Fault::ALL
        .into_iter()
        .flat_map(|f| Replication::ALL.map(|r| (f, r)))
    {
        let runs: Vec<&RunReport> = reports
            .iter()
            .filter(|r| r.fault == fault && r.replication == replication)
            .collect();
        if runs.is_empty() {
            continue;
        }
        let times = sorted_secs(&runs, |r| r.writes_again);
        let spread = match times.as_slice() {
            [] => "none".to_owned(),
            t => format!(
                "{:.2} / {:.2} / {:.2}",
                t[0],
                t[t.len() / 2],
                t[t.len() - 1]
            ),
        };
        let gaps = sorted_secs(&runs, |r| r.longest_write_gap);
        let gap = match gaps.as_slice() {
            [] => "none".to_owned(),
            g => format!("{:.2} / {:.2}", g[g.len() / 2], g[g.len() - 1]),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            fault.name(),
            replication.name(),
            runs.len(),
            spread,
            gap,
            runs.iter().filter(|r| r.primary_kept).count(),
            runs.iter().map(|r| r.split_brain_writes).sum::<usize>(),
            runs.iter().map(|r| r.lost_acknowledged).sum::<usize>(),
            runs.iter().filter(|r| r.two_writable).count(),
            runs.iter().map(|r| r.panics.len()).sum::<usize>(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(member: &str, ms: u64, base: Instant) -> Ack {
        Ack {
            member: member.into(),
            id: 0,
            timeline: 1,
            sent: base + Duration::from_millis(ms),
            at: base + Duration::from_millis(ms),
        }
    }

    #[test]
    fn the_longest_gap_starts_at_the_fault() {
        let t = Instant::now();
        let (a, b, c) = (ack("a", 100, t), ack("a", 150, t), ack("b", 3150, t));
        assert_eq!(
            longest_gap(&[&c, &a, &b], t),
            Some(Duration::from_millis(3000))
        );
        assert_eq!(
            longest_gap(&[&a], t + Duration::from_millis(10)),
            Some(Duration::from_millis(90))
        );
        assert_eq!(longest_gap(&[], t), None);
    }

    #[test]
    fn split_brain_counts_only_old_writes_after_the_new_first() {
        let t = Instant::now();
        assert_eq!(
            split_brain(&[ack("a", 0, t), ack("a", 10, t), ack("b", 20, t)]),
            0
        );
        assert_eq!(
            split_brain(&[
                ack("a", 0, t),
                ack("b", 20, t),
                ack("a", 30, t),
                ack("b", 40, t)
            ]),
            1
        );
        assert_eq!(split_brain(&[ack("a", 0, t), ack("a", 50, t)]), 0);
    }
}
