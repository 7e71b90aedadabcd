//! An identity read the OpenStack way: one named cloud of clouds.yaml, found and interpreted as
//! openstacksdk (and so the `openstack` client) finds and interprets it, for the password and
//! application-credential plugins, turned into the [`KeystoneSettings`] keymigrate
//! authenticates with.
//!
//! `files` finds and reads the files (`OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
//! `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`, with `secure.yaml` merged
//! over); this file reads one cloud's settings. Every error is one line naming the file, the cloud
//! and the key, and never repeats a value (any value may be a password).

mod files;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_serde::{Mapping, Value};

pub use files::SearchPath;

use crate::error::{Error, Result};
use crate::http::{self, Tls};
use crate::keystone::{self, AuthMethod, Domain, Ident, KeystoneSettings};
use crate::secret::Sensitive;

/// The auth types keymigrate can authenticate with, as clouds.yaml spells them.
const AUTH_TYPES: &str = "password, v3password or v3applicationcredential";

/// One cloud of clouds.yaml, ready to authenticate with. `Debug` shows no secret: the password
/// and the application credential's secret are [`Sensitive`].
#[derive(Debug, Clone)]
pub struct CloudIdentity {
    /// The cloud's name in `clouds:`.
    pub name: String,
    /// Where it was read: the clouds file, and the secure file merged over it, if any.
    pub origin: String,
    /// `auth.auth_url`, as written.
    pub auth_url: String,
    /// Who authenticates, and (for a password) in which project.
    pub method: AuthMethod,
    /// `region_name` (or the first of `regions`).
    pub region_name: Option<String>,
    /// `interface` (or `endpoint_type`): `public` unless set, as in openstacksdk.
    pub interface: String,
    pub tls: CloudTls,
}

/// The TLS options of a cloud, after openstacksdk's rules: `insecure: true` or `verify: false`
/// turn verification off (and `cacert` is then unused); `verify` may also name a CA file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudTls {
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    /// `cert` and `key`: a client certificate, which keymigrate's HTTP client cannot present.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The cloud to use: the one named on the command line, else `OS_CLOUD`, as the `openstack`
/// client chooses. `None` when neither is set (an empty value counts as unset).
pub fn cloud_name(given: Option<&str>, env: impl IntoIterator<Item = (String, String)>) -> Option<String> {
    if let Some(name) = given.filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    env.into_iter().filter(|(k, _)| k == "OS_CLOUD").last().map(|(_, v)| v).filter(|v| !v.is_empty())
}

/// Finds cloud `name` in the clouds.yaml that openstacksdk would read from `cwd` with this
/// environment and home directory, and reads its identity.
pub fn load(
    name: &str,
    env: impl IntoIterator<Item = (String, String)>,
    cwd: &Path,
    home: Option<&Path>,
) -> Result<CloudIdentity> {
    load_from(name, &SearchPath::new(env, cwd, home))
}

/// [`load`] with an explicit search path.
pub fn load_from(name: &str, search: &SearchPath) -> Result<CloudIdentity> {
    let mut skipped = Vec::new();
    let config = files::first_file(
        search.config_file.as_deref().map(|p| (p, "OS_CLIENT_CONFIG_FILE")),
        &search.candidates("clouds"),
        &mut skipped,
    )?;
    let secure = files::first_file(
        search.secure_file.as_deref().map(|p| (p, "OS_CLIENT_SECURE_FILE")),
        &search.candidates("secure"),
        &mut skipped,
    )?;
    let (mut root, origin) = match (&config, &secure) {
        (Some(c), Some(s)) => {
            let mut root = c.root.clone();
            files::merge(&mut root, &s.root);
            (root, format!("{} (with {})", c.path.display(), s.path.display()))
        }
        (Some(only), None) | (None, Some(only)) => (only.root.clone(), only.path.display().to_string()),
        (None, None) => {
            let mut looked: Vec<String> = search.config_file.iter().map(|p| p.display().to_string()).collect();
            looked.extend(search.dirs.iter().map(|d| d.join("clouds.yaml").display().to_string()));
            let skipped =
                if skipped.is_empty() { String::new() } else { format!("; unreadable: {}", skipped.join(", ")) };
            return Err(Error::config_value(
                format!("cloud '{name}'"),
                format!("no clouds.yaml found (looked for {}, also .yml and .json){skipped}", looked.join(", ")),
            ));
        }
    };
    let result = read_cloud(&root, name, &origin);
    files::wipe(&mut root);
    result
}

