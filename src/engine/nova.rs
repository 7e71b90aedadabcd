//! `migrate --nova`: a live Nova instance whose `ephemeral_key_uuid` is the all-zeros ID gets a
//! secret of its own in its project, holding exactly nova.conf's `fixed_key` (the key its
//! encrypted ephemeral disk was made with), as Nova itself creates ephemeral keys under
//! Barbican with the user's token; then its row is swapped in its cell database.
//!
//! The steps of one instance, each journalled before the next can matter: entry written →
//! secret stored → its ID recorded → read back and compared → compare-and-swap
//! `UPDATE instances SET ephemeral_key_uuid = <id> WHERE uuid = ? AND deleted = 0 AND
//! ephemeral_key_uuid = '0…0' AND task_state IS NULL` → entry removed. A swap that changes no row
//! is looked at again: the row names the secret (an earlier attempt swapped it) and is done, or
//! it does not, and the secret, which nothing names, is deleted. A run killed anywhere leaves the
//! entry, and the next run finishes the instance or deletes the secret it does not use.
//! Instances with a task in progress are left for a later run (their operation may be rebuilding
//! the disk right now).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::barbican::{ApiError, Barbican, StoreFailed, Stored};
use crate::conditions::FixedKey;
use crate::error::{Error, Result};
use crate::fault;
use crate::journal::{NovaEntry, NovaJournal};
use crate::nova::{self, CellDb, InstanceAction, NovaReport};

use super::{Engine, Target, LOG};

/// What the Nova runs did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NovaRunReport {
    /// Instances whose row now names a verified secret in their project.
    pub migrated: u64,
    /// Instances left for a later run: a task in progress.
    pub waiting: u64,
    /// Instances reported, never changed (no project).
    pub reported: u64,
    /// Instances whose project is blocked (gone from Keystone, grant refused).
    pub blocked: u64,
    /// Instances that failed (Barbican refused, the secret read back wrong).
    pub failed: u64,
    /// Instances finished from an interrupted run.
    pub recovered: u64,
    /// Cells that could not be read or written.
    pub unreadable_cells: u64,
}

/// What reading a stored secret back showed.
enum ReadBack {
    /// Exactly the key.
    Holds,
    /// Other bytes: the secret is not to be used.
    Other(String),
    /// Barbican did not answer; the secret may still be good.
    Failed(String),
}

fn read_back(barbican: &Barbican, secret: &str, key: &FixedKey) -> ReadBack {
    match barbican.payload(secret) {
        Ok(p) if p.as_slice() == key.bytes() => ReadBack::Holds,
        Ok(p) => ReadBack::Other(format!("secret {secret} read back {} byte(s) that are not nova.conf's fixed key; not using it", p.len())),
        Err(e) => ReadBack::Failed(e.to_string()),
    }
}

/// One entry's secret, stored and read back, or why it was not stored.
type Store = std::result::Result<(Stored, ReadBack), StoreFailed>;
type Stores = Vec<Store>;

/// Stores and reads back the secret of each entry on up to `workers` threads, in order.
fn store_all(ready: &[(NovaEntry, Arc<Barbican>)], key: &FixedKey, workers: usize) -> Stores {
    let slots: Vec<Mutex<Option<Store>>> = ready.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers.min(ready.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((entry, barbican)) = ready.get(i) else { return };
                let result = barbican.store(&entry.name, key).map(|stored| {
                    let verdict = read_back(barbican, &stored.id, key);
                    (stored, verdict)
                });
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(StoreFailed { error: ApiError::Rejected("a worker stopped before storing".into()), maybe_created: true })
            })
        })
        .collect()
}

/// What one run works from: the cells and their instances, nova.conf's key, the journal, and
/// the cell databases opened so far (by cell mapping UUID).
struct Run<'a> {
    report: &'a NovaReport,
    key: &'a FixedKey,
    journal: &'a NovaJournal,
    open: HashMap<String, CellDb>,
}

impl Run<'_> {
    /// The cell's database, opened on first use; `None` when its URL could not be made.
    fn cell(&mut self, cell: &str) -> Result<Option<&mut CellDb>> {
        if !self.open.contains_key(cell) {
            let Some(url) = self.report.cells.iter().find(|c| c.uuid == cell).and_then(|c| c.db.as_ref()) else { return Ok(None) };
            self.open.insert(cell.to_string(), CellDb::open(url, crate::db::Access::ReadWrite)?);
        }
        Ok(self.open.get_mut(cell))
    }
}

