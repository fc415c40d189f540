//! `history`: the changes of primary `GET /history` lists.

use super::values::lsn;
use super::{Table, tsv_line};
use comfy_table::CellAlignment;
use serde::Serialize;
use serde_json::Value;

/// One change of primary from `GET /history`, which sends
/// `[timeline, lsn, reason, timestamp, new_leader]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    pub timeline: Option<u64>,
    /// `X/Y` as Postgres writes it.
    pub lsn: Option<String>,
    pub lsn_bytes: Option<u64>,
    pub reason: Option<String>,
    pub timestamp: Option<String>,
    pub new_leader: Option<String>,
}

pub fn history_rows(history: &Value) -> Result<Vec<HistoryRow>, String> {
    let Value::Array(entries) = history else {
        return Err("it is not a list".into());
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let Value::Array(fields) = entry else {
                return Err(format!("entry {i} is not a list"));
            };
            let text = |n: usize| fields.get(n).and_then(Value::as_str).map(str::to_owned);
            let lsn_bytes = fields.get(1).and_then(Value::as_u64);
            Ok(HistoryRow {
                timeline: fields.first().and_then(Value::as_u64),
                lsn: lsn_bytes.map(lsn),
                lsn_bytes,
                reason: text(2),
                timestamp: text(3),
                new_leader: text(4),
            })
        })
        .collect()
}

/// patronictl's columns: the TSV header and the table's, with the
/// table's alignment.
const HISTORY_COLUMNS: [(&str, CellAlignment); 5] = [
    ("TL", CellAlignment::Right),
    ("LSN", CellAlignment::Right),
    ("Reason", CellAlignment::Left),
    ("Timestamp", CellAlignment::Left),
    ("New Leader", CellAlignment::Left),
];

/// A change's cells in [`HISTORY_COLUMNS`] order.
fn history_cells(row: &HistoryRow) -> Vec<String> {
    vec![
        row.timeline.map(|t| t.to_string()).unwrap_or_default(),
        row.lsn.clone().unwrap_or_default(),
        row.reason.clone().unwrap_or_default(),
        row.timestamp.clone().unwrap_or_default(),
        row.new_leader.clone().unwrap_or_default(),
    ]
}

/// `history --format tsv`: patronictl's header line, then a line a change.
pub fn history_tsv(rows: &[HistoryRow]) -> String {
    let header = tsv_line(HISTORY_COLUMNS.iter().map(|(name, _)| *name));
    rows.iter()
        .fold(header, |out, row| out + &tsv_line(history_cells(row)))
}

pub fn history_table(rows: &[HistoryRow]) -> String {
    let mut table = Table::new(&HISTORY_COLUMNS);
    for row in rows {
        table.push(history_cells(row));
    }
    table.render(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_reads_patroni_arrays() {
        let rows = history_rows(&json!([
            [
                1,
                50_331_744,
                "no recovery target specified",
                "2026-01-01T00:00:00Z",
                "m1"
            ],
            [null, "bad", 3]
        ]))
        .expect("valid");
        assert_eq!(rows[0].lsn.as_deref(), Some("0/3000060"));
        assert_eq!(rows[1].timeline, None);
        assert_eq!(rows[1].lsn, None);
        let table = history_table(&rows);
        assert!(
            table.contains("|  1 | 0/3000060 | no recovery target specified | 2026-01-01T00:00:00Z | m1         |"),
            "{table}"
        );
        assert!(history_rows(&json!({})).is_err());
        assert!(history_rows(&json!([1])).is_err());
    }
}
