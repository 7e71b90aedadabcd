//! The rules: what `migrate` does with each row on the all-zeros key (a new secret, sharing its
//! volume's or snapshot's, or blocked with a reason), and the page-at-a-time planning `migrate`
//! uses, which reads each child row's volume as it is then. `verify` and `rollback` read rows on
//! other keys with the same scope rules ([`keyed_page`]).
//!
//! Whom a secret is for depends on `--secret-owner` ([`SecretOwner`]): under `service` a unit
//! needs a `user_id` to put on the ACL, and rows share a secret as Cinder's own migrator shares
//! it; under `project` a unit needs a `project_id` (its "holder" project, which every member
//! reads in), and a snapshot or glance-metadata row shares its volume's secret only when it is
//! in the volume's very project, byte for byte.

use crate::cinder::{is_owner, SecretOwner, Table};
use crate::db::text::Text;
use crate::db::{BackupRow, Cursor, Db, GlanceRow, Keys, Live, SnapshotOnly, SnapshotRef, VolumeFacts, VolumeRef};
use crate::error::Result;
use crate::scope::Scope;
use super::parents::Parent;

/// What `migrate` will do with a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store a new secret for this row (and the rows that share it).
    NewSecret,
    /// Rewritten in the same transaction as this volume, with the volume's new secret.
    ShareVolume(Text),
    /// Rewritten in the same transaction as this snapshot, with the snapshot's new secret.
    ShareSnapshot(Text),
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
    pub id: Text,
    /// The volume host the row is scoped by (the backup host for backups).
    pub host: Option<Text>,
    /// The `user_id` that must be able to read the new secret under `--secret-owner service`.
    pub owner: Option<Text>,
    /// The row's project. A glance-metadata row has none of its own: it is its snapshot's
    /// (under `project`, its volume's when it belongs to no snapshot, the project its secret
    /// is created in; under `service`, only reported, as before).
    pub project: Option<Text>,
    pub action: Action,
    /// The volume or snapshot a glance-metadata row belongs to (its id is only a per-database
    /// integer); `None` for other tables.
    pub parent: Option<Text>,
    /// Under `--secret-owner project`: a snapshot or glance-metadata row of a volume that is
    /// itself a unit, which gets a secret apart from the volume's only because it is in another
    /// project (a transfer, or an edit by hand). Under `service` it would share the volume's.
    pub apart: bool,
}

impl Unit {
    /// Whom the unit's secret is for: its `user_id` under `service`, its project under
    /// `project`.
    pub fn holder(&self, owner: SecretOwner) -> Option<&str> {
        match owner {
            SecretOwner::Service => self.owner.as_deref(),
            SecretOwner::Project => self.project.as_deref(),
        }
    }

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
    pub id: Text,
    pub reason: &'static str,
}

pub enum Item {
    Unit(Unit),
    Skipped(Skipped),
}

const NO_OWNER: &str = "user_id is NULL or blank, so no owner can be granted read access";
const PARENT_NO_OWNER: &str = "its volume's user_id is NULL or blank, so no owner can be granted read access";
const SNAPSHOT_NO_OWNER: &str = "its snapshot's user_id is NULL or blank, so no owner can be granted read access";
const NO_PROJECT: &str = "project_id is NULL or blank, so the secret has no project to belong to";
const PARENT_NO_PROJECT: &str = "its volume's project_id is NULL or blank, so the secret has no project to belong to";
const SNAPSHOT_NO_PROJECT: &str = "its snapshot's project_id is NULL or blank, so the secret has no project to belong to";
const UNENCRYPTED_PARENT: &str =
    "its volume or snapshot is not encrypted, so the all-zeros ID came from an image property; a secret would give its owner the fixed key";
pub const NULL_HOST: &str = "volume host is NULL; only --all-hosts migrates it";

