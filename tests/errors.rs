//! Bad input of every kind: one clear error line, the documented exit code, nothing written, and
//! no secret echoed.

use crate::support::*;

#[test]
fn usage_errors_exit_127_and_help_exits_0() {
    let w = Workdir::new();
    let out = w.run(&["scan", "--no-such-flag"]);
    out.assert_code(127);
    let out = w.run(&[]);
    out.assert_code(127);
    let out = w.run(&["--help"]);
    out.assert_code(0);
    assert!(out.stdout.contains("Exit codes"), "{}", out.stdout);
    assert!(out.stdout.contains("127"), "{}", out.stdout);
    let out = w.run(&["migrate", "--help"]);
    out.assert_code(0);
    assert!(out.stdout.contains("--max-count"));
    // The version, the commit it was built from and the database backends built in (the
    // tests' build has the default features; tests/features.rs checks an SQLite-only one).
    let out = w.run(&["--version"]);
    out.assert_code(0);
    let commit = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()
        .filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_else(|| "unknown".into());
    assert_eq!(out.stdout.trim(), format!("keymigrate {} (commit {commit}; backends sqlite, mysql, postgres)", env!("CARGO_PKG_VERSION")), "{}", out.stdout);
}

#[test]
fn configuration_errors_exit_127_and_name_the_problem() {
    let db = CinderDb::new(Backend::Sqlite);
    let w = Workdir::new();
    let missing = w.path("nope.conf");
    w.run(&["--config-file", arg(&missing), "scan"]).assert_error(127, "nope.conf");
    w.run(&["--config-dir", arg(&w.path("nodir")), "scan"]).assert_error(127, "nodir");

    let bad = w.write("bad.conf", "[DEFAULT]\nhost = x\n  continuation\n\nnot a pair\n");
    w.run(&["--config-file", arg(&bad), "scan"]).assert_error(127, "bad.conf: line 5");

    let garbage = w.path("garbage.conf");
    std::fs::write(&garbage, [0xff_u8, 0xfe, 0x00, 0x80, b'\n', b'[']).expect("write");
    w.run(&["--config-file", arg(&garbage), "scan"]).assert_error(127, "garbage.conf");

    let scheme = w.write("scheme.conf", "[database]\nconnection = oracle://u:pw@h/db\n[key_manager]\nfixed_key = 00\n");
    let out = w.run(&["--config-file", arg(&scheme), "scan"]);
    out.assert_error(127, "[database] connection");
    assert!(!out.stderr.contains(":pw@"), "{}", out.stderr);

    let unknown = w.write("interp.conf", &format!("[database]\nconnection = {}$nosuch\n", db.url));
    // The URL holds a password, so the name after `$` (maybe part of it) is not shown.
    let out = w.run(&["--config-file", arg(&unknown), "scan"]);
    out.assert_error(127, "[database] connection");
    assert!(!out.stderr.contains("nosuch"), "{}", out.stderr);
    let unknown = w.write("interp2.conf", &format!("[DEFAULT]\nhost = node-$nosuch\n[database]\nconnection = {}\n", db.url));
    w.run(&["--config-file", arg(&unknown), "scan"]).assert_error(127, "$nosuch");

    let lp = w.write("loop.conf", "[DEFAULT]\nstate_path = $host\nhost = $state_path\n");
    w.run(&["--config-file", arg(&lp), "scan"]).assert_error(127, "loop");
}

#[test]
fn bad_fixed_keys_are_named_never_echoed() {
    let db = CinderDb::new(Backend::Sqlite);
    db.volume("v1", Some("h"), Some("u"), Some(ZERO));
    for bad in ["abc", "0g", "secretsecret", "00 11", "\"\"x", &"ab".repeat(15_001)] {
        let mut w = Workdir::new();
        w.secrets.push(bad.to_string());
        let conf = w.conf(&db, Some(bad), "");
        for cmd in ["scan", "status", "migrate"] {
            let out = w.run(&["--config-file", arg(&conf), cmd, "--all-hosts"]);
            out.assert_error(127, "[key_manager] fixed_key");
        }
    }
    assert_eq!(db.key_of("volumes", "v1").as_deref(), Some(ZERO));
}

#[test]
fn database_errors_exit_2_with_the_url_redacted() {
    let mut w = Workdir::new();
    let key = random_key();
    w.guard_key(&key);
    let cases = [
        ("mysql+pymysql://kmtest:kmtest-pw@127.0.0.1:1/cinder", "127.0.0.1:1"),
        ("mysql+pymysql://kmtest:wrong-pw-123@127.0.0.1:13306/cinder", "Access denied"),
        ("postgresql://kmtest:wrong-pw-123@127.0.0.1:15432/cinder", "password authentication failed"),
        ("postgresql://kmtest:kmtest-pw@127.0.0.1:15432/no_such_db", "no_such_db"),
        (&format!("sqlite:///{}", w.path("absent.sqlite").display()), "no such file"),
    ];
    w.secrets.push("wrong-pw-123".into());
    for (url, needle) in cases {
        let conf = w.write("c.conf", &format!("[database]\nconnection = {url}\n[key_manager]\nfixed_key = {key}\n"));
        let out = w.run(&["--config-file", arg(&conf), "scan", "--all-hosts"]);
        out.assert_error(2, needle);
        assert!(out.stderr.contains("***") || url.starts_with("sqlite"), "password not redacted: {}", out.stderr);
    }
    assert!(!w.path("absent.sqlite").exists(), "a missing SQLite database must not be created");
}

#[test]
fn a_database_without_cinders_tables_is_refused() {
    let mut w = Workdir::new();
    let key = random_key();
    w.guard_key(&key);
    let empty = w.path("empty.sqlite");
    std::fs::write(&empty, b"").expect("write");
    let conf = w.write("c.conf", &format!("[database]\nconnection = sqlite:///{}\n[key_manager]\nfixed_key = {key}\n", empty.display()));
    w.run(&["--config-file", arg(&conf), "scan"]).assert_error(2, "Cinder's table `volumes`");

    let wrong = w.path("wrong.sqlite");
    let mut c = <diesel::SqliteConnection as diesel::Connection>::establish(wrong.to_str().expect("path")).expect("create");
    diesel::connection::SimpleConnection::batch_execute(&mut c, "CREATE TABLE volumes (id INTEGER PRIMARY KEY, deleted INTEGER);")
        .expect("create");
    let conf = w.write("c.conf", &format!("[database]\nconnection = sqlite:///{}\n[key_manager]\nfixed_key = {key}\n", wrong.display()));
    w.run(&["--config-file", arg(&conf), "status"]).assert_error(2, "volumes");
}

#[test]
fn without_database_connection_cinders_default_is_used_and_named() {
    let mut w = Workdir::new();
    let key = random_key();
    w.guard_key(&key);
    let conf = w.write("c.conf", &format!("[DEFAULT]\nstate_path = {}\n[key_manager]\nfixed_key = {key}\n", w.path("state").display()));
    let out = w.run(&["--config-file", arg(&conf), "status"]);
    out.assert_error(2, &format!("no such file: {}/cinder.sqlite", w.path("state").display()));
}
