//! A database that started with Cinder's model and finishes with native parity: rows migrated
//! under `--secret-owner service` (secrets in Cinder's service project, read by the owner through
//! the ACL) moved by `migrate --secret-owner project --rehome` to new secrets in their own
//! projects; the same run killed at each step of a move and finished by the next; and `verify`
//! and `rollback` on a database holding secrets of both kinds. Each test makes its own Keystone
//! project and users (tests/support/tenancy.rs) and deletes them when it ends.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::castellan;
use crate::support::cloud::Cloud;
use crate::support::tenancy::{self, Member, Project, Secrets};
use crate::support::*;

/// One Cinder database on one host, with the configuration and state directory of its runs.
struct Site {
    db: CinderDb,
    w: Workdir,
    key: String,
    conf: PathBuf,
    state: PathBuf,
    host: String,
}

impl Site {
    fn new(backend: Backend) -> Site {
        let db = CinderDb::new(backend);
        let mut w = Workdir::new();
        let key = random_key();
        let conf = w.conf(&db, Some(&key), &service_sections("password"));
        let state = w.path("state");
        Site { db, w, key, conf, state, host: format!("rehome-{}", &uuid()[..8]) }
    }

    /// A live volume of the site's host in `project`, on `key` (the all-zeros ID for a volume
    /// still to migrate).
    fn volume(&self, project: &Project, user: &Member, key: &str) -> String {
        let id = uuid();
        self.db.volume(&id, Some(&format!("{}@lvm#pool", self.host)), Some(&user.id), Some(key));
        tenancy::set_project(&self.db, "volumes", &id, &project.id);
        id
    }

    /// A live snapshot of `volume` in `project`, on the all-zeros ID.
    fn snapshot(&self, volume: &str, project: &Project, user: &Member) -> String {
        let id = uuid();
        self.db.snapshot(&id, volume, Some(&user.id), Some(ZERO), false);
        tenancy::set_project(&self.db, "snapshots", &id, &project.id);
        id
    }

    /// A backup of `volume` made by the site's host, in `project`, on the all-zeros ID.
    fn backup(&self, volume: &str, project: &Project, user: &Member) -> String {
        let id = uuid();
        self.db.backup(&id, volume, Some(&self.host), Some(&user.id), Some(ZERO), false);
        tenancy::set_project(&self.db, "backups", &id, &project.id);
        id
    }

    /// `command` on the site's host with its state directory, then `extra`.
    fn args<'a>(&'a self, command: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--config-file", arg(&self.conf), command, "--state-dir", arg(&self.state), "--host", &self.host];
        args.extend(extra);
        args
    }

    fn run(&self, command: &str, extra: &[&str], vars: &[(&str, &str)]) -> Output {
        self.w.run_env(&self.args(command, extra), vars)
    }

    /// `migrate --secret-owner service`: Cinder's model.
    fn migrate_service(&self) -> Output {
        self.run("migrate", &["--secret-owner", "service", "-f", "json"], &[])
    }

    /// `migrate --secret-owner project --rehome`, with `vars` (a fault, say).
    fn rehome(&self, vars: &[(&str, &str)]) -> Output {
        self.run("migrate", &["--secret-owner", "project", "--rehome", "-f", "json"], vars)
    }

    fn key_of(&self, table: &str, id: &str) -> String {
        self.db.key_of(table, id).unwrap_or_else(|| panic!("{table} {id} has no key"))
    }

    fn fixed_key(&self) -> Vec<u8> {
        hex::decode(&self.key).expect("hex")
    }

    /// Every key ID in the database.
    fn all_keys(&self) -> BTreeSet<String> {
        ["volumes", "snapshots", "backups", "volume_glance_metadata"]
            .iter()
            .flat_map(|t| self.db.keys(t).into_iter().filter_map(|(_, k)| k))
            .collect()
    }
}

