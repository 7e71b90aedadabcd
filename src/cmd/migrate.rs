//! `keymigrate migrate`: the main job. Checks the conditions, takes the scope's lock, finishes
//! what an interrupted run left, migrates every unit, then reports what is left and exits
//! 0 (done), 1 (more to do: run again) or 2 (an operator must act).

use std::io::Write;
use std::sync::Arc;

use crate::barbican::Barbican;

use super::images::ImageReport;
use crate::cinder::SecretOwner;
use crate::cli::MigrateArgs;
use crate::conditions::Conditions;
use crate::db::{Access, Db};
use crate::error::{Error, Outcome, Result};
use crate::journal::{ImageJournal, Journal, NovaJournal};
use crate::keystone::Keystone;
use crate::engine::{self, Engine, Options, Report};
use crate::output::Format;
use crate::plan;
use crate::projects::Projects;
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &MigrateArgs, out: &mut dyn Write) -> Result<Outcome> {
    let conditions = &settings.conditions;
    super::log_conditions(conditions);
    let scope = &settings.scope;
    log::info!("Scope: {} (from {})", scope.describe(), scope.source);
    let opts = Options {
        max_count: args.max_count,
        max_errors: args.max_errors,
        workers: usize::from(args.workers),
        max_rate: args.max_rate,
        rehome: args.rehome,
    };
    if args.rehome && settings.owner != SecretOwner::Project {
        return Err(Error::config_value("--rehome", "moves secrets into the rows' own projects, so it needs --secret-owner project"));
    }

    match (conditions, &settings.services) {
        (Conditions::Ready { key, .. }, Some(services)) => {
            let mut db = Db::connect(&settings.database, Access::ReadWrite)?;
            let journal = Arc::new(Journal::open(&services.state_dir, scope)?);
            let keystone = Arc::new(Keystone::new(services.keystone.clone(), services.retry)?);
            // --rehome leaves the rows of Cinder's own project where they are.
            let service_project = if args.rehome { crate::grants::Grants::new(keystone.clone()).whoami()?.project_id } else { None };
            let barbican = Arc::new(Barbican::connect(&services.barbican, keystone, services.retry)?);
            // Images, when asked for: listed before anything is written, so a Glance that cannot
            // be reached stops the run here.
            let glance = match &settings.images {
                Some(images) => {
                    crate::glance::check_key_manager(&images.glance_config);
                    let glance = super::images::admin_glance(images, services.retry)?;
                    // Images belong to no host: one run at a time on this machine does them.
                    let journal = ImageJournal::open(&services.state_dir)?;
                    let zero = glance.zero_images(&images.owners)?;
                    Some((glance, zero, journal))
                }
                None => None,
            };
            // Nova's instances, when asked for: nova.conf checked and every cell read before
            // anything is written.
            let nova = match &settings.nova {
                Some(n) => {
                    let report = super::look_nova(settings)?.ok_or_else(|| Error::Internal("--nova without its report".into()))?;
                    if report.conf_key_manager {
                        return Err(Error::Aborted(format!(
                            "Nova's [key_manager] backend is still the ConfKeyManager ({}): switch every nova.conf to barbican first; nothing was written",
                            report.backend
                        )));
                    }
                    match &n.conf.key {
                        Some(nova_key) => Some((report, nova_key, NovaJournal::open(&services.state_dir)?)),
                        None if report.instances() > 0 => {
                            return Err(Error::Aborted(format!(
                                "nova.conf has no fixed_key, but {} instance(s) use the all-zeros ephemeral key ID: give --nova-config-file the nova.conf with the key their disks were made with; nothing was written",
                                report.instances()
                            )));
                        }
                        None => None,
                    }
                }
                None => None,
            };
            // An image's or an instance's secret always goes to its owner's project, whatever
            // --secret-owner says.
            let projects = match (settings.owner, &glance, &nova) {
                (SecretOwner::Project, _, _) | (_, Some(_), _) | (_, _, Some(_)) => {
                    let mut projects = Projects::connect(&services.admin, services.retry, journal.clone(), barbican.clone())?;
                    projects.threads = opts.workers;
                    Some(projects)
                }
                _ => None,
            };
            if crate::progress::wanted() {
                let (todo, _) = plan::tally(&mut db, scope, settings.owner, plan::Lookup::BOUNDED)?;
                let total = u64::try_from(todo.new_secrets()).unwrap_or_default();
                crate::progress::start(Some(args.max_count.map_or(total, |m| m.min(total))), "migrating");
            }
            let mut engine = Engine {
                db: &mut db,
                barbican: barbican.clone(),
                projects,
                owner: settings.owner,
                service_project,
                key,
                journal: &journal,
                opts,
                report: Report::default(),
                confirmer: Default::default(),
            };
            let mut result = engine.run(scope);
            if let (Ok(()), Some((glance, zero, images_journal))) = (&result, &glance) {
                if !engine.report.stopped_early {
                    result = engine.run_images(glance, zero, images_journal, settings.images.as_ref().map(|i| i.shared).unwrap_or_default());
                }
            }
            if let (Ok(()), Some((nova_report, nova_key, nova_journal))) = (&result, &nova) {
                if !engine.report.stopped_early {
                    result = engine.run_nova(nova_report, nova_key, nova_journal);
                }
            }
            crate::progress::finish();
            let report = engine.report.clone();
            let images_unfinished = glance.as_ref().map_or(0, |(_, _, j)| j.pending_entries().map_or(0, |p| p.len()));
            let nova_unfinished = nova.as_ref().map_or(0, |(_, _, j)| j.pending_entries().map_or(0, |p| p.len()));
            let unfinished = journal.pending().map_or(0, |p| p.len()) + images_unfinished + nova_unfinished;
            if unfinished > 0 {
                log::warn!("{unfinished} unit(s) are still in the journal (a clean-up failed or a request's outcome is unknown); run migrate again to finish them");
            }
            finish(settings, &mut db, report, result.err(), unfinished, args, out)
        }
        (Conditions::Ready { .. }, None) => {
            let mut db = Db::connect(&settings.database, Access::ReadOnly)?;
            let report = engine::dry_run(&mut db, scope, settings.owner, &opts)?;
            log::info!("Dry run: {} unit(s) would get a new secret", report.migrated);
            finish(settings, &mut db, report, None, 0, args, out)
        }
        _ => {
            let mut db = Db::connect(&settings.database, Access::ReadOnly)?;
            finish(settings, &mut db, Report::default(), None, 0, args, out)
        }
    }
}

