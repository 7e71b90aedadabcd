//! Barbican v1, as the key store: store a symmetric secret holding exact bytes, grant a user read
//! access, read the payload back, find secrets by name, delete. Every call carries a Keystone
//! token (renewed once on 401) and is retried with backoff on connection errors and 5xx, which a
//! busy Barbican answers under write contention ([`Client::send_with_retries`]). Answers are
//! read into typed structs: unknown fields are ignored, a missing one is an error naming it and
//! the URL.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::conditions::FixedKey;
use crate::conf::{self, Conf};
use crate::error::{Error, Result};
use crate::http::{self, Body, Client, Response, Tls};
use crate::keystone::{AuthorizedError, Keystone, Request, Subject};
use crate::secret;

#[derive(Debug, Clone)]
pub struct BarbicanSettings {
    /// `--barbican-endpoint` or `[barbican] barbican_endpoint`: used instead of the catalog.
    pub endpoint: Option<String>,
    pub endpoint_type: String,
    pub region: Option<String>,
    pub api_version: Option<String>,
    pub tls: Tls,
    pub timeout: Duration,
}

impl BarbicanSettings {
    pub fn from_conf(conf: &Conf, endpoint_flag: Option<&str>, timeout: Duration) -> Result<BarbicanSettings> {
        use conf::barbican as b;
        let text = |opt| -> Result<Option<String>> {
            Ok(conf.get(opt)?.map(|v| v.value.expose().trim().to_string()).filter(|s| !s.is_empty()))
        };
        let endpoint = match endpoint_flag {
            Some(e) => Some(e.to_string()),
            None => text(&b::ENDPOINT)?,
        };
        if let Some(e) = &endpoint {
            if !http::is_http_url(e) {
                return Err(Error::config_value("[barbican] barbican_endpoint", "must be an http:// or https:// URL"));
            }
        }
        let endpoint_type = text(&b::ENDPOINT_TYPE)?.unwrap_or_else(|| "public".into());
        if !["public", "internal", "admin"].contains(&endpoint_type.as_str()) {
            return Err(Error::config_value(
                "[barbican] barbican_endpoint_type",
                format!("'{endpoint_type}' is not one of public, internal, admin"),
            ));
        }
        let verify = conf.get_bool(&b::VERIFY_SSL)?;
        let tls = Tls {
            ca_file: text(&b::VERIFY_SSL_PATH)?.map(Into::into),
            insecure: !verify,
            ca_option: format!("[barbican] {}", b::VERIFY_SSL_PATH.name),
            insecure_option: format!("[barbican] {} = false", b::VERIFY_SSL.name),
            client_cert: None,
        };
        Ok(BarbicanSettings {
            endpoint,
            endpoint_type,
            region: text(&b::REGION_NAME)?,
            api_version: text(&b::API_VERSION)?,
            tls,
            timeout,
        })
    }
}

/// One page of a listing: (ID, name) of each secret, and how many match in all.
pub struct Listing {
    pub secrets: Vec<(String, String)>,
    pub total: Option<u64>,
}

/// A failed Barbican call, classified for the engine.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// Still failing after every retry: connection errors, timeouts, 5xx.
    Transient(String),
    /// 403: policy (or a quota, in words keymigrate does not know). Retrying will not help; the
    /// run stops.
    Forbidden(String),
    /// 403 because a quota of Barbican's is reached (its answer says so, as Barbican's
    /// `QuotaReached` does): nothing more can be created in that project until an operator
    /// raises the quota.
    Quota(String),
    /// Any other refusal, or an answer keymigrate cannot use.
    Rejected(String),
    /// Stop the run: Keystone rejected the credentials, or Barbican a freshly issued token.
    Fatal(String),
    /// Stop the run: Barbican cannot be spoken to at all, whatever the unit (its certificate is
    /// refused, or it does not speak TLS).
    Unusable(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Transient(m)
            | ApiError::Forbidden(m)
            | ApiError::Quota(m)
            | ApiError::Rejected(m)
            | ApiError::Fatal(m)
            | ApiError::Unusable(m) => f.write_str(m),
        }
    }
}

/// A failed store, and whether a secret may have been created anyway (a request that reached
/// Barbican but whose answer was lost).
pub struct StoreFailed {
    pub error: ApiError,
    pub maybe_created: bool,
}

