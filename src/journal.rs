//! The state directory: one lock and one journal of pending work per scope.
//!
//! Layout: `<state_dir>/<scope key>.lock` and `<state_dir>/<scope key>/pending/`, all owner-only
//! (0700/0600). An entry exists only while a unit is in flight: written (and synced) before its
//! secret is stored, under the attempt's own secret name, and forgotten once the row points at
//! the secret or the secret is gone. So the journal never grows with the database, and a run
//! killed at any instant leaves enough for the next run to finish or clean up (by the secret's
//! name). It holds IDs and names only, never key material.
//!
//! Group commit: the entries that workers hand in while the last group is being written are
//! written together, one JSON line each, appended to the run's current file
//! (`<run>-<n>.jsonl`) and synced once (`fdatasync`). A file takes the groups of at most
//! [`SEGMENT_UNITS`] units, then the next group starts a new one (created, synced, and its
//! directory synced); a file is deleted once every unit it names is finished and no group will
//! be appended to it, and until then a unit finished is marked so in its file
//! (`{"done":{"table":…,"id":…}}`, not synced), so that the next run's recovery sees only the
//! units in flight. So a unit costs a share of one sync, not a file of its own to create, sync,
//! list in the directory and delete. Entries of the per-unit form (`<table>-<hex id>.json`),
//! written by earlier versions, are still read and finished.
//!
//! Glance images belong to no host: their entries (`migrate --images`) live in
//! `images/pending/<image>.json` under their own lock, `images.lock`, so two runs on one
//! machine never work on images at once, whatever their database scopes.
//!
//! Role grants live beside the units, in `<scope key>/grants/<project>.json`: written (and
//! synced) before the grant is made, removed once it is revoked. A grant the identity held
//! before keymigrate is never written here, so never revoked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::sync::{Condvar, Mutex};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::cinder::Table;
use crate::grants::Grant;
use crate::scope::Scope;
use crate::state;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub table: Table,
    pub id: String,
    /// The deterministic secret name (`keymigrate-<noun>-<id>`).
    pub name: String,
    /// The secret's ID, once Barbican has answered.
    pub secret: Option<String>,
    /// The project the secret is created in (`--secret-owner project`); `None`: Cinder's
    /// service project, with the `[keystone_authtoken]` identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// For a row moved off a secret an earlier run made in Cinder's service project
    /// (`migrate --rehome`): that secret's ID, the key the row holds until the swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// A Glance image in flight: its secret's name, and its ID once Barbican has answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageEntry {
    pub image: String,
    /// The owner project the secret is created in.
    pub project: String,
    pub name: String,
    pub secret: Option<String>,
    /// `--shared-images acl`: the secret's ACL names the member projects' users before the
    /// image is patched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub members_acl: bool,
}

pub struct Journal {
    dir: PathBuf,
    grants: PathBuf,
    /// The group commit of unit entries, and the files that hold unfinished units.
    group: Mutex<Group>,
    written: Condvar,
    /// Names this run's files: `<run>-<n>.jsonl`, `run` the time the journal was opened, so
    /// that files sort in the order they were written across runs.
    run: u128,
    /// The directory held per-unit entries of an earlier version when the journal was opened:
    /// only then does finishing a unit look for one to delete.
    legacy: bool,
    /// Held for the life of the run: the scope's lock.
    _lock: File,
}

/// A unit, as the journal names it.
type UnitKey = (Table, String);

/// A line of a group file: a unit's entry, or the mark that a unit named earlier in the same
/// file is finished (`{"done":{"table":…,"id":…}}`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Line {
    Entry(Entry),
    Done { done: DoneUnit },
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DoneUnit {
    table: Table,
    id: String,
}

/// The entries of a file's units that are not marked finished, in the order they were written.
fn live_entries(lines: Vec<Option<Line>>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in lines.into_iter().flatten() {
        match line {
            Line::Entry(e) => entries.push(e),
            Line::Done { done } => entries.retain(|e| !(e.table == done.table && e.id == done.id)),
        }
    }
    entries
}

/// The units whose entries one file takes before the next group starts a new file: what a run
/// killed at any instant can leave to the next run's recovery per file still open.
pub const SEGMENT_UNITS: usize = 64;

