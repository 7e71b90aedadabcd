//! The ceiling of `bench/migrate.sh`: a migration's per-key HTTP sequence issued by a minimal load
//! generator, with no database, no journal and no retries. Reuses nothing of keymigrate but its
//! dependencies. Every secret is named `keymigrate-volume-<uuid>`, as keymigrate names a volume's.
//!
//!   ceiling --keys K [--concurrency 1,4,8,16] [--sequence SEQ] [--project-ids FILE [--round-robin]]
//!           [--listing-slack 16] [--ids-out FILE] [--acl-user ID]     measure
//!   ceiling --delete-ids FILE [--concurrency 8]                       delete the secrets listed
//!
//! The sequences (`--sequence`, default `service`):
//!   old4     POST the secret, GET its metadata and compare the name, PUT its ACL, GET its payload
//!            and compare: keymigrate's sequence before the batched name check (`--confirm-name`
//!            is the same)
//!   service  POST, GET the payload and compare, the name confirmed by a listing shared with the
//!            keys of the same batch (below), PUT the ACL: `--secret-owner service`
//!   project  POST, GET the payload, the batched listing; no ACL; each key in one of the projects
//!            of `--project-ids`, with a token scoped to it: `--secret-owner project`. The keys
//!            go to the projects in blocks of consecutive keys, as keymigrate dispatches a
//!            project's units side by side so that they share listings; `--round-robin`
//!            interleaves them instead (key i in project i mod P)
//!   cinder   POST and PUT the ACL: Cinder's own migrator's two requests (no read-back, no name
//!            check), a reference
//!
//! The batched listing, as a group commit, as keymigrate's engine does it (src/engine/confirm.rs):
//! a thread that has read its key back adds it to its project's batch; if no listing of that
//! batch is in progress it takes every key waiting and sends
//! `GET /v1/secrets?name=keymigrate-%25&sort=created:desc&limit=<keys + slack, at most 100>` for
//! them (`--listing-slack`, default 16), and checks that each key's secret is listed with its
//! name; the others wait for their key's result (a key that arrived during a listing goes into
//! the next one). A key the listing does not show (it scrolled out of the page: Barbican's
//! `created` has whole seconds, so the secrets of one second come in any order) is asked alone
//! with `GET /v1/secrets/<id>`, as the engine does. The RESULT line gives the mean number of keys
//! per listing (`per_listing=`) and how many keys were asked alone (`alone=`).
//!
//! Credentials come from the environment, never the command line: OS_AUTH_URL (…/v3),
//! OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME (domains: Default) and BARBICAN_URL (versionless).
//! One token per project is fetched from Keystone before the measurement and used for every
//! request there: OS_PROJECT_NAME's, or with `project` one scoped to each ID of `--project-ids`.
//! `--grant-role ROLE` (with `project`): the identity holds no role in the projects, and each
//! measurement's clock also covers what keymigrate's `--secret-owner project` does in Keystone
//! per project, the projects opened `concurrency` at a time before the first key: its role
//! assignments there read (`GET /v3/role_assignments?user.id=…&scope.project.id=…&effective`),
//! ROLE granted (`PUT`), a token scoped to the project fetched and checked
//! (`GET /v3/auth/tokens?nocatalog`), and every grant revoked (`DELETE`) after the last key.
//! `--ids-out` writes one secret ID a line, or `<project ID> <secret ID>` for `project`;
//! `--delete-ids` reads either form, deleting a secret of a given project with a token scoped
//! to that project (OS_PROJECT_NAME is then needed only for lines without a project).

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::Rng;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| die(&format!("{name} is not set")))
}

fn die(msg: &str) -> ! {
    eprintln!("ceiling: {msg}");
    std::process::exit(2)
}

/// User + system CPU of this process, and its peak RSS in KiB.
fn rusage() -> (Duration, u64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as u64)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sequence {
    Old4,
    Service,
    Project,
    Cinder,
}

