//! Tables in the style of `patronictl`, and the values shown in them.

mod history;
mod members;
mod result_set;
mod values;

pub use history::{history_rows, history_table, history_tsv};
pub use members::{member_rows, member_table, member_tsv, topology_table};
pub use result_set::{ResultSet, result_json, result_table, result_tsv, result_yaml};
pub use values::{agent_version, dsn};

use comfy_table::{CellAlignment, ContentLineStyle, LineStyle, TableStyle};

/// `patronictl`'s box: `+---+` borders, `|` separators, the header ruled
/// off with the same `+---+` line as the borders, and no lines between rows.
const PATRONICTL: TableStyle = TableStyle::new()
    .top_border(LineStyle::new('+', '-', '+', '+'))
    .header_lines(ContentLineStyle::new('|', '|', '|'))
    .header_separator(LineStyle::new('+', '-', '+', '+'))
    .content_lines(ContentLineStyle::new('|', '|', '|'))
    .bottom_border(LineStyle::new('+', '-', '+', '+'));

/// A table in `patronictl`'s style, with the title in its top border.
pub struct Table(comfy_table::Table);

impl Table {
    pub fn new(columns: &[(&str, CellAlignment)]) -> Table {
        let mut table = comfy_table::Table::new();
        table
            .load_style(PATRONICTL)
            .set_header(columns.iter().map(|(name, _)| *name));
        for (column, (_, align)) in table.column_iter_mut().zip(columns) {
            column.set_cell_alignment(*align);
        }
        Table(table)
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.0.add_row(row);
    }

    /// With a title, the top border starts with it, as `patronictl list`
    /// writes `+ Cluster: name ---+---`; comfy-table has no titles.
    pub fn render(&self, title: Option<&str>) -> String {
        let mut lines = self.0.lines();
        let border = lines.next().unwrap_or_default();
        let top = match title {
            None => border,
            Some(title) => {
                let head = format!("+ {title} ");
                match border.get(head.chars().count()..) {
                    Some(rest) if !rest.is_empty() => head + rest,
                    _ => head + "+",
                }
            }
        };
        [top]
            .into_iter()
            .chain(lines)
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }
}

/// One line of `--format tsv`: the cells joined by tabs, a tab or a
/// newline in a cell turned into a space so that each row stays one line.
fn tsv_line<S: AsRef<str>>(cells: impl IntoIterator<Item = S>) -> String {
    let cells: Vec<String> = cells
        .into_iter()
        .map(|c| c.as_ref().replace(['\t', '\n'], " "))
        .collect();
    cells.join("\t") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_title_closes_the_border_itself() {
        let mut table = Table::new(&[("A", CellAlignment::Left)]);
        table.push(vec!["x".into()]);
        assert_eq!(
            table.render(Some("Cluster: long-name")),
            "+ Cluster: long-name +\n| A |\n+---+\n| x |\n+---+\n"
        );
    }
}