/// Whether the holder of a row (its user under `service`, its project under `project`) can
/// be given a secret: not NULL, not blank.
fn holds(owner: SecretOwner, user: Option<&str>, project: Option<&str>) -> bool {
    match owner {
        SecretOwner::Service => user.is_some_and(is_owner),
        SecretOwner::Project => project.is_some_and(is_owner),
    }
}

/// Why a row without a holder is blocked.
fn no_holder(owner: SecretOwner) -> &'static str {
    match owner {
        SecretOwner::Service => NO_OWNER,
        SecretOwner::Project => NO_PROJECT,
    }
}

/// A secret of the row's own, when it has a holder.
fn holder_action(owner: SecretOwner, user: &Option<Text>, project: &Option<Text>) -> Action {
    match holds(owner, user.as_deref(), project.as_deref()) {
        true => Action::NewSecret,
        false => Action::Blocked(no_holder(owner)),
    }
}

/// The items of the next page of one table (possibly none, when no row of the page is in
/// scope); `cursor` becomes [`Cursor::End`] after the last page. Each child row's volume is
/// read with it, as it is now.
pub fn page(db: &mut Db, scope: &Scope, owner: SecretOwner, table: Table, cursor: &mut Cursor) -> Result<Vec<Item>> {
    Ok(match table {
        Table::Volumes => db
            .volumes_page(Keys::Zero, Live::Only, cursor)?
            .into_iter()
            .filter_map(|v| volume_item(scope, owner, v.into()))
            .collect(),
        Table::Snapshots => db
            .snapshots_page(Keys::Zero, cursor)?
            .into_iter()
            .filter(|s| parent_in_scope(scope, s.volume.as_ref()))
            .map(|s| {
                let parent = s.volume.as_ref().map(Parent::from);
                let snapshot =
                    SnapshotOnly { id: s.id, volume_id: s.volume_id, user_id: s.user_id, project_id: s.project_id, deleted: Some(false) };
                Item::Unit(snapshot_unit(owner, snapshot, parent))
            })
            .collect(),
        Table::Backups => db
            .backups_page(Keys::Zero, Live::Only, cursor)?
            .into_iter()
            .filter_map(|b| backup_unit(scope, owner, b).map(Item::Unit))
            .collect(),
        Table::VolumeGlanceMetadata => db
            .glance_metadata_page(Keys::Zero, cursor)?
            .into_iter()
            .filter(|g| parent_in_scope(scope, g.volume.as_ref()))
            .map(|g: GlanceRow| {
                let parent = g.volume.as_ref().map(Parent::from);
                Item::Unit(glance_unit(owner, g.id, g.volume_id, g.snapshot_id, g.snapshot, parent))
            })
            .collect(),
    })
}

impl<'a> From<&'a VolumeRef> for Parent<'a> {
    fn from(v: &'a VolumeRef) -> Parent<'a> {
        Parent {
            host: v.host.as_deref(),
            owner: v.user_id.as_deref(),
            project: v.project_id.as_deref(),
            zero_and_live: v.is_zero_and_live(),
            encrypted: v.encryption_key_id.is_some(),
        }
    }
}

pub(super) fn volume_item(scope: &Scope, owner: SecretOwner, v: VolumeFacts) -> Option<Item> {
    if v.host.is_none() && !scope.all {
        return Some(Item::Skipped(Skipped { table: Table::Volumes, id: v.id, reason: NULL_HOST }));
    }
    if !scope.volume_in_scope(v.host.as_deref(), v.cluster_name.as_deref()) {
        return None;
    }
    let action = holder_action(owner, &v.user_id, &v.project_id);
    Some(Item::Unit(Unit {
        table: Table::Volumes,
        id: v.id,
        host: v.host,
        owner: v.user_id,
        project: v.project_id,
        action,
        parent: None,
        apart: false,
    }))
}

pub(super) fn backup_unit(scope: &Scope, owner: SecretOwner, b: BackupRow) -> Option<Unit> {
    if !scope.backup_in_scope(b.host.as_deref()) {
        return None;
    }
    let action = holder_action(owner, &b.user_id, &b.project_id);
    Some(Unit { table: Table::Backups, id: b.id, host: b.host, owner: b.user_id, project: b.project_id, action, parent: None, apart: false })
}

