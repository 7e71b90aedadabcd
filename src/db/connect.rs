//! Opening Cinder's database: one diesel connection type for the backends this build has,
//! read-only enforced by the database itself, and a check that the tables are Cinder's before
//! anything is read.
//!
//! SQLite is always built in; MySQL/MariaDB and PostgreSQL are the cargo features `mysql` and
//! `postgres` (each links its client library). Here: [`AnyConnection`]'s variants for each
//! combination, [`Backend::is_built_in`], and the message a URL for a missing one gets. Elsewhere
//! only what cannot be otherwise: `text` and `sql` leave out what names a missing backend's
//! types, and build.rs lists the backends for `--version`.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::SqliteConnection;
#[cfg(feature = "mysql")]
use diesel::MysqlConnection;
#[cfg(feature = "postgres")]
use diesel::PgConnection;

use super::schema::{backups, snapshots, volume_glance_metadata as vgm, volumes};
use super::watch::Watch;
use super::{Backend, DbUrl};
use crate::error::{Error, Result};

/// Declares [`AnyConnection`] with the given variants. diesel's `MultiConnection` derive does not
/// honour `#[cfg]` on a variant, so each combination of features names its own list below.
macro_rules! any_connection {
    ($($variant:ident($conn:ty)),+) => {
        /// A connection to any backend built in, chosen from the URL's scheme.
        #[derive(diesel::MultiConnection)]
        pub enum AnyConnection {
            $($variant($conn)),+
        }
    };
}

#[cfg(all(feature = "mysql", feature = "postgres"))]
any_connection!(Postgresql(PgConnection), Mysql(MysqlConnection), Sqlite(SqliteConnection));
#[cfg(all(feature = "mysql", not(feature = "postgres")))]
any_connection!(Mysql(MysqlConnection), Sqlite(SqliteConnection));
#[cfg(all(not(feature = "mysql"), feature = "postgres"))]
any_connection!(Postgresql(PgConnection), Sqlite(SqliteConnection));
#[cfg(not(any(feature = "mysql", feature = "postgres")))]
any_connection!(Sqlite(SqliteConnection));

impl Backend {
    /// The database as operators call it, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Mysql => "MySQL/MariaDB",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The cargo feature that builds this backend in; `None` for SQLite, which always is.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Mysql => Some("mysql"),
            Backend::Postgres => Some("postgres"),
        }
    }

    /// Whether this build of keymigrate can open this backend's databases.
    pub fn is_built_in(self) -> bool {
        match self {
            Backend::Sqlite => true,
            Backend::Mysql => cfg!(feature = "mysql"),
            Backend::Postgres => cfg!(feature = "postgres"),
        }
    }
}

/// Refuses a URL whose backend this build does not have, naming the cargo feature it lacks.
/// Settings call it for every configured URL before any command runs, so that nothing at all is
/// done; [`open`] calls it again for the URLs only found at run time (Nova's cells).
pub fn require_built_in(url: &DbUrl) -> Result<()> {
    match url.backend.feature() {
        Some(feature) if !url.backend.is_built_in() => Err(Error::Database {
            url: url.redacted.clone(),
            message: format!(
                "this keymigrate was built without {} support (cargo feature `{feature}`); install a build with it",
                url.backend.name()
            ),
        }),
        _ => Ok(()),
    }
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
    pub(super) utf8_bytes: bool,
}

impl Db {
    pub fn connect(url: &DbUrl, access: Access) -> Result<Db> {
        let conn = open(url, access)?;
        let mut db = Db { conn, url: url.redacted.clone(), backend: url.backend, source: url.clone(), access, upto: None, utf8_bytes: false };
        db.check_schema()?;
        db.utf8_bytes = db.backend == Backend::Sqlite && db.sqlite_encoding()? == "UTF-8";
        Ok(db)
    }

    /// Whether any volume or backup row, live or deleted, whatever its key, belongs to `scope`:
    /// one pass over the distinct hosts (and clusters) the two tables name.
    pub fn scope_names_a_row(&mut self, scope: &crate::scope::Scope) -> Result<bool> {
        if scope.all {
            return Ok(true);
        }
        let hosts = volumes::table
            .select((volumes::host, volumes::cluster_name))
            .distinct()
            .load::<(Option<String>, Option<String>)>(&mut self.conn)
            .map_err(|e| self.error("reading the volumes' hosts", e))?;
        if hosts.iter().any(|(h, c)| scope.volume_in_scope(h.as_deref(), c.as_deref())) {
            return Ok(true);
        }
        let hosts = backups::table
            .select(backups::host)
            .distinct()
            .load::<Option<String>>(&mut self.conn)
            .map_err(|e| self.error("reading the backups' hosts", e))?;
        Ok(hosts.iter().any(|h| scope.backup_in_scope(h.as_deref())))
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

#[cfg(feature = "mysql")]
#[derive(QueryableByName)]
struct SessionStatus {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "Value")]
    value: String,
}

