//! The documentation checked against the code, so that it cannot drift: the JSON key paths that
//! `docs/reference.md` lists for each command against the real binary's output on a small Cinder
//! database (with the real Keystone and Barbican), the documented log line format against real
//! log lines, and the exit-code tables of the README and the reference against
//! `keymigrate::cli::EXIT_CODES`, the text every `--help` prints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::migrate::Fixture;
use crate::support::*;

/// Cinder's four tables, which `<table>` in a documented key path stands for.
const TABLES: [&str; 4] = ["volumes", "snapshots", "volume_glance_metadata", "backups"];

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read_doc(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative)).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Markdown tables

/// A markdown table: its header cells and its rows' cells, trimmed.
struct MdTable {
    /// Line number (1-based) of the header, for messages.
    line: usize,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    // A `|` inside backticks is part of a cell (`table|json|value`), not a separator.
    let (mut out, mut cell, mut code) = (Vec::new(), String::new(), false);
    for c in inner.chars() {
        match c {
            '`' => {
                code = !code;
                cell.push(c);
            }
            '|' if !code => out.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    out
}

fn is_separator(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('|') && t.contains("---") && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// Every table of a markdown text (tables inside fenced code blocks are not tables).
fn tables(text: &str) -> Vec<MdTable> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut out, mut fenced, mut i) = (Vec::new(), false, 0);
    while i < lines.len() {
        if lines[i].trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && lines[i].trim_start().starts_with('|') && lines.get(i + 1).is_some_and(|l| is_separator(l)) {
            let mut t = MdTable { line: i + 1, header: cells(lines[i]), rows: Vec::new() };
            i += 2;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                t.rows.push(cells(lines[i]));
                i += 1;
            }
            out.push(t);
            continue;
        }
        i += 1;
    }
    out
}

/// The text of the section under the first heading containing `title`, up to the next heading
/// of the same or a higher level.
fn section<'a>(text: &'a str, title: &str) -> &'a str {
    let mut start = None;
    let mut level = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && line[hashes..].starts_with(' ') {
            match start {
                None if line.contains(title) => {
                    start = Some(offset + line.len());
                    level = hashes;
                }
                Some(s) if hashes <= level => return &text[s..offset],
                _ => {}
            }
        }
        offset += line.len();
    }
    match start {
        Some(s) => &text[s..],
        None => panic!("docs/reference.md has no heading containing {title}"),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON key paths

/// Every key path of a JSON value: `a.b` for object keys, `a[]` for the elements of an array.
/// `leaves` gets the paths of values that are not objects or arrays (or are empty ones);
/// `all` gets every path, containers included.
fn key_paths(value: &serde_json::Value, prefix: &str, leaves: &mut BTreeSet<String>, all: &mut BTreeSet<String>) {
    let join = |key: &str| if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                let path = join(key);
                all.insert(path.clone());
                key_paths(v, &path, leaves, all);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            let path = format!("{prefix}[]");
            all.insert(path.clone());
            for v in items {
                key_paths(v, &path, leaves, all);
            }
        }
        _ => {
            leaves.insert(prefix.to_string());
        }
    }
}

/// The key paths documented for one command: the first cell of every row of the first table
/// after the heading containing `` `<command>` `` whose first header cell is "key". A cell may
/// hold several paths in backticks; `<table>` stands for each of Cinder's four tables.
fn documented_paths(reference: &str, command: &str) -> BTreeSet<String> {
    let text = section(reference, &format!("`{command}`"));
    let table = tables(text)
        .into_iter()
        .find(|t| t.header.first().is_some_and(|h| h.eq_ignore_ascii_case("key")))
        .unwrap_or_else(|| panic!("docs/reference.md: the section on `{command}` has no table whose first column is \"key\""));
    let mut out = BTreeSet::new();
    for row in &table.rows {
        let first = row.first().map(String::as_str).unwrap_or_default();
        let paths: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
        assert!(!paths.is_empty(), "docs/reference.md: a row of the `{command}` key table names no key in backticks: {row:?}");
        for path in paths {
            if path.contains("<table>") {
                out.extend(TABLES.iter().map(|t| path.replace("<table>", t)));
            } else {
                out.insert(path.to_string());
            }
        }
    }
    out
}