impl Engine<'_> {
    /// Finishes the instances an interrupted run left, then migrates those `report` lists.
    pub fn run_nova(&mut self, report: &NovaReport, key: &FixedKey, journal: &NovaJournal) -> Result<()> {
        let result = self.nova_inner(report, key, journal);
        let closed = self.projects.as_mut().map_or(Ok(()), |p| p.close_all());
        if let Some(p) = &self.projects {
            self.report.keystone = p.stats.clone();
        }
        result.and(closed)
    }

    fn nova_inner(&mut self, report: &NovaReport, key: &FixedKey, journal: &NovaJournal) -> Result<()> {
        let mut run = Run { report, key, journal, open: HashMap::new() };
        self.report.nova.unreadable_cells = report.unreadable_cells() as u64;
        for entry in journal.pending_entries()? {
            if self.recover_instance(&mut run, &entry)? {
                self.report.nova.recovered += 1;
            }
        }
        // The instances this run takes, in cell order.
        let mut todo: Vec<(String, nova::Instance)> = Vec::new();
        for cell in &report.cells {
            for instance in &cell.instances {
                match nova::rule(instance) {
                    InstanceAction::Reported(reason) => {
                        self.report.nova.reported += 1;
                        log::warn!(target: LOG, "Not migrating instance {}: {reason}", instance.uuid);
                    }
                    InstanceAction::Wait => {
                        self.report.nova.waiting += 1;
                        log::info!(target: LOG, "Leaving instance {} for a later run: task_state {}", instance.uuid, instance.task_state.as_deref().unwrap_or(""));
                    }
                    InstanceAction::NewSecret => todo.push((cell.uuid.clone(), instance.clone())),
                }
            }
        }
        if let Some(max) = self.opts.max_count {
            let room = max.saturating_sub(self.report.migrated + self.report.images.migrated + self.report.nova.migrated);
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            if todo.len() > room {
                todo.truncate(room);
                self.report.stopped_early = true;
            }
        }
        // A batch at a time: each instance journalled, its secret stored and read back on
        // `--workers` threads, then the rows swapped one by one on this thread.
        let workers = self.opts.workers.max(1);
        for batch in todo.chunks(workers * 8) {
            let mut ready: Vec<(NovaEntry, Arc<Barbican>)> = Vec::new();
            for (cell, instance) in batch {
                let Some(project) = instance.project_id.clone() else { continue };
                let barbican = match self.in_project(&project)? {
                    Target::Job(t) => t.barbican,
                    _ => {
                        self.report.nova.blocked += 1;
                        continue;
                    }
                };
                let tag: u32 = rand::random();
                let entry = NovaEntry {
                    instance: instance.uuid.clone(),
                    cell: cell.clone(),
                    project,
                    name: format!("keymigrate-nova-{}-{tag:08x}", instance.uuid),
                    secret: None,
                };
                log::info!(target: LOG, "Migrating instance {} ephemeral encryption key to Barbican", entry.instance);
                journal.write_entry(&entry)?;
                fault::point("nova-journal");
                ready.push((entry, barbican));
            }
            let results = store_all(&ready, key, workers);
            let mut unusable = None;
            for ((mut entry, barbican), result) in ready.into_iter().zip(results) {
                match result {
                    Err(f) => {
                        if !f.maybe_created {
                            journal.finish_entry(&entry.instance)?;
                        }
                        // Barbican's certificate refused, or no TLS there: no instance can
                        // succeed; the run stops once this batch's entries are settled.
                        if let ApiError::Unusable(m) = &f.error {
                            unusable = Some(m.clone());
                            continue;
                        }
                        // Refused in the project (another run revoked the role this run relied
                        // on, say): the project is opened again for the instances after this.
                        if matches!(f.error, ApiError::Forbidden(_) | ApiError::Fatal(_)) {
                            if let Some(p) = self.projects.as_mut() {
                                p.reopen(&entry.project, &barbican);
                            }
                        }
                        self.instance_failed(&entry.instance, &f.error.to_string())?;
                    }
                    Ok((stored, verdict)) => {
                        self.report.secrets_created += 1;
                        entry.secret = Some(stored.id.clone());
                        journal.write_entry(&entry)?;
                        fault::point("nova-recorded");
                        match verdict {
                            ReadBack::Holds => {
                                fault::point("nova-verified");
                                self.swap_instance(&mut run, &barbican, &entry, &stored.id, stored.maybe_orphaned)?;
                            }
                            ReadBack::Other(m) => {
                                self.drop_instance_secret(journal, &barbican, &entry, &stored.id)?;
                                self.instance_failed(&entry.instance, &m)?;
                            }
                            // Unknown: the entry stays; the next run reads it back again.
                            ReadBack::Failed(m) => self.instance_failed(&entry.instance, &m)?,
                        }
                    }
                }
                self.budget(self.report.nova.failed, "instance(s)")?;
            }
            if let Some(m) = unusable {
                return Err(Error::Service(m));
            }
        }
        Ok(())
    }

    /// From a recorded secret to a swapped row: read back, compare-and-swap, look again when
    /// the swap changed nothing.
    fn finish_instance(&mut self, run: &mut Run<'_>, barbican: &Barbican, entry: &NovaEntry, secret: &str, sweep: bool) -> Result<()> {
        match read_back(barbican, secret, run.key) {
            ReadBack::Holds => {}
            ReadBack::Other(m) => {
                self.drop_instance_secret(run.journal, barbican, entry, secret)?;
                return self.instance_failed(&entry.instance, &m);
            }
            ReadBack::Failed(m) => return self.instance_failed(&entry.instance, &m),
        }
        fault::point("nova-verified");
        self.swap_instance(run, barbican, entry, secret, sweep)
    }

    /// The compare-and-swap of a verified secret into the instance's row; a swap that changes
    /// nothing is looked at again.
    fn swap_instance(&mut self, run: &mut Run<'_>, barbican: &Barbican, entry: &NovaEntry, secret: &str, sweep: bool) -> Result<()> {
        let id = &entry.instance;
        let journal = run.journal;
        let Some(cell) = run.cell(&entry.cell)? else {
            log::warn!(target: LOG, "Leaving instance {id} in the journal: its cell {} is not readable now", entry.cell);
            return Ok(());
        };
        let swapped = cell.swap(id, secret)?;
        fault::point("nova-swapped");
        let now = cell.state(id)?;
        match now {
            Some((Some(k), _)) if k == secret => {
                if swapped {
                    log::info!(target: LOG, "Migrated instance {id} to Barbican key ID {secret}");
                }
                self.report.nova.migrated += 1;
                if sweep {
                    self.sweep_instance(barbican, entry, Some(secret))?;
                }
                journal.finish_entry(id)
            }
            Some((Some(k), Some(task))) if k == crate::cinder::ZERO_KEY_ID && !task.is_empty() => {
                log::info!(target: LOG, "instance {id} started task {task}: leaving it for a later run, deleting secret {secret}");
                self.report.nova.waiting += 1;
                self.drop_instance_secret(journal, barbican, entry, secret)
            }
            _ => {
                log::info!(target: LOG, "instance {id} no longer uses the all-zeros key ID (or is deleted); deleting secret {secret}");
                self.report.lost += 1;
                self.drop_instance_secret(journal, barbican, entry, secret)
            }
        }
    }

    /// Deletes the instance's unused secret and forgets the entry.
    fn drop_instance_secret(&mut self, journal: &NovaJournal, barbican: &Barbican, entry: &NovaEntry, secret: &str) -> Result<()> {
        if barbican.delete(secret).map_err(|e| Error::Service(e.to_string()))? {
            self.report.secrets_deleted += 1;
        }
        self.sweep_instance(barbican, entry, None)?;
        journal.finish_entry(&entry.instance)
    }

    /// Deletes the secrets named for this attempt that the instance does not use (`keep`).
    fn sweep_instance(&mut self, barbican: &Barbican, entry: &NovaEntry, keep: Option<&str>) -> Result<()> {
        for found in barbican.find_by_name(&entry.name).map_err(|e| Error::Service(e.to_string()))? {
            if Some(found.as_str()) == keep {
                continue;
            }
            if barbican.name_of(&found).map_err(|e| Error::Service(e.to_string()))?.as_deref() != Some(entry.name.as_str()) {
                continue;
            }
            log::info!(target: LOG, "Deleting secret {found} left by an interrupted run for instance {}", entry.instance);
            if barbican.delete(&found).map_err(|e| Error::Service(e.to_string()))? {
                self.report.secrets_deleted += 1;
            }
        }
        Ok(())
    }

    /// `Ok(false)`: left for a later run (its project is blocked, or its cell unreadable).
    fn recover_instance(&mut self, run: &mut Run<'_>, entry: &NovaEntry) -> Result<bool> {
        let journal = run.journal;
        let barbican = match self.in_project(&entry.project)? {
            Target::Job(t) => t.barbican,
            _ => {
                log::warn!(target: LOG, "Leaving instance {} in the journal: its project {} is blocked", entry.instance, entry.project);
                return Ok(false);
            }
        };
        log::info!(target: LOG, "Resuming instance {} left by an interrupted run", entry.instance);
        let Some(secret) = entry.secret.clone() else {
            // Killed while storing: nothing names what Barbican may have made.
            self.sweep_instance(&barbican, entry, None)?;
            journal.finish_entry(&entry.instance)?;
            return Ok(true);
        };
        if run.cell(&entry.cell)?.is_none() {
            log::warn!(target: LOG, "Leaving instance {} in the journal: its cell {} is not readable now", entry.instance, entry.cell);
            return Ok(false);
        }
        self.finish_instance(run, &barbican, entry, &secret, true)?;
        Ok(true)
    }

    fn instance_failed(&mut self, id: &str, message: &str) -> Result<()> {
        self.report.nova.failed += 1;
        log::error!(target: LOG, "Error migrating ephemeral encryption key of instance {id}: {message}");
        self.report.last_failure = Some(message.to_string());
        Ok(())
    }
}