impl Sequence {
    fn parse(s: &str) -> Sequence {
        match s {
            "old4" => Sequence::Old4,
            "service" => Sequence::Service,
            "project" => Sequence::Project,
            "cinder" => Sequence::Cinder,
            _ => die(&format!("--sequence {s}: one of old4, service, project, cinder")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sequence::Old4 => "old4",
            Sequence::Service => "service",
            Sequence::Project => "project",
            Sequence::Cinder => "cinder",
        }
    }

    fn lists(self) -> bool {
        matches!(self, Sequence::Service | Sequence::Project)
    }
}

/// The project a token is scoped to: OS_PROJECT_NAME's, or one given by ID.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Scope {
    Named(String),
    Id(String),
}

/// Why a key failed, and the secret it left behind (to delete), if any.
type KeyError = (Option<String>, String);

struct Client {
    agent: ureq::Agent,
    /// `…/v1`
    base: String,
}

/// Sent on every Barbican request, as keymigrate does.
const VERSION: (&str, &str) = ("OpenStack-API-Version", "key-manager 1.1");

impl Client {
    fn new(concurrency: usize) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .max_idle_connections_per_host(concurrency.max(1) * 2)
            // The same headers as keymigrate: no Accept (Barbican's content negotiation costs it
            // CPU per request), the key-manager microversion on every Barbican request.
            .accept("")
            .build()
            .into();
        let base = format!("{}/v1", env("BARBICAN_URL").trim_end_matches('/'));
        Client { agent, base }
    }

    /// A token of OS_USERNAME scoped to `scope`.
    fn token(&self, scope: &Scope) -> String {
        let project = match scope {
            Scope::Named(name) => serde_json::json!({"name": name, "domain": {"name": "Default"}}),
            Scope::Id(id) => serde_json::json!({"id": id}),
        };
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": env("OS_USERNAME"), "domain": {"name": "Default"}, "password": env("OS_PASSWORD")}}},
            "scope": {"project": project}}});
        let auth_url = env("OS_AUTH_URL");
        let r = self
            .agent
            .post(format!("{}/auth/tokens", auth_url.trim_end_matches('/')))
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(&body).unwrap())
            .unwrap_or_else(|e| die(&format!("keystone: {e}")));
        if r.status() != 201 {
            die(&format!("keystone: HTTP {} for a token scoped to {project}", r.status()));
        }
        r.headers().get("X-Subject-Token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    }

    /// A Keystone request with `token`; the status and the JSON answer (`null` if none).
    fn keystone(&self, method: &str, path: &str, token: &str, subject: Option<&str>) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", env("OS_AUTH_URL").trim_end_matches('/'));
        let mut req = ureq::http::Request::builder().method(method).uri(&url).header("X-Auth-Token", token);
        if let Some(subject) = subject {
            req = req.header("X-Subject-Token", subject);
        }
        let req = req.body(()).unwrap_or_else(|e| die(&format!("keystone {method} {path}: {e}")));
        let mut r = self.agent.run(req).unwrap_or_else(|e| die(&format!("keystone {method} {path}: {e}")));
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }

    /// Opens `project` as keymigrate does for an identity with no role there: reads its role
    /// assignments, grants `role`, fetches a token scoped to the project and checks it. The token.
    fn open_project(&self, admin: &str, user: &str, role: &str, project: &str) -> String {
        let (status, _) = self.keystone("GET", &format!("/role_assignments?user.id={user}&scope.project.id={project}&effective"), admin, None);
        if status != 200 {
            die(&format!("keystone: HTTP {status} reading the role assignments in {project}"));
        }
        let (status, _) = self.keystone("PUT", &format!("/projects/{project}/users/{user}/roles/{role}"), admin, None);
        if status != 204 && status != 201 {
            die(&format!("keystone: HTTP {status} granting the role in {project}"));
        }
        let token = self.token(&Scope::Id(project.to_string()));
        let (status, seen) = self.keystone("GET", "/auth/tokens?nocatalog", admin, Some(&token));
        if status != 200 || seen["token"]["project"]["id"].as_str() != Some(project) {
            die(&format!("keystone: HTTP {status} checking the token scoped to {project}"));
        }
        token
    }

    fn revoke(&self, admin: &str, user: &str, role: &str, project: &str) {
        let (status, _) = self.keystone("DELETE", &format!("/projects/{project}/users/{user}/roles/{role}"), admin, None);
        if status != 204 {
            die(&format!("keystone: HTTP {status} revoking the role in {project}"));
        }
    }

    /// POST a secret holding 32 random bytes; its ID and the bytes.
    fn store(&self, token: &str, name: &str) -> Result<(String, [u8; 32]), KeyError> {
        let key: [u8; 32] = rand::rng().random();
        let body = serde_json::json!({
            "name": name, "algorithm": "AES", "bit_length": 256, "secret_type": "symmetric",
            "payload": base64::engine::general_purpose::STANDARD.encode(key),
            "payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"});
        let mut r = self
            .agent
            .post(format!("{}/secrets", self.base))
            .header("X-Auth-Token", token)
            .header(VERSION.0, VERSION.1)
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(&body).unwrap())
            .map_err(|e| (None, format!("POST: {e}")))?;
        if r.status() != 201 {
            return Err((None, format!("POST: HTTP {}", r.status())));
        }
        let raw = r.body_mut().read_to_vec().map_err(|e| (None, format!("POST answer: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| (None, format!("POST answer: {e}")))?;
        let id = v["secret_ref"].as_str().and_then(|s| s.rsplit('/').next()).unwrap_or_default().to_string();
        Ok((id, key))
    }

    /// GET the secret's metadata and compare its name (the old per-key name check).
    fn check_name(&self, token: &str, id: &str, name: &str) -> Result<(), String> {
        let mut r = self
            .agent
            .get(format!("{}/secrets/{id}", self.base))
            .header("X-Auth-Token", token)
            .header(VERSION.0, VERSION.1)
            .call()
            .map_err(|e| format!("GET secret: {e}"))?;
        let raw = r.body_mut().read_to_vec().map_err(|e| format!("GET secret: {e}"))?;
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| format!("GET secret: {e}"))?;
        if r.status() != 200 || v["name"].as_str() != Some(name) {
            return Err(format!("GET secret: HTTP {}, name {}", r.status(), v["name"]));
        }
        Ok(())
    }

    fn put_acl(&self, token: &str, id: &str, acl_user: &str) -> Result<(), String> {
        let acl = serde_json::json!({"read": {"users": [acl_user], "project-access": true}});
        let mut r = self
            .agent
            .put(format!("{}/secrets/{id}/acl", self.base))
            .header("X-Auth-Token", token)
            .header(VERSION.0, VERSION.1)
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(&acl).unwrap())
            .map_err(|e| format!("PUT acl: {e}"))?;
        let _ = r.body_mut().read_to_vec();
        if r.status() != 200 && r.status() != 201 {
            return Err(format!("PUT acl: HTTP {}", r.status()));
        }
        Ok(())
    }

    /// GET the payload back (no Accept header) and compare it with the key stored.
    fn read_back(&self, token: &str, id: &str, key: &[u8]) -> Result<(), String> {
        let mut r = self
            .agent
            .get(format!("{}/secrets/{id}/payload", self.base))
            .header("X-Auth-Token", token)
            .header(VERSION.0, VERSION.1)
            .call()
            .map_err(|e| format!("GET payload: {e}"))?;
        let got = r.body_mut().read_to_vec().map_err(|e| format!("GET payload: {e}"))?;
        if r.status() != 200 || got != key {
            return Err(format!("GET payload: HTTP {}, {} bytes, equal={}", r.status(), got.len(), got == key));
        }
        Ok(())
    }

    /// The newest `limit` secrets named `keymigrate-…` of the token's project: ID → name.
    fn list_newest(&self, token: &str, limit: usize) -> Result<HashMap<String, String>, String> {
        let mut r = self
            .agent
            .get(format!("{}/secrets?name=keymigrate-%25&sort=created:desc&limit={limit}", self.base))
            .header("X-Auth-Token", token)
            .header(VERSION.0, VERSION.1)
            .call()
            .map_err(|e| format!("GET secrets: {e}"))?;
        let raw = r.body_mut().read_to_vec().map_err(|e| format!("GET secrets: {e}"))?;
        if r.status() != 200 {
            return Err(format!("GET secrets: HTTP {}", r.status()));
        }
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| format!("GET secrets: {e}"))?;
        let listed = v["secrets"].as_array().ok_or("GET secrets: no secrets array")?;
        Ok(listed
            .iter()
            .filter_map(|s| {
                let id = s["secret_ref"].as_str()?.rsplit('/').next()?.to_string();
                Some((id, s["name"].as_str().unwrap_or_default().to_string()))
            })
            .collect())
    }

    fn delete(&self, token: &str, id: &str) -> bool {
        match self.agent.delete(format!("{}/secrets/{id}", self.base)).header("X-Auth-Token", token).call() {
            Ok(mut r) => {
                let _ = r.body_mut().read_to_vec();
                r.status() == 204 || r.status() == 404
            }
            Err(_) => false,
        }
    }
}

