//! TLS end to end: keymigrate over HTTPS to Keystone and Barbican (the testenv's stunnel, in
//! front of the real servers, with the testenv's CA; the catalog's `RegionTLS` endpoints) and
//! over TLS to MariaDB and PostgreSQL (users that may connect only over TLS); every option that
//! selects whom to trust; and every way TLS fails, each one error line, a documented exit code
//! and nothing written (bad certificates, stalls and resets from a rustls front made by the test).

use std::time::{Duration, Instant};

use keymigrate::clouds;
use keymigrate::http::RetryPolicy;
use keymigrate::keystone::Keystone;

use crate::migrate::Fixture;
use crate::support::cloud::Cloud;
use crate::support::tls::{Handshake, TestCa, TlsFront};
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

/// `[keystone_authtoken]` over HTTPS with the testenv's CA, and Barbican from the catalog's
/// RegionTLS (also used by tests/images.rs for Glance from that region).
pub fn trusting_sections() -> String {
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
        // PyMySQL would not verify here; libmariadb verifies every CA it is given
        (Backend::Mysql, format!("ssl_ca={other}&ssl_verify_cert=false"), "certificate"),
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
        assert_eq!(journal_entries(&f.state), Vec::new(), "{backend:?} {query}: a journal entry");
    }
}

/// A SQLite fixture for host `host` with `sections` for Keystone and Barbican.
fn https_fixture(host: &str, sections: &str) -> Fixture {
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host(host);
    f.conf = f.w.conf(&f.db, Some(&f.key.clone()), sections);
    f
}

/// The lines of a run that warn about verification being off.
fn insecure_warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("turns TLS certificate verification off")).collect()
}

/// The other ways to trust the servers: verification off (each option warns once, however many
/// requests follow) and the system's trust store by default (here `SSL_CERT_FILE`, which the
/// platform verifier reads on Linux, naming the testenv's CA).
#[test]
fn insecure_and_the_system_roots_work_over_https() {
    let cloud = Cloud::new();
    let f = https_fixture("hostI", &https_sections(&keystone_tls_root(), "insecure = true", "verify_ssl = false"));
    let out = f.migrate(&["--host", "hostI"]);
    out.assert_code(0);
    let warnings = insecure_warnings(&out.stderr);
    assert_eq!(warnings.len(), 2, "one warning per option:\n{}", out.stderr);
    assert!(warnings[0].contains("WARNING"), "{}", warnings[0]);
    assert!(warnings.iter().any(|l| l.contains("[keystone_authtoken] insecure = true")), "{warnings:?}");
    assert!(warnings.iter().any(|l| l.contains("[barbican] verify_ssl = false")), "{warnings:?}");
    f.check(&cloud);

    let f = https_fixture("hostR", &https_sections(&keystone_tls_root(), "", ""));
    let out = f.migrate_env(&["--host", "hostR"], &[("SSL_CERT_FILE", &ca())]);
    out.assert_code(0);
    assert!(insecure_warnings(&out.stderr).is_empty(), "{}", out.stderr);
    f.check(&cloud);
}

/// clouds.yaml's TLS keys, as openstacksdk reads them: `cacert`, `verify: <CA file>`,
/// `insecure: true`; without any, the testenv's private CA is unknown.
#[test]
fn clouds_yaml_cacert_verify_and_insecure_work_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca();
    for (tls, works) in [
        (format!("    cacert: {ca}\n"), true),
        (format!("    verify: {ca}\n"), true),
        ("    insecure: true\n".to_string(), true),
        ("    verify: false\n".to_string(), true),
        (String::new(), false),
    ] {
        let yaml = format!(
            "clouds:\n  km-tls:\n    auth:\n      auth_url: {}\n      username: admin\n      password: {}\n      \
             project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n{tls}",
            keystone_tls_root(),
            serde_json::to_string(&env("KEYMIGRATE_TEST_ADMIN_PASSWORD")).expect("JSON"),
        );
        std::fs::write(dir.path().join("clouds.yaml"), yaml).expect("write");
        let identity = clouds::load("km-tls", Vec::new(), dir.path(), None).expect("load the cloud");
        let settings = identity.keystone_settings(Duration::from_secs(30)).expect("settings");
        let retry = RetryPolicy { retries: 1, ..RetryPolicy::default() };
        let keystone = Keystone::new(settings, retry).expect("client");
        match keystone.token() {
            Ok(_) => assert!(works, "{tls}: a token without trusting the CA"),
            Err(e) => {
                assert!(!works, "{tls}: {e}");
                let shown = e.to_string();
                assert!(shown.contains("not signed by a CA keymigrate trusts") && !shown.contains('\n'), "{shown}");
                assert_eq!(e.exit_code(), 2);
            }
        }
    }
}

