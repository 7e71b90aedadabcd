//! `keymigrate scan`: the dry-run report. Every row on the all-zeros key in the scope, what
//! `migrate` will do with it under `--secret-owner`, and counts per table, with what that mode
//! means for the cloud's users (see [`Owners`]). Opens the database read-only.

use std::io::Write;

use crate::cli::ScanArgs;
use crate::db::{Access, Db};
use crate::error::{Error, Outcome, Result};
use crate::cinder::{is_owner, SecretOwner, Table};
use crate::output::{self, Format, Listing};
use crate::plan::{self, Action, Item, Tally, Unit};
use crate::settings::Settings;

use super::images::ImageReport;

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

    // The images first: a Glance that cannot be listed stops the scan before any output.
    let images = settings.images.as_ref().map(ImageReport::look).transpose()?;
    let nova = super::look_nova(settings)?;
    let mut tally = Tally::default();
    let mut owners = Owners::default();
    // A spinner only when the results go to a file or a pipe: on a terminal they would mix.
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        crate::progress::start(None, "scanning");
    }
    let result = write_plan(&mut db, settings, args, format, (&mut tally, &mut owners), (images.as_ref(), nova.as_ref()), out);
    crate::progress::finish();
    result?;
    log::info!(
        "Scan found {} unit(s) in scope ({} new secret(s) needed, {} blocked, with --secret-owner {}); {} row(s) with a NULL host not in scope",
        tally.units(),
        tally.new_secrets(),
        tally.blocked(),
        settings.owner,
        tally.skipped
    );
    let outcome = match &images {
        // Work left in either place keeps the run going; only blocked rows and reported
        // images left need an operator.
        Some(images) if !images.rows.is_empty() => {
            if conditions.is_ready() && (tally.units() > tally.blocked() || images.to_migrate() > 0) {
                Outcome::MoreToDo
            } else {
                Outcome::NeedsOperator
            }
        }
        _ => super::outcome(conditions, &tally),
    };
    Ok(super::with_nova(outcome, nova.as_ref()))
}

/// What the plan's mode means for the cloud's users, gathered from the units as they are
/// planned: per project, its units, the new secrets it gets and whether its units belong to more
/// than one user.
#[derive(Default)]
struct Owners {
    /// FxHash: project IDs come from the operator's own database (see `plan::parents`).
    projects: std::collections::HashMap<String, ProjectFacts, rustc_hash::FxBuildHasher>,
    /// Units that get a secret apart from their volume's only under `project` ([`Unit::apart`]).
    apart: i64,
}

#[derive(Default)]
struct ProjectFacts {
    units: i64,
    new_secrets: i64,
    /// The first user seen, and whether another one was seen since.
    user: Option<String>,
    many_users: bool,
}

impl Owners {
    fn add(&mut self, unit: &Unit) {
        self.apart += i64::from(unit.apart);
        // Under `service` a glance row of a volume has no project of its own, and is not counted.
        let Some(project) = unit.project.as_deref().filter(|p| is_owner(p)) else { return };
        let facts = match self.projects.get_mut(project) {
            Some(facts) => facts,
            None => self.projects.entry(project.to_owned()).or_default(),
        };
        facts.units += 1;
        facts.new_secrets += i64::from(unit.action == Action::NewSecret);
        facts.saw(unit.owner.as_deref().filter(|u| is_owner(u)));
    }

    fn merge(&mut self, other: Owners) {
        self.apart += other.apart;
        for (project, theirs) in other.projects {
            let ours = self.projects.entry(project).or_default();
            ours.units += theirs.units;
            ours.new_secrets += theirs.new_secrets;
            ours.many_users |= theirs.many_users;
            ours.saw(theirs.user.as_deref());
        }
    }

    /// Distinct projects that get a new secret: under `project`, the role grants a run makes
    /// (one per project, revoked when it is done).
    fn holder_projects(&self) -> i64 {
        self.projects.values().filter(|p| p.new_secrets > 0).count() as i64
    }

    /// Units in projects whose units belong to more than one `user_id`: under `service` only
    /// each row's own user reads its key, so their teammates lose access to these. A lower
    /// bound: teammates without a row on the all-zeros key in the scope are not seen.
    fn shared_projects_units(&self) -> i64 {
        self.projects.values().filter(|p| p.many_users).map(|p| p.units).sum()
    }
}

impl ProjectFacts {
    fn saw(&mut self, user: Option<&str>) {
        match (&self.user, user) {
            (_, None) => {}
            (None, Some(u)) => self.user = Some(u.to_owned()),
            (Some(first), Some(u)) => self.many_users |= first != u,
        }
    }
}