/// The keys of one project waiting for the listing that confirms their names.
#[derive(Default)]
struct Batch {
    state: Mutex<BatchState>,
    listed: Condvar,
}

#[derive(Default)]
struct BatchState {
    next_ticket: u64,
    /// Keys read back and not yet in a listing: (ticket, secret ID, name).
    waiting: Vec<(u64, String, String)>,
    listing: bool,
    /// Outcomes not yet taken by their thread.
    done: HashMap<u64, Listed>,
    listings: usize,
    keys_listed: usize,
    /// Keys a listing did not show, confirmed with a GET of their own.
    alone: usize,
}

/// What a listing said about one key.
enum Listed {
    Confirmed,
    /// Not in the page (or the listing failed): ask for it alone.
    Unlisted,
    Refused(String),
}

impl Batch {
    /// `Ok` once secret `id` is known to be named `name`: by a listing, sent by this thread
    /// when none is in progress, or else by a GET of its own.
    fn confirm(&self, client: &Client, token: &str, slack: usize, id: &str, name: &str) -> Result<(), String> {
        match self.listed(client, token, slack, id, name) {
            Listed::Confirmed => Ok(()),
            Listed::Refused(why) => Err(why),
            Listed::Unlisted => {
                self.state.lock().unwrap().alone += 1;
                client.check_name(token, id, name)
            }
        }
    }

