//! The units of work: which rows on the all-zeros key are in scope, and what `migrate` does with
//! each. `scan` prints this plan; `migrate` walks the same plan and carries it out.
//!
//! A volume gets a new secret, shared by its all-zeros snapshots and its glance-metadata rows
//! (and those of its snapshots). A snapshot or glance-metadata row whose volume is not itself a
//! unit gets a secret of its own (a snapshot's glance rows share the snapshot's). Each backup gets
//! its own.

mod parents;

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::db::{BackupRow, Cursor, Db, Detail, GlanceOnly, GlanceRow, Keys, Live, SnapshotOnly, SnapshotRef, TableCounts, VolumeFacts, VolumeRef};
use crate::cinder::{is_owner, Table};
use crate::error::Result;
use crate::scope::Scope;
use crate::db::text::Text;
pub use parents::Parent;
use parents::Parents;

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
    /// The `user_id` that must be able to read the new secret.
    pub owner: Option<Text>,
    pub project: Option<Text>,
    pub action: Action,
    /// The volume or snapshot a glance-metadata row belongs to (its id is only a per-database
    /// integer); `None` for other tables.
    pub parent: Option<Text>,
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
const UNENCRYPTED_PARENT: &str =
    "its volume or snapshot is not encrypted, so the all-zeros ID came from an image property; a secret would give its owner the fixed key";
pub const NULL_HOST: &str = "volume host is NULL; only --all-hosts migrates it";

fn owner_action(owner: &Option<Text>) -> Action {
    match owner {
        Some(o) if is_owner(o) => Action::NewSecret,
        _ => Action::Blocked(NO_OWNER),
    }
}

/// Whole-database counts of rows on the all-zeros key, seen by a [`walk`] on its way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub live: TableCounts,
    pub deleted: TableCounts,
}

impl Census {
    fn merge(&mut self, other: &Census) {
        self.live.merge(&other.live);
        self.deleted.merge(&other.deleted);
    }

    /// Counts a row on the all-zeros key. NULL `deleted` counts as neither, as Cinder's
    /// `deleted = false` and `deleted = true` both leave it out.
    fn count(&mut self, table: Table, deleted: Option<bool>) {
        match deleted {
            Some(false) => *self.live.get_mut(table) += 1,
            Some(true) => *self.deleted.get_mut(table) += 1,
            None => {}
        }
    }
}

/// Walks every table, calling `each` for every in-scope unit and every reported-but-untouched
/// row, in order, and counts the whole database's rows on the all-zeros key on the way. See
/// [`walk_with`]; here the items themselves cross from the readers to this thread.
pub fn walk(db: &mut Db, scope: &Scope, lookup: Lookup, mut each: impl FnMut(Item) -> Result<()>) -> Result<Census> {
    let collect = |item: Item, page: &mut Vec<Item>| {
        page.push(item);
        Ok(())
    };
    let (_, census) =
        walk_with(db, scope, Detail::Rows, lookup, &collect, |page: Vec<Item>, _| page.into_iter().try_for_each(&mut each))?;
    Ok(census)
}

/// A [`walk`] that only counts: the units in scope, and the whole database's rows.
pub fn tally(db: &mut Db, scope: &Scope, lookup: Lookup) -> Result<(Tally, Census)> {
    walk_with(db, scope, Detail::Counts, lookup, &|_: Item, _: &mut ()| Ok(()), |(), _| Ok(()))
}

/// How a walk finds the volume of each child row (snapshot, glance metadata). All plan alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Keep every in-scope volume's few facts from the volumes pass (about 28 bytes a volume):
    /// the fastest, as every table is read once in order, but memory grows with the volumes
    /// in scope (about 30 MB a million). For the reports, `scan` and `status`.
    Index,
    /// As [`Lookup::Index`] while at most this many volumes are in scope; past that, the index
    /// is dropped and the walk goes on [`Lookup::ByPage`]. For `migrate` and `verify`, whose
    /// memory must not grow with the database, while one host's share stays fast.
    IndexUpTo(usize),
    /// Read the volumes of each page of child rows by ID: memory stays the same however large
    /// the database, at the cost of random reads (about 3.5 s more for a million child rows on
    /// SQLite).
    ByPage,
}

