//! cinder.conf's INI dialect, ported line for line from oslo.config (`oslo_config/iniparser.py`
//! `BaseParser.parse`, `ConfigParser.assignment` and `_normalize_group_name` in `cfg.py`).
//!
//! What oslo.config does, and so what this does:
//! * The file is text, split the way Python's universal newlines split it (`\n`, `\r\n`, `\r`),
//!   each line `rstrip()`ped with Python's idea of whitespace.
//! * A blank line ends the value being read. A line starting with a space or a tab continues it
//!   (joined with `\n`, leading whitespace removed); with no value being read it is an error.
//! * `#` or `;` in column 0 starts a comment. There are no inline comments: `a = b # c` is `b # c`.
//!   A comment ends the value being read, so an indented line after it is an error.
//! * `[name]` starts a section; the name is the raw text between the brackets, lower-cased
//!   unless it is exactly `DEFAULT` (`[default]` is a different section from `[DEFAULT]`).
//! * `key = value` or `key: value`, split at whichever separator comes first; key and value are
//!   stripped, and one pair of matching quotes around the value's first line is removed.
//! * Every assignment is returned in file order; the caller applies "last one wins".
//!
//! Where oslo.config has no answer, the choices are:
//! * oslo opens the file with `open(filename)`, i.e. the locale's encoding, which is UTF-8 on
//!   any current system, strictly decoded. Bytes that are not UTF-8 are an error naming the line.
//! * A UTF-8 byte order mark is not stripped (Python's `utf-8` codec keeps it as U+FEFF), so it
//!   becomes part of line 1 and the file fails to parse, exactly as it does for Cinder. The error
//!   then says so, to save the operator from hunting for an invisible character.
//! * "Section must be started before assignment" names the line of the assignment; oslo names
//!   the line that ended it.
//!
//! Errors carry a line number and a fixed description, never the line's text: a line may hold
//! a password.

/// One `key = value` assignment, with its section name already normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    pub key: String,
    pub value: String,
    /// 1-based line of the key (a value continued over several lines starts here).
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

const NO_SEPARATOR: &str = "No ':' or '=' found in assignment";
const EMPTY_KEY: &str = "Key cannot be empty";
const UNEXPECTED_CONTINUATION: &str = "Unexpected continuation line";
const NO_END_BRACKET: &str = "Invalid section (must end with ])";
const EMPTY_SECTION: &str = "Empty section name";
const NO_SECTION: &str = "Section must be started before assignment";
const NOT_UTF8: &str = "not valid UTF-8";
const BOM_HINT: &str = " (the file starts with a UTF-8 byte order mark, which oslo.config reads as part of line 1: \
                        save the file without it)";

/// oslo.config's section-name normalisation: lower case, except exactly `DEFAULT`.
pub fn normalize_group(name: &str) -> String {
    if name == "DEFAULT" {
        name.to_string()
    } else {
        name.to_lowercase()
    }
}

/// Parses a whole configuration file into its assignments, in file order.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, ParseError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ParseError { line: line_at(bytes, e.valid_up_to()), message: NOT_UTF8.to_string() })?;
    parse_text(text).map_err(|mut e| {
        if text.starts_with('\u{feff}') {
            e.message.push_str(BOM_HINT);
        }
        e
    })
}

struct Pending {
    key: String,
    value: String,
    line: usize,
}

fn parse_text(text: &str) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::new();
    let mut section: Option<String> = None;
    let mut pending: Option<Pending> = None;

    for (index, raw) in universal_lines(text).enumerate() {
        let lineno = index + 1;
        let line = raw.trim_end_matches(py_isspace);
        if line.is_empty() {
            flush(&mut pending, section.as_deref(), &mut entries)?;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match pending.as_mut() {
                Some(p) => {
                    p.value.push('\n');
                    p.value.push_str(line.trim_start_matches(py_isspace));
                }
                None => return Err(error(lineno, UNEXPECTED_CONTINUATION)),
            }
            continue;
        }
        flush(&mut pending, section.as_deref(), &mut entries)?;

        if line.starts_with('[') {
            if !line.ends_with(']') {
                return Err(error(lineno, NO_END_BRACKET));
            }
            // `[` and `]` are one byte each, so this is Python's `len(line) <= 2`.
            if line.len() <= 2 {
                return Err(error(lineno, EMPTY_SECTION));
            }
            section = Some(normalize_group(&line[1..line.len() - 1]));
        } else if line.starts_with(['#', ';']) {
            // A comment.
        } else {
            let (key, value) = split_key_value(line).ok_or_else(|| error(lineno, NO_SEPARATOR))?;
            if key.is_empty() {
                return Err(error(lineno, EMPTY_KEY));
            }
            pending = Some(Pending { key: key.to_string(), value: value.to_string(), line: lineno });
        }
    }
    flush(&mut pending, section.as_deref(), &mut entries)?;
    Ok(entries)
}

