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

fn sqlite(sa: &SaUrl<'_>, cwd: &Path) -> Result<Translated, UrlError> {
    // pysqlite's create_connect_args: `if url.username or url.password or url.host or url.port`.
    let given = |s: Option<&str>| s.is_some_and(|s| !s.is_empty());
    if given(sa.username) || given(sa.password) || sa.host.is_some() || sa.port.is_some() {
        return Err(UrlError::SqliteServer);
    }
    let mut ignored = Vec::new();
    for (key, value) in sa.query_pairs() {
        if key == "uri" && asbool(&key, &value)? {
            return Err(UrlError::SqliteUri);
        }
        note_ignored(&mut ignored, &key);
    }
    // `filename = url.database or ":memory:"`
    let db = match sa.database {
        None | Some("") | Some(":memory:") => return Err(UrlError::SqliteInMemory),
        Some(db) => db,
    };
    if has_percent_escape(db) {
        return Err(UrlError::AmbiguousPercent("path"));
    }
    if db.contains('\0') {
        return Err(UrlError::Nul("path"));
    }
    let joined = if db.starts_with('/') {
        db.to_string()
    } else {
        let cwd = cwd.to_str().ok_or(UrlError::NonUtf8WorkingDirectory)?;
        if cwd.is_empty() || cwd.ends_with('/') {
            format!("{cwd}{db}")
        } else {
            format!("{cwd}/{db}")
        }
    };
    Ok(Translated { conn: normpath(&joined), ignored, require_tls: false })
}

/// Python's `posixpath.normpath`, which `os.path.abspath` applies: lexical, symlinks untouched.
fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let initial = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        if part.is_empty() || part == "." {
            continue;
        }
        if part != ".." || (initial == 0 && parts.is_empty()) || parts.last() == Some(&"..") {
            parts.push(part);
        } else if !parts.is_empty() {
            parts.pop();
        }
    }
    let joined = format!("{}{}", "/".repeat(initial), parts.join("/"));
    if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MysqlDriver {
    /// PyMySQL: pure Python, TCP unless `unix_socket` is given.
    PyMySql,
    /// MySQLdb (mysqlclient), SQLAlchemy's default: libmysqlclient, like diesel.
    MySqlDb,
}

const MYSQL_SSL_MODES: [&str; 5] = ["disabled", "preferred", "required", "verify_ca", "verify_identity"];

fn mysql(sa: &SaUrl<'_>, driver: MysqlDriver) -> Result<Translated, UrlError> {
    let db = database_name(sa)?;
    // diesel takes the first path segment as it is, without percent-decoding, and the `url`
    // crate percent-encodes these on parsing: such a name cannot reach the server intact.
    let carried = db.bytes().all(|b| b.is_ascii_graphic() && !b"/\"#<>?`{}".contains(&b));
    if !carried || db == "." || db == ".." {
        return Err(UrlError::UnsupportedDatabaseName);
    }
    let (user, password) = credentials(sa)?;
    let host = sa.host.map(checked_host).transpose()?;
    let port = parse_port(sa.port)?;

    let mut ignored = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut unix_socket = None;
    let mut ssl_mode = None;
    let (mut ssl_ca, mut ssl_cert, mut ssl_key) = (None, None, None);
    let (mut capath, mut cipher) = (false, false);
    let (mut check_hostname, mut verify_cert, mut verify_identity) = (None, None, None);
    let (mut ssl, mut ssl_disabled) = (None, None);
    for (key, value) in sa.query_pairs() {
        match key.as_str() {
            // SQLAlchemy lets the query override the URL's own parts; diesel rejects `database`.
            "database" | "db" | "user" | "password" | "passwd" | "host" | "port" => {
                return Err(UrlError::QueryOverride(key));
            }
            "unix_socket"
            | "ssl_mode"
            | "ssl_ca"
            | "ssl_cert"
            | "ssl_key"
            | "ssl_capath"
            | "ssl_cipher"
            | "ssl_check_hostname"
            | "ssl_verify_cert"
            | "ssl_verify_identity"
            | "ssl"
            | "ssl_disabled" => {
                if seen.contains(&key) {
                    return Err(UrlError::RepeatedOption(key));
                }
                seen.push(key.clone());
            }
            _ => {}
        }
        match key.as_str() {
            "unix_socket" => unix_socket = Some(value),
            "ssl_mode" => {
                let mode = value.to_lowercase();
                if !MYSQL_SSL_MODES.contains(&mode.as_str()) {
                    return Err(UrlError::InvalidOption {
                        key,
                        expected: "disabled, preferred, required, verify_ca or verify_identity",
                    });
                }
                ssl_mode = Some(mode);
            }
            "ssl_ca" => ssl_ca = Some(value),
            "ssl_cert" => ssl_cert = Some(value),
            "ssl_key" => ssl_key = Some(value),
            "ssl_check_hostname" => check_hostname = Some(asbool(&key, &value)?),
            "ssl_verify_cert" => verify_cert = Some(asbool(&key, &value)?),
            "ssl_verify_identity" => verify_identity = Some(asbool(&key, &value)?),
            "ssl" => ssl = Some(asbool(&key, &value)?),
            "ssl_disabled" => ssl_disabled = Some(asbool(&key, &value)?),
            // diesel cannot take a CA directory or a cipher list; they still ask for TLS.
            "ssl_capath" => {
                capath = true;
                note_ignored(&mut ignored, &key);
            }
            "ssl_cipher" => {
                cipher = true;
                note_ignored(&mut ignored, &key);
            }
            _ => note_ignored(&mut ignored, &key),
        }
    }

    // PyMySQL: TLS when any ssl option is given; the certificate is verified, and then the
    // host name too, when there is a CA, unless ssl_verify_cert / ssl_check_hostname /
    // ssl_verify_identity say otherwise. An explicit ssl_mode (mysqlclient's) wins.
    let ssl_mode = ssl_mode.or_else(|| {
        if ssl_disabled == Some(true) {
            return Some("disabled".to_string());
        }
        let has_ca = ssl_ca.is_some() || capath;
        let wanted = has_ca
            || ssl_cert.is_some()
            || ssl_key.is_some()
            || cipher
            || ssl == Some(true)
            || verify_cert == Some(true)
            || verify_identity == Some(true)
            || check_hostname == Some(true);
        if !wanted {
            return None;
        }
        let verify_cert = verify_cert.unwrap_or(has_ca);
        let verify_host = verify_identity.or(check_hostname).unwrap_or(has_ca);
        Some(
            match (verify_cert, verify_host) {
                (true, true) => "verify_identity",
                (true, false) => "verify_ca",
                (false, _) => "required",
            }
            .to_string(),
        )
    });

    let (host, port) = match driver {
        // diesel drops the host (so the socket is used) only when it is `localhost`.
        MysqlDriver::PyMySql if unix_socket.is_some() => ("localhost".to_string(), None),
        MysqlDriver::PyMySql => {
            let host = match host.as_deref() {
                None | Some("localhost") => "127.0.0.1".to_string(),
                Some(h) => h.to_string(),
            };
            (host, Some(port.unwrap_or(3306)))
        }
        MysqlDriver::MySqlDb => (host.unwrap_or_else(|| "localhost".to_string()), port),
    };

    let mut params: Vec<(&str, String)> = Vec::new();
    let options = [
        ("unix_socket", unix_socket),
        ("ssl_mode", ssl_mode),
        ("ssl_ca", ssl_ca),
        ("ssl_cert", ssl_cert),
        ("ssl_key", ssl_key),
    ];
    for (key, value) in options {
        if let Some(value) = value {
            if value.contains('\0') {
                return Err(UrlError::Nul("query option value"));
            }
            params.push((key, value));
        }
    }
    let require_tls = params.iter().any(|(k, v)| *k == "ssl_mode" && !matches!(v.as_str(), "disabled" | "preferred"));
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let conn = format!("mysql://{}{host}{port}/{db}{}", userinfo(&user, password.as_deref()), query_string(&params));
    Ok(Translated { conn, ignored, require_tls })
}

