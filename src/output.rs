//! Results on stdout in the formats OpenStack's command-line clients use: `-f table` (Title Case
//! headers, ASCII borders), `-f value` (space-separated, no header) and `-f json` (one document,
//! snake_case keys, documented in `docs/`). `-c COLUMN` picks columns by header.
//!
//! Tables stream: the first rows size the columns, later rows follow without being held in memory.

use std::io::Write;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Value,
}

/// Rows buffered to size table columns before streaming the rest.
const SIZING_ROWS: usize = 1000;

/// Writes rows of one listing in the chosen format (table or value; JSON is written by callers).
pub struct Listing<'w> {
    out: &'w mut dyn Write,
    format: Format,
    headers: Vec<&'static str>,
    selected: Vec<usize>,
    pending: Vec<Vec<String>>,
    widths: Option<Vec<usize>>,
}

impl<'w> Listing<'w> {
    /// `columns` are the `-c` choices (empty: all). An unknown column is a usage error.
    pub fn new(out: &'w mut dyn Write, format: Format, headers: &[&'static str], columns: &[String]) -> Result<Listing<'w>> {
        let selected = select_columns(headers, columns)?;
        Ok(Listing { out, format, headers: headers.to_vec(), selected, pending: Vec::new(), widths: None })
    }

    pub fn row(&mut self, cells: Vec<String>) -> Result<()> {
        let cells: Vec<String> = self.selected.iter().map(|i| cells.get(*i).cloned().unwrap_or_default()).collect();
        match self.format {
            Format::Value | Format::Json => writeln!(self.out, "{}", cells.join(" ")).map_err(Error::Output),
            Format::Table => {
                if self.widths.is_some() {
                    return self.write_row(&cells);
                }
                self.pending.push(cells);
                if self.pending.len() >= SIZING_ROWS {
                    self.flush_pending()?;
                }
                Ok(())
            }
        }
    }

    pub fn finish(mut self) -> Result<()> {
        if self.format == Format::Table {
            if self.widths.is_none() {
                self.flush_pending()?;
            }
            self.rule()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        let headers: Vec<&str> = self.selected.iter().map(|i| self.headers[*i]).collect();
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.pending {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        self.widths = Some(widths);
        self.rule()?;
        let headers: Vec<String> = headers.into_iter().map(String::from).collect();
        self.write_row(&headers)?;
        self.rule()?;
        for row in std::mem::take(&mut self.pending) {
            self.write_row(&row)?;
        }
        Ok(())
    }

    fn rule(&mut self) -> Result<()> {
        let widths = self.widths.as_deref().unwrap_or_default();
        let line: String = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect();
        writeln!(self.out, "{line}+").map_err(Error::Output)
    }

    fn write_row(&mut self, cells: &[String]) -> Result<()> {
        let widths = self.widths.as_deref().unwrap_or_default();
        let mut line = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w.saturating_sub(cell.chars().count());
            line.push_str("| ");
            line.push_str(cell);
            line.push_str(&" ".repeat(pad + 1));
        }
        writeln!(self.out, "{line}|").map_err(Error::Output)
    }
}

/// Indices of the `-c` columns, matched case-insensitively against the headers.
pub fn select_columns(headers: &[&str], columns: &[String]) -> Result<Vec<usize>> {
    if columns.is_empty() {
        return Ok((0..headers.len()).collect());
    }
    columns
        .iter()
        .map(|c| {
            headers.iter().position(|h| h.eq_ignore_ascii_case(c) || snake(h) == c.as_str()).ok_or_else(|| {
                Error::Usage(format!("unknown column '{c}'; choose from: {}", headers.join(", ")))
            })
        })
        .collect()
}

/// "New Secrets" → "new_secrets": the JSON key for a header.
pub fn snake(header: &str) -> String {
    header.to_ascii_lowercase().replace(' ', "_")
}

/// A cell for an optional value: empty when NULL.
pub fn cell<S: AsRef<str>>(v: &Option<S>) -> String {
    v.as_ref().map(|s| s.as_ref().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: Format, columns: &[&str], rows: &[[&str; 2]]) -> String {
        let mut out = Vec::new();
        let cols: Vec<String> = columns.iter().map(|s| s.to_string()).collect();
        let mut t = Listing::new(&mut out, format, &["ID", "Host Name"], &cols).expect("columns");
        for r in rows {
            t.row(r.iter().map(|s| s.to_string()).collect()).expect("row");
        }
        t.finish().expect("finish");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn table_has_title_case_headers_and_borders() {
        let s = render(Format::Table, &[], &[["a", "node1@lvm#p"], ["bb", ""]]);
        assert_eq!(
            s,
            "+----+-------------+\n| ID | Host Name   |\n+----+-------------+\n| a  | node1@lvm#p |\n| bb |             |\n+----+-------------+\n"
        );
    }

    #[test]
    fn value_format_and_column_selection() {
        assert_eq!(render(Format::Value, &["host_name"], &[["a", "h"]]), "h\n");
        assert_eq!(render(Format::Value, &["Host Name", "id"], &[["a", "h"]]), "h a\n");
        let mut out = Vec::new();
        assert!(Listing::new(&mut out, Format::Value, &["ID"], &["nope".to_string()]).is_err());
    }

    #[test]
    fn long_tables_stream_after_sizing() {
        let rows: Vec<[&str; 2]> = (0..SIZING_ROWS + 5).map(|_| ["x", "y"]).collect();
        let s = render(Format::Table, &[], &rows);
        assert_eq!(s.lines().count(), SIZING_ROWS + 5 + 4);
    }
}