/// `ConfigParser.assignment`: records the value being read, if any.
fn flush(pending: &mut Option<Pending>, section: Option<&str>, entries: &mut Vec<Entry>) -> Result<(), ParseError> {
    let Some(p) = pending.take() else {
        return Ok(());
    };
    let Some(section) = section else {
        return Err(error(p.line, NO_SECTION));
    };
    entries.push(Entry { section: section.to_string(), key: p.key, value: p.value, line: p.line });
    Ok(())
}

/// `BaseParser._split_key_value`: `None` when the line has neither `=` nor `:`.
fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let at = line.find(['=', ':'])?;
    let key = line[..at].trim_matches(py_isspace);
    let value = line[at + 1..].trim_matches(py_isspace);
    Some((key, strip_quotes(value)))
}

/// `value[1:-1]` when the value is non-empty, starts with `"` or `'` and ends with the same
/// character. Like oslo, a lone `"` becomes the empty string.
fn strip_quotes(value: &str) -> &str {
    match value.as_bytes().first() {
        Some(&q) if (q == b'"' || q == b'\'') && value.as_bytes().last() == Some(&q) => {
            if value.len() >= 2 {
                &value[1..value.len() - 1]
            } else {
                ""
            }
        }
        _ => value,
    }
}

fn error(line: usize, message: &str) -> ParseError {
    ParseError { line, message: message.to_string() }
}

