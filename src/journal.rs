//! The state directory: one lock and one journal of pending work per scope.
//!
//! Layout: `<state_dir>/<scope key>.lock` and `<state_dir>/<scope key>/pending/<entry>.json`, all
//! owner-only (0700/0600). An entry exists only while a unit is in flight: written (and synced)
//! before a secret is stored, updated with the secret's ID as soon as Barbican answers, removed
//! once the row points at the secret or the secret is gone. So the journal never grows with the
//! database, and a run killed at any instant leaves enough for the next run to finish or clean
//! up. It holds IDs and names only, never key material.
//!
//! Glance images belong to no host: their entries (`migrate --images`) live in
//! `images/pending/<image>.json` under their own lock, `images.lock`, so two runs on one
//! machine never work on images at once, whatever their database scopes.
//!
//! Role grants live beside the units, in `<scope key>/grants/<project>.json`: written (and
//! synced) before the grant is made, removed once it is revoked. A grant the identity held
//! before keymigrate is never written here, so never revoked.

use std::fs::{self, File};
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
    /// Held for the life of the run: the scope's lock.
    _lock: File,
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
        Ok(Journal { dir, grants, _lock: lock })
    }

    /// Entries left by an earlier run that did not finish them.
    pub fn pending(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for (path, parsed) in read_json::<Entry>(&self.dir).map_err(|e| self.error(e))? {
            match parsed {
                Ok(entry) => entries.push(entry),
                // A torn write can only be an entry written before its secret was stored; the
                // name-based sweep of that unit finds whatever the write was about.
                Err(_) => {
                    log::warn!("ignoring unreadable journal entry {}", path.display());
                    let _ = fs::remove_file(&path);
                }
            }
        }
        entries.sort_by(|a, b| (a.table, &a.id).cmp(&(b.table, &b.id)));
        Ok(entries)
    }

    /// Writes (or replaces) an entry and makes it durable before returning.
    pub fn write(&self, entry: &Entry) -> Result<()> {
        write_json(&self.dir, &self.path(entry.table, &entry.id), entry).map_err(|e| self.error(e))
    }

    /// Removes a finished entry. Not synced: an entry whose removal a crash undoes is one whose
    /// row already points at its secret, and the next run's recovery only confirms that (the
    /// same as a run killed right after its commit), so the sync would cost every unit a
    /// directory flush for nothing.
    pub fn finish(&self, table: Table, id: &str) -> Result<()> {
        match fs::remove_file(self.path(table, id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(e)),
        }
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
