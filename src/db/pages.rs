//! Reading one keyset page of a Cinder table: the page queries of every census and of
//! `migrate`, `verify` and `rollback`, each with its cursor.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable};

use super::connect::{AnyConnection, Db};
use super::rows::{BackupRow, Detail, GlanceOnly, GlanceRow, Keys, Live, SnapshotOnly, SnapshotRef, SnapshotRow, VolumeFacts, VolumeRef, VolumeRow};
use super::schema::{backups, snapshots, volume_glance_metadata as vgm, volumes};
use super::sql::{exact, live, null_text, with_conn, Columns, ConstSql};
use super::text::Text;
use super::{Backend, BATCH};
use crate::cinder::{GLANCE_KEY, ZERO_KEY_ID};
use crate::error::Result;

/// Where a keyset-paginated walk of one table stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Start,
    Text(String),
    Int(i64),
    End,
}

impl Cursor {
    fn int(&self) -> Option<i64> {
        match self {
            Cursor::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Moves past the last row of a page; a short page ends the walk.
    fn advance<R>(&mut self, page: &[R], key: impl Fn(&R) -> Cursor) {
        *self = match page.last() {
            Some(last) if page.len() as i64 == BATCH => key(last),
            _ => Cursor::End,
        };
    }
}

/// The rest of a keyset-paginated page query, shared by the three UUID-keyed tables: the key
/// filter, the order (rowid on SQLite, id elsewhere), the cursor, and advancing it. `$base` is
/// the table's select, not yet boxed.
macro_rules! keyset_page {
    ($db:ident, $keys:ident, $live:expr, $cursor:ident, $rowid:ident, $base:ident, $table:ident, $row:ty, $what:literal) => {{
        let (backend, upto) = ($db.backend, $db.upto);
        let column = concat!(stringify!($table), ".encryption_key_id");
        let at: &Cursor = $cursor;
        // The rowid is only needed of the last row, for the cursor.
        let loaded = with_conn!($db, |conn, DB| -> QueryResult<(Vec<$row>, Option<i64>)> {
            let base = $base.into_boxed::<'_, DB>();
            let mut q = match $keys {
                Keys::Zero => base
                    .filter($table::encryption_key_id.eq(ZERO_KEY_ID))
                    .filter(ConstSql::<Bool>::new(exact(backend, column, "=", ZERO_KEY_ID))),
                Keys::Migrated => base.filter(ConstSql::<Bool>::new(exact(backend, column, "<>", ZERO_KEY_ID))),
                Keys::Any => base,
            };
            if $live == Live::Only {
                q = q.filter(live($table::deleted));
            }
            q = match backend {
                Backend::Sqlite => q.order(ConstSql::<BigInt>::new($rowid)),
                _ => q.order($table::id),
            };
            if let (Backend::Sqlite, Some(upto)) = (backend, upto) {
                q = q.filter(ConstSql::<BigInt>::new($rowid).le(upto));
            }
            match at {
                Cursor::Int(k) => q = q.filter(ConstSql::<BigInt>::new($rowid).gt(*k)),
                Cursor::Text(t) => q = q.filter($table::id.gt(t.clone())),
                _ => {}
            }
            // Sized for a whole page up front: collecting would grow and copy it a dozen times.
            let (mut page, mut last) = (Vec::with_capacity(BATCH as usize), None);
            for row in q.limit(BATCH).load_iter::<(i64, $row), diesel::connection::DefaultLoadingMode>(conn)? {
                let (rowid, row) = row?;
                last = Some(rowid);
                page.push(row);
            }
            Ok((page, last))
        });
        let (page, last) = loaded.map_err(|e| $db.error($what, e))?;
        let sqlite = backend == Backend::Sqlite;
        $cursor.advance(&page, |r| match last {
            Some(rowid) if sqlite => Cursor::Int(rowid),
            _ => Cursor::Text(r.id.to_string()),
        });
        Ok(page)
    }};
}

/// A page of rows into a vector sized for a whole page up front: collecting would grow and copy
/// it a dozen times.
fn load_page<'q, R>(q: impl diesel::query_dsl::methods::LoadQuery<'q, AnyConnection, R>, conn: &mut AnyConnection) -> QueryResult<Vec<R>> {
    let mut page = Vec::with_capacity(BATCH as usize);
    for row in q.load_iter::<R, diesel::connection::DefaultLoadingMode>(conn)? {
        page.push(row?);
    }
    Ok(page)
}

macro_rules! volume_ref_columns {
    () => {
        (volumes::host, volumes::cluster_name, volumes::user_id, volumes::project_id, volumes::encryption_key_id, volumes::deleted)
    };
}

/// A [`VolumeFacts`]'s columns, read as `$columns` says (`cluster_name` only when `$clusters`),
/// and whether the key is the all-zeros ID. The census's pass over `volumes` and the by-ID
/// lookup of a page's volumes read them alike, so both plan alike.
macro_rules! volume_facts_columns {
    ($backend:expr, $columns:expr, $clusters:expr) => {
        (
            $columns.text_not_null("volumes.id"),
            $columns.text("volumes.host"),
            $columns.cluster($clusters),
            $columns.text("volumes.user_id"),
            $columns.project("volumes.project_id"),
            ConstSql::<Nullable<Bool>>::new(exact($backend, "volumes.encryption_key_id", "=", ZERO_KEY_ID)),
            volumes::deleted,
        )
    };
}

impl Db {
    /// The next page of volumes on the all-zeros key (or, for `Keys::Migrated`, on another key).
    pub fn volumes_page(&mut self, keys: Keys, live: Live, cursor: &mut Cursor) -> Result<Vec<VolumeRow>> {
        let rowid = self.rowid("volumes");
        let base = volumes::table
            .select((
                ConstSql::<BigInt>::new(rowid),
                (volumes::id, volumes::host, volumes::cluster_name, volumes::user_id, volumes::project_id, volumes::encryption_key_id, volumes::deleted),
            ));
        keyset_page!(self, keys, live, cursor, rowid, base, volumes, VolumeRow, "reading volumes")
    }

