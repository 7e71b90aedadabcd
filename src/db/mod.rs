//! Cinder's database on SQLite, MySQL/MariaDB or PostgreSQL, through one connection type.
//!
//! Rows are streamed in keyset-paginated batches (`WHERE id > last ORDER BY id LIMIT n`), never
//! loaded whole. A read-only connection (scan, status) is enforced by the database itself:
//! SQLite opens the file with `mode=ro`, MySQL and PostgreSQL set the session read-only.

pub mod schema;
pub mod swap;
pub mod url;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable};
use diesel::{MysqlConnection, PgConnection, SqliteConnection};

use crate::cinder::{Table, GLANCE_KEY, ZERO_KEY_ID};
use crate::error::{Error, Result};
use crate::text::Text;
use schema::{backups, snapshots, volume_glance_metadata as vgm, volumes};
pub use url::{Backend, DbUrl};

/// Rows fetched per query while streaming.
pub const BATCH: i64 = 2000;

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Mysql(MysqlConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// A connection plus the URL it came from (password removed), for error messages.
pub struct Db {
    pub conn: AnyConnection,
    pub url: String,
    pub backend: Backend,
    /// Where this connection came from, for [`Db::another`].
    source: DbUrl,
    access: Access,
    /// When set, SQLite page reads stop at this rowid (glance metadata at this id): one of two
    /// readers splitting a table (see [`Db::halves`]).
    pub upto: Option<i64>,
    /// A SQLite database that stores text as UTF-8 (every Cinder database SQLAlchemy made):
    /// censuses read text columns as their bytes (see [`Columns::sql`]).
    utf8_bytes: bool,
}

impl Db {
    pub fn connect(url: &DbUrl, access: Access) -> Result<Db> {
        let fail = |message: String| Error::Database { url: url.redacted.clone(), message };
        let conn = match url.backend {
            Backend::Sqlite => {
                configure_sqlite();
                let path = std::path::Path::new(url.connection_string());
                if !path.is_file() {
                    return Err(fail(format!("no such file: {}", path.display())));
                }
                let target = match access {
                    Access::ReadOnly => sqlite_read_only_uri(path),
                    Access::ReadWrite => url.connection_string().to_string(),
                };
                let mut conn = SqliteConnection::establish(&target).map_err(|e| fail(e.to_string()))?;
                // Cinder writes while we run: wait for its locks instead of failing at once.
                // A small page cache (256 KiB, SQLite's default is 2 MB): keymigrate reads each
                // table once in order and looks rows up at random, so a bigger cache holds
                // pages that are not read again, and the memory stays ours for the whole run
                // (5 MB less for a report, 10 MB less for migrate's counts on a million
                // volumes; no slower, as the kernel's page cache still holds the file).
                conn.batch_execute("PRAGMA busy_timeout = 30000; PRAGMA cache_size = -256;").map_err(|e| fail(e.to_string()))?;
                AnyConnection::Sqlite(conn)
            }
            Backend::Mysql => {
                let mut conn =
                    MysqlConnection::establish(url.connection_string()).map_err(|e| fail(e.to_string()))?;
                if url.require_tls && !mysql_session_is_encrypted(&mut conn) {
                    // libmariadb ignores diesel's ssl_mode: check what the session really is.
                    return Err(fail("TLS was requested but the connection is not encrypted".into()));
                }
                if access == Access::ReadOnly {
                    conn.batch_execute("SET SESSION TRANSACTION READ ONLY").map_err(|e| fail(e.to_string()))?;
                }
                AnyConnection::Mysql(conn)
            }
            Backend::Postgres => {
                let mut conn = PgConnection::establish(url.connection_string()).map_err(|e| fail(e.to_string()))?;
                if access == Access::ReadOnly {
                    conn.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                        .map_err(|e| fail(e.to_string()))?;
                }
                AnyConnection::Postgresql(conn)
            }
        };
        let mut db = Db { conn, url: url.redacted.clone(), backend: url.backend, source: url.clone(), access, upto: None, utf8_bytes: false };
        db.check_schema()?;
        db.utf8_bytes = db.backend == Backend::Sqlite && db.sqlite_encoding()? == "UTF-8";
        Ok(db)
    }

    /// A second connection to the same database, with the same access.
    pub fn another(&self) -> Result<Db> {
        Db::connect(&self.source, self.access)
    }

    /// Where to split each census table between two readers on SQLite: the midpoint of its
    /// rowids (of `id` for glance metadata), in the order volumes, snapshots, glance metadata,
    /// backups. The first reader takes rows up to it, the second the rows after.
    pub fn halves(&mut self) -> Result<[i64; 4]> {
        #[derive(QueryableByName)]
        struct Bounds {
            #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
            lo: Option<i64>,
            #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
            hi: Option<i64>,
        }
        let mut mids = [0i64; 4];
        let queries = [
            "SELECT (SELECT min(rowid) FROM volumes) AS lo, (SELECT max(rowid) FROM volumes) AS hi",
            "SELECT (SELECT min(rowid) FROM snapshots) AS lo, (SELECT max(rowid) FROM snapshots) AS hi",
            "SELECT (SELECT min(id) FROM volume_glance_metadata) AS lo, (SELECT max(id) FROM volume_glance_metadata) AS hi",
            "SELECT (SELECT min(rowid) FROM backups) AS lo, (SELECT max(rowid) FROM backups) AS hi",
        ];
        for (mid, query) in mids.iter_mut().zip(queries) {
            let b = diesel::sql_query(query)
                .get_result::<Bounds>(&mut self.conn)
                .map_err(|e| self.error("reading table bounds", e))?;
            let (lo, hi) = (b.lo.unwrap_or(0), b.hi.unwrap_or(0));
            *mid = lo + (hi - lo) / 2;
        }
        Ok(mids)
    }

    /// Wraps a database error with the URL, so every message says which database failed.
    pub fn error(&self, context: &str, e: diesel::result::Error) -> Error {
        Error::Database { url: self.url.clone(), message: format!("{context}: {e}") }
    }

    /// How this SQLite database stores text: `UTF-8`, `UTF-16le` or `UTF-16be`.
    fn sqlite_encoding(&mut self) -> Result<String> {
        #[derive(QueryableByName)]
        struct Encoding {
            #[diesel(sql_type = diesel::sql_types::Text)]
            encoding: String,
        }
        let e = diesel::sql_query("PRAGMA encoding").get_result::<Encoding>(&mut self.conn);
        e.map(|e| e.encoding).map_err(|e| self.error("reading the database's text encoding", e))
    }

    /// Fails early, with a clear message, on a database that is not Cinder's.
    fn check_schema(&mut self) -> Result<()> {
        let checks: [(&str, QueryResult<usize>); 4] = [
            ("volumes", volumes::table.select(volumes::all_columns).limit(1).load::<VolumeCheck>(&mut self.conn).map(|v| v.len())),
            ("snapshots", snapshots::table.select(snapshots::all_columns).limit(1).load::<SnapshotCheck>(&mut self.conn).map(|v| v.len())),
            ("backups", backups::table.select(backups::all_columns).limit(1).load::<BackupCheck>(&mut self.conn).map(|v| v.len())),
            ("volume_glance_metadata", vgm::table.select(vgm::all_columns).limit(1).load::<GlanceCheck>(&mut self.conn).map(|v| v.len())),
        ];
        for (table, result) in checks {
            if let Err(e) = result {
                return Err(Error::Database {
                    url: self.url.clone(),
                    message: format!("cannot read Cinder's table `{table}` ({e}); is [database] connection Cinder's database?"),
                });
            }
        }
        Ok(())
    }
}

type Ts = Option<chrono::NaiveDateTime>;
type VolumeCheck = (String, Option<bool>, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, Ts);
type SnapshotCheck = (String, Option<bool>, Option<String>, Option<String>, Option<String>, Option<String>, Ts);
type BackupCheck = (String, Option<bool>, Option<String>, Option<String>, Option<String>, Option<String>, Ts);
type GlanceCheck = (i32, Option<bool>, Option<String>, Option<String>, Option<String>, Option<String>, Ts);

#[derive(QueryableByName)]
struct SessionStatus {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "Value")]
    value: String,
}

