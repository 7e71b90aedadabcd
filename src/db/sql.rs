//! The SQL fragments page queries and compare-and-swap are built from: exact (bytewise)
//! comparisons with keymigrate's constants, constant SQL that keeps statements prepared, the
//! census's columns, and `with_conn!`, which runs a query on SQLite's own connection.

use diesel::prelude::*;
use diesel::sql_types::Nullable;

use super::rows::Detail;
use super::Backend;
#[cfg(doc)]
use crate::cinder::{GLANCE_KEY, ZERO_KEY_ID};

/// A census's columns: each is read, or replaced by a constant, per [`Detail`].
pub(super) struct Columns {
    pub(super) detail: Detail,
    pub(super) sqlite: bool,
    /// See [`Columns::sql`].
    pub(super) utf8_bytes: bool,
}

/// A census's text column (or the constant standing for it), of SQL type `Nullable<Text>`.
pub(super) type TextColumn = ConstSql<Nullable<diesel::sql_types::Text>>;

impl Columns {
    /// A text column's SQL. On a UTF-8 SQLite database it is read as its bytes
    /// (`CAST(… AS BLOB)`, which SQLite does without a copy) and checked once, as [`Text`] reads
    /// a blob: read as text, diesel checks every value twice, and a report reads millions of them
    /// (about 7 % of a census's instructions).
    pub(super) fn sql(&self, column: &'static str) -> std::borrow::Cow<'static, str> {
        match self.utf8_bytes {
            true => format!("CAST({column} AS BLOB)").into(),
            false => column.into(),
        }
    }

    /// A text column that may be NULL.
    pub(super) fn text(&self, column: &'static str) -> TextColumn {
        ConstSql::new(self.sql(column))
    }

    /// A text column that is never NULL.
    pub(super) fn text_not_null(&self, column: &'static str) -> ConstSql<diesel::sql_types::Text> {
        ConstSql::new(self.sql(column))
    }

    /// A row's own ID: elsewhere than on SQLite it is the cursor, and always read.
    pub(super) fn id(&self, column: &'static str) -> ConstSql<diesel::sql_types::Text> {
        match (self.detail, self.sqlite) {
            (Detail::Counts | Detail::Holders, true) => ConstSql::new("''"),
            _ => self.text_not_null(column),
        }
    }

    pub(super) fn project(&self, column: &'static str) -> TextColumn {
        match self.detail {
            Detail::Counts => null_text(),
            Detail::Rows | Detail::Holders => self.text(column),
        }
    }

    /// `cluster_name`, or NULL when the scope does not need it: it is one of the last of
    /// Cinder's 41 volume columns, and reading it makes SQLite decode every column before it.
    pub(super) fn cluster(&self, clusters: bool) -> TextColumn {
        match clusters {
            true => self.text("volumes.cluster_name"),
            false => null_text(),
        }
    }
}

/// A text column left unread.
pub(super) fn null_text() -> TextColumn {
    ConstSql::new("NULL")
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
/// query would be parsed and planned again. The text of a `ConstSql` never depends on the rows (it
/// is a column name or a comparison with a constant), and diesel keys such a statement by its
/// whole SQL text, so a cached one is always the same query.
#[derive(Debug, Clone)]
pub(crate) struct ConstSql<ST> {
    sql: std::borrow::Cow<'static, str>,
    sql_type: std::marker::PhantomData<ST>,
}

impl<ST> ConstSql<ST> {
    pub(crate) fn new(sql: impl Into<std::borrow::Cow<'static, str>>) -> ConstSql<ST> {
        ConstSql { sql: sql.into(), sql_type: std::marker::PhantomData }
    }
}

impl<ST: diesel::expression::TypedExpressionType> Expression for ConstSql<ST> {
    type SqlType = ST;
}

impl<ST, DB: diesel::backend::Backend> diesel::query_builder::QueryFragment<DB> for ConstSql<ST> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(&self.sql);
        Ok(())
    }
}

impl<ST> diesel::query_builder::QueryId for ConstSql<ST> {
    type QueryId = ();

    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<QS, ST> SelectableExpression<QS> for ConstSql<ST> where Self: Expression {}

impl<QS, ST> AppearsOnTable<QS> for ConstSql<ST> where Self: Expression {}

impl<ST, GB> diesel::expression::ValidGrouping<GB> for ConstSql<ST> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

/// `NOT deleted`: the same rows as Cinder's `deleted = false` (NULL is neither), written so that
/// SQLite walks the primary key in order instead of the `(deleted, …)` indexes, which would make
/// every keyset page a full scan and a sort.
pub(super) fn live<C>(deleted: C) -> diesel::dsl::not<C>
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
            // The other backends, in a build that has any.
            #[cfg(any(feature = "mysql", feature = "postgres"))]
            $conn => {
                type $backend = $crate::db::MultiBackend;
                (|| -> $ret { $body })()
            }
        }
    };
}

pub(super) use with_conn;
