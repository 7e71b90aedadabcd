//! The migration engine: for each unit of the plan, store a secret holding the fixed key's exact
//! bytes, grant the owner read, read it back and compare, then compare-and-swap the rows.
//!
//! What keeps keys safe:
//! * No row is written until Barbican has returned the exact bytes of the key for that secret.
//! * Rows move only from the all-zeros ID (compare-and-swap), one transaction per unit.
//! * A secret is deleted only if no row points at it, and only if it is this run's own or its
//!   unit's row has already moved on (so no other run can still be about to use it).
//! * Every secret in flight is in the journal before it is created, under a name that
//!   identifies its row, so a run killed at any instant is finished or cleaned up by the next.

use std::collections::BTreeSet;

use crate::barbican::{ApiError, Barbican};
use crate::conditions::FixedKey;
use crate::db::swap::{RowState, Swapped};
use crate::db::{Cursor, Db};
use crate::error::{Error, Result};
use crate::fault;
use crate::progress;
use crate::journal::{Entry, Journal};
use crate::plan::{self, Action, Item, Table, Unit};
use crate::scope::Scope;

#[derive(Debug, Clone)]
pub struct Options {
    /// Stop after this many units (`--max-count`).
    pub max_count: Option<u64>,
    /// Abort once more than this many units have failed (Cinder's MAX_KEY_MIGRATION_ERRORS is 3).
    pub max_errors: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Units whose rows now point at a verified secret.
    pub migrated: u64,
    /// Rows rewritten.
    pub rows: Swapped,
    /// Units another run (or Cinder) migrated first; their secret was deleted.
    pub lost: u64,
    pub failed: u64,
    /// Units carried over from an interrupted run and finished.
    pub recovered: u64,
    pub secrets_created: u64,
    pub secrets_deleted: u64,
    /// Stopped by `--max-count` or the error budget before the plan was exhausted.
    pub stopped_early: bool,
}

/// The side-effect-free twin used by `--dry-run`: the same walk, logging what would happen.
pub fn dry_run(db: &mut Db, scope: &Scope, opts: &Options) -> Result<Report> {
    let mut report = Report::default();
    for table in Table::ALL {
        let mut cursor = Cursor::Start;
        while cursor != Cursor::End {
            for item in plan::page(db, scope, table, &mut cursor)? {
                if let Item::Unit(unit) = item {
                    if unit.action != Action::NewSecret {
                        continue;
                    }
                    if opts.max_count.is_some_and(|m| report.migrated >= m) {
                        report.stopped_early = true;
                        return Ok(report);
                    }
                    log::info!("Would migrate {} {} encryption key to Barbican (owner {})", unit.table.noun(), unit.id, owner(&unit));
                    report.migrated += 1;
                }
            }
        }
    }
    Ok(report)
}

fn owner(unit: &Unit) -> &str {
    unit.owner.as_deref().unwrap_or("-")
}

pub struct Engine<'a> {
    pub db: &'a mut Db,
    pub barbican: &'a Barbican,
    pub key: &'a FixedKey,
    pub journal: &'a Journal,
    pub opts: Options,
    pub report: Report,
}

/// Why one unit did not complete.
enum UnitError {
    /// Counted against the error budget; the run goes on.
    Failed(String),
    /// Stops the run (database unusable, 403 from Barbican, journal unwritable).
    Fatal(Error),
}

impl From<Error> for UnitError {
    fn from(e: Error) -> Self {
        UnitError::Fatal(e)
    }
}

fn api(e: ApiError) -> UnitError {
    match e {
        ApiError::Forbidden(m) => UnitError::Fatal(Error::Service(format!(
            "Barbican refused (quota or policy): {m}; check the [keystone_authtoken] user's roles and the project's secret quota"
        ))),
        ApiError::Transient(m) | ApiError::Rejected(m) => UnitError::Failed(m),
    }
}

