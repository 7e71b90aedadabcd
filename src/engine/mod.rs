//! The migration engine: for each unit of the plan, store a secret holding the fixed key's exact
//! bytes, read it back and compare, then compare-and-swap the rows.
//!
//! Where the secret lives (`--secret-owner`): `project` stores it with a token scoped to the
//! row's own project ([`Projects`]), so every member reads it as they read a key Cinder made
//! under Barbican; the run works through the projects a group at a time, so the role grants it
//! needs are one per project, revoked when the group is done. `service` stores it in Cinder's
//! service project and grants the row's owner read through the secret's ACL, as Cinder's own
//! migrator does.
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

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::barbican::{ApiError, Barbican};
use crate::cinder::SecretOwner;
use crate::conditions::FixedKey;
use crate::db::swap::{RowState, Share, Swap, Swapped};
use crate::db::{Cursor, Db};
use crate::error::{Error, Result};
use crate::fault;
use crate::progress;
use crate::journal::{Entry, Journal};
use crate::cinder::{self, Table};
use crate::plan::{self, Action, Item, Unit};
use crate::projects::Projects;
use crate::scope::Scope;
pub use confirm::Confirmer;

mod confirm;
mod images;
mod nova;
mod rehome;

pub use images::ImagesReport;

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
    /// Also move rows off secrets an earlier run made in Cinder's service project (`--rehome`).
    pub rehome: bool,
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
    /// Units left untouched because their project is blocked (`--secret-owner project`).
    pub blocked_units: u64,
    /// Units whose project's token was refused while they were in flight, after another unit
    /// of the project had already reported it: left on the all-zeros ID for the next run.
    pub deferred: u64,
    /// Each blocked project and why.
    pub blocked_projects: BTreeMap<String, String>,
    /// Projects worked in and role grants made and revoked (`--secret-owner project`).
    pub keystone: crate::projects::Stats,
    /// Glance images (`--images`).
    pub images: ImagesReport,
    /// Nova instances (`--nova`).
    pub nova: nova::NovaRunReport,
    /// Why the last unit, image or instance failed: the error budget's message names it, so
    /// that the one line a run ends with says what went wrong (a Barbican that times out, say).
    #[serde(skip)]
    pub last_failure: Option<String>,
}

/// The side-effect-free twin used by `--dry-run`: the same walk, logging what would happen.
pub fn dry_run(db: &mut Db, scope: &Scope, owner: SecretOwner, opts: &Options) -> Result<Report> {
    let mut report = Report::default();
    for table in Table::ALL {
        let mut cursor = Cursor::Start;
        while cursor != Cursor::End {
            for item in plan::page(db, scope, owner, table, &mut cursor)? {
                if let Item::Unit(unit) = item {
                    if unit.action != Action::NewSecret {
                        continue;
                    }
                    if opts.max_count.is_some_and(|m| report.migrated >= m) {
                        report.stopped_early = true;
                        return Ok(report);
                    }
                    log::info!(target: LOG, "Would migrate {} {} encryption key to Barbican ({})", unit.table.noun(), unit.id, holder_words(&unit, owner));
                    report.migrated += 1;
                }
            }
        }
    }
    Ok(report)
}

fn holder_words(unit: &Unit, owner: SecretOwner) -> String {
    match owner {
        SecretOwner::Service => format!("owner {}", unit.owner.as_deref().unwrap_or("-")),
        SecretOwner::Project => format!("project {}", unit.project.as_deref().unwrap_or("-")),
    }
}

/// At most this many units' compare-and-swaps are committed together.
const GROUP_COMMIT: usize = 32;

/// Projects whose units one pass over the plan takes: their grants are held for that pass.
const PROJECTS_PER_PASS: usize = 64;

pub struct Engine<'a> {
    pub db: &'a mut Db,
    /// Barbican as the `[keystone_authtoken]` identity: Cinder's service project.
    pub barbican: Arc<Barbican>,
    /// Barbican in the rows' own projects; `Some` exactly when `owner` is project.
    pub projects: Option<Projects>,
    pub owner: SecretOwner,
    /// The `[keystone_authtoken]` identity's own project: `--rehome` leaves its rows alone (a
    /// secret there is already in the row's project).
    pub service_project: Option<String>,
    pub key: &'a FixedKey,
    pub journal: &'a Journal,
    pub opts: Options,
    pub report: Report,
    /// Confirms new secrets' names, a batch at a time, for the whole run.
    pub confirmer: Arc<Confirmer>,
}