impl Lookup {
    /// What `migrate` and `verify` count with: an index of up to 250,000 volumes in scope (about
    /// 7 MB), so that one host's share of even a large cloud is counted in one pass, and memory
    /// stops growing there.
    pub const BOUNDED: Lookup = Lookup::IndexUpTo(250_000);

    /// The most volumes each of `readers` indexes before giving up on the index.
    fn limit(self, readers: usize) -> usize {
        match self {
            Lookup::Index => usize::MAX,
            Lookup::IndexUpTo(n) => n / readers.max(1),
            Lookup::ByPage => 0,
        }
    }
}

/// What a reader thread does with each item of a page, into a value made for that page.
pub type Collect<'a, T> = &'a (dyn Fn(Item, &mut T) -> Result<()> + Sync);

/// The work of a report (`scan`, `status`, `verify`), done where the rows are read. Rows are
/// streamed a page at a time, each table read once in storage order: volumes first (every row,
/// each reader keeping the in-scope ones' few facts in memory, as far as `lookup` allows), then
/// the child tables, which look their volume up in what the readers kept (or read each page's
/// volumes by ID). Each reader thread reads, decodes and plans
/// its pages and hands every item to `collect` (rendering a report row, say); this thread
/// passes each page's value to `consume` in order, with its number of items. On SQLite, where
/// reading and decoding rows is most of the work, two readers on two connections each take one
/// half of every table; their pages are taken in turn (so the order of a report does not depend
/// on timing), at most two waiting per reader. Returns the units' tally and the census of the
/// whole database. With [`Detail::Counts`], the items' IDs and projects may be left empty: for
/// reports that only count them. `migrate` plans page by page with [`page`] instead, which reads
/// each child's volume as it is then.
pub fn walk_with<T: Default + Send>(
    db: &mut Db,
    scope: &Scope,
    detail: Detail,
    lookup: Lookup,
    collect: Collect<T>,
    mut consume: impl FnMut(T, u64) -> Result<()>,
) -> Result<(Tally, Census)> {
    let backend = db.backend;
    let mut split = match backend {
        crate::db::Backend::Sqlite => Some((db.another()?, db.halves()?)),
        _ => None,
    };
    let mut dbs: Vec<(&mut Db, Half)> = match &mut split {
        Some((upper, mids)) => vec![(db, Half::Lower(Some(*mids))), (upper, Half::Upper(*mids))],
        None => vec![(db, Half::Lower(None))],
    };
    let (mut tally, mut census) = (Tally::default(), Census::default());
    let mut take = |page: Planned<T>| -> Result<()> {
        tally.merge(&page.tally);
        census.merge(&page.census);
        consume(page.out, page.tally.items())
    };
    // First the volumes, each reader keeping its in-scope volumes' facts ...
    let clusters = scope.reads_clusters();
    let limit = lookup.limit(dbs.len());
    let parents = in_parallel(&mut dbs, &mut take, |db, half, tx| {
        let mut parents = Parents::new(backend, limit);
        let plan = |rows: Vec<VolumeFacts>| plan_volumes(rows, scope, &mut parents, collect);
        // Stopped early only when the merge stopped taking pages, and then `in_parallel` fails.
        let _ = send_table(db, half, 0, tx, |db, c| db.volume_facts_page(c, clusters, detail), plan)?;
        parents.seal();
        Ok(parents)
    })?;
    // ... then the child tables, every reader looking volumes up in what all of them kept, or,
    // when one of them kept too many, reading each page's volumes by ID.
    let by_page = parents.iter().any(Parents::abandoned);
    if by_page && lookup != Lookup::ByPage {
        log::debug!("More than {limit} volumes in scope per reader: reading child rows' volumes page by page");
    }
    let parents = parents.as_slice();
    in_parallel(&mut dbs, &mut take, |db, half, tx| {
        let snapshots = |db: &mut Db, c: &mut Cursor| {
            let rows = db.zero_snapshots_page(c, detail)?;
            let own = by_page.then(|| page_parents(db, scope, clusters, rows.iter().filter_map(SnapshotOnly::live_volume_id)));
            Ok((rows, own.transpose()?))
        };
        let glance = |db: &mut Db, c: &mut Cursor| {
            let rows = db.zero_glance_page(c, detail)?;
            let own = by_page.then(|| page_parents(db, scope, clusters, rows.iter().filter_map(GlanceOnly::live_volume_id)));
            Ok((rows, own.transpose()?))
        };
        let _ = send_table(db, half, 1, tx, snapshots, |(rows, own)| plan_snapshots(rows, scope, own.as_ref().map_or(parents, std::slice::from_ref), collect))?
            && send_table(db, half, 2, tx, glance, |(rows, own)| plan_glance(rows, scope, own.as_ref().map_or(parents, std::slice::from_ref), collect))?
            && send_table(db, half, 3, tx, |db, c| db.zero_backups_page(c, detail), |rows| plan_backups(rows, scope, collect))?;
        Ok(())
    })?;
    Ok((tally, census))
}