    /// The next page of every volume, live or deleted, on any key: a census's one pass.
    /// `cluster_name` is read only when `clusters` is set (and NULL otherwise).
    pub fn volume_facts_page(&mut self, cursor: &mut Cursor, clusters: bool, detail: Detail) -> Result<Vec<VolumeFacts>> {
        let (rowid, keys, columns) = (self.rowid("volumes"), Keys::Any, self.detail(detail));
        let base = volumes::table.select((ConstSql::<BigInt>::new(rowid), volume_facts_columns!(self.backend, columns, clusters)));
        keyset_page!(self, keys, Live::AndDeleted, cursor, rowid, base, volumes, VolumeFacts, "reading volumes")
    }

    /// The volumes with these IDs, live or deleted, with the same facts as
    /// [`Db::volume_facts_page`] (the project as `detail` says; `cluster_name` only when
    /// `clusters` is set): what planning one page of child rows needs of their volumes, read
    /// through the primary key. The IDs are compared as the database compares them, as a join would.
    pub fn volume_facts_by_id(&mut self, ids: &[&str], clusters: bool, detail: Detail) -> Result<Vec<VolumeFacts>> {
        let (backend, columns) = (self.backend, self.detail(detail));
        let mut found = Vec::with_capacity(ids.len());
        // Within every database's limit on bound parameters (SQLite's is the lowest, 32,766).
        for chunk in ids.chunks(BATCH as usize) {
            let loaded = with_conn!(self, |conn, DB| -> QueryResult<()> {
                let q = volumes::table
                    .select(volume_facts_columns!(backend, columns, clusters))
                    .filter(volumes::id.eq_any(chunk))
                    .into_boxed::<'_, DB>();
                for row in q.load_iter::<VolumeFacts, diesel::connection::DefaultLoadingMode>(conn)? {
                    found.push(row?);
                }
                Ok(())
            });
            loaded.map_err(|e| self.error("reading volumes", e))?;
        }
        Ok(found)
    }

    /// SQLite walks tables in rowid order: sequential reads, where the id's index would make
    /// every row a random read. Other databases walk the primary key.
    fn rowid(&self, table: &str) -> &'static str {
        match (self.backend, table) {
            (Backend::Sqlite, "volumes") => "volumes.rowid",
            (Backend::Sqlite, "snapshots") => "snapshots.rowid",
            (Backend::Sqlite, "backups") => "backups.rowid",
            (Backend::Mysql, _) => "CAST(0 AS SIGNED)",
            _ => "CAST(0 AS BIGINT)",
        }
    }

    /// The columns a census of this detail reads, on this database.
    fn detail(&self, detail: Detail) -> Columns {
        Columns { detail, sqlite: self.backend == Backend::Sqlite, utf8_bytes: self.utf8_bytes }
    }

