//! The census: one pass over Cinder's tables, read in storage order by one or two reader
//! threads, that plans every row (with the rules of `plan`) and counts the whole database on the
//! way. `scan`, `status` and the counts of `migrate` and `verify` are censuses.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::parents::{self, Parent, Parents};
use super::tally::{Census, Tally};
use super::rules::{backup_unit, glance_unit, snapshot_unit, volume_item, Item};
use crate::cinder::{SecretOwner, Table};
use crate::db::{BackupRow, Cursor, Db, Detail, GlanceOnly, SnapshotOnly, VolumeFacts};
use crate::error::Result;
use crate::scope::Scope;

/// Walks every table, calling `each` for every in-scope unit and every reported-but-untouched
/// row, in order, planned for `owner` (`--secret-owner`), and counts the whole database's rows
/// on the all-zeros key on the way. See [`walk_with`]; here the items themselves cross from the
/// readers to this thread.
pub fn walk(db: &mut Db, scope: &Scope, owner: SecretOwner, lookup: Lookup, mut each: impl FnMut(Item) -> Result<()>) -> Result<Census> {
    let collect = |item: Item, page: &mut Vec<Item>| {
        page.push(item);
        Ok(())
    };
    let (_, census) =
        walk_with(db, scope, owner, Detail::Rows, lookup, &collect, |page: Vec<Item>, _| page.into_iter().try_for_each(&mut each))?;
    Ok(census)
}

/// A [`walk`] that only counts: the units in scope, and the whole database's rows.
pub fn tally(db: &mut Db, scope: &Scope, owner: SecretOwner, lookup: Lookup) -> Result<(Tally, Census)> {
    walk_with(db, scope, owner, Detail::Counts, lookup, &|_: Item, _: &mut ()| Ok(()), |(), _| Ok(()))
}

/// How a walk finds the volume of each child row (snapshot, glance metadata). All plan alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Keep every in-scope volume's few facts from the volumes pass (about 32 bytes a volume):
    /// the fastest, as every table is read once in order, but memory grows with the volumes
    /// in scope (about 34 MB a million). For the reports, `scan` and `status`.
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
    /// 8 MB), so that one host's share of even a large cloud is counted in one pass, and memory
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
/// reports that only count them (under [`SecretOwner::Project`] the projects are read all the
/// same, as they decide the plan). `migrate` plans page by page with [`page`] instead, which reads
/// each child's volume as it is then.
pub fn walk_with<T: Default + Send>(
    db: &mut Db,
    scope: &Scope,
    owner: SecretOwner,
    detail: Detail,
    lookup: Lookup,
    collect: Collect<T>,
    mut consume: impl FnMut(T, u64) -> Result<()>,
) -> Result<(Tally, Census)> {
    let detail = match (owner, detail) {
        (SecretOwner::Project, Detail::Counts) => Detail::Holders,
        _ => detail,
    };
    let backend = db.backend;
    let mut split = match backend {
        crate::db::Backend::Sqlite => Some((db.another()?, db.halves()?)),
        _ => None,
    };
    let mut dbs: Vec<(&mut Db, Part)> = match &mut split {
        Some((upper, mids)) => vec![(db, Part::Lower(Some(*mids))), (upper, Part::Upper(*mids))],
        None => vec![(db, Part::Lower(None))],
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
        let plan = |rows: Vec<VolumeFacts>| plan_volumes(rows, scope, owner, &mut parents, collect);
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
            let own = by_page.then(|| page_parents(db, scope, owner, clusters, detail, rows.iter().filter_map(SnapshotOnly::live_volume_id)));
            Ok((rows, own.transpose()?))
        };
        let glance = |db: &mut Db, c: &mut Cursor| {
            let rows = db.zero_glance_page(c, detail)?;
            let own = by_page.then(|| page_parents(db, scope, owner, clusters, detail, rows.iter().filter_map(GlanceOnly::live_volume_id)));
            Ok((rows, own.transpose()?))
        };
        let _ = send_table(db, half, 1, tx, snapshots, |(rows, own)| plan_snapshots(rows, scope, owner, own.as_ref().map_or(parents, std::slice::from_ref), collect))?
            && send_table(db, half, 2, tx, glance, |(rows, own)| plan_glance(rows, scope, owner, own.as_ref().map_or(parents, std::slice::from_ref), collect))?
            && send_table(db, half, 3, tx, |db, c| db.zero_backups_page(c, detail), |rows| plan_backups(rows, scope, owner, collect))?;
        Ok(())
    })?;
    Ok((tally, census))
}

/// The in-scope volumes among those with these IDs, indexed as the volumes pass of a
/// [`Lookup::Index`] walk would have kept them.
fn page_parents<'a>(
    db: &mut Db,
    scope: &Scope,
    owner: SecretOwner,
    clusters: bool,
    detail: Detail,
    ids: impl Iterator<Item = &'a str>,
) -> Result<Parents> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    let mut parents = Parents::new(db.backend, usize::MAX);
    for v in db.volume_facts_by_id(&ids, clusters, detail)? {
        keep_in_scope(&mut parents, scope, owner, &v);
    }
    parents.seal();
    Ok(parents)
}

