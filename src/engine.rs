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

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::barbican::{ApiError, Barbican};
use crate::conditions::FixedKey;
use crate::db::swap::{RowState, Share, Swapped};
use crate::db::{Cursor, Db};
use crate::error::{Error, Result};
use crate::fault;
use crate::progress;
use crate::journal::{Entry, Journal};
use crate::cinder::{self, SecretOwner, Table};
use crate::plan::{self, Action, Item, Unit};
use crate::scope::Scope;

/// The logger name of the engine's lines, `keymigrate.migrate` in the log: what operators' log
/// searches already match, and the step of the procedure these lines belong to.
const LOG: &str = "keymigrate::migrate";

#[derive(Debug, Clone)]
pub struct Options {
    /// Stop after this many units (`--max-count`).
    pub max_count: Option<u64>,
    /// Abort once more than this many units have failed (Cinder's MAX_KEY_MIGRATION_ERRORS is 3).
    pub max_errors: u64,
    /// Units whose Barbican steps run at once (`--workers`). Database writes stay on one thread.
    pub workers: usize,
    /// At most this many secrets stored per second (`--max-rate`), to spare a busy Barbican.
    pub max_rate: Option<f64>,
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
            for item in plan::page(db, scope, SecretOwner::Service, table, &mut cursor)? {
                if let Item::Unit(unit) = item {
                    if unit.action != Action::NewSecret {
                        continue;
                    }
                    if opts.max_count.is_some_and(|m| report.migrated >= m) {
                        report.stopped_early = true;
                        return Ok(report);
                    }
                    log::info!(target: LOG, "Would migrate {} {} encryption key to Barbican (owner {})", unit.table.noun(), unit.id, owner(&unit));
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
        ApiError::Fatal(m) => UnitError::Fatal(Error::Credentials(m)),
        ApiError::Transient(m) | ApiError::Rejected(m) => UnitError::Failed(m),
    }
}

impl Engine<'_> {
    /// Finishes what an interrupted run left, then migrates every unit in scope.
    pub fn run(&mut self, scope: &Scope) -> Result<()> {
        self.recover()?;
        log::info!(target: LOG, "Starting migration of ConfKeyManager keys.");
        let mut dispatched = 0u64;
        for table in Table::ALL {
            let mut cursor = Cursor::Start;
            while cursor != Cursor::End {
                let mut jobs = Vec::new();
                for item in plan::page(self.db, scope, SecretOwner::Service, table, &mut cursor)? {
                    let Item::Unit(unit) = item else { continue };
                    match &unit.action {
                        Action::NewSecret => {}
                        Action::Blocked(reason) => {
                            log::warn!(target: LOG, "Not migrating {} {}: {reason}", unit.table.noun(), unit.id);
                            continue;
                        }
                        // Rewritten with its volume or snapshot.
                        Action::ShareVolume(_) | Action::ShareSnapshot(_) => continue,
                    }
                    if self.opts.max_count.is_some_and(|m| dispatched >= m) {
                        self.report.stopped_early = true;
                        break;
                    }
                    dispatched += 1;
                    let readers = self.readers(unit.table, &unit.id, unit.owner.as_deref())?;
                    jobs.push(Job { name: unit.secret_name(), table: unit.table, id: unit.id.into(), readers, sweep: false });
                }
                self.run_jobs(jobs)?;
                if self.report.stopped_early {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Runs the Barbican half of each job on `workers` threads and the database half, in the
    /// order results arrive, on this one. Stops dispatching at the first fatal error or when the
    /// error budget is spent, and still finishes every job already in flight.
    fn run_jobs(&mut self, jobs: Vec<Job>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let (barbican, key, journal) = (self.barbican, self.key, self.journal);
        let workers = self.opts.workers.clamp(1, jobs.len());
        let pacer = self.opts.max_rate.filter(|r| *r > 0.0).map(Pacer::new);
        let queue = Mutex::new(VecDeque::from(jobs));
        let stop = AtomicBool::new(false);
        let mut first_error: Option<Error> = None;
        // One ticket per job in flight: a worker takes one before starting a job and this thread
        // hands it back once the job's result is handled, so no more than `workers` jobs are
        // ever past the point where the run could still decide to stop.
        let (ticket_tx, ticket_rx) = mpsc::sync_channel::<()>(workers);
        for _ in 0..workers {
            let _ = ticket_tx.send(());
        }
        let tickets = Mutex::new(ticket_rx);
        let mut ticket_tx = Some(ticket_tx);
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel::<(Job, BarbicanResult)>();
            for _ in 0..workers {
                let (tx, queue, stop, pacer, tickets) = (tx.clone(), &queue, &stop, pacer.as_ref(), &tickets);
                s.spawn(move || loop {
                    let ticket = tickets.lock().ok().map(|t| t.recv());
                    if !matches!(ticket, Some(Ok(()))) || stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Some(job) = queue.lock().ok().and_then(|mut q| q.pop_front()) else { break };
                    if let Some(p) = pacer {
                        p.wait();
                    }
                    log::info!(target: LOG, "Migrating {} {} encryption key to Barbican", job.table.noun(), job.id);
                    let half = barbican_half(barbican, key, journal, &job);
                    if tx.send((job, half)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            for (job, half) in rx {
                progress::inc(1);
                match self.db_half(&job, half) {
                    Ok(()) => {}
                    Err(UnitError::Failed(m)) => {
                        self.report.failed += 1;
                        log::error!(target: LOG, "Error migrating encryption key of {} {}: {m}", job.table.noun(), job.id);
                        if let Err(e) = self.check_budget() {
                            stop.store(true, Ordering::SeqCst);
                            first_error.get_or_insert(e);
                        }
                    }
                    Err(UnitError::Fatal(e)) => {
                        stop.store(true, Ordering::SeqCst);
                        first_error.get_or_insert(e);
                    }
                }
                if stop.load(Ordering::SeqCst) {
                    // No more tickets: waiting workers wake up and leave.
                    ticket_tx = None;
                } else if let Some(t) = &ticket_tx {
                    let _ = t.send(());
                }
            }
        });
        drop(ticket_tx);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Cinder's rule: stop once more than `max_errors` units have failed.
    fn check_budget(&mut self) -> Result<()> {
        if self.report.failed <= self.opts.max_errors {
            return Ok(());
        }
        self.report.stopped_early = true;
        log::error!(target: LOG, "Aborting encryption key migration (too many errors).");
        Err(Error::Aborted(format!(
            "aborted after {} failed unit(s) (more than --max-errors {})",
            self.report.failed, self.opts.max_errors
        )))
    }

    /// The readers the unit's secret must have: its owner, and for a volume the owners of the
    /// all-zeros snapshots that share it.
    fn readers(&mut self, table: Table, id: &str, owner: Option<&str>) -> Result<Vec<String>> {
        let mut readers: BTreeSet<String> = owner.filter(|o| cinder::is_owner(o)).map(String::from).into_iter().collect();
        if table == Table::Volumes {
            readers.extend(self.db.zero_snapshot_owners(id)?);
        }
        Ok(readers.into_iter().collect())
    }

    /// The database half of a job: compare-and-swap a verified secret in, or clean up after a
    /// failed Barbican half.
    fn db_half(&mut self, job: &Job, half: BarbicanResult) -> Result<(), UnitError> {
        match half {
            BarbicanResult::Verified { secret, maybe_orphaned } => {
                self.report.secrets_created += 1;
                self.swap_in(job, &secret, job.sweep || maybe_orphaned)
            }
            BarbicanResult::Failed { secret: Some(secret), error, .. } => {
                self.report.secrets_created += 1;
                // The secret is ours and nothing points at it; leave nothing behind if we can.
                if self.discard(&secret).is_ok() {
                    self.journal.finish(job.table, &job.id)?;
                }
                Err(error)
            }
            BarbicanResult::Failed { secret: None, maybe_created, error } => {
                // Nothing to clean up unless a request may have gone through; the entry then
                // stays for the next run's name-based sweep.
                if !maybe_created {
                    self.journal.finish(job.table, &job.id)?;
                }
                Err(error)
            }
        }
    }

    /// Compare-and-swap, then clean up. Shared by new units and recovered ones.
    fn swap_in(&mut self, job: &Job, secret: &str, sweep: bool) -> Result<(), UnitError> {
        let (table, id) = (job.table, job.id.as_str());
        fault::point("verified");
        match self.db.swap(table, id, secret, Share::Readers(&job.readers))? {
            Ok(rows) => {
                fault::point("committed");
                log::info!(target: LOG, "Migrated {} {id} to Barbican key ID {secret} ({rows})", table.noun());
                self.report.migrated += 1;
                self.report.rows.add(&rows);
            }
            Err(_) => {
                log::info!(target: LOG, "{} {id} no longer uses the all-zeros key ID (another run got there first); deleting secret {secret}", table.noun());
                self.report.lost += 1;
                self.discard(secret)?;
            }
        }
        if sweep {
            self.sweep(table, id, &job.name)?;
        }
        self.journal.finish(table, id)?;
        fault::point("finished");
        Ok(())
    }

    /// Deletes a secret this run made, unless a row points at it.
    fn discard(&mut self, secret: &str) -> Result<(), UnitError> {
        if self.db.is_referenced(secret)? {
            log::error!(target: LOG, "not deleting secret {secret}: a row uses it");
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
        let mut misnamed = 0;
        for found in self.barbican.find_by_name(name).map_err(api)? {
            // The listing's secret_ref is trusted no more than the store's answer.
            if self.barbican.name_of(&found).map_err(api)?.as_deref() != Some(name) {
                log::warn!(target: LOG, "not deleting secret {found}: listed under the name of {} {id}, but it is not named so", table.noun());
                misnamed += 1;
                continue;
            }
            if !self.db.is_referenced(&found)? {
                log::info!(target: LOG, "Deleting secret {found} left by an interrupted run for {} {id}", table.noun());
                if self.barbican.delete(&found).map_err(api)? {
                    self.report.secrets_deleted += 1;
                }
            }
        }
        if misnamed > 0 {
            // The secrets really named so may not have been listed: keep the unit in the journal
            // so that the next run sweeps again.
            return Err(UnitError::Failed(format!("Barbican listed {misnamed} secret(s) under the name {name} that are not named so")));
        }
        Ok(())
    }

    /// Finishes or cleans up every unit an earlier run left in the journal.
    fn recover(&mut self) -> Result<()> {
        let pending = self.journal.pending()?;
        if !pending.is_empty() {
            log::info!(target: LOG, "Resuming {} unit(s) left by an interrupted run", pending.len());
        }
        for entry in pending {
            match self.recover_one(&entry) {
                Ok(()) => self.report.recovered += 1,
                Err(UnitError::Failed(m)) => {
                    self.report.failed += 1;
                    log::error!(target: LOG, "Error finishing {} {} left by an interrupted run: {m}", entry.table.noun(), entry.id);
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
                log::info!(target: LOG, "Resuming {} {} with secret {secret}", entry.table.noun(), entry.id);
                let job = Job { table: entry.table, id: entry.id.clone(), name: entry.name.clone(), readers, sweep: true };
                if let Err(e) = grant_and_verify(self.barbican, self.key, secret, &job.readers) {
                    if self.discard(secret).is_ok() {
                        self.journal.finish(entry.table, &entry.id)?;
                    }
                    return Err(e);
                }
                self.swap_in(&job, secret, true)
            }
            (Some(secret), false) => {
                if state.as_ref().and_then(|s| s.key.as_deref()) == Some(secret.as_str()) {
                    log::info!(target: LOG, "{} {} was already migrated to {secret} before the interruption", entry.table.noun(), entry.id);
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
                let owner = state.and_then(|s| s.owner).filter(|o| cinder::is_owner(o));
                if owner.is_none() {
                    self.journal.finish(entry.table, &entry.id)?;
                    return Ok(());
                }
                let readers = self.readers(entry.table, &entry.id, owner.as_deref())?;
                let job = Job { table: entry.table, id: entry.id.clone(), name: entry.name.clone(), readers, sweep: true };
                let half = barbican_half(self.barbican, self.key, self.journal, &job);
                self.db_half(&job, half)
            }
            (None, false) => {
                self.sweep(entry.table, &entry.id, &entry.name)?;
                self.journal.finish(entry.table, &entry.id)?;
                Ok(())
            }
        }
    }
}

/// One unit as the workers see it.
struct Job {
    table: Table,
    id: String,
    /// The deterministic secret name.
    name: String,
    /// Who must be able to read the secret.
    readers: Vec<String>,
    /// Also delete secrets an interrupted run may have made for this unit.
    sweep: bool,
}

/// The result of a job's Barbican half.
enum BarbicanResult {
    /// Stored, readable by the readers, and read back as exactly the key.
    Verified { secret: String, maybe_orphaned: bool },
    /// Did not get that far. `secret`: the one stored, if any.
    Failed { secret: Option<String>, maybe_created: bool, error: UnitError },
}

/// Journal, store, record, grant, verify: everything of a unit that talks to Barbican and none
/// of what touches the database. Runs on a worker thread.
fn barbican_half(barbican: &Barbican, key: &FixedKey, journal: &Journal, job: &Job) -> BarbicanResult {
    let failed = |secret, maybe_created, error| BarbicanResult::Failed { secret, maybe_created, error };
    let mut entry = Entry { table: job.table, id: job.id.clone(), name: job.name.clone(), secret: None };
    if let Err(e) = journal.write(&entry) {
        return failed(None, false, UnitError::Fatal(e));
    }
    fault::point("journal");
    let stored = match barbican.store(&job.name, key) {
        Ok(s) => s,
        Err(f) => return failed(None, f.maybe_created, api(f.error)),
    };
    fault::point("stored");
    entry.secret = Some(stored.id.clone());
    if let Err(e) = journal.write(&entry) {
        // Unrecorded secrets must not outlive this run: the database half deletes it.
        return failed(Some(stored.id), true, UnitError::Fatal(e));
    }
    fault::point("recorded");
    match grant_and_verify(barbican, key, &stored.id, &job.readers) {
        Ok(()) => BarbicanResult::Verified { secret: stored.id, maybe_orphaned: stored.maybe_orphaned },
        Err(e) => failed(Some(stored.id), true, e),
    }
}

/// Grants read and proves the secret holds exactly the key.
fn grant_and_verify(barbican: &Barbican, key: &FixedKey, secret: &str, readers: &[String]) -> Result<(), UnitError> {
    barbican.grant_read(secret, readers).map_err(api)?;
    fault::point("acl");
    let payload = barbican.payload(secret).map_err(api)?;
    if payload.as_slice() != key.bytes() {
        return Err(UnitError::Failed(format!(
            "secret {secret} read back {} byte(s) that are not the fixed key ({} bytes); not using it",
            payload.len(),
            key.bytes().len()
        )));
    }
    Ok(())
}

/// Spaces secret creations at least `1 / rate` seconds apart, across all workers.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        Pacer { interval: Duration::from_secs_f64(1.0 / rate), next: Mutex::new(Instant::now()) }
    }

    fn wait(&self) {
        let wait = match self.next.lock() {
            Ok(mut next) => {
                let now = Instant::now();
                let at = (*next).max(now);
                *next = at + self.interval;
                at - now
            }
            Err(_) => Duration::ZERO,
        };
        std::thread::sleep(wait);
    }
}
