//! The only writes keymigrate makes to Cinder's database: compare-and-swap of the all-zeros key
//! ID to a verified Barbican key ID, one transaction per unit, bumping `updated_at` as Cinder
//! does. A row that no longer holds the all-zeros ID (another run, Cinder's own migrator, a
//! deleted volume) is never written.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use super::schema::{backups, snapshots, volume_glance_metadata as vgm, volumes};
use super::{bytewise, exact, Backend, Db, ConstSql};
use crate::cinder::{is_owner, Table, GLANCE_KEY, ZERO_KEY_ID};
use crate::error::{Error, Result};

/// Rows rewritten by one unit's transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Swapped {
    pub volumes: usize,
    pub snapshots: usize,
    pub backups: usize,
    pub volume_glance_metadata: usize,
}

/// Points the live all-zeros glance rows matching `$filter` at `$new_id`; their count. (A
/// macro: each filter is a different diesel type.)
macro_rules! rewrite_glance {
    ($conn:expr, $backend:expr, $filter:expr, $new_id:expr, $now:expr) => {
        diesel::update(zero_glance($backend).filter($filter))
            .set((vgm::value.eq($new_id), vgm::updated_at.eq($now)))
            .execute($conn)
    };
}

impl Swapped {
    pub fn add(&mut self, other: &Swapped) {
        self.volumes += other.volumes;
        self.snapshots += other.snapshots;
        self.backups += other.backups;
        self.volume_glance_metadata += other.volume_glance_metadata;
    }

    pub fn total(&self) -> usize {
        self.volumes + self.snapshots + self.backups + self.volume_glance_metadata
    }
}

impl std::fmt::Display for Swapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.volumes, "volume"),
            (self.snapshots, "snapshot"),
            (self.volume_glance_metadata, "glance metadata row"),
            (self.backups, "backup"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}{}", if n == 1 { "" } else { "s" }));
            }
        }
        if parts.is_empty() {
            return f.write_str("no rows");
        }
        f.write_str(&parts.join(", "))
    }
}

/// A row as it is now: its key ID, whether it is deleted, its owner and its project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowState {
    pub key: Option<String>,
    pub deleted: bool,
    pub owner: Option<String>,
    /// The project its secret belongs to under `--secret-owner project`: the row's own; a
    /// glance-metadata row's is its snapshot's when it belongs to one (NULL when that snapshot
    /// is gone), else its volume's.
    pub project: Option<String>,
}