/// Runs `read` on a thread per connection and takes their pages [`InTurn`]; returns what each
/// returned, in the connections' order. When `take` fails, stops taking (dropping the channels,
/// which stops the readers) and returns its error; a read error is returned rather than the
/// short result it leads to.
fn in_parallel<T: Send, R: Send>(
    dbs: &mut [(&mut Db, Part)],
    take: &mut impl FnMut(Planned<T>) -> Result<()>,
    read: impl Fn(&mut Db, Part, &SyncSender<Message<T>>) -> Result<R> + Sync,
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
enum Part {
    Lower(Option<[i64; 4]>),
    Upper([i64; 4]),
}

/// Reads, plans and sends every page of this reader's part of one table, then
/// [`Message::End`]; false when the merge has stopped listening.
fn send_table<P, T>(
    db: &mut Db,
    half: Part,
    table: usize,
    tx: &SyncSender<Message<T>>,
    read: impl Fn(&mut Db, &mut Cursor) -> Result<P>,
    mut plan: impl FnMut(P) -> Result<Planned<T>>,
) -> Result<bool> {
    let mut cursor = Cursor::Start;
    match half {
        Part::Lower(mids) => db.upto = mids.map(|m| m[table]),
        Part::Upper(mids) => cursor = Cursor::Int(mids[table]),
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

fn plan_volumes<T: Default>(
    rows: Vec<VolumeFacts>,
    scope: &Scope,
    owner: SecretOwner,
    parents: &mut Parents,
    collect: Collect<T>,
) -> Result<Planned<T>> {
    let mut page = Planned::default();
    for v in rows {
        let zero_and_live = v.is_zero_and_live();
        if v.zero == Some(true) {
            page.census.count(Table::Volumes, v.deleted);
        }
        keep_in_scope(parents, scope, owner, &v);
        if zero_and_live {
            if let Some(item) = volume_item(scope, owner, v) {
                page.add(item, collect)?;
            }
        }
    }
    Ok(page)
}

/// Indexes a volume when it is in scope: what child rows are planned from, however they find it.
/// Its project only under `project`, the only rules that look at it: under `service` a scan
/// keeps one string fewer per volume.
fn keep_in_scope(parents: &mut Parents, scope: &Scope, owner: SecretOwner, v: &VolumeFacts) {
    if scope.volume_in_scope(v.host.as_deref(), v.cluster_name.as_deref()) {
        let project = match owner {
            SecretOwner::Project => v.project_id.as_deref(),
            SecretOwner::Service => None,
        };
        parents.insert(&v.id, v.host.as_deref(), v.user_id.as_deref(), project, v.is_zero_and_live(), v.zero.is_some());
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

fn plan_snapshots<T: Default>(
    rows: Vec<SnapshotOnly>,
    scope: &Scope,
    owner: SecretOwner,
    parents: &[Parents],
    collect: Collect<T>,
) -> Result<Planned<T>> {
    let mut page = Planned::default();
    let found = parents::find_all(parents, rows.iter().map(SnapshotOnly::live_volume_id));
    for (s, found) in rows.into_iter().zip(found) {
        page.census.count(Table::Snapshots, s.deleted);
        if s.deleted != Some(false) {
            continue;
        }
        if let Some(parent) = child_in_scope(scope, found) {
            page.add(Item::Unit(snapshot_unit(owner, s, parent)), collect)?;
        }
    }
    Ok(page)
}

fn plan_glance<T: Default>(
    rows: Vec<GlanceOnly>,
    scope: &Scope,
    owner: SecretOwner,
    parents: &[Parents],
    collect: Collect<T>,
) -> Result<Planned<T>> {
    let mut page = Planned::default();
    let found = parents::find_all(parents, rows.iter().map(GlanceOnly::live_volume_id));
    for (g, found) in rows.into_iter().zip(found) {
        page.census.count(Table::VolumeGlanceMetadata, g.deleted);
        if g.deleted != Some(false) {
            continue;
        }
        if let Some(parent) = child_in_scope(scope, found) {
            page.add(Item::Unit(glance_unit(owner, g.id, g.volume_id, g.snapshot_id, g.snapshot, parent)), collect)?;
        }
    }
    Ok(page)
}

fn plan_backups<T: Default>(rows: Vec<BackupRow>, scope: &Scope, owner: SecretOwner, collect: Collect<T>) -> Result<Planned<T>> {
    let mut page = Planned::default();
    for b in rows {
        page.census.count(Table::Backups, b.deleted);
        if b.deleted == Some(false) {
            if let Some(unit) = backup_unit(scope, owner, b) {
                page.add(Item::Unit(unit), collect)?;
            }
        }
    }
    Ok(page)
}