    /// The next page of live snapshots on the all-zeros key, with their volume.
    pub fn snapshots_page(&mut self, keys: Keys, cursor: &mut Cursor) -> Result<Vec<SnapshotRow>> {
        let rowid = self.rowid("snapshots");
        let base = snapshots::table
            .left_join(volumes::table.on(volumes::id.nullable().eq(snapshots::volume_id)))
            .select((
                ConstSql::<BigInt>::new(rowid),
                (
                    snapshots::id,
                    snapshots::volume_id,
                    snapshots::user_id,
                    snapshots::project_id,
                    snapshots::encryption_key_id,
                    volume_ref_columns!().nullable(),
                ),
            ));
        keyset_page!(self, keys, Live::Only, cursor, rowid, base, snapshots, SnapshotRow, "reading snapshots")
    }

    /// The next page of snapshots on the all-zeros key, live or deleted, without their volume.
    pub fn zero_snapshots_page(&mut self, cursor: &mut Cursor, detail: Detail) -> Result<Vec<SnapshotOnly>> {
        let (rowid, keys, columns) = (self.rowid("snapshots"), Keys::Zero, self.detail(detail));
        let base = snapshots::table.select((
            ConstSql::<BigInt>::new(rowid),
            (
                columns.id("snapshots.id"),
                columns.text("snapshots.volume_id"),
                columns.text("snapshots.user_id"),
                columns.project("snapshots.project_id"),
                snapshots::deleted,
            ),
        ));
        keyset_page!(self, keys, Live::AndDeleted, cursor, rowid, base, snapshots, SnapshotOnly, "reading snapshots")
    }

    /// The next page of backups on the all-zeros key (or, for `Keys::Migrated`, on another key).
    pub fn backups_page(&mut self, keys: Keys, live: Live, cursor: &mut Cursor) -> Result<Vec<BackupRow>> {
        let rowid = self.rowid("backups");
        let base = backups::table
            .select((
                ConstSql::<BigInt>::new(rowid),
                (backups::id, backups::host, backups::user_id, backups::project_id, backups::encryption_key_id, backups::deleted),
            ));
        keyset_page!(self, keys, live, cursor, rowid, base, backups, BackupRow, "reading backups")
    }

    /// The next page of backups on the all-zeros key, live or deleted: a census's pass. Their key
    /// is not read (it is the all-zeros ID).
    pub fn zero_backups_page(&mut self, cursor: &mut Cursor, detail: Detail) -> Result<Vec<BackupRow>> {
        let (rowid, keys, columns) = (self.rowid("backups"), Keys::Zero, self.detail(detail));
        let base = backups::table.select((
            ConstSql::<BigInt>::new(rowid),
            (
                columns.id("backups.id"),
                columns.text("backups.host"),
                columns.text("backups.user_id"),
                columns.project("backups.project_id"),
                null_text(),
                backups::deleted,
            ),
        ));
        keyset_page!(self, keys, Live::AndDeleted, cursor, rowid, base, backups, BackupRow, "reading backups")
    }

