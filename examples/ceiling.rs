//! The ceiling of `bench/migrate.sh`: the per-key HTTP sequence of a migration (POST a secret,
//! with `--confirm-name` GET its metadata and compare the name, PUT its ACL, GET its payload back
//! and compare) issued by a minimal load generator, with no database, no journal and no retries.
//! Reuses nothing of keymigrate but its dependencies.
//!
//!   ceiling --keys K [--concurrency 1,4,8,16] [--ids-out FILE] [--confirm-name]   measure
//!   ceiling --delete-ids FILE [--concurrency 8]                   delete the secrets listed
//!
//! Credentials come from the environment, never the command line: OS_AUTH_URL (…/v3),
//! OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME (domains: Default) and BARBICAN_URL (versionless).
//! One token is fetched from Keystone at the start and used for every request.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
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

struct Client {
    agent: ureq::Agent,
    token: String,
    /// `…/v1`
    base: String,
    /// Also GET each stored secret's metadata and compare its name, as keymigrate does.
    confirm_name: bool,
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
        let auth_url = env("OS_AUTH_URL");
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": env("OS_USERNAME"), "domain": {"name": "Default"}, "password": env("OS_PASSWORD")}}},
            "scope": {"project": {"name": env("OS_PROJECT_NAME"), "domain": {"name": "Default"}}}}});
        let r = agent
            .post(format!("{}/auth/tokens", auth_url.trim_end_matches('/')))
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(&body).unwrap())
            .unwrap_or_else(|e| die(&format!("keystone: {e}")));
        if r.status() != 201 {
            die(&format!("keystone: HTTP {}", r.status()));
        }
        let token = r.headers().get("X-Subject-Token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let base = format!("{}/v1", env("BARBICAN_URL").trim_end_matches('/'));
        Client { agent, token, base, confirm_name: false }
    }

    /// POST, PUT acl, GET payload; the secret's id when every step succeeded.
    fn one_key(&self, n: usize, acl_user: &str) -> Result<String, (Option<String>, String)> {
        let key: [u8; 32] = rand::rng().random();
        let body = serde_json::json!({
            "name": format!("ceiling-{n}"), "algorithm": "AES", "bit_length": 256, "secret_type": "symmetric",
            "payload": base64::engine::general_purpose::STANDARD.encode(key),
            "payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"});
        let mut r = self
            .agent
            .post(format!("{}/secrets", self.base))
            .header("X-Auth-Token", &self.token)
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
        let fail = |m: String| (Some(id.clone()), m);
        if self.confirm_name {
            // keymigrate's check that the secret_ref names the secret just stored.
            let mut r = self
                .agent
                .get(format!("{}/secrets/{id}", self.base))
                .header("X-Auth-Token", &self.token)
                .header(VERSION.0, VERSION.1)
                .call()
                .map_err(|e| fail(format!("GET secret: {e}")))?;
            let raw = r.body_mut().read_to_vec().map_err(|e| fail(format!("GET secret: {e}")))?;
            let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| fail(format!("GET secret: {e}")))?;
            if r.status() != 200 || v["name"].as_str() != Some(format!("ceiling-{n}").as_str()) {
                return Err(fail(format!("GET secret: HTTP {}, name {}", r.status(), v["name"])));
            }
        }
        let acl = serde_json::json!({"read": {"users": [acl_user], "project-access": true}});
        let mut r = self
            .agent
            .put(format!("{}/secrets/{id}/acl", self.base))
            .header("X-Auth-Token", &self.token)
            .header(VERSION.0, VERSION.1)
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(&acl).unwrap())
            .map_err(|e| fail(format!("PUT acl: {e}")))?;
        let _ = r.body_mut().read_to_vec();
        if r.status() != 200 && r.status() != 201 {
            return Err(fail(format!("PUT acl: HTTP {}", r.status())));
        }
        let mut r = self
            .agent
            .get(format!("{}/secrets/{id}/payload", self.base))
            .header("X-Auth-Token", &self.token)
            .header(VERSION.0, VERSION.1)
            .call()
            .map_err(|e| fail(format!("GET payload: {e}")))?;
        let got = r.body_mut().read_to_vec().map_err(|e| fail(format!("GET payload: {e}")))?;
        if r.status() != 200 || got != key {
            return Err(fail(format!("GET payload: HTTP {}, {} bytes, equal={}", r.status(), got.len(), got == key)));
        }
        Ok(id)
    }

    fn delete(&self, id: &str) -> bool {
        match self.agent.delete(format!("{}/secrets/{id}", self.base)).header("X-Auth-Token", &self.token).call() {
            Ok(mut r) => {
                let _ = r.body_mut().read_to_vec();
                r.status() == 204 || r.status() == 404
            }
            Err(_) => false,
        }
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut keys = 100usize;
    let mut levels: Vec<usize> = vec![1, 4, 8, 16];
    let mut ids_out: Option<String> = None;
    let mut delete_ids: Option<String> = None;
    let mut acl_user = "ceiling-user".to_string();
    let mut confirm_name = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| die(&format!("{a} needs a value")));
        match a.as_str() {
            "--keys" => keys = val().parse().unwrap_or_else(|_| die("--keys: not a number")),
            "--concurrency" => {
                levels = val().split([',', ' ']).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or_else(|_| die("--concurrency: not a number"))).collect()
            }
            "--ids-out" => ids_out = Some(val()),
            "--delete-ids" => delete_ids = Some(val()),
            "--acl-user" => acl_user = val(),
            "--confirm-name" => confirm_name = true,
            "-h" | "--help" => {
                eprintln!("usage: ceiling --keys K [--concurrency 1,4,8,16] [--ids-out FILE] [--acl-user ID] [--confirm-name]\n       ceiling --delete-ids FILE [--concurrency 8]");
                return;
            }
            other => die(&format!("unknown argument {other}")),
        }
    }

    if let Some(file) = delete_ids {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| die(&format!("{file}: {e}")));
        let ids: Vec<&str> = text.split_whitespace().collect();
        let threads = if levels.len() == 1 { levels[0] } else { 8 };
        let client = Client::new(threads);
        let failed = AtomicUsize::new(0);
        let t = Instant::now();
        fan_out(ids.len(), threads, |i| {
            if !client.delete(ids[i]) {
                failed.fetch_add(1, Ordering::SeqCst);
            }
        });
        let failed = failed.load(Ordering::SeqCst);
        println!("deleted {} secret(s) in {:.1} s, {failed} failed", ids.len() - failed, t.elapsed().as_secs_f64());
        std::process::exit(if failed == 0 { 0 } else { 1 });
    }

    let max = levels.iter().copied().max().unwrap_or(1);
    let mut client = Client::new(max);
    client.confirm_name = confirm_name;
    let created = Mutex::new(Vec::<String>::new());
    let mut best: Option<(usize, f64, f64, f64)> = None; // concurrency, keys/s, wall, cpu ms/key
    let mut total_errors = 0usize;
    for &c in &levels {
        let errors = AtomicUsize::new(0);
        let first_error = Mutex::new(None::<String>);
        let (cpu0, _) = rusage();
        let t = Instant::now();
        fan_out(keys, c, |i| match client.one_key(i, &acl_user) {
            Ok(id) => created.lock().unwrap().push(id),
            Err((id, m)) => {
                errors.fetch_add(1, Ordering::SeqCst);
                first_error.lock().unwrap().get_or_insert(m);
                if let Some(id) = id {
                    created.lock().unwrap().push(id);
                }
            }
        });
        let wall = t.elapsed().as_secs_f64();
        let (cpu1, _) = rusage();
        let errors = errors.load(Ordering::SeqCst);
        total_errors += errors;
        let ok = keys - errors;
        let rate = ok as f64 / wall;
        let cpu_ms = (cpu1 - cpu0).as_secs_f64() * 1000.0 / keys.max(1) as f64;
        println!(
            "ceiling concurrency {c:>2}: {ok} keys in {wall:.2} s = {rate:.1} keys/s, client CPU {cpu_ms:.2} ms/key, {errors} error(s){}",
            first_error.lock().unwrap().as_ref().map(|m| format!(" (first: {m})")).unwrap_or_default()
        );
        if best.is_none_or(|b| rate > b.1) {
            best = Some((c, rate, wall, cpu_ms));
        }
    }
    let (_, rss_kib) = rusage();
    if let Some(path) = ids_out {
        let mut f = std::fs::File::create(&path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
        for id in created.lock().unwrap().iter() {
            let _ = writeln!(f, "{id}");
        }
    }
    let (c, rate, wall, cpu_ms) = best.unwrap_or_default();
    // One machine-readable line for bench/migrate.sh.
    println!(
        "RESULT contender=ceiling concurrency={c} keys={keys} keys_per_s={rate:.2} wall_s={wall:.2} cpu_ms_per_key={cpu_ms:.3} rss_mb={:.1} errors={total_errors}",
        rss_kib as f64 / 1024.0
    );
}