/// One way HTTPS can fail, and what keymigrate must say.
struct Failure {
    what: &'static str,
    /// `[keystone_authtoken]` auth_url and TLS options
    keystone: String,
    keystone_tls: String,
    /// `[barbican]`'s TLS options, and `--barbican-endpoint` if set
    barbican_tls: String,
    barbican: Option<String>,
    code: i32,
    needle: &'static str,
    /// The units' requests failed without keymigrate knowing whether they reached Barbican (a
    /// timeout or a reset is not told apart from one after the request was sent): the journal
    /// may keep their entries, with no secret, for the next run to settle.
    unknown_outcome: bool,
    /// keeps a TLS front alive for the run
    _front: Option<TlsFront>,
}

/// Every way TLS to Keystone or Barbican fails: one error line with a documented exit code, no
/// row written, no secret left in Barbican, nothing in the journal; a certificate refused is not
/// retried, a stalled or reset handshake is (here once) and then given up.
#[test]
fn every_https_failure_is_one_line_and_writes_nothing() {
    let cloud = Cloud::new();
    let cinder = cloud.cinder();
    let dir = tempfile::tempdir().expect("tempdir");
    let keystone_up = env("KEYMIGRATE_TEST_KEYSTONE_URL");
    let barbican_up = env("KEYMIGRATE_TEST_BARBICAN_URL");
    // A CA the client is told to trust, and one it is not.
    let trusted = TestCa::new("trusted test CA");
    let trusted_file = trusted.write(dir.path(), "trusted.pem");
    let stranger = TestCa::new("unknown test CA");
    let front = |up: &str, handshake: Handshake| TlsFront::start(up, handshake);
    let ks_cafile = |p: &std::path::Path| format!("cafile = {}", p.display());
    let bb_ca = format!("verify_ssl_path = {}", ca());
    let testenv_ca = std::path::PathBuf::from(ca());
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "-----BEGIN NOTHING-----\nxx\n").expect("write");
    let mut cases = Vec::new();
    let keystone_case = |what, f: TlsFront, ca: &std::path::Path, needle| Failure {
        what,
        keystone: f.url.clone(),
        keystone_tls: ks_cafile(ca),
        barbican_tls: bb_ca.clone(),
        barbican: None,
        code: 2,
        needle,
        unknown_outcome: false,
        _front: Some(f),
    };
    cases.push(keystone_case(
        "Keystone: unknown CA",
        front(&keystone_up, Handshake::Serve(stranger.server(&["127.0.0.1"], false))),
        &trusted_file,
        "not signed by a CA keymigrate trusts",
    ));
    cases.push(keystone_case(
        "Keystone: host name mismatch",
        front(&keystone_up, Handshake::Serve(trusted.server(&["keystone.example.net"], false))),
        &trusted_file,
        "not valid for the host name",
    ));
    cases.push(keystone_case(
        "Keystone: expired",
        front(&keystone_up, Handshake::Serve(trusted.server(&["127.0.0.1"], true))),
        &trusted_file,
        "has expired",
    ));
    cases.push(keystone_case("Keystone: handshake stalls", front(&keystone_up, Handshake::Stall), &trusted_file, "timed out"));
    cases.push(keystone_case("Keystone: reset mid-handshake", front(&keystone_up, Handshake::Reset), &trusted_file, "connection"));
    for (what, tls, needle) in [
        ("Keystone: CA file missing", ks_cafile(&missing), "[keystone_authtoken] cafile: cannot read CA file"),
        ("Keystone: CA file not PEM", ks_cafile(&not_pem), "[keystone_authtoken] cafile: CA file"),
    ] {
        cases.push(Failure { what, keystone: keystone_tls_root(), keystone_tls: tls, barbican_tls: bb_ca.clone(), barbican: None, code: 127, needle, unknown_outcome: false, _front: None });
    }
    cases.push(Failure {
        what: "Keystone: plain HTTP to the TLS port",
        keystone: keystone_tls_root().replace("https://", "http://"),
        keystone_tls: ks_cafile(&testenv_ca),
        barbican_tls: bb_ca.clone(),
        barbican: None,
        code: 2,
        needle: "is it a TLS port",
        unknown_outcome: false,
        _front: None,
    });
    cases.push(Failure {
        what: "Keystone: HTTPS to a plain HTTP port",
        keystone: keystone_up.trim_end_matches("/v3").replace("http://", "https://"),
        keystone_tls: ks_cafile(&testenv_ca),
        barbican_tls: bb_ca.clone(),
        barbican: None,
        code: 2,
        needle: "did not answer in TLS",
        unknown_outcome: false,
        _front: None,
    });
    let barbican_case = |what, f: TlsFront, tls: String, needle| Failure {
        what,
        keystone: keystone_tls_root(),
        keystone_tls: ks_cafile(&testenv_ca),
        barbican_tls: tls,
        barbican: Some(f.url.clone()),
        code: 2,
        needle,
        unknown_outcome: false,
        _front: Some(f),
    };
    let trusted_bb = format!("verify_ssl_path = {}", trusted_file.display());
    cases.push(barbican_case(
        "Barbican: unknown CA",
        front(&barbican_up, Handshake::Serve(stranger.server(&["127.0.0.1"], false))),
        trusted_bb.clone(),
        "not signed by a CA keymigrate trusts",
    ));
    cases.push(barbican_case(
        "Barbican: host name mismatch",
        front(&barbican_up, Handshake::Serve(trusted.server(&["barbican.example.net"], false))),
        trusted_bb.clone(),
        "not valid for the host name",
    ));
    cases.push(barbican_case(
        "Barbican: expired",
        front(&barbican_up, Handshake::Serve(trusted.server(&["127.0.0.1"], true))),
        trusted_bb.clone(),
        "has expired",
    ));
    // Each unit's request fails on its own (another unit's may well succeed), until the error
    // budget is spent: the one line says so and names the last failure.
    for (what, handshake, needle) in [
        ("Barbican: handshake stalls", Handshake::Stall, "the last failure: POST "),
        ("Barbican: reset mid-handshake", Handshake::Reset, "the last failure: POST "),
    ] {
        cases.push(Failure { unknown_outcome: true, ..barbican_case(what, front(&barbican_up, handshake), trusted_bb.clone(), needle) });
    }
    cases.push(barbican_case(
        "Barbican: CA file missing",
        front(&barbican_up, Handshake::Serve(trusted.server(&["127.0.0.1"], false))),
        format!("verify_ssl_path = {}", missing.display()),
        "[barbican] verify_ssl_path: cannot read CA file",
    ));
    cases.last_mut().expect("case").code = 127;

    for case in &cases {
        let mut f = https_fixture("hostX", &https_sections(&case.keystone, &case.keystone_tls, &case.barbican_tls));
        let before = f.db.fingerprint();
        let mut args = vec!["--timeout", "2", "--retries", "1", "--host", "hostX"];
        if let Some(b) = &case.barbican {
            args.extend(["--barbican-endpoint", b.as_str()]);
        }
        let started = Instant::now();
        let out = f.migrate(&args);
        let took = started.elapsed();
        eprintln!("{} ({:.1} s): {}", case.what, took.as_secs_f64(), out.stderr.lines().filter(|l| l.starts_with("keymigrate: error:")).collect::<Vec<_>>().join(" | "));
        out.assert_error(case.code, case.needle);
        assert!(took < Duration::from_secs(30), "{}: {took:?}", case.what);
        assert_eq!(f.db.fingerprint(), before, "{}: a row was written", case.what);
        f.check_no_litter(&cloud, &cinder);
        f.w.assert_state_clean(&f.state);
        let journal = |f: &Fixture| -> Vec<(std::path::PathBuf, String)> {
            journal_entries(&f.state).into_iter().filter(|(_, text)| text.contains("secret")).collect()
        };
        if !case.unknown_outcome {
            assert_eq!(journal(&f), Vec::new(), "{}: the journal holds entries", case.what);
            continue;
        }
        // Entries kept for the name-based sweep, none naming a secret; the next run, with
        // Barbican reachable (the catalog's RegionTLS), settles them and finishes the host.
        let kept = journal(&f);
        for (p, text) in &kept {
            assert!(text.contains("\"secret\":null"), "{}: the journal holds {}: {text}", case.what, p.display());
        }
        eprintln!("{}: {} journal entries kept, none naming a secret", case.what, kept.len());
        let key = f.key.clone();
        f.conf = f.w.conf(&f.db, Some(&key), &trusting_sections());
        f.migrate(&["--host", "hostX"]).assert_code(0);
        f.check(&cloud);
        assert_eq!(journal(&f), Vec::new(), "{}: the journal holds entries after the next run", case.what);
    }
}