/// The outcome of storing a secret.
pub struct Stored {
    pub id: String,
    /// An earlier attempt may have created a secret whose reference never arrived.
    pub maybe_orphaned: bool,
}

pub struct Barbican {
    http: Client,
    keystone: Arc<Keystone>,
    /// `…/v1`, without a trailing slash.
    base: String,
}

impl Barbican {
    /// Resolves the endpoint: explicit, else Keystone's catalog (`key-manager`, interface,
    /// region); `/v1` appended to a versionless URL.
    pub fn connect(settings: &BarbicanSettings, keystone: Arc<Keystone>, retry: http::RetryPolicy) -> Result<Barbican> {
        let http = Client::new(&settings.tls, settings.timeout, retry)
            .map_err(|e| Error::config_value(e.option, e.message))?;
        // Authenticate before anything else: bad credentials stop the run at once.
        keystone.token()?;
        let url = match &settings.endpoint {
            Some(e) => e.clone(),
            None => keystone.endpoint(
                "key-manager",
                &settings.endpoint_type,
                settings.region.as_deref(),
                "set [barbican] barbican_endpoint_type / barbican_region_name, or barbican_endpoint",
            )?,
        };
        let base = versioned(&url, settings.api_version.as_deref().unwrap_or("v1"));
        log::info!("Using Barbican at {}", http::redact_url(&base));
        Ok(Barbican { http, keystone, base })
    }

    /// The same Barbican (endpoint, TLS, retries) called with another identity's tokens: a
    /// token scoped to a row's project creates the secret in that project.
    pub fn as_identity(&self, keystone: Arc<Keystone>) -> Barbican {
        Barbican { http: self.http.clone(), keystone, base: self.base.clone() }
    }

    /// POST /v1/secrets: a symmetric AES secret holding exactly `key`, base64 on the wire, and
    /// its name confirmed by a request of its own ([`Barbican::confirm`]).
    pub fn store(&self, name: &str, key: &FixedKey) -> Result<Stored, StoreFailed> {
        let stored = self.store_unconfirmed(name, key)?;
        self.confirm(name, &stored.id).map_err(|error| StoreFailed { error, maybe_created: true })?;
        Ok(stored)
    }

    /// POST /v1/secrets, the answer's ID not yet confirmed: until [`Barbican::confirm`] (or a
    /// listing, [`Barbican::list_named`]) shows the secret behind it carries `name`, the ID may
    /// be read but must never be written to the journal or a row, deleted, or given an ACL.
    pub fn store_unconfirmed(&self, name: &str, key: &FixedKey) -> Result<Stored, StoreFailed> {
        let failed = |error: ApiError, maybe_created: bool| StoreFailed { error, maybe_created };
        let body = new_secret_body(name, key).map_err(|e| failed(ApiError::Rejected(e), false))?;
        let mut maybe_orphaned = false;
        let result = self.call("POST", "/secrets", Body::Json(&body), &mut maybe_orphaned);
        drop(body);
        let r = result.map_err(|e| failed(e, maybe_orphaned))?;
        if r.status != 201 && r.status != 200 {
            return Err(failed(ApiError::Rejected(format!("storing secret {name}: {}", r.error_text())), maybe_orphaned));
        }
        // From here on Barbican said 201: a secret exists even if its answer is unusable.
        let created: Created = self
            .answer(&r, "POST", "/secrets")
            .map_err(|e| failed(ApiError::Rejected(format!("storing secret {name}: {e}")), true))?;
        let secret_ref = created.secret_ref.ok_or_else(|| {
            failed(
                ApiError::Rejected(format!(
                    "storing secret {name}: the answer has no secret_ref (POST {})",
                    self.redacted("/secrets")
                )),
                true,
            )
        })?;
        let id = secret_id(&secret_ref).ok_or_else(|| {
            failed(ApiError::Rejected(format!("storing secret {name}: secret_ref is not a Barbican secret reference")), true)
        })?;
        Ok(Stored { id, maybe_orphaned })
    }

    /// GET /v1/secrets/{id}: `Ok` when the secret behind `id` carries `name`. The ID is used,
    /// and later maybe deleted, only once the secret behind it carries the name just stored: a
    /// secret_ref naming another secret (a proxy, a Barbican bug) must never reach the journal
    /// or a row. The host part is not compared: Barbican's host_href often differs from the
    /// endpoint used.
    pub fn confirm(&self, name: &str, id: &str) -> Result<(), ApiError> {
        match self.name_of(id)? {
            Some(found) if found == name => Ok(()),
            _ => Err(not_just_stored(name, id)),
        }
    }

