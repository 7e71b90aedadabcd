//! `keymigrate status`: how many rows are left on the all-zeros key, for the scope and for the
//! whole database. One line by default, for cron mail and scripts; `-f json` for monitoring.
//! Also logs Cinder's own status sentences, so existing log searches keep working.

use std::io::Write;

use crate::cli::StatusArgs;
use crate::db::{Access, Db, TableCounts};
use crate::error::{Error, Outcome, Result};
use crate::cinder::Table;
use crate::output::{Format, Listing};
use crate::plan::{self, Tally};
use crate::settings::Settings;

use super::images::ImageReport;

pub fn run(settings: &Settings, args: &StatusArgs, out: &mut dyn Write) -> Result<Outcome> {
    let conditions = &settings.conditions;
    super::log_conditions(conditions);
    let scope = &settings.scope;
    let mut db = Db::connect(&settings.database, Access::ReadOnly)?;
    let (tally, census) = plan::tally(&mut db, scope, settings.owner, plan::Lookup::Index)?;
    let (database, deleted) = (census.live, census.deleted);
    super::warn_if_scope_names_no_row(&mut db, scope, tally.units(), database.total());
    let images = settings.images.as_ref().map(ImageReport::look).transpose()?;
    let nova = super::look_nova(settings)?;
    let outcome = with_images(super::outcome(conditions, &tally), conditions.is_ready(), &tally, images.as_ref());
    let outcome = super::with_nova(outcome, nova.as_ref());
    log_status(settings, &tally, &database, images.as_ref(), nova.as_ref());

    match args.output.format {
        None => {
            let mut line = summary_line(settings, &tally, &database, outcome);
            if let Some(images) = &images {
                line.push_str(&format!(
                    "; {} Glance image(s) left ({} to migrate, {} reported)",
                    images.rows.len(),
                    images.to_migrate(),
                    images.reported()
                ));
            }
            if let Some(nova) = &nova {
                line.push_str(&format!("; {} Nova instance(s) left", nova.instances()));
                if nova.unreadable_cells() > 0 {
                    line.push_str(&format!(" ({} cell(s) unreadable)", nova.unreadable_cells()));
                }
            }
            writeln!(out, "{line}").map_err(Error::Output)?;
        }
        Some(Format::Json) => {
            let doc = serde_json::json!({
                "done": outcome == Outcome::Done,
                "database_done": database.total() == 0,
                "conditions": super::conditions_json(conditions),
                "scope": {"description": scope.describe(), "source": scope.source, "all_hosts": scope.all,
                          "remaining": tally.units(), "blocked": tally.blocked(), "null_host_not_in_scope": tally.skipped,
                          "tables": &tally},
                "database": {"remaining": database.total(), "tables": database},
                "deleted": deleted,
                "images": images.as_ref().map(ImageReport::json),
                "nova": nova.as_ref().map(crate::nova::NovaReport::json),
            });
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        }
        Some(format) => {
            let headers = ["Table", "Scope", "Database", "Deleted"];
            let mut t = Listing::new(out, format, &headers, &args.output.column)?;
            for table in Table::ALL {
                t.row(vec![
                    table.name().to_string(),
                    tally.table(table).total.to_string(),
                    database.get(table).to_string(),
                    deleted.get(table).to_string(),
                ])?;
            }
            t.row(vec!["total".into(), tally.units().to_string(), database.total().to_string(), deleted.total().to_string()])?;
            if let Some(images) = &images {
                let left = images.rows.len().to_string();
                t.row(vec!["glance images".into(), left.clone(), left, String::new()])?;
            }
            if let Some(nova) = &nova {
                let left = nova.instances().to_string();
                t.row(vec!["nova instances".into(), left.clone(), left, String::new()])?;
            }
            t.finish()?;
        }
    }
    Ok(outcome)
}

/// The outcome once the images count too: work left in either place keeps the run going; only
/// blocked rows and reported images left need an operator.
fn with_images(outcome: Outcome, ready: bool, tally: &Tally, images: Option<&ImageReport>) -> Outcome {
    let Some(images) = images.filter(|i| !i.rows.is_empty()) else { return outcome };
    if !ready {
        return Outcome::NeedsOperator;
    }
    let database_work = tally.units() > tally.blocked();
    if database_work || images.to_migrate() > 0 {
        Outcome::MoreToDo
    } else {
        Outcome::NeedsOperator
    }
}