fn mysql_session_is_encrypted(conn: &mut MysqlConnection) -> bool {
    diesel::sql_query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .load::<SessionStatus>(conn)
        .is_ok_and(|rows| rows.iter().any(|r| !r.value.is_empty()))
}

/// Sets SQLite's process-wide options once, before the first connection: no global memory
/// statistics (a lock around every allocation SQLite makes) and no per-connection mutex (every
/// row read locks it otherwise). Each diesel connection is used by one thread at a time, which is
/// all SQLite's multi-thread mode asks.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config may only be called before SQLite is initialized, i.e. before
        // the first connection is opened; `ONCE` runs it before the first `establish`, and
        // keymigrate opens SQLite connections nowhere else. A failure (SQLITE_MISUSE if SQLite was
        // somehow already initialized) only leaves SQLite's defaults in place.
        unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0 as std::os::raw::c_int);
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD);
        }
    });
}

/// SQLite's URI form with `mode=ro`: the file can never be written, nor created.
fn sqlite_read_only_uri(path: &std::path::Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut encoded = String::new();
    for b in abs.to_string_lossy().bytes() {
        match b {
            b'%' | b'?' | b'#' => encoded.push_str(&format!("%{b:02X}")),
            _ => encoded.push(b as char),
        }
    }
    format!("file:{encoded}?mode=ro")
}

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
pub enum Rows {
    /// `NOT deleted`.
    Live,
    /// Live and deleted alike: a census counts both.
    All,
}

