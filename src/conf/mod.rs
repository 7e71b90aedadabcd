//! cinder.conf, read the way oslo.config reads it.
//!
//! Sources in precedence order: environment `OS_<GROUP>__<OPT>` > config files (later file wins;
//! within a file the last occurrence wins, and an option's current name beats its deprecated names
//! only within the same file) > Cinder's defaults. Values are interpolated like oslo.config
//! (`$name`, `${name}`, `${group.opt}`, `$$` and `\$` for a literal dollar). Only the options
//! keymigrate knows (the [`OPTIONS`] registry) can be read or referenced.
//!
//! Any option may be a secret (`fixed_key`, a password, the database URL), so every value is
//! kept as a [`Sensitive`] from the moment the file is parsed, and the file's bytes, the
//! environment's values and the strings interpolation builds are wiped once used.

pub mod ini;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::{self, Sensitive};

/// One option keymigrate reads: its group, name, deprecated aliases and Cinder's default.
#[derive(Debug)]
pub struct Opt {
    pub group: &'static str,
    pub name: &'static str,
    /// `(group, name)` aliases oslo.config still accepts.
    pub deprecated: &'static [(&'static str, &'static str)],
    pub default: Option<&'static str>,
}

macro_rules! opt {
    ($group:literal, $name:literal) => {
        Opt { group: $group, name: $name, deprecated: &[], default: None }
    };
    ($group:literal, $name:literal, default = $default:literal) => {
        Opt { group: $group, name: $name, deprecated: &[], default: Some($default) }
    };
    ($group:literal, $name:literal, deprecated = [$(($dg:literal, $dn:literal)),*]) => {
        Opt { group: $group, name: $name, deprecated: &[$(($dg, $dn)),*], default: None }
    };
    ($group:literal, $name:literal, deprecated = [$(($dg:literal, $dn:literal)),*], default = $default:literal) => {
        Opt { group: $group, name: $name, deprecated: &[$(($dg, $dn)),*], default: Some($default) }
    };
}

pub const STATE_PATH: Opt = opt!("DEFAULT", "state_path", default = "/var/lib/cinder");
/// Default computed at run time: the machine's hostname.
pub const HOST: Opt = opt!("DEFAULT", "host");
pub const CLUSTER: Opt = opt!("DEFAULT", "cluster");
pub const ENABLED_BACKENDS: Opt = opt!("DEFAULT", "enabled_backends");
pub const MY_IP: Opt = opt!("DEFAULT", "my_ip");
/// Cinder's Glance servers (`host:port` or URLs, comma-separated); keymigrate takes the first.
pub const GLANCE_API_SERVERS: Opt = opt!("DEFAULT", "glance_api_servers");
/// Where Cinder looks Glance up in the catalog without `glance_api_servers`:
/// `<service_type>:<service_name>:<endpoint_type>`.
pub const GLANCE_CATALOG_INFO: Opt = opt!("DEFAULT", "glance_catalog_info", default = "image:glance:publicURL");
/// The catalog region of Cinder's Glance (Cinder 29).
pub const GLANCE_REGION_NAME: Opt = opt!("glance", "region_name");
pub const KEY_MANAGER_BACKEND: Opt =
    opt!("key_manager", "backend", deprecated = [("key_manager", "api_class")], default = "barbican");
pub const FIXED_KEY: Opt = opt!("key_manager", "fixed_key", deprecated = [("keymgr", "fixed_key")]);
pub const DB_CONNECTION: Opt = opt!(
    "database",
    "connection",
    deprecated = [("DEFAULT", "sql_connection"), ("database", "sql_connection"), ("sql", "connection")],
    default = "sqlite:///$state_path/cinder.sqlite"
);