/// Whether the translated `mysql://` URL gives libmariadb a CA, certificate or key (its query
/// follows the last `?`: the database name never holds one).
#[cfg(feature = "mysql")]
fn mysql_has_tls_files(conn: &str) -> bool {
    conn.rsplit_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| ["ssl_ca=", "ssl_cert=", "ssl_key="].iter().any(|k| pair.starts_with(k)))
    })
}

#[cfg(feature = "mysql")]
fn mysql_session_is_encrypted(conn: &mut MysqlConnection) -> bool {
    diesel::sql_query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .load::<SessionStatus>(conn)
        .is_ok_and(|rows| rows.iter().any(|r| !r.value.is_empty()))
}

/// Opens a connection to any backend built in, read-only enforced by the database itself where
/// asked; no check of whose tables these are (Cinder's: [`Db::connect`]; Nova's:
/// `crate::nova`).
///
/// Every round trip, connecting included, is bounded by `--db-timeout` ([`super::watch`]).
pub fn open(url: &DbUrl, access: Access) -> Result<AnyConnection> {
    require_built_in(url)?;
    let watch = Watch::new(&url.redacted);
    watch.begin();
    let mut conn = match url.backend {
        Backend::Sqlite => open_sqlite(url, access),
        #[cfg(feature = "mysql")]
        Backend::Mysql => open_mysql(url, access),
        #[cfg(feature = "postgres")]
        Backend::Postgres => open_postgres(url, access),
        // `require_built_in` has refused the others.
        #[cfg(not(all(feature = "mysql", feature = "postgres")))]
        other => Err(Error::Internal(format!("{} is not built in", other.name()))),
    }?;
    watch.end();
    conn.set_instrumentation(watch);
    Ok(conn)
}

/// A database error on `url`, for the `open_*` functions.
fn failed(url: &DbUrl, message: impl std::fmt::Display) -> Error {
    Error::Database { url: url.redacted.clone(), message: message.to_string() }
}

fn open_sqlite(url: &DbUrl, access: Access) -> Result<AnyConnection> {
    configure_sqlite();
    let path = std::path::Path::new(url.connection_string());
    if !path.is_file() {
        return Err(failed(url, format!("no such file: {}", path.display())));
    }
    let target = match access {
        Access::ReadOnly => sqlite_read_only_uri(path),
        Access::ReadWrite => url.connection_string().to_string(),
    };
    let mut conn = SqliteConnection::establish(&target).map_err(|e| failed(url, e))?;
    // Cinder writes while we run: wait for its locks instead of failing at once.
    // A small page cache (256 KiB, SQLite's default is 2 MB): keymigrate reads each
    // table once in order and looks rows up at random, so a bigger cache holds
    // pages that are not read again, and the memory stays ours for the whole run
    // (5 MB less for a report, 10 MB less for migrate's counts on a million
    // volumes; no slower, as the kernel's page cache still holds the file).
    conn.batch_execute("PRAGMA busy_timeout = 30000; PRAGMA cache_size = -256;").map_err(|e| failed(url, e))?;
    Ok(AnyConnection::Sqlite(conn))
}

#[cfg(feature = "mysql")]
fn open_mysql(url: &DbUrl, access: Access) -> Result<AnyConnection> {
    if url.require_tls && !mysql_has_tls_files(url.connection_string()) {
        // libmariadb starts TLS only when given a CA, a certificate or a key; ssl_mode alone is
        // ignored, and the server would see a plain connection.
        return Err(failed(
            url,
            "TLS is asked for (ssl_mode=REQUIRED or ssl=true) without ssl_ca, \
             which the MariaDB client library needs to start TLS at all: add ssl_ca=<the server's CA file>",
        ));
    }
    let mut conn = MysqlConnection::establish(url.connection_string()).map_err(|e| {
        let mut message = e.to_string();
        if !url.require_tls && message.starts_with("Access denied") {
            // MariaDB refuses a user that must use TLS (REQUIRE SSL) in the same words as a
            // wrong password.
            message.push_str(" (if this user must connect over TLS, add ssl_ca=<the server's CA file> to [database] connection)");
        }
        failed(url, message)
    })?;
    if url.require_tls && !mysql_session_is_encrypted(&mut conn) {
        // libmariadb ignores diesel's ssl_mode: check what the session really is.
        return Err(failed(url, "TLS was requested but the connection is not encrypted"));
    }
    if access == Access::ReadOnly {
        conn.batch_execute("SET SESSION TRANSACTION READ ONLY").map_err(|e| failed(url, e))?;
    }
    Ok(AnyConnection::Mysql(conn))
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &DbUrl, access: Access) -> Result<AnyConnection> {
    let mut conn = PgConnection::establish(url.connection_string()).map_err(|e| failed(url, e))?;
    if access == Access::ReadOnly {
        conn.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY").map_err(|e| failed(url, e))?;
    }
    Ok(AnyConnection::Postgresql(conn))
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