/// Python's `str.isspace()`: Unicode White_Space plus the four ASCII separators U+001C..U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Lines as Python's text mode with universal newlines yields them (terminators removed):
/// `\r\n`, `\r` and `\n` each end a line, and text after the last terminator is a last line.
fn universal_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\r', '\n']) {
            Some(at) => {
                let line = &rest[..at];
                let skip = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[at + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

/// The 1-based line holding byte `offset`, counting line ends the way `universal_lines` does.
fn line_at(bytes: &[u8], offset: usize) -> usize {
    let prefix = &bytes[..offset.min(bytes.len())];
    let mut line = 1;
    let mut i = 0;
    while i < prefix.len() {
        match prefix[i] {
            b'\n' => line += 1,
            b'\r' => {
                line += 1;
                if prefix.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String, String, usize)> {
        parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .map(|e| (e.section, e.key, e.value, e.line))
            .collect()
    }

    fn one(text: &str) -> (String, String, String) {
        let all = entries(text);
        assert_eq!(all.len(), 1, "{text:?}: {all:?}");
        let (s, k, v, _) = all.into_iter().next().expect("test input");
        (s, k, v)
    }

    fn value(text: &str) -> String {
        one(text).2
    }

    fn err(text: &str) -> ParseError {
        match parse(text.as_bytes()) {
            Ok(e) => panic!("{text:?} parsed: {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn empty_file_has_no_entries() {
        assert!(parse(b"").expect("test input").is_empty());
        assert!(parse(b"\n\n   \n").expect("test input").is_empty());
        assert!(parse(b"# only a comment\n[DEFAULT]\n").expect("test input").is_empty());
    }

    #[test]
    fn simple_assignment_with_line_numbers() {
        let got = entries("[DEFAULT]\nhost = node1\n\n[database]\nconnection=sqlite:////x\n");
        assert_eq!(
            got,
            vec![
                ("DEFAULT".into(), "host".into(), "node1".into(), 2),
                ("database".into(), "connection".into(), "sqlite:////x".into(), 5),
            ]
        );
    }

    #[test]
    fn no_inline_comments() {
        assert_eq!(value("[DEFAULT]\na = b # c\n"), "b # c");
        assert_eq!(value("[DEFAULT]\na = b ; c\n"), "b ; c");
    }

    #[test]
    fn comments_only_at_column_zero() {
        assert!(parse(b"[DEFAULT]\n# a = b\n; c = d\n").expect("test input").is_empty());
        // `#` not in column 0 and not indented: an assignment whose key starts with `#`.
        assert_eq!(one("[DEFAULT]\n\u{c}# a = b\n").1, "# a");
    }

    #[test]
    fn section_names_are_normalised() {
        assert_eq!(one("[DATABASE]\na = 1\n").0, "database");
        assert_eq!(one("[Key_Manager]\na = 1\n").0, "key_manager");
        assert_eq!(one("[default]\na = 1\n").0, "default");
        assert_eq!(one("[DEFAULT]\na = 1\n").0, "DEFAULT");
        assert_eq!(one("[Default]\na = 1\n").0, "default");
        // The name is not trimmed.
        assert_eq!(one("[ DEFAULT ]\na = 1\n").0, " default ");
        // Trailing whitespace after `]` is stripped with the line.
        assert_eq!(one("[DEFAULT]  \t\na = 1\n").0, "DEFAULT");
        assert_eq!(normalize_group("DEFAULT"), "DEFAULT");
        assert_eq!(normalize_group("DeFault"), "default");
        assert_eq!(normalize_group("ΣΟΦΟΣ"), "σοφος");
    }

    #[test]
    fn section_errors() {
        assert_eq!(err("[DEFAULT\na = 1\n"), ParseError { line: 1, message: NO_END_BRACKET.into() });
        assert_eq!(err("[DEFAULT] # x\n").message, NO_END_BRACKET);
        assert_eq!(err("[DEFAULT]\n[]\n"), ParseError { line: 2, message: EMPTY_SECTION.into() });
        assert_eq!(err("[\n").message, NO_END_BRACKET);
    }

    #[test]
    fn colon_and_equals_whichever_first() {
        assert_eq!(one("[DEFAULT]\nkey: value\n").1, "key");
        assert_eq!(value("[DEFAULT]\nkey: value\n"), "value");
        assert_eq!(one("[DEFAULT]\nkey = a:b\n").2, "a:b");
        let (_, k, v) = one("[DEFAULT]\nkey: a=b\n");
        assert_eq!((k.as_str(), v.as_str()), ("key", "a=b"));
        let (_, k, v) = one("[database]\nconnection = mysql+pymysql://u:p@h/c?x=1\n");
        assert_eq!((k.as_str(), v.as_str()), ("connection", "mysql+pymysql://u:p@h/c?x=1"));
        // An unquoted URL in `key: value` form still splits at the first `:`.
        let (_, k, v) = one("[database]\nconnection: sqlite:////x\n");
        assert_eq!((k.as_str(), v.as_str()), ("connection", "sqlite:////x"));
        assert_eq!(value("[DEFAULT]\nempty =\n"), "");
        assert_eq!(value("[DEFAULT]\nempty=   \n"), "");
    }

    #[test]
    fn keys_and_values_are_stripped_keys_keep_case() {
        let (_, k, v) = one("[DEFAULT]\n\u{c}Key_Name  =   some value  \t\n");
        assert_eq!((k.as_str(), v.as_str()), ("Key_Name", "some value"));
        // Python strips U+001C..U+001F too; Rust's `trim` alone would not.
        assert_eq!(value("[DEFAULT]\na = \u{1f}x\u{1c}\n"), "x");
        assert_eq!(value("[DEFAULT]\na = \u{3000}x\u{a0}\n"), "x");
    }

    #[test]
    fn quotes() {
        assert_eq!(value("[DEFAULT]\nkey = \"quoted\"\n"), "quoted");
        assert_eq!(value("[DEFAULT]\nkey = 'x'\n"), "x");
        assert_eq!(value("[DEFAULT]\nkey = \"mismatched'\n"), "\"mismatched'");
        assert_eq!(value("[DEFAULT]\nkey = \"\"\n"), "");
        assert_eq!(value("[DEFAULT]\nkey = \"a\" b \"c\"\n"), "a\" b \"c");
        // Only one pair is removed.
        assert_eq!(value("[DEFAULT]\nkey = \"\"x\"\"\n"), "\"x\"");
        // oslo's `value[1:-1]` on a lone quote gives the empty string.
        assert_eq!(value("[DEFAULT]\nkey = \"\n"), "");
        assert_eq!(value("[DEFAULT]\nkey = '\n"), "");
        assert_eq!(value("[DEFAULT]\nkey = \"half\n"), "\"half");
        assert_eq!(value("[DEFAULT]\nkey = a\"\n"), "a\"");
    }

    #[test]
    fn quotes_only_from_the_first_line() {
        // oslo strips quotes in `_split_key_value`, before any continuation is appended.
        assert_eq!(value("[DEFAULT]\nk = \"a\"\n  b\n"), "a\nb");
        assert_eq!(value("[DEFAULT]\nk = \"a\n  b\"\n"), "\"a\nb\"");
    }

    #[test]
    fn continuation_lines() {
        assert_eq!(value("[DEFAULT]\nk = a\n  b\n\tc\n"), "a\nb\nc");
        assert_eq!(value("[DEFAULT]\nk =\n  b\n"), "\nb");
        let got = entries("[DEFAULT]\nk = a\n  b\nnext = 2\n");
        assert_eq!(got[0], ("DEFAULT".into(), "k".into(), "a\nb".into(), 2));
        assert_eq!(got[1], ("DEFAULT".into(), "next".into(), "2".into(), 4));
    }

    #[test]
    fn indented_hash_is_a_continuation() {
        assert_eq!(value("[DEFAULT]\nk = a\n  # not a comment\n"), "a\n# not a comment");
        assert_eq!(err("[DEFAULT]\n  # x\n"), ParseError { line: 2, message: UNEXPECTED_CONTINUATION.into() });
    }

    #[test]
    fn blank_line_ends_a_value() {
        assert_eq!(err("[DEFAULT]\nk = a\n\n  b\n"), ParseError { line: 4, message: UNEXPECTED_CONTINUATION.into() });
        // A line of whitespace is blank.
        assert_eq!(err("[DEFAULT]\nk = a\n \t \n  b\n").line, 4);
        // So do a comment and a section header.
        assert_eq!(err("[DEFAULT]\nk = a\n# c\n  b\n").line, 4);
        assert_eq!(err("[DEFAULT]\nk = a\n[x]\n  b\n").line, 4);
    }

    #[test]
    fn continuation_without_key_is_an_error() {
        assert_eq!(err("  a = b\n"), ParseError { line: 1, message: UNEXPECTED_CONTINUATION.into() });
        assert_eq!(err("[DEFAULT]\n\ta\n").line, 2);
    }

    #[test]
    fn repeated_keys_are_all_returned_in_order() {
        let got = entries("[DEFAULT]\nk = 1\nk = 2\n[database]\nk = 3\n[DEFAULT]\nk = 4\n");
        let values: Vec<_> = got.iter().map(|e| (e.0.as_str(), e.2.as_str(), e.3)).collect();
        assert_eq!(values, vec![("DEFAULT", "1", 2), ("DEFAULT", "2", 3), ("database", "3", 5), ("DEFAULT", "4", 7)]);
    }

    #[test]
    fn assignment_errors() {
        assert_eq!(err("[DEFAULT]\njust words\n"), ParseError { line: 2, message: NO_SEPARATOR.into() });
        assert_eq!(err("[DEFAULT]\n= value\n"), ParseError { line: 2, message: EMPTY_KEY.into() });
        assert_eq!(err("[DEFAULT]\n: value\n").message, EMPTY_KEY);
        assert_eq!(err("a = b\n[DEFAULT]\n"), ParseError { line: 1, message: NO_SECTION.into() });
        assert_eq!(err("\n\na = b\n").line, 3);
    }

    #[test]
    fn line_endings() {
        let crlf = entries("[DEFAULT]\r\na = 1\r\nb = 2\r\n");
        assert_eq!(crlf[0], ("DEFAULT".into(), "a".into(), "1".into(), 2));
        assert_eq!(crlf[1], ("DEFAULT".into(), "b".into(), "2".into(), 3));
        // A lone CR ends a line too (Python's universal newlines).
        let cr = entries("[DEFAULT]\ra = 1\rb = 2");
        assert_eq!(cr[1], ("DEFAULT".into(), "b".into(), "2".into(), 3));
        assert_eq!(value("[DEFAULT]\r\nk = a\r\n  b\r\n"), "a\nb");
        // No newline at the end of the file.
        assert_eq!(value("[DEFAULT]\nk = v"), "v");
        // Vertical tab, form feed and U+2028 do not end a line in a file read by Python.
        assert_eq!(value("[DEFAULT]\nk = a\u{b}b\u{2028}c\n"), "a\u{b}b\u{2028}c");
    }

    #[test]
    fn utf8_values() {
        assert_eq!(value("[DEFAULT]\nk = pässwörd €\n"), "pässwörd €");
    }

    #[test]
    fn not_utf8_is_an_error_naming_the_line() {
        let e = parse(b"[DEFAULT]\na = 1\nb = \xff\xfe\n").unwrap_err();
        assert_eq!(e, ParseError { line: 3, message: NOT_UTF8.into() });
        assert_eq!(parse(b"[DEFAULT]\r\n\r\nb = \xc3\n").unwrap_err().line, 3);
        assert_eq!(parse(b"[DEFAULT]\rb = \xed\xa0\x80\n").unwrap_err().line, 2);
        // Binary garbage.
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert_eq!(parse(&garbage).unwrap_err().message, NOT_UTF8);
        // Valid UTF-8 that is not INI at all.
        assert_eq!(parse(b"\x00\x01\x02\x03").unwrap_err().message, NO_SEPARATOR);
    }

    #[test]
    fn byte_order_mark_fails_like_oslo_with_a_hint() {
        let e = parse("\u{feff}[DEFAULT]\na = 1\n".as_bytes()).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.starts_with(NO_SEPARATOR), "{e}");
        assert!(e.message.contains("byte order mark"), "{e}");
        // A BOM before a key makes the key `\u{feff}a`, assigned before any section.
        let e = parse("\u{feff}a = 1\n[DEFAULT]\n".as_bytes()).unwrap_err();
        assert!(e.message.starts_with(NO_SECTION) && e.message.contains("byte order mark"), "{e}");
        // A BOM elsewhere is just a character.
        assert_eq!(value("[DEFAULT]\nk = \u{feff}x\n"), "\u{feff}x");
    }

    #[test]
    fn huge_line() {
        let big = "x".repeat(1 << 20);
        let text = format!("[DEFAULT]\nk = {big}\n");
        assert_eq!(value(&text).len(), 1 << 20);
        let long_continued = format!("[DEFAULT]\nk = a\n  {big}\n");
        assert_eq!(value(&long_continued).len(), 2 + (1 << 20));
    }

    #[test]
    fn errors_never_contain_the_line() {
        let secret = "hunter2-SECRET";
        let cases = [
            format!("[DEFAULT]\n{secret}\n"),
            format!("[DEFAULT]\n= {secret}\n"),
            format!("connection = mysql://u:{secret}@h/c\n[DEFAULT]\n"),
            format!("  {secret}\n"),
            format!("[{secret}\n"),
            format!("\u{feff}[DEFAULT]\npassword = {secret}\n"),
        ];
        for text in &cases {
            let e = err(text);
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(secret), "{shown}");
        }
        let mut bad = format!("[DEFAULT]\npassword = {secret}").into_bytes();
        bad.push(0xff);
        let e = parse(&bad).unwrap_err();
        assert!(!format!("{e} {e:?}").contains(secret));
    }

    #[test]
    fn display_format() {
        assert_eq!(err("[DEFAULT]\nx\n").to_string(), "line 2: No ':' or '=' found in assignment");
    }
}