pub mod keystone {
    use super::Opt;
    pub const AUTH_SECTION: Opt = opt!("keystone_authtoken", "auth_section");
    pub const AUTH_TYPE: Opt = opt!("keystone_authtoken", "auth_type", deprecated = [("keystone_authtoken", "auth_plugin")]);
    pub const AUTH_URL: Opt = opt!("keystone_authtoken", "auth_url");
    pub const USERNAME: Opt = opt!("keystone_authtoken", "username", deprecated = [("keystone_authtoken", "user_name")]);
    pub const USER_ID: Opt = opt!("keystone_authtoken", "user_id");
    pub const PASSWORD: Opt = opt!("keystone_authtoken", "password");
    pub const USER_DOMAIN_ID: Opt = opt!("keystone_authtoken", "user_domain_id");
    pub const USER_DOMAIN_NAME: Opt = opt!("keystone_authtoken", "user_domain_name");
    pub const PROJECT_ID: Opt = opt!("keystone_authtoken", "project_id", deprecated = [("keystone_authtoken", "tenant_id")]);
    pub const PROJECT_NAME: Opt =
        opt!("keystone_authtoken", "project_name", deprecated = [("keystone_authtoken", "tenant_name")]);
    pub const PROJECT_DOMAIN_ID: Opt = opt!("keystone_authtoken", "project_domain_id");
    pub const PROJECT_DOMAIN_NAME: Opt = opt!("keystone_authtoken", "project_domain_name");
    pub const DEFAULT_DOMAIN_ID: Opt = opt!("keystone_authtoken", "default_domain_id");
    pub const DEFAULT_DOMAIN_NAME: Opt = opt!("keystone_authtoken", "default_domain_name");
    pub const APP_CRED_ID: Opt = opt!("keystone_authtoken", "application_credential_id");
    pub const APP_CRED_NAME: Opt = opt!("keystone_authtoken", "application_credential_name");
    pub const APP_CRED_SECRET: Opt = opt!("keystone_authtoken", "application_credential_secret");
    pub const CAFILE: Opt = opt!("keystone_authtoken", "cafile");
    pub const CERTFILE: Opt = opt!("keystone_authtoken", "certfile");
    pub const KEYFILE: Opt = opt!("keystone_authtoken", "keyfile");
    pub const INSECURE: Opt = opt!("keystone_authtoken", "insecure", default = "false");
    pub const TIMEOUT: Opt = opt!("keystone_authtoken", "timeout");
}

pub mod barbican {
    use super::Opt;
    pub const ENDPOINT: Opt = opt!("barbican", "barbican_endpoint");
    pub const API_VERSION: Opt = opt!("barbican", "barbican_api_version");
    pub const ENDPOINT_TYPE: Opt = opt!("barbican", "barbican_endpoint_type", default = "public");
    pub const REGION_NAME: Opt = opt!("barbican", "barbican_region_name");
    pub const VERIFY_SSL: Opt = opt!("barbican", "verify_ssl", default = "true");
    pub const VERIFY_SSL_PATH: Opt = opt!("barbican", "verify_ssl_path");
}

/// Every option keymigrate knows: the only ones that can be read or used in `$` interpolation.
pub const OPTIONS: &[&Opt] = &[
    &STATE_PATH,
    &HOST,
    &CLUSTER,
    &ENABLED_BACKENDS,
    &MY_IP,
    &GLANCE_API_SERVERS,
    &GLANCE_CATALOG_INFO,
    &GLANCE_REGION_NAME,
    &KEY_MANAGER_BACKEND,
    &FIXED_KEY,
    &DB_CONNECTION,
    &keystone::AUTH_SECTION,
    &keystone::AUTH_TYPE,
    &keystone::AUTH_URL,
    &keystone::USERNAME,
    &keystone::USER_ID,
    &keystone::PASSWORD,
    &keystone::USER_DOMAIN_ID,
    &keystone::USER_DOMAIN_NAME,
    &keystone::PROJECT_ID,
    &keystone::PROJECT_NAME,
    &keystone::PROJECT_DOMAIN_ID,
    &keystone::PROJECT_DOMAIN_NAME,
    &keystone::DEFAULT_DOMAIN_ID,
    &keystone::DEFAULT_DOMAIN_NAME,
    &keystone::APP_CRED_ID,
    &keystone::APP_CRED_NAME,
    &keystone::APP_CRED_SECRET,
    &keystone::CAFILE,
    &keystone::CERTFILE,
    &keystone::KEYFILE,
    &keystone::INSECURE,
    &keystone::TIMEOUT,
    &barbican::ENDPOINT,
    &barbican::API_VERSION,
    &barbican::ENDPOINT_TYPE,
    &barbican::REGION_NAME,
    &barbican::VERIFY_SSL,
    &barbican::VERIFY_SSL_PATH,
];

