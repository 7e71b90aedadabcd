//! `keymigrate scan`: the dry-run report. Every row on the all-zeros key in the scope, what
//! `migrate` will do with it, and counts per table. Opens the database read-only.

use std::io::Write;

use crate::cli::ScanArgs;
use crate::db::{Access, Db};
use crate::error::{Error, Outcome, Result};
use crate::cinder::Table;
use crate::output::{self, Format, Listing};
use crate::plan::{self, Action, Item, Tally};
use crate::settings::Settings;

const HEADERS: [&str; 5] = ["Table", "ID", "Host", "Owner", "Action"];

pub fn run(settings: &Settings, args: &ScanArgs, out: &mut dyn Write) -> Result<Outcome> {
    let conditions = &settings.conditions;
    super::log_conditions(conditions);
    let scope = &settings.scope;
    log::info!("Scope: {} (from {})", scope.describe(), scope.source);
    let mut db = Db::connect(&settings.database, Access::ReadOnly)?;
    let format = args.output.format.unwrap_or(Format::Table);
    // Validate -c before printing anything.
    output::select_columns(&HEADERS, &args.output.column)?;

    let mut tally = Tally::default();
    // A spinner only when the results go to a file or a pipe: on a terminal they would mix.
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        crate::progress::start(None, "scanning");
    }
    let result = write_plan(&mut db, settings, args, format, &mut tally, out);
    crate::progress::finish();
    result?;
    log::info!(
        "Scan found {} unit(s) in scope ({} new secret(s) needed, {} blocked); {} row(s) with a NULL host not in scope",
        tally.units(),
        tally.new_secrets(),
        tally.blocked(),
        tally.skipped
    );
    Ok(super::outcome(conditions, &tally))
}

fn write_plan(db: &mut Db, settings: &Settings, args: &ScanArgs, format: Format, tally: &mut Tally, out: &mut dyn Write) -> Result<()> {
    let (conditions, scope) = (&settings.conditions, &settings.scope);
    if format == Format::Json {
        // Stream one JSON object, its members in sorted order as the other reports write theirs:
        // the head members, then the rows array one element at a time, then the counts.
        member(out, "{\"conditions\":", &super::conditions_json(conditions))?;
        member(out, ",\"scope\":", &super::scope_json(scope))?;
        out.write_all(b",\"rows\":[").map_err(Error::Output)?;
        // The readers render the rows, each page into one buffer, every row after a comma;
        // the very first comma is left out here.
        let render = |item: Item, page: &mut Vec<u8>| {
            if page.capacity() == 0 {
                // About 200 bytes a row: grown once or twice rather than a dozen times.
                page.reserve(256 * crate::db::BATCH as usize);
            }
            page.push(b',');
            row_json(&item).write(page);
            Ok(())
        };
        let mut first = true;
        let (counted, census) = plan::walk_with(db, scope, crate::db::Detail::Rows, plan::Lookup::Index, &render, |page: Vec<u8>, items| {
            crate::progress::inc(items);
            let page = match first {
                true if !page.is_empty() => {
                    first = false;
                    &page[1..]
                }
                _ => &page[..],
            };
            out.write_all(page).map_err(Error::Output)
        })?;
        *tally = counted;
        out.write_all(b"]").map_err(Error::Output)?;
        member(out, ",\"counts\":", &*tally)?;
        member(out, ",\"deleted\":", &census.deleted)?;
        member(out, ",\"new_secrets\":", &tally.new_secrets())?;
        member(out, ",\"units\":", &tally.units())?;
        writeln!(out, "}}").map_err(Error::Output)?;
    } else {
        if format == Format::Table {
            writeln!(out, "Key manager: {}", conditions.message()).map_err(Error::Output)?;
            writeln!(out, "Scope: {} (from {})", scope.describe(), scope.source).map_err(Error::Output)?;
        }
        let mut table = Listing::new(out, format, &HEADERS, &args.output.column)?;
        let census = plan::walk(db, scope, plan::Lookup::Index, |item| {
            tally.add(&item);
            crate::progress::inc(1);
            table.row(row_cells(&item))
        })?;
        table.finish()?;
        if format == Format::Table {
            write_counts(out, tally, &census.deleted)?;
        }
    }
    Ok(())
}

/// One member of a JSON object: `key` with its punctuation, then the value, its objects' keys
/// sorted as in every other report (a `serde_json::Value`'s map is sorted).
fn member(out: &mut dyn Write, key: &str, value: &impl serde::Serialize) -> Result<()> {
    let value = serde_json::to_value(value).map_err(|e| Error::Internal(e.to_string()))?;
    out.write_all(key.as_bytes()).map_err(Error::Output)?;
    serde_json::to_writer(out, &value).map_err(|e| Error::Output(e.into()))
}

fn row_cells(item: &Item) -> Vec<String> {
    match item {
        Item::Unit(u) => vec![
            u.table.name().to_string(),
            u.id.to_string(),
            output::cell(&u.host),
            output::cell(&u.owner),
            u.action.to_string(),
        ],
        Item::Skipped(s) => {
            vec![s.table.name().to_string(), s.id.to_string(), String::new(), String::new(), format!("skipped: {}", s.reason)]
        }
    }
}

/// One element of the JSON `rows` array (documented in docs/).
#[cfg_attr(test, derive(serde::Serialize))]
struct RowJson<'a> {
    table: Table,
    id: &'a str,
    host: Option<&'a str>,
    owner: Option<&'a str>,
    project: Option<&'a str>,
    action: &'static str,
    shares_with: Option<&'a str>,
    reason: Option<&'static str>,
}