/// The in-scope volumes among those with these IDs, indexed as the volumes pass of a
/// [`Lookup::Index`] walk would have kept them.
fn page_parents<'a>(db: &mut Db, scope: &Scope, clusters: bool, ids: impl Iterator<Item = &'a str>) -> Result<Parents> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    let mut parents = Parents::new(db.backend, usize::MAX);
    for v in db.volume_facts_by_id(&ids, clusters)? {
        keep_in_scope(&mut parents, scope, &v);
    }
    parents.seal();
    Ok(parents)
}

/// Runs `read` on a thread per connection and takes their pages [`InTurn`]; returns what each
/// returned, in the connections' order. When `take` fails, stops taking (dropping the channels,
/// which stops the readers) and returns its error; a read error is returned rather than the
/// short result it leads to.
fn in_parallel<T: Send, R: Send>(
    dbs: &mut [(&mut Db, Half)],
    take: &mut impl FnMut(Planned<T>) -> Result<()>,
    read: impl Fn(&mut Db, Half, &SyncSender<Message<T>>) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    std::thread::scope(|s| {
        let read = &read;
        let mut readers = Vec::new();
        let mut receivers = Vec::new();
        for (db, half) in dbs.iter_mut() {
            let (tx, rx) = sync_channel::<Message<T>>(2);
            let half = *half;
            readers.push(s.spawn(move || read(db, half, &tx)));
            receivers.push(rx);
        }
        let taken = InTurn::new(receivers).try_for_each(&mut *take);
        let mut results = Vec::new();
        let mut read = Ok(());
        for reader in readers {
            match reader.join() {
                Ok(Ok(r)) => results.push(r),
                Ok(Err(e)) => read = read.and(Err(e)),
                Err(_) => read = read.and(Err(crate::error::Error::Internal("database reader thread panicked".into()))),
            }
        }
        read.and(taken).map(|()| results)
    })
}

/// One page, planned by a reader: what `collect` made of its items, and its counts.
#[derive(Default)]
struct Planned<T> {
    out: T,
    tally: Tally,
    census: Census,
}

impl<T> Planned<T> {
    fn add(&mut self, item: Item, collect: Collect<T>) -> Result<()> {
        self.tally.add(&item);
        collect(item, &mut self.out)
    }
}

/// What travels from a reader thread to the merge.
enum Message<T> {
    Page(Box<Planned<T>>),
    /// This reader has sent all its pages of the current table.
    End,
}

/// Which rows of each table a reader takes: all of them (`Lower(None)`), those up to the
/// midpoints (`Lower(Some)`), or those after them (`Upper`), in [`Db::halves`]'s order.
#[derive(Clone, Copy)]
enum Half {
    Lower(Option<[i64; 4]>),
    Upper([i64; 4]),
}

