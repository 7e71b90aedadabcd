//! `migrate` against the real Keystone and Barbican, on every database backend: every migrated
//! row's secret holds the key's exact bytes and is readable by the row's owner; untouched rows are
//! untouched; interrupted and concurrent runs leave exactly one secret per row.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::cloud::Cloud;
use crate::support::*;

/// A cloud-shaped database for one host: what each row is expected to become.
pub struct Fixture {
    pub db: CinderDb,
    pub w: Workdir,
    pub key: String,
    pub conf: std::path::PathBuf,
    pub state: std::path::PathBuf,
    alice: String,
    bob: String,
    /// Rows that must end up migrated: (table, id) → owner.
    pub migrated: BTreeMap<(String, String), String>,
    /// Rows that must end up exactly as seeded: (table, id) → key.
    untouched: BTreeMap<(String, String), Option<String>>,
    /// Rows that must share another row's secret: (table, id) → (table, id).
    shares: Vec<((String, String), (String, String))>,
    /// The secret name keymigrate gives each row: (table, id) → name.
    names: BTreeMap<(String, String), String>,
    /// The `[keystone_authtoken]` identity when it is not Cinder's service user (user name,
    /// password, project name): its project holds the secrets, and the checks read them as it.
    service: Option<(String, String, String)>,
}

/// Tokens of the service user and of the rows' owners (alice, bob), to read what a
/// service-mode `migrate` made.
pub struct Owners {
    cinder: String,
    owners: [(String, String); 2],
}

impl Owners {
    pub fn new(cloud: &Cloud) -> Owners {
        Owners {
            cinder: cloud.cinder(),
            owners: [(env("KEYMIGRATE_TEST_ALICE_ID"), cloud.alice()), (env("KEYMIGRATE_TEST_BOB_ID"), cloud.bob())],
        }
    }

    /// Reads the secrets with this token instead of Cinder's service user's (the
    /// `[keystone_authtoken]` identity a test put in a project of its own).
    pub fn reading_as(mut self, service_token: String) -> Owners {
        self.cinder = service_token;
        self
    }

    /// The row's key ID is a secret in the service project holding exactly `key` (AES-256,
    /// symmetric), with `owner` (alice's or bob's user ID) on its ACL and able to read it.
    pub fn assert_migrated(&self, cloud: &Cloud, db: &CinderDb, table: &str, id: &str, owner: &str, key: &[u8]) {
        let cinder = &self.cinder;
        let secret = db.key_of(table, id).unwrap_or_else(|| panic!("{table} {id} has no key"));
        assert_ne!(secret, ZERO, "{table} {id} was not migrated ({:?})", db.backend);
        let payload = cloud.payload(cinder, &secret);
        assert_eq!(payload.status, 200, "{table} {id}: secret {secret} unreadable");
        assert_eq!(payload.body, key, "{table} {id}: secret {secret} does not hold the fixed key");
        assert!(cloud.acl_users(cinder, &secret).iter().any(|u| u == owner), "{table} {id}: owner not in the ACL");
        let token = &self.owners.iter().find(|(o, _)| o == owner).expect("owner").1;
        let as_owner = cloud.payload(token, &secret);
        assert_eq!((as_owner.status, as_owner.body.as_slice()), (200, key), "{table} {id}: the owner cannot read the key");
        let meta = cloud.metadata(cinder, &secret);
        assert_eq!(meta["algorithm"], "AES");
        assert_eq!(meta["bit_length"], 256);
        assert_eq!(meta["secret_type"], "symmetric");
    }
}

static NEXT_GLANCE_ID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1);

pub fn k(table: &str, id: &str) -> (String, String) {
    (table.to_string(), id.to_string())
}

impl Fixture {
    pub fn new(backend: Backend, auth: &str) -> Fixture {
        let db = CinderDb::new(backend);
        let mut w = Workdir::new();
        let key = random_key();
        let conf = w.conf(&db, Some(&key), &service_sections(auth));
        let state = w.path("state");
        Fixture {
            db,
            w,
            key,
            conf,
            state,
            alice: env("KEYMIGRATE_TEST_ALICE_ID"),
            bob: env("KEYMIGRATE_TEST_BOB_ID"),
            migrated: BTreeMap::new(),
            untouched: BTreeMap::new(),
            shares: Vec::new(),
            names: BTreeMap::new(),
            service: None,
        }
    }