/// What a census reads of each row: all that a report prints (`Rows`), or only what decides the
/// counts (`Counts`, for `status` and the tallies of `migrate` and `verify`): no project, and on
/// SQLite, where the rowid is the cursor, no row's own ID (but a volume's, which child rows are
/// matched on). What is left out reads as NULL, or an empty ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Rows,
    Counts,
}

/// A census's columns: each is read, or replaced by a constant, per [`Detail`].
struct Columns {
    detail: Detail,
    sqlite: bool,
    /// See [`Columns::sql`].
    utf8_bytes: bool,
}

/// A census's text column (or the constant standing for it), of SQL type `Nullable<Text>`.
type TextColumn = Fixed<Nullable<diesel::sql_types::Text>>;

impl Columns {
    /// A text column's SQL. On a UTF-8 SQLite database it is read as its bytes
    /// (`CAST(… AS BLOB)`, which SQLite does without a copy) and checked once, as [`Text`] reads
    /// a blob: read as text, diesel checks every value twice, and a report reads millions of them
    /// (about 7 % of a census's instructions).
    fn sql(&self, column: &'static str) -> std::borrow::Cow<'static, str> {
        match self.utf8_bytes {
            true => format!("CAST({column} AS BLOB)").into(),
            false => column.into(),
        }
    }

    /// A text column that may be NULL.
    fn text(&self, column: &'static str) -> TextColumn {
        Fixed::new(self.sql(column))
    }

    /// A text column that is never NULL.
    fn text_not_null(&self, column: &'static str) -> Fixed<diesel::sql_types::Text> {
        Fixed::new(self.sql(column))
    }

    /// A row's own ID: elsewhere than on SQLite it is the cursor, and always read.
    fn id(&self, column: &'static str) -> Fixed<diesel::sql_types::Text> {
        match (self.detail, self.sqlite) {
            (Detail::Counts, true) => Fixed::new("''"),
            _ => self.text_not_null(column),
        }
    }

    fn project(&self, column: &'static str) -> TextColumn {
        match self.detail {
            Detail::Counts => null_text(),
            Detail::Rows => self.text(column),
        }
    }

    /// `cluster_name`, or NULL when the scope does not need it: it is one of the last of
    /// Cinder's 41 volume columns, and reading it makes SQLite decode every column before it.
    fn cluster(&self, clusters: bool) -> TextColumn {
        match clusters {
            true => self.text("volumes.cluster_name"),
            false => null_text(),
        }
    }
}

/// A text column left unread.
fn null_text() -> TextColumn {
    Fixed::new("NULL")
}

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

/// `column <op> 'value'` (`=` or `<>`), comparing bytes as Cinder's Python compares key IDs.
/// MySQL's default collations ignore case and trailing spaces, so there `'…0000 '` would equal
/// the all-zeros ID: the comparison is made BINARY. Elsewhere `=` is already exact. For the
/// constants [`ZERO_KEY_ID`] and [`GLANCE_KEY`] only; the typed `eq` next to it keeps the index.
pub(crate) fn exact(backend: Backend, column: &str, op: &str, value: &'static str) -> String {
    debug_assert!(!value.contains(['\'', '\\']));
    format!("{} {op} '{value}'", bytewise(backend, column))
}

/// `column` as [`exact`] compares it: as bytes (BINARY) on MySQL, as it is elsewhere.
pub(crate) fn bytewise(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Mysql => format!("BINARY {column}"),
        _ => column.to_string(),
    }
}

