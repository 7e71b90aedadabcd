//! The units of work: which rows on the all-zeros key are in scope, and what `migrate` does with
//! each. `scan` prints this plan; `migrate` walks the same plan and carries it out.
//!
//! A volume gets a new secret, shared by its all-zeros snapshots and its glance-metadata rows
//! (and those of its snapshots). A snapshot or glance-metadata row whose volume is not itself a
//! unit gets a secret of its own (a snapshot's glance rows share the snapshot's). Each backup gets
//! its own.

use crate::db::{BackupRow, Cursor, Db, GlanceRow, Keys, SnapshotRow, VolumeRef, VolumeRow};
use crate::error::Result;
use crate::scope::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Volumes,
    Snapshots,
    Backups,
    VolumeGlanceMetadata,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Volumes, Table::Snapshots, Table::VolumeGlanceMetadata, Table::Backups];

    /// Cinder's table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Volumes => "volumes",
            Table::Snapshots => "snapshots",
            Table::Backups => "backups",
            Table::VolumeGlanceMetadata => "volume_glance_metadata",
        }
    }

    /// The word used in log lines ("Migrating volume <id> ...").
    pub fn noun(self) -> &'static str {
        match self {
            Table::Volumes => "volume",
            Table::Snapshots => "snapshot",
            Table::Backups => "backup",
            Table::VolumeGlanceMetadata => "glance-metadata",
        }
    }
}

/// What `migrate` will do with a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store a new secret for this row (and the rows that share it).
    NewSecret,
    /// Rewritten in the same transaction as this volume, with the volume's new secret.
    ShareVolume(String),
    /// Rewritten in the same transaction as this snapshot, with the snapshot's new secret.
    ShareSnapshot(String),
    /// Cannot be migrated without an operator; the reason says why.
    Blocked(&'static str),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::NewSecret => f.write_str("new secret"),
            Action::ShareVolume(id) => write!(f, "share volume {id}"),
            Action::ShareSnapshot(id) => write!(f, "share snapshot {id}"),
            Action::Blocked(reason) => write!(f, "blocked: {reason}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub table: Table,
    pub id: String,
    /// The volume host the row is scoped by (the backup host for backups).
    pub host: Option<String>,
    /// The `user_id` that must be able to read the new secret.
    pub owner: Option<String>,
    pub project: Option<String>,
    pub action: Action,
    /// The volume or snapshot a glance-metadata row belongs to (its id is only a per-database
    /// integer); `None` for other tables.
    pub parent: Option<String>,
}

impl Unit {
    /// The name of this unit's secret for one attempt: the row it is for, and a random tag
    /// that the journal records before the secret is created. A later run finds what an
    /// interrupted attempt made by this exact name, and can never mistake another attempt's
    /// secret for it (another run, or a copy of this database sharing the Barbican project,
    /// uses other tags).
    pub fn secret_name(&self) -> String {
        let tag: u32 = rand::random();
        match &self.parent {
            Some(parent) => format!("keymigrate-{}-{parent}-{}-{tag:08x}", self.table.noun(), self.id),
            None => format!("keymigrate-{}-{}-{tag:08x}", self.table.noun(), self.id),
        }
    }
}

/// A row on the all-zeros key that keymigrate reports but never touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub table: Table,
    pub id: String,
    pub reason: &'static str,
}

pub enum Item {
    Unit(Unit),
    Skipped(Skipped),
}

const NO_OWNER: &str = "user_id is NULL, so no owner can be granted read access";
const PARENT_NO_OWNER: &str = "its volume's user_id is NULL, so no owner can be granted read access";
pub const NULL_HOST: &str = "volume host is NULL; only --all-hosts migrates it";

fn owner_action(owner: &Option<String>) -> Action {
    match owner {
        Some(o) if !o.is_empty() => Action::NewSecret,
        _ => Action::Blocked(NO_OWNER),
    }
}

/// Walks every table in `tables`, in that order, calling `each` for every in-scope unit and every
/// reported-but-untouched row. Rows are streamed a page at a time.
pub fn walk(db: &mut Db, scope: &Scope, tables: &[Table], mut each: impl FnMut(Item) -> Result<()>) -> Result<()> {
    for table in tables {
        let mut cursor = Cursor::Start;
        while cursor != Cursor::End {
            for item in page(db, scope, *table, &mut cursor)? {
                each(item)?;
            }
        }
    }
    Ok(())
}