/// Sharing a volume's secret: blocked with the volume when the volume has no holder.
fn share_volume(owner: SecretOwner, volume: &Parent<'_>, volume_id: Text) -> Action {
    match (holds(owner, volume.owner, volume.project), owner) {
        (true, _) => Action::ShareVolume(volume_id),
        (false, SecretOwner::Service) => Action::Blocked(PARENT_NO_OWNER),
        (false, SecretOwner::Project) => Action::Blocked(PARENT_NO_PROJECT),
    }
}

/// Sharing a snapshot's secret: blocked with the snapshot when the snapshot has no holder (it
/// is never swapped, so neither are the rows that wait for it).
fn share_snapshot(owner: SecretOwner, snapshot: &SnapshotRef, snapshot_id: Text) -> Action {
    match (holds(owner, snapshot.user_id.as_deref(), snapshot.project_id.as_deref()), owner) {
        (true, _) => Action::ShareSnapshot(snapshot_id),
        (false, SecretOwner::Service) => Action::Blocked(SNAPSHOT_NO_OWNER),
        (false, SecretOwner::Project) => Action::Blocked(SNAPSHOT_NO_PROJECT),
    }
}

/// Whether a row of project `project` may share the volume's secret under `project`: the same
/// project, byte for byte (the database's collation may fold case and trailing spaces; Keystone
/// and Barbican do not).
fn same_project(volume: &Parent<'_>, project: Option<&str>) -> bool {
    volume.project.is_some() && volume.project == project
}

/// Child rows (snapshots, glance metadata) follow their volume's scope; no volume, no host.
fn parent_in_scope(scope: &Scope, volume: Option<&VolumeRef>) -> bool {
    scope.volume_in_scope(volume.and_then(|v| v.host.as_deref()), volume.and_then(|v| v.cluster_name.as_deref()))
}

/// A snapshot whose volume is in scope (`volume` is `None` when the volume does not exist): it
/// shares the volume's secret when the volume is a unit. A snapshot without a holder of its own
/// never does: the volume's swap only takes snapshots whose owner was granted the secret (under
/// `service`), or that are in the volume's project (under `project`, where a snapshot in
/// another project gets a secret of its own, in its own project).
pub(super) fn snapshot_unit(owner: SecretOwner, s: SnapshotOnly, volume: Option<Parent<'_>>) -> Unit {
    let (action, apart) = match (&volume, &s.volume_id) {
        _ if !holds(owner, s.user_id.as_deref(), s.project_id.as_deref()) => (Action::Blocked(no_holder(owner)), false),
        (Some(v), Some(vid)) if v.zero_and_live => match owner {
            SecretOwner::Project if !same_project(v, s.project_id.as_deref()) => (Action::NewSecret, true),
            _ => (share_volume(owner, v, vid.clone()), false),
        },
        _ => (Action::NewSecret, false),
    };
    Unit {
        table: Table::Snapshots,
        id: s.id,
        host: volume.and_then(|v| v.host).map(Text::from),
        owner: s.user_id,
        project: s.project_id,
        action,
        parent: None,
        apart,
    }
}