/// Compares the output's key paths with the documented ones; returns one line per difference.
fn schema_drift(command: &str, output: &serde_json::Value, documented: &BTreeSet<String>) -> Vec<String> {
    let (mut leaves, mut all) = (BTreeSet::new(), BTreeSet::new());
    key_paths(output, "", &mut leaves, &mut all);
    let mut drift = Vec::new();
    for path in &leaves {
        if !documented.contains(path) {
            drift.push(format!("`{command}`: key `{path}` is in the output but not in docs/reference.md"));
        }
    }
    for path in documented {
        if !all.contains(path) {
            drift.push(format!("`{command}`: key `{path}` is documented in docs/reference.md but the output has no such key"));
        }
    }
    drift
}

// ---------------------------------------------------------------------------------------------
// The tests

/// Runs the five reporting commands on a small database with rows on the all-zeros key, then
/// compares each JSON document with its documented key paths, and every log line with the
/// documented format.
#[test]
fn docs_reference_matches_the_json_and_log_lines_of_every_command() {
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostDoc");
    // A volume without an owner (blocked) and one with a NULL host (skipped) give `scan` rows
    // of every kind.
    f.db.volume(&uuid(), Some("hostDoc@lvm#pool"), None, Some(ZERO)).volume(&uuid(), None, Some("someone"), Some(ZERO));
    let conf = f.conf().to_string();
    let state = f.state.to_str().expect("path").to_string();
    let scope = ["--host", "hostDoc"];
    let runs: Vec<(&str, Vec<&str>, i32)> = vec![
        ("scan -f json", vec!["scan"], 1),
        ("status -f json", vec!["status"], 1),
        ("migrate -f json", vec!["migrate", "--state-dir", &state], 2),
        ("verify -f json", vec!["verify"], 0),
        ("rollback -f json", vec!["rollback", "--state-dir", &state], 0),
    ];
    let mut outputs = Vec::new();
    let mut log_lines = Vec::new();
    for (command, args, code) in &runs {
        let mut full = vec!["--config-file", conf.as_str()];
        full.extend(args);
        full.extend(scope);
        full.extend(["-f", "json"]);
        let out = f.w.run(&full);
        out.assert_code(*code);
        if std::env::var_os("KEYMIGRATE_DOCS_DUMP").is_some() {
            eprintln!("=== {command}\n{}\n--- stderr\n{}", out.stdout, out.stderr);
        }
        outputs.push((command, out.json()));
        log_lines.extend(out.stderr.lines().filter(|l| !l.is_empty()).map(String::from));
    }
    let reference = read_doc("docs/reference.md");
    let drift: Vec<String> =
        outputs.iter().flat_map(|(command, json)| schema_drift(command, json, &documented_paths(&reference, command))).collect();
    assert!(drift.is_empty(), "docs/reference.md differs from the JSON output:\n{}", drift.join("\n"));

    let format = log_format_regex(&reference);
    assert!(log_lines.iter().any(|l| l.contains(" INFO keymigrate.")), "no log line to check:\n{}", log_lines.join("\n"));
    let bad: Vec<&String> = log_lines.iter().filter(|l| !format.is_match(l)).collect();
    assert!(bad.is_empty(), "log lines that do not match the format in docs/reference.md ({format}):\n{bad:#?}");
}

