//! TLS end to end: keymigrate over HTTPS to Keystone and Barbican (the testenv's stunnel, in
//! front of the real servers, with the testenv's CA; the catalog's `RegionTLS` endpoints) and
//! over TLS to MariaDB and PostgreSQL (users that may connect only over TLS); every option that
//! selects whom to trust; and every way TLS fails, each one error line, a documented exit code
//! and nothing written (bad certificates, stalls and resets from a rustls front made by the test).

use crate::migrate::Fixture;
use crate::support::cloud::Cloud;
use crate::support::tls::TestCa;
use crate::support::*;

fn ca() -> String {
    env("KEYMIGRATE_TEST_TLS_CA")
}

/// The database URL of `db` as the TLS-only user, with the query `tls` (SQLAlchemy's spelling).
fn tls_url(db: &CinderDb, tls: &str) -> String {
    let user = format!("{}:{}", env("KEYMIGRATE_TEST_DB_TLS_USER"), env("KEYMIGRATE_TEST_DB_TLS_PASSWORD"));
    let url = db.url.replacen("kmtest:kmtest-pw", &user, 1);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{tls}")
}

/// The database's own TLS options, as an operator writes them for the testenv's CA.
fn db_tls(backend: Backend) -> String {
    match backend {
        // PyMySQL: a CA turns on TLS, certificate and host name verification
        Backend::Mysql => format!("ssl_ca={}", ca()),
        _ => format!("sslmode=verify-full&sslrootcert={}", ca()),
    }
}

/// `[keystone_authtoken]` and `[barbican]` over HTTPS: Keystone through the terminator, Barbican
/// from the catalog's RegionTLS, both trusting the testenv's CA by their own options.
fn https_sections(keystone: &str, keystone_tls: &str, barbican_tls: &str) -> String {
    format!(
        "[keystone_authtoken]\nauth_type = password\nauth_url = {keystone}\nusername = {}\npassword = {}\n\
         user_domain_name = Default\nproject_name = {}\nproject_domain_name = Default\n{keystone_tls}\n\n\
         [barbican]\nbarbican_region_name = RegionTLS\n{barbican_tls}\n",
        env("KEYMIGRATE_TEST_CINDER_USER"),
        env("KEYMIGRATE_TEST_CINDER_PASSWORD").replace('$', "$$"),
        env("KEYMIGRATE_TEST_CINDER_PROJECT"),
    )
}

fn keystone_tls_root() -> String {
    env("KEYMIGRATE_TEST_KEYSTONE_TLS_URL").trim_end_matches("/v3").to_string()
}

fn trusting_sections() -> String {
    https_sections(&keystone_tls_root(), &format!("cafile = {}", ca()), &format!("verify_ssl_path = {}", ca()))
}

/// A fixture whose database is reached over TLS as the TLS-only user and whose cinder.conf
/// speaks HTTPS with `sections`.
fn tls_fixture(backend: Backend, host: &str, sections: &str) -> Fixture {
    let mut f = Fixture::new(backend, "password");
    f.seed_host(host);
    f.db.url = tls_url(&f.db, &db_tls(backend));
    f.w.secrets.push(env("KEYMIGRATE_TEST_DB_TLS_PASSWORD"));
    f.conf = f.w.conf(&f.db, Some(&f.key.clone()), sections);
    f
}

/// One full cycle per database: migrate, verify, rollback and migrate again, with HTTPS to
/// Keystone and Barbican and TLS to the database (its user is refused without TLS).
#[test]
fn migrate_verify_rollback_over_tls_on_mariadb_and_postgres() {
    let cloud = Cloud::new();
    for backend in [Backend::Mysql, Backend::Postgres] {
        let f = tls_fixture(backend, "hostT", &trusting_sections());
        let state = f.state.to_str().expect("path").to_string();
        let out = f.migrate(&["--host", "hostT"]);
        out.assert_code(0);
        assert!(!out.stderr.contains("verification off"), "{backend:?}: a verified TLS run warns:\n{}", out.stderr);
        f.check(&cloud);

        let out = f.w.run(&["--config-file", f.conf(), "verify", "--host", "hostT", "-f", "json"]);
        out.assert_code(0);
        assert_eq!(out.json()["ok"], 8, "{backend:?}: {}", out.stdout);

        let migrated: Vec<(String, String, String)> =
            f.migrated.keys().map(|(t, id)| (t.clone(), id.clone(), f.db.key_of(t, id).expect("key"))).collect();
        let out = f.w.run(&["--config-file", f.conf(), "rollback", "--host", "hostT", "--state-dir", &state]);
        out.assert_code(0);
        let cinder = cloud.cinder();
        for (t, id, secret) in &migrated {
            assert_eq!(f.db.key_of(t, id).as_deref(), Some(ZERO), "{t} {id} on {backend:?}");
            assert_eq!(cloud.payload(&cinder, secret).status, 404, "secret {secret} of {t} {id} was not deleted");
        }
        f.migrate(&["--host", "hostT"]).assert_code(0);
        f.check(&cloud);
    }
}

/// A cinder.conf reaching the database at `url`, Keystone and Barbican as usual.
fn conf_with_url(w: &mut Workdir, url: &str, key: &str) -> std::path::PathBuf {
    w.conf_url(url, Some(key), &service_sections("password"))
}