    fn listed(&self, client: &Client, token: &str, slack: usize, id: &str, name: &str) -> Listed {
        let mut s = self.state.lock().unwrap();
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.waiting.push((ticket, id.to_string(), name.to_string()));
        loop {
            if let Some(outcome) = s.done.remove(&ticket) {
                return outcome;
            }
            if s.listing {
                s = self.listed.wait(s).unwrap();
                continue;
            }
            s.listing = true;
            let keys = std::mem::take(&mut s.waiting);
            drop(s);
            let limit = (keys.len() + slack).min(100);
            let listed = client.list_newest(token, limit);
            s = self.state.lock().unwrap();
            s.listings += 1;
            s.keys_listed += keys.len();
            for (t, id, name) in keys {
                let outcome = match &listed {
                    Err(_) => Listed::Unlisted,
                    Ok(listed) => match listed.get(&id) {
                        Some(n) if *n == name => Listed::Confirmed,
                        Some(n) => Listed::Refused(format!("listing: secret {id} is named {n:?}, not {name:?}")),
                        None => Listed::Unlisted,
                    },
                };
                s.done.insert(t, outcome);
            }
            s.listing = false;
            self.listed.notify_all();
        }
    }
}

/// One measurement: the sequence, and per project its token and batch.
struct Run<'a> {
    client: &'a Client,
    sequence: Sequence,
    acl_user: &'a str,
    slack: usize,
    /// Key `n` in project `n mod P` instead of in blocks of consecutive keys.
    round_robin: bool,
    keys: usize,
    /// (project ID or None for OS_PROJECT_NAME's, token)
    projects: &'a [(Option<String>, String)],
    batches: Vec<Batch>,
}

