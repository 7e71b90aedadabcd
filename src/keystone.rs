//! Keystone v3: a token for Cinder's service identity (`[keystone_authtoken]`), renewed before it
//! expires and once when a service answers 401, and the endpoints of its catalog (Barbican's
//! `key-manager`, Glance's `image`).
//!
//! keymigrate authenticates as Cinder's own migrator does, so that Cinder can later delete these
//! secrets with the same identity (`volume_utils.delete_encryption_key` retries with it).

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::conf::{self, Conf, Opt};
use crate::error::{Error, Result};
use crate::http::{self, Body, ClientCertFiles, Client, GaveUp, Response, Tls};
use crate::secret::{self, Sensitive};

/// A user or project, by ID or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Id(String),
    Name { name: String, domain: Domain },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    Id(String),
    Name(String),
}

#[derive(Debug, Clone)]
pub enum AuthMethod {
    Password { user: Ident, password: Sensitive, project: Option<Ident> },
    ApplicationCredential { credential: Ident, user: Option<Ident>, secret: Sensitive },
}

#[derive(Debug, Clone)]
pub struct KeystoneSettings {
    /// The identity v3 URL (`…/v3`).
    pub auth_url: String,
    pub method: AuthMethod,
    pub tls: Tls,
    pub timeout: Duration,
}

impl KeystoneSettings {
    /// The same identity authenticating with a token scoped to `project` (by ID): how it acts
    /// in a project other than its own. `None` for an application credential, whose tokens are
    /// always scoped to the project it was created in.
    pub fn in_project(&self, project: &str) -> Option<KeystoneSettings> {
        match &self.method {
            AuthMethod::Password { user, password, .. } => Some(KeystoneSettings {
                method: AuthMethod::Password {
                    user: user.clone(),
                    password: password.clone(),
                    project: Some(Ident::Id(project.to_string())),
                },
                ..self.clone()
            }),
            AuthMethod::ApplicationCredential { .. } => None,
        }
    }

