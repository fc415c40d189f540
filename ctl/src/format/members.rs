//! `list` and `topology`: a row a member, as a table, TSV, or patronictl's
//! JSON and YAML rows.

use super::values::role_title;
use super::{Table, tsv_line};
use crate::cluster::{ClusterView, MemberView};
use comfy_table::CellAlignment;
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

/// Lag in whole MiB, rounded half up, a number for patronictl's JSON rows;
/// a word such as `unknown` is passed on as sent, and none is empty.
fn lag_mb_value(lag: Option<&Value>) -> Value {
    match lag {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(bytes) => Value::from(bytes / MIB + u64::from(bytes % MIB >= MIB / 2)),
            None => Value::Number(n.clone()),
        },
        Some(other) => other.clone(),
    }
}

fn host_port(member: &MemberView) -> String {
    match (&member.host, member.port) {
        (Some(host), Some(port)) if host.contains(':') => format!("[{host}]:{port}"),
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.clone(),
        (None, _) => String::new(),
    }
}

/// When the answering agent last heard from a member: tenths of a second,
/// `>=` when that agent watched for less time than the record is old, and
/// `(stale)` when it has been silent for a ttl or longer.
pub fn last_report(member: &MemberView) -> String {
    let Some(ms) = member.report_age_ms else {
        return String::new();
    };
    let at_least = if member.report_age_is_lower_bound == Some(true) {
        ">= "
    } else {
        ""
    };
    let stale = if member.is_stale() { " (stale)" } else { "" };
    format!("{at_least}{}.{} s ago{stale}", ms / 1000, ms % 1000 / 100)
}

/// `list`'s columns: patronictl 4's key (its JSON and YAML rows and its
/// TSV header), the table's header (both lags are "Lag" there, as in
/// patronictl), and the alignment. Last report is ours.
const MEMBER_COLUMNS: [(&str, &str, CellAlignment); 10] = [
    ("Member", "Member", CellAlignment::Left),
    ("Host", "Host", CellAlignment::Left),
    ("Role", "Role", CellAlignment::Left),
    ("State", "State", CellAlignment::Left),
    ("TL", "TL", CellAlignment::Right),
    ("Receive LSN", "Receive LSN", CellAlignment::Right),
    ("Receive Lag", "Lag", CellAlignment::Right),
    ("Replay LSN", "Replay LSN", CellAlignment::Right),
    ("Replay Lag", "Lag", CellAlignment::Right),
    ("Last report", "Last report", CellAlignment::Left),
];

/// As patronictl: each of these shows with `-e`, or when some member needs it.
const PENDING_RESTART_COLUMN: (&str, &str, CellAlignment) =
    ("Pending restart", "Pending restart", CellAlignment::Left);
const PENDING_REASON_COLUMN: (&str, &str, CellAlignment) = (
    "Pending restart reason",
    "Pending restart reason",
    CellAlignment::Left,
);
const SCHEDULED_RESTART_COLUMN: (&str, &str, CellAlignment) = (
    "Scheduled restart",
    "Scheduled restart",
    CellAlignment::Left,
);
const TAGS_COLUMN: (&str, &str, CellAlignment) = ("Tags", "Tags", CellAlignment::Left);

/// The optional columns a list shows.
#[derive(Clone, Copy)]
struct Extra {
    pending: bool,
    reason: bool,
    scheduled: bool,
    tags: bool,
}

impl Extra {
    fn of(members: &[&MemberView], extended: bool) -> Extra {
        let reasons = |m: &&&MemberView| {
            m.pending_restart_reason
                .as_ref()
                .is_some_and(|r| !r.is_empty())
        };
        Extra {
            pending: extended || members.iter().any(|m| m.pending_restart == Some(true)),
            reason: extended || members.iter().any(|m| reasons(&m)),
            scheduled: extended || members.iter().any(|m| m.scheduled_restart.is_some()),
            tags: extended || members.iter().any(|m| has_set_tags(m)),
        }
    }
}

/// A tag away from its default: what patronictl, which stores only the
/// tags one sets, would show.
fn has_set_tags(member: &MemberView) -> bool {
    member.tags.as_ref().is_some_and(|tags| {
        tags.iter().any(|(key, value)| match key.as_str() {
            "nofailover" | "nosync" => value != &Value::Bool(false),
            "failover_priority" => value != &Value::from(1),
            _ => true,
        })
    })
}

