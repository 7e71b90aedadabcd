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
            serde_json::to_writer(&mut *page, &row_json(&item)).map_err(|e| Error::Internal(e.to_string()))
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
#[derive(serde::Serialize)]
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