    /// The next page of live `volume_glance_metadata` rows whose `cinder_encryption_key_id` is
    /// all zeros, with the volume (directly or through the snapshot) and snapshot they belong to.
    pub fn glance_metadata_page(&mut self, keys: Keys, cursor: &mut Cursor) -> Result<Vec<GlanceRow>> {
        type Row = (i32, Option<Text>, Option<Text>, Option<Text>, Option<SnapshotRef>, Option<VolumeRef>);
        // A row belongs to a volume directly, or to a snapshot and through it to a volume.
        let owning_volume_id =
            ConstSql::<Nullable<diesel::sql_types::Text>>::new("COALESCE(volume_glance_metadata.volume_id, snapshots.volume_id)");
        let mut q = vgm::table
            .left_join(snapshots::table.on(snapshots::id.nullable().eq(vgm::snapshot_id)))
            .left_join(volumes::table.on(volumes::id.nullable().eq(owning_volume_id)))
            .select((
                vgm::id,
                vgm::volume_id,
                vgm::snapshot_id,
                vgm::value,
                (snapshots::volume_id, snapshots::user_id, snapshots::project_id, snapshots::encryption_key_id, snapshots::deleted)
                    .nullable(),
                volume_ref_columns!().nullable(),
            ))
            .filter(live(vgm::deleted))
            .filter(vgm::key.eq(GLANCE_KEY))
            .order(vgm::id)
            .limit(BATCH)
            .into_boxed();
        q = q.filter(ConstSql::<Bool>::new(exact(self.backend, "volume_glance_metadata.key", "=", GLANCE_KEY)));
        q = match keys {
            Keys::Zero => q
                .filter(vgm::value.eq(ZERO_KEY_ID))
                .filter(ConstSql::<Bool>::new(exact(self.backend, "volume_glance_metadata.value", "=", ZERO_KEY_ID))),
            Keys::Migrated => q.filter(ConstSql::<Bool>::new(exact(self.backend, "volume_glance_metadata.value", "<>", ZERO_KEY_ID))),
            Keys::Any => q,
        };
        if let Some(a) = cursor.int() {
            q = q.filter(vgm::id.gt(i32::try_from(a).unwrap_or(i32::MAX)));
        }
        if let Some(upto) = self.upto {
            q = q.filter(vgm::id.le(i32::try_from(upto).unwrap_or(i32::MAX)));
        }
        let rows = load_page::<Row>(q, &mut self.conn).map_err(|e| self.error("reading volume_glance_metadata", e))?;
        cursor.advance(&rows, |r| Cursor::Int(i64::from(r.0)));
        Ok(rows
            .into_iter()
            .map(|(id, volume_id, snapshot_id, key, snapshot, volume)| {
                // A left join of no row yields a tuple of NULLs, not None.
                let snapshot = snapshot.filter(|_| snapshot_id.is_some());
                GlanceRow { id, volume_id, snapshot_id, key, volume, snapshot }
            })
            .collect())
    }

    /// The next page of `volume_glance_metadata` rows whose `cinder_encryption_key_id` is all
    /// zeros, live or deleted, with the snapshot they belong to (if any) but not their volume.
    pub fn zero_glance_page(&mut self, cursor: &mut Cursor, detail: Detail) -> Result<Vec<GlanceOnly>> {
        type Row = (i32, Option<Text>, Option<Text>, Option<bool>, Option<SnapshotRef>);
        let (backend, upto, after) = (self.backend, self.upto, cursor.int());
        let columns = self.detail(detail);
        let loaded = with_conn!(self, |conn, DB| -> QueryResult<Vec<GlanceOnly>> {
            let mut q = vgm::table
                .left_join(snapshots::table.on(snapshots::id.nullable().eq(vgm::snapshot_id)))
                .select((
                    vgm::id,
                    columns.text("volume_glance_metadata.volume_id"),
                    columns.text("volume_glance_metadata.snapshot_id"),
                    vgm::deleted,
                    (
                        columns.text("snapshots.volume_id"),
                        columns.text("snapshots.user_id"),
                        columns.project("snapshots.project_id"),
                        columns.text("snapshots.encryption_key_id"),
                        snapshots::deleted,
                    )
                        .nullable(),
                ))
                .filter(vgm::key.eq(GLANCE_KEY))
                .filter(vgm::value.eq(ZERO_KEY_ID))
                .filter(ConstSql::<Bool>::new(exact(backend, "volume_glance_metadata.key", "=", GLANCE_KEY)))
                .filter(ConstSql::<Bool>::new(exact(backend, "volume_glance_metadata.value", "=", ZERO_KEY_ID)))
                .order(vgm::id)
                .limit(BATCH)
                .into_boxed::<'_, DB>();
            if let Some(a) = after {
                q = q.filter(vgm::id.gt(i32::try_from(a).unwrap_or(i32::MAX)));
            }
            if let Some(upto) = upto {
                q = q.filter(vgm::id.le(i32::try_from(upto).unwrap_or(i32::MAX)));
            }
            let mut page = Vec::with_capacity(BATCH as usize);
            for row in q.load_iter::<Row, diesel::connection::DefaultLoadingMode>(conn)? {
                let (id, volume_id, snapshot_id, deleted, snapshot) = row?;
                // A left join of no row yields a tuple of NULLs, not None.
                let snapshot = snapshot.filter(|_| snapshot_id.is_some());
                page.push(GlanceOnly { id, volume_id, snapshot_id, deleted, snapshot });
            }
            Ok(page)
        });
        let page = loaded.map_err(|e| self.error("reading volume_glance_metadata", e))?;
        cursor.advance(&page, |g| Cursor::Int(i64::from(g.id)));
        Ok(page)
    }
}