/// The items of the next page of one table (possibly none, when no row of the page is in
/// scope); `cursor` becomes [`Cursor::End`] after the last page.
pub fn page(db: &mut Db, scope: &Scope, table: Table, cursor: &mut Cursor) -> Result<Vec<Item>> {
    Ok(match table {
        Table::Volumes => db.volumes_page(Keys::Zero, cursor)?.into_iter().filter_map(|v| volume_item(scope, v)).collect(),
        Table::Snapshots => {
            db.snapshots_page(Keys::Zero, cursor)?.into_iter().filter_map(|s| snapshot_unit(scope, s).map(Item::Unit)).collect()
        }
        Table::Backups => db.backups_page(Keys::Zero, cursor)?.into_iter().filter_map(|b| backup_unit(scope, b).map(Item::Unit)).collect(),
        Table::VolumeGlanceMetadata => {
            db.glance_metadata_page(Keys::Zero, cursor)?.into_iter().filter_map(|g| glance_unit(scope, g).map(Item::Unit)).collect()
        }
    })
}

fn volume_item(scope: &Scope, v: VolumeRow) -> Option<Item> {
    if v.host.is_none() && !scope.all {
        return Some(Item::Skipped(Skipped { table: Table::Volumes, id: v.id, reason: NULL_HOST }));
    }
    if !scope.volume_in_scope(v.host.as_deref(), v.cluster_name.as_deref()) {
        return None;
    }
    let action = owner_action(&v.user_id);
    Some(Item::Unit(Unit {
        table: Table::Volumes,
        id: v.id,
        host: v.host,
        owner: v.user_id,
        project: v.project_id,
        action,
        parent: None,
    }))
}

fn backup_unit(scope: &Scope, b: BackupRow) -> Option<Unit> {
    if !scope.backup_in_scope(b.host.as_deref()) {
        return None;
    }
    let action = owner_action(&b.user_id);
    Some(Unit { table: Table::Backups, id: b.id, host: b.host, owner: b.user_id, project: b.project_id, action, parent: None })
}

/// Sharing a volume's secret: blocked with the volume when the volume has no owner.
fn share_volume(volume: &VolumeRef, volume_id: String) -> Action {
    match &volume.user_id {
        Some(u) if !u.is_empty() => Action::ShareVolume(volume_id),
        _ => Action::Blocked(PARENT_NO_OWNER),
    }
}

/// Child rows (snapshots, glance metadata) follow their volume's scope; no volume, no host.
fn parent_in_scope(scope: &Scope, volume: Option<&VolumeRef>) -> bool {
    scope.volume_in_scope(volume.and_then(|v| v.host.as_deref()), volume.and_then(|v| v.cluster_name.as_deref()))
}

/// A snapshot follows its volume's scope; it shares the volume's secret when the volume is a unit.
pub fn snapshot_unit(scope: &Scope, s: SnapshotRow) -> Option<Unit> {
    let volume = s.volume.as_ref();
    if !parent_in_scope(scope, volume) {
        return None;
    }
    let action = match (volume, &s.volume_id) {
        (Some(v), Some(vid)) if v.is_zero_and_live() => share_volume(v, vid.clone()),
        _ => owner_action(&s.user_id),
    };
    Some(Unit {
        table: Table::Snapshots,
        id: s.id,
        host: volume.and_then(|v| v.host.clone()),
        owner: s.user_id,
        project: s.project_id,
        action,
        parent: None,
    })
}

/// A glance-metadata row follows its volume (directly or through its snapshot).
pub fn glance_unit(scope: &Scope, g: GlanceRow) -> Option<Unit> {
    let volume = g.volume.as_ref();
    if !parent_in_scope(scope, volume) {
        return None;
    }
    let volume_id = g.volume_id.clone().or_else(|| g.snapshot.as_ref().and_then(|s| s.volume_id.clone()));
    let owner = match &g.snapshot {
        Some(s) => s.user_id.clone(),
        None => volume.and_then(|v| v.user_id.clone()),
    };
    let project = g.snapshot.as_ref().and_then(|s| s.project_id.clone());
    let action = match (volume, volume_id, &g.snapshot, &g.snapshot_id) {
        (Some(v), Some(vid), _, _) if v.is_zero_and_live() => share_volume(v, vid),
        (_, _, Some(s), Some(sid)) if s.is_zero_and_live() => Action::ShareSnapshot(sid.clone()),
        _ => owner_action(&owner),
    };
    Some(Unit {
        table: Table::VolumeGlanceMetadata,
        id: g.id.to_string(),
        host: volume.and_then(|v| v.host.clone()),
        owner,
        project,
        action,
        parent: g.volume_id.or(g.snapshot_id),
    })
}

