//! One module per subcommand, each with a `run` that takes the settings and its own arguments.

pub mod images;
pub mod migrate;
pub mod rollback;
pub mod scan;
pub mod status;
pub mod verify;

use std::io::Write;

use crate::cli::Command;
use crate::conditions::Conditions;
use crate::error::{Outcome, Result};
use crate::plan::Tally;
use crate::settings::Settings;

pub fn dispatch(settings: &Settings, command: &Command, out: &mut dyn Write) -> Result<Outcome> {
    match command {
        Command::Scan(args) => scan::run(settings, args, out),
        Command::Status(args) => status::run(settings, args, out),
        Command::Migrate(args) => migrate::run(settings, args, out),
        Command::Verify(args) => verify::run(settings, args, out),
        Command::Rollback(args) => rollback::run(settings, args, out),
        Command::Completions { .. } | Command::Man => Ok(Outcome::Done),
    }
}

/// The exit decision shared by every reporting command: nothing left, more to do, or stuck.
pub fn outcome(conditions: &Conditions, tally: &Tally) -> Outcome {
    let units = tally.units();
    if units == 0 {
        Outcome::Done
    } else if !conditions.is_ready() || tally.blocked() == units {
        Outcome::NeedsOperator
    } else {
        Outcome::MoreToDo
    }
}

/// Logs the condition in Cinder's words, at the level Cinder uses.
/// nova.conf's `fixed_key`, with `--nova`: what verify and rollback compare Nova's secrets with.
pub fn nova_key(settings: &crate::settings::Settings) -> crate::error::Result<Option<&crate::conditions::FixedKey>> {
    let Some(nova) = &settings.nova else { return Ok(None) };
    nova.conf.key.as_ref().map(Some).ok_or_else(|| {
        crate::error::Error::Service(
            "--nova compares Nova's secrets with nova.conf's fixed_key, and the nova.conf given has none (--nova-config-file)".into(),
        )
    })
}

/// `--nova`: every cell's instances on the all-zeros ephemeral key ID, and what nova.conf says.
pub fn look_nova(settings: &crate::settings::Settings) -> crate::error::Result<Option<crate::nova::NovaReport>> {
    let Some(nova) = &settings.nova else { return Ok(None) };
    let cinder_key = match &settings.conditions {
        Conditions::Ready { key, .. } => Some(key),
        _ => None,
    };
    crate::nova::NovaReport::look(&nova.conf, cinder_key, &nova.hosts, &nova.cwd).map(Some)
}

/// The outcome once Nova's instances count: instances `migrate --nova` can take keep the run
/// going; Nova still on the ConfKeyManager, nova.conf without `fixed_key`, a cell that cannot be
/// read, or only instances it reports need an operator once nothing else moves.
pub fn with_nova(outcome: Outcome, nova: Option<&crate::nova::NovaReport>) -> Outcome {
    let Some(n) = nova else { return outcome };
    if n.done() && !n.conf_key_manager {
        return outcome;
    }
    let workable = !n.conf_key_manager && n.key_bits.is_some() && n.to_migrate() > 0;
    match outcome {
        Outcome::MoreToDo => Outcome::MoreToDo,
        _ if workable => Outcome::MoreToDo,
        _ => Outcome::NeedsOperator,
    }
}

pub fn log_conditions(conditions: &Conditions) {
    match conditions {
        Conditions::Ready { .. } => log::debug!("{}", conditions.message()),
        Conditions::Unsupported { .. } => log::warn!("{}", conditions.message()),
        _ => log::info!("{}", conditions.message()),
    }
}

/// JSON for the scope block of every report.
pub fn scope_json(scope: &crate::scope::Scope) -> serde_json::Value {
    serde_json::json!({"description": scope.describe(), "source": scope.source, "all_hosts": scope.all})
}

/// JSON for the conditions block of every report.
pub fn conditions_json(conditions: &Conditions) -> serde_json::Value {
    let bits = match conditions {
        Conditions::Ready { key, .. } => Some(key.bit_length()),
        _ => None,
    };
    serde_json::json!({
        "state": conditions.code(),
        "backend": conditions.backend(),
        "fixed_key_bits": bits,
        "message": conditions.message(),
    })
}

/// Warns when a host scope with nothing left to migrate names no volume or backup at all, while
/// rows elsewhere still use the all-zeros ID: the host name keymigrate derived is probably not
/// the one Cinder stores (a container's or pod's host name), and "done" would be said of nothing.
/// Only a warning: a new host, or one whose volumes are all gone, is rightly done.
pub fn warn_if_scope_names_no_row(db: &mut crate::db::Db, scope: &crate::scope::Scope, units: i64, left_elsewhere: i64) {
    if scope.all || units > 0 || left_elsewhere == 0 {
        return;
    }
    match db.scope_names_a_row(scope) {
        Ok(true) => {}
        Ok(false) => log::warn!(
            "Scope [{}] names no volume or backup in the database, migrated or not, while {} row(s) elsewhere still use the all-zeros key ID: \
             if this host runs cinder-volume, Cinder stores it under another name (a container's or pod's host name is not it); \
             name the scope with --host or --cluster",
            scope.describe(),
            left_elsewhere
        ),
        // The check is advice: a database it cannot read this way changes nothing else.
        Err(e) => log::debug!("could not check whether the scope names any row: {e}"),
    }
}