/// Why one unit did not complete.
enum UnitError {
    /// Counted against the error budget; the run goes on.
    Failed(String),
    /// Stops the run (database unusable, 403 from Barbican, journal unwritable).
    Fatal(Error),
    /// A project's Barbican refused its token or its request (the role it relied on was
    /// revoked by another run, its policy, …): counted against the error budget, and the
    /// project is opened again before its next unit.
    Project(String),
    /// The row's project is at Barbican's secret quota: no unit of it can succeed until an
    /// operator raises the quota, so the project is blocked for the rest of the run.
    Quota(String),
}

impl From<Error> for UnitError {
    fn from(e: Error) -> Self {
        UnitError::Fatal(e)
    }
}

/// The error of a request made in a row's project: what would stop a service-project run only
/// concerns that project here.
fn project_api(e: ApiError) -> UnitError {
    match e {
        ApiError::Forbidden(m) => UnitError::Project(format!("Barbican refused (quota or policy): {m}")),
        ApiError::Quota(m) => UnitError::Quota(m),
        ApiError::Fatal(m) => UnitError::Project(m),
        e => api(e),
    }
}

fn api(e: ApiError) -> UnitError {
    match e {
        ApiError::Forbidden(m) => UnitError::Fatal(Error::Service(format!(
            "Barbican refused (quota or policy): {m}; check the [keystone_authtoken] user's roles and the project's secret quota"
        ))),
        // Every secret of the run goes to that one project: nothing more can be done.
        ApiError::Quota(m) => UnitError::Fatal(Error::Service(format!(
            "Barbican's secret quota of the [keystone_authtoken] identity's project is reached ({m}); raise it, or delete the secrets that project no longer needs, then run migrate again"
        ))),
        ApiError::Fatal(m) => UnitError::Fatal(Error::Credentials(m)),
        ApiError::Unusable(m) => UnitError::Fatal(Error::Service(m)),
        ApiError::Transient(m) | ApiError::Rejected(m) => UnitError::Failed(m),
    }
}

