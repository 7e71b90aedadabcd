//! The command line itself: completions and the man page generated from the same definitions,
//! and log lines in oslo.log's format.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

#[test]
fn completions_and_man_page_come_from_the_same_definitions() {
    let w = Workdir::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = w.run(&["completions", shell]);
        out.assert_code(0);
        for word in ["keymigrate", "migrate", "verify", "rollback", "max-count", "all-hosts"] {
            assert!(out.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    w.run(&["completions", "tcsh"]).assert_code(127);
    let out = w.run(&["man"]);
    out.assert_code(0);
    assert!(out.stdout.contains(".TH keymigrate 1"), "{}", &out.stdout[..200.min(out.stdout.len())]);
    assert!(out.stdout.contains("127"), "the man page documents the exit codes");
}

/// `2026-11-28 06:32:09.123 4242 INFO keymigrate.cmd.scan [-] message`
fn is_oslo_line(line: &str) -> bool {
    let parts: Vec<&str> = line.splitn(6, ' ').collect();
    if parts.len() < 6 {
        return false;
    }
    let date_ok = parts[0].len() == 10 && parts[0].chars().filter(|c| *c == '-').count() == 2;
    let time_ok = parts[1].len() == 12 && parts[1].as_bytes()[8] == b'.';
    let pid_ok = parts[2].parse::<u32>().is_ok();
    let level_ok = ["DEBUG", "INFO", "WARNING", "ERROR"].contains(&parts[3]);
    let module_ok = parts[4].starts_with("keymigrate.") && !parts[4].contains("::");
    date_ok && time_ok && pid_ok && level_ok && module_ok && parts[5].starts_with("[-] ")
}

#[test]
fn logs_follow_oslo_format_to_stderr_or_a_private_file() {
    let db = CinderDb::new(Backend::Sqlite);
    db.volume("v1", Some("h@b#p"), Some("alice"), Some(ZERO));
    let mut w = Workdir::new();
    let conf = w.conf(&db, Some(&random_key()), "");
    let conf = conf.to_str().expect("path");

    let out = w.run(&["--config-file", conf, "status", "--host", "h"]);
    let logs: Vec<&str> = out.stderr.lines().collect();
    assert!(!logs.is_empty());
    for line in &logs {
        assert!(is_oslo_line(line), "not oslo.log's format: {line}");
    }
    assert!(logs.iter().any(|l| l.contains(" WARNING keymigrate.cmd.status [-] There are still 1 volume(s)")), "{}", out.stderr);
    assert!(!logs.iter().any(|l| l.contains(" DEBUG ")));

    let out = w.run(&["--config-file", conf, "--debug", "status", "--host", "h"]);
    assert!(out.stderr.lines().any(|l| l.contains(" DEBUG keymigrate.")), "{}", out.stderr);
    let out = w.run_env(&["--config-file", conf, "--debug", "status", "--host", "h"], &[("RUST_LOG", "error")]);
    assert!(out.stderr.is_empty(), "RUST_LOG wins over --debug: {}", out.stderr);

    let log = w.path("km.log");
    let out = w.run(&["--config-file", conf, "scan", "--host", "h", "--log-file", log.to_str().expect("path")]);
    out.assert_code(1);
    assert!(out.stderr.is_empty(), "logs went to the file, not stderr: {}", out.stderr);
    let text = std::fs::read_to_string(&log).expect("log file");
    w.assert_no_leak(&text, "log file");
    w.assert_no_raw_leak(text.as_bytes(), "log file");
    assert!(text.lines().count() >= 2 && text.lines().all(is_oslo_line), "{text}");
    assert_eq!(std::fs::metadata(&log).expect("meta").permissions().mode() & 0o777, 0o600);
}