    /// Makes `user` (with `password`, a user of the Default domain holding `member` in project
    /// `project`, by name) the `[keystone_authtoken]` identity: under `--secret-owner service`
    /// the secrets go to its project, and [`Fixture::check`] reads them as it.
    pub fn act_as(&mut self, user: &str, password: &str, project: &str) {
        let text = std::fs::read_to_string(&self.conf).expect("conf");
        let cinder_password = env("KEYMIGRATE_TEST_CINDER_PASSWORD").replace('$', "$$");
        let text = text
            .replace(&format!("username = {}", env("KEYMIGRATE_TEST_CINDER_USER")), &format!("username = {user}"))
            .replace(&format!("password = {cinder_password}\n"), &format!("password = {}\n", password.replace('$', "$$")))
            .replace(&format!("project_name = {}", env("KEYMIGRATE_TEST_CINDER_PROJECT")), &format!("project_name = {project}"));
        std::fs::write(&self.conf, text).expect("write");
        self.w.secrets.push(password.to_string());
        self.service = Some((user.to_string(), password.to_string(), project.to_string()));
    }

    /// A token of the `[keystone_authtoken]` identity, scoped to its project.
    pub fn service_token(&self, cloud: &Cloud) -> String {
        match &self.service {
            Some((user, password, project)) => cloud.token(user, password, project),
            None => cloud.cinder(),
        }
    }

    /// A volume of `host` with a shared snapshot and glance row, a snapshot on another key, a
    /// backup, and rows of another host that must not move.
    pub fn seed_host(&mut self, host: &str) -> String {
        let z = Some(ZERO);
        // A key that some other tool stored in Barbican: keymigrate must leave it alone.
        let cloud = Cloud::new();
        let real = cloud.store(&cloud.cinder(), "created-by-someone-else", &base64_of(&random_key()), 256);
        let real = real.as_str();
        let (v1, v2, vr, vo) = (uuid(), uuid(), uuid(), uuid());
        let (s1, s2, sr, b1, bo) = (uuid(), uuid(), uuid(), uuid(), uuid());
        let gid = || NEXT_GLANCE_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (g1, g2, g3) = (gid(), gid(), gid());
        let (alice, bob) = (self.alice.clone(), self.bob.clone());
        self.db
            .volume(&v1, Some(&format!("{host}@lvm#pool")), Some(&alice), z)
            .volume(&v2, Some(&format!("{host}@lvm")), Some(&bob), z)
            .volume(&vr, Some(&format!("{host}@lvm#pool")), Some(&alice), Some(real))
            .volume(&vo, Some(&format!("{host}X@lvm#pool")), Some(&alice), z)
            .snapshot(&s1, &v1, Some(&alice), z, false)
            .snapshot(&s2, &v1, Some(&alice), Some(real), false)
            .snapshot(&sr, &vr, Some(&alice), z, false)
            .glance(g1, Some(&v1), None, "cinder_encryption_key_id", ZERO, false)
            .glance(g2, None, Some(&sr), "cinder_encryption_key_id", ZERO, false)
            .glance(g3, Some(&vr), None, "cinder_encryption_key_id", ZERO, false)
            .backup(&b1, &v1, Some(host), Some(&bob), z, false)
            .backup(&bo, &v1, Some(&format!("{host}X")), Some(&bob), z, false);
        for (t, id, owner) in [
            ("volumes", &v1, &alice),
            ("volumes", &v2, &bob),
            ("snapshots", &s1, &alice),
            ("snapshots", &sr, &alice),
            ("volume_glance_metadata", &g1.to_string(), &alice),
            ("volume_glance_metadata", &g2.to_string(), &alice),
            ("volume_glance_metadata", &g3.to_string(), &alice),
            ("backups", &b1, &bob),
        ] {
            self.migrated.insert(k(t, id), owner.clone());
        }
        for (t, id, key) in [
            ("volumes", &vr, Some(real)),
            ("volumes", &vo, z),
            ("snapshots", &s2, Some(real)),
            ("backups", &bo, z),
        ] {
            self.untouched.insert(k(t, id), key.map(String::from));
        }
        for (t, id) in [("volumes", &v1), ("volumes", &v2), ("volumes", &vr), ("volumes", &vo), ("snapshots", &s1), ("snapshots", &s2)] {
            self.names.insert(k(t, id), format!("keymigrate-{}-{id}", &t[..t.len() - 1]));
        }
        for (t, id) in [("snapshots", &sr), ("backups", &b1), ("backups", &bo)] {
            self.names.insert(k(t, id), format!("keymigrate-{}-{id}", &t[..t.len() - 1]));
        }
        for (g, parent) in [(g1, &v1), (g2, &sr), (g3, &vr)] {
            self.names.insert(k("volume_glance_metadata", &g.to_string()), format!("keymigrate-glance-metadata-{parent}-{g}"));
        }
        self.shares.push((k("snapshots", &s1), k("volumes", &v1)));
        self.shares.push((k("volume_glance_metadata", &g1.to_string()), k("volumes", &v1)));
        self.shares.push((k("volume_glance_metadata", &g2.to_string()), k("snapshots", &sr)));
        v1
    }