impl RowJson<'_> {
    /// Appends the row as JSON: the bytes serde_json would write for it, written directly
    /// because a scan writes millions of them and its field-by-field machinery costs more than
    /// reading the rows.
    fn write(&self, out: &mut Vec<u8>) {
        // Room for the whole row at once: the field names and constants take under 130 bytes.
        let strings = [Some(self.id), self.host, self.owner, self.project, self.shares_with, self.reason];
        out.reserve(160 + strings.iter().flatten().map(|s| s.len() + 2).sum::<usize>());
        out.extend_from_slice(b"{\"table\":\"");
        out.extend_from_slice(self.table.name().as_bytes());
        out.extend_from_slice(b"\",\"id\":");
        json_string(out, self.id);
        for (key, value) in [(&b",\"host\":"[..], self.host), (b",\"owner\":", self.owner), (b",\"project\":", self.project)] {
            out.extend_from_slice(key);
            json_option(out, value);
        }
        // The action is one of keymigrate's own words, which need no escaping.
        out.extend_from_slice(b",\"action\":\"");
        out.extend_from_slice(self.action.as_bytes());
        out.push(b'"');
        out.extend_from_slice(b",\"shares_with\":");
        json_option(out, self.shares_with);
        out.extend_from_slice(b",\"reason\":");
        json_option(out, self.reason);
        out.push(b'}');
    }
}

fn json_option(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(s) => json_string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string: copied as it is when nothing in it needs escaping (IDs, hosts, nearly
/// everything), escaped by serde_json otherwise.
fn json_string(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a string into a Vec cannot fail; were it ever to, the row would say so.
        out.extend_from_slice(b"null");
    }
}

/// Whether any byte is one JSON escapes: a control character, `"` or `\\`. Eight bytes at a
/// time, without a branch per word (the last word overlaps the one before it rather than
/// leaving bytes over): a report checks about 190 bytes per row, for millions of rows.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `x` that is below 0x20, `"` or `\\` is set in the result
    // (others may be too when one is: only whether any is matters).
    let flagged = |x: u64| {
        let below_space = x.wrapping_sub(ONES * 0x20) & !x;
        let quote = (x ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES) & !(x ^ (ONES * u64::from(b'"')));
        let backslash = (x ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES) & !(x ^ (ONES * u64::from(b'\\')));
        below_space | quote | backslash
    };
    let word = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        u64::from_le_bytes(word)
    };
    let Some(last) = bytes.len().checked_sub(8).and_then(|at| bytes.get(at..)) else {
        return bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    };
    let flags = bytes.chunks_exact(8).fold(flagged(word(last)), |flags, chunk| flags | flagged(word(chunk)));
    flags & HIGHS != 0
}

fn row_json(item: &Item) -> RowJson<'_> {
    match item {
        Item::Unit(u) => {
            let (action, shares_with, reason) = match &u.action {
                Action::NewSecret => ("new_secret", None, None),
                Action::ShareVolume(v) => ("share_volume", Some(v.as_str()), None),
                Action::ShareSnapshot(s) => ("share_snapshot", Some(s.as_str()), None),
                Action::Blocked(r) => ("blocked", None, Some(*r)),
            };
            RowJson {
                table: u.table,
                id: &u.id,
                host: u.host.as_deref(),
                owner: u.owner.as_deref(),
                project: u.project.as_deref(),
                action,
                shares_with,
                reason,
            }
        }
        Item::Skipped(s) => RowJson {
            table: s.table,
            id: &s.id,
            host: None,
            owner: None,
            project: None,
            action: "skipped",
            shares_with: None,
            reason: Some(s.reason),
        },
    }
}

fn write_counts(out: &mut dyn Write, tally: &Tally, deleted: &crate::db::TableCounts) -> Result<()> {
    let headers = ["Table", "Units", "New Secrets", "Shared", "Blocked", "Deleted (Untouched)"];
    let mut t = Listing::new(out, Format::Table, &headers, &[])?;
    for table in Table::ALL {
        let c = tally.table(table);
        t.row(vec![
            table.name().to_string(),
            c.total.to_string(),
            c.new_secret.to_string(),
            c.shared.to_string(),
            c.blocked.to_string(),
            deleted.get(table).to_string(),
        ])?;
    }
    t.finish()?;
    if tally.skipped > 0 {
        writeln!(out, "Not in scope: {} volume(s) with a NULL host (only --all-hosts migrates them).", tally.skipped)
            .map_err(Error::Output)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_escape_finds_every_byte_json_escapes_at_every_position() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let expected = b < 0x20 || b == b'"' || b == b'\\';
                    assert_eq!(needs_escape(&bytes), expected, "byte {b:#04x} at {at} of {len}");
                }
            }
            assert!(!needs_escape(&vec![b'z'; len]));
        }
    }

    #[test]
    fn rows_are_written_exactly_as_serde_json_writes_them() {
        let odd = ["", "plain", "quote\"s", "back\\slash", "tab\there", "nul\u{0}", "\u{1f}", "\u{7f}", "é and 😀", "</script>"];
        for (i, text) in odd.iter().enumerate() {
            let row = RowJson {
                table: Table::ALL[i % 4],
                id: text,
                host: (i % 2 == 0).then_some(*text),
                owner: Some(text),
                project: None,
                action: "share_volume",
                shares_with: Some(text),
                reason: (i % 3 == 0).then_some("why \"not\""),
            };
            let mut ours = Vec::new();
            row.write(&mut ours);
            let theirs = serde_json::to_vec(&row).expect("serializing a row");
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{text:?}");
        }
    }
}