    /// GET /v1/secrets?name=<pattern>&sort=created:desc&limit=<limit>: the project's newest
    /// secrets whose name matches `pattern` (SQL `LIKE`), as (ID, name), one page, and how many
    /// match in all (Barbican's `total`). Entries without a usable reference are left out.
    pub fn list_named(&self, pattern: &str, limit: usize) -> Result<Listing, ApiError> {
        let encoded: String = percent_encoding::utf8_percent_encode(pattern, percent_encoding::NON_ALPHANUMERIC).collect();
        let path = format!("/secrets?name={encoded}&sort=created:desc&limit={}", limit.clamp(1, 100));
        let r = self.call("GET", &path, Body::None, &mut false)?;
        if r.status != 200 {
            return Err(ApiError::Rejected(format!("listing the newest secrets named {pattern}: {}", r.error_text())));
        }
        let page: SecretList = self.answer(&r, "GET", &path).map_err(ApiError::Rejected)?;
        let secrets = page.secrets.into_iter().filter_map(|s| Some((secret_id(&s.secret_ref)?, s.name.unwrap_or_default()))).collect();
        Ok(Listing { secrets, total: page.total })
    }

    /// PUT /v1/secrets/{id}/acl: read for `users`, project access kept.
    pub fn grant_read(&self, id: &str, users: &[String]) -> Result<(), ApiError> {
        let body = serde_json::to_vec(&AclWrite { read: AclWriteRead { users, project_access: true } })
            .map_err(|e| ApiError::Rejected(format!("setting the ACL of secret {id}: {e}")))?;
        let r = self.call("PUT", &format!("/secrets/{id}/acl"), Body::Json(&body), &mut false)?;
        match r.status {
            200 | 201 => Ok(()),
            _ => Err(ApiError::Rejected(format!("setting the ACL of secret {id}: {}", r.error_text()))),
        }
    }

    /// GET /v1/secrets/{id}/payload as raw bytes. No `Accept` header: Barbican then answers
    /// `application/octet-stream`, and skips a content negotiation that costs it about 10 ms
    /// of CPU per request, a tenth of its work for a whole key (docs/performance.md). The
    /// bytes are compared with the key, so an answer in any other form is refused, not used.
    pub fn payload(&self, id: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let r = self.call("GET", &format!("/secrets/{id}/payload"), Body::None, &mut false)?;
        match r.status {
            200 => Ok(r.body),
            _ => Err(ApiError::Rejected(format!("reading secret {id} back: {}", r.error_text()))),
        }
    }

    /// GET /v1/secrets/{id}: the secret's name, or `None` when there is no such secret.
    pub fn name_of(&self, id: &str) -> Result<Option<String>, ApiError> {
        let path = format!("/secrets/{id}");
        let r = self.call("GET", &path, Body::None, &mut false)?;
        match r.status {
            200 => {
                let meta: SecretMeta = self.answer(&r, "GET", &path).map_err(ApiError::Rejected)?;
                Ok(Some(meta.name.unwrap_or_default()))
            }
            404 => Ok(None),
            _ => Err(ApiError::Rejected(format!("reading secret {id}: {}", r.error_text()))),
        }
    }

    /// GET /v1/secrets/{id}/acl: the users granted read, and whether project access is on.
    pub fn read_acl(&self, id: &str) -> Result<(Vec<String>, bool), ApiError> {
        let path = format!("/secrets/{id}/acl");
        let r = self.call("GET", &path, Body::None, &mut false)?;
        if r.status != 200 {
            return Err(ApiError::Rejected(format!("reading the ACL of secret {id}: {}", r.error_text())));
        }
        let acl: Acl = self.answer(&r, "GET", &path).map_err(ApiError::Rejected)?;
        Ok((acl.read.users, acl.read.project_access))
    }

    /// DELETE /v1/secrets/{id}. `Ok(false)` when it was already gone.
    pub fn delete(&self, id: &str) -> Result<bool, ApiError> {
        let r = self.call("DELETE", &format!("/secrets/{id}"), Body::None, &mut false)?;
        match r.status {
            204 | 200 => Ok(true),
            404 => Ok(false),
            _ => Err(ApiError::Rejected(format!("deleting secret {id}: {}", r.error_text()))),
        }
    }

