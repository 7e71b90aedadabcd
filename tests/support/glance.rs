//! A client for the real Glance that `scripts/testenv.sh up` started on loopback
//! (`KEYMIGRATE_TEST_GLANCE_URL`), for the tests of images carrying `cinder_encryption_key_id`:
//! create an image as a project's user (visibility, extra properties, hidden, a few bytes of data
//! so it becomes `active`), share it with another project, read, patch and delete it, and list by
//! a property as Glance's admin the way an operator must (both `os_hidden` passes, every page).
//!
//! [`Glance`] is also the test's guard: the images it created and the test did not delete are
//! deleted as the admin when it drops, passed or failed, so the shared Glance keeps no litter.

#![allow(dead_code)]

use std::sync::Mutex;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use rand::Rng;
use serde_json::{json, Map, Value};

use super::cloud::Reply;
use super::env;

/// The property Cinder writes on an image uploaded from an encrypted volume.
pub const KEY_ID: &str = "cinder_encryption_key_id";
/// Its companion (Cinder 15 and later): `on_image_deletion` makes Glance delete the key too.
pub const DELETION_POLICY: &str = "cinder_encryption_key_deletion_policy";

/// Glance's JSON-patch media type: a PATCH with `application/json` is refused (415).
const JSON_PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// One HTTP request that never panics: status (0 when no answer came) and body. The guard's
/// `Drop` calls it too.
fn raw(method: &str, url: &str, token: Option<&str>, content_type: Option<&str>, body: Option<Vec<u8>>) -> (u16, Option<String>, Vec<u8>) {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut req = ureq::http::Request::builder().method(method).uri(url).header("Accept", "application/json");
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    if let Some(c) = content_type {
        req = req.header("Content-Type", c);
    }
    let result = match body {
        Some(b) => req.body(b).map(|r| agent.run(r)),
        None => req.body(()).map(|r| agent.run(r)),
    };
    let mut resp = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return (0, None, format!("{method} {url}: {e}").into_bytes()),
        Err(e) => return (0, None, format!("{method} {url}: {e}").into_bytes()),
    };
    let subject = resp.headers().get("X-Subject-Token").and_then(|v| v.to_str().ok()).map(String::from);
    let status = resp.status().as_u16();
    (status, subject, resp.body_mut().read_to_vec().unwrap_or_default())
}

fn reply(status: u16, body: Vec<u8>) -> Reply {
    Reply { status, body }
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Keystone's admin token (project `admin`, role `admin`: Glance's admin), shared by the
/// process; a password authentication costs the test Keystone a good part of a second.
static ADMIN_TOKEN: Mutex<Option<String>> = Mutex::new(None);

/// The admin's token, a new one when `stale` is the cached one (it got a 401); None when
/// Keystone gave none. Never panics.
fn admin_token(stale: Option<&str>) -> Option<String> {
    let mut slot = ADMIN_TOKEN.lock().unwrap_or_else(|e| e.into_inner());
    if stale.is_some() && slot.as_deref() == stale {
        *slot = None;
    }
    if slot.is_none() {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"},
                "password": env("KEYMIGRATE_TEST_ADMIN_PASSWORD")}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
        let url = format!("{}/auth/tokens", env("KEYMIGRATE_TEST_KEYSTONE_URL"));
        // the test Keystone's SQLite sometimes answers 500 "database is locked" under load
        for attempt in 1..=5 {
            let (status, token, _) = raw("POST", &url, None, Some("application/json"), serde_json::to_vec(&body).ok());
            if status == 201 {
                *slot = token;
                break;
            }
            if status != 0 && status < 500 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200 * attempt));
        }
    }
    slot.clone()
}

/// What an image is made with: its visibility, extra properties, `os_hidden`, and data.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// `private`, `shared`, `community` or `public` (the last needs an admin).
    pub visibility: String,
    /// Extra (free-form) properties, such as [`KEY_ID`].
    pub properties: Vec<(String, String)>,
    /// `os_hidden`: such an image is only listed by a query with `os_hidden=true`.
    pub hidden: bool,
    /// Uploaded after creation (`PUT /v2/images/{id}/file`), so the image becomes `active`;
    /// without data it stays `queued`.
    pub data: Option<Vec<u8>>,
}

impl ImageSpec {
    pub fn new(visibility: &str) -> ImageSpec {
        ImageSpec { visibility: visibility.to_string(), properties: Vec::new(), hidden: false, data: None }
    }

    pub fn property(mut self, key: &str, value: &str) -> ImageSpec {
        self.properties.push((key.to_string(), value.to_string()));
        self
    }

