//! `keymigrate scan`: the dry-run report. Every row on the all-zeros key in the scope, what
//! `migrate` will do with it, and counts per table. Opens the database read-only.

use std::io::Write;

use crate::cli::ScanArgs;
use crate::db::{Access, Db};
use crate::error::{Error, Outcome, Result};
use crate::output::{self, Format, Table};
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
        let head = serde_json::json!({
            "conditions": super::conditions_json(conditions),
            "scope": super::scope_json(scope),
        });
        let head = serde_json::to_string(&head).map_err(|e| Error::Internal(e.to_string()))?;
        // Stream: the head object's fields, then the rows array one element at a time.
        write!(out, "{},\"rows\":[", head.strip_suffix('}').unwrap_or(&head)).map_err(Error::Output)?;
        let mut first = true;
        // Each row is serialized into one buffer and written in one call: serde_json's many
        // small writes through `dyn Write` cost more than the rows themselves.
        let mut row = Vec::with_capacity(512);
        let census = plan::walk(db, scope, |item| {
            tally.add(&item);
            crate::progress::inc(1);
            row.clear();
            if !first {
                row.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut row, &row_json(&item)).map_err(|e| Error::Output(e.into()))?;
            out.write_all(&row).map_err(Error::Output)
        })?;
        let tail = serde_json::json!({"counts": &*tally, "deleted": census.deleted, "units": tally.units(), "new_secrets": tally.new_secrets()});
        let tail = serde_json::to_string(&tail).map_err(|e| Error::Internal(e.to_string()))?;
        writeln!(out, "],{}", tail.strip_prefix('{').unwrap_or(&tail)).map_err(Error::Output)?;
    } else {
        if format == Format::Table {
            writeln!(out, "Key manager: {}", conditions.message()).map_err(Error::Output)?;
            writeln!(out, "Scope: {} (from {})", scope.describe(), scope.source).map_err(Error::Output)?;
        }
        let mut table = Table::new(out, format, &HEADERS, &args.output.column)?;
        let census = plan::walk(db, scope, |item| {
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

fn row_cells(item: &Item) -> Vec<String> {
    match item {
        Item::Unit(u) => vec![
            u.table.name().to_string(),
            u.id.clone(),
            output::cell(&u.host),
            output::cell(&u.owner),
            u.action.to_string(),
        ],
        Item::Skipped(s) => {
            vec![s.table.name().to_string(), s.id.clone(), String::new(), String::new(), format!("skipped: {}", s.reason)]
        }
    }
}

/// One element of the JSON `rows` array (documented in docs/).
#[derive(serde::Serialize)]
struct RowJson<'a> {
    table: plan::Table,
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
    let mut t = Table::new(out, Format::Table, &headers, &[])?;
    for table in plan::Table::ALL {
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