    /// IDs of the project's secrets named exactly `name`. Barbican's `?name=` filter is SQL
    /// `LIKE` (wildcards, case-insensitive on some databases), so names are compared here.
    pub fn find_by_name(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let encoded: String = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).collect();
        let mut ids = Vec::new();
        let mut offset = 0usize;
        loop {
            let path = format!("/secrets?name={encoded}&limit=100&offset={offset}");
            let r = self.call("GET", &path, Body::None, &mut false)?;
            if r.status != 200 {
                return Err(ApiError::Rejected(format!("listing secrets named {name}: {}", r.error_text())));
            }
            let page: SecretList = self.answer(&r, "GET", &path).map_err(ApiError::Rejected)?;
            for s in &page.secrets {
                if s.name.as_deref() == Some(name) {
                    if let Some(id) = secret_id(&s.secret_ref) {
                        ids.push(id);
                    }
                }
            }
            if page.secrets.is_empty() || page.next.is_none() {
                return Ok(ids);
            }
            offset += page.secrets.len();
        }
    }

    /// One request with a token, retried by [`Client::send_with_retries`], re-authenticating
    /// once on 401. `maybe_sent` is set when a failed attempt may still have reached Barbican.
    fn call(&self, method: &str, path: &str, body: Body<'_>, maybe_sent: &mut bool) -> Result<Response, ApiError> {
        let url = format!("{}{path}", self.base);
        let request = Request { method, url: &url, headers: &[("OpenStack-API-Version", "key-manager 1.1")], body };
        let r = self.keystone.send_authorized(&self.http, "Barbican", request, Subject::None, maybe_sent).map_err(|e| match e {
            AuthorizedError::Token(Error::Service(m)) => ApiError::Transient(m),
            AuthorizedError::Token(Error::Credentials(m)) => ApiError::Fatal(m),
            AuthorizedError::Token(other) => ApiError::Rejected(other.to_string()),
            AuthorizedError::GaveUp(gave_up) if gave_up.permanent => {
                ApiError::Unusable(format!("cannot use Barbican at {}: {}", http::redact_url(&self.base), gave_up.message()))
            }
            AuthorizedError::GaveUp(gave_up) => ApiError::Transient(format!("{method} {}: {}", self.redacted(path), gave_up.message())),
            // A fresh token refused too: no unit can succeed, so the run stops.
            AuthorizedError::Refused(r) => ApiError::Fatal(format!(
                "{method} {}: {} after authenticating again; Barbican does not accept keymigrate's Keystone tokens",
                self.redacted(path),
                r.error_text()
            )),
        })?;
        match r.status {
            403 => {
                let text = r.error_text();
                let m = format!("{method} {}: {text}", self.redacted(path));
                Err(if names_a_quota(&text) { ApiError::Quota(m) } else { ApiError::Forbidden(m) })
            }
            _ => Ok(r),
        }
    }

    /// A 2xx answer's JSON as `T`; the error names what is wrong (a missing field, say) and the
    /// request, the URL without credentials or query.
    fn answer<T: serde::de::DeserializeOwned>(&self, r: &Response, method: &str, path: &str) -> Result<T, String> {
        parse_answer(r, method, &self.redacted(path))
    }

    fn redacted(&self, path: &str) -> String {
        http::redact_url(&format!("{}{path}", self.base))
    }
}

/// `POST /v1/secrets`: a symmetric secret holding the key's bytes, base64 on the wire.
#[derive(Serialize)]
struct NewSecret<'a> {
    name: &'a str,
    algorithm: &'static str,
    bit_length: usize,
    secret_type: &'static str,
    payload: &'a str,
    payload_content_type: &'static str,
    payload_content_encoding: &'static str,
}

/// The request body storing `key` as secret `name`: the base64 payload is encoded into a
/// zeroizing buffer and serialized with the rest straight into another, both wiped on drop
/// (ureq's own copy on the way to the socket is not: docs/design.md, "Secrets in memory").
fn new_secret_body(name: &str, key: &FixedKey) -> Result<Zeroizing<Vec<u8>>, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let len = base64::encoded_len(key.bytes().len(), true).ok_or("the fixed key is too long to encode")?;
    let mut payload = Zeroizing::new(vec![0u8; len]);
    let written = engine.encode_slice(key.bytes(), payload.as_mut_slice()).map_err(|e| format!("encoding the key: {e}"))?;
    let payload = std::str::from_utf8(&payload[..written]).map_err(|e| format!("encoding the key: {e}"))?;
    secret::json_body(&NewSecret {
        name,
        algorithm: "AES",
        bit_length: key.bit_length(),
        secret_type: "symmetric",
        payload,
        payload_content_type: "application/octet-stream",
        payload_content_encoding: "base64",
    })
    .map_err(|e| format!("serializing the request: {e}"))
}