/// Where a value came from, for messages such as "scope from [DEFAULT] host (cinder.conf line 3)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Env(String),
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{} line {line}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A resolved option value. Its `Debug` hides the value: any option may be a secret.
#[derive(Clone)]
pub struct Value {
    pub value: Sensitive,
    pub origin: Origin,
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value(<redacted> from {})", self.origin)
    }
}

struct LoadedFile {
    path: PathBuf,
    entries: Vec<Setting>,
}

/// One assignment of a file, its value held for the run as a [`Sensitive`].
struct Setting {
    section: String,
    key: String,
    value: Sensitive,
    line: usize,
}

impl LoadedFile {
    /// Moves each parsed value into a [`Sensitive`] (no copy is made).
    fn new(path: PathBuf, entries: Vec<ini::Entry>) -> LoadedFile {
        let entries = entries
            .into_iter()
            .map(|e| Setting { section: e.section, key: e.key, value: Sensitive::new(e.value), line: e.line })
            .collect();
        LoadedFile { path, entries }
    }
}

/// The `OS_*` variables of `env`, their values kept as [`Sensitive`].
fn os_vars(env: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, Sensitive> {
    env.into_iter().filter(|(k, _)| k.starts_with("OS_")).map(|(k, v)| (k, Sensitive::new(v))).collect()
}

/// The configuration files and environment, loaded once before any command runs.
pub struct Conf {
    files: Vec<LoadedFile>,
    env: BTreeMap<String, Sensitive>,
    hostname: String,
}

/// One step of the configuration search, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigArg {
    File(PathBuf),
    Dir(PathBuf),
}

const MAX_INTERPOLATION_DEPTH: usize = 32;

