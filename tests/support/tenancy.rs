//! Keystone projects and users made for one test, for the runs that put each secret in its row's
//! own project (`--secret-owner project`): a project with a random name and its members (users
//! with a password and the `member` role there), deleted with them when the test ends, passed or
//! failed, so tests running side by side never share a project. Plus what such a test looks at
//! afterwards: the roles a user holds in the project, the grants keymigrate journalled in its
//! state directory, and the `keymigrate-*` secrets Barbican lists in the project.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};

use super::castellan::TestUser;
use super::cloud::Cloud;
use super::{env, q, CinderDb};

/// One HTTP request that never panics: (status, `X-Subject-Token`, body); status 0 when no
/// answer came. A `Drop` cleaning up after a failed test calls this too.
fn raw(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Option<String>, Vec<u8>) {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    let result = match body.map(serde_json::to_vec) {
        Some(Ok(b)) => req.header("Content-Type", "application/json").body(b).map(|r| agent.run(r)),
        _ => req.body(()).map(|r| agent.run(r)),
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

/// How often a test's own Keystone request is retried after a 5xx or no answer.
const RETRIES: u32 = 10;

/// The wait before retry `attempt` (1-based): 250 ms more each time, at most 2 s; about 12 s
/// in all.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(u64::from(attempt.min(8)) * 250)
}

/// Keystone's REST API as its admin, for what the tests set up and check by hand (`path` after
/// `/v3`). Status 0 when no answer came; never panics.
pub fn keystone_call(method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", env("KEYMIGRATE_TEST_KEYSTONE_URL"));
    let mut attempt = 0;
    let (status, bytes) = loop {
        let (status, _, bytes) = raw(method, &url, Some(token), body.as_ref());
        // The test Keystone keeps its data in SQLite: writes from tests running side by side
        // sometimes meet "database is locked", answered 500 before anything was written. A
        // read transaction that must become a write while another writer commits gets that
        // answer at once, whatever the busy timeout, so the busiest moments of a full run
        // (several kill matrices granting and revoking roles) need a few seconds of retries.
        if (status == 0 || status >= 500) && attempt < RETRIES {
            attempt += 1;
            std::thread::sleep(backoff(attempt));
            continue;
        }
        break (status, bytes);
    };
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// A token for a user of the Default domain scoped to `project` (by name), or None; never panics.
/// Authenticating writes to Keystone's database too (the user's last activity), so it meets the
/// same SQLite locks as the other writes and is retried the same way.
fn try_token(user: &str, password: &str, project: &str) -> Option<String> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    let url = format!("{}/auth/tokens", env("KEYMIGRATE_TEST_KEYSTONE_URL"));
    for attempt in 1..=RETRIES {
        match raw("POST", &url, None, Some(&body)) {
            (201, token, _) => return token,
            (status, _, _) if status == 0 || status >= 500 => std::thread::sleep(backoff(attempt)),
            _ => return None,
        }
    }
    None
}

/// Tokens the tests' own checks use, shared by every test of the process: the test Keystone has
/// two workers, and a password authentication costs one of them a good part of a second.
static ADMIN_TOKEN: Mutex<Option<String>> = Mutex::new(None);
static CINDER_TOKEN: Mutex<Option<String>> = Mutex::new(None);

/// A token from `cache`, or a new one from `fetch` (None when Keystone gave none).
fn cached(cache: &Mutex<Option<String>>, fetch: impl Fn() -> Option<String>) -> Option<String> {
    let mut slot = cache.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = fetch();
    }
    slot.clone()
}

fn forget(cache: &Mutex<Option<String>>, token: &str) {
    let mut slot = cache.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_deref() == Some(token) {
        *slot = None;
    }
}

/// A token of Keystone's admin, scoped to project `admin`.
pub fn admin_token() -> String {
    cached(&ADMIN_TOKEN, || try_token("admin", &env("KEYMIGRATE_TEST_ADMIN_PASSWORD"), "admin"))
        .expect("a token for Keystone's admin")
}

