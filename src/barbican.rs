//! Barbican v1, as the key store: store a symmetric secret holding exact bytes, grant a user read
//! access, read the payload back, find secrets by name, delete. Every call carries a Keystone
//! token (renewed once on 401) and is retried with backoff on connection errors and 5xx, which a
//! busy Barbican answers under write contention.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use zeroize::Zeroizing;

use crate::conditions::FixedKey;
use crate::conf::{self, Conf};
use crate::error::{Error, Result};
use crate::http::{self, Body, Client, Response, Tls};
use crate::keystone::Keystone;

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
            if !(e.starts_with("http://") || e.starts_with("https://")) {
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
        let tls = Tls { ca_file: text(&b::VERIFY_SSL_PATH)?.map(Into::into), insecure: !verify };
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

/// A failed Barbican call, classified for the engine.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// Still failing after every retry: connection errors, timeouts, 5xx.
    Transient(String),
    /// 403: quota or policy. Retrying will not help; the run stops.
    Forbidden(String),
    /// Any other refusal, or an answer keymigrate cannot use.
    Rejected(String),
    /// Stop the run: Keystone rejected the credentials, or Barbican a freshly issued token.
    Fatal(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Transient(m) | ApiError::Forbidden(m) | ApiError::Rejected(m) | ApiError::Fatal(m) => f.write_str(m),
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
            .map_err(|e| Error::config_value("[barbican] verify_ssl_path", e))?;
        // Authenticate before anything else: bad credentials stop the run at once.
        keystone.token()?;
        let url = match &settings.endpoint {
            Some(e) => e.clone(),
            None => keystone.endpoint("key-manager", &settings.endpoint_type, settings.region.as_deref())?,
        };
        let base = versioned(&url, settings.api_version.as_deref().unwrap_or("v1"));
        log::info!("Using Barbican at {}", http::redact_url(&base));
        Ok(Barbican { http, keystone, base })
    }

    /// POST /v1/secrets: a symmetric AES secret holding exactly `key`, base64 on the wire.
    pub fn store(&self, name: &str, key: &FixedKey) -> Result<Stored, StoreFailed> {
        let payload = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.bytes()));
        let body = json!({
            "name": name,
            "algorithm": "AES",
            "bit_length": key.bit_length(),
            "secret_type": "symmetric",
            "payload": payload.as_str(),
            "payload_content_type": "application/octet-stream",
            "payload_content_encoding": "base64",
        });
        let mut maybe_orphaned = false;
        let result = self.call("POST", "/secrets", Body::Json(&body), &mut maybe_orphaned);
        drop(body);
        let failed = |error: ApiError, maybe_created: bool| StoreFailed { error, maybe_created };
        let r = result.map_err(|e| failed(e, maybe_orphaned))?;
        if r.status != 201 && r.status != 200 {
            return Err(failed(ApiError::Rejected(format!("storing secret {name}: {}", r.error_text())), maybe_orphaned));
        }
        #[derive(serde::Deserialize)]
        struct Created {
            secret_ref: Option<String>,
        }
        // From here on Barbican said 201: a secret exists even if its answer is unusable.
        let created: Created =
            r.json().map_err(|e| failed(ApiError::Rejected(format!("storing secret {name}: {e}")), true))?;
        let secret_ref = created
            .secret_ref
            .ok_or_else(|| failed(ApiError::Rejected(format!("storing secret {name}: the answer has no secret_ref")), true))?;
        let id = secret_id(&secret_ref).ok_or_else(|| {
            failed(ApiError::Rejected(format!("storing secret {name}: secret_ref is not a Barbican secret reference")), true)
        })?;
        // The ID is used, and later maybe deleted, only once the secret behind it carries the
        // name just stored: a secret_ref naming another secret (a proxy, a Barbican bug) must
        // never reach the journal or a row. The host part is not compared: Barbican's
        // host_href often differs from the endpoint used.
        match self.name_of(&id) {
            Ok(Some(found)) if found == name => Ok(Stored { id, maybe_orphaned }),
            Ok(_) => Err(failed(
                ApiError::Rejected(format!(
                    "storing secret {name}: the answer's secret_ref names secret {id}, which is not the secret just stored; not using it"
                )),
                true,
            )),
            Err(e) => Err(failed(e, true)),
        }
    }

    /// PUT /v1/secrets/{id}/acl: read for `users`, project access kept.
    pub fn grant_read(&self, id: &str, users: &[String]) -> Result<(), ApiError> {
        let body = json!({"read": {"users": users, "project-access": true}});
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
            200 => Ok(Zeroizing::new(r.body)),
            _ => Err(ApiError::Rejected(format!("reading secret {id} back: {}", r.error_text()))),
        }
    }

    /// GET /v1/secrets/{id}: the secret's name, or `None` when there is no such secret.
    pub fn name_of(&self, id: &str) -> Result<Option<String>, ApiError> {
        let r = self.call("GET", &format!("/secrets/{id}"), Body::None, &mut false)?;
        match r.status {
            200 => {
                let v: serde_json::Value = r.json().map_err(ApiError::Rejected)?;
                Ok(Some(v["name"].as_str().unwrap_or_default().to_string()))
            }
            404 => Ok(None),
            _ => Err(ApiError::Rejected(format!("reading secret {id}: {}", r.error_text()))),
        }
    }

    /// GET /v1/secrets/{id}/acl: the users granted read, and whether project access is on.
    pub fn read_acl(&self, id: &str) -> Result<(Vec<String>, bool), ApiError> {
        let r = self.call("GET", &format!("/secrets/{id}/acl"), Body::None, &mut false)?;
        if r.status != 200 {
            return Err(ApiError::Rejected(format!("reading the ACL of secret {id}: {}", r.error_text())));
        }
        let v: serde_json::Value = r.json().map_err(ApiError::Rejected)?;
        let users = v["read"]["users"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let project_access = v["read"]["project-access"].as_bool().unwrap_or(true);
        Ok((users, project_access))
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
            let v: serde_json::Value = r.json().map_err(ApiError::Rejected)?;
            let page = v["secrets"].as_array().cloned().unwrap_or_default();
            for s in &page {
                if s["name"].as_str() == Some(name) {
                    if let Some(id) = s["secret_ref"].as_str().and_then(secret_id) {
                        ids.push(id);
                    }
                }
            }
            if page.is_empty() || v.get("next").is_none_or(|n| n.is_null()) {
                return Ok(ids);
            }
            offset += page.len();
        }
    }

    /// One request with a token, re-authenticating once on 401 and retrying transient failures.
    /// `maybe_sent` is set when a failed attempt may still have reached Barbican.
    fn call(&self, method: &str, path: &str, body: Body<'_>, maybe_sent: &mut bool) -> Result<Response, ApiError> {
        let url = format!("{}{path}", self.base);
        let json_body = match &body {
            Body::Json(v) => Some(*v),
            Body::None => None,
        };
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        loop {
            let token = self.keystone.token().map_err(|e| match e {
                Error::Service(m) => ApiError::Transient(m),
                Error::Credentials(m) => ApiError::Fatal(m),
                other => ApiError::Rejected(other.to_string()),
            })?;
            let headers = [("X-Auth-Token", token.expose()), ("OpenStack-API-Version", "key-manager 1.1")];
            let body = json_body.map_or(Body::None, Body::Json);
            let result = self.http.send(method, &url, &headers, body);
            let retry_reason = match result {
                Ok(r) if r.status == 401 && !reauthenticated => {
                    log::info!("Barbican answered 401; authenticating again");
                    self.keystone.invalidate(&token);
                    reauthenticated = true;
                    continue;
                }
                Ok(r) if r.status == 401 => {
                    // A fresh token refused too: no unit can succeed, so the run stops.
                    return Err(ApiError::Fatal(format!(
                        "{method} {}: {} after authenticating again; Barbican does not accept keymigrate's Keystone tokens",
                        self.redacted(path),
                        r.error_text()
                    )))
                }
                Ok(r) if r.status == 403 => {
                    return Err(ApiError::Forbidden(format!("{method} {}: {}", self.redacted(path), r.error_text())))
                }
                Ok(r) if r.status >= 500 => {
                    *maybe_sent = true;
                    r.error_text()
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    *maybe_sent |= e.maybe_sent;
                    e.message
                }
            };
            if attempt >= self.http.retry.retries {
                return Err(ApiError::Transient(format!(
                    "{method} {}: {retry_reason} (gave up after {} attempts)",
                    self.redacted(path),
                    attempt + 1
                )));
            }
            let delay = self.http.retry.delay(attempt);
            log::warn!("{method} {}: {retry_reason}; retrying in {} ms", self.redacted(path), delay.as_millis());
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    fn redacted(&self, path: &str) -> String {
        http::redact_url(&format!("{}{path}", self.base))
    }
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

    #[test]
    fn secret_refs_must_end_in_a_secret_uuid() {
        let id = "3f0c6eb1-de11-4146-9e26-86b9cf685e4a";
        assert_eq!(secret_id(&format!("http://b:9311/v1/secrets/{id}")).as_deref(), Some(id));
        assert_eq!(secret_id(&format!("http://b:9311/v1/orders/{id}")), None);
        assert_eq!(secret_id("http://b:9311/v1/secrets/not-a-uuid"), None);
        assert_eq!(secret_id(id), None);
    }
}