    pub fn conf(&self) -> &str {
        self.conf.to_str().expect("path")
    }

    pub fn migrate(&self, extra: &[&str]) -> Output {
        self.migrate_env(extra, &[])
    }

    pub fn migrate_env(&self, extra: &[&str], vars: &[(&str, &str)]) -> Output {
        let state = self.state.to_str().expect("path");
        let mut args = vec!["--config-file", self.conf(), "migrate", "--state-dir", state];
        args.extend(extra);
        self.w.run_env(&args, vars)
    }

    /// The invariant, checked through Barbican's API as the service user and as each owner.
    pub fn check(&self, cloud: &Cloud) {
        self.check_rows(cloud);
        self.check_no_litter(cloud, &self.service_token(cloud));
        self.w.assert_state_clean(&self.state);
    }

    /// Every migrated row resolves to the fixed key, readable by its owner; the rest unchanged.
    pub fn check_rows(&self, cloud: &Cloud) {
        let owners = Owners::new(cloud).reading_as(self.service_token(cloud));
        let key = hex::decode(&self.key).expect("hex");
        for ((table, id), owner) in &self.migrated {
            owners.assert_migrated(cloud, &self.db, table, id, owner, &key);
        }
        for ((table, id), key) in &self.untouched {
            assert_eq!(&self.db.key_of(table, id), key, "{table} {id} must not change");
        }
        for (child, parent) in &self.shares {
            assert_eq!(self.db.key_of(&child.0, &child.1), self.db.key_of(&parent.0, &parent.1), "{child:?} shares {parent:?}");
        }
    }

    /// Every secret named for one of this database's rows is the one a row points at.
    pub fn check_no_litter(&self, cloud: &Cloud, cinder: &str) {
        let all: Vec<String> = ["volumes", "snapshots", "backups", "volume_glance_metadata"]
            .iter()
            .flat_map(|t| self.db.keys(t).into_iter().filter_map(|(_, k)| k))
            .collect();
        for ((table, id), name) in &self.names {
            let found = cloud.named_like(cinder, &format!("{name}-"));
            for secret in &found {
                assert!(all.contains(secret), "secret {secret} for {table} {id} is left unreferenced");
            }
            let count = found.len();
            assert!(count <= 1, "{count} secrets for {table} {id}");
        }
    }
}