/// Reads, plans and sends every page of this reader's part of one table, then
/// [`Message::End`]; false when the merge has stopped listening.
fn send_table<P, T>(
    db: &mut Db,
    half: Half,
    table: usize,
    tx: &SyncSender<Message<T>>,
    read: impl Fn(&mut Db, &mut Cursor) -> Result<P>,
    mut plan: impl FnMut(P) -> Result<Planned<T>>,
) -> Result<bool> {
    let mut cursor = Cursor::Start;
    match half {
        Half::Lower(mids) => db.upto = mids.map(|m| m[table]),
        Half::Upper(mids) => cursor = Cursor::Int(mids[table]),
    }
    let mut sent = || -> Result<bool> {
        while cursor != Cursor::End {
            let page = plan(read(db, &mut cursor)?)?;
            if tx.send(Message::Page(Box::new(page))).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let sent = sent();
    db.upto = None;
    Ok(sent? && tx.send(Message::End).is_ok())
}

/// The readers' pages, table by table, taking one page from each reader in turn: the same order
/// on every run, however fast each reader is. A reader that stops (done, or failed: its error is
/// reported once it is joined) is skipped from then on.
struct InTurn<T> {
    readers: Vec<Receiver<Message<T>>>,
    /// The reader has sent [`Message::End`] for the current table.
    ended: Vec<bool>,
    closed: Vec<bool>,
    turn: usize,
}

impl<T> InTurn<T> {
    fn new(readers: Vec<Receiver<Message<T>>>) -> InTurn<T> {
        let n = readers.len();
        InTurn { readers, ended: vec![false; n], closed: vec![false; n], turn: 0 }
    }
}

impl<T> Iterator for InTurn<T> {
    type Item = Planned<T>;

    fn next(&mut self) -> Option<Planned<T>> {
        loop {
            if self.ended.iter().all(|e| *e) {
                // Every reader is at the end of this table: on to the next, with those still open.
                if self.closed.iter().all(|c| *c) {
                    return None;
                }
                self.ended.clone_from(&self.closed);
                self.turn = 0;
            }
            let i = self.turn;
            self.turn = (self.turn + 1) % self.readers.len();
            if self.ended[i] {
                continue;
            }
            match self.readers[i].recv() {
                Ok(Message::End) => self.ended[i] = true,
                Ok(Message::Page(page)) => return Some(*page),
                Err(_) => {
                    self.ended[i] = true;
                    self.closed[i] = true;
                }
            }
        }
    }
}

fn plan_volumes<T: Default>(rows: Vec<VolumeFacts>, scope: &Scope, parents: &mut Parents, collect: Collect<T>) -> Result<Planned<T>> {
    let mut page = Planned::default();
    for v in rows {
        let zero_and_live = v.is_zero_and_live();
        if v.zero == Some(true) {
            page.census.count(Table::Volumes, v.deleted);
        }
        keep_in_scope(parents, scope, &v);
        if zero_and_live {
            if let Some(item) = volume_item(scope, v) {
                page.add(item, collect)?;
            }
        }
    }
    Ok(page)
}

/// Indexes a volume when it is in scope: what child rows are planned from, however they find it.
fn keep_in_scope(parents: &mut Parents, scope: &Scope, v: &VolumeFacts) {
    if scope.volume_in_scope(v.host.as_deref(), v.cluster_name.as_deref()) {
        parents.insert(&v.id, v.host.as_deref(), v.user_id.as_deref(), v.is_zero_and_live(), v.zero.is_some());
    }
}

/// In scope when the volume is; a row without a volume only with --all-hosts.
fn child_in_scope<'a>(scope: &Scope, found: Option<Parent<'a>>) -> Option<Option<Parent<'a>>> {
    match found {
        Some(p) => Some(Some(p)),
        None if scope.all => Some(None),
        None => None,
    }
}