/// The file groups are appended to, while it takes them.
struct Segment {
    path: PathBuf,
    file: File,
    /// Bytes written and synced: a group that fails is cut off here.
    len: u64,
    units: usize,
}

#[derive(Default)]
struct Group {
    /// Entries handed in for the next group.
    waiting: Vec<Entry>,
    /// The number of the group `waiting` goes into.
    next: u64,
    /// Groups numbered below this one are written (or failed).
    written_below: u64,
    /// A group is being written.
    writing: bool,
    /// Why a group failed, by number.
    failed: HashMap<u64, String>,
    /// Each file of this journal and the units it names that are not finished yet.
    files: BTreeMap<PathBuf, HashSet<UnitKey>>,
    /// The file the next group is appended to (`None` while a group is being written, or when
    /// the next group starts a new file).
    current: Option<Segment>,
    /// That file's path, also while a group is being appended to it: never deleted meanwhile.
    current_path: Option<PathBuf>,
    /// Units finished while a group was being appended to their file: marked once it is back.
    unmarked: Vec<(PathBuf, UnitKey)>,
}

impl Group {
    /// Marks a unit finished in a file that names other units not finished yet, so that the
    /// next run does not take it for one in flight. Not synced, like a finished file's
    /// removal: a mark a crash of the machine undoes leaves a unit whose row already points at
    /// its secret, which the next run's recovery only confirms. Never called while a group is
    /// being appended to that file.
    fn mark_done(&mut self, path: &Path, unit: &UnitKey) {
        let Ok(mut line) = serde_json::to_vec(&Line::Done { done: DoneUnit { table: unit.0, id: unit.1.clone() } }) else { return };
        line.push(b'\n');
        let written = match self.current.as_mut().filter(|c| c.path == path) {
            Some(segment) => segment.file.write_all(&line).map(|()| segment.len += line.len() as u64),
            None => fs::OpenOptions::new().append(true).open(path).and_then(|mut f| f.write_all(&line)),
        };
        if let Err(e) = written {
            log::debug!("could not mark {} {} finished in {}: {e}", unit.0.noun(), unit.1, path.display());
        }
    }

    /// Deletes a file no group is appended to any more, if every unit it names is finished.
    fn retire_if_done(&mut self, path: &Path) {
        if self.files.get(path).is_some_and(HashSet::is_empty) {
            self.files.remove(path);
            let _ = fs::remove_file(path);
        }
    }
}

impl Drop for Journal {
    /// The run's last file goes if every unit it names is finished.
    fn drop(&mut self) {
        if let Ok(group) = self.group.get_mut() {
            group.current = None;
            if let Some(path) = group.current_path.take() {
                group.retire_if_done(&path);
            }
        }
    }
}