impl Engine<'_> {
    /// Finishes what an interrupted run left, then migrates every unit in scope. Every role
    /// grant the run made is revoked before it returns, whatever happened.
    pub fn run(&mut self, scope: &Scope) -> Result<()> {
        let result = self.run_inner(scope);
        let (listings, listed) = self.confirmer.stats();
        if listings > 0 {
            log::debug!(target: LOG, "Confirmed the names of {listed} secret(s) with {listings} listing(s)");
        }
        let closed = self.projects.as_mut().map_or(Ok(()), |p| p.close_all());
        if let Some(p) = &self.projects {
            self.report.keystone = p.stats.clone();
        }
        result.and(closed)
    }

    fn run_inner(&mut self, scope: &Scope) -> Result<()> {
        if let Some(p) = &mut self.projects {
            p.revoke_leftovers()?;
        }
        self.recover()?;
        log::info!(target: LOG, "Starting migration of ConfKeyManager keys.");
        match self.owner {
            SecretOwner::Service => self.pass(scope, None, true),
            SecretOwner::Project => {
                let projects = self.projects_with_work(scope)?;
                if !projects.is_empty() {
                    log::info!(target: LOG, "{} project(s) have keys to migrate", projects.len());
                }
                for (n, group) in projects.chunks(PROJECTS_PER_PASS).enumerate() {
                    let group: HashSet<&str> = group.iter().map(String::as_str).collect();
                    self.pass(scope, Some(&group), n == 0)?;
                    if let Some(p) = &mut self.projects {
                        p.close_all()?;
                    }
                    if self.report.stopped_early {
                        return Ok(());
                    }
                }
                if self.opts.rehome {
                    self.rehome(scope)?;
                }
                Ok(())
            }
        }
    }

    /// The projects that hold a unit to migrate, each once, in order. With `--max-count K`,
    /// only those of the first K units: the first pass then takes exactly those units (every
    /// unit before them in the plan is of another project or not to do), without reading the
    /// rest of the plan first.
    fn projects_with_work(&mut self, scope: &Scope) -> Result<Vec<String>> {
        let mut projects = BTreeSet::new();
        let mut left = self.opts.max_count.unwrap_or(u64::MAX);
        for table in Table::ALL {
            let mut cursor = Cursor::Start;
            while cursor != Cursor::End && left > 0 {
                let items = plan::page(self.db, scope, self.owner, table, &mut cursor)?;
                projects_of(&items, None, &mut left, &mut projects);
            }
        }
        Ok(projects.into_iter().collect())
    }

    /// One walk of the plan, migrating every unit to do (only those of `group`'s projects,
    /// when given).
    /// `log_blocked`: log the rows the rules block (every pass sees them; one says so).
    fn pass(&mut self, scope: &Scope, group: Option<&HashSet<&str>>, log_blocked: bool) -> Result<()> {
        let mut dispatched = self.report.migrated + self.report.failed + self.report.lost;
        for table in Table::ALL {
            let mut cursor = Cursor::Start;
            while cursor != Cursor::End {
                let mut jobs = Vec::new();
                let items = plan::page(self.db, scope, self.owner, table, &mut cursor)?;
                self.open_projects(&items, group, dispatched)?;
                for item in items {
                    let Item::Unit(unit) = item else { continue };
                    match &unit.action {
                        Action::NewSecret => {}
                        Action::Blocked(reason) => {
                            if log_blocked {
                                log::warn!(target: LOG, "Not migrating {} {}: {reason}", unit.table.noun(), unit.id);
                            }
                            continue;
                        }
                        // Rewritten with its volume or snapshot.
                        Action::ShareVolume(_) | Action::ShareSnapshot(_) => continue,
                    }
                    let target = match self.target(&unit, group)? {
                        Target::Job(target) => target,
                        Target::NotThisPass => continue,
                        Target::Blocked => {
                            self.report.blocked_units += 1;
                            continue;
                        }
                    };
                    if self.opts.max_count.is_some_and(|m| dispatched >= m) {
                        self.report.stopped_early = true;
                        break;
                    }
                    dispatched += 1;
                    jobs.push(Job { name: unit.secret_name(), table: unit.table, id: unit.id.into(), target, sweep: false, from: None });
                }
                // A project's units side by side: the workers storing in one project at the
                // same moment confirm their names with one listing.
                jobs.sort_by(|a, b| a.target.holder.project().cmp(&b.target.holder.project()));
                self.run_jobs(jobs)?;
                if self.report.stopped_early {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Opens, several at once, the projects the page's units to do this pass will need
    /// (`--secret-owner project`; no more units than `--max-count` leaves): each takes a few
    /// Keystone requests, which would otherwise hold up the page one project at a time.
    fn open_projects(&mut self, items: &[Item], group: Option<&HashSet<&str>>, dispatched: u64) -> Result<()> {
        let Some(projects) = &mut self.projects else { return Ok(()) };
        let mut left = self.opts.max_count.map_or(u64::MAX, |m| m.saturating_sub(dispatched));
        let mut wanted = BTreeSet::new();
        projects_of(items, group, &mut left, &mut wanted);
        projects.open_many(&wanted.into_iter().collect::<Vec<_>>(), self.opts.workers)
    }

    /// Where a unit's secret goes this pass.
    fn target(&mut self, unit: &Unit, group: Option<&HashSet<&str>>) -> Result<Target> {
        match self.owner {
            SecretOwner::Service => {
                let readers = self.readers(unit.table, &unit.id, unit.owner.as_deref())?;
                Ok(Target::Job(JobTarget { barbican: self.barbican.clone(), holder: Holder::Readers(readers) }))
            }
            SecretOwner::Project => {
                let Some(project) = unit.project.as_deref() else { return Ok(Target::NotThisPass) };
                if group.is_some_and(|g| !g.contains(project)) {
                    return Ok(Target::NotThisPass);
                }
                self.in_project(project)
            }
        }
    }

    /// The target for a unit of `project`: its project's Barbican, or blocked.
    fn in_project(&mut self, project: &str) -> Result<Target> {
        let Some(projects) = &mut self.projects else {
            return Err(Error::Internal("--secret-owner project without the identity that acts in projects".into()));
        };
        match projects.barbican(project)? {
            Ok(barbican) => Ok(Target::Job(JobTarget { barbican, holder: Holder::Project(project.to_string()) })),
            Err(reason) => {
                self.report.blocked_projects.entry(project.to_string()).or_insert(reason);
                Ok(Target::Blocked)
            }
        }
    }

    /// Runs the Barbican half of each job on `workers` threads and the database half, in the
    /// order results arrive, on this one. Stops dispatching at the first fatal error or when the
    /// error budget is spent, and still finishes every job already in flight.
    fn run_jobs(&mut self, jobs: Vec<Job>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let (key, journal) = (self.key, self.journal);
        let workers = self.opts.workers.clamp(1, jobs.len());
        let pacer = self.opts.max_rate.filter(|r| *r > 0.0).map(Pacer::new);
        let queue = Mutex::new(VecDeque::from(jobs));
        let confirmer = self.confirmer.clone();
        let confirmer = &*confirmer;
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
                    let half = barbican_half(key, journal, confirmer, &job);
                    if tx.send((job, half)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            // The results that arrived while the last group was being written are written
            // together: one transaction, one commit (each unit still its own compare-and-swap).
            let mut results = VecDeque::new();
            loop {
                if results.is_empty() {
                    let Ok(first) = rx.recv() else { break };
                    let mut group = vec![first];
                    while group.len() < GROUP_COMMIT {
                        let Ok(more) = rx.try_recv() else { break };
                        group.push(more);
                    }
                    progress::inc(group.len() as u64);
                    results.extend(self.db_half_group(group));
                }
                let Some((job, outcome)) = results.pop_front() else { continue };
                match outcome {
                    Ok(()) => {}
                    Err(UnitError::Failed(m)) => {
                        self.report.failed += 1;
                        log::error!(target: LOG, "Error migrating encryption key of {} {}: {m}", job.table.noun(), job.id);
                        self.report.last_failure = Some(m);
                        if let Err(e) = self.check_budget() {
                            stop.store(true, Ordering::SeqCst);
                            first_error.get_or_insert(e);
                        }
                    }
                    // Another unit of a project already at its quota, sent before it was
                    // blocked: left, like the project's units still waiting for a worker.
                    Err(UnitError::Quota(_)) if self.blocked(&job) => self.report.blocked_units += 1,
                    Err(UnitError::Quota(m)) => match &job.target.holder {
                        Holder::Project(project) => self.quota_reached(project, &m, &queue),
                        // Only a project's Barbican reports a quota this way.
                        Holder::Readers(_) => {
                            stop.store(true, Ordering::SeqCst);
                            first_error.get_or_insert(Error::Internal(format!("a quota answer outside a project: {m}")));
                        }
                    },
                    Err(UnitError::Project(m)) => {
                        let news = match (&mut self.projects, &job.target.holder) {
                            (Some(p), Holder::Project(project)) => p.reopen(project, &job.target.barbican),
                            _ => true,
                        };
                        if news {
                            self.report.failed += 1;
                            log::error!(target: LOG, "Error migrating encryption key of {} {}: {m}", job.table.noun(), job.id);
                            self.report.last_failure = Some(m);
                            if let Err(e) = self.check_budget() {
                                stop.store(true, Ordering::SeqCst);
                                first_error.get_or_insert(e);
                            }
                        } else {
                            // Dispatched with the project's old client: left for the next pass
                            // or run, not counted twice against the error budget.
                            self.report.deferred += 1;
                            log::warn!(target: LOG, "Not migrating {} {} in this pass: {m}", job.table.noun(), job.id);
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

    /// Whether the job's project is blocked in this run.
    fn blocked(&self, job: &Job) -> bool {
        match (&self.projects, &job.target.holder) {
            (Some(p), Holder::Project(project)) => p.is_blocked(project).is_some(),
            _ => false,
        }
    }

    /// Barbican refused a unit of `project` because the project's secret quota is reached:
    /// the project is blocked for the rest of the run (its grant is revoked when the pass
    /// ends, once the jobs still in flight are done), and its units still waiting for a worker
    /// are left, without asking Barbican again.
    fn quota_reached(&mut self, project: &str, answer: &str, queue: &Mutex<VecDeque<Job>>) {
        let reason = format!("Barbican's secret quota of the project is reached ({answer}); raise it, then run migrate again");
        self.report.blocked_units += 1;
        if let Some(p) = &mut self.projects {
            p.block(project, &reason);
        }
        self.report.blocked_projects.entry(project.to_string()).or_insert(reason);
        let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = queue.len();
        queue.retain(|j| !matches!(&j.target.holder, Holder::Project(p) if p == project));
        self.report.blocked_units += u64::try_from(waiting - queue.len()).unwrap_or(u64::MAX);
    }

    /// Cinder's rule: stop once more than `max_errors` units have failed.
    fn check_budget(&mut self) -> Result<()> {
        self.budget(self.report.failed, "unit(s)")
    }

    /// The same rule for `failed` items of another kind (`what`: "image(s)", …), each kind with
    /// a budget of its own.
    fn budget(&mut self, failed: u64, what: &str) -> Result<()> {
        if failed <= self.opts.max_errors {
            return Ok(());
        }
        self.report.stopped_early = true;
        log::error!(target: LOG, "Aborting encryption key migration (too many errors).");
        let last = self.report.last_failure.as_deref().map(|m| format!("; the last failure: {m}")).unwrap_or_default();
        Err(Error::Aborted(format!("aborted after {failed} failed {what} (more than --max-errors {}){last}", self.opts.max_errors)))
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

    /// The database half of a group of jobs: the verified secrets of new units are swapped in
    /// with one commit, then each job is finished as [`Engine::db_half`] would.
    fn db_half_group(&mut self, group: Vec<(Job, BarbicanResult)>) -> Vec<(Job, Result<(), UnitError>)> {
        // The verified secrets of new units, by their place in the group.
        let swaps: Vec<(usize, Swap<'_>)> = group
            .iter()
            .enumerate()
            .filter_map(|(i, (job, half))| match half {
                BarbicanResult::Verified { secret, .. } if job.from.is_none() => {
                    Some((i, Swap { table: job.table, id: &job.id, new_id: secret, share: job.target.holder.share() }))
                }
                _ => None,
            })
            .collect();
        let mut swapped: BTreeMap<usize, Result<Swapped, crate::db::swap::Lost>> = BTreeMap::new();
        let mut failed: Option<Error> = None;
        if swaps.len() > 1 {
            fault::point("verified");
            let only: Vec<Swap<'_>> = swaps.iter().map(|(_, w)| *w).collect();
            match self.db.swap_group(&only) {
                Ok(outcomes) => swapped = swaps.iter().map(|(i, _)| *i).zip(outcomes).collect(),
                Err(e) => failed = Some(e),
            }
        }
        let in_group: Vec<usize> = if swaps.len() > 1 { swaps.iter().map(|(i, _)| *i).collect() } else { Vec::new() };
        group
            .into_iter()
            .enumerate()
            .map(|(i, (job, half))| {
                let outcome = match half {
                    BarbicanResult::Verified { secret, maybe_orphaned } if in_group.contains(&i) => {
                        self.report.secrets_created += 1;
                        match swapped.remove(&i) {
                            Some(result) => self.after_swap(&job, &secret, job.sweep || maybe_orphaned, result),
                            // The group's transaction failed: the run stops at the first error.
                            None => Err(UnitError::Fatal(
                                failed.take().unwrap_or_else(|| Error::Service("the group's transaction failed".into())),
                            )),
                        }
                    }
                    half => self.db_half(&job, half),
                };
                (job, outcome)
            })
            .collect()
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
                if self.discard(&job.target.barbican, &secret).is_ok() {
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
        let share = job.target.holder.share();
        let swapped = match &job.from {
            None => self.db.swap(table, id, secret, share)?,
            Some(old) => self.db.reswap(table, id, old, secret)?,
        };
        self.after_swap(job, secret, sweep, swapped)
    }

    /// What follows a unit's compare-and-swap: the report, the old secret retired or the new
    /// one discarded when another run got there first, the sweep, the journal entry finished.
    fn after_swap(&mut self, job: &Job, secret: &str, sweep: bool, swapped: Result<Swapped, crate::db::swap::Lost>) -> Result<(), UnitError> {
        let (table, id) = (job.table, job.id.as_str());
        match swapped {
            Ok(rows) => {
                fault::point("committed");
                match &job.from {
                    None => log::info!(target: LOG, "Migrated {} {id} to Barbican key ID {secret} ({rows})", table.noun()),
                    Some(old) => log::info!(target: LOG, "Moved {} {id} from Barbican key ID {old} to {secret} in its own project", table.noun()),
                }
                self.report.migrated += 1;
                self.report.rows.add(&rows);
                if let Some(old) = &job.from {
                    self.retire(old)?;
                }
            }
            Err(_) => {
                log::info!(target: LOG, "{} {id} no longer uses the all-zeros key ID (another run got there first); deleting secret {secret}", table.noun());
                self.report.lost += 1;
                self.discard(&job.target.barbican, secret)?;
            }
        }
        if sweep {
            self.sweep(&job.target.barbican, table, id, &job.name)?;
        }
        self.journal.finish(table, id)?;
        fault::point("finished");
        Ok(())
    }

    /// Deletes the service-project secret a rehomed row left, once no row points at it.
    fn retire(&mut self, old: &str) -> Result<(), UnitError> {
        if self.db.is_referenced(old)? {
            return Ok(());
        }
        log::info!(target: LOG, "Deleting secret {old}: no row uses it any more");
        let barbican = self.barbican.clone();
        match barbican.delete(old) {
            Ok(true) => self.report.secrets_deleted += 1,
            Ok(false) => {}
            // Readable, but not Cinder's to delete (on its ACL only): the rows are safe either way.
            Err(ApiError::Forbidden(m)) => log::warn!(target: LOG, "Not deleting secret {old}, which no row uses any more: {m}"),
            Err(e) => return Err(api(e)),
        }
        Ok(())
    }

    /// Deletes a secret this run made, unless a row points at it.
    fn discard(&mut self, barbican: &Barbican, secret: &str) -> Result<(), UnitError> {
        if self.db.is_referenced(secret)? {
            log::error!(target: LOG, "not deleting secret {secret}: a row uses it");
            return Ok(());
        }
        match barbican.delete(secret) {
            Ok(true) => {
                self.report.secrets_deleted += 1;
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(api(e)),
        }
    }

    /// Deletes secrets named for this unit that no row uses, in the project `barbican` acts
    /// in. Only called once the unit's row has left the all-zeros ID, so no run can still be
    /// about to point a row at them.
    fn sweep(&mut self, barbican: &Barbican, table: Table, id: &str, name: &str) -> Result<(), UnitError> {
        let state = self.db.row_state(table, id)?;
        if state.as_ref().is_some_and(RowState::is_zero_and_live) {
            return Ok(());
        }
        let mut misnamed = 0;
        for found in barbican.find_by_name(name).map_err(api)? {
            // The listing's secret_ref is trusted no more than the store's answer.
            if barbican.name_of(&found).map_err(api)?.as_deref() != Some(name) {
                log::warn!(target: LOG, "not deleting secret {found}: listed under the name of {} {id}, but it is not named so", table.noun());
                misnamed += 1;
                continue;
            }
            if !self.db.is_referenced(&found)? {
                log::info!(target: LOG, "Deleting secret {found} left by an interrupted run for {} {id}", table.noun());
                if barbican.delete(&found).map_err(api)? {
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
                Ok(true) => self.report.recovered += 1,
                Ok(false) => {}
                Err(UnitError::Failed(m) | UnitError::Project(m) | UnitError::Quota(m)) => {
                    self.report.failed += 1;
                    log::error!(target: LOG, "Error finishing {} {} left by an interrupted run: {m}", entry.table.noun(), entry.id);
                    self.report.last_failure = Some(m);
                    if let (Some(p), Some(project)) = (&mut self.projects, &entry.project) {
                        if let Ok(Ok(client)) = p.barbican(project) {
                            p.reopen(project, &client);
                        }
                    }
                    self.check_budget()?;
                }
                Err(UnitError::Fatal(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Where the entry's secret was (or is about to be) created: the project it names, or
    /// Cinder's service project. `None`: the project is blocked; the entry waits.
    fn entry_target(&mut self, entry: &Entry, owner: Option<&str>) -> Result<Option<JobTarget>> {
        match &entry.project {
            None => {
                let readers = self.readers(entry.table, &entry.id, owner)?;
                Ok(Some(JobTarget { barbican: self.barbican.clone(), holder: Holder::Readers(readers) }))
            }
            Some(project) => match self.in_project(project)? {
                Target::Job(target) => Ok(Some(target)),
                _ => Ok(None),
            },
        }
    }

    /// `Ok(false)`: left in the journal for a later run (its project is blocked).
    fn recover_one(&mut self, entry: &Entry) -> Result<bool, UnitError> {
        let state = self.db.row_state(entry.table, &entry.id)?;
        // Still on the key the unit moves it from: the all-zeros ID, or the old secret.
        let live_zero = match &entry.from {
            None => state.as_ref().is_some_and(RowState::is_zero_and_live),
            Some(old) => state.as_ref().is_some_and(|s| !s.deleted && s.key.as_deref() == Some(old.as_str())),
        };
        let owner = state.as_ref().and_then(|s| s.owner.clone());
        let Some(target) = self.entry_target(entry, owner.as_deref())? else {
            log::warn!(target: LOG, "Leaving {} {} in the journal: its project {} is blocked", entry.table.noun(), entry.id, entry.project.as_deref().unwrap_or("-"));
            return Ok(false);
        };
        let job = Job { table: entry.table, id: entry.id.clone(), name: entry.name.clone(), target, sweep: true, from: entry.from.clone() };
        match (&entry.secret, live_zero) {
            (Some(secret), true) => {
                // Killed between storing the secret and the commit: carry on from the ACL.
                log::info!(target: LOG, "Resuming {} {} with secret {secret}", entry.table.noun(), entry.id);
                if let Err(e) = grant_and_verify(self.key, secret, &job.target) {
                    if self.discard(&job.target.barbican, secret).is_ok() {
                        self.journal.finish(entry.table, &entry.id)?;
                    }
                    return Err(e);
                }
                self.swap_in(&job, secret, true)?;
            }
            (Some(secret), false) => {
                if state.as_ref().and_then(|s| s.key.as_deref()) == Some(secret.as_str()) {
                    log::info!(target: LOG, "{} {} was already migrated to {secret} before the interruption", entry.table.noun(), entry.id);
                    if let Some(old) = &entry.from {
                        self.retire(old)?;
                    }
                } else {
                    self.discard(&job.target.barbican, secret)?;
                }
                self.sweep(&job.target.barbican, entry.table, &entry.id, &entry.name)?;
                self.journal.finish(entry.table, &entry.id)?;
            }
            (None, true) => {
                // Killed while storing: whatever Barbican made is found by name once the unit is
                // done. Do the unit now, whatever the scope is today, if it can still be done:
                // a service-project secret needs an owner to read it.
                if entry.project.is_none() && !owner.as_deref().is_some_and(cinder::is_owner) {
                    self.journal.finish(entry.table, &entry.id)?;
                    return Ok(true);
                }
                let half = barbican_half(self.key, self.journal, &self.confirmer.clone(), &job);
                self.db_half(&job, half)?;
            }
            (None, false) => {
                // A row moved off an old secret (`--rehome`) leaves it to be retired, once
                // no row points at it, whichever secret the row holds now.
                if let Some(old) = &entry.from {
                    self.retire(old)?;
                }
                self.sweep(&job.target.barbican, entry.table, &entry.id, &entry.name)?;
                self.journal.finish(entry.table, &entry.id)?;
            }
        }
        Ok(true)
    }
}

/// The projects of the units to do among `items` (only of `group`'s projects, when given),
/// taking at most `left` units, counted down.
fn projects_of(items: &[Item], group: Option<&HashSet<&str>>, left: &mut u64, into: &mut BTreeSet<String>) {
    for item in items {
        if *left == 0 {
            return;
        }
        let Item::Unit(Unit { action: Action::NewSecret, project: Some(project), .. }) = item else { continue };
        if group.is_some_and(|g| !g.contains(&**project)) {
            continue;
        }
        *left -= 1;
        into.insert(String::from(&**project));
    }
}

/// Where a unit's secret goes.
enum Target {
    Job(JobTarget),
    /// Another pass takes it (its project is in another group).
    NotThisPass,
    /// Its project is blocked.
    Blocked,
}

/// The Barbican a job's secret is created in, and who shares it.
struct JobTarget {
    barbican: Arc<Barbican>,
    holder: Holder,
}

enum Holder {
    /// Cinder's service project: these users are granted read on the ACL, and the volume's
    /// swap takes the snapshots they own.
    Readers(Vec<String>),
    /// The row's own project: Barbican's policy lets its members read; the volume's swap takes
    /// the snapshots of exactly this project.
    Project(String),
}

impl Holder {
    /// Which snapshots a volume's swap takes.
    fn share(&self) -> Share<'_> {
        match self {
            Holder::Readers(readers) => Share::Readers(readers),
            Holder::Project(project) => Share::Project(project),
        }
    }

    /// The project the secret is stored in; `None`: Cinder's service project.
    fn project(&self) -> Option<&str> {
        match self {
            Holder::Readers(_) => None,
            Holder::Project(p) => Some(p),
        }
    }
}

/// One unit as the workers see it.
struct Job {
    table: Table,
    id: String,
    /// The deterministic secret name.
    name: String,
    target: JobTarget,
    /// Also delete secrets an interrupted run may have made for this unit.
    sweep: bool,
    /// The secret the row holds now, when it is not the all-zeros ID (`--rehome`).
    from: Option<String>,
}

/// The result of a job's Barbican half.
enum BarbicanResult {
    /// Stored, readable by the readers, and read back as exactly the key.
    Verified { secret: String, maybe_orphaned: bool },
    /// Did not get that far. `secret`: the one stored, if any.
    Failed { secret: Option<String>, maybe_created: bool, error: UnitError },
}

/// Journal, store, verify, confirm, grant: everything of a unit that talks to Barbican
/// and none of what touches the database. Runs on a worker thread.
///
/// The read-back comes before the name is confirmed (it only reads), so that the workers
/// storing at the same moment reach the confirmation together and share one listing
/// ([`Confirmer`]); nothing is written about the ID (journal, ACL, row) until it is confirmed.
fn barbican_half(key: &FixedKey, journal: &Journal, confirmer: &Confirmer, job: &Job) -> BarbicanResult {
    let failed = |secret, maybe_created, error| BarbicanResult::Failed { secret, maybe_created, error };
    let project = match &job.target.holder {
        Holder::Project(p) => Some(p.clone()),
        Holder::Readers(_) => None,
    };
    let errors = if project.is_some() { project_api } else { api };
    let group = project.clone().unwrap_or_default();
    let entry = Entry { table: job.table, id: job.id.clone(), name: job.name.clone(), secret: None, project, from: job.from.clone() };
    if let Err(e) = journal.write(&entry) {
        return failed(None, false, UnitError::Fatal(e));
    }
    fault::point("journal");
    let barbican = &job.target.barbican;
    let stored = match barbican.store_unconfirmed(&job.name, key) {
        Ok(s) => s,
        Err(f) => return failed(None, f.maybe_created, errors(f.error)),
    };
    fault::point("stored");
    let read_back = read_back(key, &stored.id, barbican, errors);
    // Until confirmed the ID may name another secret: a failure leaves the secret Barbican
    // really made to the next run's search by name, and never deletes the one named.
    if let Err(e) = confirmer.confirm(&group, barbican, &job.name, &stored.id) {
        return failed(None, true, errors(e));
    }
    // The secret's ID is not written to the journal: the entry already names the secret
    // (its name is this attempt's own), so a run killed from here on is finished by the next
    // from the name alone, at the cost of one more secret, made and swept then. That keeps
    // one synced journal write per unit.
    fault::point("recorded");
    if let Err(e) = read_back.and_then(|()| grant(&stored.id, &job.target)) {
        return failed(Some(stored.id), true, e);
    }
    BarbicanResult::Verified { secret: stored.id, maybe_orphaned: stored.maybe_orphaned }
}

/// Grants read (a service-project secret only: a project's secret is read by its members
/// through Barbican's policy, as a key Cinder created) and proves the secret holds exactly the
/// key.
fn grant_and_verify(key: &FixedKey, secret: &str, target: &JobTarget) -> Result<(), UnitError> {
    grant(secret, target)?;
    let errors = match &target.holder {
        Holder::Readers(_) => api,
        Holder::Project(_) => project_api,
    };
    read_back(key, secret, &target.barbican, errors)
}

/// PUT …/acl for a service-project secret's readers; nothing for a project's own secret.
fn grant(secret: &str, target: &JobTarget) -> Result<(), UnitError> {
    if let Holder::Readers(readers) = &target.holder {
        target.barbican.grant_read(secret, readers).map_err(api)?;
        fault::point("acl");
    }
    Ok(())
}

/// GET …/payload: `Ok` when the secret holds exactly the key.
fn read_back(key: &FixedKey, secret: &str, barbican: &Barbican, errors: fn(ApiError) -> UnitError) -> Result<(), UnitError> {
    let payload = barbican.payload(secret).map_err(errors)?;
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
