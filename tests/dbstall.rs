//! A database that accepts the connection and then stops answering (a proxy in front of the real
//! MariaDB and PostgreSQL holds every byte): keymigrate stops after `--db-timeout` with one line
//! naming the database and exit 2, having written nothing it cannot finish; the next run, with
//! the database answering again, finishes the work and leaves nothing behind.

use std::time::{Duration, Instant};

use crate::migrate::Fixture;
use crate::support::cloud::Cloud;
use crate::support::stall::{Stall, StallProxy};
use crate::support::*;

/// The database port of `backend` in the tests' URLs.
fn port(backend: Backend) -> u16 {
    match backend {
        Backend::Mysql => 13306,
        Backend::Postgres => 15432,
        Backend::Sqlite => unreachable!("SQLite has no server"),
    }
}

/// A copy of the fixture's cinder.conf whose database URL goes through `proxy`.
fn conf_through(f: &Fixture, backend: Backend, proxy: &StallProxy) -> String {
    let text = std::fs::read_to_string(&f.conf).expect("read cinder.conf");
    let direct = format!("127.0.0.1:{}/", port(backend));
    assert!(text.contains(&direct), "the fixture's cinder.conf does not name {direct}");
    let mut text = text.replace(&direct, &format!("127.0.0.1:{}/", proxy.port));
    if backend == Backend::Postgres {
        // The proxy stalls on the SQL it sees: keep libpq from negotiating TLS (its default is
        // `prefer`, and the test PostgreSQL offers TLS).
        let line = text.lines().find(|l| l.starts_with("connection = ")).expect("connection line").to_string();
        text = text.replace(&line, &format!("{line}?sslmode=disable"));
    }
    let path = f.w.write("cinder-stalled.conf", &text);
    path.to_str().expect("path").to_string()
}

/// The run ended on the database's deadline: exit 2, one line naming the database and the option,
/// not much later than the deadline.
#[track_caller]
fn assert_stalled(out: &Output, proxy: &StallProxy, took: Duration, timeout: u64) {
    out.assert_error(2, "no answer within");
    let line = out.stderr.lines().find(|l| l.starts_with("keymigrate: error:")).unwrap_or_default();
    assert!(line.contains(&format!("127.0.0.1:{}", proxy.port)), "the line does not name the database: {line}");
    assert!(line.contains(&format!("{timeout} s (--db-timeout)")), "{line}");
    assert!(!line.contains("kmtest-pw"), "{line}");
    assert!(took >= Duration::from_secs(timeout), "stopped after {took:?}, before the deadline");
    assert!(took < Duration::from_secs(timeout + 15), "stopped only after {took:?}");
}

#[test]
fn a_database_that_never_answers_stops_every_command_after_db_timeout() {
    for backend in [Backend::Mysql, Backend::Postgres] {
        let cloud = Cloud::new();
        let mut f = Fixture::new(backend, "password");
        f.seed_host("hostST");
        let before = f.db.fingerprint();
        let proxy = StallProxy::start(port(backend), Stall::Always);
        let conf = conf_through(&f, backend, &proxy);
        let state = f.state.to_str().expect("path").to_string();
        for args in [
            vec!["--config-file", &conf, "--db-timeout", "2", "scan", "--host", "hostST"],
            vec!["--config-file", &conf, "status", "--host", "hostST", "--db-timeout", "2"],
            vec!["--config-file", &conf, "--db-timeout", "2", "migrate", "--state-dir", &state, "--host", "hostST"],
            vec!["--config-file", &conf, "--db-timeout", "2", "verify", "--host", "hostST"],
        ] {
            let started = Instant::now();
            let out = f.w.run(&args);
            assert_stalled(&out, &proxy, started.elapsed(), 2);
        }
        assert_eq!(f.db.fingerprint(), before, "{backend:?}: a run against the silent database changed it");
        drop(proxy);
        // Nothing was stored in Barbican: the run through the real database creates every secret
        // and leaves exactly one per unit.
        f.migrate(&["--host", "hostST"]).assert_code(0);
        f.check(&cloud);
    }
}

#[test]
fn a_database_that_stalls_mid_migration_is_finished_by_the_next_run() {
    for backend in [Backend::Mysql, Backend::Postgres] {
        let cloud = Cloud::new();
        let mut f = Fixture::new(backend, "password");
        f.seed_host("hostSM");
        // Everything up to the first compare-and-swap goes through: the secrets of the first
        // batch are journalled, stored and read back; the UPDATE never reaches the server.
        let proxy = StallProxy::start(port(backend), Stall::On("UPDATE".into()));
        let conf = conf_through(&f, backend, &proxy);
        let state = f.state.to_str().expect("path").to_string();
        let started = Instant::now();
        let out = f.w.run(&["--config-file", &conf, "--db-timeout", "3", "migrate", "--state-dir", &state, "--host", "hostSM", "--workers", "2"]);
        assert!(proxy.stalled(), "{backend:?}: migrate never sent an UPDATE through the proxy:\n{}", out.stderr);
        assert_stalled(&out, &proxy, started.elapsed(), 3);
        drop(proxy);
        let left = f.db.keys("volumes").iter().filter(|(_, k)| k.as_deref() == Some(ZERO)).count();
        assert!(left > 0, "{backend:?}: rows were migrated although no UPDATE reached the database");

        f.migrate(&["--host", "hostSM"]).assert_code(0);
        f.check(&cloud);
    }
}
