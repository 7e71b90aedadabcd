//! Property tests of the SQLAlchemy URL translator: any string is an answer or an error, never a
//! panic; percent-encoded credentials arrive intact; no error or `Debug` shows the password.

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;

use super::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const SCHEMES: &[&str] = &[
    "sqlite",
    "sqlite+pysqlite",
    "mysql",
    "mysql+pymysql",
    "mysql+mysqldb",
    "mariadb+pymysql",
    "postgresql",
    "postgres",
    "postgresql+psycopg2",
    "postgresql+psycopg",
    "oracle",
    "mysql+",
    "+",
];

/// Characters that steer the parser, and some that must be encoded.
const URL_CHARS: &[char] = &[
    ':', '/', '@', '?', '&', '=', '%', '[', ']', '#', '+', ',', '.', ' ', '\0', '\n', 'a', 'Z', '0', '9', 'f', 'é', '€',
    ';', '\\', '"', '\'', '*',
];

fn url_junk() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(URL_CHARS), 0..60).prop_map(|c| c.into_iter().collect())
}

fn scheme() -> impl Strategy<Value = &'static str> {
    prop::sample::select(SCHEMES)
}

/// The user and password a diesel MySQL URL or a libpq URI carries, decoded as they decode them.
fn carried_credentials(conn: &str) -> Option<(String, Option<String>)> {
    let rest = conn.split_once("://")?.1;
    let info = &rest[..rest.find('@')?];
    let dec = |s: &str| percent_decode_str(s).decode_utf8().ok().map(|s| s.into_owned());
    Some(match info.split_once(':') {
        Some((u, p)) => (dec(u)?, Some(dec(p)?)),
        None => (dec(info)?, None),
    })
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn any_string_is_translated_or_refused(s in any::<String>()) {
        let _ = translate(&s, Path::new("/srv/cinder"));
    }

    #[test]
    fn any_url_shaped_string_is_translated_or_refused(scheme in scheme(), junk in url_junk(), cwd in "/[a-z/]{0,8}") {
        let url = format!("{scheme}://{junk}");
        match translate(&url, Path::new(&cwd)) {
            Ok(u) => {
                // Whatever was accepted is a URL diesel's own parser takes, or an absolute path.
                match u.backend {
                    Backend::Sqlite => prop_assert!(u.connection_string().starts_with('/'), "{:?}", u.connection_string()),
                    Backend::Mysql => prop_assert!(u.connection_string().starts_with("mysql://")),
                    Backend::Postgres => prop_assert!(u.connection_string().starts_with("postgresql://")),
                }
                prop_assert!(!u.connection_string().contains(['\0', '\n']));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn encoded_credentials_arrive_intact(
        scheme in prop::sample::select(&["mysql", "mysql+pymysql", "mariadb+pymysql", "postgresql", "postgresql+psycopg2"][..]),
        user in "[^\0]{0,16}",
        password in "[^\0]{1,24}",
        port in 1u16..,
    ) {
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let url = format!("{scheme}://{}:{}@db.example.com:{port}/cinder", enc(&user), enc(&password));
        let u = translate(&url, Path::new("/")).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
        let got = carried_credentials(u.connection_string());
        prop_assert_eq!(got, Some((user.clone(), Some(password.clone()))));
        let with_port = format!(":{port}/");
        prop_assert!(u.connection_string().contains(&with_port), "{}", u.redacted);
        prop_assert_eq!(u.redacted.clone(), format!("{scheme}://{}:***@db.example.com:{port}/cinder", enc(&user)));
    }

    #[test]
    fn the_password_is_never_shown(
        scheme in scheme(),
        password in "[A-Za-z0-9!$&'()*+,;=~._-]{8,20}",
        before in url_junk(),
        after in url_junk(),
        encode in any::<bool>(),
    ) {
        // A user name cannot hold `/` in SQLAlchemy's grammar: with one, what follows is the host
        // and database, and there is no password to hide.
        let before = before.replace('/', "");
        let written = if encode { utf8_percent_encode(&password, NON_ALPHANUMERIC).to_string() } else { password.clone() };
        for url in [
            format!("{scheme}://cinder:{written}@{after}"),
            format!("{scheme}://cinder:{written}@db/cinder{after}"),
            format!("{scheme}://{before}:{written}@db/{after}"),
            format!("{scheme}://cinder:{written}@db/cinder?password={written}&{after}"),
            format!("{scheme}://cinder:{written}@db/cinder?{written}=1&{after}"),
        ] {
            let shown = match translate(&url, Path::new("/")) {
                Ok(u) => format!("{u:?} {} {:?}", u.redacted, u.ignored),
                Err(e) => format!("{e} {e:?}"),
            };
            for s in [&password, &written] {
                prop_assert!(!shown.contains(s.as_str()), "{url}: {shown}");
            }
        }
    }

    #[test]
    fn ports_outside_1_to_65535_are_refused(port in prop_oneof![Just(0u64), 65536u64..u64::MAX], scheme in scheme()) {
        let url = format!("{scheme}://u:pw@db:{port}/cinder");
        if let Err(e) = translate(&url, Path::new("/")) {
            prop_assert!(matches!(e, UrlError::InvalidPort | UrlError::SqliteServer | UrlError::UnsupportedScheme(_) | UrlError::NotAUrl), "{e:?}");
        } else {
            prop_assert!(false, "{url} accepted");
        }
    }
}