    /// Reads `[keystone_authtoken]` (or the group its `auth_section` names) the way
    /// keystoneauth's `load_auth_from_conf_options` does, for the password and application
    /// credential plugins.
    pub fn from_conf(conf: &Conf) -> Result<KeystoneSettings> {
        use conf::keystone as k;
        let section = conf.get(&k::AUTH_SECTION)?.map(|v| v.value.expose().to_string()).filter(|s| !s.is_empty());
        let group = section.as_deref().unwrap_or("keystone_authtoken");
        let get_secret = |opt: &Opt| -> Result<Option<Sensitive>> {
            let v = if section.is_some() { conf.get_from(group, opt)? } else { conf.get(opt)? };
            Ok(v.map(|v| v.value).filter(|s| !s.is_empty()))
        };
        let get = |opt: &Opt| -> Result<Option<String>> { Ok(get_secret(opt)?.map(|v| v.expose().to_string())) };
        let name = |opt: &Opt| format!("[{group}] {}", opt.name);
        let auth_type = get(&k::AUTH_TYPE)?.ok_or_else(|| {
            Error::config_value(
                name(&k::AUTH_TYPE),
                "is not set; keymigrate authenticates like Cinder's key migrator, with auth_type = password or v3applicationcredential",
            )
        })?;
        let auth_url = get(&k::AUTH_URL)?.ok_or_else(|| Error::config_value(name(&k::AUTH_URL), "is not set"))?;
        let auth_url = v3_url(&auth_url);
        let default_domain = || -> Result<Option<Domain>> {
            Ok(get(&k::DEFAULT_DOMAIN_ID)?.map(Domain::Id).or(get(&k::DEFAULT_DOMAIN_NAME)?.map(Domain::Name)))
        };
        let domain = |id: &Opt, dname: &Opt| -> Result<Option<Domain>> {
            Ok(match (get(id)?, get(dname)?) {
                (Some(id), _) => Some(Domain::Id(id)),
                (None, Some(n)) => Some(Domain::Name(n)),
                (None, None) => default_domain()?,
            })
        };
        let user = |required: bool| -> Result<Option<Ident>> {
            if let Some(id) = get(&k::USER_ID)? {
                return Ok(Some(Ident::Id(id)));
            }
            match get(&k::USERNAME)? {
                Some(n) => {
                    let domain = domain(&k::USER_DOMAIN_ID, &k::USER_DOMAIN_NAME)?.ok_or_else(|| {
                        Error::config_value(name(&k::USERNAME), "needs user_domain_name or user_domain_id")
                    })?;
                    Ok(Some(Ident::Name { name: n, domain }))
                }
                None if required => Err(Error::config_value(name(&k::USERNAME), "is not set (nor user_id)")),
                None => Ok(None),
            }
        };
        let method = match auth_type.as_str() {
            "password" | "v3password" => {
                let user = user(true)?.ok_or_else(|| Error::config_value(name(&k::USERNAME), "is not set"))?;
                let password =
                    get_secret(&k::PASSWORD)?.ok_or_else(|| Error::config_value(name(&k::PASSWORD), "is not set"))?;
                let project = match (get(&k::PROJECT_ID)?, get(&k::PROJECT_NAME)?) {
                    (Some(id), _) => Some(Ident::Id(id)),
                    (None, Some(n)) => {
                        let domain = domain(&k::PROJECT_DOMAIN_ID, &k::PROJECT_DOMAIN_NAME)?.ok_or_else(|| {
                            Error::config_value(name(&k::PROJECT_NAME), "needs project_domain_name or project_domain_id")
                        })?;
                        Some(Ident::Name { name: n, domain })
                    }
                    (None, None) => None,
                };
                AuthMethod::Password { user, password, project }
            }
            "v3applicationcredential" | "applicationcredential" | "application_credential" => {
                let secret = get_secret(&k::APP_CRED_SECRET)?
                    .ok_or_else(|| Error::config_value(name(&k::APP_CRED_SECRET), "is not set"))?;
                let (credential, user) = match (get(&k::APP_CRED_ID)?, get(&k::APP_CRED_NAME)?) {
                    (Some(id), _) => (Ident::Id(id), None),
                    (None, Some(n)) => {
                        let user = user(true)?;
                        let credential = Ident::Name { name: n, domain: Domain::Id(String::new()) };
                        (credential, user)
                    }
                    (None, None) => {
                        return Err(Error::config_value(
                            name(&k::APP_CRED_ID),
                            "is not set (nor application_credential_name)",
                        ))
                    }
                };
                AuthMethod::ApplicationCredential { credential, user, secret }
            }
            other => {
                return Err(Error::config_value(
                    name(&k::AUTH_TYPE),
                    format!("'{other}' is not supported; use password, v3password or v3applicationcredential"),
                ))
            }
        };
        let tls = Tls {
            ca_file: get(&k::CAFILE)?.map(Into::into),
            ca_option: name(&k::CAFILE),
            insecure_option: format!("{} = true", name(&k::INSECURE)),
            // keystoneauth's certfile, with the key in keyfile or after the certificate
            client_cert: match (get(&k::CERTFILE)?, get(&k::KEYFILE)?) {
                (Some(cert), key) => Some(ClientCertFiles {
                    key: key.clone().unwrap_or_else(|| cert.clone()).into(),
                    cert: cert.into(),
                    cert_option: name(&k::CERTFILE),
                    key_option: if key.is_some() { name(&k::KEYFILE) } else { name(&k::CERTFILE) },
                }),
                (None, Some(_)) => {
                    return Err(Error::config_value(name(&k::KEYFILE), "is set without certfile, the certificate it belongs to"))
                }
                (None, None) => None,
            },
            insecure: if section.is_some() {
                conf.get_from(group, &k::INSECURE)?.is_some_and(|v| conf::parse_bool(v.value.expose()) == Some(true))
            } else {
                conf.get_bool(&k::INSECURE)?
            },
        };
        let timeout = match get(&k::TIMEOUT)? {
            Some(t) => Duration::from_secs(
                t.parse::<u64>().map_err(|_| Error::config_value(name(&k::TIMEOUT), "must be a whole number of seconds"))?,
            ),
            None => Duration::from_secs(30),
        };
        Ok(KeystoneSettings { auth_url, method, tls, timeout })
    }
}

/// Appends `/v3` to a versionless identity URL.
pub fn v3_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/v3") || trimmed.contains("/v3/") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v3")
    }
}