/// A glance-metadata row whose volume (directly, or through its snapshot) is in scope. Under
/// `project` a row of a snapshot belongs to the snapshot's project (none when the snapshot row
/// is gone), and follows its volume only when that is the volume's project too.
pub(super) fn glance_unit(
    owner_mode: SecretOwner,
    id: i32,
    volume_id: Option<Text>,
    snapshot_id: Option<Text>,
    snapshot: Option<SnapshotRef>,
    volume: Option<Parent<'_>>,
) -> Unit {
    // The volume the row belongs to: directly, or through its snapshot.
    let owning_volume = volume_id.clone().or_else(|| snapshot.as_ref().and_then(|s| s.volume_id.clone()));
    let owner = match &snapshot {
        Some(s) => s.user_id.clone(),
        None => volume.as_ref().and_then(|v| v.owner).map(Text::from),
    };
    let project = match (owner_mode, &snapshot_id) {
        (SecretOwner::Project, None) => volume.as_ref().and_then(|v| v.project).map(Text::from),
        _ => snapshot.as_ref().and_then(|s| s.project_id.clone()),
    };
    // Under `project`, a snapshot's row in another project than its volume's is not the
    // volume's to rewrite.
    let with_volume = match owner_mode {
        SecretOwner::Service => true,
        SecretOwner::Project => snapshot_id.is_none() || volume.as_ref().is_some_and(|v| same_project(v, project.as_deref())),
    };
    // Image properties become glance metadata: anyone can put the all-zeros ID there. On an
    // encrypted volume or snapshot it is the key Cinder recorded; on an unencrypted one it can
    // only have come from an image, and a secret for it would hand the fixed key to its owner.
    let encrypted = match &snapshot {
        Some(s) => s.encryption_key_id.is_some(),
        None => volume.as_ref().is_some_and(|v| v.encrypted),
    };
    let volume_is_unit = volume.as_ref().is_some_and(|v| v.zero_and_live) && owning_volume.is_some();
    let action = match (&volume, owning_volume, &snapshot, &snapshot_id) {
        (Some(v), Some(vid), _, _) if v.zero_and_live && with_volume => share_volume(owner_mode, v, vid),
        (_, _, Some(s), Some(sid)) if s.is_zero_and_live() => share_snapshot(owner_mode, s, sid.clone()),
        _ if !encrypted => Action::Blocked(UNENCRYPTED_PARENT),
        _ => holder_action(owner_mode, &owner, &project),
    };
    let apart = volume_is_unit && !with_volume && !matches!(action, Action::Blocked(_));
    Unit {
        table: Table::VolumeGlanceMetadata,
        id: Text::from(id.to_string()),
        host: volume.and_then(|v| v.host).map(Text::from),
        owner,
        project,
        action,
        parent: volume_id.or(snapshot_id),
        apart,
    }
}

/// A live, in-scope row on a key other than the all-zeros ID: what `verify` and `rollback` look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub table: Table,
    pub id: String,
    pub key: String,
    pub owner: Option<String>,
    /// The project the row's secret belongs to under `--secret-owner project` (a glance row's:
    /// its snapshot's, else its volume's).
    pub project: Option<String>,
}