fn plan_snapshots<T: Default>(rows: Vec<SnapshotOnly>, scope: &Scope, parents: &[Parents], collect: Collect<T>) -> Result<Planned<T>> {
    let mut page = Planned::default();
    let found = parents::find_all(parents, rows.iter().map(SnapshotOnly::live_volume_id));
    for (s, found) in rows.into_iter().zip(found) {
        page.census.count(Table::Snapshots, s.deleted);
        if s.deleted != Some(false) {
            continue;
        }
        if let Some(parent) = child_in_scope(scope, found) {
            page.add(Item::Unit(snapshot_unit(s, parent)), collect)?;
        }
    }
    Ok(page)
}

fn plan_glance<T: Default>(rows: Vec<GlanceOnly>, scope: &Scope, parents: &[Parents], collect: Collect<T>) -> Result<Planned<T>> {
    let mut page = Planned::default();
    let found = parents::find_all(parents, rows.iter().map(GlanceOnly::live_volume_id));
    for (g, found) in rows.into_iter().zip(found) {
        page.census.count(Table::VolumeGlanceMetadata, g.deleted);
        if g.deleted != Some(false) {
            continue;
        }
        if let Some(parent) = child_in_scope(scope, found) {
            page.add(Item::Unit(glance_unit(g.id, g.volume_id, g.snapshot_id, g.snapshot, parent)), collect)?;
        }
    }
    Ok(page)
}

fn plan_backups<T: Default>(rows: Vec<BackupRow>, scope: &Scope, collect: Collect<T>) -> Result<Planned<T>> {
    let mut page = Planned::default();
    for b in rows {
        page.census.count(Table::Backups, b.deleted);
        if b.deleted == Some(false) {
            if let Some(unit) = backup_unit(scope, b) {
                page.add(Item::Unit(unit), collect)?;
            }
        }
    }
    Ok(page)
}

/// The items of the next page of one table (possibly none, when no row of the page is in
/// scope); `cursor` becomes [`Cursor::End`] after the last page. Each child row's volume is
/// read with it, as it is now.
pub fn page(db: &mut Db, scope: &Scope, table: Table, cursor: &mut Cursor) -> Result<Vec<Item>> {
    Ok(match table {
        Table::Volumes => db
            .volumes_page(Keys::Zero, Live::Only, cursor)?
            .into_iter()
            .filter_map(|v| volume_item(scope, v.into()))
            .collect(),
        Table::Snapshots => db
            .snapshots_page(Keys::Zero, cursor)?
            .into_iter()
            .filter(|s| parent_in_scope(scope, s.volume.as_ref()))
            .map(|s| {
                let parent = s.volume.as_ref().map(Parent::from);
                let snapshot =
                    SnapshotOnly { id: s.id, volume_id: s.volume_id, user_id: s.user_id, project_id: s.project_id, deleted: Some(false) };
                Item::Unit(snapshot_unit(snapshot, parent))
            })
            .collect(),
        Table::Backups => db
            .backups_page(Keys::Zero, Live::Only, cursor)?
            .into_iter()
            .filter_map(|b| backup_unit(scope, b).map(Item::Unit))
            .collect(),
        Table::VolumeGlanceMetadata => db
            .glance_metadata_page(Keys::Zero, cursor)?
            .into_iter()
            .filter(|g| parent_in_scope(scope, g.volume.as_ref()))
            .map(|g: GlanceRow| {
                let parent = g.volume.as_ref().map(Parent::from);
                Item::Unit(glance_unit(g.id, g.volume_id, g.snapshot_id, g.snapshot, parent))
            })
            .collect(),
    })
}

impl<'a> From<&'a VolumeRef> for Parent<'a> {
    fn from(v: &'a VolumeRef) -> Parent<'a> {
        Parent {
            host: v.host.as_deref(),
            owner: v.user_id.as_deref(),
            zero_and_live: v.is_zero_and_live(),
            encrypted: v.encryption_key_id.is_some(),
        }
    }
}