impl Conf {
    /// Loads `--config-file`/`--config-dir` in the order given, or searches oslo.config's default
    /// places when neither was given. `env` is the process environment (only `OS_*` is used).
    pub fn load(args: &[ConfigArg], env: impl IntoIterator<Item = (String, String)>) -> Result<Conf> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let paths = if args.is_empty() {
            default_config_files(home.as_deref(), Path::new("/etc"))
        } else {
            let mut paths = Vec::new();
            for arg in args {
                match arg {
                    ConfigArg::File(path) => paths.push(path.clone()),
                    ConfigArg::Dir(dir) => paths.extend(conf_files_in(dir, true)?),
                }
            }
            paths
        };
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            // `fs::read` sizes its buffer from the file's length, so this is the file's one copy.
            let bytes = Zeroizing::new(
                std::fs::read(&path).map_err(|source| Error::ConfigRead { path: path.clone(), source })?,
            );
            let entries = ini::parse(&bytes)
                .map_err(|e| Error::ConfigSyntax { path: path.clone(), message: e.to_string() })?;
            log::debug!("read configuration file {}", path.display());
            files.push(LoadedFile::new(path, entries));
        }
        Ok(Conf { files, env: os_vars(env), hostname: hostname() })
    }

    /// A configuration built from text, for tests and for `--config-file -`-style callers.
    pub fn from_text(name: &str, text: &str) -> Result<Conf> {
        let path = PathBuf::from(name);
        let entries = ini::parse(text.as_bytes())
            .map_err(|e| Error::ConfigSyntax { path: path.clone(), message: e.to_string() })?;
        Ok(Conf { files: vec![LoadedFile::new(path, entries)], env: BTreeMap::new(), hostname: "localhost".into() })
    }

    pub fn with_env(mut self, env: impl IntoIterator<Item = (String, String)>) -> Conf {
        self.env = os_vars(env);
        self
    }

    pub fn with_hostname(mut self, hostname: &str) -> Conf {
        self.hostname = hostname.to_string();
        self
    }

    /// The files that were read, in order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// The machine's hostname, `[DEFAULT] host`'s default.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The interpolated value of a registered option, or its default, or `None`.
    pub fn get(&self, opt: &Opt) -> Result<Option<Value>> {
        self.get_in(opt.group, opt.name, opt, &mut Vec::new())
    }

    /// A per-backend option (`[<backend>] backend_host`): groups named by `enabled_backends`.
    pub fn get_backend_opt(&self, backend: &str, name: &'static str) -> Result<Option<Value>> {
        let group = ini::normalize_group(backend);
        let opt = Opt { group: "", name, deprecated: &[], default: None };
        self.get_in(&group, name, &opt, &mut Vec::new())
    }

    /// A registered option's name read from another group (keystoneauth's `auth_section`).
    pub fn get_from(&self, group: &str, opt: &Opt) -> Result<Option<Value>> {
        let group = ini::normalize_group(group);
        let moved = Opt { group: "", name: opt.name, deprecated: &[], default: opt.default };
        self.get_in(&group, opt.name, &moved, &mut Vec::new())
    }

    /// A boolean option the way oslo.config's `BoolOpt` parses it.
    pub fn get_bool(&self, opt: &Opt) -> Result<bool> {
        let Some(v) = self.get(opt)? else { return Ok(false) };
        parse_bool(v.value.expose()).ok_or_else(|| {
            Error::config_value(
                format!("[{}] {}", opt.group, opt.name),
                format!("expected true or false ({})", v.origin),
            )
        })
    }

    fn get_in(&self, group: &str, name: &str, opt: &Opt, stack: &mut Vec<(String, String)>) -> Result<Option<Value>> {
        let key = (group.to_string(), name.to_string());
        if stack.contains(&key) || stack.len() > MAX_INTERPOLATION_DEPTH {
            return Err(Error::config_value(
                format!("[{}] {}", stack[0].0, stack[0].1),
                format!("interpolation loop through [{group}] {name}"),
            ));
        }
        let Some(raw) = self.raw(group, name, opt) else { return Ok(None) };
        stack.push(key);
        let value = self.interpolate(group, raw.value, stack, &raw.origin);
        stack.pop();
        Ok(Some(Value { value: value?, origin: raw.origin }))
    }

    /// The uninterpolated value: environment, then the last file that sets the option.
    fn raw(&self, group: &str, name: &str, opt: &Opt) -> Option<Value> {
        let var = format!("OS_{}__{}", group.to_uppercase(), name.to_uppercase());
        if let Some(v) = self.env.get(&var) {
            return Some(Value { value: v.clone(), origin: Origin::Env(var) });
        }
        for file in self.files.iter().rev() {
            let current = file.entries.iter().rev().find(|e| e.section == group && e.key == name);
            let found = current.or_else(|| {
                opt.deprecated
                    .iter()
                    .find_map(|(g, n)| file.entries.iter().rev().find(|e| e.section == *g && e.key == *n))
            });
            if let Some(e) = found {
                return Some(Value {
                    value: e.value.clone(),
                    origin: Origin::File { path: file.path.clone(), line: e.line },
                });
            }
        }
        if opt.group == "DEFAULT" && opt.name == "host" {
            return Some(Value { value: Sensitive::new(self.hostname.clone()), origin: Origin::Default });
        }
        opt.default.map(|d| Value { value: Sensitive::new(d), origin: Origin::Default })
    }

    /// Python `string.Template.safe_substitute` with oslo.config's lookup rules. The strings
    /// built on the way may hold a secret: they are zeroizing, and grow without leaving copies.
    fn interpolate(&self, group: &str, value: Sensitive, stack: &mut Vec<(String, String)>, origin: &Origin) -> Result<Sensitive> {
        if !value.expose().contains('$') {
            return Ok(value);
        }
        // `\$` becomes `$$`: the same length, so the buffer never grows.
        let mut escaped = Zeroizing::new(String::with_capacity(value.expose().len()));
        for (i, piece) in value.expose().split("\\$").enumerate() {
            if i > 0 {
                escaped.push_str("$$");
            }
            escaped.push_str(piece);
        }
        let mut out = Zeroizing::new(String::with_capacity(escaped.len()));
        let mut rest = escaped.as_str();
        while let Some(pos) = rest.find('$') {
            secret::push_wiping(&mut out, &rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                secret::push_wiping(&mut out, "$");
                rest = tail;
                continue;
            }
            let (ident, consumed) = if let Some(braced) = after.strip_prefix('{') {
                match braced.find('}') {
                    Some(end) if is_identifier(&braced[..end]) => (&braced[..end], end + 2),
                    _ => ("", 0),
                }
            } else {
                let len = identifier_len(after);
                (&after[..len], len)
            };
            if ident.is_empty() {
                // Not a placeholder: safe_substitute leaves it as it is.
                secret::push_wiping(&mut out, "$");
                rest = after;
                continue;
            }
            secret::push_wiping(&mut out, self.substitute(group, ident, stack, origin)?.expose());
            rest = &after[consumed..];
        }
        secret::push_wiping(&mut out, rest);
        Ok(Sensitive::from_zeroizing(out))
    }

    fn substitute(&self, group: &str, ident: &str, stack: &mut Vec<(String, String)>, origin: &Origin) -> Result<Sensitive> {
        let (g, n) = match ident.split_once('.') {
            Some((g, n)) => (ini::normalize_group(g), n.to_string()),
            None => (group.to_string(), ident.to_string()),
        };
        let candidates = [(g.clone(), n.clone()), ("DEFAULT".to_string(), ident.to_string())];
        for (g, n) in candidates {
            if let Some(opt) = registered(&g, &n) {
                let v = self.get_in(&g, &n, opt, stack)?;
                return Ok(v.map(|v| v.value).unwrap_or_default());
            }
        }
        let (top_group, top_name) = stack.first().cloned().unwrap_or_default();
        // In a secret the text after `$` is part of the secret (`pa$word`): do not show it.
        let in_secret = stack.last().is_some_and(|(g, n)| holds_secret(g, n));
        let message = if in_secret {
            format!(
                "has a $ followed by a name that is not an option keymigrate knows ({origin}; the value is not shown, it \
                 may be a secret); write $$ for a literal $"
            )
        } else {
            format!("refers to ${ident}, which is not an option keymigrate knows ({origin}); write $$ for a literal $")
        };
        Err(Error::config_value(format!("[{top_group}] {top_name}"), message))
    }
}