/// Barbican's REST API with `token`: (status, body as JSON or Null). For what `Cloud` has no
/// call for (the ACL's PUT).
fn barbican(method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let url = format!("{}{path}", env("KEYMIGRATE_TEST_BARBICAN_URL"));
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(&url)
        .header("X-Auth-Token", token)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    let mut resp = agent.run(req).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let bytes = resp.body_mut().read_to_vec().unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Sets a secret's read ACL with `token`: these users, and whether project members read.
fn set_acl(token: &str, secret: &str, users: &[&str], project_access: bool) {
    let body = json!({"read": {"users": users, "project-access": project_access}});
    let (status, answer) = barbican("PUT", &format!("/v1/secrets/{secret}/acl"), token, body);
    assert_eq!(status, 200, "ACL of {secret}: {answer}");
}

/// Stores `bytes` as a 256-bit symmetric key named `name`, with `token` (in its project).
fn store(cloud: &Cloud, token: &str, name: &str, bytes: &[u8]) -> String {
    cloud.store(token, name, &base64::engine::general_purpose::STANDARD.encode(bytes), bytes.len() * 8)
}

/// Project-scoped tokens of a test's owner and teammate, and Cinder's: one password
/// authentication each per test (the test Keystone is slow at them).
struct Tokens {
    owner: String,
    teammate: String,
    cinder: String,
}

impl Tokens {
    fn new(cloud: &Cloud, owner: &Member, teammate: &Member) -> Tokens {
        Tokens { owner: owner.token(), teammate: teammate.token(), cinder: cloud.cinder() }
    }
}

/// What a finished `--rehome` leaves: each of `rows` on a secret other than its old one (every
/// old one in `old`), which the owner and the teammate both read as exactly the fixed key (so
/// it lives in their project: the teammate is on no ACL); every old secret gone; no
/// `keymigrate-*` secret in the project that no row uses; no role of Cinder's user in the
/// project, no grant in the journal, no key material in the state directory.
#[track_caller]
fn assert_rehomed(site: &Site, cloud: &Cloud, project: &Project, tokens: &Tokens, rows: &[(&str, &str)], old: &BTreeSet<String>) {
    let key = site.fixed_key();
    for (table, id) in rows {
        let secret = site.key_of(table, id);
        assert!(!old.contains(&secret) && secret != ZERO, "{table} {id} is still on {secret}");
        for (reader, token) in [("owner", &tokens.owner), ("teammate", &tokens.teammate)] {
            let payload = cloud.payload(token, &secret);
            assert_eq!(payload.status, 200, "{table} {id}: {reader:?} cannot read secret {secret}");
            // Compared without printing: a failing test shows no key material.
            assert!(payload.body == key, "{table} {id}: secret {secret} does not hold the fixed key");
        }
    }
    for secret in old {
        assert_eq!(cloud.payload(&tokens.cinder, secret).status, 404, "old secret {secret} was not deleted");
    }
    let used = site.all_keys();
    for secret in tenancy::keymigrate_secrets(cloud, &tokens.teammate) {
        assert!(used.contains(&secret), "secret {secret} in project {} is used by no row", project.id);
    }
    assert_eq!(project.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "Cinder's user keeps a role in {}", project.id);
    assert_eq!(tenancy::grant_files(&site.state), Vec::<PathBuf>::new(), "grants left in the journal");
    site.w.assert_state_clean(&site.state);
}

/// A volume with a snapshot in its project and a backup, migrated under `--secret-owner
/// service`: (volume, snapshot, backup), and the two service-project secrets they use.
fn seed_service_rows(site: &Site, p: &Project, owner: &Member) -> ([String; 3], BTreeSet<String>) {
    let v = site.volume(p, owner, ZERO);
    let s = site.snapshot(&v, p, owner);
    let b = site.backup(&v, p, owner);
    let out = site.migrate_service();
    out.assert_code(0);
    assert_eq!(out.json()["secret_owner"], "service", "{}", out.stdout);
    assert_eq!(site.key_of("snapshots", &s), site.key_of("volumes", &v), "a snapshot shares its volume's secret");
    let old: BTreeSet<String> = [site.key_of("volumes", &v), site.key_of("backups", &b)].into_iter().collect();
    assert_eq!(old.len(), 2, "{old:?}");
    ([v, s, b], old)
}

#[test]
fn rehome_moves_service_secrets_into_the_rows_project_and_leaves_other_keys_alone() {
    let cloud = Cloud::new();
    let mut p = Project::new("rehome");
    let (owner, teammate) = (p.member("owner"), p.member("teammate"));
    let site = Site::new(Backend::Sqlite);
    let mut litter = Secrets::new();
    let ([v1, s1, b1], mut old) = seed_service_rows(&site, &p, &owner);
    litter.of_rows(&site.db);

    // Cinder's model: the owner reads the volume's key, her teammate does not.
    let tokens = Tokens::new(&cloud, &owner, &teammate);
    let (owner_token, teammate_token, cinder) = (tokens.owner.as_str(), tokens.teammate.as_str(), tokens.cinder.as_str());
    let service_secret = site.key_of("volumes", &v1);
    assert_eq!(cloud.payload(owner_token, &service_secret).status, 200, "the owner, on the ACL");
    assert_eq!(cloud.payload(teammate_token, &service_secret).status, 403, "the teammate, on no ACL");

    // A copy of the fixed key that Cinder's own migrator made (not named by keymigrate), in the
    // service project with the owner on its ACL: moved too.
    let by_cinder = store(&cloud, cinder, "cinder-migrated", &site.fixed_key());
    litter.ids.push(by_cinder.clone());
    set_acl(cinder, &by_cinder, &[&owner.id], true);
    let v2 = site.volume(&p, &owner, &by_cinder);
    old.insert(by_cinder.clone());
    // The owner's own native key in her project (it even holds the same bytes): Cinder's
    // identity cannot read it, so it is not Cinder's model and stays.
    let native = store(&cloud, owner_token, "native", &site.fixed_key());
    litter.ids.push(native.clone());
    let v3 = site.volume(&p, &owner, &native);
    // A service-project secret holding another key: not a copy of fixed_key, left with a warning.
    let other = store(&cloud, cinder, "cinder-other", &hex::decode(random_key()).expect("hex"));
    litter.ids.push(other.clone());
    set_acl(cinder, &other, &[&owner.id], true);
    let v4 = site.volume(&p, &owner, &other);
    // A key ID that names no secret at all (deleted by hand, say): nothing to move it from.
    let dangling = uuid();
    let v5 = site.volume(&p, &owner, &dangling);

    let out = site.rehome(&[]);
    litter.of_rows(&site.db);
    out.assert_code(0);
    let report = &out.json()["report"];
    assert_eq!(report["migrated"], 4, "volume, snapshot, backup and the volume on Cinder's own copy: {}", out.stdout);
    assert_eq!(report["secrets_deleted"], 3, "the two keymigrate secrets and Cinder's copy: {}", out.stdout);
    assert!(
        out.stderr.lines().any(|l| l.contains("WARNING") && l.contains(&format!("not moving rows off secret {other}"))),
        "no warning about the secret holding another key:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.lines().any(|l| l.contains("WARNING") && l.contains(&format!("not moving rows off secret {dangling}"))),
        "no warning about the missing secret:\n{}",
        out.stderr
    );

    let rows = [("volumes", v1.as_str()), ("snapshots", s1.as_str()), ("backups", b1.as_str()), ("volumes", v2.as_str())];
    let new: BTreeSet<String> = rows.iter().map(|(t, id)| site.key_of(t, id)).collect();
    assert_eq!(new.len(), rows.len(), "each row, a unit of its own, has a secret of its own: {new:?}");
    for secret in &new {
        assert!(cloud.metadata(teammate_token, secret)["name"].as_str().is_some_and(|n| n.starts_with("keymigrate-")), "{secret}");
    }
    assert_rehomed(&site, &cloud, &p, &tokens, &rows, &old);
    assert_eq!(site.key_of("volumes", &v3), native, "the row on the owner's native key was touched");
    assert_eq!(site.key_of("volumes", &v4), other, "the row on a secret holding another key was touched");
    assert_eq!(site.key_of("volumes", &v5), dangling, "the row on a missing secret was touched");
    assert_eq!(cloud.payload(cinder, &other).status, 200, "the secret holding another key was deleted");
    assert_eq!(cloud.payload(owner_token, &native).status, 200, "the owner's native key was deleted");

    // As cinder-api and nova-compute read it: the teammate now gets the volume's key too.
    let volume_secret = site.key_of("volumes", &v1);
    let reads = castellan::read_many(&[(owner.castellan(), volume_secret.clone()), (teammate.castellan(), volume_secret)]);
    for (who, read) in ["owner", "teammate"].iter().zip(&reads) {
        assert!(read.key().0 == site.fixed_key().as_slice(), "castellan as the {who}: not the fixed key");
    }

    // Nothing is left to move: a second run changes nothing.
    let before = site.db.fingerprint();
    let out = site.rehome(&[]);
    out.assert_code(0);
    assert_eq!(out.json()["report"]["migrated"], 0, "{}", out.stdout);
    assert_eq!(site.db.fingerprint(), before, "a second --rehome wrote rows");
}

/// A run of `--rehome` killed at `point` (the first pass through it); the next run finishes.
fn killed_during_rehome(point: &str, backend: Backend, cloud: &Cloud) {
    let started = std::time::Instant::now();
    let mut p = Project::new("rehome-kill");
    let (owner, teammate) = (p.member("owner"), p.member("teammate"));
    let site = Site::new(backend);
    let mut litter = Secrets::new();
    let ([v1, s1, b1], old) = seed_service_rows(&site, &p, &owner);
    litter.of_rows(&site.db);
    let tokens = Tokens::new(cloud, &owner, &teammate);

    let spec = format!("{point}=kill");
    let out = site.rehome(&[("KEYMIGRATE_FAULT", &spec)]);
    litter.of_rows(&site.db);
    assert_eq!(out.code, -1, "{point} ({backend:?}): the run should have been killed:\n{}", out.stderr);
    assert!(out.stderr.contains(&format!("fault injection: SIGKILL at {point}")), "{point}:\n{}", out.stderr);
    assert_eq!(tenancy::grant_files(&site.state).len(), 1, "{point}: the grant is journalled until revoked");
    let rows = [("volumes", v1.as_str()), ("snapshots", s1.as_str()), ("backups", b1.as_str())];
    let moved = rows.iter().filter(|(t, id)| !old.contains(&site.key_of(t, id))).count();
    assert_eq!(moved, usize::from(point == "committed"), "{point}: rows moved before the kill");

    let out = site.rehome(&[]);
    litter.of_rows(&site.db);
    out.assert_code(0);
    assert!(out.json()["report"]["recovered"].as_u64() >= Some(1), "{point}: nothing recovered:\n{}", out.stdout);
    assert_rehomed(&site, cloud, &p, &tokens, &rows, &old);
    eprintln!("--rehome killed at {point} ({backend:?}): finished by the next run ({:.1} s)", started.elapsed().as_secs_f64());
}

#[test]
fn a_rehome_killed_before_or_after_its_swap_is_finished_by_the_next_run() {
    let cloud = Cloud::new();
    let cases = [("stored", Backend::Sqlite), ("verified", Backend::Sqlite), ("committed", Backend::Mysql)];
    std::thread::scope(|s| {
        for (point, backend) in cases {
            let cloud = &cloud;
            s.spawn(move || killed_during_rehome(point, backend, cloud));
        }
    });
}

#[test]
fn verify_and_rollback_handle_a_database_with_secrets_of_both_owners() {
    let cloud = Cloud::new();
    let mut p = Project::new("mixed");
    let (owner, teammate) = (p.member("owner"), p.member("teammate"));
    let site = Site::new(Backend::Mysql);
    let mut litter = Secrets::new();
    // Half migrated under Cinder's model, then the rest into the project.
    let ([v1, s1, b1], service_secrets) = seed_service_rows(&site, &p, &owner);
    let v2 = site.volume(&p, &owner, ZERO);
    let s2 = site.snapshot(&v2, &p, &owner);
    let b2 = site.backup(&v2, &p, &owner);
    let out = site.run("migrate", &["--secret-owner", "project", "-f", "json"], &[]);
    litter.of_rows(&site.db);
    out.assert_code(0);
    assert_eq!(out.json()["report"]["migrated"], 2, "{}", out.stdout);
    let project_secrets: BTreeSet<String> = [site.key_of("volumes", &v2), site.key_of("backups", &b2)].into_iter().collect();
    let tokens = Tokens::new(&cloud, &owner, &teammate);
    let teammate_token = tokens.teammate.as_str();
    for secret in &project_secrets {
        assert_eq!(cloud.payload(teammate_token, secret).status, 200, "{secret} is not in the project");
    }
    let rows = [("volumes", &v1), ("snapshots", &s1), ("backups", &b1), ("volumes", &v2), ("snapshots", &s2), ("backups", &b2)];

    let verify = |vars: &[(&str, &str)]| site.run("verify", &["--secret-owner", "project", "-f", "json"], vars);
    let out = verify(&[]);
    out.assert_code(0);
    let json = out.json();
    assert_eq!((json["ok"].as_u64(), json["problems"].as_u64()), (Some(6), Some(0)), "{}", out.stdout);
    let judged: BTreeSet<String> = json["rows"].as_array().into_iter().flatten().filter_map(|r| r["id"].as_str().map(String::from)).collect();
    assert_eq!(judged, rows.iter().map(|(_, id)| id.to_string()).collect(), "{}", out.stdout);
    assert!(json["rows"].as_array().into_iter().flatten().all(|r| r["ok"] == true), "{}", out.stdout);
    assert_eq!(p.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "verify left a role");
    assert_eq!(tenancy::grant_files(&site.state), Vec::<PathBuf>::new(), "verify left a grant");

    // The owner turns project access off on the backup's secret: her teammate is locked out.
    let backup_secret = site.key_of("backups", &b2);
    set_acl(&tokens.owner, &backup_secret, &[], false);
    assert_eq!(cloud.payload(teammate_token, &backup_secret).status, 403, "project access is off");
    let out = verify(&[]);
    out.assert_code(2);
    let json = out.json();
    assert_eq!((json["ok"].as_u64(), json["problems"].as_u64()), (Some(5), Some(1)), "{}", out.stdout);
    let bad: Vec<&Value> = json["rows"].as_array().into_iter().flatten().filter(|r| r["ok"] != true).collect();
    assert_eq!(bad.len(), 1, "{}", out.stdout);
    assert_eq!((bad[0]["id"].as_str(), bad[0]["key_id"].as_str()), (Some(b2.as_str()), Some(backup_secret.as_str())));
    assert_eq!(bad[0]["result"], "project members cannot read the secret (its ACL turns project access off)");
    assert_eq!(p.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "verify left a role");

    // Rollback (the default owner, project) puts every row of both kinds back on the all-zeros ID
    // and deletes both kinds of secrets.
    let out = site.run("rollback", &["-f", "json"], &[("KEYMIGRATE_SECRET_OWNER", "project")]);
    out.assert_code(0);
    let json = out.json();
    assert_eq!(json["rolled_back"], 6, "{}", out.stdout);
    assert_eq!(json["secrets_deleted"], 4, "{}", out.stdout);
    for (table, id) in rows {
        assert_eq!(site.key_of(table, id), ZERO, "{table} {id} was not rolled back");
    }
    for secret in service_secrets.iter().chain(&project_secrets) {
        assert_eq!(cloud.payload(&tokens.cinder, secret).status, 404, "secret {secret} was not deleted");
    }
    assert_eq!(tenancy::keymigrate_secrets(&cloud, teammate_token), Vec::<String>::new(), "keymigrate secrets left in the project");
    assert_eq!(p.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "rollback left a role");
    assert_eq!(tenancy::grant_files(&site.state), Vec::<PathBuf>::new(), "rollback left a grant");
    site.w.assert_state_clean(&site.state);
}

#[test]
fn rehome_with_secret_owner_service_is_refused_and_writes_nothing() {
    let site = Site::new(Backend::Sqlite);
    let v = uuid();
    site.db.volume(&v, Some(&format!("{}@lvm#pool", site.host)), Some("someone"), Some(ZERO));
    let before = site.db.fingerprint();
    // Service on the command line, and service from the environment only (run_binary's).
    for owner_args in [&["--secret-owner", "service"][..], &[]] {
        let mut args = vec!["--rehome"];
        args.extend(owner_args);
        let out = site.run("migrate", &args, &[]);
        // Were the run to go ahead, its secrets would not outlive the test.
        Secrets::new().of_rows(&site.db);
        out.assert_error(127, "--rehome");
        assert!(out.stderr.contains("--secret-owner project"), "{}", out.stderr);
    }
    assert_eq!(site.db.fingerprint(), before, "rows were written");
    assert_eq!(site.key_of("volumes", &v), ZERO);
    assert!(!site.state.exists(), "the state directory was created: {:?}", walk(&site.state));
}


#[test]
fn a_rehome_row_of_a_project_keystone_lacks_is_left_and_an_operator_is_asked_to_act() {
    let cloud = Cloud::new();
    let site = Site::new(Backend::Sqlite);
    let mut litter = Secrets::new();
    let gone = tenancy::missing_project_id();
    let v = uuid();
    site.db.volume(&v, Some(&format!("{}@lvm#pool", site.host)), Some("owner-of-a-deleted-project"), Some(ZERO));
    tenancy::set_project(&site.db, "volumes", &v, &gone);
    site.migrate_service().assert_code(0);
    litter.of_rows(&site.db);
    let old = site.key_of("volumes", &v);

    // Nothing on the all-zeros ID is left, but the row asked to move cannot: not "done".
    let out = site.rehome(&[]);
    out.assert_code(2);
    let report = &out.json()["report"];
    assert_eq!((report["migrated"].as_u64(), report["blocked_units"].as_u64()), (Some(0), Some(1)), "{}", out.stdout);
    assert!(report["blocked_projects"][&gone].as_str().is_some_and(|r| r.contains("no longer exists")), "{}", out.stdout);
    assert_eq!(site.key_of("volumes", &v), old, "the row of the blocked project was moved");
    assert_eq!(cloud.payload(&cloud.cinder(), &old).status, 200, "its secret was deleted");
    assert_eq!(tenancy::grant_files(&site.state), Vec::<PathBuf>::new());
}


/// A row of Cinder's own service project: its service-mode secret is in the row's project
/// already, so `--rehome` leaves it where it is, and a second run has nothing to do either.
#[test]
fn rehome_leaves_the_rows_of_cinders_own_project_alone() {
    let site = Site::new(Backend::Sqlite);
    let v = uuid();
    site.db.volume(&v, Some(&format!("{}@lvm#pool", site.host)), Some(&env("KEYMIGRATE_TEST_CINDER_USER_ID")), Some(ZERO));
    tenancy::set_project(&site.db, "volumes", &v, &env("KEYMIGRATE_TEST_CINDER_PROJECT_ID"));
    let mut secrets = Secrets::new();
    site.migrate_service().assert_code(0);
    secrets.of_rows(&site.db);
    let before = site.key_of("volumes", &v);
    assert_ne!(before, ZERO, "the service-mode run migrated the volume");
    for round in 1..=2 {
        let out = site.rehome(&[]);
        out.assert_code(0);
        secrets.of_rows(&site.db);
        assert_eq!(out.json()["report"]["migrated"], 0, "round {round}: {}", out.stdout);
        assert_eq!(site.key_of("volumes", &v), before, "round {round}: the row of Cinder's own project was moved");
    }
}
