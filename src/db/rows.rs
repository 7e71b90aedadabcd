//! The rows keymigrate reads from Cinder's tables, as pages return them, and the choices a page
//! query is made with (which keys, live or deleted rows, how much of each row).

use diesel::prelude::*;

use super::text::Text;
use crate::cinder::{Table, ZERO_KEY_ID};

/// A volume row as pages return it.
#[derive(Debug, Clone, Queryable)]
pub struct VolumeRow {
    pub id: Text,
    pub host: Option<Text>,
    pub cluster_name: Option<Text>,
    pub user_id: Option<Text>,
    pub project_id: Option<Text>,
    pub key: Option<Text>,
    pub deleted: Option<bool>,
}

/// A volume, live or deleted, as a census reads every one of them: whether it is on the
/// all-zeros key rather than which key it is on.
#[derive(Debug, Clone, Queryable)]
pub struct VolumeFacts {
    pub id: Text,
    pub host: Option<Text>,
    pub cluster_name: Option<Text>,
    pub user_id: Option<Text>,
    pub project_id: Option<Text>,
    pub zero: Option<bool>,
    pub deleted: Option<bool>,
}

impl VolumeFacts {
    /// Live and still on the all-zeros key: a unit of work (scope permitting).
    pub fn is_zero_and_live(&self) -> bool {
        self.deleted == Some(false) && self.zero == Some(true)
    }
}

impl From<VolumeRow> for VolumeFacts {
    fn from(v: VolumeRow) -> VolumeFacts {
        let zero = Some(v.key.as_deref() == Some(ZERO_KEY_ID));
        VolumeFacts { id: v.id, host: v.host, cluster_name: v.cluster_name, user_id: v.user_id, project_id: v.project_id, zero, deleted: v.deleted }
    }
}

/// A live snapshot that uses the all-zeros key ID, with what it needs of its volume.
#[derive(Debug, Clone, Queryable)]
pub struct SnapshotRow {
    pub id: Text,
    pub volume_id: Option<Text>,
    pub user_id: Option<Text>,
    pub project_id: Option<Text>,
    pub key: Option<Text>,
    pub volume: Option<VolumeRef>,
}

/// The parts of a parent volume that decide a child row's scope and plan.
#[derive(Debug, Clone, Queryable)]
pub struct VolumeRef {
    pub host: Option<Text>,
    pub cluster_name: Option<Text>,
    pub user_id: Option<Text>,
    pub project_id: Option<Text>,
    pub encryption_key_id: Option<Text>,
    pub deleted: Option<bool>,
}

impl VolumeRef {
    /// The volume is itself a unit: live and still on the all-zeros key.
    pub fn is_zero_and_live(&self) -> bool {
        self.deleted == Some(false) && self.encryption_key_id.as_deref() == Some(ZERO_KEY_ID)
    }
}

#[derive(Debug, Clone, Queryable)]
pub struct BackupRow {
    pub id: Text,
    pub host: Option<Text>,
    pub user_id: Option<Text>,
    pub project_id: Option<Text>,
    pub key: Option<Text>,
    pub deleted: Option<bool>,
}

/// A snapshot on the all-zeros key, live or deleted, without its volume: what a census reads.
#[derive(Debug, Clone, Queryable)]
pub struct SnapshotOnly {
    pub id: Text,
    pub volume_id: Option<Text>,
    pub user_id: Option<Text>,
    pub project_id: Option<Text>,
    pub deleted: Option<bool>,
}

impl SnapshotOnly {
    /// The volume of a live snapshot, which planning looks up (a deleted one is only counted).
    pub fn live_volume_id(&self) -> Option<&str> {
        self.volume_id.as_deref().filter(|_| self.deleted == Some(false))
    }
}

/// A glance-metadata row on the all-zeros key, live or deleted, with its snapshot (if it
/// belongs to one) but not its volume: what a census reads.
#[derive(Debug, Clone)]
pub struct GlanceOnly {
    pub id: i32,
    pub volume_id: Option<Text>,
    pub snapshot_id: Option<Text>,
    pub deleted: Option<bool>,
    pub snapshot: Option<SnapshotRef>,
}

impl GlanceOnly {
    /// The volume the row belongs to: directly, or through its snapshot.
    pub fn volume_id(&self) -> Option<&str> {
        self.volume_id.as_deref().or_else(|| self.snapshot.as_ref().and_then(|s| s.volume_id.as_deref()))
    }

    /// The volume of a live row, which planning looks up (a deleted row is only counted).
    pub fn live_volume_id(&self) -> Option<&str> {
        self.volume_id().filter(|_| self.deleted == Some(false))
    }
}

/// A live glance-metadata row holding the all-zeros key ID, with its owning volume or snapshot.
#[derive(Debug, Clone)]
pub struct GlanceRow {
    pub id: i32,
    pub volume_id: Option<Text>,
    pub snapshot_id: Option<Text>,
    pub key: Option<Text>,
    /// The volume the row belongs to: directly, or through its snapshot.
    pub volume: Option<VolumeRef>,
    /// The snapshot the row belongs to, when it belongs to one.
    pub snapshot: Option<SnapshotRef>,
}

#[derive(Debug, Clone, Queryable)]
pub struct SnapshotRef {
    pub volume_id: Option<Text>,
    pub user_id: Option<Text>,
    pub project_id: Option<Text>,
    pub encryption_key_id: Option<Text>,
    pub deleted: Option<bool>,
}

impl SnapshotRef {
    pub fn is_zero_and_live(&self) -> bool {
        self.deleted == Some(false) && self.encryption_key_id.as_deref() == Some(ZERO_KEY_ID)
    }
}

/// Which rows a walk selects by key ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Still on the ConfKeyManager's all-zeros key ID.
    Zero,
    /// On any other (non-NULL) key ID: candidates for `verify` and `rollback`.
    Migrated,
    /// Any key ID, or none.
    Any,
}

/// Which rows a walk selects by `deleted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// `NOT deleted`.
    Only,
    /// Live and deleted alike: a census counts both.
    AndDeleted,
}

/// What a census reads of each row: all that a report prints (`Rows`), or only what decides the
/// counts (`Counts`, for `status` and the tallies of `migrate` and `verify`): no project, and on
/// SQLite, where the rowid is the cursor, no row's own ID (but a volume's, which child rows are
/// matched on). What is left out reads as NULL, or an empty ID. `Holders` is `Counts` with each
/// row's project: under `--secret-owner project` the project decides whether a row is blocked
/// and whether a child shares its volume's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Rows,
    Counts,
    Holders,
}

/// Row counts per Cinder table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableCounts {
    pub volumes: i64,
    pub snapshots: i64,
    pub backups: i64,
    pub volume_glance_metadata: i64,
}

impl TableCounts {
    pub fn get_mut(&mut self, table: Table) -> &mut i64 {
        match table {
            Table::Volumes => &mut self.volumes,
            Table::Snapshots => &mut self.snapshots,
            Table::Backups => &mut self.backups,
            Table::VolumeGlanceMetadata => &mut self.volume_glance_metadata,
        }
    }

    pub fn get(&self, table: Table) -> i64 {
        match table {
            Table::Volumes => self.volumes,
            Table::Snapshots => self.snapshots,
            Table::Backups => self.backups,
            Table::VolumeGlanceMetadata => self.volume_glance_metadata,
        }
    }

    pub fn merge(&mut self, other: &TableCounts) {
        for table in Table::ALL {
            *self.get_mut(table) += other.get(table);
        }
    }

    pub fn total(&self) -> i64 {
        self.volumes + self.snapshots + self.backups + self.volume_glance_metadata
    }
}