/// How many Glance images are still on the all-zeros ID.
pub(super) fn log_images(images: &ImageReport) {
    if images.rows.is_empty() {
        log::info!("No Glance images are using the ConfKeyManager's encryption_key_id.");
    } else {
        log::warn!(
            "There are still {} Glance image(s) whose cinder_encryption_key_id is the ConfKeyManager's all-zeros key ID ({} to migrate, {} reported).",
            images.rows.len(),
            images.to_migrate(),
            images.reported()
        );
    }
}

fn summary_line(settings: &Settings, tally: &Tally, database: &TableCounts, outcome: Outcome) -> String {
    let scope = settings.scope.describe();
    let per_table = |t: &Tally| {
        format!(
            "volumes {}, snapshots {}, glance metadata {}, backups {}",
            t.volumes.total, t.snapshots.total, t.volume_glance_metadata.total, t.backups.total
        )
    };
    let state = match outcome {
        Outcome::Done => "done",
        Outcome::MoreToDo => "more to do",
        Outcome::NeedsOperator => "needs operator",
    };
    format!(
        "{state}: {} row(s) left in scope [{scope}] ({}); {} row(s) left in the whole database",
        tally.units(),
        per_table(tally),
        database.total()
    )
}

/// Cinder's `_log_migration_status` sentences (whole database), then keymigrate's own verdict.
pub fn log_status(settings: &Settings, tally: &Tally, database: &TableCounts, images: Option<&ImageReport>, nova: Option<&crate::nova::NovaReport>) {
    if database.volumes == 0 {
        log::info!("No volumes are using the ConfKeyManager's encryption_key_id.");
    } else {
        log::warn!("There are still {} volume(s) using the ConfKeyManager's all-zeros encryption key ID.", database.volumes);
    }
    if database.backups == 0 {
        log::info!("No backups are known to be using the ConfKeyManager's encryption_key_id.");
    } else {
        // Cinder's own wording, "backups(s)" included, so that an operator's grep finds both.
        log::warn!("There are still {} backups(s) using the ConfKeyManager's all-zeros encryption key ID.", database.backups);
    }
    if database.snapshots + database.volume_glance_metadata > 0 {
        log::warn!(
            "There are still {} snapshot(s) and {} glance metadata row(s) using the ConfKeyManager's all-zeros encryption key ID.",
            database.snapshots,
            database.volume_glance_metadata
        );
    }
    if let Some(images) = images {
        log_images(images);
    }
    let images_left = images.map(|i| i.rows.len());
    let nova_left = nova.map(|n| !n.done());
    if database.total() == 0 && settings.conditions.is_ready() {
        match (images_left, nova_left) {
            (Some(n), _) if n > 0 => log::info!(
                "No key IDs associated with the ConfKeyManager remain in the database, but Glance's images still use it: keep fixed_key."
            ),
            (_, Some(true)) => log::info!(
                "No key IDs associated with the ConfKeyManager remain in the database, but Nova's instances may still use it: keep fixed_key in nova.conf."
            ),
            (Some(_), Some(_)) => log::info!(
                "No key IDs associated with the ConfKeyManager remain in the database, in Glance's images or in Nova's instances: \
                 [key_manager] fixed_key can be removed once `keymigrate verify --all-hosts --images` passes."
            ),
            (Some(_), None) => log::info!(
                "No key IDs associated with the ConfKeyManager remain in the database or in Glance's images: \
                 [key_manager] fixed_key can be removed once `keymigrate verify --all-hosts --images` passes; \
                 check Nova's instances with `keymigrate status --nova` before removing it from nova.conf."
            ),
            (None, _) => log::info!(
                "No key IDs associated with the ConfKeyManager remain in the database: \
                 check Glance's images with `keymigrate status --all-hosts --images` (and Nova's with --nova) before removing [key_manager] fixed_key."
            ),
        }
    } else if database.total() == 0 {
        log::info!("No key IDs associated with the ConfKeyManager remain in the database.");
    } else if tally.units() == 0 {
        log::info!(
            "Scope [{}] has no key IDs associated with the ConfKeyManager left; {} row(s) remain elsewhere, so keep fixed_key.",
            settings.scope.describe(),
            database.total()
        );
    }
    if tally.blocked() > 0 {
        log::warn!("{} row(s) in scope cannot be migrated without an operator (see `keymigrate scan`).", tally.blocked());
    }
}