/// One endpoint of the service catalog.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Endpoint {
    pub interface: String,
    pub url: String,
    #[serde(default)]
    pub region_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

impl Endpoint {
    /// The endpoint's region: `region_id`, else the older `region`.
    pub fn region(&self) -> Option<&str> {
        self.region_id.as_deref().or(self.region.as_deref())
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct CatalogEntry {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

struct Token {
    value: Sensitive,
    expires_at: Option<DateTime<Utc>>,
    catalog: Vec<CatalogEntry>,
}

/// Renew a token this long before Keystone says it expires.
const RENEW_BEFORE: chrono::TimeDelta = chrono::TimeDelta::seconds(300);

pub struct Keystone {
    settings: KeystoneSettings,
    http: Client,
    token: Mutex<Option<Token>>,
}

impl Keystone {
    pub fn new(settings: KeystoneSettings, retry: http::RetryPolicy) -> Result<Keystone> {
        let http = Client::new(&settings.tls, settings.timeout, retry)
            .map_err(|e| Error::config_value(e.option, e.message))?;
        Ok(Keystone { settings, http, token: Mutex::new(None) })
    }

    /// What this identity authenticates with: another scope of the same identity is a
    /// [`Keystone`] built from a copy (`grants::Grants::scoped`).
    pub fn settings(&self) -> &KeystoneSettings {
        &self.settings
    }

    /// The HTTP client (and its retry policy) Keystone's other APIs are called with.
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// A valid token, fetching a new one when there is none or it is about to expire.
    pub fn token(&self) -> Result<Sensitive> {
        let mut guard = self.token.lock().map_err(|_| Error::Internal("token lock poisoned".into()))?;
        let fresh = guard
            .as_ref()
            .is_some_and(|t| t.expires_at.is_none_or(|e| e - RENEW_BEFORE > Utc::now()));
        if !fresh {
            *guard = Some(self.authenticate()?);
        }
        guard.as_ref().map(|t| t.value.clone()).ok_or_else(|| Error::Internal("no token".into()))
    }

    /// Forgets `stale` after a 401, so the next [`Keystone::token`] authenticates again.
    pub fn invalidate(&self, stale: &Sensitive) {
        if let Ok(mut guard) = self.token.lock() {
            if guard.as_ref().is_some_and(|t| &t.value == stale) {
                *guard = None;
            }
        }
    }

    /// One request to a service that takes this identity's tokens (Barbican, Keystone's own
    /// APIs), sent through `client` with its retries (see [`Client::send_with_retries`]) and with
    /// `X-Auth-Token`; a 401 makes it authenticate again once and resend. `subject` adds
    /// `X-Subject-Token` (Keystone's token API). `service` names the service in the log line.
    pub fn send_authorized(
        &self,
        client: &Client,
        service: &str,
        request: Request<'_>,
        subject: Subject<'_>,
        maybe_sent: &mut bool,
    ) -> std::result::Result<Response, AuthorizedError> {
        let mut reauthenticated = false;
        loop {
            let token = self.token().map_err(AuthorizedError::Token)?;
            let mut headers = vec![("X-Auth-Token", token.expose())];
            match subject {
                Subject::None => {}
                Subject::Own => headers.push(("X-Subject-Token", token.expose())),
                Subject::Other(t) => headers.push(("X-Subject-Token", t.expose())),
            }
            headers.extend_from_slice(request.headers);
            let r = client
                .send_with_retries(request.method, request.url, &headers, request.body, maybe_sent)
                .map_err(AuthorizedError::GaveUp)?;
            match r.status {
                401 if !reauthenticated => {
                    log::info!("{service} answered 401; authenticating again");
                    self.invalidate(&token);
                    reauthenticated = true;
                }
                401 => return Err(AuthorizedError::Refused(r)),
                _ => return Ok(r),
            }
        }
    }

    /// The catalog's URL for `service_type` at `interface`, in `region` when one is given.
    /// `options`: what the operator sets instead, named in the error when there is none (each
    /// service is pointed at by options of its own).
    pub fn endpoint(&self, service_type: &str, interface: &str, region: Option<&str>, options: &str) -> Result<String> {
        let found = self.catalog_endpoints(service_type, interface)?;
        pick_endpoint_of(&found, region).ok_or_else(|| {
            let region = region.map(|r| format!(" in region {r}")).unwrap_or_default();
            Error::Service(format!("Keystone's catalog has no '{service_type}' endpoint for interface {interface}{region}; {options}"))
        })
    }

    /// Every endpoint the catalog lists for `service_type` at `interface` (`public` or
    /// `publicURL`, …), in the catalog's order, whatever its region.
    pub fn catalog_endpoints(&self, service_type: &str, interface: &str) -> Result<Vec<Endpoint>> {
        self.token()?;
        let guard = self.token.lock().map_err(|_| Error::Internal("token lock poisoned".into()))?;
        let catalog = guard.as_ref().map(|t| t.catalog.as_slice()).unwrap_or_default();
        Ok(endpoints_of(catalog, service_type, interface).into_iter().cloned().collect())
    }

    fn authenticate(&self) -> Result<Token> {
        let url = format!("{}/auth/tokens", self.settings.auth_url);
        let where_ = http::redact_url(&self.settings.auth_url);
        let body = auth_body(&self.settings.method)
            .map_err(|e| Error::Internal(format!("serializing the Keystone request: {e}")))?;
        let mut response = match self.http.send_with_retries("POST", &url, &[], Body::Json(&body), &mut false) {
            Ok(r) => r,
            // Still 5xx after every retry: reported below as Keystone's refusal, with its text.
            Err(GaveUp { last: Some(r), .. }) => r,
            Err(gave_up) => {
                return Err(Error::Service(format!("cannot reach Keystone at {where_}: {}", gave_up.message())))
            }
        };
        drop(body);
        match response.status {
            201 | 200 => {}
            401 => {
                return Err(Error::Credentials(format!(
                    "Keystone at {where_} rejected the credentials in [keystone_authtoken] ({})",
                    response.error_text()
                )))
            }
            _ => {
                return Err(Error::Service(format!("Keystone at {where_} refused to authenticate: {}", response.error_text())))
            }
        }
        let value = response
            .subject_token
            .take()
            .ok_or_else(|| Error::Service(format!("Keystone at {where_} answered without an X-Subject-Token header")))?;
        #[derive(serde::Deserialize)]
        struct Answer {
            token: TokenBody,
        }
        #[derive(serde::Deserialize)]
        struct TokenBody {
            expires_at: Option<String>,
            #[serde(default)]
            catalog: Vec<CatalogEntry>,
        }
        let parsed: Answer = response.json().map_err(|e| Error::Service(format!("Keystone at {where_}: {e}")))?;
        let expires_at = parsed
            .token
            .expires_at
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        log::debug!("authenticated to Keystone at {where_}");
        Ok(Token { value, expires_at, catalog: parsed.token.catalog })
    }
}

/// One request for [`Keystone::send_authorized`]; its headers come after the token's.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Body<'a>,
}

/// Whose token a request to Keystone's token API is about (`X-Subject-Token`).
#[derive(Clone, Copy)]
pub enum Subject<'a> {
    None,
    /// The identity's own token, the one the request is sent with.
    Own,
    Other(&'a Sensitive),
}

/// Why [`Keystone::send_authorized`] has no answer for its caller.
pub enum AuthorizedError {
    /// No token could be had: Keystone's own error.
    Token(Error),
    /// Every attempt failed on the connection, timed out or was answered 5xx.
    GaveUp(GaveUp),
    /// 401 again, with a token Keystone had just issued.
    Refused(Response),
}

/// The endpoints of the type with the interface (`public`, `internal`, `admin`; `publicURL`
/// spellings too), in the catalog's order.
pub fn endpoints_of<'a>(catalog: &'a [CatalogEntry], service_type: &str, interface: &str) -> Vec<&'a Endpoint> {
    let interface = interface.trim_end_matches("URL");
    catalog
        .iter()
        .filter(|s| s.service_type == service_type)
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.interface == interface)
        .collect()
}