/// Glance over HTTPS (stunnel's port, `--glance-endpoint`), trusted through Keystone's
/// `cafile` as keymigrate's Glance client is; and a certificate Glance's front cannot prove,
/// refused in one line.
#[test]
fn glance_over_https_is_verified_like_keystone() {
    let db = CinderDb::new(Backend::Sqlite);
    let mut w = Workdir::new();
    let conf = w.conf(&db, Some(&random_key()), &trusting_sections());
    let glance = env("KEYMIGRATE_TEST_GLANCE_TLS_URL");
    let out = w.run(&["--config-file", arg(&conf), "scan", "--images", "--glance-endpoint", &glance, "-f", "json"]);
    assert!(matches!(out.code, 0 | 1), "exit {}:\n{}", out.code, out.stderr);
    assert!(out.stderr.contains(&format!("Using Glance at {glance}/v2")), "{}", out.stderr);
    assert!(out.json().is_object(), "{}", out.stdout);

    let stranger = TestCa::new("unknown test CA");
    let front = TlsFront::start(&env("KEYMIGRATE_TEST_GLANCE_URL"), Handshake::Serve(stranger.server(&["127.0.0.1"], false)));
    let out = w.run(&["--config-file", arg(&conf), "scan", "--images", "--glance-endpoint", &front.url]);
    out.assert_error(2, "not signed by a CA keymigrate trusts");
}

