//! `[database] connection`, a SQLAlchemy URL, translated into what diesel 2.3 connects with.
//!
//! Reading: SQLAlchemy's `_parse_url` (`lib/sqlalchemy/engine/url.py`), ported exactly:
//! `name[+driver]://[user[:password]@][host | [ipv6]][:port][/database][?query]`. The user
//! stops at the first `:` or `/`; the password runs to the first `@` after it, so it may hold
//! `:`, `/` or `?` but an `@` must be written `%40`. User and password are percent-decoded
//! (invalid UTF-8 becomes U+FFFD, as Python's `unquote` does); the query is read like
//! `parse_qsl` (`+` is a space, options without a value are dropped). SQLAlchemy 2.0 keeps `%XX`
//! in the database name and 2.1 decodes it, so a database name or SQLite path holding one is
//! refused rather than guessed.
//!
//! Writing:
//! * SQLite: the absolute file path (relative paths are joined to the working directory and
//!   normalised like Python's `os.path.abspath`). An in-memory database is refused.
//! * MySQL/MariaDB: `mysql://user:password@host:port/database?...` for diesel's
//!   `mysql/connection/url.rs`, which parses it with the `url` crate, insists on the scheme
//!   `mysql` and at most one path segment, percent-decodes user and password but NOT the
//!   database name, rejects a `database` query key and reads only `unix_socket`, `ssl_mode`,
//!   `ssl_ca`, `ssl_cert` and `ssl_key` (ignoring the rest, e.g. `charset`: diesel always uses
//!   utf8mb4). PyMySQL connects over TCP even to `localhost` while libmysqlclient (diesel, and
//!   MySQLdb) takes `localhost` to mean the Unix socket, so for `+pymysql` a missing or
//!   `localhost` host becomes `127.0.0.1`, a missing port PyMySQL's 3306, and a `unix_socket`
//!   makes the host `localhost`;
//!   MySQLdb URLs already mean what diesel does with them. SQLAlchemy's and PyMySQL's TLS
//!   options become one `ssl_mode`, never weaker than what PyMySQL would do with them.
//! * PostgreSQL: a libpq connection URI (diesel hands the string to `PQconnectdb`), every part
//!   percent-encoded, carrying only libpq's own connection and TLS parameters.
//!
//! Query options diesel cannot use are dropped and named in [`DbUrl::ignored`]. Nothing here
//! ever shows the password: errors are fixed descriptions (plus the scheme or an option's
//! name), and [`DbUrl`] prints only [`DbUrl::redacted`].

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::Range;
use std::path::Path;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

mod mysql;
mod postgres;
mod sqlite;

use mysql::{mysql, MysqlDriver};
use postgres::postgres;
use sqlite::sqlite;
#[cfg(test)]
use sqlite::normpath;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mysql,
    Postgres,
}

/// Where the Cinder database is, ready for diesel.
#[derive(Clone)]
pub struct DbUrl {
    pub backend: Backend,
    /// For SQLite: the file path; for MySQL/PostgreSQL: the diesel URL (contains the password).
    conn: crate::secret::Sensitive,
    /// The URL as configured with the password, and any query value whose name says password,
    /// replaced by `***`: for messages.
    pub redacted: String,
    /// Names of query options dropped because diesel cannot use them (SQLAlchemy's `plugin`,
    /// MySQL's `charset`, ...), for the caller to log.
    pub ignored: Vec<String>,
    /// The URL asks for an encrypted connection: MySQL `ssl_mode` required or stricter,
    /// PostgreSQL `sslmode` require or stricter. libpq enforces this itself. diesel's MySQL
    /// does not when it is built against MariaDB Connector/C (`mysqlclient-sys` cfg
    /// `mariadb_3_*`, Debian's libmariadb): it hands `ssl_mode` to an option that library does
    /// not have, and connects in plain text. So for MySQL the caller must check, after
    /// connecting, that `SHOW SESSION STATUS LIKE 'Ssl_cipher'` is not empty.
    pub require_tls: bool,
}

impl DbUrl {
    /// What to hand to diesel's `establish` (for SQLite, the file path). Holds the password.
    pub fn connection_string(&self) -> &str {
        self.conn.expose()
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DbUrl").field(&self.redacted).finish()
    }
}