/// The log line format documented in reference.md (`<date> <time.milliseconds> <pid> <LEVEL>
/// <module> [-] <message>`) as a regular expression: each placeholder stands for what it names,
/// the rest is literal. An unknown placeholder fails the test.
fn log_format_regex(reference: &str) -> regex::Regex {
    let text = section(reference, "Log lines");
    let template = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('<') && l.contains("<message>"))
        .unwrap_or_else(|| panic!("docs/reference.md: the log section has no line of the form `<date> … <message>`"));
    let placeholders: BTreeMap<&str, &str> = [
        ("date", r"\d{4}-\d{2}-\d{2}"),
        ("time.milliseconds", r"\d{2}:\d{2}:\d{2}\.\d{3}"),
        ("pid", r"\d+"),
        ("LEVEL", r"(?:TRACE|DEBUG|INFO|WARNING|ERROR)"),
        ("module", r"keymigrate(?:\.[a-z_]+)*"),
        ("message", r".+"),
    ]
    .into_iter()
    .collect();
    let mut pattern = String::from("^");
    let mut rest = template;
    while let Some(open) = rest.find('<') {
        pattern.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..].find('>').map(|c| open + c).unwrap_or_else(|| panic!("unclosed < in {template:?}"));
        let name = &rest[open + 1..close];
        let piece = placeholders.get(name).unwrap_or_else(|| panic!("docs/reference.md: unknown placeholder <{name}> in the log format"));
        pattern.push_str(piece);
        rest = &rest[close + 1..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    let re = regex::Regex::new(&pattern).expect("the log format as a regular expression");
    // The documented example line must match its own format.
    let example = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" [-] "))
        .unwrap_or_else(|| panic!("docs/reference.md: the log section has no example line"));
    assert!(re.is_match(example), "docs/reference.md: the example log line does not match the documented format:\n{example}\n{re}");
    re
}

// ---------------------------------------------------------------------------------------------
// Exit codes

/// The codes and meanings of `keymigrate::cli::EXIT_CODES`: a line that starts with a number
/// starts a code, and the lines after it up to the next code continue its meaning (so rewrapping
/// the text changes nothing).
fn exit_codes_from_help() -> BTreeMap<u32, String> {
    let mut codes: BTreeMap<u32, String> = BTreeMap::new();
    let mut current = None;
    for line in keymigrate::cli::EXIT_CODES.lines() {
        let line = line.trim();
        let (first, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match first.parse::<u32>() {
            Ok(code) => {
                assert!(codes.insert(code, rest.trim().to_string()).is_none(), "EXIT_CODES lists {code} twice");
                current = Some(code);
            }
            Err(_) => {
                if let Some(meaning) = current.and_then(|c| codes.get_mut(&c)) {
                    meaning.push(' ');
                    meaning.push_str(line);
                }
            }
        }
    }
    assert!(codes.len() >= 3, "cannot parse the exit codes out of EXIT_CODES:\n{}", keymigrate::cli::EXIT_CODES);
    codes
}

/// The words of a text that carry its meaning: lower case, without punctuation or markdown,
/// four letters or more, and not one of a few fillers.
fn key_words(text: &str) -> BTreeSet<String> {
    const FILLERS: [&str; 8] = ["also", "that", "this", "with", "from", "when", "then", "there"];
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().count() >= 4 && !FILLERS.contains(w))
        .map(String::from)
        .collect()
}

/// Whether a table is an exit-code table: a first column headed "code" or "exit" (or "exit
/// code"), or one that lists three or more of keymigrate's exit codes, one of them 10 or more
/// (a numbered list of steps 0, 1, 2, … is not one).
fn is_exit_code_table(t: &MdTable, codes: &BTreeMap<u32, String>) -> bool {
    let head = t.header.first().map(|h| h.trim_matches('`').to_lowercase()).unwrap_or_default();
    let listed: Vec<u32> = t
        .rows
        .iter()
        .filter_map(|r| r.first().and_then(|c| c.trim_matches('`').parse::<u32>().ok()))
        .filter(|c| codes.contains_key(c))
        .collect();
    matches!(head.as_str(), "code" | "exit" | "exit code" | "exit codes") || (listed.len() >= 3 && listed.iter().any(|c| *c >= 10))
}