impl Journal {
    /// Creates the state directory if needed and takes the scope's lock, or fails at once with
    /// [`Error::Locked`] when another run holds it.
    pub fn open(state_dir: &Path, scope: &Scope) -> Result<Journal> {
        let fail = |message: String| Error::State { path: state_dir.to_path_buf(), message };
        state::create_private_dir(state_dir).map_err(|e| fail(format!("cannot create: {e}")))?;
        let meta = fs::metadata(state_dir).map_err(|e| fail(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            log::warn!("state directory {} was readable by others; making it private (0700)", state_dir.display());
            fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700)).map_err(|e| fail(e.to_string()))?;
        }
        let key = scope.key();
        let lock_path = state_dir.join(format!("{key}.lock"));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (run keymigrate as the same user every time, e.g. cinder, or fix the ownership of the state directory)"
                } else {
                    ""
                };
                fail(format!("cannot open lock {}: {e}{hint}", lock_path.display()))
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: lock_path }),
            Err(fs::TryLockError::Error(e)) => return Err(fail(format!("cannot lock {}: {e}", lock_path.display()))),
        }
        let dir = state_dir.join(&key).join("pending");
        state::create_private_dir(&dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        let grants = state_dir.join(&key).join("grants");
        state::create_private_dir(&grants).map_err(|e| fail(format!("cannot create {}: {e}", grants.display())))?;
        let about = state_dir.join(&key).join("scope.txt");
        if !about.exists() {
            let _ = write_synced(&about, format!("{}\n", scope.describe()).as_bytes());
        }
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let legacy = fs::read_dir(&dir)
            .map_err(|e| fail(format!("cannot read {}: {e}", dir.display())))?
            .any(|item| item.is_ok_and(|i| i.path().extension().is_some_and(|x| x == "json")));
        let journal = Journal { dir, grants, group: Mutex::new(Group::default()), written: Condvar::new(), run, legacy, _lock: lock };
        // The files an earlier run left: deleted once their units are finished.
        let mut files = BTreeMap::new();
        for (path, lines) in journal.group_files()? {
            let units: HashSet<UnitKey> = live_entries(lines).into_iter().map(|e| (e.table, e.id)).collect();
            if units.is_empty() {
                let _ = fs::remove_file(&path);
            } else {
                files.insert(path, units);
            }
        }
        journal.lock_group()?.files = files;
        Ok(journal)
    }

    /// Entries left by an earlier run that did not finish them: the latest entry of each unit.
    pub fn pending(&self) -> Result<Vec<Entry>> {
        let mut latest: BTreeMap<UnitKey, Entry> = BTreeMap::new();
        for (path, parsed) in read_json::<Entry>(&self.dir).map_err(|e| self.error(e))? {
            match parsed {
                Ok(entry) => {
                    latest.insert((entry.table, entry.id.clone()), entry);
                }
                // Written to a temporary file and renamed: a torn one was never renamed, and
                // its unit's secret was not stored yet.
                Err(_) => {
                    log::warn!("ignoring unreadable journal entry {}", path.display());
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let files = self.group_files()?;
        let group = self.lock_group()?;
        for (path, lines) in files {
            // Only the units of the file that are not finished yet.
            let Some(unfinished) = group.files.get(&path) else { continue };
            for entry in live_entries(lines) {
                let key = (entry.table, entry.id.clone());
                if unfinished.contains(&key) {
                    latest.insert(key, entry);
                }
            }
        }
        Ok(latest.into_values().collect())
    }

    /// Writes an entry and makes it durable before returning, together with the entries other
    /// threads hand in meanwhile (one file, one sync for them all).
    pub fn write(&self, entry: &Entry) -> Result<()> {
        let mut group = self.lock_group()?;
        let mine = group.next;
        group.waiting.push(entry.clone());
        loop {
            if group.written_below > mine {
                return match group.failed.get(&mine) {
                    Some(why) => Err(self.error(std::io::Error::other(why.clone()))),
                    None => Ok(()),
                };
            }
            if !group.writing {
                group.writing = true;
                let number = group.next;
                group.next += 1;
                let entries = std::mem::take(&mut group.waiting);
                let current = group.current.take().filter(|c| c.units < SEGMENT_UNITS);
                drop(group);
                let new_path = || self.dir.join(format!("{:039}-{number:012}.jsonl", self.run));
                let result = append_group(&self.dir, current, new_path, &entries);
                group = self.lock_group()?;
                group.writing = false;
                group.written_below = number + 1;
                match result {
                    Ok(segment) => {
                        let path = segment.path.clone();
                        group.files.entry(path.clone()).or_default().extend(entries.into_iter().map(|e| (e.table, e.id)));
                        if let Some(old) = group.current_path.replace(path).filter(|old| *old != segment.path) {
                            group.retire_if_done(&old);
                        }
                        group.current = Some(segment);
                    }
                    Err(e) => {
                        // The next group starts a new file; this one keeps what it held.
                        if let Some(old) = group.current_path.take() {
                            group.retire_if_done(&old);
                        }
                        group.failed.insert(number, e.to_string());
                    }
                }
                for (path, unit) in std::mem::take(&mut group.unmarked) {
                    group.mark_done(&path, &unit);
                }
                self.written.notify_all();
                continue;
            }
            group = self.written.wait(group).map_err(|_| Error::Internal("journal lock poisoned".into()))?;
        }
    }

    /// The group files of this journal, oldest first, each with its lines (`None`: unreadable,
    /// the tail of a write a crash cut short, whose units' secrets were not stored yet).
    fn group_files(&self) -> Result<Vec<(PathBuf, Vec<Option<Line>>)>> {
        let mut paths = Vec::new();
        for item in fs::read_dir(&self.dir).map_err(|e| self.error(e))? {
            let path = item.map_err(|e| self.error(e))?.path();
            if path.extension().is_some_and(|x| x == "jsonl") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let text = match fs::read(&path) {
                Ok(t) => t,
                // Finished and deleted by this run meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.error(e)),
            };
            let lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).ok()).collect();
            files.push((path, lines));
        }
        Ok(files)
    }

    fn lock_group(&self) -> Result<std::sync::MutexGuard<'_, Group>> {
        self.group.lock().map_err(|_| Error::Internal("journal lock poisoned".into()))
    }

    /// Removes a finished entry. Not synced: an entry whose removal a crash undoes is one whose
    /// row already points at its secret, and the next run's recovery only confirms that (the
    /// same as a run killed right after its commit), so the sync would cost every unit a
    /// directory flush for nothing.
    pub fn finish(&self, table: Table, id: &str) -> Result<()> {
        if self.legacy {
            match fs::remove_file(self.path(table, id)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        let mut group = self.lock_group()?;
        let key = (table, id.to_string());
        let mut done = Vec::new();
        let mut marks = Vec::new();
        for (path, units) in &mut group.files {
            if units.remove(&key) {
                if units.is_empty() {
                    done.push(path.clone());
                } else {
                    marks.push(path.clone());
                }
            }
        }
        for path in marks {
            if group.writing && group.current_path.as_ref() == Some(&path) {
                group.unmarked.push((path, key.clone()));
            } else {
                group.mark_done(&path, &key);
            }
        }
        for path in done {
            if group.current_path.as_ref() == Some(&path) {
                // Groups go on being appended to it, unless none is being written now: then
                // the next group starts a new file, and this one goes with its last unit.
                if group.writing {
                    continue;
                }
                group.current = None;
                group.current_path = None;
            }
            group.files.remove(&path);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(())
    }

    /// Records a role grant before it is made, durably: a run killed after the `PUT` leaves
    /// the next run what to revoke.
    pub fn write_grant(&self, grant: &Grant) -> Result<()> {
        write_json(&self.grants, &self.grant_path(&grant.project), grant).map_err(|e| self.error(e))
    }

    /// Grants made (or about to be made) and not yet revoked.
    pub fn grants(&self) -> Result<Vec<Grant>> {
        let mut grants = Vec::new();
        for (path, parsed) in read_json::<Grant>(&self.grants).map_err(|e| self.error(e))? {
            match parsed {
                Ok(grant) => grants.push(grant),
                // Written to a temporary file and renamed: a torn entry is not one.
                Err(e) => return Err(self.error(std::io::Error::other(format!("{}: {e}", path.display())))),
            }
        }
        grants.sort_by(|a, b| a.project.cmp(&b.project));
        Ok(grants)
    }

    /// Forgets a grant once it is revoked (or was never made). Synced: a forgotten grant
    /// that a crash brings back would only be revoked once more, but one that stays forgotten
    /// must really be gone.
    pub fn forget_grant(&self, grant: &Grant) -> Result<()> {
        match fs::remove_file(self.grant_path(&grant.project)) {
            Ok(()) => sync_dir(&self.grants).map_err(|e| self.error(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn grant_path(&self, project: &str) -> PathBuf {
        self.grants.join(format!("{}.json", hex::encode(project)))
    }

    fn path(&self, table: Table, id: &str) -> PathBuf {
        // Row IDs are hex-encoded: any byte is safe in a file name that way.
        self.dir.join(format!("{}-{}.json", table.name(), hex::encode(id)))
    }

    fn error(&self, e: std::io::Error) -> Error {
        Error::State { path: self.dir.clone(), message: e.to_string() }
    }
}

/// An entry of a [`SideJournal`]: what it is called and which item it is for.
pub trait SideEntry: serde::Serialize + serde::de::DeserializeOwned {
    /// The journal's directory under the state directory, and its lock's name.
    const KIND: &'static str;
    /// The item's ID: one entry per item.
    fn item(&self) -> &str;
}

impl SideEntry for ImageEntry {
    const KIND: &'static str = "images";
    fn item(&self) -> &str {
        &self.image
    }
}

/// A Nova instance in flight (`migrate --nova`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NovaEntry {
    pub instance: String,
    /// The cell mapping's UUID: where the instance's row is.
    pub cell: String,
    /// The instance's project, where the secret is created.
    pub project: String,
    pub name: String,
    pub secret: Option<String>,
}

impl SideEntry for NovaEntry {
    const KIND: &'static str = "nova";
    fn item(&self) -> &str {
        &self.instance
    }
}

/// The journal of items that belong to no Cinder host (Glance images, Nova instances), one
/// per kind, each with its own lock (`<kind>.lock` in the state directory): two runs on one
/// machine never work on the same kind at once.
pub struct SideJournal<E> {
    dir: PathBuf,
    _lock: File,
    _entries: std::marker::PhantomData<E>,
}

pub type ImageJournal = SideJournal<ImageEntry>;
pub type NovaJournal = SideJournal<NovaEntry>;

impl<E: SideEntry> SideJournal<E> {
    /// Takes the kind's lock, or fails at once with [`Error::Locked`].
    pub fn open(state_dir: &Path) -> Result<SideJournal<E>> {
        let fail = |message: String| Error::State { path: state_dir.to_path_buf(), message };
        state::create_private_dir(state_dir).map_err(|e| fail(format!("cannot create: {e}")))?;
        let lock_path = state_dir.join(format!("{}.lock", E::KIND));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| fail(format!("cannot open lock {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: lock_path }),
            Err(fs::TryLockError::Error(e)) => return Err(fail(format!("cannot lock {}: {e}", lock_path.display()))),
        }
        let dir = state_dir.join(E::KIND).join("pending");
        state::create_private_dir(&dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        Ok(SideJournal { dir, _lock: lock, _entries: std::marker::PhantomData })
    }

    /// Writes (or replaces) an item's entry and makes it durable before returning.
    pub fn write_entry(&self, entry: &E) -> Result<()> {
        write_json(&self.dir, &self.entry_path(entry.item()), entry).map_err(|e| self.error(e))
    }

    /// Entries left by an earlier run, by item ID.
    pub fn pending_entries(&self) -> Result<Vec<E>> {
        let mut entries = Vec::new();
        for (path, parsed) in read_json::<E>(&self.dir).map_err(|e| self.error(e))? {
            match parsed {
                Ok(entry) => entries.push(entry),
                Err(e) => return Err(self.error(std::io::Error::other(format!("{}: {e}", path.display())))),
            }
        }
        entries.sort_by(|a, b| a.item().cmp(b.item()));
        Ok(entries)
    }

    /// Removes a finished item's entry (not synced, as for units).
    pub fn finish_entry(&self, item: &str) -> Result<()> {
        match fs::remove_file(self.entry_path(item)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn entry_path(&self, item: &str) -> PathBuf {
        self.dir.join(format!("{}.json", hex::encode(item)))
    }

    fn error(&self, e: std::io::Error) -> Error {
        Error::State { path: self.dir.clone(), message: e.to_string() }
    }
}

/// Writes `value` as JSON at `path` in `dir`, durably: a temporary file written and synced,
/// renamed over `path`, then the directory synced.
fn write_json<T: serde::Serialize>(dir: &Path, path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    write_synced(&tmp, &bytes)?;
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Writes `entries` as JSON lines, durably: appended to `current` and synced (`fdatasync`,
/// which also makes the file's new length durable), or, with no current file, into a new file
/// (`new_path()`), synced, then its directory. A group that fails is cut off a file it was
/// appended to, as far as that still works (a torn line is ignored when read, and no group is
/// appended after it), or its new file is removed.
fn append_group(dir: &Path, current: Option<Segment>, new_path: impl FnOnce() -> PathBuf, entries: &[Entry]) -> std::io::Result<Segment> {
    let mut bytes = Vec::with_capacity(entries.len() * 160);
    for entry in entries {
        serde_json::to_writer(&mut bytes, entry).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
    }
    let added = bytes.len() as u64;
    match current {
        Some(mut segment) => match segment.file.write_all(&bytes).and_then(|()| segment.file.sync_data()) {
            Ok(()) => {
                segment.len += added;
                segment.units += entries.len();
                Ok(segment)
            }
            Err(e) => {
                let _ = segment.file.set_len(segment.len).and_then(|()| segment.file.sync_data());
                Err(e)
            }
        },
        None => {
            let path = new_path();
            let written = fs::OpenOptions::new().create_new(true).append(true).mode(0o600).open(&path).and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()?;
                sync_dir(dir)?;
                Ok(file)
            });
            match written {
                Ok(file) => Ok(Segment { path, file, len: added, units: entries.len() }),
                Err(e) => {
                    let _ = fs::remove_file(&path);
                    Err(e)
                }
            }
        }
    }
}

/// Every `*.json` file of `dir`, parsed (or why it could not be), with its path: each caller
/// decides what an unreadable one means.
fn read_json<T: serde::de::DeserializeOwned>(dir: &Path) -> std::io::Result<Vec<(PathBuf, serde_json::Result<T>)>> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir)? {
        let path = item?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let bytes = fs::read(&path)?;
        out.push((path, serde_json::from_slice(&bytes)));
    }
    Ok(out)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::all_hosts()
    }

    #[test]
    fn entries_round_trip_and_files_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let j = Journal::open(&state, &scope()).expect("open");
        let e = Entry { table: Table::Volumes, id: "v/../1".into(), name: "keymigrate-volume-v".into(), secret: None, project: None, from: None };
        j.write(&e).expect("write");
        let e2 = Entry { secret: Some("s".into()), ..e.clone() };
        j.write(&e2).expect("rewrite");
        assert_eq!(j.pending().expect("pending"), vec![e2]);
        assert_eq!(fs::metadata(&state).expect("meta").permissions().mode() & 0o777, 0o700);
        for f in fs::read_dir(state.join(scope().key()).join("pending")).expect("dir") {
            let m = f.expect("entry").metadata().expect("meta");
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        j.finish(Table::Volumes, "v/../1").expect("finish");
        assert!(j.pending().expect("pending").is_empty());
    }

    fn unit(n: usize) -> Entry {
        Entry { table: Table::Volumes, id: format!("v{n}"), name: format!("keymigrate-volume-v{n}-0"), secret: None, project: None, from: None }
    }

    fn files(state: &Path) -> Vec<PathBuf> {
        let mut f: Vec<PathBuf> = fs::read_dir(state.join(scope().key()).join("pending")).expect("dir").map(|e| e.expect("entry").path()).collect();
        f.sort();
        f
    }

    #[test]
    fn entries_handed_in_together_share_one_file_and_it_goes_with_its_last_unit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), &scope()).expect("open");
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for n in 0..8 {
                let (j, barrier) = (&j, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    j.write(&unit(n)).expect("write");
                });
            }
        });
        let written = files(dir.path());
        assert!(!written.is_empty() && written.len() < 8, "8 entries written at once took {} files", written.len());
        let mut ids: Vec<String> = j.pending().expect("pending").into_iter().map(|e| e.id).collect();
        ids.sort();
        assert_eq!(ids, (0..8).map(|n| format!("v{n}")).collect::<Vec<_>>());
        for n in 0..7 {
            j.finish(Table::Volumes, &format!("v{n}")).expect("finish");
        }
        assert_eq!(j.pending().expect("pending"), vec![unit(7)]);
        j.finish(Table::Volumes, "v7").expect("finish");
        assert_eq!(files(dir.path()), Vec::<PathBuf>::new(), "a file outlived its units");
    }

    #[test]
    fn groups_append_to_one_file_until_it_holds_its_units_and_each_file_goes_with_its_last_unit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), &scope()).expect("open");
        // One unit kept in flight, as with several workers: the file is never empty.
        j.write(&unit(0)).expect("write");
        for n in 1..SEGMENT_UNITS {
            j.write(&unit(n)).expect("write");
            j.finish(Table::Volumes, &format!("v{n}")).expect("finish");
        }
        assert_eq!(files(dir.path()).len(), 1, "{SEGMENT_UNITS} groups one after another took more than one file");
        // The file also marks the units finished: the next run finds only unit 0 in flight.
        drop(j);
        let j = Journal::open(dir.path(), &scope()).expect("reopen");
        assert_eq!(j.pending().expect("pending"), vec![unit(0)]);
        assert_eq!(files(dir.path()).len(), 1);
        // The file is full: the next group starts another, and the first goes with unit 0.
        j.write(&unit(SEGMENT_UNITS)).expect("write");
        let two = files(dir.path());
        assert_eq!(two.len(), 2);
        j.finish(Table::Volumes, "v0").expect("finish");
        assert_eq!(files(dir.path()), two[1..].to_vec());
        assert_eq!(j.pending().expect("pending"), vec![unit(SEGMENT_UNITS)]);
        // The run ends with a unit unfinished (as a killed one would): its file is left to the
        // next run, which goes on in a file of its own.
        drop(j);
        assert_eq!(files(dir.path()), two[1..].to_vec());
        let j = Journal::open(dir.path(), &scope()).expect("reopen");
        assert_eq!(j.pending().expect("pending"), vec![unit(SEGMENT_UNITS)]);
        j.write(&unit(1000)).expect("write");
        assert_eq!(files(dir.path()).len(), 2);
        j.finish(Table::Volumes, &format!("v{SEGMENT_UNITS}")).expect("finish");
        assert_eq!(files(dir.path()).len(), 1, "the earlier run's file outlived its unit");
        // A run's file whose units are all finished goes at the run's end.
        j.write(&unit(1001)).expect("write");
        j.finish(Table::Volumes, "v1001").expect("finish");
        assert_eq!(files(dir.path()).len(), 1, "v1000 is still in flight");
        j.finish(Table::Volumes, "v1000").expect("finish");
        drop(j);
        assert_eq!(files(dir.path()), Vec::<PathBuf>::new());
    }

    #[test]
    fn an_earlier_runs_file_is_read_its_torn_tail_ignored_and_it_goes_once_finished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), &scope()).expect("open");
        j.write(&unit(1)).expect("write");
        j.write(&unit(2)).expect("write");
        drop(j);
        // A crash cut the last write short: a torn line after the whole ones.
        let last = files(dir.path()).pop().expect("a file");
        let mut text = fs::read(&last).expect("read");
        text.extend_from_slice(br#"{"table":"volumes","id":"v3","na"#);
        fs::write(&last, text).expect("write");
        let j = Journal::open(dir.path(), &scope()).expect("reopen");
        assert_eq!(j.pending().expect("pending"), vec![unit(1), unit(2)]);
        // The unit's latest entry wins, across files.
        let again = Entry { name: "keymigrate-volume-v1-1".into(), ..unit(1) };
        j.write(&again).expect("write");
        assert_eq!(j.pending().expect("pending"), vec![again, unit(2)]);
        j.finish(Table::Volumes, "v1").expect("finish");
        j.finish(Table::Volumes, "v2").expect("finish");
        assert_eq!(files(dir.path()), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_group_that_cannot_be_written_fails_every_writer_in_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), &scope()).expect("open");
        let pending = dir.path().join(scope().key()).join("pending");
        fs::set_permissions(&pending, fs::Permissions::from_mode(0o500)).expect("chmod");
        let refused = j.write(&unit(1));
        fs::set_permissions(&pending, fs::Permissions::from_mode(0o700)).expect("chmod");
        // Root writes anyway: only check the error when there was one.
        let mut expected = Vec::new();
        match refused {
            Err(e) => {
                assert!(matches!(e, Error::State { .. }), "{e}");
                assert!(j.pending().expect("pending").is_empty());
            }
            Ok(()) => expected.push(unit(1)),
        }
        j.write(&unit(2)).expect("the next group is written");
        expected.push(unit(2));
        assert_eq!(j.pending().expect("pending"), expected);
    }

    #[test]
    fn grants_are_recorded_durably_and_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), &scope()).expect("open");
        let g = Grant { project: "p/../1".into(), user: "u".into(), role: "r".into() };
        j.write_grant(&g).expect("write");
        assert_eq!(j.grants().expect("grants"), vec![g.clone()]);
        drop(j);
        let j = Journal::open(dir.path(), &scope()).expect("reopen");
        assert_eq!(j.grants().expect("grants"), vec![g.clone()], "a grant survives the run");
        j.forget_grant(&g).expect("forget");
        j.forget_grant(&g).expect("forgetting twice is fine");
        assert!(j.grants().expect("grants").is_empty());
    }

    #[test]
    fn a_second_run_on_the_same_scope_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Journal::open(dir.path(), &scope()).expect("open");
        let second = Journal::open(dir.path(), &scope());
        assert!(matches!(second, Err(Error::Locked { .. })));
    }
}
