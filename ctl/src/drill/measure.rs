//! The drill's pure parts: the figures computed from what the writer saw
//! (RTO, RPO, failed statements), their table and JSON, and the choices
//! made before it starts (the failover's candidate, when to act). No clock
//! and no I/O here: times are offsets from the drill's start on the
//! monotonic clock, measured by the caller.

use crate::cluster::{ClusterView, MemberView};
use crate::format::Table;
use comfy_table::CellAlignment;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The shortest and longest time written before the action: long enough
/// to see the steady rhythm, short enough to leave most of `--duration`
/// for the change and the recovery.
const MIN_LEAD: Duration = Duration::from_secs(1);
const MAX_LEAD: Duration = Duration::from_secs(10);

/// How many kinds of error the table lists; the JSON has them all.
const ERRORS_SHOWN: usize = 5;

/// What the drill does to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `POST /switchover` from the current leader to the replica the agents
    /// pick, as `raftgresctl switchover --force`.
    Switchover,
    /// `POST /failover` to the best replica, as `raftgresctl failover
    /// --candidate NAME --force`.
    Failover,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Switchover => "switchover",
            Action::Failover => "failover",
        }
    }
}

/// A write the server acknowledged: when its answer came, and which
/// member's Postgres committed it (its `cluster_name`, which the agent sets
/// to the member's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub at: Duration,
    pub by: String,
}

/// One numbered write the drill attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub seq: u64,
    pub sent_at: Duration,
    /// The acknowledgement, or why the write failed: it could not connect,
    /// the server refused the statement, or no answer came, in which case
    /// it may still have committed.
    pub outcome: Result<Ack, String>,
}

/// What was drilled, where, and between which primaries: found by the
/// drill and reported as found, the report's first keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub action: Action,
    pub cluster: String,
    /// Where the writes went, as the report names it.
    pub entry: String,
    pub table: String,
    pub table_dropped: bool,
    pub old_primary: String,
    pub old_timeline: Option<u64>,
    pub new_primary: String,
    pub new_timeline: Option<u64>,
    pub writes_per_second: u32,
}

/// Everything the drill found out, for [`Report::of`].
#[derive(Debug, Clone)]
pub struct Facts {
    pub setting: Setting,
    /// When the request was sent and when the agent answered it.
    pub action_sent: Duration,
    pub action_done: Duration,
    pub writes: Vec<Write>,
    /// The numbers read back from the new primary's copy of the table.
    pub found: BTreeSet<u64>,
}