/// Why `[database] connection` cannot be used. No variant holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is not a database URL of the form dialect[+driver]://[user[:password]@]host[:port]/database")]
    NotAUrl,
    #[error("contains a control character (a line break?)")]
    ControlCharacter,
    #[error(
        "uses the unsupported database type '{0}' (supported: sqlite, mysql, mysql+pymysql, mysql+mysqldb, mariadb, \
         mariadb+pymysql, postgresql, postgres, postgresql+psycopg2, postgresql+psycopg)"
    )]
    UnsupportedScheme(String),
    #[error(
        "names an in-memory SQLite database, which cannot be Cinder's: give the file, as sqlite:////absolute/path"
    )]
    SqliteInMemory,
    #[error(
        "gives an SQLite URL a user, host or port: SQLite URLs name a file, as sqlite:////absolute/path or \
         sqlite:///path/relative/to/the/working/directory"
    )]
    SqliteServer,
    #[error("uses an SQLite URI filename (uri=true), which is not supported: give the plain path")]
    SqliteUri,
    #[error("names no database: add /<database name> after the host")]
    MissingDatabase,
    #[error("has a port that is not a number from 1 to 65535")]
    InvalidPort,
    #[error("has a host that is not a host name, an IPv4 address or a bracketed IPv6 address")]
    InvalidHost,
    #[error("has an '@' after the user:password@ part: if the password contains '@', write it as %40")]
    UnencodedAt,
    #[error("has a {0} that contains a NUL character")]
    Nul(&'static str),
    #[error(
        "has a {0} containing a %XX escape, which SQLAlchemy 2.0 keeps as written and 2.1 decodes: rename it or \
         write the character itself"
    )]
    AmbiguousPercent(&'static str),
    #[error(
        "has a database name diesel's MySQL URL cannot carry (it passes the name on undecoded: use printable ASCII \
         other than space, / \" # < > ? ` {{ }})"
    )]
    UnsupportedDatabaseName,
    #[error("has the query option '{0}', which overrides part of the URL: write it in the URL itself")]
    QueryOverride(String),
    #[error("gives the query option '{0}' more than once")]
    RepeatedOption(String),
    #[error("has the query option '{key}' set to something other than {expected}")]
    InvalidOption { key: String, expected: &'static str },
    #[error("names a relative SQLite path but the working directory is not valid UTF-8: give an absolute path")]
    NonUtf8WorkingDirectory,
}

/// Reads a SQLAlchemy URL and translates it for diesel. `cwd` resolves a relative SQLite path.
pub fn translate(url: &str, cwd: &Path) -> Result<DbUrl, UrlError> {
    if url.chars().any(char::is_control) {
        return Err(UrlError::ControlCharacter);
    }
    let sa = SaUrl::parse(url)?;
    if sa.password.is_some() && url[sa.after_userinfo..].contains('@') {
        // The password held a raw `@` and the rest of it became the host (or the database, or
        // the query): refuse it rather than put part of the password into messages.
        return Err(UrlError::UnencodedAt);
    }
    let (dialect, driver) = match sa.name.split_once('+') {
        Some((dialect, driver)) => (dialect, Some(driver)),
        None => (sa.name, None),
    };
    let (backend, Translated { conn, ignored, require_tls }) = match (dialect, driver) {
        ("sqlite", None | Some("pysqlite")) => (Backend::Sqlite, sqlite(&sa, cwd)?),
        ("mysql" | "mariadb", None | Some("mysqldb")) => (Backend::Mysql, mysql(&sa, MysqlDriver::MySqlDb)?),
        ("mysql" | "mariadb", Some("pymysql")) => (Backend::Mysql, mysql(&sa, MysqlDriver::PyMySql)?),
        ("postgresql", None | Some("psycopg2" | "psycopg")) | ("postgres", None) => (Backend::Postgres, postgres(&sa)?),
        _ => return Err(UrlError::UnsupportedScheme(sa.name.to_string())),
    };
    // An option name can only hold the password if the URL is badly mangled; never log it.
    let ignored = ignored
        .into_iter()
        .map(|name| if holds_password(&sa, &name) { NOT_A_PLAIN_WORD.to_string() } else { name })
        .collect();
    Ok(DbUrl { backend, conn: crate::secret::Sensitive::new(conn), redacted: redact(url, &sa), ignored, require_tls })
}

/// What one backend makes of the URL.
struct Translated {
    conn: String,
    ignored: Vec<String>,
    require_tls: bool,
}