/// Which of a volume's snapshots (and their glance-metadata rows) take the volume's new secret
/// in its transaction: those that can read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share<'a> {
    /// `--secret-owner service`: live all-zeros snapshots whose `user_id` is one of these (each
    /// is on the secret's ACL); the glance rows of all the volume's snapshots.
    Readers(&'a [String]),
    /// `--secret-owner project`: only snapshots whose `project_id` is this, byte for byte (the
    /// secret's project), and only their glance rows besides the volume's own.
    Project(&'a str),
}

impl RowState {
    pub fn is_zero_and_live(&self) -> bool {
        !self.deleted && self.key.as_deref() == Some(ZERO_KEY_ID)
    }
}

/// The unit's primary row was not on the all-zeros key any more: nothing was written.
#[derive(Debug)]
pub struct Lost;

type Now = chrono::NaiveDateTime;

impl Db {
    /// Rewrites a unit's rows from the all-zeros ID to `new_id` in one transaction.
    /// For a volume: the volume, its live all-zeros snapshots that `share` admits, and the
    /// glance-metadata rows of the volume and of its snapshots (under [`Share::Project`], only
    /// of those in the project). For a snapshot: it and its glance-metadata rows. Backups and
    /// glance-metadata rows: the row alone.
    pub fn swap(&mut self, table: Table, id: &str, new_id: &str, share: Share<'_>) -> Result<Result<Swapped, Lost>> {
        let mut one = self.swap_group(&[Swap { table, id, new_id, share }])?;
        one.pop().ok_or_else(|| Error::Internal("a swap without an outcome".into()))
    }

    /// Several units' compare-and-swaps in one transaction, one commit: each still conditional
    /// on its own rows, in a savepoint of its own, so a unit whose row has moved on is rolled
    /// back alone ([`Lost`]) and the others commit. A database error rolls back them all.
    pub fn swap_group(&mut self, swaps: &[Swap<'_>]) -> Result<Vec<Result<Swapped, Lost>>> {
        let now = chrono::Utc::now().naive_utc();
        let backend = self.backend;
        let mut failed_unit = "";
        let result = self.conn.transaction::<_, diesel::result::Error, _>(|conn| {
            let mut outcomes = Vec::with_capacity(swaps.len());
            for w in swaps {
                failed_unit = w.id;
                outcomes.push(match conn.transaction(|conn| swap_one(conn, backend, w, now)) {
                    Ok(s) => Ok(s),
                    Err(diesel::result::Error::RollbackTransaction | diesel::result::Error::NotFound) => Err(Lost),
                    Err(e) => return Err(e),
                });
            }
            Ok(outcomes)
        });
        result.map_err(|e| {
            let table = swaps.iter().find(|w| w.id == failed_unit).map_or("row", |w| w.table.noun());
            self.error(&format!("rewriting {table} {failed_unit}"), e)
        })
    }

    /// `--rehome`: moves one live row from the secret `old` to `new_id`, only if it still holds
    /// `old` byte for byte. The row alone: rows sharing the old secret are units of their own.
    pub fn reswap(&mut self, table: Table, id: &str, old: &str, new_id: &str) -> Result<Result<Swapped, Lost>> {
        let now = chrono::Utc::now().naive_utc();
        let backend = self.backend;
        let conn = &mut self.conn;
        let n = match table {
            Table::Volumes => diesel::update(
                volumes::table
                    .filter(volumes::id.eq(id))
                    .filter(volumes::deleted.eq(false))
                    .filter(holds(backend, "volumes.encryption_key_id", old)),
            )
            .set((volumes::encryption_key_id.eq(new_id), volumes::updated_at.eq(now)))
            .execute(conn),
            Table::Snapshots => diesel::update(
                snapshots::table
                    .filter(snapshots::id.eq(id))
                    .filter(snapshots::deleted.eq(false))
                    .filter(holds(backend, "snapshots.encryption_key_id", old)),
            )
            .set((snapshots::encryption_key_id.eq(new_id), snapshots::updated_at.eq(now)))
            .execute(conn),
            Table::Backups => diesel::update(
                backups::table
                    .filter(backups::id.eq(id))
                    .filter(backups::deleted.eq(false))
                    .filter(holds(backend, "backups.encryption_key_id", old)),
            )
            .set((backups::encryption_key_id.eq(new_id), backups::updated_at.eq(now)))
            .execute(conn),
            Table::VolumeGlanceMetadata => {
                let Ok(gid) = id.parse::<i32>() else { return Ok(Err(Lost)) };
                diesel::update(
                    vgm::table
                        .filter(vgm::id.eq(gid))
                        .filter(vgm::deleted.eq(false))
                        .filter(ConstSql::<Bool>::new(exact(backend, "volume_glance_metadata.key", "=", GLANCE_KEY)))
                        .filter(holds(backend, "volume_glance_metadata.value", old)),
                )
                .set((vgm::value.eq(new_id), vgm::updated_at.eq(now)))
                .execute(conn)
            }
        };
        let n = n.map_err(|e| self.error(&format!("moving {} {id} to a new secret", table.noun()), e))?;
        if n != 1 {
            return Ok(Err(Lost));
        }
        let mut rows = Swapped::default();
        match table {
            Table::Volumes => rows.volumes = 1,
            Table::Snapshots => rows.snapshots = 1,
            Table::Backups => rows.backups = 1,
            Table::VolumeGlanceMetadata => rows.volume_glance_metadata = 1,
        }
        Ok(Ok(rows))
    }

    /// Rollback: puts the all-zeros ID back on one row, only if it still points at `secret`.
    /// Returns whether the row was rewritten.
    pub fn unswap(&mut self, table: Table, id: &str, secret: &str) -> Result<bool> {
        let now = chrono::Utc::now().naive_utc();
        let backend = self.backend;
        let conn = &mut self.conn;
        let n = match table {
            Table::Volumes => diesel::update(
                volumes::table
                    .filter(volumes::id.eq(id))
                    .filter(holds(backend, "volumes.encryption_key_id", secret)),
            )
            .set((volumes::encryption_key_id.eq(ZERO_KEY_ID), volumes::updated_at.eq(now)))
            .execute(conn),
            Table::Snapshots => diesel::update(
                snapshots::table
                    .filter(snapshots::id.eq(id))
                    .filter(holds(backend, "snapshots.encryption_key_id", secret)),
            )
            .set((snapshots::encryption_key_id.eq(ZERO_KEY_ID), snapshots::updated_at.eq(now)))
            .execute(conn),
            Table::Backups => diesel::update(
                backups::table
                    .filter(backups::id.eq(id))
                    .filter(holds(backend, "backups.encryption_key_id", secret)),
            )
            .set((backups::encryption_key_id.eq(ZERO_KEY_ID), backups::updated_at.eq(now)))
            .execute(conn),
            Table::VolumeGlanceMetadata => {
                let Ok(gid) = id.parse::<i32>() else { return Ok(false) };
                diesel::update(
                    vgm::table
                        .filter(vgm::id.eq(gid))
                        .filter(ConstSql::<Bool>::new(exact(backend, "volume_glance_metadata.key", "=", GLANCE_KEY)))
                        .filter(holds(backend, "volume_glance_metadata.value", secret)),
                )
                .set((vgm::value.eq(ZERO_KEY_ID), vgm::updated_at.eq(now)))
                .execute(conn)
            }
        };
        n.map(|n| n == 1).map_err(|e| self.error(&format!("rolling back {} {id}", table.noun()), e))
    }

    /// The row's current state, or `None` when it does not exist.
    pub fn row_state(&mut self, table: Table, id: &str) -> Result<Option<RowState>> {
        type R = (Option<String>, Option<bool>, Option<String>, Option<String>);
        let conn = &mut self.conn;
        let r: QueryResult<Option<R>> = match table {
            Table::Volumes => volumes::table
                .select((volumes::encryption_key_id, volumes::deleted, volumes::user_id, volumes::project_id))
                .filter(volumes::id.eq(id))
                .first::<R>(conn)
                .optional(),
            Table::Snapshots => snapshots::table
                .select((snapshots::encryption_key_id, snapshots::deleted, snapshots::user_id, snapshots::project_id))
                .filter(snapshots::id.eq(id))
                .first::<R>(conn)
                .optional(),
            Table::Backups => backups::table
                .select((backups::encryption_key_id, backups::deleted, backups::user_id, backups::project_id))
                .filter(backups::id.eq(id))
                .first::<R>(conn)
                .optional(),
            Table::VolumeGlanceMetadata => {
                let Ok(gid) = id.parse::<i32>() else { return Ok(None) };
                type G = (Option<String>, Option<bool>, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);
                let row = vgm::table
                    .left_join(snapshots::table.on(snapshots::id.nullable().eq(vgm::snapshot_id)))
                    .left_join(volumes::table.on(volumes::id.nullable().eq(vgm::volume_id)))
                    .select((
                        vgm::value,
                        vgm::deleted,
                        vgm::snapshot_id,
                        snapshots::user_id.nullable(),
                        volumes::user_id.nullable(),
                        snapshots::project_id.nullable(),
                        volumes::project_id.nullable(),
                    ))
                    .filter(vgm::id.eq(gid))
                    .first::<G>(conn)
                    .optional();
                // The project as the plan reads it: a snapshot's row is its snapshot's.
                row.map(|r| r.map(|(v, d, sid, su, vu, sp, vp)| (v, d, su.or(vu), if sid.is_some() { sp } else { vp })))
            }
        };
        let r = r.map_err(|e| self.error(&format!("reading {} {id}", table.noun()), e))?;
        Ok(r.map(|(key, deleted, owner, project)| RowState { key, deleted: deleted != Some(false), owner, project }))
    }

    /// Owners of a volume's live all-zeros snapshots: they share the volume's secret.
    pub fn zero_snapshot_owners(&mut self, volume_id: &str) -> Result<Vec<String>> {
        // Not DISTINCT: on MySQL that would fold `alice` and `Alice ` into one, and the swap's
        // `user_id IN (…)` would then rewrite a snapshot whose owner was never granted access.
        let owners: Vec<Option<String>> = snapshots::table
            .select(snapshots::user_id)
            .filter(snapshots::volume_id.eq(volume_id))
            .filter(snapshots::deleted.eq(false))
            .filter(snapshots::encryption_key_id.eq(ZERO_KEY_ID))
            .filter(zero_exact(self.backend, "snapshots.encryption_key_id"))
            .load(&mut self.conn)
            .map_err(|e| self.error("reading snapshots", e))?;
        let owners: std::collections::BTreeSet<String> = owners.into_iter().flatten().filter(|o| is_owner(o)).collect();
        Ok(owners.into_iter().collect())
    }

    /// Whether any row, live or deleted, points at `secret_id`. A secret that a row points at is
    /// never deleted. Byte for byte, as Cinder and Barbican compare: Barbican answers 404 to an ID
    /// in any other case or with spaces (it takes only the canonical form), and Cinder reads a
    /// glance row's key only under the exact name `cinder_encryption_key_id`. On MySQL the
    /// collation alone would also count such look-alikes, which reach no secret, and a rollback
    /// would leave their secret behind, unused.
    pub fn is_referenced(&mut self, secret_id: &str) -> Result<bool> {
        let backend = self.backend;
        let conn = &mut self.conn;
        let r = (|| -> QueryResult<bool> {
            // The typed `eq` keeps the index; `holds` makes it exact.
            let v: i64 = volumes::table
                .filter(volumes::encryption_key_id.eq(secret_id))
                .filter(holds(backend, "volumes.encryption_key_id", secret_id))
                .count()
                .get_result(conn)?;
            let s: i64 = snapshots::table
                .filter(snapshots::encryption_key_id.eq(secret_id))
                .filter(holds(backend, "snapshots.encryption_key_id", secret_id))
                .count()
                .get_result(conn)?;
            let b: i64 = backups::table
                .filter(backups::encryption_key_id.eq(secret_id))
                .filter(holds(backend, "backups.encryption_key_id", secret_id))
                .count()
                .get_result(conn)?;
            let g: i64 = vgm::table
                .filter(vgm::key.eq(GLANCE_KEY))
                .filter(ConstSql::<Bool>::new(exact(backend, "volume_glance_metadata.key", "=", GLANCE_KEY)))
                .filter(vgm::value.eq(secret_id))
                .filter(holds(backend, "volume_glance_metadata.value", secret_id))
                .count()
                .get_result(conn)?;
            Ok(v + s + b + g > 0)
        })();
        r.map_err(|e| self.error("looking for rows that use a secret", e))
    }
}

/// What [`Db::swap_group`] rewrites for one unit: its rows, from the all-zeros ID to `new_id`.
#[derive(Debug, Clone, Copy)]
pub struct Swap<'a> {
    pub table: Table,
    pub id: &'a str,
    pub new_id: &'a str,
    pub share: Share<'a>,
}

/// One unit's rows, inside the transaction (and savepoint) [`Db::swap_group`] opened.
fn swap_one(conn: &mut super::AnyConnection, backend: Backend, w: &Swap<'_>, now: Now) -> QueryResult<Swapped> {
    let Swap { table, id, new_id, share } = *w;
    match table {
        Table::Volumes => swap_volume(conn, backend, id, new_id, share, now),
        Table::Snapshots => swap_snapshot(conn, backend, id, new_id, now),
        Table::Backups => {
            let n = diesel::update(
                backups::table
                    .filter(backups::id.eq(id))
                    .filter(backups::deleted.eq(false))
                    .filter(backups::encryption_key_id.eq(ZERO_KEY_ID))
                    .filter(zero_exact(backend, "backups.encryption_key_id")),
            )
            .set((backups::encryption_key_id.eq(new_id), backups::updated_at.eq(now)))
            .execute(conn)?;
            one(n)?;
            Ok(Swapped { backups: n, ..Swapped::default() })
        }
        Table::VolumeGlanceMetadata => {
            let gid: i32 = id.parse().map_err(|_| diesel::result::Error::NotFound)?;
            let n = rewrite_glance!(conn, backend, vgm::id.eq(gid), new_id, now)?;
            one(n)?;
            Ok(Swapped { volume_glance_metadata: n, ..Swapped::default() })
        }
    }
}

fn one(n: usize) -> Result<(), diesel::result::Error> {
    if n == 1 { Ok(()) } else { Err(diesel::result::Error::RollbackTransaction) }
}

/// `column = secret`, byte for byte (see [`exact`]), the secret ID bound as a parameter: on
/// MySQL the collation alone would also match the ID in upper case or with trailing spaces.
fn holds(backend: Backend, column: &str, secret: &str) -> diesel::dsl::Eq<ConstSql<Text>, String> {
    ConstSql::<Text>::new(bytewise(backend, column)).eq(secret.to_owned())
}

/// The compare half of compare-and-swap, byte for byte (see [`exact`]).
fn zero_exact(backend: Backend, column: &str) -> ConstSql<Bool> {
    ConstSql::new(exact(backend, column, "=", ZERO_KEY_ID))
}

#[allow(clippy::type_complexity)]
fn zero_glance(
    backend: Backend,
) -> diesel::dsl::Filter<
    diesel::dsl::Filter<
        diesel::dsl::Filter<diesel::dsl::Filter<vgm::table, diesel::dsl::Eq<vgm::deleted, bool>>, diesel::dsl::Eq<vgm::key, &'static str>>,
        diesel::dsl::Eq<vgm::value, &'static str>,
    >,
    ConstSql<Bool>,
> {
    let exact_key_and_value = format!(
        "{} AND {}",
        exact(backend, "volume_glance_metadata.key", "=", GLANCE_KEY),
        exact(backend, "volume_glance_metadata.value", "=", ZERO_KEY_ID)
    );
    vgm::table
        .filter(vgm::deleted.eq(false))
        .filter(vgm::key.eq(GLANCE_KEY))
        .filter(vgm::value.eq(ZERO_KEY_ID))
        .filter(ConstSql::new(exact_key_and_value))
}

fn swap_volume(
    conn: &mut super::AnyConnection,
    backend: Backend,
    id: &str,
    new_id: &str,
    share: Share<'_>,
    now: Now,
) -> QueryResult<Swapped> {
    let v = diesel::update(
        volumes::table
            .filter(volumes::id.eq(id))
            .filter(volumes::deleted.eq(false))
            .filter(volumes::encryption_key_id.eq(ZERO_KEY_ID))
            .filter(zero_exact(backend, "volumes.encryption_key_id")),
    )
    .set((volumes::encryption_key_id.eq(new_id), volumes::updated_at.eq(now)))
    .execute(conn)?;
    one(v)?;
    crate::fault::point("in-transaction");
    let zero_snapshots = snapshots::table
        .filter(snapshots::volume_id.eq(id))
        .filter(snapshots::deleted.eq(false))
        .filter(snapshots::encryption_key_id.eq(ZERO_KEY_ID))
        .filter(zero_exact(backend, "snapshots.encryption_key_id"));
    let set = (snapshots::encryption_key_id.eq(new_id), snapshots::updated_at.eq(now));
    let s = match share {
        Share::Readers(owners) => diesel::update(zero_snapshots.filter(snapshots::user_id.eq_any(owners))).set(set).execute(conn)?,
        Share::Project(project) => {
            diesel::update(zero_snapshots.filter(holds(backend, "snapshots.project_id", project))).set(set).execute(conn)?
        }
    };
    // The volume's glance rows, then those of its snapshots (deleted ones too, as Cinder keeps
    // their metadata), each through its own index. One statement with `volume_id = … OR
    // snapshot_id IN (SELECT …)` makes MariaDB scan, and lock, every row of the table for each
    // volume.
    let (mut g, of_volume): (usize, Vec<String>) = match share {
        Share::Readers(_) => (
            rewrite_glance!(conn, backend, vgm::volume_id.eq(id), new_id, now)?,
            snapshots::table.select(snapshots::id).filter(snapshots::volume_id.eq(id)).load(conn)?,
        ),
        // A row of a snapshot in another project is that snapshot's, even when it also names
        // the volume.
        Share::Project(project) => (
            rewrite_glance!(conn, backend, vgm::volume_id.eq(id).and(vgm::snapshot_id.is_null()), new_id, now)?,
            snapshots::table
                .select(snapshots::id)
                .filter(snapshots::volume_id.eq(id))
                .filter(holds(backend, "snapshots.project_id", project))
                .load(conn)?,
        ),
    };
    for ids in of_volume.chunks(500) {
        g += rewrite_glance!(conn, backend, vgm::snapshot_id.eq_any(ids), new_id, now)?;
    }
    if let Share::Project(project) = share {
        // A row naming the volume and a snapshot of another volume in the same project (Cinder
        // does not write these; a hand-made row can): the plan shares it with this volume, so
        // this swap must take it, or it would stay on the all-zeros ID for ever.
        let named: Vec<i32> = vgm::table
            .inner_join(snapshots::table.on(snapshots::id.nullable().eq(vgm::snapshot_id)))
            .select(vgm::id)
            .filter(vgm::volume_id.eq(id))
            .filter(snapshots::volume_id.ne(id).or(snapshots::volume_id.is_null()))
            .filter(holds(backend, "snapshots.project_id", project))
            .load(conn)?;
        for ids in named.chunks(500) {
            g += rewrite_glance!(conn, backend, vgm::id.eq_any(ids), new_id, now)?;
        }
    }
    Ok(Swapped { volumes: v, snapshots: s, backups: 0, volume_glance_metadata: g })
}

fn swap_snapshot(conn: &mut super::AnyConnection, backend: Backend, id: &str, new_id: &str, now: Now) -> QueryResult<Swapped> {
    let s = diesel::update(
        snapshots::table
            .filter(snapshots::id.eq(id))
            .filter(snapshots::deleted.eq(false))
            .filter(snapshots::encryption_key_id.eq(ZERO_KEY_ID))
            .filter(zero_exact(backend, "snapshots.encryption_key_id")),
    )
    .set((snapshots::encryption_key_id.eq(new_id), snapshots::updated_at.eq(now)))
    .execute(conn)?;
    one(s)?;
    let g = rewrite_glance!(conn, backend, vgm::snapshot_id.eq(id), new_id, now)?;
    Ok(Swapped { snapshots: s, volume_glance_metadata: g, ..Swapped::default() })
}