/// Cloud `name` of a parsed clouds.yaml (secure file already merged).
fn read_cloud(root: &Value, name: &str, origin: &str) -> Result<CloudIdentity> {
    let clouds = root.as_mapping().and_then(|m| m.get("clouds")).and_then(Value::as_mapping);
    let Some(mut cloud) = clouds.and_then(|c| c.get(name)).cloned() else {
        let known: Vec<&str> = clouds.map(|c| c.keys().filter_map(Value::as_str).collect()).unwrap_or_default();
        let has = if clouds.is_none() {
            "it has no `clouds:` mapping".to_string()
        } else if known.is_empty() {
            "it defines no cloud".to_string()
        } else {
            format!("it defines {}", known.join(", "))
        };
        return Err(Error::config_value(format!("{origin}: clouds.{name}"), format!("no such cloud; {has}")));
    };
    files::normalize(&mut cloud);
    let result = Reader { origin, name, top: &cloud }.identity();
    files::wipe(&mut cloud);
    result
}

/// Reads one cloud's settings, naming `origin: clouds.<name>.<key>` in every error.
struct Reader<'a> {
    origin: &'a str,
    name: &'a str,
    top: &'a Value,
}

impl Reader<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> Error {
        Error::config_value(format!("{}: clouds.{}.{key}", self.origin, self.name), message)
    }

    fn top_map(&self) -> Result<&Mapping> {
        self.top.as_mapping().ok_or_else(|| self.err("", "must be a mapping of settings"))
    }

    fn auth_map(&self) -> Result<Option<&Mapping>> {
        match self.top_map()?.get("auth") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_mapping().map(Some).ok_or_else(|| self.err("auth", "must be a mapping")),
        }
    }

    /// A single value as text (tags are gone: `files::normalize` dropped them): strings as written, numbers as PyYAML would print them. Empty
    /// and null values are unset, as openstacksdk treats them. `Err` names the key.
    fn text(&self, map: &Mapping, key: &str, shown: &str) -> Result<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(_)) => Err(self.err(shown, "must be text, not true or false (quote it)")),
            Some(_) => Err(self.err(shown, "must be a single value, not a list or mapping")),
        }
    }

    /// An auth plugin option as keystoneauth finds it through openstacksdk: under `auth:` first,
    /// then at the cloud's top level; each name in `names` in turn (deprecated spellings last).
    fn auth_opt(&self, names: &[&str]) -> Result<Option<String>> {
        if let Some(auth) = self.auth_map()? {
            for n in names {
                if let Some(v) = self.text(auth, n, &format!("auth.{n}"))? {
                    return Ok(Some(v));
                }
            }
        }
        for n in names {
            if let Some(v) = self.text(self.top_map()?, n, n)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The project and domain options, which openstacksdk's `_fix_backwards_auth` takes from the
    /// top level first (they may carry overrides), then from `auth:`.
    fn scope_opt(&self, names: &[&str]) -> Result<Option<String>> {
        for n in names {
            if let Some(v) = self.text(self.top_map()?, n, n)? {
                return Ok(Some(v));
            }
            if let Some(auth) = self.auth_map()? {
                if let Some(v) = self.text(auth, n, &format!("auth.{n}"))? {
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }

    fn secret(&self, names: &[&str]) -> Result<Option<Sensitive>> {
        Ok(self.auth_opt(names)?.map(Sensitive::new))
    }

    fn identity(&self) -> Result<CloudIdentity> {
        let top = self.top_map()?;
        if let Some(profile) = self.text(top, "profile", "profile")?.or(self.text(top, "cloud", "cloud")?) {
            return Err(self.err(
                "profile",
                format!("vendor profiles ('{profile}') are not read by keymigrate; write the cloud's auth_url and region in full"),
            ));
        }
        // `auth_type` wins over the older `auth_plugin`; openstacksdk's default is `password`.
        let auth_type = match self.text(top, "auth_type", "auth_type")? {
            Some(t) => t,
            // Written but empty, openstacksdk reads it as the `none` plugin.
            None if top.contains_key("auth_type") => "none".to_string(),
            None => self.text(top, "auth_plugin", "auth_plugin")?.unwrap_or_else(|| "password".to_string()),
        };
        let auth_url = self.auth_opt(&["auth_url"])?.ok_or_else(|| self.err("auth.auth_url", "is not set"))?;
        if !http::is_http_url(&auth_url) {
            return Err(self.err("auth.auth_url", "must be an http:// or https:// URL"));
        }
        let method = match auth_type.as_str() {
            "password" | "v3password" => self.password()?,
            "v3applicationcredential" => self.application_credential()?,
            other => {
                return Err(self.err("auth_type", format!("'{other}' is not supported; use {AUTH_TYPES}")));
            }
        };
        Ok(CloudIdentity {
            name: self.name.to_string(),
            origin: self.origin.to_string(),
            auth_url,
            method,
            region_name: self.region()?,
            interface: self.interface()?,
            tls: self.tls()?,
        })
    }

    /// `user_domain_*` (or `project_domain_*`), else `domain_*` when the cloud names a
    /// project (openstacksdk's `_handle_domain_id`), else keystoneauth's `default_domain_*`.
    fn domain(&self, which: &str, project_scoped: bool) -> Result<Option<Domain>> {
        let id = self.scope_opt(&[&format!("{which}_domain_id")])?;
        let name = self.scope_opt(&[&format!("{which}_domain_name")])?;
        let (shared_id, shared_name) = if project_scoped {
            (self.scope_opt(&["domain_id"])?, self.scope_opt(&["domain_name"])?)
        } else {
            (None, None)
        };
        let default_id = self.auth_opt(&["default_domain_id"])?;
        let default_name = self.auth_opt(&["default_domain_name"])?;
        Ok(id
            .map(Domain::Id)
            .or(name.map(Domain::Name))
            .or(shared_id.map(Domain::Id))
            .or(shared_name.map(Domain::Name))
            .or(default_id.map(Domain::Id))
            .or(default_name.map(Domain::Name)))
    }

    /// The user, by ID or by name in its domain; `None` when neither is set.
    fn user(&self, project_scoped: bool) -> Result<Option<Ident>> {
        if let Some(id) = self.auth_opt(&["user_id"])? {
            return Ok(Some(Ident::Id(id)));
        }
        let Some(name) = self.auth_opt(&["username", "user_name"])? else { return Ok(None) };
        let domain = self
            .domain("user", project_scoped)?
            .ok_or_else(|| self.err("auth.username", "needs user_domain_name or user_domain_id (or domain_name)"))?;
        Ok(Some(Ident::Name { name, domain }))
    }

    fn project(&self) -> Result<Option<Ident>> {
        if let Some(id) = self.scope_opt(&["project_id", "tenant_id"])? {
            return Ok(Some(Ident::Id(id)));
        }
        let Some(name) = self.scope_opt(&["project_name", "tenant_name"])? else { return Ok(None) };
        let domain = self.domain("project", true)?.ok_or_else(|| {
            self.err("auth.project_name", "needs project_domain_name or project_domain_id (or domain_name)")
        })?;
        Ok(Some(Ident::Name { name, domain }))
    }

    fn password(&self) -> Result<AuthMethod> {
        let project = self.project()?;
        if project.is_none() {
            for key in ["domain_id", "domain_name", "system_scope"] {
                if self.scope_opt(&[key])?.is_some() || self.auth_opt(&[key])?.is_some() {
                    return Err(self.err(
                        &format!("auth.{key}"),
                        "asks for a domain or system scope; keymigrate needs a project: set project_name or project_id",
                    ));
                }
            }
        }
        let user = self
            .user(project.is_some())?
            .ok_or_else(|| self.err("auth.username", "is not set (nor auth.user_id)"))?;
        let password = self.secret(&["password"])?.ok_or_else(|| self.err("auth.password", "is not set"))?;
        Ok(AuthMethod::Password { user, password, project })
    }

    fn application_credential(&self) -> Result<AuthMethod> {
        let secret = self
            .secret(&["application_credential_secret"])?
            .ok_or_else(|| self.err("auth.application_credential_secret", "is not set"))?;
        if let Some(id) = self.auth_opt(&["application_credential_id"])? {
            return Ok(AuthMethod::ApplicationCredential { credential: Ident::Id(id), user: None, secret });
        }
        let Some(name) = self.auth_opt(&["application_credential_name"])? else {
            return Err(self.err(
                "auth.application_credential_id",
                "is not set (nor auth.application_credential_name)",
            ));
        };
        // A credential by name is the user's: Keystone needs the user to find it.
        let user = self.user(false)?.ok_or_else(|| {
            self.err("auth.application_credential_name", "needs auth.user_id, or auth.username and user_domain_name")
        })?;
        Ok(AuthMethod::ApplicationCredential {
            credential: Ident::Name { name, domain: Domain::Id(String::new()) },
            user: Some(user),
            secret,
        })
    }

    /// `regions` wins over `region_name`; of a list the first is the default, as in
    /// openstacksdk. A comma-separated `region_name` is such a list too.
    fn region(&self) -> Result<Option<String>> {
        let top = self.top_map()?;
        let first = match top.get("regions") {
            None | Some(Value::Null) => None,
            Some(Value::Sequence(list)) => match list.first() {
                None => None,
                Some(Value::Mapping(entry)) => {
                    if entry.get("values").and_then(Value::as_mapping).is_some_and(|v| !v.is_empty()) {
                        return Err(self.err("regions", "per-region values are not read by keymigrate"));
                    }
                    Some(self.text(entry, "name", "regions[0].name")?.ok_or_else(|| self.err("regions[0].name", "is not set"))?)
                }
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(self.err("regions", "must list region names")),
            },
            Some(_) => return Err(self.err("regions", "must be a list")),
        };
        if first.is_some() {
            return Ok(first);
        }
        Ok(match top.get("region_name") {
            Some(Value::Sequence(list)) => list.first().and_then(Value::as_str).map(str::to_string),
            _ => self
                .text(top, "region_name", "region_name")?
                .and_then(|r| r.split(',').map(str::trim).find(|s| !s.is_empty()).map(str::to_string)),
        })
    }

    fn interface(&self) -> Result<String> {
        let top = self.top_map()?;
        let (key, value) = match self.text(top, "interface", "interface")? {
            Some(v) => ("interface", v),
            None => ("endpoint_type", self.text(top, "endpoint_type", "endpoint_type")?.unwrap_or_else(|| "public".into())),
        };
        match value.trim_end_matches("URL") {
            i @ ("public" | "internal" | "admin") => Ok(i.to_string()),
            _ => Err(self.err(key, format!("'{value}' is not an interface; use public, internal or admin"))),
        }
    }

    fn tls(&self) -> Result<CloudTls> {
        let top = self.top_map()?;
        let path = |key: &str| -> Result<Option<PathBuf>> { Ok(self.text(top, key, key)?.map(PathBuf::from)) };
        // openstacksdk's get_boolean for `insecure`: only true is true. PyYAML (YAML 1.1) also
        // reads an unquoted yes or on as true, where this parser (YAML 1.2) sees text.
        let insecure = match top.get("insecure") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => ["true", "yes", "on"].iter().any(|t| s.eq_ignore_ascii_case(t)),
            _ => false,
        };
        // `verify` is true, false, or a CA file (handed to requests as its `verify`).
        let (verify, verify_path) = match top.get("verify") {
            None | Some(Value::Null) => (true, None),
            Some(Value::Bool(b)) => (*b, None),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => (true, None),
                "false" | "no" | "off" => (false, None),
                "" => (true, None),
                _ => (true, Some(PathBuf::from(s))),
            },
            Some(_) => return Err(self.err("verify", "must be true, false or the path of a CA file")),
        };
        let insecure = insecure || !verify;
        let cacert = path("cacert")?;
        if insecure && cacert.is_some() {
            log::warn!(
                "{}: cloud {} sets cacert but also turns verification off: the server's certificate will not be verified",
                self.origin,
                self.name
            );
        }
        Ok(CloudTls {
            ca_file: if insecure { None } else { cacert.or(verify_path) },
            insecure,
            client_cert: path("cert")?,
            client_key: path("key")?,
        })
    }
}

impl CloudIdentity {
    /// Where this identity came from, for messages: `cloud 'admin' in /etc/openstack/clouds.yaml`.
    pub fn describe(&self) -> String {
        format!("cloud '{}' in {}", self.name, self.origin)
    }

    /// The settings to authenticate with as the cloud says: the project scope it names (or an
    /// unscoped token when it names none; an application credential is always scoped to its
    /// own project), its TLS options, and `timeout` for every request.
    pub fn keystone_settings(&self, timeout: Duration) -> Result<KeystoneSettings> {
        let option = |key: &str| format!("{}: clouds.{}.{key}", self.origin, self.name);
        // openstacksdk's `cert`, with the key in `key` or after the certificate
        let client_cert = match (&self.tls.client_cert, &self.tls.client_key) {
            (Some(cert), key) => Some(http::ClientCertFiles {
                cert: cert.clone(),
                key: key.clone().unwrap_or_else(|| cert.clone()),
                cert_option: option("cert"),
                key_option: option(if key.is_some() { "key" } else { "cert" }),
            }),
            (None, Some(_)) => {
                return Err(Error::config_value(option("key"), "is set without cert, the certificate it belongs to"))
            }
            (None, None) => None,
        };
        Ok(KeystoneSettings {
            auth_url: keystone::v3_url(&self.auth_url),
            method: self.method.clone(),
            tls: Tls {
                ca_file: self.tls.ca_file.clone(),
                insecure: self.tls.insecure,
                ca_option: format!("{}: clouds.{}.cacert", self.origin, self.name),
                insecure_option: format!("{}: clouds.{} (insecure or verify: false)", self.origin, self.name),
                client_cert,
            },
            timeout,
        })
    }

    /// The same identity with a token scoped to `project_id` instead: how it acts in a project
    /// other than its own. Only a password identity can: an application credential's tokens
    /// are always scoped to the project it was created in.
    pub fn keystone_settings_in_project(&self, project_id: &str, timeout: Duration) -> Result<KeystoneSettings> {
        self.keystone_settings(timeout)?.in_project(project_id).ok_or_else(|| {
            Error::config_value(
                format!("{}: clouds.{}.auth_type", self.origin, self.name),
                format!("an application credential acts only in its own project, not in project {project_id}; use a password identity"),
            )
        })
    }
}