/// Every TLS spelling of SQLAlchemy's URLs keymigrate translates, against the real servers:
/// each connects (as the TLS-only user, or with the client certificate alone) and `status`
/// reads the database.
#[test]
fn the_database_urls_tls_options_work_on_mariadb_and_postgres() {
    let ca = ca();
    let (cert, key) = (env("KEYMIGRATE_TEST_TLS_CLIENT_CERT"), env("KEYMIGRATE_TEST_TLS_CLIENT_KEY"));
    let cert_user = env("KEYMIGRATE_TEST_DB_CERT_USER");
    let cases: Vec<(Backend, &str, String)> = vec![
        (Backend::Mysql, "tls", format!("ssl_ca={ca}")),
        (Backend::Mysql, "tls", format!("ssl_ca={ca}&ssl_check_hostname=false")),
        (Backend::Mysql, "tls", format!("ssl_ca={ca}&ssl_verify_cert=true&ssl_verify_identity=true")),
        (Backend::Mysql, "tls", format!("ssl_ca={ca}&ssl_verify_cert=false")),
        (Backend::Mysql, "tls", format!("ssl_mode=REQUIRED&ssl_ca={ca}")),
        (Backend::Mysql, "tls", format!("ssl_mode=VERIFY_IDENTITY&ssl_ca={ca}")),
        (Backend::Mysql, "cert", format!("ssl_ca={ca}&ssl_cert={cert}&ssl_key={key}")),
        (Backend::Postgres, "tls", format!("sslmode=verify-full&sslrootcert={ca}")),
        (Backend::Postgres, "tls", format!("sslmode=verify-ca&sslrootcert={ca}")),
        (Backend::Postgres, "tls", "sslmode=require".to_string()),
        (Backend::Postgres, "cert", format!("sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}")),
    ];
    let mut dbs = std::collections::HashMap::new();
    for (backend, who, query) in &cases {
        let db = dbs.entry(format!("{backend:?}")).or_insert_with(|| CinderDb::new(*backend));
        let url = match *who {
            "tls" => tls_url(db, query),
            _ => format!("{}{}{query}", db.url.replacen("kmtest:kmtest-pw", &cert_user, 1), if db.url.contains('?') { '&' } else { '?' }),
        };
        let mut w = Workdir::new();
        w.secrets.push(env("KEYMIGRATE_TEST_DB_TLS_PASSWORD"));
        let conf = conf_with_url(&mut w, &url, &random_key());
        let out = w.run(&["--config-file", arg(&conf), "status", "--all-hosts"]);
        assert_eq!(out.code, 0, "{backend:?} {who} {query}:\n{}", out.stderr);
    }
}

/// The database's TLS failures: one error line naming the database (password hidden), exit 2,
/// nothing written.
#[test]
fn the_databases_tls_failures_are_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other_ca = TestCa::new("someone else's CA").write(dir.path(), "other-ca.pem");
    let not_pem = dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").expect("write");
    let missing = dir.path().join("missing-ca.pem");
    let ca = ca();
    let (other, not_pem, missing) = (other_ca.display(), not_pem.display(), missing.display());
    let cases: Vec<(Backend, String, &str)> = vec![
        (Backend::Mysql, String::new(), "must connect over TLS"),
        (Backend::Mysql, "ssl_mode=DISABLED".into(), "Access denied"),
        (Backend::Mysql, format!("ssl_ca={other}"), "certificate"),
        (Backend::Mysql, format!("ssl_ca={missing}"), "missing-ca.pem"),
        (Backend::Mysql, format!("ssl_ca={not_pem}"), "not-pem.pem"),
        (Backend::Mysql, "ssl=true".into(), "without ssl_ca"),
        (Backend::Mysql, "ssl_mode=REQUIRED".into(), "without ssl_ca"),
        (Backend::Mysql, format!("ssl_ca={other}&ssl_check_hostname=false"), "certificate"),
        (Backend::Postgres, "sslmode=disable".into(), "no encryption"),
        (Backend::Postgres, format!("sslmode=verify-full&sslrootcert={other}"), "certificate verify failed"),
        (Backend::Postgres, format!("sslmode=verify-full&sslrootcert={missing}"), "missing-ca.pem"),
        (Backend::Postgres, format!("sslmode=verify-full&sslrootcert={not_pem}"), "not-pem.pem"),
        (Backend::Postgres, format!("sslmode=verify-full&sslrootcert={ca}&hostaddr=127.0.0.1"), "does not match host name"),
    ];
    for (backend, query, needle) in &cases {
        let mut f = Fixture::new(*backend, "password");
        f.seed_host("hostF");
        let mut url = if query.is_empty() { f.db.url.replacen("kmtest:kmtest-pw", &format!("{}:{}", env("KEYMIGRATE_TEST_DB_TLS_USER"), env("KEYMIGRATE_TEST_DB_TLS_PASSWORD")), 1) } else { tls_url(&f.db, query) };
        if needle.contains("host name") {
            url = url.replacen("@127.0.0.1:", "@db.example:", 1);
        }
        f.w.secrets.push(env("KEYMIGRATE_TEST_DB_TLS_PASSWORD"));
        let key = f.key.clone();
        f.conf = conf_with_url(&mut f.w, &url, &key);
        let before = f.db.fingerprint();
        let out = f.migrate(&["--host", "hostF"]);
        eprintln!("{backend:?} {query}: {}", out.stderr.lines().filter(|l| l.starts_with("keymigrate: error:")).collect::<Vec<_>>().join(" | "));
        out.assert_error(2, needle);
        assert!(out.stderr.contains("***"), "{backend:?} {query}: the URL is not shown with its password hidden:\n{}", out.stderr);
        assert_eq!(f.db.fingerprint(), before, "{backend:?} {query}: written");
        assert!(walk(&f.state).iter().all(|p| !p.to_string_lossy().contains("journal") || std::fs::read(p).map(|b| b.len() < 3).unwrap_or(true)), "a journal entry");
    }
}