impl Run<'_> {
    /// Key `n`'s whole sequence; the secret's ID (and project, for `project`) when every step
    /// succeeded.
    fn one_key(&self, n: usize) -> Result<String, KeyError> {
        let p = if self.round_robin { n % self.projects.len() } else { n * self.projects.len() / self.keys.max(1) };
        let (project, token) = &self.projects[p];
        let name = format!("keymigrate-volume-{}", uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid());
        let (id, key) = self.client.store(token, &name)?;
        let label = match project {
            Some(project) => format!("{project} {id}"),
            None => id.clone(),
        };
        let fail = |m: String| (Some(label.clone()), m);
        match self.sequence {
            Sequence::Old4 => {
                self.client.check_name(token, &id, &name).map_err(fail)?;
                self.client.put_acl(token, &id, self.acl_user).map_err(fail)?;
                self.client.read_back(token, &id, &key).map_err(fail)?;
            }
            Sequence::Service | Sequence::Project => {
                self.client.read_back(token, &id, &key).map_err(fail)?;
                self.batches[p].confirm(self.client, token, self.slack, &id, &name).map_err(fail)?;
                if self.sequence == Sequence::Service {
                    self.client.put_acl(token, &id, self.acl_user).map_err(fail)?;
                }
            }
            Sequence::Cinder => self.client.put_acl(token, &id, self.acl_user).map_err(fail)?,
        }
        Ok(label)
    }

    /// Listings sent, keys they were sent for, and keys then asked alone, over every project.
    fn listings(&self) -> (usize, usize, usize) {
        self.batches.iter().fold((0, 0, 0), |(l, k, a), b| {
            let s = b.state.lock().unwrap();
            (l + s.listings, k + s.keys_listed, a + s.alone)
        })
    }
}

/// Runs `f(i)` for i in 0..n on `threads` threads.
fn fan_out(n: usize, threads: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                f(i);
            });
        }
    });
}

