//! Cinder's database on SQLite, MySQL/MariaDB or PostgreSQL, through one connection type.
//!
//! Rows are streamed in keyset-paginated batches (`WHERE id > last ORDER BY id LIMIT n`), never
//! loaded whole. A read-only connection (scan, status) is enforced by the database itself:
//! SQLite opens the file with `mode=ro`, MySQL and PostgreSQL set the session read-only.
//!
//! The path of a row: `url` turns `[database] connection` into a diesel URL, `connect` opens it
//! and checks it is Cinder's, `pages` reads one keyset page of a table (with the constant SQL
//! fragments of `sql`) into the structs of `rows`, decoding strings through `text`; `plan` turns
//! them into units, and `swap` is the only code that writes to the database.

mod connect;
mod pages;
mod rows;
pub mod schema;
pub(crate) mod sql;
pub mod swap;
pub mod text;
pub mod url;
pub mod watch;

pub use connect::{open, require_built_in, Access, AnyConnection, Db, MultiBackend};
pub use pages::Cursor;
pub use rows::{
    BackupRow, Detail, GlanceOnly, GlanceRow, Keys, Live, SnapshotOnly, SnapshotRef, SnapshotRow, TableCounts, VolumeFacts, VolumeRef,
    VolumeRow,
};
pub(crate) use sql::{bytewise, exact, ConstSql};
pub use url::{Backend, DbUrl};

/// Rows fetched per query while streaming.
pub const BATCH: i64 = 2000;