#[test]
fn migrate_moves_every_row_of_a_host_on_every_backend() {
    let cloud = Cloud::new();
    for backend in BACKENDS {
        let mut f = Fixture::new(backend, "password");
        f.seed_host("hostA");
        let out = f.migrate(&["--host", "hostA"]);
        out.assert_code(0);
        assert!(out.stderr.contains("Migrating volume "), "{}", out.stderr);
        assert!(out.stderr.contains(" encryption key to Barbican"), "{}", out.stderr);
        f.check(&cloud);

        let out = f.w.run(&["--config-file", f.conf(), "status", "--host", "hostA"]);
        out.assert_code(0);
        assert!(out.stderr.contains("has no key IDs associated with the ConfKeyManager left"), "{}", out.stderr);

        // A second run finds nothing to do and creates nothing.
        let before = f.db.fingerprint();
        let out = f.migrate(&["--host", "hostA", "-f", "json"]);
        out.assert_code(0);
        assert_eq!(out.json()["report"]["secrets_created"], 0);
        assert_eq!(f.db.fingerprint(), before);

        // The rest of the database, then the all-clear that lets fixed_key go.
        let out = f.migrate(&["--all-hosts"]);
        out.assert_code(0);
        assert!(out.stderr.contains("No key IDs associated with the ConfKeyManager remain in the database"), "{}", out.stderr);
    }
}

#[test]
fn application_credentials_authenticate_like_cinder() {
    let cloud = Cloud::new();
    let mut f = Fixture::new(Backend::Sqlite, "appcred");
    f.seed_host("hostB");
    f.migrate(&["--host", "hostB"]).assert_code(0);
    f.check(&cloud);
}