/// A live, in-scope row on a key other than the all-zeros ID: what `verify` and `rollback` look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub table: Table,
    pub id: String,
    pub key: String,
    pub owner: Option<String>,
}

/// The next page of one table's rows on other keys, filtered by the same scope rules as units.
pub fn keyed_page(db: &mut Db, scope: &Scope, table: Table, cursor: &mut Cursor) -> Result<Vec<Keyed>> {
    let keyed = |table, id, key: Option<String>, owner| key.map(|key| Keyed { table, id, key, owner });
    Ok(match table {
        Table::Volumes => db
            .volumes_page(Keys::Migrated, cursor)?
            .into_iter()
            .filter(|v| scope.volume_in_scope(v.host.as_deref(), v.cluster_name.as_deref()))
            .filter_map(|v| keyed(table, v.id, v.key, v.user_id))
            .collect(),
        Table::Snapshots => db
            .snapshots_page(Keys::Migrated, cursor)?
            .into_iter()
            .filter(|s| parent_in_scope(scope, s.volume.as_ref()))
            .filter_map(|s| keyed(table, s.id, s.key, s.user_id))
            .collect(),
        Table::Backups => db
            .backups_page(Keys::Migrated, cursor)?
            .into_iter()
            .filter(|b| scope.backup_in_scope(b.host.as_deref()))
            .filter_map(|b| keyed(table, b.id, b.key, b.user_id))
            .collect(),
        Table::VolumeGlanceMetadata => db
            .glance_metadata_page(Keys::Migrated, cursor)?
            .into_iter()
            .filter(|g| parent_in_scope(scope, g.volume.as_ref()))
            .filter_map(|g| {
                let owner = match &g.snapshot {
                    Some(s) => s.user_id.clone(),
                    None => g.volume.as_ref().and_then(|v| v.user_id.clone()),
                };
                keyed(table, g.id.to_string(), g.key, owner)
            })
            .collect(),
    })
}

/// Units counted per table and action: what `scan` and `status` report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub volumes: TableTally,
    pub snapshots: TableTally,
    pub backups: TableTally,
    pub volume_glance_metadata: TableTally,
    /// Rows on the all-zeros key reported but never touched (NULL host outside --all-hosts).
    pub skipped: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableTally {
    /// Units in scope.
    pub total: i64,
    /// Units that get a secret of their own.
    pub new_secret: i64,
    /// Units rewritten together with their volume or snapshot.
    pub shared: i64,
    /// Units that need an operator.
    pub blocked: i64,
}

impl Tally {
    pub fn add(&mut self, item: &Item) {
        match item {
            Item::Skipped(_) => self.skipped += 1,
            Item::Unit(u) => {
                let t = self.table_mut(u.table);
                t.total += 1;
                match u.action {
                    Action::NewSecret => t.new_secret += 1,
                    Action::ShareVolume(_) | Action::ShareSnapshot(_) => t.shared += 1,
                    Action::Blocked(_) => t.blocked += 1,
                }
            }
        }
    }

    pub fn table(&self, table: Table) -> &TableTally {
        match table {
            Table::Volumes => &self.volumes,
            Table::Snapshots => &self.snapshots,
            Table::Backups => &self.backups,
            Table::VolumeGlanceMetadata => &self.volume_glance_metadata,
        }
    }

    fn table_mut(&mut self, table: Table) -> &mut TableTally {
        match table {
            Table::Volumes => &mut self.volumes,
            Table::Snapshots => &mut self.snapshots,
            Table::Backups => &mut self.backups,
            Table::VolumeGlanceMetadata => &mut self.volume_glance_metadata,
        }
    }

    pub fn units(&self) -> i64 {
        Table::ALL.iter().map(|t| self.table(*t).total).sum()
    }

    pub fn blocked(&self) -> i64 {
        Table::ALL.iter().map(|t| self.table(*t).blocked).sum()
    }

    pub fn new_secrets(&self) -> i64 {
        Table::ALL.iter().map(|t| self.table(*t).new_secret).sum()
    }
}