/// [`keystone_call`] as Keystone's admin; once more with a new token after a 401 (something
/// revoked the admin's token). Never panics: a `Drop` calls it.
pub fn admin_call(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let Some(token) = cached(&ADMIN_TOKEN, || try_token("admin", &env("KEYMIGRATE_TEST_ADMIN_PASSWORD"), "admin")) else {
        return (0, Value::String("no token for Keystone's admin".into()));
    };
    let (status, answer) = keystone_call(method, path, &token, body.clone());
    if status != 401 {
        return (status, answer);
    }
    forget(&ADMIN_TOKEN, &token);
    // Keystone's revocations count whole seconds: a token from the same second is revoked too.
    std::thread::sleep(Duration::from_millis(1100));
    match cached(&ADMIN_TOKEN, || try_token("admin", &env("KEYMIGRATE_TEST_ADMIN_PASSWORD"), "admin")) {
        Some(token) => keystone_call(method, path, &token, body),
        None => (status, answer),
    }
}

/// Barbican's REST API (`path` after the endpoint) as Keystone's admin, whose `admin` role in
/// project `admin` Barbican's policy accepts for project quotas; once more with a new token
/// after a 401. Never panics: a `Drop` calls it.
pub fn barbican_admin_call(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", env("KEYMIGRATE_TEST_BARBICAN_URL"));
    let mut answer = (0, Value::String("no token for Keystone's admin".into()));
    for _ in 0..2 {
        let Some(token) = cached(&ADMIN_TOKEN, || try_token("admin", &env("KEYMIGRATE_TEST_ADMIN_PASSWORD"), "admin")) else {
            return answer;
        };
        let (status, _, bytes) = raw(method, &url, Some(&token), body.as_ref());
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        answer = (status, value);
        if status != 401 {
            break;
        }
        forget(&ADMIN_TOKEN, &token);
    }
    answer
}

/// Deletes a Barbican secret as Cinder's service user, whose `admin` role lets it delete any
/// project's secret; never panics.
fn delete_secret(id: &str) {
    let fetch = || try_token(&env("KEYMIGRATE_TEST_CINDER_USER"), &env("KEYMIGRATE_TEST_CINDER_PASSWORD"), &env("KEYMIGRATE_TEST_CINDER_PROJECT"));
    let url = format!("{}/v1/secrets/{id}", env("KEYMIGRATE_TEST_BARBICAN_URL"));
    for _ in 0..2 {
        let Some(token) = cached(&CINDER_TOKEN, fetch) else { return };
        if raw("DELETE", &url, Some(&token), None).0 != 401 {
            return;
        }
        forget(&CINDER_TOKEN, &token);
    }
}

/// Cinder's service user: the `[keystone_authtoken]` identity that acts in the rows' projects.
pub fn cinder_user_id() -> String {
    env("KEYMIGRATE_TEST_CINDER_USER_ID")
}

/// A random name with `label` in it, so that a leftover is traced to its test.
fn scratch_name(label: &str) -> String {
    format!("kmtest-{label}-{:012x}", rand::rng().random_range(0..u64::MAX) % (1 << 48))
}

/// A project ID in Keystone's form (32 hex digits) that no project has.
pub fn missing_project_id() -> String {
    format!("{:032x}", rand::rng().random_range(0..u128::MAX))
}

/// A user of a [`Project`], with its password: it reads the project's secrets.
#[derive(Clone)]
pub struct Member {
    pub id: String,
    pub name: String,
    password: String,
    /// The project's name (tokens are scoped by name, in the Default domain).
    pub project: String,
    /// Its token, once asked for: nothing the tests do revokes a member's token.
    token: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}) in {}", self.name, self.id, self.project)
    }
}

impl Member {
    /// The same user, for castellan's reads and Cinder's key deletion.
    pub fn castellan(&self) -> TestUser {
        TestUser::new(&self.name, &self.password, &self.project)
    }

    /// The member's password, for a configuration that logs in as it.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A token scoped to the member's project.
    pub fn token(&self) -> String {
        self.token
            .get_or_init(|| try_token(&self.name, &self.password, &self.project).unwrap_or_else(|| panic!("no token for {self:?}")))
            .clone()
    }
}