/// keystoneauth's choice among them: the first, in `region` when one is asked for.
fn pick_endpoint_of(endpoints: &[Endpoint], region: Option<&str>) -> Option<String> {
    endpoints.iter().find(|e| region.is_none_or(|r| e.region() == Some(r))).map(|e| e.url.clone())
}

/// keystoneauth's choice: the first endpoint of the type with the interface and, when asked,
/// the region.
pub fn pick_endpoint(catalog: &[CatalogEntry], service_type: &str, interface: &str, region: Option<&str>) -> Option<String> {
    let found: Vec<Endpoint> = endpoints_of(catalog, service_type, interface).into_iter().cloned().collect();
    pick_endpoint_of(&found, region)
}

/// `{"id": …}` or `{"name": …, "domain": {…}}`, as Keystone's auth body writes a user or project.
impl Serialize for Ident {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            Ident::Id(id) => map.serialize_entry("id", id)?,
            Ident::Name { name, domain } => {
                map.serialize_entry("name", name)?;
                map.serialize_entry("domain", domain)?;
            }
        }
        map.end()
    }
}

impl Serialize for Domain {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Domain::Id(id) => map.serialize_entry("id", id)?,
            Domain::Name(n) => map.serialize_entry("name", n)?,
        }
        map.end()
    }
}

