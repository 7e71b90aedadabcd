//! Where clouds.yaml and secure.yaml are looked for, and how they are read: openstacksdk's
//! search list (`openstack/config/loader.py`), the first existing file of each list, the secure
//! file merged over the clouds file key by key.
//!
//! Two deliberate differences from openstacksdk, both so that an admin identity is never taken
//! from a file the operator did not mean: a file that is not valid YAML is an error (openstacksdk
//! logs a warning and moves on to the next file), and so is an `OS_CLIENT_CONFIG_FILE` or
//! `OS_CLIENT_SECURE_FILE` that names no file (openstacksdk silently falls back to the list).

use std::path::{Path, PathBuf};

use yaml_serde::Value;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// The suffixes openstacksdk tries, in its order, for `clouds` and `secure`.
const SUFFIXES: [&str; 3] = ["yaml", "yml", "json"];

/// The directories searched, in order, and the files the environment puts in front of them.
#[derive(Debug, Clone)]
pub struct SearchPath {
    /// `OS_CLIENT_CONFIG_FILE`, tried before the directories.
    pub config_file: Option<PathBuf>,
    /// `OS_CLIENT_SECURE_FILE`, tried before the directories.
    pub secure_file: Option<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

impl SearchPath {
    /// openstacksdk's list on Linux: the current directory, the user's config directory
    /// (`$XDG_CONFIG_HOME/openstack`, then `~/.config/openstack`, or `$SNAP_REAL_HOME`'s), the
    /// site's (`$XDG_CONFIG_DIRS`, by default `/etc/xdg`, then `/etc/openstack`). With several
    /// `XDG_CONFIG_DIRS`, openstacksdk joins them into one path that never exists; each is tried
    /// here.
    pub fn new(env: impl IntoIterator<Item = (String, String)>, cwd: &Path, home: Option<&Path>) -> SearchPath {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let var = |name: &str| {
            env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
        };
        let mut dirs = vec![cwd.to_path_buf()];
        let user_home = var("SNAP_REAL_HOME").map(PathBuf::from).or_else(|| home.map(Path::to_path_buf));
        // platformdirs ignores a relative XDG_CONFIG_HOME, as the XDG spec says.
        match var("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
            Some(xdg) => dirs.push(xdg.join("openstack")),
            None => dirs.extend(home.map(|h| h.join(".config").join("openstack"))),
        }
        dirs.extend(user_home.map(|h| h.join(".config").join("openstack")));
        let xdg_dirs = var("XDG_CONFIG_DIRS").unwrap_or_else(|| "/etc/xdg".to_string());
        dirs.extend(xdg_dirs.split(':').filter(|d| Path::new(d).is_absolute()).map(|d| Path::new(d).join("openstack")));
        dirs.push(PathBuf::from("/etc/openstack"));
        let mut seen = Vec::new();
        dirs.retain(|d| {
            let new = !seen.contains(d);
            seen.push(d.clone());
            new
        });
        let file = |name: &str| var(name).map(|f| absolute(Path::new(&f), cwd));
        SearchPath { config_file: file("OS_CLIENT_CONFIG_FILE"), secure_file: file("OS_CLIENT_SECURE_FILE"), dirs }
    }

    /// Every candidate for `stem` (`clouds` or `secure`), in the order they are tried.
    pub fn candidates(&self, stem: &str) -> Vec<PathBuf> {
        self.dirs.iter().flat_map(|d| SUFFIXES.iter().map(move |s| d.join(format!("{stem}.{s}")))).collect()
    }
}

fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}

/// One file read and parsed, its path kept for the messages.
pub struct Loaded {
    pub path: PathBuf,
    pub root: Value,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        wipe(&mut self.root);
    }
}

/// The first readable file among `explicit` (which must exist when given) and `candidates`.
/// Unreadable files are skipped as openstacksdk skips them, and listed in `skipped`.
pub fn first_file(
    explicit: Option<(&Path, &str)>,
    candidates: &[PathBuf],
    skipped: &mut Vec<String>,
) -> Result<Option<Loaded>> {
    if let Some((path, var)) = explicit {
        if !path.exists() {
            return Err(Error::ConfigRead {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("{var} names it, and it does not exist")),
            });
        }
    }
    for path in explicit.map(|(p, _)| p.to_path_buf()).iter().chain(candidates) {
        if !path.exists() {
            continue;
        }
        match std::fs::read(path) {
            Ok(bytes) => return parse_file(path, Zeroizing::new(bytes)).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                log::warn!("skipping {}: permission denied", path.display());
                skipped.push(format!("{} (permission denied)", path.display()));
            }
            Err(e) => return Err(Error::ConfigRead { path: path.clone(), source: e }),
        }
    }
    Ok(None)
}

fn parse_file(path: &Path, bytes: Zeroizing<Vec<u8>>) -> Result<Loaded> {
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::ConfigSyntax {
        path: path.to_path_buf(),
        message: format!("not UTF-8 text (byte {})", e.valid_up_to()),
    })?;
    let root = parse_text(text).map_err(|message| Error::ConfigSyntax { path: path.to_path_buf(), message })?;
    Ok(Loaded { path: path.to_path_buf(), root })
}

/// `text` as a YAML mapping, merge keys (`<<`) applied as PyYAML's `safe_load` applies them.
/// The message says where the text is wrong, never what it holds.
pub fn parse_text(text: &str) -> std::result::Result<Value, String> {
    let mut root: Value = match yaml_serde::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Err(match e.location() {
                Some(at) => format!("not valid YAML at line {} column {}", at.line(), at.column()),
                None => "not valid YAML".to_string(),
            })
        }
    };
    if let Err(e) = root.apply_merge() {
        wipe(&mut root);
        // The merge errors name the kind of node only (a scalar or a sequence where a mapping
        // belongs), never its content.
        return Err(format!("a merge key (<<) cannot be used here: {e}"));
    }
    if root.as_mapping().is_none() {
        wipe(&mut root);
        return Err("is empty or not a mapping (a clouds.yaml starts with `clouds:`)".to_string());
    }
    Ok(root)
}

/// openstacksdk's `normalize_keys`, applied to one cloud's settings (not to the cloud names):
/// `-` in a key is `_`, in every nested mapping; YAML tags are dropped.
pub fn normalize(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            let dashed: Vec<Value> =
                map.keys().filter(|k| k.as_str().is_some_and(|s| s.contains('-'))).cloned().collect();
            for key in dashed {
                if let (Some(v), Some(k)) = (map.remove(&key), key.as_str()) {
                    let fixed = Value::String(k.replace('-', "_"));
                    // Both spellings written: the underscore one is kept (Python would keep
                    // whichever came last in the file).
                    if !map.contains_key(&fixed) {
                        map.insert(fixed, v);
                    }
                }
            }
            map.values_mut().for_each(normalize);
        }
        Value::Sequence(seq) => seq.iter_mut().for_each(normalize),
        Value::Tagged(tagged) => {
            let mut inner = std::mem::replace(&mut tagged.value, Value::Null);
            normalize(&mut inner);
            *value = inner;
        }
        _ => {}
    }
}

/// openstacksdk's `merge_clouds`: `over`'s mappings merged into `base`'s, its other values
/// replacing them.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if v.is_mapping() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Zeroes every string in the tree: the passwords and secrets it held are not left in freed
/// memory. (The YAML parser's own buffers are not reached from here.)
pub fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Sequence(seq) => seq.iter_mut().for_each(wipe),
        Value::Mapping(map) => map.values_mut().for_each(wipe),
        Value::Tagged(tagged) => wipe(&mut tagged.value),
        _ => {}
    }
}
