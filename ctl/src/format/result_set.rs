//! `query`'s result sets, in each `--format`.

use super::Table;
use comfy_table::CellAlignment;
use serde_json::Value;

/// One result set of `query`: column names, and each row's values as
/// Postgres sends them in text, `None` for NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// `query --format pretty`: patronictl's box, every column left-aligned.
pub fn result_table(set: &ResultSet) -> String {
    let columns: Vec<(&str, CellAlignment)> = set
        .columns
        .iter()
        .map(|c| (c.as_str(), CellAlignment::Left))
        .collect();
    let mut table = Table::new(&columns);
    for row in &set.rows {
        table.push(row.iter().map(|v| v.clone().unwrap_or_default()).collect());
    }
    table.render(None)
}

/// `query --format tsv`: the column names, then a line a row, as patronictl
/// prints them; values are not changed, so one holding the delimiter or a
/// newline is ambiguous (json is not).
pub fn result_tsv(set: &ResultSet, delimiter: &str) -> String {
    let mut out = set.columns.join(delimiter);
    out.push('\n');
    for row in &set.rows {
        let cells: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("")).collect();
        out.push_str(&cells.join(delimiter));
        out.push('\n');
    }
    out
}

/// `query --format json`: patronictl's list of rows, each column name to
/// its value, columns in the result's order (a `serde_json::Map` would
/// sort them); of two columns of one name, the last value is kept, as
/// patronictl keeps it.
pub fn result_json(set: &ResultSet) -> String {
    let text = |s: &str| Value::from(s).to_string();
    let mut out = String::from("[");
    for (i, row) in set.rows.iter().enumerate() {
        out.push_str(if i == 0 { "\n  {" } else { ",\n  {" });
        let fields = distinct_fields(&set.columns, row);
        for (j, (column, value)) in fields.iter().enumerate() {
            let value = value.map_or_else(|| "null".to_owned(), text);
            let sep = if j == 0 { "" } else { "," };
            out.push_str(&format!("{sep}\n    {}: {value}", text(column)));
        }
        out.push_str(if fields.is_empty() { "}" } else { "\n  }" });
    }
    out.push_str(if set.rows.is_empty() { "]\n" } else { "\n]\n" });
    out
}

/// `query --format yaml`: the same rows as YAML, in the result's order.
pub fn result_yaml(set: &ResultSet) -> String {
    use yaml_rust2::Yaml;
    let rows = set
        .rows
        .iter()
        .map(|row| {
            let fields = distinct_fields(&set.columns, row)
                .into_iter()
                .map(|(column, value)| {
                    let value = value.map_or(Yaml::Null, |v| Yaml::String(v.to_owned()));
                    (Yaml::String(column.to_owned()), value)
                })
                .collect();
            Yaml::Hash(fields)
        })
        .collect();
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = yaml_rust2::YamlEmitter::new(&mut out).dump(&Yaml::Array(rows));
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    format!("{body}\n")
}

/// A row's (column, value) pairs in column order, a repeated column name
/// taking the place of its first occurrence with its last value.
fn distinct_fields<'a>(
    columns: &'a [String],
    row: &'a [Option<String>],
) -> Vec<(&'a str, Option<&'a str>)> {
    let mut fields: Vec<(&str, Option<&str>)> = Vec::new();
    for (column, value) in columns.iter().zip(row) {
        match fields.iter_mut().find(|(c, _)| *c == column.as_str()) {
            Some(field) => field.1 = value.as_deref(),
            None => fields.push((column.as_str(), value.as_deref())),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result() -> ResultSet {
        let text = |s: &str| Some(s.to_owned());
        ResultSet {
            columns: vec!["pg_is_in_recovery".into(), "name".into(), "note".into()],
            rows: vec![
                vec![text("f"), text("m1"), None],
                vec![text("t"), text("say \"hi\"\tthere"), text("")],
            ],
        }
    }

    #[test]
    fn query_results_print_as_patronictl_prints_them() {
        assert_eq!(
            result_tsv(&result(), "\t"),
            "pg_is_in_recovery\tname\tnote\nf\tm1\t\nt\tsay \"hi\"\tthere\t\n"
        );
        assert_eq!(
            result_tsv(&result(), ";").lines().next(),
            Some("pg_is_in_recovery;name;note")
        );
        let table = result_table(&result());
        assert!(table.starts_with("+-------------------+"), "{table}");
        assert!(table.contains("| f                 | m1"), "{table}");
        // JSON and YAML keep the columns' order and NULL.
        let json = result_json(&result());
        let rows: Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(
            rows,
            json!([
                {"pg_is_in_recovery": "f", "name": "m1", "note": null},
                {"pg_is_in_recovery": "t", "name": "say \"hi\"\tthere", "note": ""}
            ])
        );
        assert!(
            json.find("pg_is_in_recovery") < json.find("\"name\""),
            "{json}"
        );
        let yaml = result_yaml(&result());
        assert!(
            yaml.starts_with("- pg_is_in_recovery: f\n  name: m1\n  note: ~\n"),
            "{yaml}"
        );
        assert_eq!(
            crate::yaml::parse(&yaml).expect("valid YAML"),
            rows,
            "{yaml}"
        );
        // No rows: an empty list, and the header alone.
        let empty = ResultSet {
            columns: vec!["a".into()],
            rows: vec![],
        };
        assert_eq!(result_json(&empty), "[]\n");
        assert_eq!(result_yaml(&empty), "[]\n");
        assert_eq!(result_tsv(&empty, "\t"), "a\n");
        // A repeated column name keeps its place and its last value.
        let twice = ResultSet {
            columns: vec!["x".into(), "y".into(), "x".into()],
            rows: vec![vec![Some("1".into()), Some("2".into()), Some("3".into())]],
        };
        let rows: Value = serde_json::from_str(&result_json(&twice)).expect("valid JSON");
        assert_eq!(rows, json!([{"x": "3", "y": "2"}]));
    }
}