fn member_columns(extra: Extra) -> Vec<(&'static str, &'static str, CellAlignment)> {
    let mut columns = MEMBER_COLUMNS.to_vec();
    if extra.pending {
        columns.push(PENDING_RESTART_COLUMN);
    }
    if extra.reason {
        columns.push(PENDING_REASON_COLUMN);
    }
    if extra.scheduled {
        columns.push(SCHEDULED_RESTART_COLUMN);
    }
    if extra.tags {
        columns.push(TAGS_COLUMN);
    }
    columns
}

fn member_table_for(extra: Extra) -> Table {
    let headers: Vec<(&str, CellAlignment)> = member_columns(extra)
        .iter()
        .map(|&(_, header, align)| (header, align))
        .collect();
    Table::new(&headers)
}

/// A member's cells in [`MEMBER_COLUMNS`] order: text, but numbers where
/// patronictl's JSON has numbers (TL, lags in MB).
fn member_cells(member: &MemberView, indent: &str, extra: Extra, in_table: bool) -> Vec<Value> {
    let text = |s: String| Value::String(s);
    let follower = !member.is_leader();
    let position = |lsn: &Option<Value>| match lsn {
        Some(Value::String(s)) if follower => text(s.clone()),
        _ => text(String::new()),
    };
    let lag = |lag: &Option<Value>| {
        if follower {
            lag_mb_value(lag.as_ref())
        } else {
            text(String::new())
        }
    };
    let mut cells = vec![
        text(format!("{indent}{}", member.name)),
        text(host_port(member)),
        text(role_title(member.role.as_deref())),
        text(member.state.clone().unwrap_or_default()),
        member.timeline.map_or(text(String::new()), Value::from),
        position(&member.receive_lsn),
        lag(&member.receive_lag),
        position(&member.replay_lsn),
        lag(&member.replay_lag),
        text(last_report(member)),
    ];
    if extra.pending {
        cells.push(text(if member.pending_restart == Some(true) {
            "*".into()
        } else {
            String::new()
        }));
    }
    if extra.reason {
        cells.push(text(pending_reason(member, in_table)));
    }
    if extra.scheduled {
        cells.push(text(scheduled_restart(member)));
    }
    if extra.tags {
        let tags = member.tags.clone().unwrap_or_default();
        cells.push(if in_table {
            text(
                tags.iter()
                    .map(|(key, value)| format!("{key}: {}", cell_text(value)))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        } else {
            Value::Object(tags)
        });
    }
    cells
}

/// When the member's scheduled restart runs, as patronictl shows it: the
/// time, and the version condition if it has one.
fn scheduled_restart(member: &MemberView) -> String {
    let Some(restart) = &member.scheduled_restart else {
        return String::new();
    };
    let at = restart.get("schedule").map(cell_text).unwrap_or_default();
    match restart.get("postgres_version") {
        Some(version) => format!("{at} if version < {}", cell_text(version)),
        None => at,
    }
}

/// `name: old->new` a setting, a line each; in a table, as patronictl, a
/// line longer than 50 characters says only that it is hidden.
fn pending_reason(member: &MemberView, in_table: bool) -> String {
    let Some(reasons) = &member.pending_restart_reason else {
        return String::new();
    };
    reasons
        .iter()
        .map(|(name, change)| {
            let side = |key: &str| change.get(key).map(cell_text).unwrap_or_default();
            let full = format!("{name}: {}->{}", side("old_value"), side("new_value"));
            if in_table && full.chars().count() > 50 {
                format!("{name}: [hidden - too long]")
            } else {
                full
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn member_row(member: &MemberView, indent: &str, extra: Extra) -> Vec<String> {
    member_cells(member, indent, extra, true)
        .iter()
        .map(cell_text)
        .collect()
}

fn sorted_members(view: &ClusterView) -> Vec<&MemberView> {
    let mut members: Vec<&MemberView> = view.members.iter().collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    members
}

/// `list --format json|yaml`: patronictl's rows, a map a member keyed by
/// its column names, the cluster's name first.
pub fn member_rows(view: &ClusterView, extended: bool) -> Value {
    let members = sorted_members(view);
    let extra = Extra::of(&members, extended);
    let columns = member_columns(extra);
    let rows = members
        .iter()
        .map(|member| {
            let mut row = serde_json::Map::new();
            row.insert("Cluster".into(), Value::from(view.scope()));
            for ((key, _, _), cell) in columns.iter().zip(member_cells(member, "", extra, false)) {
                row.insert((*key).into(), cell);
            }
            Value::Object(row)
        })
        .collect();
    Value::Array(rows)
}

/// `list --format tsv`: patronictl's header line, then a line a member.
pub fn member_tsv(view: &ClusterView, extended: bool) -> String {
    let members = sorted_members(view);
    let extra = Extra::of(&members, extended);
    let columns = member_columns(extra);
    let header = tsv_line(std::iter::once("Cluster").chain(columns.iter().map(|(key, _, _)| *key)));
    members.iter().fold(header, |out, member| {
        let cells = std::iter::once(view.scope().to_owned()).chain(member_row(member, "", extra));
        out + &tsv_line(cells)
    })
}

fn cluster_title(view: &ClusterView) -> String {
    match view.lease.as_ref().and_then(|l| l.epoch) {
        Some(epoch) => format!("Cluster: {} (epoch {epoch})", view.scope()),
        None => format!("Cluster: {}", view.scope()),
    }
}

/// Lines under the table for a paused cluster and a pending switchover.
fn cluster_notes(view: &ClusterView) -> String {
    let mut notes = String::new();
    if view.paused() {
        notes.push_str(" Maintenance mode: on\n");
    }
    if let Some(s) = &view.scheduled_switchover {
        let at = s.at.as_deref().unwrap_or("(time unknown)");
        notes.push_str(&format!(" Switchover scheduled at: {at}\n"));
        if let Some(from) = &s.from {
            notes.push_str(&format!("                    from: {from}\n"));
        }
        if let Some(to) = &s.to {
            notes.push_str(&format!("                      to: {to}\n"));
        }
    }
    notes
}

/// `raftgresctl list`: every member by name.
pub fn member_table(view: &ClusterView, extended: bool) -> String {
    let members = sorted_members(view);
    let extra = Extra::of(&members, extended);
    let mut table = member_table_for(extra);
    for member in members {
        table.push(member_row(member, "", extra));
    }
    table.render(Some(&cluster_title(view))) + &cluster_notes(view)
}

/// `raftgresctl topology`: the leader first, the members that replicate
/// from it indented under it; a witness replicates nothing, so it stays at
/// the top level, as does everyone when there is no leader.
pub fn topology_table(view: &ClusterView) -> String {
    let members = sorted_members(view);
    let extra = Extra::of(&members, false);
    let mut table = member_table_for(extra);
    let leader = members.iter().find(|m| m.is_leader()).copied();
    let replicates = |m: &MemberView| !m.is_leader() && m.role.as_deref() != Some("witness");
    if let Some(leader) = leader {
        table.push(member_row(leader, "", extra));
        for member in members.iter().filter(|m| replicates(m)) {
            table.push(member_row(member, "+ ", extra));
        }
    }
    for member in members
        .iter()
        .filter(|m| leader.is_none() || !(m.is_leader() || replicates(m)))
    {
        table.push(member_row(member, "", extra));
    }
    table.render(Some(&cluster_title(view))) + &cluster_notes(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn view(doc: Value) -> ClusterView {
        ClusterView::deserialize(&doc).expect("valid cluster document")
    }

    fn lab() -> ClusterView {
        view(json!({
            "scope": "lab",
            "members": [
                {"name": "m2", "role": "replica", "state": "streaming", "host": "127.0.0.1",
                 "port": 5433, "timeline": 2,
                 "receive_lsn": "0/3000060", "receive_lag": 0,
                 "replay_lsn": "0/2C80060", "replay_lag": 3_670_016,
                 "report_age_ms": 1_234, "report_age_is_lower_bound": false, "stale": false},
                {"name": "w", "role": "witness", "state": "running"},
                {"name": "m1", "role": "leader", "state": "running", "host": "127.0.0.1",
                 "port": 5432, "timeline": 2,
                 "report_age_ms": 400, "report_age_is_lower_bound": false, "stale": false},
                {"name": "m3", "role": "sync_standby", "state": "unknown", "host": "::1",
                 "port": 5434, "timeline": 2, "receive_lsn": null, "receive_lag": null,
                 "replay_lsn": null, "replay_lag": null,
                 "report_age_ms": 12_345, "report_age_is_lower_bound": false, "stale": true}
            ],
            "pause": true,
            "scheduled_switchover": {"at": "2026-11-22T10:00:00Z", "from": "m1", "to": "m2"},
            "lease": {"holder": "m1", "epoch": 3}
        }))
    }

    #[test]
    fn list_renders_like_patronictl() {
        let want = "\
+ Cluster: lab (epoch 3) -+--------------+-----------+----+-------------+-----+------------+-----+--------------------+
| Member | Host           | Role         | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Last report        |
+--------+----------------+--------------+-----------+----+-------------+-----+------------+-----+--------------------+
| m1     | 127.0.0.1:5432 | Leader       | running   |  2 |             |     |            |     | 0.4 s ago          |
| m2     | 127.0.0.1:5433 | Replica      | streaming |  2 |   0/3000060 |   0 |  0/2C80060 |   4 | 1.2 s ago          |
| m3     | [::1]:5434     | Sync Standby | unknown   |  2 |             |     |            |     | 12.3 s ago (stale) |
| w      |                | Witness      | running   |    |             |     |            |     |                    |
+--------+----------------+--------------+-----------+----+-------------+-----+------------+-----+--------------------+
 Maintenance mode: on
 Switchover scheduled at: 2026-11-22T10:00:00Z
                    from: m1
                      to: m2
";
        assert_eq!(member_table(&lab(), false), want);
    }

    /// patronictl's `list -f json` rows: jq scripts written for it read
    /// `.[] | select(.Role == "Leader") | .Member` and the lags in MB.
    #[test]
    fn json_rows_have_patronictl_s_keys() {
        let rows = member_rows(&lab(), false);
        let m2 = &rows[1];
        assert_eq!(
            m2,
            &json!({"Cluster": "lab", "Member": "m2", "Host": "127.0.0.1:5433",
                    "Role": "Replica", "State": "streaming", "TL": 2,
                    "Receive LSN": "0/3000060", "Receive Lag": 0,
                    "Replay LSN": "0/2C80060", "Replay Lag": 4,
                    "Last report": "1.2 s ago"})
        );
        let leaders: Vec<&Value> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["Role"] == "Leader")
            .map(|r| &r["Member"])
            .collect();
        assert_eq!(leaders, [&json!("m1")]);
        assert_eq!(rows[0]["Replay Lag"], "", "a leader has no lag");
        assert_eq!(rows[2]["TL"], 2);
    }

    #[test]
    fn tsv_has_patronictl_s_header_and_a_line_a_member() {
        let text = member_tsv(&lab(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Cluster\tMember\tHost\tRole\tState\tTL\tReceive LSN\tReceive Lag\tReplay LSN\tReplay Lag\tLast report"
        );
        assert_eq!(
            lines[2],
            "lab\tm2\t127.0.0.1:5433\tReplica\tstreaming\t2\t0/3000060\t0\t0/2C80060\t4\t1.2 s ago"
        );
        assert_eq!(lines.len(), 5);
    }

    /// `-e`: every optional column, needed or not; without it, a column
    /// shows as soon as one member needs it.
    #[test]
    fn extended_adds_pending_restart_its_reason_and_tags() {
        let header = |text: &str| text.lines().nth(1).unwrap_or_default().to_owned();
        let plain = member_table(&lab(), false);
        assert!(!header(&plain).contains("Pending"), "{plain}");
        assert!(!header(&plain).contains("Tags"), "{plain}");
        let extended = member_table(&lab(), true);
        assert!(
            header(&extended).ends_with(
                "| Pending restart | Pending restart reason | Scheduled restart | Tags |"
            ),
            "{extended}"
        );

        let mut view = lab();
        view.members[0].pending_restart = Some(true);
        view.members[0].pending_restart_reason = json!({
            "max_connections": {"old_value": "100", "new_value": "150"},
            "shared_preload_libraries": {"old_value": "", "new_value": "pg_stat_statements,auto_explain,pg_cron"}
        }).as_object().cloned();
        view.members[0].tags = json!({"nofailover": true, "failover_priority": 0})
            .as_object()
            .cloned();
        let rows = member_rows(&view, false);
        let m2 = &rows[1];
        assert_eq!(m2["Pending restart"], "*");
        assert_eq!(
            m2["Pending restart reason"],
            "max_connections: 100->150\nshared_preload_libraries: ->pg_stat_statements,auto_explain,pg_cron"
        );
        assert_eq!(
            m2["Tags"],
            json!({"nofailover": true, "failover_priority": 0})
        );
        let table = member_table(&view, false);
        assert!(table.contains("max_connections: 100->150"), "{table}");
        assert!(
            table.contains("shared_preload_libraries: [hidden - too long]"),
            "{table}"
        );
        assert!(table.contains("nofailover: true"), "{table}");
    }

    #[test]
    fn a_pending_restart_adds_patronictl_s_column() {
        let mut view = lab();
        view.members[0].pending_restart = Some(true);
        let text = member_table(&view, false);
        let header = text.lines().nth(1).expect("a header");
        assert!(header.ends_with("| Pending restart |"), "{header}");
        let m2 = text
            .lines()
            .find(|l| l.starts_with("| m2 "))
            .expect("m2's row");
        assert!(m2.ends_with("| *               |"), "{m2}");
        let m1 = text
            .lines()
            .find(|l| l.starts_with("| m1 "))
            .expect("m1's row");
        assert!(m1.ends_with("|                 |"), "{m1}");
    }

    #[test]
    fn a_scheduled_restart_adds_patronictl_s_column() {
        let mut view = lab();
        view.members[0].scheduled_restart =
            json!({"schedule": "2026-11-22T10:00:00Z", "postgres_version": "15.4"})
                .as_object()
                .cloned();
        view.members[2].scheduled_restart = json!({"schedule": "2026-11-22T11:00:00Z"})
            .as_object()
            .cloned();
        let text = member_table(&view, false);
        let header = text.lines().nth(1).expect("a header");
        assert!(
            header.ends_with("| Last report        | Scheduled restart                      |"),
            "{header}"
        );
        let rows = member_rows(&view, false);
        let of = |name: &str| {
            rows.as_array()
                .expect("rows")
                .iter()
                .find(|row| row["Member"] == name)
                .map(|row| row["Scheduled restart"].clone())
        };
        assert_eq!(
            of("m2"),
            Some(json!("2026-11-22T10:00:00Z if version < 15.4"))
        );
        assert_eq!(of("m1"), Some(json!("2026-11-22T11:00:00Z")));
        assert_eq!(of("m3"), Some(json!("")));
        assert!(
            !member_table(&lab(), false).contains("Scheduled"),
            "no column while none is scheduled"
        );
    }

    #[test]
    fn topology_puts_replicas_under_the_leader() {
        let text = topology_table(&lab());
        let names: Vec<&str> = text
            .lines()
            .skip(3)
            .filter_map(|l| l.strip_prefix("| "))
            .filter_map(|l| l.split(" |").next())
            .map(str::trim_end)
            .collect();
        assert_eq!(names, ["m1", "+ m2", "+ m3", "w"]);
        let leaderless = view(json!({"members": [
            {"name": "b", "role": "replica"}, {"name": "a", "role": "replica"}]}));
        let text = topology_table(&leaderless);
        assert!(text.starts_with("+ Cluster: (unnamed) "), "{text}");
        assert!(
            text.contains("| a      |") && !text.contains("+ a"),
            "{text}"
        );
    }

    #[test]
    fn lag_is_whole_mib_rounded_half_up() {
        let cases = [
            (json!(0), "0"),
            (json!(524_287), "0"),
            (json!(524_288), "1"),
            (json!(1_048_576), "1"),
            (json!(1_572_864), "2"),
            (json!("unknown"), "unknown"),
            (json!(-5), "-5"),
            (Value::Null, ""),
        ];
        for (lag, want) in cases {
            assert_eq!(cell_text(&lag_mb_value(Some(&lag))), want, "{lag}");
        }
        assert_eq!(cell_text(&lag_mb_value(None)), "");
    }

    #[test]
    fn last_report_shows_the_age_and_what_it_means() {
        let report = |age: Value, lower: Value, stale: Value| {
            let doc = json!({"name": "m", "report_age_ms": age,
                             "report_age_is_lower_bound": lower, "stale": stale});
            last_report(&MemberView::deserialize(&doc).expect("a member"))
        };
        let cases = [
            (json!(0), json!(false), json!(false), "0.0 s ago"),
            (json!(999), json!(false), json!(false), "0.9 s ago"),
            (json!(3_050), json!(false), json!(true), "3.0 s ago (stale)"),
            (json!(1_500), json!(true), json!(false), ">= 1.5 s ago"),
            (
                json!(61_000),
                json!(true),
                json!(true),
                ">= 61.0 s ago (stale)",
            ),
            (Value::Null, json!(false), json!(true), ""),
            (json!("soon"), json!(false), json!(false), ""),
        ];
        for (age, lower, stale, want) in cases {
            assert_eq!(report(age.clone(), lower, stale), want, "{age}");
        }
    }
}