/// The one `| code | meaning |` table of a document, as code → meaning.
fn exit_code_table(relative: &str) -> BTreeMap<u32, String> {
    let text = read_doc(relative);
    let found: Vec<MdTable> = tables(&text)
        .into_iter()
        .filter(|t| t.header.len() == 2 && t.header[0].eq_ignore_ascii_case("code") && t.header[1].eq_ignore_ascii_case("meaning"))
        .collect();
    assert_eq!(found.len(), 1, "{relative} must have exactly one exit-code table headed `| code | meaning |`");
    let mut out = BTreeMap::new();
    for row in &found[0].rows {
        let code = row[0].trim_matches('`').parse::<u32>().unwrap_or_else(|_| panic!("{relative} line {}: {:?} is not an exit code", found[0].line, row[0]));
        let meaning = row.get(1).cloned().unwrap_or_default();
        assert!(out.insert(code, meaning).is_none(), "{relative}: exit code {code} is listed twice");
    }
    out
}

/// Every markdown file under `dir`.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")).collect()
}

#[test]
fn docs_exit_code_tables_match_the_help_text() {
    let help = exit_codes_from_help();
    let mut problems = Vec::new();
    for doc in ["README.md", "docs/reference.md"] {
        let table = exit_code_table(doc);
        let (theirs, ours): (BTreeSet<&u32>, BTreeSet<&u32>) = (help.keys().collect(), table.keys().collect());
        if theirs != ours {
            problems.push(format!("{doc}: the exit-code table lists codes {ours:?}, but EXIT_CODES (src/cli.rs) lists {theirs:?}"));
            continue;
        }
        for (code, meaning) in &help {
            let have = key_words(&table[code]);
            let missing: Vec<String> = key_words(meaning).into_iter().filter(|w| !have.contains(w)).collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{doc}: exit code {code} lacks the words {missing:?} of its meaning in EXIT_CODES (src/cli.rs): {meaning:?}"
                ));
            }
        }
    }
    // Everywhere else the codes are a link to docs/reference.md#exit-codes, never another table.
    for path in markdown_files(&repo_file("docs")) {
        if path.ends_with("docs/reference.md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a doc");
        for t in tables(&text).iter().filter(|t| is_exit_code_table(t, &help)) {
            problems.push(format!(
                "{} line {}: an exit-code table; link to docs/reference.md#exit-codes instead",
                path.display(),
                t.line
            ));
        }
    }
    assert!(problems.is_empty(), "exit codes documented inconsistently:\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Messages and log modules named in the docs

/// The text of every Rust file under `src/`, with string continuations (`\` at the end of a
/// line) joined and backticks and escapes removed, so that a message split over two source
/// lines or quoting a command in backticks is found whole.
fn source_text() -> String {
    let mut all = String::new();
    for path in walk(&repo_file("src")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        all.push_str(&std::fs::read_to_string(&path).expect("read a source file"));
        all.push('\n');
    }
    let joined = regex::Regex::new(r"\\\n\s*").expect("regex").replace_all(&all, "");
    joined.replace("\\\"", "\"").replace('`', "")
}

/// Every message heading of troubleshooting.md (`### ` then the message in backticks) comes
/// from the code: split at its placeholders (`<…>`, `…`) and at `: ` and `; `, each piece of ten
/// characters or more occurs in `src/`. An option name (`[section] option`) is exempt: the code
/// builds those from its option tables.
#[test]
fn docs_troubleshooting_messages_exist_in_the_code() {
    let src = source_text();
    let text = read_doc("docs/troubleshooting.md");
    let split = regex::Regex::new(r"<[^>]*>|…|: |; ").expect("regex");
    let option = regex::Regex::new(r"^\[[a-z_]+\] [a-z_]+$").expect("regex");
    let (mut checked, mut missing) = (0, Vec::new());
    for heading in text.lines().filter_map(|l| l.strip_prefix("### `")) {
        let message = heading.trim_end().trim_end_matches('`');
        for piece in split.split(message).map(|p| p.trim_matches(|c: char| c.is_whitespace())) {
            if piece.chars().count() < 10 || option.is_match(piece) {
                continue;
            }
            checked += 1;
            if !src.contains(piece) {
                missing.push(format!("{message:?}: {piece:?}"));
            }
        }
    }
    assert!(checked >= 40, "only {checked} message pieces found in docs/troubleshooting.md's headings");
    assert!(missing.is_empty(), "docs/troubleshooting.md quotes messages the code no longer has:\n{}", missing.join("\n"));
}

/// Log lines quoted in the docs (`… <LEVEL> <module> [-] <message>`) and the reference's list
/// of modules name modules that exist: the module is the source file's path (`keymigrate.cmd.
/// scan` is `src/cmd/scan.rs`), so renaming a file renames its log lines.
#[test]
fn docs_log_modules_exist() {
    let module_of_line = regex::Regex::new(r" (keymigrate(?:\.[a-z_]+)*) \[-\] ").expect("regex");
    let listed = regex::Regex::new(r"`(keymigrate\.[a-z_.]+)`").expect("regex");
    let mut named = BTreeSet::new();
    for doc in ["README.md", "docs/operator-guide.md", "docs/troubleshooting.md", "docs/reference.md"] {
        let text = read_doc(doc);
        for line in text.lines() {
            named.extend(module_of_line.captures_iter(line).map(|c| (doc, c[1].to_string())));
        }
        let log_section = if doc == "docs/reference.md" { section(&text, "Log lines").to_string() } else { String::new() };
        named.extend(listed.captures_iter(&log_section).map(|c| (doc, c[1].to_string())));
    }
    assert!(named.len() >= 8, "too few log modules found in the docs: {named:?}");
    // A logger name is a module's path, or a target a module sets for its lines
    // (`const LOG: &str = "keymigrate::migrate"` keeps the engine's lines under that name).
    let declared = regex::Regex::new(r#""(keymigrate(?:::[a-z_]+)+)""#).expect("regex");
    let mut targets = BTreeSet::new();
    let mut dirs = vec![repo_file("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("reading a source file");
                targets.extend(declared.captures_iter(&text).map(|c| c[1].replace("::", ".")));
            }
        }
    }
    let missing: Vec<String> = named
        .iter()
        .filter(|(_, module)| {
            let rel = module.trim_start_matches("keymigrate").trim_start_matches('.').replace('.', "/");
            let src = repo_file("src");
            !(rel.is_empty()
                || targets.contains(module.as_str())
                || src.join(format!("{rel}.rs")).is_file()
                || src.join(&rel).join("mod.rs").is_file())
        })
        .map(|(doc, module)| format!("{doc}: {module}"))
        .collect();
    assert!(missing.is_empty(), "log modules named in the docs that no source file has:\n{}", missing.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Links

/// A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every relative link of the README and the docs names a file that exists and, after `#`, a
/// heading of that file: moving a section cannot leave a link behind.
#[test]
fn docs_links_resolve() {
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").expect("regex");
    let mut docs = vec![repo_file("README.md")];
    docs.extend(markdown_files(&repo_file("docs")));
    docs.extend(markdown_files(&repo_file("bench")));
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("read a doc");
        for target in link.captures_iter(&text).map(|c| c[1].to_string()) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() { doc.clone() } else { doc.parent().expect("a doc's directory").join(file) };
            if !path.exists() {
                broken.push(format!("{}: {target}: no such file", doc.display()));
            } else if !fragment.is_empty() {
                let heads = anchors(&std::fs::read_to_string(&path).unwrap_or_default());
                if !heads.contains(fragment) {
                    broken.push(format!("{}: {target}: no such heading", doc.display()));
                }
            }
        }
    }
    assert!(checked >= 30, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