/// The next page of one table's rows on other keys, filtered by the same scope rules as units.
pub fn keyed_page(db: &mut Db, scope: &Scope, table: Table, cursor: &mut Cursor) -> Result<Vec<Keyed>> {
    let keyed = |table, id: Text, key: Option<Text>, owner: Option<Text>, project: Option<Text>| {
        key.map(|key| Keyed { table, id: id.into(), key: key.into(), owner: owner.map(String::from), project: project.map(String::from) })
    };
    Ok(match table {
        Table::Volumes => db
            .volumes_page(Keys::Migrated, Live::Only, cursor)?
            .into_iter()
            .filter(|v| scope.volume_in_scope(v.host.as_deref(), v.cluster_name.as_deref()))
            .filter_map(|v| keyed(table, v.id, v.key, v.user_id, v.project_id))
            .collect(),
        Table::Snapshots => db
            .snapshots_page(Keys::Migrated, cursor)?
            .into_iter()
            .filter(|s| parent_in_scope(scope, s.volume.as_ref()))
            .filter_map(|s| keyed(table, s.id, s.key, s.user_id, s.project_id))
            .collect(),
        Table::Backups => db
            .backups_page(Keys::Migrated, Live::Only, cursor)?
            .into_iter()
            .filter(|b| scope.backup_in_scope(b.host.as_deref()))
            .filter_map(|b| keyed(table, b.id, b.key, b.user_id, b.project_id))
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
                let project = match &g.snapshot_id {
                    Some(_) => g.snapshot.as_ref().and_then(|s| s.project_id.clone()),
                    None => g.volume.as_ref().and_then(|v| v.project_id.clone()),
                };
                keyed(table, Text::from(g.id.to_string()), g.key, owner, project)
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use SecretOwner::{Project, Service};

    fn t(s: &str) -> Option<Text> {
        Some(Text::from(s))
    }

    /// A live volume on the all-zeros key, in scope.
    fn volume<'a>(owner: Option<&'a str>, project: Option<&'a str>) -> Parent<'a> {
        Parent { host: Some("h@lvm#p"), owner, project, zero_and_live: true, encrypted: true }
    }

    fn snapshot(user: Option<&str>, project: Option<&str>) -> SnapshotOnly {
        SnapshotOnly { id: Text::from("s1"), volume_id: t("v1"), user_id: user.map(Text::from), project_id: project.map(Text::from), deleted: Some(false) }
    }

    fn snapshot_ref(user: Option<&str>, project: Option<&str>, zero_and_live: bool) -> SnapshotRef {
        SnapshotRef {
            volume_id: t("v1"),
            user_id: user.map(Text::from),
            project_id: project.map(Text::from),
            encryption_key_id: Some(Text::from(if zero_and_live { crate::cinder::ZERO_KEY_ID } else { "other-key" })),
            deleted: Some(false),
        }
    }

    fn volume_facts(user: Option<&str>, project: Option<&str>) -> VolumeFacts {
        VolumeFacts {
            id: Text::from("v1"),
            host: t("h@lvm#p"),
            cluster_name: None,
            user_id: user.map(Text::from),
            project_id: project.map(Text::from),
            zero: Some(true),
            deleted: Some(false),
        }
    }

    fn action_of(item: Option<Item>) -> Action {
        match item {
            Some(Item::Unit(u)) => u.action,
            _ => panic!("not a unit"),
        }
    }

    #[test]
    fn a_snapshot_in_another_project_than_its_volume_gets_its_own_secret_only_under_project() {
        let v = volume(Some("alice"), Some("p1"));
        let u = snapshot_unit(Service, snapshot(Some("alice"), Some("p2")), Some(v));
        assert_eq!((u.action, u.apart), (Action::ShareVolume(Text::from("v1")), false));
        let u = snapshot_unit(Project, snapshot(Some("alice"), Some("p2")), Some(v));
        assert_eq!((u.action.clone(), u.apart), (Action::NewSecret, true));
        assert_eq!(u.holder(Project), Some("p2"));
        assert_eq!(u.holder(Service), Some("alice"));
        // Byte for byte: a collation's idea of equal is not Keystone's.
        let u = snapshot_unit(Project, snapshot(Some("alice"), Some("P1 ")), Some(v));
        assert_eq!((u.action, u.apart), (Action::NewSecret, true));
        // The same project shares, whoever the user.
        let u = snapshot_unit(Project, snapshot(Some("bob"), Some("p1")), Some(v));
        assert_eq!((u.action, u.apart), (Action::ShareVolume(Text::from("v1")), false));
    }

    #[test]
    fn a_null_user_with_a_valid_project_blocks_only_under_service() {
        for user in [None, Some(""), Some("  ")] {
            assert_eq!(action_of(volume_item(&Scope::all_hosts(), Service, volume_facts(user, Some("p1")))), Action::Blocked(NO_OWNER));
            assert_eq!(action_of(volume_item(&Scope::all_hosts(), Project, volume_facts(user, Some("p1")))), Action::NewSecret);
            let v = volume(user, Some("p1"));
            assert_eq!(snapshot_unit(Service, snapshot(user, Some("p1")), Some(v)).action, Action::Blocked(NO_OWNER));
            assert_eq!(snapshot_unit(Project, snapshot(user, Some("p1")), Some(v)).action, Action::ShareVolume(Text::from("v1")));
            // A glance row of the volume follows it.
            let g = glance_unit(Service, 1, t("v1"), None, None, Some(v));
            assert_eq!(g.action, Action::Blocked(PARENT_NO_OWNER));
            let g = glance_unit(Project, 1, t("v1"), None, None, Some(v));
            assert_eq!((g.action, g.project.as_deref()), (Action::ShareVolume(Text::from("v1")), Some("p1")));
            let b = BackupRow { id: Text::from("b1"), host: t("h"), user_id: user.map(Text::from), project_id: t("p1"), key: None, deleted: Some(false) };
            assert_eq!(backup_unit(&Scope::all_hosts(), Project, b).map(|u| u.action), Some(Action::NewSecret));
        }
    }

    #[test]
    fn a_null_or_blank_project_blocks_under_project() {
        for project in [None, Some(""), Some(" ")] {
            assert_eq!(action_of(volume_item(&Scope::all_hosts(), Project, volume_facts(Some("alice"), project))), Action::Blocked(NO_PROJECT));
            assert_eq!(action_of(volume_item(&Scope::all_hosts(), Service, volume_facts(Some("alice"), project))), Action::NewSecret);
            // Its own project blank: blocked, whatever its volume.
            let u = snapshot_unit(Project, snapshot(Some("alice"), project), Some(volume(Some("alice"), Some("p1"))));
            assert_eq!((u.action, u.apart), (Action::Blocked(NO_PROJECT), false));
            // Its volume's project blank: its own secret in its own project.
            let u = snapshot_unit(Project, snapshot(Some("alice"), Some("p1")), Some(volume(Some("alice"), project)));
            assert_eq!(u.action, Action::NewSecret);
            // A glance row of a volume without a project is blocked with it.
            let g = glance_unit(Project, 1, t("v1"), None, None, Some(volume(Some("alice"), project)));
            assert_eq!(g.action, Action::Blocked(PARENT_NO_PROJECT));
            // A glance row of a live zero snapshot without a project (in another project than
            // its volume, as far as bytes go) is blocked with the snapshot.
            let s = snapshot_ref(Some("alice"), project, true);
            let g = glance_unit(Project, 2, None, t("s1"), Some(s), Some(volume(Some("alice"), Some("p1"))));
            assert_eq!(g.action, Action::Blocked(SNAPSHOT_NO_PROJECT));
        }
    }

    #[test]
    fn a_snapshots_glance_row_follows_the_snapshot_when_its_project_differs_from_the_volumes() {
        let v = volume(Some("alice"), Some("p1"));
        // Same project: the volume's swap takes it.
        let g = glance_unit(Project, 2, None, t("s1"), Some(snapshot_ref(Some("bob"), Some("p1"), true)), Some(v));
        assert_eq!((g.action, g.apart), (Action::ShareVolume(Text::from("v1")), false));
        // Another project, the snapshot a unit: shares the snapshot's secret.
        let g = glance_unit(Project, 2, None, t("s1"), Some(snapshot_ref(Some("alice"), Some("p2"), true)), Some(v));
        assert_eq!((g.action, g.project.as_deref(), g.apart), (Action::ShareSnapshot(Text::from("s1")), Some("p2"), true));
        // Another project, the snapshot already migrated: a secret of its own, in p2.
        let g = glance_unit(Project, 2, None, t("s1"), Some(snapshot_ref(Some("alice"), Some("p2"), false)), Some(v));
        assert_eq!((g.action.clone(), g.holder(Project), g.apart), (Action::NewSecret, Some("p2"), true));
        // Under service all three share the volume's, as before.
        for zero in [true, false] {
            let g = glance_unit(Service, 2, None, t("s1"), Some(snapshot_ref(Some("alice"), Some("p2"), zero)), Some(v));
            assert_eq!((g.action, g.apart), (Action::ShareVolume(Text::from("v1")), false));
        }
        // A snapshot row that is gone leaves the glance row without a project under project.
        let g = glance_unit(Project, 2, t("v1"), t("s-gone"), None, Some(v));
        assert_eq!(g.action, Action::Blocked(NO_PROJECT));
    }
}