    /// Both of Cinder's properties: `key_id` with `on_image_deletion`.
    pub fn encrypted(self, key_id: &str) -> ImageSpec {
        self.property(KEY_ID, key_id).property(DELETION_POLICY, "on_image_deletion")
    }

    pub fn hidden(mut self, hidden: bool) -> ImageSpec {
        self.hidden = hidden;
        self
    }

    pub fn data(mut self, bytes: &[u8]) -> ImageSpec {
        self.data = Some(bytes.to_vec());
        self
    }
}

/// The test Glance, and the guard of the images made through it.
pub struct Glance {
    pub url: String,
    /// Images created and not yet deleted through this value.
    made: Mutex<Vec<String>>,
}

impl Default for Glance {
    fn default() -> Glance {
        Glance::new()
    }
}

impl Glance {
    pub fn new() -> Glance {
        Glance { url: env("KEYMIGRATE_TEST_GLANCE_URL").trim_end_matches('/').to_string(), made: Mutex::new(Vec::new()) }
    }

    fn image_url(&self, id: &str) -> String {
        format!("{}/v2/images/{id}", self.url)
    }

    fn json(&self, method: &str, url: &str, token: &str, content_type: &str, body: &Value) -> Reply {
        let (status, _, bytes) = raw(method, url, Some(token), Some(content_type), serde_json::to_vec(body).ok());
        reply(status, bytes)
    }

    /// A request as the admin; once more with a new token after a 401. Never panics.
    fn as_admin(&self, method: &str, url: &str, content_type: Option<&str>, body: Option<&Value>) -> Reply {
        let mut stale: Option<String> = None;
        for _ in 0..2 {
            let Some(token) = admin_token(stale.as_deref()) else {
                return reply(0, b"no token for Keystone's admin".to_vec());
            };
            let (status, _, bytes) = raw(method, url, Some(&token), content_type, body.and_then(|b| serde_json::to_vec(b).ok()));
            if status != 401 {
                return reply(status, bytes);
            }
            stale = Some(token);
        }
        reply(401, Vec::new())
    }

    /// Creates an image named `kmtest-image-<random>` as `token`'s user (its project becomes
    /// the image's `owner`), uploads `spec.data` if any, and returns the image as Glance shows
    /// it afterwards. Raw disk, bare container. Panics when Glance refuses.
    pub fn create(&self, token: &str, spec: &ImageSpec) -> Value {
        let mut body = Map::new();
        body.insert("name".into(), json!(format!("kmtest-image-{:012x}", rand::rng().random_range(0..u64::MAX) % (1 << 48))));
        body.insert("disk_format".into(), json!("raw"));
        body.insert("container_format".into(), json!("bare"));
        body.insert("visibility".into(), json!(spec.visibility));
        body.insert("os_hidden".into(), json!(spec.hidden));
        for (k, v) in &spec.properties {
            body.insert(k.clone(), json!(v));
        }
        let r = self.json("POST", &format!("{}/v2/images", self.url), token, "application/json", &Value::Object(body));
        assert_eq!(r.status, 201, "POST /v2/images: {}", text(&r));
        let id = r.json()["id"].as_str().expect("image id").to_string();
        self.made.lock().unwrap_or_else(|e| e.into_inner()).push(id.clone());
        if let Some(data) = &spec.data {
            let (status, _, bytes) = raw("PUT", &format!("{}/file", self.image_url(&id)), Some(token), Some("application/octet-stream"), Some(data.clone()));
            assert_eq!(status, 204, "upload to image {id}: {}", String::from_utf8_lossy(&bytes));
        }
        let image = self.get(token, &id);
        assert_eq!(image.status, 200, "GET image {id}: {}", text(&image));
        image.json()
    }

    /// Shares `image` with `project` (the image must be `shared`), as the owner's `token`.
    /// Returns the member record (`status` is `pending` until the project accepts).
    pub fn add_member(&self, token: &str, image: &str, project: &str) -> Value {
        let r = self.json("POST", &format!("{}/members", self.image_url(image)), token, "application/json", &json!({"member": project}));
        assert_eq!(r.status, 200, "add member {project} to image {image}: {}", text(&r));
        r.json()
    }

    /// Accepts a shared image, as a `token` of the member project.
    pub fn accept(&self, token: &str, image: &str, project: &str) -> Value {
        let url = format!("{}/members/{project}", self.image_url(image));
        let r = self.json("PUT", &url, token, "application/json", &json!({"status": "accepted"}));
        assert_eq!(r.status, 200, "accept image {image} in {project}: {}", text(&r));
        r.json()
    }