/// A project of the Default domain with a random name, and users made for it. On drop, the
/// `keymigrate-*` secrets Barbican lists in the project (seen through a member's token) are
/// deleted, then the users, then the project (which deletes every role assignment in it).
pub struct Project {
    pub id: String,
    pub name: String,
    members: Vec<Member>,
    /// Whether a Barbican quota was set here, to delete with the project.
    quota: std::sync::atomic::AtomicBool,
}

impl Project {
    pub fn new(label: &str) -> Project {
        let name = scratch_name(label);
        let body = json!({"project": {"name": name, "domain_id": "default", "description": "keymigrate integration test"}});
        let (status, answer) = admin_call("POST", "/projects", Some(body));
        assert_eq!(status, 201, "create project {name}: {answer}");
        let id = answer["project"]["id"].as_str().expect("project id").to_string();
        Project { id, name, members: Vec::new(), quota: Default::default() }
    }

    /// A new user holding `member` in this project only.
    pub fn member(&mut self, label: &str) -> Member {
        let name = scratch_name(label);
        let password = format!("pw-{}", super::uuid());
        let body = json!({"user": {"name": name, "password": password, "domain_id": "default"}});
        let (status, answer) = admin_call("POST", "/users", Some(body));
        assert_eq!(status, 201, "create user {name}: {answer}");
        let id = answer["user"]["id"].as_str().expect("user id").to_string();
        let member = Member { id, name, password, project: self.name.clone(), token: std::sync::OnceLock::new() };
        self.members.push(member.clone());
        self.grant_by_hand(&member.id, "member");
        member
    }

    /// Grants `role` (by name) to `user` here, as an operator would have before keymigrate ran.
    pub fn grant_by_hand(&self, user: &str, role: &str) {
        let role = role_id(role);
        let (status, answer) = admin_call("PUT", &format!("/projects/{}/users/{user}/roles/{role}", self.id), None);
        assert_eq!(status, 204, "grant {role} to {user} in {}: {answer}", self.id);
    }