/// `PUT /v1/secrets/{id}/acl`.
#[derive(Serialize)]
struct AclWrite<'a> {
    read: AclWriteRead<'a>,
}

#[derive(Serialize)]
struct AclWriteRead<'a> {
    users: &'a [String],
    #[serde(rename = "project-access")]
    project_access: bool,
}

/// `POST /v1/secrets`'s answer. `secret_ref` is checked by hand, for a message of its own.
#[derive(Deserialize)]
struct Created {
    secret_ref: Option<String>,
}

/// `GET /v1/secrets/{id}`: only the name is used (Barbican sends `null` for a nameless secret).
#[derive(Deserialize)]
struct SecretMeta {
    name: Option<String>,
}

/// `GET /v1/secrets/{id}/acl`. Barbican leaves `users` out when none were granted, and
/// `project-access` defaults to true.
#[derive(Deserialize)]
struct Acl {
    read: AclRead,
}

#[derive(Deserialize)]
struct AclRead {
    #[serde(default)]
    users: Vec<String>,
    #[serde(rename = "project-access", default = "project_access_default")]
    project_access: bool,
}

fn project_access_default() -> bool {
    true
}

/// `GET /v1/secrets?name=…`: one page, and the next page's URL when there is one.
#[derive(Deserialize)]
struct SecretList {
    secrets: Vec<Listed>,
    #[serde(default)]
    next: Option<String>,
    /// How many secrets match the filters in all.
    #[serde(default)]
    total: Option<u64>,
}

#[derive(Deserialize)]
struct Listed {
    name: Option<String>,
    secret_ref: String,
}

/// `r`'s JSON as `T`, or `<METHOD> <redacted url>: answer is not the expected JSON (<why>)`,
/// where serde says which field is missing or has the wrong type.
fn parse_answer<T: serde::de::DeserializeOwned>(r: &Response, method: &str, redacted_url: &str) -> Result<T, String> {
    r.json().map_err(|e| format!("{method} {redacted_url}: {e}"))
}

/// Whether a 403's text says a quota is reached: Barbican's `QuotaReached` answers
/// `Creation not allowed because a quota has been reached` (after `Secret creation issue seen - `
/// for a secret); its policy refusals (`… not allowed - please review your user/project
/// privileges`) never mention a quota.
fn names_a_quota(text: &str) -> bool {
    text.to_lowercase().contains("quota")
}

/// The refusal of a secret_ref whose secret is not the one just stored as `name`.
pub fn not_just_stored(name: &str, id: &str) -> ApiError {
    ApiError::Rejected(format!(
        "storing secret {name}: the answer's secret_ref names secret {id}, which is not the secret just stored; not using it"
    ))
}

/// `http://host/v1` from a versionless or versioned endpoint URL.
pub fn versioned(url: &str, version: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or_default();
    if last.len() >= 2 && last.starts_with('v') && last[1..].chars().all(|c| c.is_ascii_digit() || c == '.') {
        trimmed.to_string()
    } else {
        format!("{trimmed}/{version}")
    }
}

/// The UUID at the end of a `secret_ref` (`…/v1/secrets/<uuid>`), if it is one.
pub fn secret_id(secret_ref: &str) -> Option<String> {
    let mut parts = secret_ref.trim_end_matches('/').rsplit('/');
    let id = parts.next()?;
    (parts.next()? == "secrets" && is_uuid(id)).then(|| id.to_string())
}

pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_added_only_when_missing() {
        assert_eq!(versioned("http://b:9311", "v1"), "http://b:9311/v1");
        assert_eq!(versioned("http://b:9311/", "v1"), "http://b:9311/v1");
        assert_eq!(versioned("http://b/key-manager/v1/", "v1"), "http://b/key-manager/v1");
        assert_eq!(versioned("http://b/key-manager", "v1"), "http://b/key-manager/v1");
    }

    fn response(body: &str) -> Response {
        Response { status: 200, subject_token: None, body: body.as_bytes().to_vec().into() }
    }

    #[test]
    fn answers_ignore_unknown_fields_and_name_a_missing_one_and_the_url() {
        let id = "3f0c6eb1-de11-4146-9e26-86b9cf685e4a";
        let url = "http://b:9311/v1/secrets";
        let list = format!(
            r#"{{"secrets": [{{"name": "n", "secret_ref": "{url}/{id}", "status": "ACTIVE", "new": {{"x": 1}}}},
                {{"name": null, "secret_ref": "{url}/{id}"}}], "total": 2, "next": "{url}?offset=2"}}"#
        );
        let page: SecretList = parse_answer(&response(&list), "GET", url).expect("a page");
        assert_eq!(page.secrets.len(), 2);
        assert_eq!((page.secrets[0].name.as_deref(), page.secrets[1].name.as_deref()), (Some("n"), None));
        assert!(page.next.is_some());
        let last: SecretList = parse_answer(&response(r#"{"secrets": [], "total": 0}"#), "GET", url).expect("last page");
        assert!(last.next.is_none());

        let e = parse_answer::<SecretList>(&response(r#"{"total": 0}"#), "GET", url).err().expect("no secrets");
        assert!(e.starts_with("GET http://b:9311/v1/secrets: ") && e.contains("missing field `secrets`"), "{e}");
        let e = parse_answer::<SecretList>(&response(r#"{"secrets": [{"name": "n"}]}"#), "GET", url).err().expect("no ref");
        assert!(e.contains("missing field `secret_ref`") && e.contains(url), "{e}");
        let e = parse_answer::<Acl>(&response(r#"{"write": {}}"#), "GET", url).err().expect("no read");
        assert!(e.contains("missing field `read`") && e.contains(url), "{e}");

        // No users granted yet: Barbican leaves the list out; project access defaults to on.
        let acl: Acl = parse_answer(&response(r#"{"read": {"created": "x"}}"#), "GET", url).expect("acl");
        assert_eq!((acl.read.users.len(), acl.read.project_access), (0, true));
        let acl: Acl = parse_answer(&response(r#"{"read": {"users": ["u"], "project-access": false}}"#), "GET", url)
            .expect("acl");
        assert_eq!((acl.read.users, acl.read.project_access), (vec!["u".to_string()], false));
    }

    #[test]
    fn the_store_body_holds_the_key_in_base64() {
        let key = FixedKey::from_hex("00ff10").expect("hex");
        let body = new_secret_body("keymigrate-volume-x", &key).expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["payload"], "AP8Q");
        assert_eq!((v["name"].as_str(), v["bit_length"].as_u64()), (Some("keymigrate-volume-x"), Some(24)));
        assert_eq!((v["algorithm"].as_str(), v["secret_type"].as_str()), (Some("AES"), Some("symmetric")));
        assert_eq!(v["payload_content_encoding"], "base64");
        assert_eq!(v["payload_content_type"], "application/octet-stream");
        assert_eq!(v.as_object().map(|o| o.len()), Some(7));
    }

    #[test]
    fn only_a_403_that_says_so_is_a_quota() {
        let text = |body: &str| Response { status: 403, subject_token: None, body: body.as_bytes().to_vec().into() }.error_text();
        // Barbican 23's answers to a secret POST over the project's quota, and refused by policy.
        let quota = r#"{"code": 403, "title": "Forbidden", "description": "Secret creation issue seen - Creation not allowed because a quota has been reached."}"#;
        let policy = r#"{"code": 403, "title": "Forbidden", "description": "Secret creation attempt not allowed - please review your user/project privileges"}"#;
        assert!(names_a_quota(&text(quota)));
        assert!(!names_a_quota(&text(policy)));
        assert!(!names_a_quota(&text("<html>Forbidden</html>")));
    }

    #[test]
    fn secret_refs_must_end_in_a_secret_uuid() {
        let id = "3f0c6eb1-de11-4146-9e26-86b9cf685e4a";
        assert_eq!(secret_id(&format!("http://b:9311/v1/secrets/{id}")).as_deref(), Some(id));
        assert_eq!(secret_id(&format!("http://b:9311/v1/orders/{id}")), None);
        assert_eq!(secret_id("http://b:9311/v1/secrets/not-a-uuid"), None);
        assert_eq!(secret_id(id), None);
    }
}