/// Options whose values are, or contain, a secret: a password, the fixed key, a database URL.
fn holds_secret(group: &str, name: &str) -> bool {
    [&FIXED_KEY, &DB_CONNECTION, &keystone::PASSWORD, &keystone::APP_CRED_SECRET]
        .iter()
        .any(|o| (o.group == group && o.name == name) || o.deprecated.iter().any(|&(g, n)| g == group && n == name))
}

fn registered(group: &str, name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().copied().find(|o| o.group == group && o.name == name)
}

/// Python Template's `idpattern`, `(?a:[_a-z][_.a-z0-9]*)` with IGNORECASE.
fn identifier_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
        _ => return 0,
    }
    bytes.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'.').count()
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && identifier_len(s) == s.len()
}

/// oslo.config's boolean strings.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Some(true),
        "false" | "0" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// oslo.config's `ListOpt`: comma-separated, items stripped, empty items dropped.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// `*.conf` in a directory, sorted like Python's `sorted(glob(...))`.
fn conf_files_in(dir: &Path, required: bool) -> Result<Vec<PathBuf>> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(_) if !required => return Ok(Vec::new()),
        Err(source) => return Err(Error::ConfigRead { path: dir.to_path_buf(), source }),
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf") && !file_name_starts_with_dot(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn file_name_starts_with_dot(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// oslo.config's `find_config_files` + `find_config_dirs` for project `cinder`, program
/// `keymigrate`: the first hit for each name in `~/.cinder/`, `~/`, `/etc/cinder/`, `/etc/`;
/// files before directories.
pub fn default_config_files(home: Option<&Path>, etc: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = home {
        dirs.push(home.join(".cinder"));
        dirs.push(home.to_path_buf());
    }
    dirs.push(etc.join("cinder"));
    dirs.push(etc.to_path_buf());
    let first = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.exists());
    let mut out = Vec::new();
    for name in ["cinder.conf", "keymigrate.conf"] {
        if let Some(p) = first(name).filter(|p| p.is_file()) {
            out.push(p);
        }
    }
    for name in ["cinder.conf.d", "keymigrate.conf.d"] {
        if let Some(d) = first(name).filter(|p| p.is_dir()) {
            out.extend(conf_files_in(&d, false).unwrap_or_default());
        }
    }
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