/// The parts of a URL as SQLAlchemy's `_parse_url` regex splits it, still undecoded.
struct SaUrl<'a> {
    name: &'a str,
    username: Option<&'a str>,
    password: Option<&'a str>,
    /// Where the password is in the whole URL.
    password_span: Option<Range<usize>>,
    host: Option<SaHost<'a>>,
    port: Option<&'a str>,
    database: Option<&'a str>,
    query: Option<&'a str>,
    /// Offset of the query (after `?`) in the whole URL.
    query_start: usize,
    /// Offset just past the `@` that ends user:password (or past `://` without one).
    after_userinfo: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaHost<'a> {
    Name(&'a str),
    Ipv6(&'a str),
}

impl<'a> SaUrl<'a> {
    fn parse(url: &'a str) -> Result<SaUrl<'a>, UrlError> {
        // (?P<name>[\w\+]+)://
        let name_len = url.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '+')).unwrap_or(url.len());
        if name_len == 0 || !url[name_len..].starts_with("://") {
            return Err(UrlError::NotAUrl);
        }
        let base = name_len + 3;
        let rest = &url[base..];

        // (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)? -- the regex tries the longest user
        // first: up to the first `:` or `/`, with a password if an `@` follows the `:`, and
        // otherwise backs off to the last `@` before that point.
        let user_end = rest.find([':', '/']).unwrap_or(rest.len());
        let with_password = if rest[user_end..].starts_with(':') {
            rest[user_end + 1..].find('@').map(|at| user_end + 1 + at)
        } else {
            None
        };
        let (username, password, password_span, host_start) = match with_password {
            Some(at) => {
                let span = user_end + 1..at;
                (Some(&rest[..user_end]), Some(&rest[span.clone()]), Some(base + span.start..base + span.end), at + 1)
            }
            None => match rest[..user_end].rfind('@') {
                Some(at) => (Some(&rest[..at]), None, None, at + 1),
                None => (None, None, None, 0),
            },
        };

        let s = &rest[host_start..];
        let mut i;
        // (?:\[(?P<ipv6host>[^/\?]+)\] | (?P<ipv4host>[^/:\?]+))?
        let host = if s.starts_with('[') {
            let segment = &s[..s.find(['/', '?']).unwrap_or(s.len())];
            match segment.rfind(']') {
                Some(close) if close >= 2 => {
                    i = close + 1;
                    Some(SaHost::Ipv6(&s[1..close]))
                }
                _ => return Err(UrlError::InvalidHost),
            }
        } else {
            i = s.find(['/', ':', '?']).unwrap_or(s.len());
            (i > 0).then(|| SaHost::Name(&s[..i]))
        };
        // (?::(?P<port>[^/\?]*))?
        let mut port = None;
        if s[i..].starts_with(':') {
            let end = s[i + 1..].find(['/', '?']).map_or(s.len(), |e| i + 1 + e);
            port = Some(&s[i + 1..end]);
            i = end;
        }
        // (?:/(?P<database>[^\?]*))?
        let mut database = None;
        if s[i..].starts_with('/') {
            let end = s[i + 1..].find('?').map_or(s.len(), |e| i + 1 + e);
            database = Some(&s[i + 1..end]);
            i = end;
        }
        // (?:\?(?P<query>.*))?
        let mut query = None;
        let query_start = base + host_start + i + 1;
        if s[i..].starts_with('?') {
            query = Some(&s[i + 1..]);
            i = s.len();
        }
        if i != s.len() {
            // Text after `[ipv6]` that is not `:port`, `/database` or `?query`: SQLAlchemy
            // silently drops it.
            return Err(UrlError::InvalidHost);
        }
        Ok(SaUrl {
            name: &url[..name_len],
            username,
            password,
            password_span,
            host,
            port,
            database,
            query,
            query_start,
            after_userinfo: base + host_start,
        })
    }

    fn query_pairs(&self) -> Vec<(String, String)> {
        self.query.map(parse_qsl).unwrap_or_default()
    }
}

/// Python's `urllib.parse.unquote` (UTF-8, errors replaced).
fn unquote(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Python's `urllib.parse.parse_qsl` with its defaults: `&`-separated, `+` is a space, options
/// without `=` or with an empty value are dropped.
fn parse_qsl(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| (unquote(&key.replace('+', " ")), unquote(&value.replace('+', " "))))
        .collect()
}

/// SQLAlchemy's `util.asbool` for a string.
fn asbool(key: &str, value: &str) -> Result<bool, UrlError> {
    match value.trim().to_lowercase().as_str() {
        "true" | "yes" | "on" | "y" | "t" | "1" => Ok(true),
        "false" | "no" | "off" | "n" | "f" | "0" => Ok(false),
        _ => Err(UrlError::InvalidOption { key: key.to_string(), expected: "a boolean (true/false)" }),
    }
}

