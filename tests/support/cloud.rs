//! A client for the real Keystone and Barbican on loopback, used by tests to check what
//! keymigrate left behind: through Barbican's API, as the service user and as the owner.

#![allow(dead_code)]

use serde_json::{json, Value};

use super::env;

pub struct Cloud {
    agent: ureq::Agent,
    pub keystone: String,
    pub barbican: String,
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Cloud {
    pub fn new() -> Cloud {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build();
        Cloud {
            agent: ureq::Agent::new_with_config(config),
            keystone: env("KEYMIGRATE_TEST_KEYSTONE_URL"),
            barbican: env("KEYMIGRATE_TEST_BARBICAN_URL"),
        }
    }

    fn send(&self, method: &str, url: &str, token: Option<&str>, body: Option<&Value>, accept: Option<&str>) -> (Reply, Option<String>) {
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        if let Some(t) = token {
            req = req.header("X-Auth-Token", t);
        }
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let result = match body {
            Some(b) => self.agent.run(
                req.header("Content-Type", "application/json").body(serde_json::to_vec(b).expect("json")).expect("request"),
            ),
            None => self.agent.run(req.body(()).expect("request")),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let token = resp.headers().get("X-Subject-Token").and_then(|v| v.to_str().ok()).map(String::from);
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_vec().unwrap_or_default();
        (Reply { status, body }, token)
    }

    /// A project-scoped token for a user of the Default domain.
    pub fn token(&self, user: &str, password: &str, project: &str) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
        let (reply, token) = self.send("POST", &format!("{}/auth/tokens", self.keystone), None, Some(&body), None);
        assert_eq!(reply.status, 201, "token for {user}: {}", String::from_utf8_lossy(&reply.body));
        token.expect("X-Subject-Token")
    }

    pub fn cinder(&self) -> String {
        self.token(&env("KEYMIGRATE_TEST_CINDER_USER"), &env("KEYMIGRATE_TEST_CINDER_PASSWORD"), &env("KEYMIGRATE_TEST_CINDER_PROJECT"))
    }

    pub fn alice(&self) -> String {
        self.token("alice", &env("KEYMIGRATE_TEST_ALICE_PASSWORD"), "demo")
    }

    pub fn bob(&self) -> String {
        self.token("bob", &env("KEYMIGRATE_TEST_BOB_PASSWORD"), "demo")
    }

    /// Creates a user of the Default domain with only `role` on `project`, as Keystone's admin.
    /// Returns the user's id.
    pub fn create_user(&self, name: &str, password: &str, project: &str, role: &str) -> String {
        let admin = self.token("admin", &env("KEYMIGRATE_TEST_ADMIN_PASSWORD"), "admin");
        let body = json!({"user": {"name": name, "password": password, "domain_id": "default"}});
        let (r, _) = self.send("POST", &format!("{}/users", self.keystone), Some(&admin), Some(&body), None);
        assert_eq!(r.status, 201, "create user: {}", String::from_utf8_lossy(&r.body));
        let user = r.json()["user"]["id"].as_str().unwrap_or_default().to_string();
        let first_id = |path: &str, key: &str| {
            let (r, _) = self.send("GET", &format!("{}/{path}", self.keystone), Some(&admin), None, None);
            r.json()[key][0]["id"].as_str().unwrap_or_default().to_string()
        };
        let role_id = first_id(&format!("roles?name={role}"), "roles");
        let project_id = first_id(&format!("projects?name={project}"), "projects");
        let url = format!("{}/projects/{project_id}/users/{user}/roles/{role_id}", self.keystone);
        let (r, _) = self.send("PUT", &url, Some(&admin), None, None);
        assert_eq!(r.status, 204, "assign role: {}", String::from_utf8_lossy(&r.body));
        user
    }

    pub fn delete_user(&self, id: &str) {
        let admin = self.token("admin", &env("KEYMIGRATE_TEST_ADMIN_PASSWORD"), "admin");
        self.send("DELETE", &format!("{}/users/{id}", self.keystone), Some(&admin), None, None);
    }

    pub fn payload(&self, token: &str, id: &str) -> Reply {
        self.send("GET", &format!("{}/v1/secrets/{id}/payload", self.barbican), Some(token), None, Some("application/octet-stream")).0
    }

    pub fn metadata(&self, token: &str, id: &str) -> Value {
        let (r, _) = self.send("GET", &format!("{}/v1/secrets/{id}", self.barbican), Some(token), None, None);
        assert_eq!(r.status, 200, "secret {id}: {}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    pub fn acl_users(&self, token: &str, id: &str) -> Vec<String> {
        let (r, _) = self.send("GET", &format!("{}/v1/secrets/{id}/acl", self.barbican), Some(token), None, None);
        assert_eq!(r.status, 200);
        r.json()["read"]["users"].as_array().map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect()).unwrap_or_default()
    }

    /// IDs of the service project's secrets named exactly `name`.
    pub fn named(&self, token: &str, name: &str) -> Vec<String> {
        self.listed(token, name, |n| n == name)
    }

    /// IDs of the service project's secrets whose name starts with `prefix` (keymigrate adds a
    /// random tag per attempt to the row's name).
    pub fn named_like(&self, token: &str, prefix: &str) -> Vec<String> {
        self.listed(token, &format!("{prefix}%25"), |n| n.starts_with(prefix))
    }

    fn listed(&self, token: &str, query: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let url = format!("{}/v1/secrets?name={query}&limit=100&offset={offset}", self.barbican);
            let (r, _) = self.send("GET", &url, Some(token), None, None);
            assert_eq!(r.status, 200, "list: {}", String::from_utf8_lossy(&r.body));
            let v = r.json();
            let page = v["secrets"].as_array().cloned().unwrap_or_default();
            for s in &page {
                if s["name"].as_str().is_some_and(&keep) {
                    let r = s["secret_ref"].as_str().unwrap_or_default();
                    out.push(r.rsplit('/').next().unwrap_or_default().to_string());
                }
            }
            if page.is_empty() || v["next"].is_null() {
                return out;
            }
            offset += page.len();
        }
    }

    pub fn delete(&self, token: &str, id: &str) -> u16 {
        self.send("DELETE", &format!("{}/v1/secrets/{id}", self.barbican), Some(token), None, None).0.status
    }

    /// Stores a secret directly (to plant look-alike leftovers).
    pub fn store(&self, token: &str, name: &str, payload_b64: &str, bits: usize) -> String {
        let body = json!({"name": name, "algorithm": "AES", "bit_length": bits, "secret_type": "symmetric",
            "payload": payload_b64, "payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"});
        let (r, _) = self.send("POST", &format!("{}/v1/secrets", self.barbican), Some(token), Some(&body), None);
        assert_eq!(r.status, 201, "store: {}", String::from_utf8_lossy(&r.body));
        r.json()["secret_ref"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string()
    }
}
