//! SQLAlchemy's `sqlite://` URLs, translated into the absolute file path diesel opens.

use std::path::Path;

use super::*;

pub(super) fn sqlite(sa: &SaUrl<'_>, cwd: &Path) -> Result<Translated, UrlError> {
    // pysqlite's create_connect_args: `if url.username or url.password or url.host or url.port`.
    let given = |s: Option<&str>| s.is_some_and(|s| !s.is_empty());
    if given(sa.username) || given(sa.password) || sa.host.is_some() || sa.port.is_some() {
        return Err(UrlError::SqliteServer);
    }
    let mut ignored = Vec::new();
    for (key, value) in sa.query_pairs() {
        if key == "uri" && asbool(&key, &value)? {
            return Err(UrlError::SqliteUri);
        }
        note_ignored(&mut ignored, &key);
    }
    // `filename = url.database or ":memory:"`
    let db = match sa.database {
        None | Some("") | Some(":memory:") => return Err(UrlError::SqliteInMemory),
        Some(db) => db,
    };
    if has_percent_escape(db) {
        return Err(UrlError::AmbiguousPercent("path"));
    }
    if db.contains('\0') {
        return Err(UrlError::Nul("path"));
    }
    let joined = if db.starts_with('/') {
        db.to_string()
    } else {
        let cwd = cwd.to_str().ok_or(UrlError::NonUtf8WorkingDirectory)?;
        if cwd.is_empty() || cwd.ends_with('/') {
            format!("{cwd}{db}")
        } else {
            format!("{cwd}/{db}")
        }
    };
    Ok(Translated { conn: normpath(&joined), ignored, require_tls: false })
}

/// Python's `posixpath.normpath`, which `os.path.abspath` applies: lexical, symlinks untouched.
pub(super) fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let initial = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        if part.is_empty() || part == "." {
            continue;
        }
        if part != ".." || (initial == 0 && parts.is_empty()) || parts.last() == Some(&"..") {
            parts.push(part);
        } else if !parts.is_empty() {
            parts.pop();
        }
    }
    let joined = format!("{}{}", "/".repeat(initial), parts.join("/"));
    if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}