impl Engine<'_> {
    /// Finishes what an interrupted run left, then migrates every unit in scope.
    pub fn run(&mut self, scope: &Scope) -> Result<()> {
        self.recover()?;
        log::info!("Starting migration of ConfKeyManager keys.");
        for table in Table::ALL {
            let mut cursor = Cursor::Start;
            while cursor != Cursor::End {
                for item in plan::page(self.db, scope, table, &mut cursor)? {
                    let Item::Unit(unit) = item else { continue };
                    match &unit.action {
                        Action::NewSecret => {}
                        Action::Blocked(reason) => {
                            log::warn!("Not migrating {} {}: {reason}", unit.table.noun(), unit.id);
                            continue;
                        }
                        // Rewritten with its volume or snapshot.
                        Action::ShareVolume(_) | Action::ShareSnapshot(_) => continue,
                    }
                    if self.opts.max_count.is_some_and(|m| self.report.migrated + self.report.failed + self.report.lost >= m) {
                        self.report.stopped_early = true;
                        return Ok(());
                    }
                    self.attempt(&unit)?;
                    self.check_budget()?;
                }
            }
        }
        Ok(())
    }

    /// Cinder's rule: stop once more than `max_errors` units have failed.
    fn check_budget(&mut self) -> Result<()> {
        if self.report.failed <= self.opts.max_errors {
            return Ok(());
        }
        self.report.stopped_early = true;
        log::error!("Aborting encryption key migration (too many errors).");
        Err(Error::Aborted(format!(
            "aborted after {} failed unit(s) (more than --max-errors {})",
            self.report.failed, self.opts.max_errors
        )))
    }

    fn attempt(&mut self, unit: &Unit) -> Result<()> {
        progress::inc(1);
        log::info!("Migrating {} {} encryption key to Barbican", unit.table.noun(), unit.id);
        match self.migrate_unit(unit, &unit.secret_name(), false) {
            Ok(()) => Ok(()),
            Err(UnitError::Failed(m)) => {
                self.report.failed += 1;
                log::error!("Error migrating encryption key of {} {}: {m}", unit.table.noun(), unit.id);
                Ok(())
            }
            Err(UnitError::Fatal(e)) => Err(e),
        }
    }

    /// The readers the unit's secret must have: its owner, and for a volume the owners of the
    /// all-zeros snapshots that share it.
    fn readers(&mut self, table: Table, id: &str, owner: Option<&str>) -> Result<Vec<String>> {
        let mut readers: BTreeSet<String> = owner.filter(|o| !o.is_empty()).map(String::from).into_iter().collect();
        if table == Table::Volumes {
            readers.extend(self.db.zero_snapshot_owners(id)?);
        }
        Ok(readers.into_iter().collect())
    }

    /// `sweep`: also delete secrets an interrupted run may have made for this unit.
    fn migrate_unit(&mut self, unit: &Unit, name: &str, sweep: bool) -> Result<(), UnitError> {
        let mut entry = Entry { table: unit.table, id: unit.id.clone(), name: name.to_string(), secret: None };
        self.journal.write(&entry)?;
        fault::point("journal");
        let stored = match self.barbican.store(name, self.key) {
            Ok(s) => s,
            Err(failed) => {
                // Nothing to clean up unless a request may have gone through; the entry then
                // stays for the next run's name-based sweep.
                if !failed.maybe_created {
                    self.journal.finish(unit.table, &unit.id)?;
                }
                return Err(api(failed.error));
            }
        };
        self.report.secrets_created += 1;
        fault::point("stored");
        entry.secret = Some(stored.id.clone());
        if let Err(e) = self.journal.write(&entry) {
            // Unrecorded secrets must not outlive this run: it is ours and unreferenced.
            self.discard(&stored.id)?;
            return Err(UnitError::Fatal(e));
        }
        fault::point("recorded");
        let readers = self.readers(unit.table, &unit.id, unit.owner.as_deref())?;
        self.finish_unit(unit.table, &unit.id, name, &stored.id, &readers, sweep || stored.maybe_orphaned)
    }

    /// ACL, read-back, compare-and-swap, then clean up. Shared by new units and recovered ones.
    fn finish_unit(
        &mut self,
        table: Table,
        id: &str,
        name: &str,
        secret: &str,
        readers: &[String],
        sweep: bool,
    ) -> Result<(), UnitError> {
        let prepared = self.prepare(secret, readers);
        if let Err(e) = prepared {
            // The secret is ours and nothing points at it yet; try to leave nothing behind.
            if self.discard(secret).is_ok() {
                self.journal.finish(table, id)?;
            }
            return Err(e);
        }
        fault::point("verified");
        match self.db.swap(table, id, secret, readers)? {
            Ok(rows) => {
                fault::point("committed");
                log::info!("Migrated {} {id} to Barbican key ID {secret} ({rows})", table.noun());
                self.report.migrated += 1;
                self.report.rows.add(&rows);
            }
            Err(_) => {
                log::info!("{} {id} no longer uses the all-zeros key ID (another run got there first); deleting secret {secret}", table.noun());
                self.report.lost += 1;
                self.discard(secret)?;
            }
        }
        if sweep {
            self.sweep(table, id, name)?;
        }
        self.journal.finish(table, id)?;
        fault::point("finished");
        Ok(())
    }

    /// Grants read and proves the secret holds exactly the key.
    fn prepare(&self, secret: &str, readers: &[String]) -> Result<(), UnitError> {
        self.barbican.grant_read(secret, readers).map_err(api)?;
        fault::point("acl");
        let payload = self.barbican.payload(secret).map_err(api)?;
        if payload.as_slice() != self.key.bytes() {
            return Err(UnitError::Failed(format!(
                "secret {secret} read back {} byte(s) that are not the fixed key ({} bytes); not using it",
                payload.len(),
                self.key.bytes().len()
            )));
        }
        Ok(())
    }

    /// Deletes a secret this run made, unless a row points at it.
    fn discard(&mut self, secret: &str) -> Result<(), UnitError> {
        if self.db.is_referenced(secret)? {
            log::error!("not deleting secret {secret}: a row uses it");
            return Ok(());
        }
        match self.barbican.delete(secret) {
            Ok(true) => {
                self.report.secrets_deleted += 1;
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(api(e)),
        }
    }

    /// Deletes secrets named for this unit that no row uses. Only called once the unit's row
    /// has left the all-zeros ID, so no run can still be about to point a row at them.
    fn sweep(&mut self, table: Table, id: &str, name: &str) -> Result<(), UnitError> {
        let state = self.db.row_state(table, id)?;
        if state.as_ref().is_some_and(RowState::is_zero_and_live) {
            return Ok(());
        }
        for found in self.barbican.find_by_name(name).map_err(api)? {
            if !self.db.is_referenced(&found)? {
                log::info!("Deleting secret {found} left by an interrupted run for {} {id}", table.noun());
                if self.barbican.delete(&found).map_err(api)? {
                    self.report.secrets_deleted += 1;
                }
            }
        }
        Ok(())
    }

    /// Finishes or cleans up every unit an earlier run left in the journal.
    fn recover(&mut self) -> Result<()> {
        let pending = self.journal.pending()?;
        if !pending.is_empty() {
            log::info!("Resuming {} unit(s) left by an interrupted run", pending.len());
        }
        for entry in pending {
            match self.recover_one(&entry) {
                Ok(()) => self.report.recovered += 1,
                Err(UnitError::Failed(m)) => {
                    self.report.failed += 1;
                    log::error!("Error finishing {} {} left by an interrupted run: {m}", entry.table.noun(), entry.id);
                    self.check_budget()?;
                }
                Err(UnitError::Fatal(e)) => return Err(e),
            }
        }
        Ok(())
    }

    fn recover_one(&mut self, entry: &Entry) -> Result<(), UnitError> {
        let state = self.db.row_state(entry.table, &entry.id)?;
        let live_zero = state.as_ref().is_some_and(RowState::is_zero_and_live);
        match (&entry.secret, live_zero) {
            (Some(secret), true) => {
                // Killed between storing the secret and the commit: carry on from the ACL.
                let owner = state.and_then(|s| s.owner);
                let readers = self.readers(entry.table, &entry.id, owner.as_deref())?;
                log::info!("Resuming {} {} with secret {secret}", entry.table.noun(), entry.id);
                self.finish_unit(entry.table, &entry.id, &entry.name, secret, &readers, true)
            }
            (Some(secret), false) => {
                if state.as_ref().and_then(|s| s.key.as_deref()) == Some(secret.as_str()) {
                    log::info!("{} {} was already migrated to {secret} before the interruption", entry.table.noun(), entry.id);
                } else {
                    self.discard(secret)?;
                }
                self.sweep(entry.table, &entry.id, &entry.name)?;
                self.journal.finish(entry.table, &entry.id)?;
                Ok(())
            }
            (None, true) => {
                // Killed while storing: whatever Barbican made is found by name once the unit is
                // done. Do the unit now, whatever the scope is today.
                let unit = Unit {
                    table: entry.table,
                    id: entry.id.clone(),
                    host: None,
                    owner: state.and_then(|s| s.owner),
                    project: None,
                    action: Action::NewSecret,
                    parent: None,
                };
                if unit.owner.as_deref().is_none_or(str::is_empty) {
                    self.journal.finish(entry.table, &entry.id)?;
                    return Ok(());
                }
                self.migrate_unit(&unit, &entry.name, true)
            }
            (None, false) => {
                self.sweep(entry.table, &entry.id, &entry.name)?;
                self.journal.finish(entry.table, &entry.id)?;
                Ok(())
            }
        }
    }
}