    /// Barbican's quota of secrets for this project (`PUT /v1/project-quotas/{id}`), set as
    /// Keystone's admin: Barbican 23's policy (oslo.policy's new defaults) asks for `admin` in
    /// a project-scoped token, not the legacy `key-manager:service-admin`.
    pub fn set_secret_quota(&self, secrets: i64) {
        let (status, answer) = barbican_admin_call("PUT", &format!("/v1/project-quotas/{}", self.id), Some(json!({"project_quotas": {"secrets": secrets}})));
        assert_eq!(status, 204, "set the secret quota of {}: {answer}", self.id);
        self.quota.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The names of the roles `user` holds here, effective ones included (through a group,
    /// implied by another role), as keymigrate itself asks.
    pub fn roles_of(&self, user: &str) -> Vec<String> {
        self.assignments(user, true)
    }

    /// The names of the roles assigned to `user` here directly: what a grant adds and a revoke
    /// removes.
    pub fn direct_roles_of(&self, user: &str) -> Vec<String> {
        self.assignments(user, false)
    }

    fn assignments(&self, user: &str, effective: bool) -> Vec<String> {
        let path = format!(
            "/role_assignments?user.id={user}&scope.project.id={}&include_names{}",
            self.id,
            if effective { "&effective" } else { "" }
        );
        let (status, answer) = admin_call("GET", &path, None);
        assert_eq!(status, 200, "role assignments of {user} in {}: {answer}", self.id);
        let mut names: Vec<String> = answer["role_assignments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["role"]["name"].as_str().map(String::from))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Some(m) = self.members.first() {
            purge_keymigrate_secrets(m);
        }
        // Everything is attempted before a failure is reported.
        let mut failed: Vec<String> = self.members.iter().filter_map(|m| delete(&format!("/users/{}", m.id))).collect();
        if self.quota.load(std::sync::atomic::Ordering::SeqCst) {
            // Barbican keeps a project's quota after Keystone deletes the project.
            let (status, answer) = barbican_admin_call("DELETE", &format!("/v1/project-quotas/{}", self.id), None);
            if status != 204 && status != 404 {
                failed.push(format!("DELETE the quota of {}: {status} {answer}", self.id));
            }
        }
        failed.extend(delete(&format!("/projects/{}", self.id)));
        if !failed.is_empty() && !std::thread::panicking() {
            panic!("cleaning up project {}: {}", self.name, failed.join("; "));
        }
    }
}

/// Deletes the `keymigrate-*` secrets of `member`'s project, as Cinder's service user (its
/// `admin` role lets it delete any project's secret); never panics.
fn purge_keymigrate_secrets(member: &Member) {
    let Some(token) = member.token.get().cloned().or_else(|| try_token(&member.name, &member.password, &member.project)) else {
        return;
    };
    let barbican = env("KEYMIGRATE_TEST_BARBICAN_URL");
    // Each pass deletes what the first page lists; a bounded number of passes.
    for _ in 0..20 {
        let url = format!("{barbican}/v1/secrets?name=keymigrate-%25&limit=100");
        let (status, _, body) = raw("GET", &url, Some(&token), None);
        let listed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let refs: Vec<String> = listed["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["secret_ref"].as_str().map(String::from))
            .collect();
        if status != 200 || refs.is_empty() {
            return;
        }
        for r in refs {
            delete_secret(r.rsplit('/').next().unwrap_or_default());
        }
    }
}

/// A global role's ID by name, asked once per process.
fn role_id(name: &str) -> String {
    static ROLES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    if let Some((_, id)) = ROLES.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(n, _)| n == name) {
        return id.clone();
    }
    let (status, answer) = admin_call("GET", &format!("/roles?name={name}"), None);
    assert_eq!(status, 200, "role {name}: {answer}");
    let id = answer["roles"][0]["id"].as_str().unwrap_or_else(|| panic!("no role named {name}: {answer}")).to_string();
    ROLES.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), id.clone()));
    id
}

/// Deletes what a test created (already gone is fine); what went wrong otherwise.
fn delete(path: &str) -> Option<String> {
    let (status, answer) = admin_call("DELETE", path, None);
    (status != 204 && status != 404).then(|| format!("DELETE {path}: {status} {answer}"))
}

/// Sets a row's `project_id` (the seeding helpers write `proj-1`, which Keystone has not).
pub fn set_project(db: &CinderDb, table: &str, id: &str, project: &str) {
    db.exec(&format!("UPDATE {table} SET project_id = {} WHERE id = {}", q(Some(project)), q(Some(id))));
}

/// The role grants keymigrate journalled in a state directory and has not revoked:
/// `<state-dir>/<scope key>/grants/*.json`.
pub fn grant_files(state: &Path) -> Vec<PathBuf> {
    super::walk(state)
        .into_iter()
        .filter(|p| {
            p.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "grants") && p.extension().is_some_and(|x| x == "json")
        })
        .collect()
}

/// The IDs of the secrets named `keymigrate-*` that Barbican lists for `token`'s project.
pub fn keymigrate_secrets(cloud: &Cloud, token: &str) -> Vec<String> {
    cloud.named_like(token, "keymigrate-")
}

/// Secrets to delete however a test ends (a run that fails halfway leaves no litter in the shared
/// Barbican), as Cinder's service user, whose `admin` role lets it delete any project's secret.
pub struct Secrets {
    pub ids: Vec<String>,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets { ids: Vec::new() }
    }

    /// Every key ID of `db`'s rows other than the all-zeros one.
    pub fn of_rows(&mut self, db: &CinderDb) {
        for table in ["volumes", "snapshots", "backups", "volume_glance_metadata"] {
            for (_, key) in db.keys(table) {
                if let Some(k) = key.filter(|k| k != super::ZERO) {
                    if !self.ids.contains(&k) {
                        self.ids.push(k);
                    }
                }
            }
        }
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        for id in &self.ids {
            delete_secret(id);
        }
    }
}