/// The drill's result, as printed; JSON keys are stable for scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub setting: Setting,
    /// From the first write sent to the last one's answer.
    pub wrote_ms: u64,
    /// The request, from the drill's start, and how long the agent took to
    /// answer it.
    pub action_at_ms: u64,
    pub action_took_ms: u64,
    pub writes: Counts,
    pub rto: Rto,
    pub rpo: Rpo,
    /// The failures, the most frequent first.
    pub errors: Vec<ErrorCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub attempted: usize,
    pub acknowledged: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rto {
    /// The longest time between two consecutive acknowledgements, with the
    /// numbers of the writes on either side; `null` with fewer than two.
    pub longest_gap_ms: Option<u64>,
    pub gap_after_seq: Option<u64>,
    pub gap_before_seq: Option<u64>,
    /// From the request to the first write the new primary acknowledged;
    /// `null` when it acknowledged none.
    pub to_new_primary_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rpo {
    /// Acknowledged writes missing on the new primary: lost.
    pub lost: usize,
    pub lost_seqs: Vec<u64>,
    /// Failed writes found on the new primary anyway: their answer was lost,
    /// not the write (a client would retry and find a duplicate).
    pub failed_but_committed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    pub count: usize,
    pub error: String,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Report {
    pub fn of(facts: &Facts) -> Report {
        let mut acked: Vec<(u64, &Ack)> = facts
            .writes
            .iter()
            .filter_map(|w| Some((w.seq, w.outcome.as_ref().ok()?)))
            .collect();
        acked.sort_by_key(|(seq, ack)| (ack.at, *seq));
        let gap = acked
            .windows(2)
            .map(|pair| {
                (
                    pair[1].1.at.saturating_sub(pair[0].1.at),
                    pair[0].0,
                    pair[1].0,
                )
            })
            // The first of equal gaps: where the trouble started.
            .fold(None, |best: Option<(Duration, u64, u64)>, gap| match best {
                Some(b) if b.0 >= gap.0 => Some(b),
                _ => Some(gap),
            });
        let to_new_primary = acked
            .iter()
            .filter(|(_, ack)| ack.by == facts.setting.new_primary && ack.at >= facts.action_sent)
            .map(|(_, ack)| ack.at - facts.action_sent)
            .min();
        let lost_seqs: Vec<u64> = {
            let mut lost: Vec<u64> = acked
                .iter()
                .map(|(seq, _)| *seq)
                .filter(|seq| !facts.found.contains(seq))
                .collect();
            lost.sort_unstable();
            lost
        };
        let failed: Vec<&Write> = facts.writes.iter().filter(|w| w.outcome.is_err()).collect();
        let failed_but_committed = failed
            .iter()
            .filter(|w| facts.found.contains(&w.seq))
            .count();
        let mut by_error: BTreeMap<&str, usize> = BTreeMap::new();
        for write in &failed {
            if let Err(error) = &write.outcome {
                *by_error.entry(error).or_default() += 1;
            }
        }
        let mut errors: Vec<ErrorCount> = by_error
            .into_iter()
            .map(|(error, count)| ErrorCount {
                count,
                error: error.to_owned(),
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.error.cmp(&b.error)));
        let first_sent = facts.writes.iter().map(|w| w.sent_at).min();
        let last_seen = facts
            .writes
            .iter()
            .map(|w| w.outcome.as_ref().map_or(w.sent_at, |ack| ack.at))
            .max();
        let wrote = match (first_sent, last_seen) {
            (Some(first), Some(last)) => last.saturating_sub(first),
            _ => Duration::ZERO,
        };
        Report {
            setting: facts.setting.clone(),
            wrote_ms: ms(wrote),
            action_at_ms: ms(facts.action_sent),
            action_took_ms: ms(facts.action_done.saturating_sub(facts.action_sent)),
            writes: Counts {
                attempted: facts.writes.len(),
                acknowledged: acked.len(),
                failed: failed.len(),
            },
            rto: Rto {
                longest_gap_ms: gap.map(|g| ms(g.0)),
                gap_after_seq: gap.map(|g| g.1),
                gap_before_seq: gap.map(|g| g.2),
                to_new_primary_ms: to_new_primary.map(ms),
            },
            rpo: Rpo {
                lost: lost_seqs.len(),
                lost_seqs,
                failed_but_committed,
            },
            errors,
        }
    }

    /// `--format json`: one document.
    pub fn json(&self) -> String {
        // A struct of strings, numbers and lists always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// `--format pretty`: a table in patronictl's style, then the errors.
    pub fn table(&self) -> String {
        let setting = &self.setting;
        let mut table = Table::new(&[
            ("Measure", CellAlignment::Left),
            ("Value", CellAlignment::Left),
        ]);
        let primary = |name: &str, timeline: Option<u64>| match timeline {
            Some(tl) => format!("{name} (timeline {tl})"),
            None => format!("{name} (timeline unknown)"),
        };
        let rows = [
            ("Entry", setting.entry.clone()),
            (
                "Old primary",
                primary(&setting.old_primary, setting.old_timeline),
            ),
            (
                "New primary",
                primary(&setting.new_primary, setting.new_timeline),
            ),
            (
                "Action",
                format!(
                    "sent at {}, answered after {}",
                    seconds(self.action_at_ms),
                    seconds(self.action_took_ms)
                ),
            ),
            (
                "Writes",
                format!(
                    "{} sent at {}/s over {}, {} acknowledged, {} failed",
                    self.writes.attempted,
                    setting.writes_per_second,
                    seconds(self.wrote_ms),
                    self.writes.acknowledged,
                    self.writes.failed
                ),
            ),
            (
                "RTO: longest write gap",
                match (
                    self.rto.longest_gap_ms,
                    self.rto.gap_after_seq,
                    self.rto.gap_before_seq,
                ) {
                    (Some(gap), Some(after), Some(before)) => {
                        format!("{} (between writes #{after} and #{before})", seconds(gap))
                    }
                    _ => "unknown (fewer than two writes acknowledged)".to_owned(),
                },
            ),
            (
                "RTO: to the new primary",
                match self.rto.to_new_primary_ms {
                    Some(rto) => format!("{} from the request", seconds(rto)),
                    None => format!("never: {} acknowledged no write", setting.new_primary),
                },
            ),
            ("RPO: acknowledged writes lost", lost(&self.rpo)),
            (
                "Failed writes committed anyway",
                self.rpo.failed_but_committed.to_string(),
            ),
            (
                "Table",
                format!(
                    "{} ({})",
                    setting.table,
                    if setting.table_dropped {
                        "dropped"
                    } else {
                        "NOT dropped"
                    }
                ),
            ),
        ];
        for (measure, value) in rows {
            table.push(vec![measure.to_owned(), value]);
        }
        let title = format!(
            "Drill: {} of cluster {}",
            setting.action.as_str(),
            setting.cluster
        );
        let mut out = table.render(Some(&title));
        if !self.errors.is_empty() {
            out.push_str("Errors:\n");
            for error in self.errors.iter().take(ERRORS_SHOWN) {
                out.push_str(&format!("  {:>5} x {}\n", error.count, error.error));
            }
            let more: usize = self.errors.iter().skip(ERRORS_SHOWN).map(|e| e.count).sum();
            if more > 0 {
                out.push_str(&format!("  {more:>5} x other errors (see --format json)\n"));
            }
        }
        out
    }
}

/// `1.234 s`.
fn seconds(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

/// The lost count, with the first few numbers when there are any.
fn lost(rpo: &Rpo) -> String {
    const SHOWN: usize = 10;
    if rpo.lost == 0 {
        return "0".to_owned();
    }
    let first: Vec<String> = rpo
        .lost_seqs
        .iter()
        .take(SHOWN)
        .map(|s| format!("#{s}"))
        .collect();
    let more = if rpo.lost > SHOWN { ", ..." } else { "" };
    format!("{} ({}{more})", rpo.lost, first.join(", "))
}

/// How long the drill writes before it acts: a quarter of `duration`,
/// within [`MIN_LEAD`] and [`MAX_LEAD`].
pub fn lead(duration: Duration) -> Duration {
    (duration / 4).clamp(MIN_LEAD, MAX_LEAD)
}

/// The timeline of the WAL file name Postgres gives for its current
/// position (`pg_walfile_name(pg_current_wal_lsn())`): its first eight
/// hex digits.
pub fn timeline_of_walfile(name: &str) -> Option<u64> {
    let digits = name.get(..8)?;
    if name.len() != 24 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The replica a failover drill names: as the agents rank candidates
/// (`ha::rank`), the most WAL replayed, then the highest
/// `failover_priority`, then the first name; only a fresh, streaming
/// member that may be promoted (no `nofailover`, a priority above 0).
pub fn best_replica(view: &ClusterView) -> Result<String, String> {
    view.members
        .iter()
        .filter(|m| !m.is_leader() && m.role.as_deref() != Some("witness"))
        .filter(|m| m.state.as_deref() == Some("streaming") && !m.is_stale())
        .filter(|m| !tag_bool(m, "nofailover") && tag_u64(m, "failover_priority") != Some(0))
        .map(|m| {
            let lsn = m
                .replay_lsn
                .as_ref()
                .and_then(Value::as_str)
                .and_then(parse_lsn);
            let priority = tag_u64(m, "failover_priority").unwrap_or(1);
            (
                lsn.unwrap_or(0),
                priority,
                std::cmp::Reverse(m.name.as_str()),
            )
        })
        .max()
        .map(|(_, _, std::cmp::Reverse(name))| name.to_owned())
        .ok_or_else(|| {
            format!(
                "cluster {} has no replica to fail over to: none is streaming, fresh and free of \
                 nofailover; see `raftgresctl list`",
                view.scope()
            )
        })
}

/// A tag as the API sends it, a JSON boolean or its text.
fn tag_bool(member: &MemberView, name: &str) -> bool {
    match member.tags.as_ref().and_then(|t| t.get(name)) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

fn tag_u64(member: &MemberView, name: &str) -> Option<u64> {
    match member.tags.as_ref()?.get(name)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `16/B374D848` as a number.
fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    (low <= 0xFFFF_FFFF).then_some((high << 32) | low)
}

#[cfg(test)]
mod tests;