fn write_plan(
    db: &mut Db,
    settings: &Settings,
    args: &ScanArgs,
    format: Format,
    (tally, owners): (&mut Tally, &mut Owners),
    (images, nova): (Option<&ImageReport>, Option<&crate::nova::NovaReport>),
    out: &mut dyn Write,
) -> Result<()> {
    let (conditions, scope, owner) = (&settings.conditions, &settings.scope, settings.owner);
    if format == Format::Json {
        // Stream one JSON object, its members in sorted order as the other reports write theirs:
        // the head members, then the rows array one element at a time, then the counts.
        member(out, "{\"conditions\":", &super::conditions_json(conditions))?;
        member(out, ",\"scope\":", &super::scope_json(scope))?;
        out.write_all(b",\"rows\":[").map_err(Error::Output)?;
        // The readers render the rows, each page into one buffer, every row after a comma;
        // the very first comma is left out here.
        let render = |item: Item, (page, facts): &mut (Vec<u8>, Owners)| {
            if page.capacity() == 0 {
                // About 200 bytes a row: grown once or twice rather than a dozen times.
                page.reserve(256 * crate::db::BATCH as usize);
            }
            if let Item::Unit(unit) = &item {
                facts.add(unit);
            }
            page.push(b',');
            row_json(&item).write(page);
            Ok(())
        };
        let mut first = true;
        let detail = crate::db::Detail::Rows;
        let (counted, census) = plan::walk_with(db, scope, owner, detail, plan::Lookup::Index, &render, |(page, facts): (Vec<u8>, Owners), items| {
            crate::progress::inc(items);
            owners.merge(facts);
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
        // The project-mode facts are null under service, where the glance rows of volumes carry
        // no project and those counts would come out short.
        let project = owner == SecretOwner::Project;
        member(out, ",\"holder_projects\":", &project.then(|| owners.holder_projects()))?;
        member(out, ",\"images\":", &images.map(ImageReport::json))?;
        member(out, ",\"new_secrets\":", &tally.new_secrets())?;
        member(out, ",\"nova\":", &nova.map(crate::nova::NovaReport::json))?;
        member(out, ",\"secret_owner\":", &owner)?;
        member(out, ",\"separate_under_project\":", &project.then_some(owners.apart))?;
        member(out, ",\"shared_projects_units\":", &owners.shared_projects_units())?;
        member(out, ",\"units\":", &tally.units())?;
        writeln!(out, "}}").map_err(Error::Output)?;
    } else {
        if format == Format::Table {
            writeln!(out, "Key manager: {}", conditions.message()).map_err(Error::Output)?;
            writeln!(out, "Scope: {} (from {})", scope.describe(), scope.source).map_err(Error::Output)?;
            writeln!(out, "Secret owner: {owner} ({})", describe(owner)).map_err(Error::Output)?;
        }
        let mut table = Listing::new(out, format, &HEADERS, &args.output.column)?;
        let census = plan::walk(db, scope, owner, plan::Lookup::Index, |item| {
            tally.add(&item);
            if let Item::Unit(unit) = &item {
                owners.add(unit);
            }
            crate::progress::inc(1);
            table.row(row_cells(&item))
        })?;
        table.finish()?;
        if format == Format::Table {
            write_counts(out, tally, &census.deleted)?;
            write_mode_facts(out, owner, owners)?;
        }
        if let Some(images) = images {
            if format == Format::Table {
                writeln!(
                    out,
                    "Glance images on the all-zeros key ID: {} to migrate (a secret in the owner's project each), {} reported:",
                    images.to_migrate(),
                    images.reported()
                )
                .map_err(Error::Output)?;
            }
            let mut table = Listing::new(out, format, &ImageReport::HEADERS, &[])?;
            for row in &images.rows {
                table.row(ImageReport::cells(row))?;
            }
            table.finish()?;
        }
        if let Some(nova) = nova {
            if format == Format::Table {
                writeln!(
                    out,
                    "Nova instances on the all-zeros ephemeral key ID: {} in {} cell(s), {} to migrate (a secret holding nova.conf's fixed_key in the instance's project each){}; keep fixed_key in nova.conf while any is left",
                    nova.instances(),
                    nova.cells.len(),
                    nova.to_migrate(),
                    match nova.unreadable_cells() {
                        0 => String::new(),
                        n => format!(", {n} cell(s) unreadable"),
                    }
                )
                .map_err(Error::Output)?;
            }
            let mut table = Listing::new(out, format, &crate::nova::NovaReport::HEADERS, &[])?;
            for row in nova.cells_rows() {
                table.row(row)?;
            }
            table.finish()?;
        }
    }
    Ok(())
}

/// What a mode means, for the table form's head.
fn describe(owner: SecretOwner) -> &'static str {
    match owner {
        SecretOwner::Project => "each secret in its row's own project, readable by every member of it",
        SecretOwner::Service => "each secret in Cinder's service project, readable by its row's user_id only",
    }
}

/// The table form's sentences on what the mode means for the cloud's users.
fn write_mode_facts(out: &mut dyn Write, owner: SecretOwner, owners: &Owners) -> Result<()> {
    let shared = owners.shared_projects_units();
    match owner {
        SecretOwner::Project => {
            writeln!(
                out,
                "With --secret-owner project: secrets in {} project(s) (a role grant each, revoked when the project is done); {} snapshot or glance metadata row(s) get a secret apart from their volume's because they are in another project.",
                owners.holder_projects(),
                owners.apart
            )
            .map_err(Error::Output)?;
            if shared > 0 {
                writeln!(
                    out,
                    "With --secret-owner service, {shared} unit(s) in projects whose rows belong to more than one user_id would be readable by their own user only."
                )
                .map_err(Error::Output)?;
            }
        }
        SecretOwner::Service => {
            writeln!(
                out,
                "With --secret-owner service: {shared} unit(s) are in projects whose rows belong to more than one user_id; the other members of those projects lose access to their keys (--secret-owner project keeps it)."
            )
            .map_err(Error::Output)?;
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