/// An option's name as it may appear in a message or a log: only plain words are shown.
fn shown(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        key.to_string()
    } else {
        NOT_A_PLAIN_WORD.to_string()
    }
}

const NOT_A_PLAIN_WORD: &str = "(an option whose name is not a plain word)";

/// Whether `text` holds the password, as written or decoded. Passwords shorter than three
/// characters would match by chance too often to be hidden this way.
fn holds_password(sa: &SaUrl<'_>, text: &str) -> bool {
    let Some(raw) = sa.password else {
        return false;
    };
    let decoded = unquote(raw);
    (raw.len() >= 3 && text.contains(raw))
        || (decoded.chars().count() >= 3
            && (text.contains(&decoded) || unquote(&text.replace('+', " ")).contains(&decoded)))
}

fn note_ignored(ignored: &mut Vec<String>, key: &str) {
    let name = shown(key);
    if !ignored.contains(&name) {
        ignored.push(name);
    }
}

fn has_percent_escape(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

fn parse_port(port: Option<&str>) -> Result<Option<u16>, UrlError> {
    match port {
        None => Ok(None),
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(UrlError::InvalidPort),
            Ok(n) => Ok(Some(n)),
        },
        Some(_) => Err(UrlError::InvalidPort),
    }
}

/// The host as diesel's URL needs it (`[::1]` bracketed), after checking it is a plain name or
/// address: anything else would be changed by the `url` crate or libpq on the way.
fn checked_host(host: SaHost<'_>) -> Result<String, UrlError> {
    match host {
        SaHost::Ipv6(addr) => match addr.parse::<Ipv6Addr>() {
            Ok(_) => Ok(format!("[{addr}]")),
            Err(_) => Err(UrlError::InvalidHost),
        },
        SaHost::Name(name) => {
            if name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
                Ok(name.to_string())
            } else {
                Err(UrlError::InvalidHost)
            }
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters: what both diesel's MySQL
/// URL (percent-decoded user, password and `query_pairs`) and libpq (`%XX` everywhere, `+`
/// literal) read back unchanged.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// User and password, decoded as SQLAlchemy does; `None` for what it leaves out (it skips
/// empty values in `translate_connect_args`).
fn credentials(sa: &SaUrl<'_>) -> Result<(String, Option<String>), UrlError> {
    let user = sa.username.map(unquote).unwrap_or_default();
    let password = sa.password.map(unquote).filter(|p| !p.is_empty());
    if user.contains('\0') {
        return Err(UrlError::Nul("user name"));
    }
    if password.as_deref().is_some_and(|p| p.contains('\0')) {
        return Err(UrlError::Nul("password"));
    }
    Ok((user, password))
}

fn userinfo(user: &str, password: Option<&str>) -> String {
    match password {
        Some(p) => format!("{}:{}@", enc(user), enc(p)),
        None if !user.is_empty() => format!("{}@", enc(user)),
        None => String::new(),
    }
}

fn query_string(params: &[(&str, String)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
    format!("?{}", pairs.join("&"))
}

fn database_name<'a>(sa: &SaUrl<'a>) -> Result<&'a str, UrlError> {
    let db = sa.database.filter(|d| !d.is_empty()).ok_or(UrlError::MissingDatabase)?;
    if has_percent_escape(db) {
        return Err(UrlError::AmbiguousPercent("database name"));
    }
    Ok(db)
}

/// The URL as written, with the password and any `*password*`/`*passwd*` query value replaced
/// by `***`.
fn redact(url: &str, sa: &SaUrl<'_>) -> String {
    let mut out = match &sa.password_span {
        Some(span) => format!("{}***{}", &url[..span.start], &url[span.end..sa.query_start.min(url.len())]),
        None => url[..sa.query_start.min(url.len())].to_string(),
    };
    if let Some(query) = sa.query.filter(|q| holds_password(sa, q)) {
        // The password is in the query, split over several options by a raw `&`: hide it all.
        debug_assert!(!query.is_empty());
        out.push_str("***");
    } else if let Some(query) = sa.query {
        // A password written with a raw `&` continues as pairs without `=`: hide those too.
        let mut after_password = false;
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                _ if holds_password(sa, pair) => "***".to_string(),
                Some((key, _)) => {
                    let name = unquote(&key.replace('+', " ")).to_lowercase();
                    after_password = name.contains("password") || name.contains("passwd");
                    if after_password {
                        format!("{key}=***")
                    } else {
                        pair.to_string()
                    }
                }
                None if after_password => "***".to_string(),
                None => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