/// Constant SQL text in a query, as `diesel::dsl::sql` writes it, but which lets diesel keep the
/// statement prepared: `sql` marks every query using it as never to be cached, so each page's
/// query would be parsed and planned again. The text of a `Fixed` never depends on the rows (it
/// is a column name or a comparison with a constant), and diesel keys such a statement by its
/// whole SQL text, so a cached one is always the same query.
#[derive(Debug, Clone)]
pub(crate) struct Fixed<ST> {
    sql: std::borrow::Cow<'static, str>,
    sql_type: std::marker::PhantomData<ST>,
}

impl<ST> Fixed<ST> {
    pub(crate) fn new(sql: impl Into<std::borrow::Cow<'static, str>>) -> Fixed<ST> {
        Fixed { sql: sql.into(), sql_type: std::marker::PhantomData }
    }
}

impl<ST: diesel::expression::TypedExpressionType> Expression for Fixed<ST> {
    type SqlType = ST;
}

impl<ST, DB: diesel::backend::Backend> diesel::query_builder::QueryFragment<DB> for Fixed<ST> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(&self.sql);
        Ok(())
    }
}

impl<ST> diesel::query_builder::QueryId for Fixed<ST> {
    type QueryId = ();

    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<QS, ST> SelectableExpression<QS> for Fixed<ST> where Self: Expression {}

impl<QS, ST> AppearsOnTable<QS> for Fixed<ST> where Self: Expression {}

impl<ST, GB> diesel::expression::ValidGrouping<GB> for Fixed<ST> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

/// `NOT deleted`: the same rows as Cinder's `deleted = false` (NULL is neither), written so that
/// SQLite walks the primary key in order instead of the `(deleted, …)` indexes, which would make
/// every keyset page a full scan and a sort.
fn live<C>(deleted: C) -> diesel::dsl::not<C>
where
    C: Expression<SqlType = diesel::sql_types::Nullable<diesel::sql_types::Bool>>,
{
    diesel::dsl::not(deleted)
}

/// Runs `$body` (a closure's body returning `$ret`) with `$conn` the connection and `$backend`
/// its backend's type: SQLite's own connection on SQLite, so that rows are decoded without
/// `AnyConnection`'s dispatch on every column (a few percent of a report's time), and
/// `AnyConnection` elsewhere. `$body` is expanded once for each.
macro_rules! with_conn {
    ($db:ident, |$conn:ident, $backend:ident| -> $ret:ty $body:block) => {
        match &mut $db.conn {
            AnyConnection::Sqlite($conn) => {
                type $backend = diesel::sqlite::Sqlite;
                (|| -> $ret { $body })()
            }
            $conn => {
                type $backend = MultiBackend;
                (|| -> $ret { $body })()
            }
        }
    };
}

/// The rest of a keyset-paginated page query, shared by the three UUID-keyed tables: the key
/// filter, the order (rowid on SQLite, id elsewhere), the cursor, and advancing it. `$base` is
/// the table's select, not yet boxed.
macro_rules! keyset_page {
    ($db:ident, $keys:ident, $rows:expr, $cursor:ident, $rowid:ident, $base:ident, $table:ident, $row:ty, $what:literal) => {{
        let (backend, upto) = ($db.backend, $db.upto);
        let column = concat!(stringify!($table), ".encryption_key_id");
        let at: &Cursor = $cursor;
        // The rowid is only needed of the last row, for the cursor.
        let loaded = with_conn!($db, |conn, DB| -> QueryResult<(Vec<$row>, Option<i64>)> {
            let base = $base.into_boxed::<'_, DB>();
            let mut q = match $keys {
                Keys::Zero => base
                    .filter($table::encryption_key_id.eq(ZERO_KEY_ID))
                    .filter(Fixed::<Bool>::new(exact(backend, column, "=", ZERO_KEY_ID))),
                Keys::Migrated => base.filter(Fixed::<Bool>::new(exact(backend, column, "<>", ZERO_KEY_ID))),
                Keys::Any => base,
            };
            if $rows == Rows::Live {
                q = q.filter(live($table::deleted));
            }
            q = match backend {
                Backend::Sqlite => q.order(Fixed::<BigInt>::new($rowid)),
                _ => q.order($table::id),
            };
            if let (Backend::Sqlite, Some(upto)) = (backend, upto) {
                q = q.filter(Fixed::<BigInt>::new($rowid).le(upto));
            }
            match at {
                Cursor::Int(k) => q = q.filter(Fixed::<BigInt>::new($rowid).gt(*k)),
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
        (volumes::host, volumes::cluster_name, volumes::user_id, volumes::encryption_key_id, volumes::deleted)
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
            Fixed::<Nullable<Bool>>::new(exact($backend, "volumes.encryption_key_id", "=", ZERO_KEY_ID)),
            volumes::deleted,
        )
    };
}

impl Db {
    /// The next page of volumes on the all-zeros key (or, for `Keys::Migrated`, on another key).
    pub fn volumes_page(&mut self, keys: Keys, rows: Rows, cursor: &mut Cursor) -> Result<Vec<VolumeRow>> {
        let rowid = self.rowid("volumes");
        let base = volumes::table
            .select((
                Fixed::<BigInt>::new(rowid),
                (volumes::id, volumes::host, volumes::cluster_name, volumes::user_id, volumes::project_id, volumes::encryption_key_id, volumes::deleted),
            ));
        keyset_page!(self, keys, rows, cursor, rowid, base, volumes, VolumeRow, "reading volumes")
    }

    /// The next page of every volume, live or deleted, on any key: a census's one pass.
    /// `cluster_name` is read only when `clusters` is set (and NULL otherwise).
    pub fn volume_facts_page(&mut self, cursor: &mut Cursor, clusters: bool, detail: Detail) -> Result<Vec<VolumeFacts>> {
        let (rowid, keys, columns) = (self.rowid("volumes"), Keys::Any, self.detail(detail));
        let base = volumes::table.select((Fixed::<BigInt>::new(rowid), volume_facts_columns!(self.backend, columns, clusters)));
        keyset_page!(self, keys, Rows::All, cursor, rowid, base, volumes, VolumeFacts, "reading volumes")
    }

    /// The volumes with these IDs, live or deleted, with the same facts as
    /// [`Db::volume_facts_page`] (no project; `cluster_name` only when `clusters` is set): what
    /// planning one page of child rows needs of their volumes, read through the primary key.
    /// The IDs are compared as the database compares them, as a join would.
    pub fn volume_facts_by_id(&mut self, ids: &[&str], clusters: bool) -> Result<Vec<VolumeFacts>> {
        let (backend, columns) = (self.backend, self.detail(Detail::Counts));
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
                Fixed::<BigInt>::new(rowid),
                (
                    snapshots::id,
                    snapshots::volume_id,
                    snapshots::user_id,
                    snapshots::project_id,
                    snapshots::encryption_key_id,
                    volume_ref_columns!().nullable(),
                ),
            ));
        keyset_page!(self, keys, Rows::Live, cursor, rowid, base, snapshots, SnapshotRow, "reading snapshots")
    }

    /// The next page of snapshots on the all-zeros key, live or deleted, without their volume.
    pub fn zero_snapshots_page(&mut self, cursor: &mut Cursor, detail: Detail) -> Result<Vec<SnapshotOnly>> {
        let (rowid, keys, columns) = (self.rowid("snapshots"), Keys::Zero, self.detail(detail));
        let base = snapshots::table.select((
            Fixed::<BigInt>::new(rowid),
            (
                columns.id("snapshots.id"),
                columns.text("snapshots.volume_id"),
                columns.text("snapshots.user_id"),
                columns.project("snapshots.project_id"),
                snapshots::deleted,
            ),
        ));
        keyset_page!(self, keys, Rows::All, cursor, rowid, base, snapshots, SnapshotOnly, "reading snapshots")
    }

    /// The next page of backups on the all-zeros key (or, for `Keys::Migrated`, on another key).
    pub fn backups_page(&mut self, keys: Keys, rows: Rows, cursor: &mut Cursor) -> Result<Vec<BackupRow>> {
        let rowid = self.rowid("backups");
        let base = backups::table
            .select((
                Fixed::<BigInt>::new(rowid),
                (backups::id, backups::host, backups::user_id, backups::project_id, backups::encryption_key_id, backups::deleted),
            ));
        keyset_page!(self, keys, rows, cursor, rowid, base, backups, BackupRow, "reading backups")
    }

    /// The next page of backups on the all-zeros key, live or deleted: a census's pass. Their key
    /// is not read (it is the all-zeros ID).
    pub fn zero_backups_page(&mut self, cursor: &mut Cursor, detail: Detail) -> Result<Vec<BackupRow>> {
        let (rowid, keys, columns) = (self.rowid("backups"), Keys::Zero, self.detail(detail));
        let base = backups::table.select((
            Fixed::<BigInt>::new(rowid),
            (
                columns.id("backups.id"),
                columns.text("backups.host"),
                columns.text("backups.user_id"),
                columns.project("backups.project_id"),
                null_text(),
                backups::deleted,
            ),
        ));
        keyset_page!(self, keys, Rows::All, cursor, rowid, base, backups, BackupRow, "reading backups")
    }

    /// The next page of live `volume_glance_metadata` rows whose `cinder_encryption_key_id` is
    /// all zeros, with the volume (directly or through the snapshot) and snapshot they belong to.
    pub fn glance_metadata_page(&mut self, keys: Keys, cursor: &mut Cursor) -> Result<Vec<GlanceRow>> {
        type Row = (i32, Option<Text>, Option<Text>, Option<Text>, Option<SnapshotRef>, Option<VolumeRef>);
        // A row belongs to a volume directly, or to a snapshot and through it to a volume.
        let owning_volume_id =
            Fixed::<Nullable<diesel::sql_types::Text>>::new("COALESCE(volume_glance_metadata.volume_id, snapshots.volume_id)");
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
        q = q.filter(Fixed::<Bool>::new(exact(self.backend, "volume_glance_metadata.key", "=", GLANCE_KEY)));
        q = match keys {
            Keys::Zero => q
                .filter(vgm::value.eq(ZERO_KEY_ID))
                .filter(Fixed::<Bool>::new(exact(self.backend, "volume_glance_metadata.value", "=", ZERO_KEY_ID))),
            Keys::Migrated => q.filter(Fixed::<Bool>::new(exact(self.backend, "volume_glance_metadata.value", "<>", ZERO_KEY_ID))),
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
                .filter(Fixed::<Bool>::new(exact(backend, "volume_glance_metadata.key", "=", GLANCE_KEY)))
                .filter(Fixed::<Bool>::new(exact(backend, "volume_glance_metadata.value", "=", ZERO_KEY_ID)))
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