/// Counts what is left, logs the status and summary, prints the report, decides the outcome.
/// `unfinished`: units still in the journal, which keep the run from reporting done.
fn finish(
    settings: &Settings,
    db: &mut Db,
    report: Report,
    error: Option<Error>,
    unfinished: usize,
    args: &MigrateArgs,
    out: &mut dyn Write,
) -> Result<Outcome> {
    let (left, census) = plan::tally(db, &settings.scope, settings.owner, plan::Lookup::BOUNDED)?;
    let database = census.live;
    // The images and instances as they are now: what this run did not finish, and what it
    // reports.
    let images = settings.images.as_ref().map(ImageReport::look).transpose()?;
    let nova = super::look_nova(settings)?;
    super::status::log_status(settings, &left, &database, images.as_ref(), nova.as_ref());
    for (project, reason) in &report.blocked_projects {
        log::warn!("Project {project} is blocked: {reason}");
    }
    if !args.dry_run {
        log::info!(
            "Migration summary: {} secret(s) stored and in use ({}), {} recovered from an interrupted run, {} lost to another run, {} failed; {} row(s) left in scope",
            report.migrated,
            report.rows,
            report.recovered,
            report.lost,
            report.failed,
            left.units()
        );
    }
    match args.output.format {
        Some(Format::Json) => {
            let doc = serde_json::json!({
                "dry_run": args.dry_run,
                "secret_owner": settings.owner,
                "conditions": super::conditions_json(&settings.conditions),
                "scope": super::scope_json(&settings.scope),
                "report": &report,
                "remaining": {"scope": left.units(), "blocked": left.blocked(), "database": database.total(), "journal": unfinished,
                              "images": images.as_ref().map(|i| serde_json::json!({"to_migrate": i.to_migrate(), "reported": i.reported()})),
                              "nova": nova.as_ref().map(|n| serde_json::json!({"instances": n.instances(), "to_migrate": n.to_migrate(), "unreadable_cells": n.unreadable_cells()}))},
                "error": error.as_ref().map(|e| e.to_string()),
            });
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        }
        _ => {
            let verb = if args.dry_run { "would migrate" } else { "migrated" };
            writeln!(
                out,
                "{verb} {} unit(s), {} lost to another run, {} failed; {} row(s) left in scope [{}], {} in the whole database",
                report.migrated,
                report.lost,
                report.failed,
                left.units(),
                settings.scope.describe(),
                database.total()
            )
            .map_err(Error::Output)?;
            if let Some(nova) = &nova {
                writeln!(
                    out,
                    "{verb} {} Nova instance(s); {} instance(s) left on the all-zeros ephemeral key ID ({} unreadable cell(s); see scan --nova)",
                    report.nova.migrated,
                    nova.instances(),
                    nova.unreadable_cells()
                )
                .map_err(Error::Output)?;
            }
            if let Some(images) = &images {
                writeln!(
                    out,
                    "{verb} {} Glance image(s); {} image(s) left to migrate, {} reported (see scan --images)",
                    report.images.migrated,
                    images.to_migrate(),
                    images.reported()
                )
                .map_err(Error::Output)?;
            }
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    let outcome = database_outcome(settings, &left, &report, unfinished);
    let outcome = with_images(settings, outcome, images.as_ref(), &report);
    // Instances this run could not move (failed, or their project blocked) and nothing moved:
    // an operator must look.
    let nova_stuck = report.nova.migrated == 0 && report.nova.recovered == 0 && report.nova.failed + report.nova.blocked > 0;
    Ok(match super::with_nova(outcome, nova.as_ref()) {
        Outcome::MoreToDo if nova_stuck && outcome != Outcome::MoreToDo => Outcome::NeedsOperator,
        other => other,
    })
}

/// The outcome once the images count.
fn with_images(settings: &Settings, outcome: Outcome, images: Option<&ImageReport>, report: &Report) -> Outcome {
    let Some(images) = images.filter(|i| !i.rows.is_empty()) else { return outcome };
    // Images this run could not move (failed, or their project blocked) and nothing moved:
    // an operator must look, as for rows.
    let stuck = report.images.migrated == 0 && report.images.recovered == 0 && report.images.failed + report.images.blocked > 0;
    if !settings.conditions.is_ready() {
        Outcome::NeedsOperator
    } else if outcome == Outcome::MoreToDo || (images.to_migrate() > 0 && !stuck) {
        Outcome::MoreToDo
    } else {
        Outcome::NeedsOperator
    }
}

/// The outcome for the database rows alone.
fn database_outcome(settings: &Settings, left: &crate::plan::Tally, report: &Report, unfinished: usize) -> Outcome {
    let outcome = super::outcome(&settings.conditions, left);
    match outcome {
        Outcome::MoreToDo if report.failed > 0 && report.migrated == 0 && report.recovered == 0 => Outcome::NeedsOperator,
        // Everything this run could reach is done; what is left waits for an operator to fix
        // its project's grant.
        Outcome::MoreToDo if report.blocked_units > 0 && report.migrated == 0 && report.recovered == 0 && !report.stopped_early => {
            Outcome::NeedsOperator
        }
        Outcome::Done if unfinished > 0 => Outcome::MoreToDo,
        // `--rehome` rows of a blocked project are not on the all-zeros ID, so the count above
        // does not see them: an operator must act once nothing else moves.
        Outcome::Done if report.blocked_units > 0 && report.migrated == 0 && report.recovered == 0 && !report.stopped_early => {
            Outcome::NeedsOperator
        }
        Outcome::Done if report.blocked_units > 0 => Outcome::MoreToDo,
        // Stopped by --max-count with --rehome work left: the all-zeros count cannot see it.
        Outcome::Done if report.stopped_early => Outcome::MoreToDo,
        other => other,
    }
}