    /// `GET /v2/images/{id}` as `token`: the status says whether that user sees it.
    pub fn get(&self, token: &str, image: &str) -> Reply {
        let (status, _, bytes) = raw("GET", &self.image_url(image), Some(token), None, None);
        reply(status, bytes)
    }

    /// `GET /v2/images/{id}` as the admin; panics unless 200.
    pub fn get_as_admin(&self, image: &str) -> Value {
        let r = self.as_admin("GET", &self.image_url(image), None, None);
        assert_eq!(r.status, 200, "GET image {image} as admin: {}", text(&r));
        r.json()
    }

    /// `PATCH /v2/images/{id}` with a JSON patch (`[{"op": "replace", ...}]`) as `token`.
    pub fn patch(&self, token: &str, image: &str, ops: &Value) -> Reply {
        self.json("PATCH", &self.image_url(image), token, JSON_PATCH, ops)
    }

    /// Replaces (or, when absent, adds) one property as `token`: Glance's `replace` fails
    /// on a property the image has not.
    pub fn set_property(&self, token: &str, image: &str, key: &str, value: &str) -> Reply {
        let current = self.get(token, image);
        let op = if current.status == 200 && current.json().get(key).is_some() { "replace" } else { "add" };
        self.patch(token, image, &json!([{"op": op, "path": format!("/{key}"), "value": value}]))
    }

    /// `PATCH` as the admin (any project's image).
    pub fn patch_as_admin(&self, image: &str, ops: &Value) -> Reply {
        self.as_admin("PATCH", &self.image_url(image), Some(JSON_PATCH), Some(ops))
    }

    /// `DELETE /v2/images/{id}` as `token`; the status (204 deleted, 404 gone already). With
    /// `on_image_deletion`, Glance then deletes the image's key with that user's token.
    pub fn delete(&self, token: &str, image: &str) -> u16 {
        let (status, _, _) = raw("DELETE", &self.image_url(image), Some(token), None, None);
        self.forget(image, status);
        status
    }

    /// `DELETE` as the admin; an admin's delete removes the key whatever project it is in.
    pub fn delete_as_admin(&self, image: &str) -> u16 {
        let status = self.as_admin("DELETE", &self.image_url(image), None, None).status;
        self.forget(image, status);
        status
    }

    fn forget(&self, image: &str, status: u16) {
        if status == 204 || status == 404 {
            self.made.lock().unwrap_or_else(|e| e.into_inner()).retain(|i| i != image);
        }
    }

    /// Every image whose property `key` is exactly `value`, of every project, hidden ones
    /// included: the admin's `visibility=all` query, once with `os_hidden=false` and once with
    /// `os_hidden=true` (Glance forces one or the other), every page. Panics unless 200.
    pub fn list_by_property(&self, key: &str, value: &str) -> Vec<Value> {
        self.list_by_property_paged(key, value, 1000)
    }

    /// [`Glance::list_by_property`] with pages of `limit` images (Glance allows at most 1000).
    pub fn list_by_property_paged(&self, key: &str, value: &str, limit: usize) -> Vec<Value> {
        let mut out = self.list_pass(key, value, false, limit);
        out.extend(self.list_pass(key, value, true, limit));
        out
    }

    /// One `os_hidden` pass of the admin's property query, following `next`.
    pub fn list_pass(&self, key: &str, value: &str, hidden: bool, limit: usize) -> Vec<Value> {
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let mut url = format!("{}/v2/images?{}={}&visibility=all&os_hidden={hidden}&limit={limit}", self.url, enc(key), enc(value));
        let mut out = Vec::new();
        // `next` repeats the query with a marker; a bound keeps a bug from looping forever
        for _ in 0..10_000 {
            let r = self.as_admin("GET", &url, None, None);
            assert_eq!(r.status, 200, "GET {url} as admin: {}", text(&r));
            let page = r.json();
            out.extend(page["images"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => url = format!("{}{next}", self.url),
                None => return out,
            }
        }
        panic!("listing {key}={value}: more than 10000 pages");
    }
}

impl Drop for Glance {
    fn drop(&mut self) {
        let left: Vec<String> = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        let failed: Vec<String> = left
            .iter()
            .filter_map(|id| {
                let status = self.as_admin("DELETE", &self.image_url(id), None, None).status;
                (status != 204 && status != 404).then(|| format!("DELETE image {id}: {status}"))
            })
            .collect();
        if !failed.is_empty() && !std::thread::panicking() {
            panic!("cleaning up images: {}", failed.join("; "));
        }
    }
}

/// The IDs of `images` (a listing's entries).
pub fn ids(images: &[Value]) -> Vec<String> {
    images.iter().filter_map(|i| i["id"].as_str().map(String::from)).collect()
}
