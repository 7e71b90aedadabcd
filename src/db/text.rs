//! [`Text`]: the strings of Cinder's rows (IDs, hosts, user and project IDs), kept inline.
//!
//! A report reads millions of rows, each with four or five such strings, nearly all shorter
//! than 39 bytes (a UUID is 36). As `String`s each would be an allocation and a free; as
//! `Text` they are copied straight from the database's row into the value, and dropping them
//! costs nothing. Longer strings are kept on the heap, so any value round-trips exactly.

use std::fmt;
use std::ops::Deref;

use diesel::deserialize::{self, FromSql};
use diesel::sql_types;

/// How many bytes fit inline: a UUID (36), and the value is 40 bytes.
const INLINE: usize = 38;

/// An immutable string, inline up to 38 bytes.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    /// The first `len` bytes are UTF-8.
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Text {
    pub fn new(s: &str) -> Text {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Text(Repr::Inline { len, bytes })
            }
            _ => Text(Repr::Heap(s.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let bytes = &bytes[..usize::from(*len)];
                // SAFETY: `Inline` is only built by `new`, from the bytes of a `&str` of exactly
                // `len` bytes, and never changed afterwards.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Repr::Heap(s) => s,
        }
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::new(&s)
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.as_str().to_owned()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// The bytes as a `str`, or the error a `String` would give. Cinder's IDs, hosts and user IDs
/// are nearly always ASCII, which is checked a word at a time.
fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes)
}

/// Copies a text value out of the database's buffer while it is alive: diesel lends its bytes
/// as a pointer into the row, valid for the duration of this call only. Bytes that are not
/// UTF-8 are an error, as for a `String`. (MySQL and PostgreSQL; SQLite lends a slice.)
#[cfg(any(feature = "mysql", feature = "postgres"))]
fn from_raw(bytes: *const [u8]) -> deserialize::Result<Text> {
    // SAFETY: diesel's `*const [u8]` points into the raw value passed to `from_sql`, which
    // outlives this call; it is read here and not kept.
    let bytes = unsafe { &*bytes };
    Ok(Text::new(utf8(bytes)?))
}

impl FromSql<sql_types::Text, diesel::sqlite::Sqlite> for Text {
    fn from_sql(mut value: diesel::sqlite::SqliteValue<'_, '_, '_>) -> deserialize::Result<Text> {
        // Text read as its bytes (a UTF-8 database's `CAST(… AS BLOB)`): checked once, here.
        if value.value_type() == Some(diesel::sqlite::SqliteType::Binary) {
            return Ok(Text::new(utf8(value.read_blob())?));
        }
        // `read_text` lends SQLite's own bytes for as long as `value` lives: copied here at
        // once, without an allocation. Only for text that is not UTF-8 does it lend a lossy copy
        // instead, with U+FFFD for each bad sequence; so text showing U+FFFD is checked again
        // against its raw bytes, and is an error when they are not UTF-8, as for a `String`.
        let text = value.read_text();
        if !text.contains('\u{fffd}') {
            return Ok(Text::new(text));
        }
        Ok(Text::new(std::str::from_utf8(value.read_blob())?))
    }
}

#[cfg(feature = "mysql")]
impl FromSql<sql_types::Text, diesel::mysql::Mysql> for Text {
    fn from_sql(value: diesel::mysql::MysqlValue<'_>) -> deserialize::Result<Text> {
        from_raw(<*const [u8] as FromSql<sql_types::Binary, diesel::mysql::Mysql>>::from_sql(value)?)
    }
}

#[cfg(feature = "postgres")]
impl FromSql<sql_types::Text, diesel::pg::Pg> for Text {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Text> {
        from_raw(<*const [u8] as FromSql<sql_types::Binary, diesel::pg::Pg>>::from_sql(value)?)
    }
}

impl FromSql<sql_types::Text, crate::db::MultiBackend> for Text {
    fn from_sql(value: <crate::db::MultiBackend as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Text> {
        value.from_sql::<Text, sql_types::Text>()
    }
}

macro_rules! queryable {
    ($($backend:ty),*) => {$(
        impl diesel::Queryable<sql_types::Text, $backend> for Text {
            type Row = Text;

            fn build(row: Text) -> deserialize::Result<Text> {
                Ok(row)
            }
        }
    )*};
}

queryable!(crate::db::MultiBackend, diesel::sqlite::Sqlite);
#[cfg(feature = "mysql")]
queryable!(diesel::mysql::Mysql);
#[cfg(feature = "postgres")]
queryable!(diesel::pg::Pg);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_round_trips() {
        for s in ["", "a", "0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10", &"x".repeat(38), &"y".repeat(39), &"é".repeat(40), "host@be#pool"] {
            let t = Text::new(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(t, s);
            assert_eq!(format!("{t}"), s);
            assert_eq!(format!("{t:?}"), format!("{s:?}"));
        }
        assert_eq!(std::mem::size_of::<Text>(), 40);
        assert_eq!(std::mem::size_of::<Option<Text>>(), 40);
        assert!(Text::new("a") < Text::new("b"));
    }

    #[test]
    fn sqlite_text_that_is_not_utf8_is_an_error() {
        use diesel::{Connection, RunQueryDsl};
        let mut conn = diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite");
        let read = |conn: &mut diesel::SqliteConnection, sql: &str| {
            diesel::select(diesel::dsl::sql::<sql_types::Text>(sql)).get_result::<Text>(conn)
        };
        assert_eq!(read(&mut conn, "'0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10'").expect("plain text"), "0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10");
        assert_eq!(read(&mut conn, "'h\u{e9}te'").expect("UTF-8 text"), "h\u{e9}te");
        assert!(read(&mut conn, "CAST(X'76FF6C' AS TEXT)").is_err(), "invalid UTF-8");
        assert_eq!(read(&mut conn, "CAST(X'76EFBFBD' AS TEXT)").expect("U+FFFD is UTF-8"), "v\u{fffd}");
        // Text read as its bytes, as censuses read a UTF-8 database: checked alike.
        assert_eq!(read(&mut conn, "CAST('0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10' AS BLOB)").expect("ASCII bytes"), "0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10");
        assert_eq!(read(&mut conn, "CAST('h\u{e9}te' AS BLOB)").expect("UTF-8 bytes"), "h\u{e9}te");
        assert!(read(&mut conn, "X'76FF6C'").is_err(), "bytes that are not UTF-8");
        assert!(read(&mut conn, "X'68C3'").is_err(), "a cut UTF-8 sequence");
        assert_eq!(read(&mut conn, "X''").expect("no bytes"), "");
    }
}