#[test]
fn barbican_endpoint_comes_from_the_catalog_by_interface_and_region_or_the_flag() {
    let cloud = Cloud::new();
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostC");
    let base = std::fs::read_to_string(&f.conf).expect("conf");
    // RegionTwo's public endpoint is a port nothing listens on.
    let dead = base.replace("barbican_region_name = RegionOne", "barbican_region_name = RegionTwo");
    std::fs::write(&f.conf, &dead).expect("write");
    let out = f.migrate(&["--host", "hostC", "--retries", "0", "--timeout", "5"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("127.0.0.1:19319"), "{}", out.stderr);
    // Its internal endpoint works.
    std::fs::write(&f.conf, dead.replace("[barbican]\n", "[barbican]\nbarbican_endpoint_type = internal\n")).expect("write");
    let out = f.migrate(&["--host", "hostC", "--max-count", "1"]);
    out.assert_code(1);
    assert!(out.stderr.contains("Using Barbican at http://127.0.0.1:19312/v1"), "{}", out.stderr);
    // An interface the catalog lacks is a clear error.
    std::fs::write(&f.conf, dead.replace("[barbican]\n", "[barbican]\nbarbican_endpoint_type = admin\n")).expect("write");
    f.migrate(&["--host", "hostC"]).assert_error(2, "no 'key-manager' endpoint for interface admin in region RegionTwo");
    // The flag wins over the dead catalog entry; the explicit option too.
    std::fs::write(&f.conf, &dead).expect("write");
    let out = f.migrate(&["--host", "hostC", "--barbican-endpoint", &env("KEYMIGRATE_TEST_BARBICAN_URL")]);
    out.assert_code(0);
    f.check(&cloud);
}

#[test]
fn max_count_runs_batches_until_done() {
    let cloud = Cloud::new();
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostD");
    let out = f.migrate(&["--host", "hostD", "--max-count", "2", "-f", "json"]);
    out.assert_code(1);
    assert_eq!(out.json()["report"]["migrated"], 2);
    let out = f.w.run(&["--config-file", f.conf(), "status", "--host", "hostD"]);
    out.assert_code(1);
    loop {
        let out = f.migrate(&["--host", "hostD", "--max-count", "2"]);
        if out.code == 0 {
            break;
        }
        out.assert_code(1);
    }
    f.check(&cloud);
}

#[test]
fn a_run_killed_at_any_step_is_finished_by_the_next() {
    let cloud = Cloud::new();
    for point in ["journal", "stored", "recorded", "acl", "verified", "in-transaction", "committed", "finished"] {
        for backend in [Backend::Sqlite, Backend::Mysql] {
            let mut f = Fixture::new(backend, "password");
            f.seed_host("hostE");
            let spec = format!("{point}@2=kill");
            let out = f.migrate_env(&["--host", "hostE"], &[("KEYMIGRATE_FAULT", &spec)]);
            assert_eq!(out.code, -1, "{point}: the run should have been killed: {}", out.stderr);
            let out = f.migrate(&["--host", "hostE"]);
            out.assert_code(0);
            f.check(&cloud);
        }
    }
}

#[test]
fn a_second_run_on_the_same_scope_exits_1_at_once() {
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostF");
    let gate = f.w.path("gate");
    let gate_s = gate.to_str().expect("path").to_string();
    let spec = format!("stored=wait:{gate_s}");
    let state = f.state.to_str().expect("path").to_string();
    let mut first = Command::new(env!("CARGO_BIN_EXE_keymigrate"))
        .args(["--config-file", f.conf(), "migrate", "--state-dir", &state, "--host", "hostF"])
        .env("KEYMIGRATE_SECRET_OWNER", "service")
        .env("KEYMIGRATE_FAULT", &spec)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let reached = f.w.path("gate.reached");
    for _ in 0..600 {
        if reached.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(reached.exists(), "the first run never reached its pause point");
    let out = f.migrate(&["--host", "hostF"]);
    out.assert_error(1, "another keymigrate run holds the lock");
    // A different host is not blocked by it.
    let other = f.migrate(&["--host", "hostNone"]);
    other.assert_code(0);
    std::fs::write(&gate, "go").expect("open the gate");
    assert!(first.wait().expect("wait").success());
    f.check(&Cloud::new());
}

#[test]
fn racing_runs_without_the_lock_leave_one_secret_per_row() {
    let cloud = Cloud::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let mut f = Fixture::new(backend, "password");
        for _ in 0..4 {
            f.seed_host("hostG");
        }
        let runs: Vec<_> = (0..2)
            .map(|i| {
                let state = f.w.path(&format!("state-{i}"));
                Command::new(env!("CARGO_BIN_EXE_keymigrate"))
                    .args(["--config-file", f.conf(), "migrate", "--state-dir", state.to_str().expect("path"), "--host", "hostG"])
                    .env("KEYMIGRATE_SECRET_OWNER", "service")
                    .stderr(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for mut r in runs {
            let status = r.wait().expect("wait");
            assert!(status.code() == Some(0) || status.code() == Some(1), "{status:?}");
        }
        f.migrate(&["--host", "hostG"]).assert_code(0);
        f.check(&cloud);
    }
}

#[test]
fn losing_the_compare_and_swap_deletes_the_new_secret() {
    let cloud = Cloud::new();
    let mut f = Fixture::new(Backend::Mysql, "password");
    let v1 = f.seed_host("hostH");
    let gate = f.w.path("gate");
    let spec = format!("verified=wait:{}", gate.display());
    let state = f.state.to_str().expect("path").to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_keymigrate"))
        .args(["--config-file", f.conf(), "migrate", "--state-dir", &state, "--host", "hostH", "-f", "json"])
        .env("KEYMIGRATE_SECRET_OWNER", "service")
        .env("KEYMIGRATE_FAULT", &spec)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let reached = f.w.path("gate.reached");
    for _ in 0..600 {
        if reached.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(reached.exists(), "never paused");
    // Someone else (Cinder's own migrator, say) migrates the first volume meanwhile.
    let theirs = cloud.store(&cloud.cinder(), "someone-else", &base64_of(&f.key), 256);
    f.db.exec(&format!("UPDATE volumes SET encryption_key_id = '{theirs}' WHERE id = '{v1}'"));
    std::fs::write(&gate, "go").expect("gate");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["report"]["lost"], 1);
    assert_eq!(f.db.key_of("volumes", &v1).as_deref(), Some(theirs.as_str()));
    assert!(cloud.named_like(&cloud.cinder(), &format!("keymigrate-volume-{v1}-")).is_empty(), "the losing secret was left behind");
    // The snapshot that shared v1 now has a volume that is not all-zeros: it got its own secret.
    f.migrated.remove(&k("volumes", &v1));
    f.shares.retain(|(_, p)| p.1 != v1);
    f.check(&cloud);
    cloud.delete(&cloud.cinder(), &theirs);
}

#[test]
fn wrong_keystone_credentials_exit_2_without_writing() {
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostI");
    let text = std::fs::read_to_string(&f.conf).expect("conf");
    let password = env("KEYMIGRATE_TEST_CINDER_PASSWORD").replace('$', "$$");
    std::fs::write(&f.conf, text.replace(&password, "not-the-password")).expect("write");
    let before = f.db.fingerprint();
    f.migrate(&["--host", "hostI"]).assert_error(2, "rejected the credentials");
    assert_eq!(f.db.fingerprint(), before);
}

#[test]
fn migrate_refuses_while_the_conf_key_manager_is_configured() {
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostJ");
    let text = std::fs::read_to_string(&f.conf).expect("conf");
    std::fs::write(&f.conf, text.replace("backend = barbican", "backend = cinder.keymgr.conf_key_mgr.ConfKeyManager")).expect("write");
    let before = f.db.fingerprint();
    let out = f.migrate(&["--host", "hostJ"]);
    out.assert_code(2);
    assert!(out.stderr.contains("Not migrating encryption keys because the ConfKeyManager is still in use."), "{}", out.stderr);
    assert_eq!(f.db.fingerprint(), before);
}

fn base64_of(hex_key: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_key).expect("hex"))
}

#[test]
fn the_error_budget_stops_the_run_after_more_than_max_errors_failures() {
    let mut f = Fixture::new(Backend::Sqlite, "password");
    for _ in 0..3 {
        f.seed_host("hostK");
    }
    let before = f.db.fingerprint();
    // Keystone works, but nothing listens where Barbican is said to be: every unit fails.
    let out = f.migrate(&["--host", "hostK", "--barbican-endpoint", "http://127.0.0.1:19319", "--retries", "0", "--workers", "1"]);
    out.assert_error(2, "aborted after 4 failed unit(s)");
    assert_eq!(out.stderr.matches("Error migrating encryption key of").count(), 4, "{}", out.stderr);
    // With workers, units already in flight finish (and fail) too, but no new one starts.
    let out = f.migrate(&["--host", "hostK", "--barbican-endpoint", "http://127.0.0.1:19319", "--retries", "0", "--workers", "4"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let failures = out.stderr.matches("Error migrating encryption key of").count();
    assert!((4..=7).contains(&failures), "{failures} failures:\n{}", out.stderr);
    assert!(out.stderr.contains("Aborting encryption key migration (too many errors)."));
    assert_eq!(f.db.fingerprint(), before);
    let out = f.migrate(&["--host", "hostK", "--barbican-endpoint", "http://127.0.0.1:19319", "--retries", "0", "--max-errors", "0"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("(more than --max-errors 0)"), "{}", out.stderr);
    // Nothing was stored, so the next run starts clean and finishes.
    f.migrate(&["--host", "hostK"]).assert_code(0);
    f.check(&Cloud::new());
}

#[test]
fn verify_confirms_every_migrated_row_and_catches_a_secret_altered_behind_its_back() {
    let cloud = Cloud::new();
    let mut f = Fixture::new(Backend::Postgres, "password");
    let v1 = f.seed_host("hostL");
    f.migrate(&["--host", "hostL"]).assert_code(0);
    let out = f.w.run(&["--config-file", f.conf(), "verify", "--host", "hostL", "-f", "json"]);
    out.assert_code(0);
    let doc = out.json();
    assert_eq!(doc["ok"], 8, "{doc}");
    assert_eq!(doc["problems"], 0);
    assert_eq!(doc["not_made_by_keymigrate"], 2, "the real-keyed volume and snapshot are counted, not judged");

    // Someone points v1 at a keymigrate-looking secret that holds other bytes.
    let cinder = cloud.cinder();
    let fake = cloud.store(&cinder, &format!("keymigrate-volume-{v1}-fake"), &base64_of(&random_key()), 256);
    f.db.exec(&format!("UPDATE volumes SET encryption_key_id = '{fake}' WHERE id = '{v1}'"));
    let out = f.w.run(&["--config-file", f.conf(), "verify", "--host", "hostL"]);
    out.assert_code(2);
    assert!(out.stdout.contains("secret does not hold the fixed key"), "{}", out.stdout);
    // Rollback refuses that row (the all-zeros ID would give it the wrong key) and only it.
    let out = f.w.run(&["--config-file", f.conf(), "rollback", "--host", "hostL", "--state-dir", f.state.to_str().expect("path")]);
    out.assert_code(2);
    assert_eq!(f.db.key_of("volumes", &v1).as_deref(), Some(fake.as_str()));
    cloud.delete(&cinder, &fake);
}

#[test]
fn rollback_puts_the_all_zeros_id_back_and_deletes_the_secrets() {
    let cloud = Cloud::new();
    for backend in [Backend::Sqlite, Backend::Mysql] {
        let mut f = Fixture::new(backend, "password");
        f.seed_host("hostM");
        f.migrate(&["--host", "hostM"]).assert_code(0);
        let migrated: Vec<(String, String, String)> = f
            .migrated
            .keys()
            .map(|(t, id)| (t.clone(), id.clone(), f.db.key_of(t, id).expect("key")))
            .collect();
        let before = f.db.fingerprint();
        let state = f.state.to_str().expect("path").to_string();
        let out = f.w.run(&["--config-file", f.conf(), "rollback", "--host", "hostM", "--dry-run", "-f", "json"]);
        out.assert_code(0);
        assert_eq!(out.json()["rolled_back"], 8, "{backend:?}");
        assert_eq!(f.db.fingerprint(), before, "a dry run wrote");

        let out = f.w.run(&["--config-file", f.conf(), "rollback", "--host", "hostM", "--state-dir", &state]);
        out.assert_code(0);
        let cinder = cloud.cinder();
        for (t, id, secret) in &migrated {
            assert_eq!(f.db.key_of(t, id).as_deref(), Some(ZERO), "{t} {id} on {backend:?}");
            assert_eq!(cloud.payload(&cinder, secret).status, 404, "secret {secret} of {t} {id} was not deleted");
        }
        for ((t, id), key) in &f.untouched {
            assert_eq!(&f.db.key_of(t, id), key, "{t} {id} must not change");
        }
        // And forward again: the same end state as a first migration.
        f.migrate(&["--host", "hostM"]).assert_code(0);
        f.check(&cloud);
    }
}

#[test]
fn rollback_and_verify_refuse_without_fixed_key() {
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostN");
    f.migrate(&["--host", "hostN"]).assert_code(0);
    let text = std::fs::read_to_string(&f.conf).expect("conf");
    let without: String = text.lines().filter(|l| !l.starts_with("fixed_key")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&f.conf, without).expect("write");
    let before = f.db.fingerprint();
    f.w.run(&["--config-file", f.conf(), "rollback", "--host", "hostN"]).assert_error(2, "needs fixed_key");
    f.w.run(&["--config-file", f.conf(), "verify", "--host", "hostN"]).assert_error(2, "needs fixed_key");
    assert_eq!(f.db.fingerprint(), before);
}

#[test]
fn every_reporting_command_speaks_table_json_and_value() {
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostO");
    let conf = f.conf().to_string();
    let run = |args: &[&str]| {
        let mut full = vec!["--config-file", conf.as_str()];
        full.extend(args);
        f.w.run(&full)
    };
    let out = run(&["status", "--host", "hostO", "-f", "table"]);
    assert!(out.stdout.contains("| Table                  | Scope | Database | Deleted |"), "{}", out.stdout);
    let out = run(&["status", "--host", "hostO", "-f", "value", "-c", "Scope"]);
    assert_eq!(out.stdout.lines().last(), Some("8"), "{}", out.stdout);
    let out = run(&["migrate", "--host", "hostO", "--dry-run", "-f", "json"]);
    assert_eq!(out.json()["report"]["migrated"], 5, "five new secrets: two volumes, a snapshot, a glance row, a backup");
    assert_eq!(out.json()["dry_run"], true);
    f.migrate(&["--host", "hostO"]).assert_code(0);
    assert!(!f.migrate(&["--host", "hostO"]).stderr.contains("ETA"), "no progress bar without a terminal");
    let out = run(&["verify", "--host", "hostO", "-f", "value", "-c", "Result"]);
    out.assert_code(0);
    assert_eq!(out.stdout.lines().filter(|l| *l == "ok").count(), 8, "{}", out.stdout);
    let out = run(&["verify", "--host", "hostO"]);
    assert!(out.stdout.starts_with("+-"), "{}", out.stdout);
    assert!(out.stdout.contains("| Key ID "), "{}", out.stdout);
    let out = run(&["rollback", "--host", "hostO", "--dry-run", "-f", "value", "-c", "Result"]);
    out.assert_code(0);
    assert_eq!(out.stdout.lines().filter(|l| *l == "would roll back").count(), 8, "{}", out.stdout);
}

#[test]
fn cleanup_never_touches_the_secrets_of_a_copy_of_the_database() {
    // A staging copy of a database shares the Barbican project and the row ids.
    let cloud = Cloud::new();
    let mut prod = Fixture::new(Backend::Sqlite, "password");
    prod.seed_host("hostP");
    let copy_path = prod.w.path("copy.sqlite");
    std::fs::copy(prod.db.url.trim_start_matches("sqlite:///"), &copy_path).expect("copy");
    let copy_conf = std::fs::read_to_string(&prod.conf).expect("conf").replace(prod.db.url.trim_start_matches("sqlite:///"), copy_path.to_str().expect("path"));
    let copy_conf_path = prod.w.write("copy.conf", &copy_conf);
    prod.migrate(&["--host", "hostP"]).assert_code(0);
    // The copy's run is interrupted after storing secrets, then resumed: its clean-up must
    // only ever delete what its own attempts made.
    let copy_state = prod.w.path("copy-state");
    let args = ["--config-file", copy_conf_path.to_str().expect("path"), "migrate", "--state-dir", copy_state.to_str().expect("path"), "--host", "hostP", "--workers", "1"];
    let out = prod.w.run_env(&args, &[("KEYMIGRATE_FAULT", "recorded@2=kill")]);
    assert_eq!(out.code, -1, "{}", out.stderr);
    prod.w.run(&args).assert_code(0);
    // Every row of the production database still resolves to the fixed key (the copy's secrets
    // are named for the same rows, so the litter check does not apply here).
    prod.check_rows(&cloud);
}

#[test]
fn a_403_from_barbican_stops_the_run_with_exit_2() {
    // A user Barbican lets read but not create: every POST is refused with 403 (policy). (A
    // project over its secret quota has a message of its own: tests/faults.rs.)
    let cloud = Cloud::new();
    let name = format!("reader-{}", &uuid()[..8]);
    let user = cloud.create_user(&name, "reader-pw", "service", "reader");
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostQ");
    let text = std::fs::read_to_string(&f.conf).expect("conf");
    let password = env("KEYMIGRATE_TEST_CINDER_PASSWORD").replace('$', "$$");
    let text = text
        .replace(&format!("username = {}", env("KEYMIGRATE_TEST_CINDER_USER")), &format!("username = {name}"))
        .replace(&password, "reader-pw");
    std::fs::write(&f.conf, text).expect("write");
    let before = f.db.fingerprint();
    let out = f.migrate(&["--host", "hostQ", "--workers", "1"]);
    out.assert_error(2, "Barbican refused (quota or policy)");
    assert_eq!(out.stderr.matches("Migrating volume").count(), 1, "stopped at the first 403:\n{}", out.stderr);
    assert_eq!(f.db.fingerprint(), before);
    cloud.delete_user(&user);
}

#[test]
fn no_log_level_leaks_the_key_or_a_token() {
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostR");
    // Workdir::run checks every output for the key (hex, base64) and the passwords.
    let out = f.migrate_env(&["--host", "hostR"], &[("RUST_LOG", "trace")]);
    out.assert_code(0);
    let lower = out.stderr.to_lowercase();
    assert!(!lower.contains("x-auth-token") && !lower.contains("x-subject-token"), "{}", out.stderr);
    assert!(out.stderr.contains("Migrated volume"), "{}", out.stderr);
    f.check(&Cloud::new());
}