/// Deletes the secrets `file` lists (`<id>` or `<project ID> <id>` lines), each with a token of
/// its project; exits 0 when every one is gone.
fn delete_ids(file: &str, threads: usize) -> ! {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| die(&format!("{file}: {e}")));
    let entries: Vec<(Scope, &str)> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [] => None,
                [id] => Some((Scope::Named(env("OS_PROJECT_NAME")), id)),
                [project, id] => Some((Scope::Id(project.to_string()), id)),
                _ => die(&format!("{file}: {line:?} is neither <id> nor <project> <id>")),
            }
        })
        .collect();
    let client = Client::new(threads);
    let mut tokens: HashMap<Scope, String> = HashMap::new();
    for (scope, _) in &entries {
        if !tokens.contains_key(scope) {
            tokens.insert(scope.clone(), client.token(scope));
        }
    }
    let failed = AtomicUsize::new(0);
    let t = Instant::now();
    fan_out(entries.len(), threads, |i| {
        let (scope, id) = &entries[i];
        if !client.delete(&tokens[scope], id) {
            failed.fetch_add(1, Ordering::SeqCst);
        }
    });
    let failed = failed.load(Ordering::SeqCst);
    println!(
        "deleted {} secret(s) in {} project(s) in {:.1} s, {failed} failed",
        entries.len() - failed,
        tokens.len(),
        t.elapsed().as_secs_f64()
    );
    std::process::exit(if failed == 0 { 0 } else { 1 })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut keys = 100usize;
    let mut levels: Vec<usize> = vec![1, 4, 8, 16];
    let mut ids_out: Option<String> = None;
    let mut delete_file: Option<String> = None;
    let mut project_ids: Option<String> = None;
    let mut acl_user = "ceiling-user".to_string();
    let mut sequence = Sequence::Service;
    let mut slack = 16usize;
    let mut round_robin = false;
    let mut grant_role: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| die(&format!("{a} needs a value")));
        match a.as_str() {
            "--keys" => keys = val().parse().unwrap_or_else(|_| die("--keys: not a number")),
            "--concurrency" => {
                levels = val().split([',', ' ']).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or_else(|_| die("--concurrency: not a number"))).collect()
            }
            "--ids-out" => ids_out = Some(val()),
            "--delete-ids" => delete_file = Some(val()),
            "--project-ids" => project_ids = Some(val()),
            "--acl-user" => acl_user = val(),
            "--sequence" => sequence = Sequence::parse(&val()),
            "--confirm-name" => sequence = Sequence::Old4,
            "--round-robin" => round_robin = true,
            "--grant-role" => grant_role = Some(val()),
            "--listing-slack" => slack = val().parse().unwrap_or_else(|_| die("--listing-slack: not a number")),
            "-h" | "--help" => {
                eprintln!(
                    "usage: ceiling --keys K [--concurrency 1,4,8,16] [--sequence old4|service|project|cinder]\n                \
                     [--project-ids FILE [--round-robin] [--grant-role ROLE]] [--listing-slack 16]\n                [--ids-out FILE] [--acl-user ID]\n       \
                     ceiling --delete-ids FILE [--concurrency 8]"
                );
                return;
            }
            other => die(&format!("unknown argument {other}")),
        }
    }
    if levels.is_empty() || levels.contains(&0) {
        die("--concurrency: one or more numbers above 0");
    }

    if let Some(file) = delete_file {
        delete_ids(&file, if levels.len() == 1 { levels[0] } else { 8 });
    }

    let max = levels.iter().copied().max().unwrap_or(1);
    let client = Client::new(max);
    let projects: Vec<(Option<String>, String)> = match (sequence, &project_ids) {
        (Sequence::Project, Some(file)) => {
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| die(&format!("{file}: {e}")));
            let ids: Vec<String> = text.split_whitespace().map(String::from).collect();
            if ids.is_empty() {
                die(&format!("{file}: no project ID"));
            }
            if grant_role.is_some() {
                // Opened inside each measurement's clock.
                ids.into_iter().map(|id| (Some(id), String::new())).collect()
            } else {
                ids.into_iter().map(|id| (Some(id.clone()), client.token(&Scope::Id(id)))).collect()
            }
        }
        (Sequence::Project, None) => die("--sequence project needs --project-ids FILE"),
        (_, Some(_)) => die("--project-ids is for --sequence project"),
        (_, None) if grant_role.is_some() => die("--grant-role is for --sequence project"),
        (_, None) => vec![(None, client.token(&Scope::Named(env("OS_PROJECT_NAME"))))],
    };
    // With --grant-role: the identity's own token (OS_PROJECT_NAME), its user ID and the role's ID.
    let granting = grant_role.as_ref().map(|name| {
        let admin = client.token(&Scope::Named(env("OS_PROJECT_NAME")));
        let (_, seen) = client.keystone("GET", "/auth/tokens?nocatalog", &admin, Some(&admin));
        let user = seen["token"]["user"]["id"].as_str().unwrap_or_else(|| die("keystone: no user ID in the token")).to_string();
        let (_, roles) = client.keystone("GET", &format!("/roles?name={name}"), &admin, None);
        let role = roles["roles"][0]["id"].as_str().unwrap_or_else(|| die(&format!("keystone: no role {name}"))).to_string();
        (admin, user, role)
    });
    let label = if granting.is_some() { "project+keystone" } else { sequence.name() };
    let created = Mutex::new(Vec::<String>::new());
    // concurrency, keys/s, wall, cpu ms/key, keys per listing, keys asked alone
    let mut best: Option<(usize, f64, f64, f64, f64, usize)> = None;
    let mut total_errors = 0usize;
    for &c in &levels {
        let (cpu0, _) = rusage();
        let t = Instant::now();
        let projects: Vec<(Option<String>, String)> = match &granting {
            Some((admin, user, role)) => {
                let tokens: Vec<Mutex<String>> = projects.iter().map(|_| Mutex::new(String::new())).collect();
                fan_out(projects.len(), c, |i| {
                    let token = client.open_project(admin, user, role, projects[i].0.as_deref().unwrap_or_default());
                    *tokens[i].lock().unwrap() = token;
                });
                projects.iter().zip(tokens).map(|((p, _), t)| (p.clone(), t.into_inner().unwrap())).collect()
            }
            None => projects.clone(),
        };
        let run = Run {
            client: &client,
            sequence,
            acl_user: &acl_user,
            slack,
            round_robin,
            keys,
            projects: &projects,
            batches: projects.iter().map(|_| Batch::default()).collect(),
        };
        let errors = AtomicUsize::new(0);
        let first_error = Mutex::new(None::<String>);
        fan_out(keys, c, |i| match run.one_key(i) {
            Ok(id) => created.lock().unwrap().push(id),
            Err((id, m)) => {
                errors.fetch_add(1, Ordering::SeqCst);
                first_error.lock().unwrap().get_or_insert(m);
                if let Some(id) = id {
                    created.lock().unwrap().push(id);
                }
            }
        });
        if let Some((admin, user, role)) = &granting {
            fan_out(projects.len(), c, |i| client.revoke(admin, user, role, projects[i].0.as_deref().unwrap_or_default()));
        }
        let wall = t.elapsed().as_secs_f64();
        let (cpu1, _) = rusage();
        let errors = errors.load(Ordering::SeqCst);
        total_errors += errors;
        let ok = keys - errors;
        let rate = ok as f64 / wall;
        let cpu_ms = (cpu1 - cpu0).as_secs_f64() * 1000.0 / keys.max(1) as f64;
        let (listings, listed, alone) = run.listings();
        let per_listing = if listings > 0 { listed as f64 / listings as f64 } else { 0.0 };
        let listing_note = if sequence.lists() {
            format!(", {listings} listing(s), {per_listing:.2} keys each, {alone} asked alone")
        } else {
            String::new()
        };

        println!(
            "ceiling {label} concurrency {c:>2}: {ok} keys in {wall:.2} s = {rate:.1} keys/s, client CPU {cpu_ms:.2} ms/key{listing_note}, {errors} error(s){}",
            first_error.lock().unwrap().as_ref().map(|m| format!(" (first: {m})")).unwrap_or_default()
        );
        if best.is_none_or(|b| rate > b.1) {
            best = Some((c, rate, wall, cpu_ms, per_listing, alone));
        }
    }
    let (_, rss_kib) = rusage();
    if let Some(path) = ids_out {
        let mut f = std::fs::File::create(&path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
        for id in created.lock().unwrap().iter() {
            let _ = writeln!(f, "{id}");
        }
    }
    let (c, rate, wall, cpu_ms, per_listing, alone) = best.unwrap_or_default();
    let per_listing = if sequence.lists() { format!("{per_listing:.2}") } else { "-".to_string() };
    // One machine-readable line for bench/migrate.sh: the best concurrency's figures.
    println!(
        "RESULT contender=ceiling sequence={label} concurrency={c} keys={keys} keys_per_s={rate:.2} wall_s={wall:.2} cpu_ms_per_key={cpu_ms:.3} rss_mb={:.1} errors={total_errors} per_listing={per_listing} alone={alone} projects={}",
        rss_kib as f64 / 1024.0,
        projects.len()
    );
}