fn volume_item(scope: &Scope, v: VolumeFacts) -> Option<Item> {
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
fn share_volume(volume: &Parent<'_>, volume_id: Text) -> Action {
    match &volume.owner {
        Some(u) if is_owner(u) => Action::ShareVolume(volume_id),
        _ => Action::Blocked(PARENT_NO_OWNER),
    }
}

/// Sharing a snapshot's secret: blocked with the snapshot when the snapshot has no owner (it is
/// never swapped, so neither are the rows that wait for it).
fn share_snapshot(snapshot: &SnapshotRef, snapshot_id: Text) -> Action {
    match &snapshot.user_id {
        Some(u) if is_owner(u) => Action::ShareSnapshot(snapshot_id),
        _ => Action::Blocked(SNAPSHOT_NO_OWNER),
    }
}

/// Child rows (snapshots, glance metadata) follow their volume's scope; no volume, no host.
fn parent_in_scope(scope: &Scope, volume: Option<&VolumeRef>) -> bool {
    scope.volume_in_scope(volume.and_then(|v| v.host.as_deref()), volume.and_then(|v| v.cluster_name.as_deref()))
}

/// A snapshot whose volume is in scope (`volume` is `None` when the volume does not exist): it
/// shares the volume's secret when the volume is a unit. A snapshot without an owner of its own
/// never does: the volume's swap only takes snapshots whose owner was granted the secret.
fn snapshot_unit(s: SnapshotOnly, volume: Option<Parent<'_>>) -> Unit {
    let action = match (&volume, &s.volume_id) {
        _ if !s.user_id.as_deref().is_some_and(is_owner) => Action::Blocked(NO_OWNER),
        (Some(v), Some(vid)) if v.zero_and_live => share_volume(v, vid.clone()),
        _ => owner_action(&s.user_id),
    };
    Unit {
        table: Table::Snapshots,
        id: s.id,
        host: volume.and_then(|v| v.host).map(Text::from),
        owner: s.user_id,
        project: s.project_id,
        action,
        parent: None,
    }
}

/// A glance-metadata row whose volume (directly, or through its snapshot) is in scope.
fn glance_unit(
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
    let project = snapshot.as_ref().and_then(|s| s.project_id.clone());
    // Image properties become glance metadata: anyone can put the all-zeros ID there. On an
    // encrypted volume or snapshot it is the key Cinder recorded; on an unencrypted one it can
    // only have come from an image, and a secret for it would hand the fixed key to its owner.
    let encrypted = match &snapshot {
        Some(s) => s.encryption_key_id.is_some(),
        None => volume.as_ref().is_some_and(|v| v.encrypted),
    };
    let action = match (&volume, owning_volume, &snapshot, &snapshot_id) {
        (Some(v), Some(vid), _, _) if v.zero_and_live => share_volume(v, vid),
        (_, _, Some(s), Some(sid)) if s.is_zero_and_live() => share_snapshot(s, sid.clone()),
        _ if !encrypted => Action::Blocked(UNENCRYPTED_PARENT),
        _ => owner_action(&owner),
    };
    Unit {
        table: Table::VolumeGlanceMetadata,
        id: Text::from(id.to_string()),
        host: volume.and_then(|v| v.host).map(Text::from),
        owner,
        project,
        action,
        parent: volume_id.or(snapshot_id),
    }
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
    let keyed = |table, id: Text, key: Option<Text>, owner: Option<Text>| {
        key.map(|key| Keyed { table, id: id.into(), key: key.into(), owner: owner.map(String::from) })
    };
    Ok(match table {
        Table::Volumes => db
            .volumes_page(Keys::Migrated, Live::Only, cursor)?
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
            .backups_page(Keys::Migrated, Live::Only, cursor)?
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
                keyed(table, Text::from(g.id.to_string()), g.key, owner)
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
    fn merge(&mut self, other: &Tally) {
        for table in Table::ALL {
            let (to, from) = (self.table_mut(table), other.table(table));
            to.total += from.total;
            to.new_secret += from.new_secret;
            to.shared += from.shared;
            to.blocked += from.blocked;
        }
        self.skipped += other.skipped;
    }

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

    /// Units and skipped rows: every item counted.
    pub fn items(&self) -> u64 {
        u64::try_from(self.units() + self.skipped).unwrap_or(0)
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
