//! Property tests of the INI parser and of interpolation: arbitrary input never panics, what is
//! written is read back the way oslo.config reads it, and no error shows a value.

use proptest::prelude::*;

use super::ini::{self, normalize_group};
use super::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Characters that steer the parser: brackets, separators, comments, quotes, every line end,
/// indentation, Python-only whitespace, a byte order mark, and a few letters.
const INI_CHARS: &[char] = &[
    '[', ']', '=', ':', '#', ';', '"', '\'', '\n', '\r', ' ', '\t', '\u{c}', '\u{1c}', '\u{3000}', '\u{feff}', '$', '{',
    '}', 'a', 'B', 'ß', '0', '.',
];

fn ini_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(INI_CHARS), 0..200).prop_map(|c| c.into_iter().collect())
}

/// Python's `str.isspace()`, as the parser strips with it.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// oslo's `value[1:-1]` for a value quoted with one matching pair.
fn unquoted(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &v[1..v.len() - 1]
    } else if v == "\"" || v == "'" {
        ""
    } else {
        v
    }
}

fn key() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.-]{0,12}"
}

/// A one-line value: anything printable, no line end, stripped.
fn line_value() -> impl Strategy<Value = String> {
    "[^\r\n\u{b}\u{c}\u{1c}-\u{1f}\u{85}\u{2028}\u{2029}]{0,40}"
        .prop_map(|v| v.trim_matches(py_isspace).to_string())
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Err(e) = ini::parse(&bytes) {
            let lines = bytes.iter().filter(|&&b| b == b'\n' || b == b'\r').count() + 1;
            prop_assert!(e.line >= 1 && e.line <= lines, "{e} for {} lines", lines);
        }
    }

    #[test]
    fn parser_never_panics_on_ini_like_text(text in ini_text()) {
        let _ = ini::parse(text.as_bytes());
    }

    #[test]
    fn errors_never_show_the_text(text in ini_text()) {
        let secret = "Zq9hunter2Zq9";
        let text = text.replace('a', secret);
        if let Err(e) = ini::parse(text.as_bytes()) {
            prop_assert!(!format!("{e} {e:?}").contains(secret), "{e}");
        }
    }

    #[test]
    fn written_assignments_are_read_back(
        assignments in prop::collection::vec(("[A-Za-z0-9_.-]{1,12}", key(), line_value()), 1..8),
        crlf in any::<bool>(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        for (section, key, value) in &assignments {
            text.push_str(&format!("[{section}]{end}{key} = {value}{end}"));
        }
        let got = ini::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
        prop_assert_eq!(got.len(), assignments.len());
        for (i, (e, (section, key, value))) in got.iter().zip(&assignments).enumerate() {
            let section_want = if section == "DEFAULT" { section.clone() } else { section.to_lowercase() };
            prop_assert_eq!(&e.section, &section_want);
            prop_assert_eq!(&e.section, &normalize_group(section));
            prop_assert_eq!(&e.key, key);
            prop_assert_eq!(e.value.as_str(), unquoted(value));
            prop_assert_eq!(e.line, 2 * i + 2);
        }
    }

    #[test]
    fn line_endings_do_not_change_the_entries(text in ini_text()) {
        let lf = text.replace("\r\n", "\n").replace('\r', "\n");
        let want = ini::parse(lf.as_bytes()).ok();
        prop_assert_eq!(ini::parse(lf.replace('\n', "\r\n").as_bytes()).ok(), want.clone());
        prop_assert_eq!(ini::parse(lf.replace('\n', "\r").as_bytes()).ok(), want);
    }

    #[test]
    fn continuation_lines_join_with_newlines(
        first in "[A-Za-z0-9/_.-]{0,10}",
        more in prop::collection::vec(("[ \t]{1,3}", "[A-Za-z0-9#;=:\\[\\]_ ./-]{0,12}[A-Za-z0-9]"), 1..6),
    ) {
        let mut text = format!("[DEFAULT]\nk = {first}\n");
        for (indent, line) in &more {
            text.push_str(&format!("{indent}{line}\n"));
        }
        text.push_str("next = 1\n");
        let got = ini::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
        let mut want = first.clone();
        for (_, line) in &more {
            want.push('\n');
            want.push_str(line.trim_start_matches(py_isspace));
        }
        prop_assert_eq!(got.len(), 2);
        prop_assert_eq!(&got[0].value, &want);
        prop_assert_eq!((got[1].key.as_str(), got[1].line), ("next", more.len() + 3));
    }

    #[test]
    fn the_last_value_wins(values in prop::collection::vec("[A-Za-z0-9_./-]{1,16}", 1..6), noise in key()) {
        // Interleaved with other sections and keys, and spread over a second section header.
        let mut text = String::new();
        for (i, v) in values.iter().enumerate() {
            text.push_str(&format!("[DEFAULT]\nhost = {v}\n[database]\n{noise} = x{i}\n"));
        }
        let c = Conf::from_text("cinder.conf", &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = c.get(&HOST).map_err(|e| TestCaseError::fail(e.to_string()))?.map(|v| v.value.expose().to_string());
        prop_assert_eq!(got.as_deref(), values.last().map(String::as_str));
    }
}

/// A value for interpolation: text, references to real and unknown options, escapes, braces.
fn template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[A-Za-z0-9 /:@._-]{0,6}",
        Just("$$".to_string()),
        Just("\\$".to_string()),
        Just("$".to_string()),
        Just("${".to_string()),
        Just("}".to_string()),
        Just("$state_path".to_string()),
        Just("${host}".to_string()),
        Just("$DEFAULT.my_ip".to_string()),
        Just("${database.connection}".to_string()),
        Just("$keystone_authtoken.password".to_string()),
        "\\$[A-Za-z_][A-Za-z0-9_.]{0,8}",
        "\\$\\{[A-Za-z_][A-Za-z0-9_.]{0,8}\\}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn interpolation_never_panics_and_always_ends(
        state_path in template(), host in template(), my_ip in template(), connection in template(), password in template(),
    ) {
        let text = format!(
            "[DEFAULT]\nstate_path = {state_path}\nhost = {host}\nmy_ip = {my_ip}\n[database]\nconnection = {connection}\n\
             [keystone_authtoken]\npassword = {password}\n"
        );
        // Continuation-free one-line values always parse.
        let c = Conf::from_text("cinder.conf", &text).map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
        for opt in OPTIONS {
            let _ = c.get(opt);
        }
    }

    #[test]
    fn doubled_dollars_are_literal(s in "[^\\\\\r\n]{0,40}") {
        let s = s.trim_matches(py_isspace).to_string();
        let written = s.replace('$', "$$");
        // Quotes around the whole value would be stripped by the parser, not by interpolation.
        prop_assume!(unquoted(&written) == written);
        let c = Conf::from_text("cinder.conf", &format!("[keystone_authtoken]\npassword = {written}\n"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = c.get(&keystone::PASSWORD).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.map(|v| v.value.expose().to_string()), Some(s));
    }

    #[test]
    fn every_loop_is_detected(
        cycle in Just(vec!["state_path", "host", "cluster", "enabled_backends", "my_ip"]).prop_shuffle(),
        len in 1usize..=5,
        styles in prop::collection::vec(0u8..3, 5),
    ) {
        let cycle = &cycle[..len];
        let mut text = String::from("[DEFAULT]\n");
        for (i, name) in cycle.iter().enumerate() {
            let next = cycle[(i + 1) % len];
            let reference = match styles[i] {
                0 => format!("${next}"),
                1 => format!("${{{next}}}"),
                _ => format!("${{DEFAULT.{next}}}"),
            };
            text.push_str(&format!("{name} = a-{reference}-b\n"));
        }
        let c = Conf::from_text("cinder.conf", &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for name in cycle {
            let opt = registered("DEFAULT", name).ok_or_else(|| TestCaseError::fail("registered"))?;
            let err = c.get(opt).expect_err("a loop").to_string();
            prop_assert!(err.contains("interpolation loop"), "{}", err);
        }
    }

    #[test]
    fn unknown_references_in_a_secret_are_never_shown(
        secret in "[A-Za-z0-9]{6,16}",
        name in "[A-Za-z_][A-Za-z0-9_]{5,12}",
        braced in any::<bool>(),
    ) {
        prop_assume!(registered("keystone_authtoken", &name).is_none() && registered("DEFAULT", &name).is_none());
        let reference = if braced { format!("${{{name}}}") } else { format!("${name}") };
        for (section, opt) in [
            ("keystone_authtoken", &keystone::PASSWORD),
            ("keystone_authtoken", &keystone::APP_CRED_SECRET),
            ("key_manager", &FIXED_KEY),
            ("database", &DB_CONNECTION),
        ] {
            let text = format!("[{section}]\n{} = {secret}{reference}\n", opt.name);
            let c = Conf::from_text("cinder.conf", &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let err = c.get(opt).expect_err("unknown reference");
            let shown = format!("{err} {err:?}");
            prop_assert!(!shown.contains(&secret) && !shown.contains(&name), "{}", shown);
            prop_assert!(shown.contains(&format!("[{section}] {}", opt.name)), "{}", shown);
        }
    }
}