/// HTTPS client certificates: Keystone behind a front that demands one signed by the testenv's
/// CA. `[keystone_authtoken] certfile` and `keyfile` (or both in certfile), and clouds.yaml's
/// `cert` and `key`, are presented; without them, or with an unusable file, one line.
#[test]
fn https_client_certificates_are_presented_to_keystone() {
    let cloud = Cloud::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let server_ca = TestCa::new("Keystone's CA");
    let server_ca_file = server_ca.write(dir.path(), "server-ca.pem");
    let front = TlsFront::start(
        &env("KEYMIGRATE_TEST_KEYSTONE_URL"),
        Handshake::ServeClientAuth(server_ca.server(&["127.0.0.1"], false), std::path::PathBuf::from(ca())),
    );
    let (cert, key) = (env("KEYMIGRATE_TEST_TLS_CLIENT_CERT"), env("KEYMIGRATE_TEST_TLS_CLIENT_KEY"));
    let both = dir.path().join("cert-and-key.pem");
    let text = |p: &str| std::fs::read_to_string(p).expect("read");
    std::fs::write(&both, format!("{}{}", text(&cert), text(&key))).expect("write");
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, text(&cert)).expect("write");
    let sections = |tls: &str| {
        https_sections(&front.url, &format!("cafile = {}\n{tls}", server_ca_file.display()), &format!("verify_ssl_path = {}", ca()))
    };

    for (host, tls) in [("hostC1", format!("certfile = {cert}\nkeyfile = {key}")), ("hostC2", format!("certfile = {}", both.display()))] {
        let f = https_fixture(host, &sections(&tls));
        f.migrate(&["--host", host]).assert_code(0);
        f.check(&cloud);
    }
    let missing = dir.path().join("missing.pem");
    for (tls, code, needle) in [
        // the alert (CertificateRequired) or, when the request is written first, a broken pipe
        (String::new(), 2, "client certificate"),
        (format!("certfile = {}\nkeyfile = {key}", missing.display()), 127, "[keystone_authtoken] certfile: cannot read client certificate file"),
        (format!("certfile = {cert}\nkeyfile = {}", not_a_key.display()), 127, "[keystone_authtoken] keyfile: private key file"),
        (format!("keyfile = {key}"), 127, "[keystone_authtoken] keyfile: is set without certfile"),
    ] {
        let f = https_fixture("hostC3", &sections(&tls));
        let before = f.db.fingerprint();
        let out = f.migrate(&["--host", "hostC3", "--retries", "1"]);
        out.assert_error(code, needle);
        assert_eq!(f.db.fingerprint(), before, "{tls}: written");
    }

    // clouds.yaml: cert and key, as openstacksdk reads them
    let yaml = format!(
        "clouds:\n  km-cert:\n    auth:\n      auth_url: {}\n      username: admin\n      password: {}\n      \
         project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n    \
         cacert: {}\n    cert: {cert}\n    key: {key}\n",
        front.url,
        serde_json::to_string(&env("KEYMIGRATE_TEST_ADMIN_PASSWORD")).expect("JSON"),
        server_ca_file.display(),
    );
    std::fs::write(dir.path().join("clouds.yaml"), yaml).expect("write");
    let identity = clouds::load("km-cert", Vec::new(), dir.path(), None).expect("load the cloud");
    let keystone = Keystone::new(identity.keystone_settings(Duration::from_secs(30)).expect("settings"), RetryPolicy::default())
        .expect("client");
    keystone.token().expect("a token with the client certificate");
}