/// libpq connection parameters carried from the query (besides `host` and `port`). Anything
/// else is SQLAlchemy's or psycopg's, or not a connection parameter, and is dropped.
const PG_PARAMETERS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslsni",
    "sslcompression",
    "sslcertmode",
    "sslnegotiation",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "gssencmode",
    "channel_binding",
    "require_auth",
    "krbsrvname",
    "gsslib",
    "connect_timeout",
    "application_name",
    "fallback_application_name",
    "options",
    "target_session_attrs",
    "load_balance_hosts",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "hostaddr",
    "service",
    "passfile",
];

fn postgres(sa: &SaUrl<'_>) -> Result<Translated, UrlError> {
    let db = database_name(sa)?;
    if db.contains('\0') {
        return Err(UrlError::Nul("database name"));
    }
    let (user, password) = credentials(sa)?;
    let host = sa.host.map(checked_host).transpose()?;
    let port = parse_port(sa.port)?;

    let mut ignored = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut params: Vec<(&str, String)> = Vec::new();
    let mut query_hosts: Vec<String> = Vec::new();
    let mut query_port = None;
    for (key, value) in sa.query_pairs() {
        match key.as_str() {
            "user" | "password" | "dbname" => return Err(UrlError::QueryOverride(key)),
            "host" => {
                query_hosts.push(value);
                continue;
            }
            _ => {}
        }
        let known = key == "port" || PG_PARAMETERS.contains(&key.as_str());
        if !known {
            note_ignored(&mut ignored, &key);
            continue;
        }
        if seen.contains(&key) {
            return Err(UrlError::RepeatedOption(key));
        }
        seen.push(key.clone());
        if value.contains('\0') {
            return Err(UrlError::Nul("query option value"));
        }
        if key == "port" {
            query_port = Some(value);
        } else if let Some(name) = PG_PARAMETERS.iter().find(|p| **p == key) {
            params.push((name, value));
        }
    }

    // SQLAlchemy's multi-host form (`_split_multihost_from_url`): `?host=h1:5432&host=h2:5432`
    // or `?host=h1,h2`; a single `?host=/run/postgresql` names the socket directory.
    let mut host_param = None;
    let mut port_param = query_port;
    if !query_hosts.is_empty() {
        if host.is_some() {
            return Err(UrlError::QueryOverride("host".to_string()));
        }
        let tokens: Vec<&str> = match query_hosts.as_slice() {
            [one] => one.split(',').collect(),
            many => many.iter().map(String::as_str).collect(),
        };
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for token in tokens {
            let split =
                if token.starts_with('/') || token.parse::<Ipv6Addr>().is_ok() { None } else { token.rsplit_once(':') };
            match split {
                Some((h, p)) => {
                    hosts.push(h.to_string());
                    ports.push(parse_port(Some(p))?.map(|p| p.to_string()));
                }
                None => {
                    hosts.push(token.to_string());
                    ports.push(None);
                }
            }
        }
        if hosts.iter().any(|h| h.contains('\0')) {
            return Err(UrlError::Nul("host"));
        }
        if ports.iter().any(Option::is_some) {
            if port_param.is_some() || port.is_some() {
                return Err(UrlError::QueryOverride("port".to_string()));
            }
            port_param = Some(ports.into_iter().map(Option::unwrap_or_default).collect::<Vec<_>>().join(","));
        }
        host_param = Some(hosts.join(","));
    }
    if port_param.is_some() && port.is_some() {
        return Err(UrlError::QueryOverride("port".to_string()));
    }

    let mut netloc = host.unwrap_or_default();
    if netloc.is_empty() {
        // No host before the path: libpq's defaults, or the query's hosts; a port alone goes
        // to the query too.
        port_param = port_param.or(port.map(|p| p.to_string()));
    } else if let Some(p) = port {
        netloc.push_str(&format!(":{p}"));
    }
    let require_tls =
        params.iter().any(|(k, v)| *k == "sslmode" && matches!(v.as_str(), "require" | "verify-ca" | "verify-full"));
    let mut all: Vec<(&str, String)> = Vec::new();
    if let Some(h) = host_param {
        all.push(("host", h));
    }
    if let Some(p) = port_param {
        all.push(("port", p));
    }
    all.extend(params);
    let conn =
        format!("postgresql://{}{netloc}/{}{}", userinfo(&user, password.as_deref()), enc(db), query_string(&all));
    Ok(Translated { conn, ignored, require_tls })
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
mod tests {
    use super::*;

    fn cwd() -> &'static Path {
        Path::new("/srv/cinder")
    }

    fn ok(url: &str) -> DbUrl {
        translate(url, cwd()).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn conn(url: &str) -> String {
        ok(url).connection_string().to_string()
    }

    fn err(url: &str) -> UrlError {
        match translate(url, cwd()) {
            Ok(u) => panic!("{url} translated to {u:?}"),
            Err(e) => e,
        }
    }

    /// The user and password a diesel MySQL URL or a libpq URI carries, decoded as they decode
    /// them (`%XX` only).
    fn decoded_credentials(conn: &str) -> (String, Option<String>) {
        let rest = conn.split_once("://").expect("test input").1;
        let at = rest.find('@').expect("userinfo");
        let info = &rest[..at];
        let dec = |s: &str| percent_decode_str(s).decode_utf8().expect("test input").into_owned();
        match info.split_once(':') {
            Some((u, p)) => (dec(u), Some(dec(p))),
            None => (dec(info), None),
        }
    }

    // ---- reading, as SQLAlchemy reads ----

    #[test]
    fn sqlalchemy_splitting() {
        let sa = SaUrl::parse("mysql+pymysql://u:p@h:3306/db?x=1").expect("test input");
        assert_eq!(
            (sa.name, sa.username, sa.password, sa.host, sa.port, sa.database, sa.query),
            ("mysql+pymysql", Some("u"), Some("p"), Some(SaHost::Name("h")), Some("3306"), Some("db"), Some("x=1"))
        );
        // The password runs to the first `@`: `/`, `:` and `?` are fine in it.
        let sa = SaUrl::parse("mysql://u:a/b:c?d@h/db").expect("test input");
        assert_eq!((sa.username, sa.password, sa.host), (Some("u"), Some("a/b:c?d"), Some(SaHost::Name("h"))));
        // Without a password, the user ends at the last `@` before the first `:` or `/`.
        let sa = SaUrl::parse("mysql://a@b@h:1/db").expect("test input");
        assert_eq!(
            (sa.username, sa.password, sa.host, sa.port),
            (Some("a@b"), None, Some(SaHost::Name("h")), Some("1"))
        );
        // No userinfo at all.
        let sa = SaUrl::parse("mysql://h/db").expect("test input");
        assert_eq!((sa.username, sa.host, sa.database), (None, Some(SaHost::Name("h")), Some("db")));
        // IPv6.
        let sa = SaUrl::parse("mysql://u:p@[::1]:3307/db").expect("test input");
        assert_eq!((sa.host, sa.port), (Some(SaHost::Ipv6("::1")), Some("3307")));
        // SQLite forms.
        let sa = SaUrl::parse("sqlite:////var/lib/cinder/cinder.sqlite").expect("test input");
        assert_eq!((sa.host, sa.database), (None, Some("/var/lib/cinder/cinder.sqlite")));
        let sa = SaUrl::parse("sqlite://").expect("test input");
        assert_eq!((sa.host, sa.database), (None, None));
    }

    #[test]
    fn qsl_like_python() {
        assert_eq!(
            parse_qsl("a=1&b=&c&&d=x+y%20z&e=%zz&=v&f=%FF"),
            vec![
                ("a".into(), "1".into()),
                ("d".into(), "x y z".into()),
                ("e".into(), "%zz".into()),
                ("".into(), "v".into()),
                ("f".into(), "\u{fffd}".into())
            ]
        );
        assert_eq!(unquote("a%2Bb+c%40"), "a+b+c@");
    }

    #[test]
    fn not_urls() {
        for url in ["", "cinder", "://x", "mysql:/x", "mysql//x", "my-sql://h/db", " mysql://h/db"] {
            assert_eq!(err(url), UrlError::NotAUrl, "{url}");
        }
        assert_eq!(err("mysql://h/db\nfoo"), UrlError::ControlCharacter);
        assert_eq!(err("mysql://u:p\t@h/db"), UrlError::ControlCharacter);
    }

    #[test]
    fn unsupported_schemes_are_named() {
        for scheme in
            ["oracle", "mssql+pyodbc", "mysql+asyncmy", "postgresql+asyncpg", "MYSQL", "postgres+psycopg2", "db2"]
        {
            let e = err(&format!("{scheme}://u:pw@h/db"));
            assert_eq!(e, UrlError::UnsupportedScheme(scheme.to_string()));
            assert!(e.to_string().contains(&format!("'{scheme}'")), "{e}");
        }
    }

    // ---- SQLite ----

    #[test]
    fn sqlite_paths() {
        let u = ok("sqlite:////var/lib/cinder/cinder.sqlite");
        assert_eq!(u.backend, Backend::Sqlite);
        assert_eq!(u.connection_string(), "/var/lib/cinder/cinder.sqlite");
        assert_eq!(u.redacted, "sqlite:////var/lib/cinder/cinder.sqlite");
        assert_eq!(conn("sqlite:///cinder.sqlite"), "/srv/cinder/cinder.sqlite");
        assert_eq!(conn("sqlite:///data/./x/../cinder.db"), "/srv/cinder/data/cinder.db");
        assert_eq!(conn("sqlite:///../../../x.db"), "/x.db");
        assert_eq!(conn("sqlite+pysqlite:////a//b/"), "/a/b");
        assert_eq!(translate("sqlite:///rel.db", Path::new("/")).expect("test input").connection_string(), "/rel.db");
        assert_eq!(translate("sqlite:///rel.db", Path::new("/srv/")).expect("test input").connection_string(), "/srv/rel.db");
        // Python keeps exactly two leading slashes.
        assert_eq!(conn("sqlite://///x.db"), "//x.db");
        assert_eq!(conn("sqlite:///////x.db"), "/x.db");
        // Spaces and non-ASCII are kept as written.
        assert_eq!(conn("sqlite:////var/lib/cinder/my db é.sqlite"), "/var/lib/cinder/my db é.sqlite");
    }

    #[test]
    fn sqlite_query_is_ignored_and_reported() {
        let u = ok("sqlite:////x.db?timeout=30&check_same_thread=false&timeout=5");
        assert_eq!(u.connection_string(), "/x.db");
        assert_eq!(u.ignored, vec!["timeout", "check_same_thread"]);
        assert_eq!(ok("sqlite:////x.db?uri=false").connection_string(), "/x.db");
        assert_eq!(err("sqlite:///file:x.db?mode=ro&uri=true"), UrlError::SqliteUri);
        assert!(matches!(err("sqlite:////x.db?uri=maybe"), UrlError::InvalidOption { .. }));
    }

    #[test]
    fn sqlite_memory_is_refused() {
        for url in ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite+pysqlite://", "sqlite://?timeout=3"] {
            assert_eq!(err(url), UrlError::SqliteInMemory, "{url}");
        }
        assert!(err("sqlite://").to_string().contains("in-memory"));
    }

    #[test]
    fn sqlite_with_a_server_is_refused() {
        for url in ["sqlite://host/x.db", "sqlite://u:p@/x.db", "sqlite://:3/x.db", "sqlite://relative.db"] {
            assert_eq!(err(url), UrlError::SqliteServer, "{url}");
        }
    }

    #[test]
    fn sqlite_percent_escape_is_ambiguous() {
        assert_eq!(err("sqlite:////var/lib/my%20db.sqlite"), UrlError::AmbiguousPercent("path"));
        assert_eq!(conn("sqlite:////var/lib/100%.db"), "/var/lib/100%.db");
    }

    #[test]
    fn sqlite_non_utf8_cwd() {
        use std::os::unix::ffi::OsStrExt;
        let cwd = Path::new(std::ffi::OsStr::from_bytes(b"/srv/\xff"));
        assert_eq!(translate("sqlite:///x.db", cwd).unwrap_err(), UrlError::NonUtf8WorkingDirectory);
        assert_eq!(translate("sqlite:////x.db", cwd).expect("test input").connection_string(), "/x.db");
    }

    #[test]
    fn normpath_like_python() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("//", "//"),
            ("///", "/"),
            ("a/b/../c", "a/c"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/../..", ".."),
            ("./", "."),
            ("/a/./b/", "/a/b"),
        ] {
            assert_eq!(normpath(input), want, "{input}");
        }
    }

    // ---- MySQL / MariaDB ----

    #[test]
    fn mysql_schemes() {
        for scheme in ["mysql", "mysql+mysqldb", "mariadb", "mariadb+mysqldb"] {
            let u = ok(&format!("{scheme}://cinder:pw@db.example.com:3307/cinder"));
            assert_eq!(u.backend, Backend::Mysql);
            assert_eq!(u.connection_string(), "mysql://cinder:pw@db.example.com:3307/cinder");
        }
        for scheme in ["mysql+pymysql", "mariadb+pymysql"] {
            assert_eq!(
                conn(&format!("{scheme}://cinder:pw@db.example.com/cinder")),
                "mysql://cinder:pw@db.example.com:3306/cinder"
            );
        }
    }

    #[test]
    fn mysql_devstack_url() {
        let u = ok("mysql+pymysql://root:secretdatabase@127.0.0.1/cinder?charset=utf8&plugin=dbcounter");
        assert_eq!(u.connection_string(), "mysql://root:secretdatabase@127.0.0.1:3306/cinder");
        assert_eq!(u.ignored, vec!["charset", "plugin"]);
        assert_eq!(u.redacted, "mysql+pymysql://root:***@127.0.0.1/cinder?charset=utf8&plugin=dbcounter");
    }

    #[test]
    fn mysql_localhost_follows_the_driver() {
        // PyMySQL always uses TCP; libmysqlclient (diesel) would take `localhost` as the socket.
        assert_eq!(conn("mysql+pymysql://u:p@localhost/c"), "mysql://u:p@127.0.0.1:3306/c");
        assert_eq!(conn("mysql+pymysql://u:p@/c"), "mysql://u:p@127.0.0.1:3306/c");
        assert_eq!(conn("mysql+pymysql://u:p@localhost:3310/c"), "mysql://u:p@127.0.0.1:3310/c");
        // MySQLdb is libmysqlclient: the same meaning as diesel's.
        assert_eq!(conn("mysql://u:p@localhost/c"), "mysql://u:p@localhost/c");
        assert_eq!(conn("mysql+mysqldb://u:p@/c"), "mysql://u:p@localhost/c");
        assert_eq!(conn("mysql://u:p@h/c"), "mysql://u:p@h/c");
    }

    #[test]
    fn mysql_unix_socket() {
        let u = ok("mysql+pymysql://cinder:pw@controller/cinder?unix_socket=/var/run/mysqld/mysqld.sock&charset=utf8");
        assert_eq!(
            u.connection_string(),
            "mysql://cinder:pw@localhost/cinder?unix_socket=%2Fvar%2Frun%2Fmysqld%2Fmysqld.sock"
        );
        assert_eq!(u.ignored, vec!["charset"]);
        // MySQLdb keeps the host: libmysqlclient uses the socket only for `localhost`.
        assert_eq!(
            conn("mysql://cinder:pw@localhost/cinder?unix_socket=/tmp/my.sock"),
            "mysql://cinder:pw@localhost/cinder?unix_socket=%2Ftmp%2Fmy.sock"
        );
        assert_eq!(
            conn("mysql://cinder:pw@dbhost/cinder?unix_socket=/s"),
            "mysql://cinder:pw@dbhost/cinder?unix_socket=%2Fs"
        );
    }

    #[test]
    fn mysql_ipv6_and_ports() {
        assert_eq!(conn("mysql+pymysql://u:p@[::1]/c"), "mysql://u:p@[::1]:3306/c");
        assert_eq!(conn("mysql://u:p@[2001:db8::5]:3307/c"), "mysql://u:p@[2001:db8::5]:3307/c");
        assert_eq!(err("mysql://u:p@[::1/c"), UrlError::InvalidHost);
        assert_eq!(err("mysql://u:p@[]/c"), UrlError::InvalidHost);
        assert_eq!(err("mysql://u:p@[nope]/c"), UrlError::InvalidHost);
        assert_eq!(err("mysql://u:p@[::1]x/c"), UrlError::InvalidHost);
        assert_eq!(err("mysql://u:p@[fe80::1%25eth0]/c"), UrlError::InvalidHost);
        assert_eq!(err("mysql://u:p@bad host/c"), UrlError::InvalidHost);
        assert_eq!(err("mysql://u:p@héte/c"), UrlError::InvalidHost);
        for port in ["", "0", "65536", "33o6", "-1", "+3306"] {
            assert_eq!(err(&format!("mysql://u:p@h:{port}/c")), UrlError::InvalidPort, "{port}");
        }
        assert_eq!(conn("mysql://u:p@h:65535/c"), "mysql://u:p@h:65535/c");
    }

    #[test]
    fn mysql_database_name() {
        assert_eq!(err("mysql+pymysql://u:p@h"), UrlError::MissingDatabase);
        assert_eq!(err("mysql+pymysql://u:p@h/"), UrlError::MissingDatabase);
        assert_eq!(err("mysql+pymysql://u:p@h/?charset=utf8"), UrlError::MissingDatabase);
        assert_eq!(err("mysql://h/a/b"), UrlError::UnsupportedDatabaseName);
        assert_eq!(err("mysql://h/my db"), UrlError::UnsupportedDatabaseName);
        assert_eq!(err("mysql://h/cindér"), UrlError::UnsupportedDatabaseName);
        assert_eq!(err("mysql://h/.."), UrlError::UnsupportedDatabaseName);
        assert_eq!(err("mysql://h/db%2Fx"), UrlError::AmbiguousPercent("database name"));
        assert_eq!(conn("mysql://h/cinder_db-2$"), "mysql://h/cinder_db-2$");
    }

    #[test]
    fn mysql_query_overrides_are_refused() {
        for key in ["database", "db", "user", "password", "passwd", "host", "port"] {
            let e = err(&format!("mysql://u:pw@h/c?{key}=x"));
            assert_eq!(e, UrlError::QueryOverride(key.to_string()));
        }
        assert_eq!(err("mysql://h/c?unix_socket=/a&unix_socket=/b"), UrlError::RepeatedOption("unix_socket".into()));
        // A repeated option that is dropped anyway does not matter.
        assert_eq!(ok("mysql://h/c?charset=utf8&charset=latin1").ignored, vec!["charset"]);
    }

    #[test]
    fn mysql_dropped_options() {
        let u = ok("mysql+pymysql://u:p@h/c?charset=utf8mb4&plugin=dbcounter&read_default_file=/etc/my.cnf&connect_timeout=5&x%20y=1&ssl_cipher=AES&ssl_capath=/etc/ssl/certs");
        assert_eq!(
            u.ignored,
            vec![
                "charset",
                "plugin",
                "read_default_file",
                "connect_timeout",
                "(an option whose name is not a plain word)",
                "ssl_cipher",
                "ssl_capath"
            ]
        );
    }

    #[test]
    fn mysql_tls_mapping() {
        let base = "mysql+pymysql://u:p@db/c";
        let mode = |q: &str| {
            let c = conn(&format!("{base}?{q}"));
            c.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default()
        };
        // A CA: PyMySQL verifies the certificate and the host name.
        assert_eq!(mode("ssl_ca=/etc/ssl/ca.pem"), "ssl_mode=verify_identity&ssl_ca=%2Fetc%2Fssl%2Fca.pem");
        assert_eq!(mode("ssl_ca=/ca&ssl_check_hostname=false"), "ssl_mode=verify_ca&ssl_ca=%2Fca");
        assert_eq!(mode("ssl_ca=/ca&ssl_verify_identity=false"), "ssl_mode=verify_ca&ssl_ca=%2Fca");
        assert_eq!(mode("ssl_ca=/ca&ssl_verify_cert=false"), "ssl_mode=required&ssl_ca=%2Fca");
        // A client certificate alone: encrypted, not verified.
        assert_eq!(mode("ssl_cert=/c.pem&ssl_key=/k.pem"), "ssl_mode=required&ssl_cert=%2Fc.pem&ssl_key=%2Fk.pem");
        assert_eq!(mode("ssl=true"), "ssl_mode=required");
        assert_eq!(mode("ssl=false"), "");
        assert_eq!(mode("ssl_verify_cert=true"), "ssl_mode=verify_ca");
        assert_eq!(mode("ssl_verify_cert=yes&ssl_verify_identity=on"), "ssl_mode=verify_identity");
        assert_eq!(mode("ssl_capath=/etc/ssl/certs"), "ssl_mode=verify_identity");
        assert_eq!(mode("ssl_disabled=true&ssl_ca=/ca"), "ssl_mode=disabled&ssl_ca=%2Fca");
        // mysqlclient's own spelling wins, in any case.
        assert_eq!(mode("ssl_mode=REQUIRED&ssl_ca=/ca"), "ssl_mode=required&ssl_ca=%2Fca");
        assert_eq!(mode("ssl_mode=verify_identity"), "ssl_mode=verify_identity");
        assert_eq!(mode("charset=utf8"), "");
        assert_eq!(
            err(&format!("{base}?ssl_mode=strict")),
            UrlError::InvalidOption {
                key: "ssl_mode".into(),
                expected: "disabled, preferred, required, verify_ca or verify_identity"
            }
        );
        assert!(matches!(err(&format!("{base}?ssl_verify_cert=perhaps")), UrlError::InvalidOption { .. }));
        assert_eq!(err(&format!("{base}?ssl_ca=/a&ssl_ca=/b")), UrlError::RepeatedOption("ssl_ca".into()));
    }

    #[test]
    fn require_tls() {
        let tls = |url: &str| ok(url).require_tls;
        assert!(!tls("sqlite:////x.db"));
        assert!(!tls("mysql+pymysql://u:p@h/c?charset=utf8"));
        assert!(tls("mysql+pymysql://u:p@h/c?ssl_ca=/ca"));
        assert!(tls("mysql+pymysql://u:p@h/c?ssl=true"));
        assert!(tls("mysql://u:p@h/c?ssl_mode=REQUIRED"));
        assert!(!tls("mysql://u:p@h/c?ssl_mode=preferred"));
        assert!(!tls("mysql://u:p@h/c?ssl_disabled=true&ssl_ca=/ca"));
        assert!(!tls("postgresql://u:p@h/c"));
        assert!(!tls("postgresql://u:p@h/c?sslmode=prefer"));
        for mode in ["require", "verify-ca", "verify-full"] {
            assert!(tls(&format!("postgresql://u:p@h/c?sslmode={mode}")), "{mode}");
        }
    }

    #[test]
    fn mysql_user_without_password() {
        assert_eq!(conn("mysql://cinder@h/c"), "mysql://cinder@h/c");
        assert_eq!(conn("mysql://cinder:@h/c"), "mysql://cinder@h/c");
        assert_eq!(conn("mysql://:pw@h/c"), "mysql://:pw@h/c");
        assert_eq!(conn("mysql://h/c"), "mysql://h/c");
        assert_eq!(ok("mysql://cinder@h/c").redacted, "mysql://cinder@h/c");
    }

    // ---- passwords ----

    const PASSWORDS: [(&str, &str); 10] = [
        // (as written in the URL, as SQLAlchemy decodes it)
        ("p%40ss", "p@ss"),
        ("a:b:c", "a:b:c"),
        ("a/b/c", "a/b/c"),
        ("p%2540", "p%40"),
        ("d$ll$r", "d$ll$r"),
        ("with space", "with space"),
        ("with%20space+plus", "with space+plus"),
        ("pässwörd€😀", "pässwörd€😀"),
        ("q?x=1&y#z", "q?x=1&y#z"),
        ("%FFbad%zz", "\u{fffd}bad%zz"),
    ];

    #[test]
    fn passwords_survive_for_mysql_and_postgres() {
        for (written, want) in PASSWORDS {
            for (scheme, backend) in [
                ("mysql+pymysql", Backend::Mysql),
                ("mysql", Backend::Mysql),
                ("postgresql+psycopg2", Backend::Postgres),
            ] {
                let url = format!("{scheme}://cinder:{written}@db.example.com/cinder");
                let u = ok(&url);
                assert_eq!(u.backend, backend);
                let (user, password) = decoded_credentials(u.connection_string());
                assert_eq!(user, "cinder", "{url}");
                assert_eq!(password.as_deref(), Some(want), "{url}");
                // Only unreserved characters and escapes: nothing the `url` crate or libpq would
                // read as a delimiter.
                let info = u.connection_string().split_once("://").expect("test input").1.split_once('@').expect("test input").0;
                assert!(info.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%:".contains(&b)), "{info}");
                assert_eq!(u.redacted, format!("{scheme}://cinder:***@db.example.com/cinder"));
            }
        }
    }

    #[test]
    fn users_are_decoded_and_reencoded() {
        let c = conn("mysql://us%40er%3Aname:pw@h/c");
        assert_eq!(decoded_credentials(&c), ("us@er:name".to_string(), Some("pw".to_string())));
        let c = conn("postgresql://j%C3%B6rg@h/c");
        assert_eq!(c, "postgresql://j%C3%B6rg@h/c");
        assert_eq!(decoded_credentials(&c), ("jörg".to_string(), None));
        assert_eq!(err("mysql://u%00:pw@h/c"), UrlError::Nul("user name"));
        assert_eq!(err("postgresql://u:p%00w@h/c"), UrlError::Nul("password"));
    }

    #[test]
    fn raw_at_in_password_is_refused() {
        for url in [
            "mysql+pymysql://cinder:p@ss@db/cinder",
            "postgresql://cinder:p@ss/x@db/cinder",
            "mysql://cinder:pa@ss?x=1@db/cinder",
            "sqlite://u:pa@ss@/x",
        ] {
            let e = err(url);
            assert_eq!(e, UrlError::UnencodedAt, "{url}");
        }
    }

    #[test]
    fn no_error_or_debug_shows_the_password() {
        let secret = "Zq9-s3cr3t";
        let encoded = "Zq9%2Ds3cr3t";
        let bad = [
            format!("mysql+pymysql://cinder:{secret}@db"),
            format!("mysql+pymysql://cinder:{secret}@db:99999/cinder"),
            format!("mysql+pymysql://cinder:{secret}@db:{secret}/cinder"),
            format!("mysql+pymysql://cinder:{secret}@[{secret}]/cinder"),
            format!("mysql+pymysql://cinder:{secret}@db/cinder?password={secret}"),
            format!("mysql+pymysql://cinder:{secret}@db/cinder?ssl_mode={secret}"),
            format!("mysql+pymysql://cinder:{secret}@db/cinder?ssl_verify_cert={secret}"),
            format!("mysql+pymysql://cinder:{secret}@db/cinder?{secret}=1&{secret}=2&unix_socket=a&unix_socket=b"),
            format!("mysql+pymysql://cinder:{secret}@db/{secret}/x"),
            format!("mysql+pymysql://cinder:{secret}@db/x%41"),
            format!("mysql+pymysql://cinder:{secret}@db/x\n"),
            format!("mysql+pymysql://cinder:{secret}@x@db/cinder"),
            format!("mysql+pymysql://cinder:{encoded}@db"),
            format!("postgresql://cinder:{secret}@db"),
            format!("postgresql://cinder:{secret}@db/c?password={secret}"),
            format!("postgresql://cinder:{secret}@db/c?host=/s&port={secret}"),
            format!("postgresql://cinder:{secret}@db:1/c?port=2"),
            format!("oracle://cinder:{secret}@db/c"),
            format!("sqlite://cinder:{secret}@/x.db"),
            format!("cinder:{secret}@db/cinder"),
            format!("mysql+pymysql://cinder:{secret}%00@db/c"),
        ];
        for url in &bad {
            let e = translate(url, cwd()).expect_err(url);
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(secret) && !shown.contains(encoded), "{url}: {shown}");
        }
        let good = [
            format!("mysql+pymysql://cinder:{secret}@db/cinder?charset=utf8&{secret}x=1"),
            format!("mysql+pymysql://cinder:{encoded}@db/cinder"),
            format!("postgresql+psycopg2://cinder:{secret}@db/cinder?sslpassword={secret}&client_encoding=utf8"),
            format!("postgresql+psycopg2://cinder:{encoded}@db/cinder"),
        ];
        for url in &good {
            let u = ok(url);
            assert!(u.connection_string().contains("Zq9"), "{url}");
            let shown = format!("{u:?} {} {:?}", u.redacted, u.ignored);
            assert!(!shown.contains(secret) && !shown.contains(encoded), "{url}: {shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn debug_prints_only_the_redacted_url() {
        let u = ok("mysql+pymysql://cinder:hunter2@db/cinder");
        assert_eq!(format!("{u:?}"), "DbUrl(\"mysql+pymysql://cinder:***@db/cinder\")");
    }

    #[test]
    fn redaction() {
        let r = |url: &str| ok(url).redacted;
        assert_eq!(r("mysql://u:@h/c"), "mysql://u:***@h/c");
        assert_eq!(r("mysql://u:p%40ss@h/c?charset=utf8"), "mysql://u:***@h/c?charset=utf8");
        assert_eq!(r("mysql://u:a/b?c@h/c"), "mysql://u:***@h/c");
        assert_eq!(
            r("postgresql://u:x@h/c?sslpassword=k&ssl_key_password=k&application_name=cinder&flag"),
            "postgresql://u:***@h/c?sslpassword=***&ssl_key_password=***&application_name=cinder&flag"
        );
        assert_eq!(r("postgresql://h/c?SSL%50ASSWORD=k"), "postgresql://h/c?SSL%50ASSWORD=***");
        // A raw `&` in a password option: the pieces after it are not shown either.
        assert_eq!(r("postgresql://h/c?sslpassword=a&b;c&flag=1&d"), "postgresql://h/c?sslpassword=***&***&flag=1&d");
        assert_eq!(r("sqlite:////x.db?timeout=1"), "sqlite:////x.db?timeout=1");
    }

    // ---- PostgreSQL ----

    #[test]
    fn postgres_schemes() {
        for scheme in ["postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"] {
            let u = ok(&format!("{scheme}://cinder:pw@db.example.com:5433/cinder"));
            assert_eq!(u.backend, Backend::Postgres);
            assert_eq!(u.connection_string(), "postgresql://cinder:pw@db.example.com:5433/cinder");
        }
        // No default port: psycopg uses libpq's, as diesel does.
        assert_eq!(conn("postgresql://cinder:pw@db/cinder"), "postgresql://cinder:pw@db/cinder");
        assert_eq!(conn("postgresql://cinder:pw@[::1]:5432/cinder"), "postgresql://cinder:pw@[::1]:5432/cinder");
        assert_eq!(conn("postgresql:///cinder"), "postgresql:///cinder");
    }

    #[test]
    fn postgres_database_name_is_encoded() {
        assert_eq!(conn("postgresql://h/my db?x"), "postgresql://h/my%20db");
        assert_eq!(conn("postgresql://h/a/b"), "postgresql://h/a%2Fb");
        assert_eq!(conn("postgresql://h/cindér"), "postgresql://h/cind%C3%A9r");
        assert_eq!(err("postgresql://u:p@h"), UrlError::MissingDatabase);
        assert_eq!(err("postgresql://u:p@h/"), UrlError::MissingDatabase);
        assert_eq!(err("postgresql://h/c%41"), UrlError::AmbiguousPercent("database name"));
    }

    #[test]
    fn postgres_query() {
        let u = ok(
            "postgresql+psycopg2://u:p@db/cinder?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem&sslcert=/c&sslkey=/k\
             &connect_timeout=10&application_name=keymigrate test&client_encoding=utf8&charset=utf8&plugin=dbcounter\
             &options=-c statement_timeout=5000",
        );
        assert_eq!(
            u.connection_string(),
            "postgresql://u:p@db/cinder?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fca.pem&sslcert=%2Fc&sslkey=%2Fk\
             &connect_timeout=10&application_name=keymigrate%20test&options=-c%20statement_timeout%3D5000"
        );
        assert_eq!(u.ignored, vec!["client_encoding", "charset", "plugin"]);
        assert_eq!(
            err("postgresql://u:p@db/c?sslmode=require&sslmode=disable"),
            UrlError::RepeatedOption("sslmode".into())
        );
        for key in ["user", "password", "dbname"] {
            assert_eq!(err(&format!("postgresql://db/c?{key}=x")), UrlError::QueryOverride(key.into()));
        }
    }

    #[test]
    fn postgres_socket_directory_and_hosts_in_the_query() {
        assert_eq!(
            conn("postgresql+psycopg2://cinder:pw@/cinder?host=/var/run/postgresql"),
            "postgresql://cinder:pw@/cinder?host=%2Fvar%2Frun%2Fpostgresql"
        );
        assert_eq!(
            conn("postgresql://cinder:pw@/cinder?host=/tmp&port=5433"),
            "postgresql://cinder:pw@/cinder?host=%2Ftmp&port=5433"
        );
        assert_eq!(
            conn("postgresql://cinder:pw@:5433/cinder?host=/tmp"),
            "postgresql://cinder:pw@/cinder?host=%2Ftmp&port=5433"
        );
        assert_eq!(
            conn("postgresql://u@/c?host=db1:5432&host=db2:5433"),
            "postgresql://u@/c?host=db1%2Cdb2&port=5432%2C5433"
        );
        assert_eq!(conn("postgresql://u@/c?host=db1,db2"), "postgresql://u@/c?host=db1%2Cdb2");
        assert_eq!(conn("postgresql://u@/c?host=db1:6000"), "postgresql://u@/c?host=db1&port=6000");
        assert_eq!(conn("postgresql://u@/c?host=db1&host=db2:6000"), "postgresql://u@/c?host=db1%2Cdb2&port=%2C6000");
        assert_eq!(err("postgresql://u@db/c?host=/tmp"), UrlError::QueryOverride("host".into()));
        assert_eq!(err("postgresql://u@:1/c?host=db:2"), UrlError::QueryOverride("port".into()));
        assert_eq!(err("postgresql://u@db:1/c?port=2"), UrlError::QueryOverride("port".into()));
        assert_eq!(err("postgresql://u@/c?host=db:x"), UrlError::InvalidPort);
        assert_eq!(conn("postgresql://u@:5433/c"), "postgresql://u@/c?port=5433");
    }

    #[test]
    fn postgres_user_without_password() {
        assert_eq!(conn("postgresql://cinder@db/cinder"), "postgresql://cinder@db/cinder");
        assert_eq!(conn("postgresql://db/cinder"), "postgresql://db/cinder");
        assert_eq!(conn("postgresql://:pw@db/cinder"), "postgresql://:pw@db/cinder");
    }
}

#[cfg(test)]
#[path = "url_fuzz.rs"]
mod fuzz;
