//! Tests of the SQLAlchemy URL translator, one section per dialect.

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