/// `migrate --nova` against a Barbican whose certificate is refused: the first instance's store
/// stops the run with the reason (not one failure per instance until the error budget is
/// spent); no instance changes, nothing stays in the journal.
#[test]
fn nova_instances_stop_at_a_refused_barbican_certificate() {
    use crate::support::nova::{InstanceSpec, NovaCloud};
    let nova = NovaCloud::new(Backend::Sqlite);
    let owner = env("KEYMIGRATE_TEST_ALICE_ID");
    let specs: Vec<InstanceSpec> = (0..5)
        .map(|i| InstanceSpec::new().key(Some(ZERO)).host(Some(&format!("compute-{i}"))).owner(&env("KEYMIGRATE_TEST_DEMO_PROJECT_ID"), &owner))
        .collect();
    for spec in &specs {
        nova.insert_instance("cell1", spec);
    }
    let before: Vec<serde_json::Value> = specs.iter().map(|s| nova.instance("cell1", &s.uuid)).collect();
    let db = CinderDb::new(Backend::Sqlite);
    let mut w = Workdir::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = TestCa::new("trusted test CA");
    let trusted_file = trusted.write(dir.path(), "trusted.pem");
    let stranger = TestCa::new("unknown test CA");
    let front = TlsFront::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"), Handshake::Serve(stranger.server(&["127.0.0.1"], false)));
    let nova_key = random_key();
    w.guard_key(&nova_key);
    let conf = w.conf(&db, Some(&random_key()), &format!("{}verify_ssl_path = {}\n", service_sections("password"), trusted_file.display()));
    let nova_conf = w.write("nova.conf", &nova.nova_conf(Some(&nova_key), "barbican"));
    let state = w.path("state");
    let out = w.run(&[
        "--config-file", arg(&conf), "migrate", "--nova", "--nova-config-file", arg(&nova_conf), "--state-dir", arg(&state),
        "--barbican-endpoint", &front.url, "--retries", "1",
    ]);
    out.assert_error(2, "not signed by a CA keymigrate trusts");
    let failed = out.stderr.lines().filter(|l| l.contains("Error migrating ephemeral encryption key")).count();
    assert!(failed <= 1, "{failed} instances failed one by one:\n{}", out.stderr);
    for (spec, was) in specs.iter().zip(&before) {
        assert_eq!(&nova.instance("cell1", &spec.uuid), was, "instance {} changed", spec.uuid);
    }
    w.assert_state_clean(&state);
    let journal: Vec<_> = walk(&state).into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    for p in &journal {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        assert!(!text.contains("instance"), "the journal holds {}: {text}", p.display());
    }
}

/// A database whose TLS handshake stalls (a proxy passes the server's first packet, then holds
/// every byte): `--db-timeout` ends the run with one line naming the database, nothing written.
#[test]
fn a_stalled_database_tls_handshake_ends_at_db_timeout() {
    use crate::support::stall::{Stall, StallProxy};
    for (backend, port) in [(Backend::Mysql, 13306), (Backend::Postgres, 15432)] {
        let mut f = Fixture::new(backend, "password");
        f.seed_host("hostS");
        let before = f.db.fingerprint();
        let proxy = StallProxy::start(port, Stall::InTlsHandshake);
        let url = tls_url(&f.db, &db_tls(backend)).replacen(&format!("127.0.0.1:{port}/"), &format!("127.0.0.1:{}/", proxy.port), 1);
        f.w.secrets.push(env("KEYMIGRATE_TEST_DB_TLS_PASSWORD"));
        let key = f.key.clone();
        f.conf = conf_with_url(&mut f.w, &url, &key);
        let started = Instant::now();
        let out = f.migrate(&["--db-timeout", "2", "--host", "hostS"]);
        let took = started.elapsed();
        out.assert_error(2, "no answer within 2 s (--db-timeout)");
        assert!(proxy.stalled(), "{backend:?}: the proxy never went silent");
        assert!(took < Duration::from_secs(20), "{backend:?}: {took:?}");
        assert_eq!(f.db.fingerprint(), before, "{backend:?}: written");
        f.w.assert_state_clean(&f.state);
    }
}