/// `POST /v3/auth/tokens`, borrowing the password or secret from the settings.
#[derive(Serialize)]
struct AuthRequest<'a> {
    auth: Auth<'a>,
}

#[derive(Serialize)]
struct Auth<'a> {
    identity: Identity<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<ProjectScope<'a>>,
}

#[derive(Serialize)]
struct Identity<'a> {
    methods: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<PasswordMethod<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application_credential: Option<AppCredential<'a>>,
}

#[derive(Serialize)]
struct PasswordMethod<'a> {
    user: UserWithPassword<'a>,
}

#[derive(Serialize)]
struct UserWithPassword<'a> {
    #[serde(flatten)]
    user: &'a Ident,
    password: &'a str,
}

#[derive(Serialize)]
struct ProjectScope<'a> {
    project: &'a Ident,
}

/// An application credential by ID, or by name (with its user); never a domain of its own.
#[derive(Serialize)]
struct AppCredential<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a Ident>,
}

/// The `POST /v3/auth/tokens` body. It holds the password: it is serialized straight into a
/// buffer wiped on drop, sent, never logged.
fn auth_body(method: &AuthMethod) -> std::result::Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let auth = match method {
        AuthMethod::Password { user, password, project } => Auth {
            identity: Identity {
                methods: ["password"],
                password: Some(PasswordMethod { user: UserWithPassword { user, password: password.expose() } }),
                application_credential: None,
            },
            scope: project.as_ref().map(|project| ProjectScope { project }),
        },
        AuthMethod::ApplicationCredential { credential, user, secret } => {
            let (id, name) = match credential {
                Ident::Id(id) => (Some(id.as_str()), None),
                Ident::Name { name, .. } => (None, Some(name.as_str())),
            };
            Auth {
                identity: Identity {
                    methods: ["application_credential"],
                    password: None,
                    application_credential: Some(AppCredential {
                        id,
                        name,
                        secret: secret.expose(),
                        user: user.as_ref(),
                    }),
                },
                scope: None,
            }
        }
    };
    secret::json_body(&AuthRequest { auth })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The auth body as sent, parsed back for the assertions.
    fn body_json(method: &AuthMethod) -> serde_json::Value {
        serde_json::from_slice(&auth_body(method).expect("serialize")).expect("JSON")
    }

    fn settings(text: &str) -> Result<KeystoneSettings> {
        KeystoneSettings::from_conf(&Conf::from_text("c.conf", text)?)
    }

    #[test]
    fn password_auth_by_names() {
        let s = settings(
            "[keystone_authtoken]\nauth_type = password\nauth_url = http://k:5000\nusername = cinder\npassword = p$$w\n\
             user_domain_name = Default\nproject_name = service\nproject_domain_name = Default\n",
        )
        .expect("settings");
        assert_eq!(s.auth_url, "http://k:5000/v3");
        let body = body_json(&s.method);
        assert_eq!(body["auth"]["identity"]["password"]["user"]["password"], "p$w");
        assert_eq!(body["auth"]["identity"]["password"]["user"]["domain"]["name"], "Default");
        assert_eq!(body["auth"]["scope"]["project"]["name"], "service");
        assert!(!format!("{:?}", s.method).contains("p$w"));
    }

    #[test]
    fn password_auth_by_ids_and_default_domain() {
        let s = settings(
            "[keystone_authtoken]\nauth_type = v3password\nauth_url = http://k/identity/v3/\nuser_id = u1\npassword = x\nproject_id = p1\n",
        )
        .expect("settings");
        assert_eq!(s.auth_url, "http://k/identity/v3");
        let body = body_json(&s.method);
        assert_eq!(body["auth"]["identity"]["password"]["user"]["id"], "u1");
        assert_eq!(body["auth"]["scope"]["project"]["id"], "p1");
        let s = settings(
            "[keystone_authtoken]\nauth_type = password\nauth_url = http://k\nusername = c\npassword = x\ndefault_domain_id = default\n",
        )
        .expect("settings");
        assert_eq!(body_json(&s.method)["auth"]["identity"]["password"]["user"]["domain"]["id"], "default");
    }

    #[test]
    fn application_credentials_carry_no_scope() {
        let s = settings(
            "[keystone_authtoken]\nauth_type = v3applicationcredential\nauth_url = http://k/v3\napplication_credential_id = ac\n\
             application_credential_secret = shh\nproject_name = ignored\n",
        )
        .expect("settings");
        let body = body_json(&s.method);
        assert_eq!(body["auth"]["identity"]["application_credential"]["id"], "ac");
        assert!(body["auth"].get("scope").is_none());
    }

    #[test]
    fn application_credentials_by_name_carry_their_user() {
        let s = settings(
            "[keystone_authtoken]\nauth_type = v3applicationcredential\nauth_url = http://k/v3\n\
             application_credential_name = ac\napplication_credential_secret = shh\nusername = cinder\n\
             user_domain_name = Default\n",
        )
        .expect("settings");
        let body = body_json(&s.method);
        let cred = &body["auth"]["identity"]["application_credential"];
        assert_eq!(body["auth"]["identity"]["methods"], json!(["application_credential"]));
        assert_eq!(cred, &json!({"name": "ac", "secret": "shh", "user": {"name": "cinder", "domain": {"name": "Default"}}}));
        assert!(!format!("{:?}", s.method).contains("shh"));
    }

    #[test]
    fn auth_section_redirects() {
        let s = settings("[keystone_authtoken]\nauth_section = svc\n[svc]\nauth_type = password\nauth_url = http://k\nuser_id = u\npassword = x\n")
            .expect("settings");
        assert!(matches!(s.method, AuthMethod::Password { user: Ident::Id(ref u), .. } if u == "u"));
    }

    #[test]
    fn missing_or_unsupported_settings_are_clear_errors() {
        let e = settings("[keystone_authtoken]\nauth_url = http://k\n").expect_err("no type").to_string();
        assert!(e.contains("[keystone_authtoken] auth_type"), "{e}");
        let e = settings("[keystone_authtoken]\nauth_type = token\nauth_url = http://k\n").expect_err("token").to_string();
        assert!(e.contains("not supported"), "{e}");
        let e = settings("[keystone_authtoken]\nauth_type = password\nauth_url = http://k\nusername = c\npassword = x\n")
            .expect_err("no domain")
            .to_string();
        assert!(e.contains("user_domain_name"), "{e}");
    }

    #[test]
    fn endpoint_selection_by_interface_and_region() {
        let catalog: Vec<CatalogEntry> = serde_json::from_value(json!([
            {"type": "identity", "endpoints": [{"interface": "public", "url": "http://id", "region_id": "R1"}]},
            {"type": "key-manager", "endpoints": [
                {"interface": "public", "url": "http://pub1", "region_id": "R1"},
                {"interface": "internal", "url": "http://int1", "region_id": "R1"},
                {"interface": "public", "url": "http://pub2", "region_id": "R2"}]}
        ]))
        .expect("catalog");
        assert_eq!(pick_endpoint(&catalog, "key-manager", "public", None).as_deref(), Some("http://pub1"));
        assert_eq!(pick_endpoint(&catalog, "key-manager", "internalURL", None).as_deref(), Some("http://int1"));
        assert_eq!(pick_endpoint(&catalog, "key-manager", "public", Some("R2")).as_deref(), Some("http://pub2"));
        assert_eq!(pick_endpoint(&catalog, "key-manager", "admin", None), None);
        assert_eq!(pick_endpoint(&catalog, "key-manager", "internal", Some("R2")), None);
    }
}
