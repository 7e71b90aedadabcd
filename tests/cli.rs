//! The command line itself: every command's `--help` pinned by a snapshot, the rules clap
//! enforces, completions and the man page generated from the same definitions, and log lines
//! in oslo.log's format.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

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

/// Where the `--help` snapshots live: one file per command, reviewed like code.
fn help_snapshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help")
}

/// Compares `actual` with the snapshot file `name`, or rewrites the file when
/// `KEYMIGRATE_BLESS=1` is set (then review and commit the change).
#[track_caller]
fn assert_snapshot(name: &str, actual: &str) {
    let path = help_snapshots().join(name);
    if std::env::var_os("KEYMIGRATE_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(help_snapshots()).expect("snapshot dir");
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with KEYMIGRATE_BLESS=1 to create it, then review it", path.display()));
    if expected == actual {
        return;
    }
    let (old, new): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let first = old.iter().zip(&new).position(|(a, b)| a != b).unwrap_or(old.len().min(new.len()));
    let context = first.saturating_sub(2);
    let show = |lines: &[&str]| lines.iter().skip(context).take(8).map(|l| format!("  |{l}\n")).collect::<String>();
    panic!(
        "{} differs from the --help output at line {} (run with KEYMIGRATE_BLESS=1 to accept the new text, then review the diff)\n\
         --- snapshot\n{}--- now\n{}",
        path.display(),
        first + 1,
        show(&old),
        show(&new)
    );
}

#[test]
fn every_commands_help_matches_its_snapshot() {
    let w = Workdir::new();
    // clap wraps help to the terminal, or to COLUMNS when there is none (stdout and stderr are
    // pipes here, stdin is closed): a fixed width makes the text the same on every machine.
    let help = |args: &[&str]| {
        let out = w.run_env(args, &[("COLUMNS", "100")]);
        out.assert_code(0);
        assert!(out.stderr.is_empty(), "{args:?}: {}", out.stderr);
        out.stdout
    };
    assert_snapshot("keymigrate.txt", &help(&["--help"]));
    for command in ["scan", "status", "migrate", "verify", "rollback", "completions", "man"] {
        let text = help(&[command, "--help"]);
        assert_snapshot(&format!("{command}.txt"), &text);
        assert_eq!(help(&["help", command]), text, "`help {command}` and `{command} --help` differ");
    }
    // Every file is some command's: a removed command leaves no stale snapshot behind.
    let files = std::fs::read_dir(help_snapshots()).expect("snapshot dir").count();
    assert_eq!(files, 8, "files in {}", help_snapshots().display());
}

/// The rules the command line states are refused before anything runs: exit 127, one error
/// line naming the option, the database untouched and no state directory made. The same
/// command line with good values migrates, so it is the rule that stopped each one.
#[test]
fn values_clap_refuses_are_usage_errors_and_nothing_is_written() {
    let db = CinderDb::new(Backend::Sqlite);
    let id = uuid();
    db.volume(&id, Some("cli-host@lvm#p"), Some(&env("KEYMIGRATE_TEST_ALICE_ID")), Some(ZERO));
    let mut w = Workdir::new();
    let conf = w.conf(&db, Some(&random_key()), &service_sections("password"));
    let state = w.path("state");
    let run = |extra: &[&str]| {
        let mut args = vec!["--config-file", arg(&conf), "migrate", "--state-dir", arg(&state), "--host", "cli-host"];
        args.extend(extra);
        w.run(&args)
    };
    let cases: [(&[&str], &str); 9] = [
        (&["-c", "x"], "'-c'"),
        (&["--column=Table"], "'--column'"),
        (&["--timeout", "0"], "'--timeout <SECONDS>'"),
        (&["--workers", "0"], "'--workers <N>'"),
        (&["--max-rate", "0"], "'--max-rate <KEYS_PER_SECOND>'"),
        (&["--max-rate", "-1"], "'--max-rate <KEYS_PER_SECOND>'"),
        (&["--max-count", "0"], "'--max-count <N>'"),
        (&["--host", ""], "'--host <HOST>'"),
        (&["--cluster="], "'--cluster <CLUSTER>'"),
    ];
    for (extra, option) in cases {
        let out = run(extra);
        out.assert_error(127, option);
        assert_eq!(out.stderr.lines().count(), 1, "{extra:?}: one line:\n{}", out.stderr);
        assert!(out.stdout.is_empty(), "{extra:?}: {}", out.stdout);
        assert_eq!(db.key_of("volumes", &id).as_deref(), Some(ZERO), "{extra:?} wrote to the database");
        assert!(!state.exists(), "{extra:?} made the state directory");
    }
    for (command, extra) in [("scan", ["--host", ""]), ("status", ["--backup-host", ""]), ("verify", ["--timeout", "0"])] {
        let out = w.run(&["--config-file", arg(&conf), command, extra[0], extra[1]]);
        out.assert_error(127, extra[0]);
    }

    let out = run(&["--timeout", "5", "--workers", "1", "--max-rate", "50", "--max-count", "1", "-f", "json"]);
    out.assert_code(0);
    assert_ne!(db.key_of("volumes", &id).as_deref(), Some(ZERO), "the good command line migrated");
}
