//! `migrate --secret-owner project` against the real Keystone and Barbican: each unit's secret is
//! created in the row's own project, by Cinder's `[keystone_authtoken]` identity (or a
//! clouds.yaml cloud) that grants itself a role there when it holds none, and revokes exactly that
//! grant at the end. Each test makes its own Keystone projects and users (tests/support/tenancy.rs)
//! and deletes them when it ends.
//!
//! What is measured: who reads a migrated key through castellan, as Cinder and Nova do (the
//! volume's owner and a teammate in the same project, under both `--secret-owner` modes); what
//! Cinder's own key deletion does with it; a kill at every step of a project's work (grant
//! journalled, granted, token scoped, the unit steps, revoked) and the next run; a role held
//! before keymigrate; a project that Keystone no longer has or where the grant is refused; lost
//! and late answers from Keystone; a clouds.yaml identity whose password shows nowhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::support::castellan::{self, CastellanRead, TestUser};
use crate::support::cloud::Cloud;
use crate::support::proxy::{Fault, Proxy};
use crate::support::tenancy::{self, Member, Project, Secrets};
use crate::support::*;

/// One Cinder database on one host, and the configuration and state directory of its runs.
struct Run {
    db: CinderDb,
    w: Workdir,
    key: String,
    conf: PathBuf,
    state: PathBuf,
    host: String,
}

impl Run {
    fn new(backend: Backend) -> Run {
        Run::with_key(backend, &random_key())
    }

    /// A run whose cinder.conf has this `fixed_key` (hex).
    fn with_key(backend: Backend, key: &str) -> Run {
        let db = CinderDb::new(backend);
        let mut w = Workdir::new();
        let key = key.to_string();
        let conf = w.conf(&db, Some(&key), &service_sections("password"));
        let state = w.path("state");
        Run { db, w, key, conf, state, host: format!("projects-{}", &uuid()[..8]) }
    }

    /// `[keystone_authtoken] auth_url` through `proxy` instead of straight to Keystone: every
    /// Keystone call of the run (its own token, the grants, the scoped tokens) goes through it.
    fn through(&self, proxy: &Proxy) {
        let real = env("KEYMIGRATE_TEST_KEYSTONE_URL");
        let real_host = real.trim_start_matches("http://").split('/').next().expect("host").to_string();
        let text = std::fs::read_to_string(&self.conf).expect("conf");
        assert!(text.contains(&real_host), "cinder.conf names Keystone at {real_host}");
        std::fs::write(&self.conf, text.replace(&real_host, proxy.url.trim_start_matches("http://"))).expect("write");
    }

    /// A live volume of the run's host on the all-zeros key, in `project`.
    fn volume(&self, project: &str, user: Option<&str>) -> String {
        let id = uuid();
        self.db.volume(&id, Some(&format!("{}@lvm#pool", self.host)), user, Some(ZERO));
        tenancy::set_project(&self.db, "volumes", &id, project);
        id
    }

    /// A live snapshot of `volume` on the all-zeros key, in `project` (which may differ from the
    /// volume's).
    fn snapshot(&self, volume: &str, project: &str, user: Option<&str>) -> String {
        let id = uuid();
        self.db.snapshot(&id, volume, user, Some(ZERO), false);
        tenancy::set_project(&self.db, "snapshots", &id, project);
        id
    }

    /// A backup of `volume` made by the run's host, on the all-zeros key, in `project`.
    fn backup(&self, volume: &str, project: &str, user: Option<&str>) -> String {
        let id = uuid();
        self.db.backup(&id, volume, Some(&self.host), user, Some(ZERO), false);
        tenancy::set_project(&self.db, "backups", &id, project);
        id
    }

    /// `migrate` on the run's host, in project mode unless `extra` names another.
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--config-file", arg(&self.conf), "migrate", "--state-dir", arg(&self.state), "--host", &self.host];
        if !extra.contains(&"--secret-owner") {
            args.extend(["--secret-owner", "project"]);
        }
        args.extend(extra);
        args
    }

    fn migrate(&self, extra: &[&str]) -> Output {
        self.migrate_env(extra, &[])
    }

    fn migrate_env(&self, extra: &[&str], vars: &[(&str, &str)]) -> Output {
        self.w.run_env(&self.args(extra), vars)
    }

    /// The row's key ID, which must be there.
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

    /// Starts the run in the background, as [`Workdir::run_env`] would run it.
    fn spawn(&self, extra: &[&str], vars: &[(&str, &str)]) -> Child {
        self.w.spawn_env(&self.args(extra), vars)
    }

    /// Waits for a background run; its output is checked for leaks like every other run's.
    fn finish(&self, child: Child) -> Output {
        self.w.finish(child)
    }
}

/// What a finished run leaves in `project`, whose rows are `rows`: each row on a secret that
/// `reader` (a member of the project, not keymigrate's identity) reads as exactly the fixed key;
/// no `keymigrate-*` secret in the project that no row uses; no role of Cinder's user left there
/// and no grant left in the journal; no secret in the state directory.
#[track_caller]
fn assert_project_done(run: &Run, cloud: &Cloud, project: &Project, reader: &Member, rows: &[(&str, &str)]) {
    let token = reader.token();
    let key = run.fixed_key();
    let listed = tenancy::keymigrate_secrets(cloud, &token);
    for (table, id) in rows {
        let secret = run.key_of(table, id);
        assert_ne!(secret, ZERO, "{table} {id} was not migrated");
        assert!(listed.contains(&secret), "{table} {id}: secret {secret} is not among project {}'s keymigrate-* secrets", project.id);
        let payload = cloud.payload(&token, &secret);
        assert_eq!(payload.status, 200, "{table} {id}: {reader:?} cannot read secret {secret}");
        // Compared without printing: a failing test shows no key material.
        assert!(payload.body == key, "{table} {id}: secret {secret} does not hold the fixed key");
    }
    let used = run.all_keys();
    for secret in listed {
        assert!(used.contains(&secret), "secret {secret} in project {} is used by no row", project.id);
    }
    assert_eq!(project.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "Cinder's user keeps a role in {}", project.id);
    assert_eq!(tenancy::grant_files(&run.state), Vec::<PathBuf>::new(), "grants left in the journal");
    run.w.assert_state_clean(&run.state);
}

/// The rows of the teammate table: in project P two volumes of the owner, a snapshot of the
/// first in P (shares its secret), a snapshot of it in project Q (its own secret, in Q) and a
/// backup in P (its own secret).
struct Teammates {
    v1: String,
    v2: String,
    s1: String,
    sq: String,
    b1: String,
}

impl Teammates {
    fn seed(run: &Run, p: &Project, owner: &Member, q: &Project, quser: &Member) -> Teammates {
        let v1 = run.volume(&p.id, Some(&owner.id));
        let v2 = run.volume(&p.id, Some(&owner.id));
        let s1 = run.snapshot(&v1, &p.id, Some(&owner.id));
        let sq = run.snapshot(&v1, &q.id, Some(&quser.id));
        let b1 = run.backup(&v1, &p.id, Some(&owner.id));
        Teammates { v1, v2, s1, sq, b1 }
    }
}

#[test]
fn every_member_of_the_project_reads_a_migrated_key_through_castellan() {
    let cloud = Cloud::new();
    let mut p = Project::new("teammates");
    let (owner, teammate) = (p.member("owner"), p.member("teammate"));
    let mut q = Project::new("elsewhere");
    let quser = q.member("quser");
    let mut litter = Secrets::new();

    // --secret-owner project.
    let run = Run::new(Backend::Postgres);
    let rows = Teammates::seed(&run, &p, &owner, &q, &quser);
    let out = run.migrate(&["-f", "json"]);
    out.assert_code(0);
    let json = out.json();
    assert_eq!(json["secret_owner"], "project", "{}", out.stdout);
    assert_eq!(json["report"]["migrated"], 4, "v1 with s1, v2, sq, b1: {}", out.stdout);
    assert_eq!(json["report"]["blocked_units"], 0, "{}", out.stdout);
    assert_eq!(json["report"]["keystone"]["projects"], 2, "{}", out.stdout);
    assert_eq!(json["report"]["keystone"]["grants_made"], 2, "{}", out.stdout);
    assert_eq!(json["report"]["keystone"]["grants_revoked"], 2, "{}", out.stdout);
    litter.of_rows(&run.db);
    let key = |t: &str, id: &str| run.key_of(t, id);
    let (v1, v2, s1, sq, b1) =
        (key("volumes", &rows.v1), key("volumes", &rows.v2), key("snapshots", &rows.s1), key("snapshots", &rows.sq), key("backups", &rows.b1));
    assert_eq!(s1, v1, "a snapshot in its volume's project shares the volume's secret");
    assert_ne!(sq, v1, "a snapshot in another project gets a secret of its own");
    let distinct: BTreeSet<&String> = [&v1, &v2, &sq, &b1].into_iter().collect();
    assert_eq!(distinct.len(), 4, "one secret per unit");
    assert_project_done(&run, &cloud, &p, &teammate, &[("volumes", &rows.v1), ("volumes", &rows.v2), ("snapshots", &rows.s1), ("backups", &rows.b1)]);
    assert_project_done(&run, &cloud, &q, &quser, &[("snapshots", &rows.sq)]);

    // --secret-owner service, the same rows in a second database with the same fixed_key.
    let service = Run::with_key(Backend::Postgres, &run.key);
    let srows = Teammates::seed(&service, &p, &owner, &q, &quser);
    let out = service.migrate(&["--secret-owner", "service", "-f", "json"]);
    out.assert_code(0);
    assert_eq!(out.json()["secret_owner"], "service", "{}", out.stdout);
    litter.of_rows(&service.db);
    assert_eq!(
        p.roles_of(&tenancy::cinder_user_id()),
        Vec::<String>::new(),
        "a service-mode run grants nothing in the rows' projects"
    );
    let skey = |t: &str, id: &str| service.key_of(t, id);
    let (sv1, sb1, ssq) = (skey("volumes", &srows.v1), skey("backups", &srows.b1), skey("snapshots", &srows.sq));

    let (o, t, qu) = (owner.castellan(), teammate.castellan(), quser.castellan());
    let project_mode = "project";
    let service_mode = "service";
    let cases: Vec<(&str, &str, &str, TestUser, String)> = vec![
        (project_mode, "volume 1 (P)", "owner, member of P", o.clone(), v1.clone()),
        (project_mode, "volume 1 (P)", "teammate, member of P", t.clone(), v1.clone()),
        (project_mode, "volume 2 (P)", "owner, member of P", o.clone(), v2.clone()),
        (project_mode, "volume 2 (P)", "teammate, member of P", t.clone(), v2.clone()),
        (project_mode, "backup of volume 1 (P)", "owner, member of P", o.clone(), b1.clone()),
        (project_mode, "backup of volume 1 (P)", "teammate, member of P", t.clone(), b1.clone()),
        (project_mode, "snapshot of volume 1 in Q", "member of Q", qu.clone(), sq.clone()),
        (service_mode, "volume 1 (P)", "owner, member of P", o.clone(), sv1.clone()),
        (service_mode, "volume 1 (P)", "teammate, member of P", t.clone(), sv1.clone()),
        (service_mode, "backup of volume 1 (P)", "teammate, member of P", t.clone(), sb1.clone()),
        (service_mode, "snapshot of volume 1 in Q", "member of Q", qu.clone(), ssq.clone()),
        // Recorded, not required: Q's key is Q's.
        (project_mode, "snapshot of volume 1 in Q", "owner, member of P only", o.clone(), sq.clone()),
    ];
    // Before: what Cinder's ConfKeyManager handed os-brick for these volumes (both databases
    // have the same fixed_key). Each castellan call is a Python process: side by side.
    let (before, reads) = std::thread::scope(|s| {
        let before = s.spawn(|| castellan::conf_key_manager(&run.key));
        let reads = castellan::read_many(&cases.iter().map(|c| (c.3.clone(), c.4.clone())).collect::<Vec<_>>());
        (before.join().expect("ConfKeyManager thread"), reads)
    });
    let (before_bytes, before_passphrase) = before.key();
    assert!(before_bytes == run.fixed_key().as_slice(), "the ConfKeyManager's key is not fixed_key");

    let mut table = vec![("mode".to_string(), "key".to_string(), "reader".to_string(), "castellan get".to_string())];
    for (case, read) in cases.iter().zip(&reads) {
        let same = match read {
            CastellanRead::Key { bytes, passphrase, .. } => {
                if bytes.as_slice() == before_bytes && passphrase == before_passphrase {
                    ", same passphrase"
                } else {
                    ", DIFFERENT key or passphrase"
                }
            }
            CastellanRead::Refused { .. } => "",
        };
        table.push((case.0.into(), case.1.into(), case.2.into(), format!("{}{same}", read.status())));
    }
    let width = table.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let rwidth = table.iter().map(|r| r.2.len()).max().unwrap_or(0);
    eprintln!("Who reads the migrated keys through castellan (cinder 29), measured:");
    for (mode, key, reader, result) in &table {
        eprintln!("| {mode:7} | {key:width$} | {reader:rwidth$} | {result} |");
    }

    // Project mode: the owner and the teammate read every key of P, Q's member reads Q's, and
    // os-brick unlocks each volume with the passphrase it used under the ConfKeyManager.
    for (case, read) in cases.iter().zip(&reads).filter(|(c, _)| c.0 == project_mode && !c.2.ends_with("only")) {
        let (bytes, passphrase) = read.key();
        assert!(bytes == before_bytes, "{} read by {}: not fixed_key", case.1, case.2);
        assert!(passphrase == before_passphrase, "{} read by {}: os-brick's passphrase differs", case.1, case.2);
    }
    // Service mode: the owner reads (the ACL names her), the teammate is refused.
    let (bytes, passphrase) = reads[7].key();
    assert!(bytes == before_bytes && passphrase == before_passphrase, "service mode: the owner's read");
    for i in [8, 9] {
        assert_eq!(
            reads[i],
            CastellanRead::Refused { error: "KeyManagerError".into(), status: Some(403) },
            "service mode: {} read by the teammate",
            cases[i].1
        );
    }
}

#[test]
fn cinders_own_key_deletion_removes_a_project_owned_key() {
    let cloud = Cloud::new();
    let mut p = Project::new("delete");
    let (owner, teammate) = (p.member("owner"), p.member("teammate"));
    let run = Run::new(Backend::Sqlite);
    let volume = run.volume(&p.id, Some(&owner.id));
    run.migrate(&[]).assert_code(0);
    let mut litter = Secrets::new();
    litter.of_rows(&run.db);
    let secret = run.key_of("volumes", &volume);
    assert_project_done(&run, &cloud, &p, &teammate, &[("volumes", &volume)]);

    // Deleting the volume: cinder-volume calls volume_utils.delete_encryption_key with the
    // owner's context. The secret is in her project and not private, so Barbican lets a member
    // delete it at once, as for a key Cinder created itself: no fallback to Cinder's service
    // user (which the service model needs, tests/owners.rs).
    let deleted = castellan::cinder_delete_as(&owner.castellan(), &secret);
    eprintln!("Cinder's delete_encryption_key of a project-owned migrated key, as its owner: {deleted:?}");
    assert_eq!(
        (deleted.ok, deleted.fell_back_to_service, deleted.failed_statuses.clone()),
        (true, false, Vec::new()),
        "{deleted:?}"
    );
    assert_eq!(cloud.payload(&owner.token(), &secret).status, 404, "the secret is gone");
    assert_eq!(castellan::read_as(&teammate.castellan(), &secret).status(), "404 (ManagedObjectNotFoundError)", "the teammate finds no key either");
}

/// The steps of one project's work and of each unit in it, in order, where a run is killed.
const KILL_POINTS: [&str; 10] =
    ["grant-journalled", "granted", "scoped", "journal", "stored", "recorded", "verified", "committed", "finished", "revoked"];

/// Points passed once per project; the others once per unit (killed at the second unit's).
fn per_project(point: &str) -> bool {
    matches!(point, "grant-journalled" | "granted" | "scoped" | "revoked")
}

/// A fresh project with three units (a volume with its snapshot, a volume without a user, a
/// backup); a run killed at `point`; the next run finishes and leaves nothing behind.
fn killed_at(point: &str, backend: Backend, cloud: &Cloud) {
    let started = std::time::Instant::now();
    let mut p = Project::new("kill");
    let reader = p.member("reader");
    let run = Run::new(backend);
    let v1 = run.volume(&p.id, Some(&reader.id));
    let s1 = run.snapshot(&v1, &p.id, Some(&reader.id));
    let v2 = run.volume(&p.id, None);
    let b1 = run.backup(&v1, &p.id, Some(&reader.id));
    let spec = if per_project(point) { format!("{point}=kill") } else { format!("{point}@2=kill") };
    let out = run.migrate_env(&["--workers", "2"], &[("KEYMIGRATE_FAULT", &spec)]);
    assert_eq!(out.code, -1, "{point} ({backend:?}): the run should have been killed:\n{}", out.stderr);
    let cinder = tenancy::cinder_user_id();
    // The grant is in the journal from before the PUT until after the revoke.
    let grants = tenancy::grant_files(&run.state);
    assert_eq!(grants.len(), 1, "{point}: one grant journalled: {grants:?}");
    let held = !p.roles_of(&cinder).is_empty();
    assert_eq!(held, !matches!(point, "grant-journalled" | "revoked"), "{point}: Cinder's user holds a role in the project");

    let out = run.migrate(&["-f", "json"]);
    out.assert_code(0);
    assert!(
        out.stderr.contains(&format!("Revoking the role grant in project {} left by an interrupted run", p.id)),
        "{point}: the leftover grant is revoked first:\n{}",
        out.stderr
    );
    let mut litter = Secrets::new();
    litter.of_rows(&run.db);
    assert_eq!(run.key_of("snapshots", &s1), run.key_of("volumes", &v1), "{point}: the snapshot shares its volume's secret");
    assert_project_done(&run, cloud, &p, &reader, &[("volumes", &v1), ("snapshots", &s1), ("volumes", &v2), ("backups", &b1)]);
    eprintln!("killed at {point} ({backend:?}): finished by the next run, nothing left behind ({:.1} s)", started.elapsed().as_secs_f64());
}

#[test]
fn a_projects_new_secrets_have_their_names_confirmed_many_at_a_time() {
    let cloud = Cloud::new();
    let mut p = Project::new("batch");
    let reader = p.member("reader");
    let run = Run::new(Backend::Sqlite);
    let rows: Vec<String> = (0..24).map(|_| run.volume(&p.id, Some(&reader.id))).collect();
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    let out = run.migrate(&["--workers", "8", "--barbican-endpoint", &proxy.url, "-f", "json"]);
    out.assert_code(0);
    let created = out.json()["report"]["secrets_created"].as_u64().expect("secrets_created") as usize;
    let (listings, alone) = proxy.name_requests();
    eprintln!("{created} secrets, {listings} listing(s), {alone} confirmed alone");
    assert_eq!(created, rows.len());
    assert!(listings >= 1, "no name was confirmed by a listing");
    assert!(listings + alone <= created / 2, "{listings} listings and {alone} single requests for {created} secrets: not batched");
    let rows: Vec<(&str, &str)> = rows.iter().map(|id| ("volumes", id.as_str())).collect();
    assert_project_done(&run, &cloud, &p, &reader, &rows);
}

#[test]
fn a_run_killed_at_any_step_of_a_project_is_finished_by_the_next() {
    let cloud = Cloud::new();
    // Three at a time, each in its own project and database: a run waits on Keystone and
    // Barbican far more than on the CPU.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(point) = KILL_POINTS.get(i) else { return };
                killed_at(point, BACKENDS[i % BACKENDS.len()], &cloud);
            });
        }
    });
}

#[test]
fn a_role_held_before_is_never_journalled_nor_revoked() {
    let cloud = Cloud::new();
    let cinder = tenancy::cinder_user_id();
    // Cinder's user is a member of P already; in R it holds only `reader`, which does not let
    // it create secrets: R needs a grant of `member`, and only that grant goes.
    let mut p = Project::new("held");
    let p_reader = p.member("reader");
    p.grant_by_hand(&cinder, "member");
    let mut r = Project::new("reader-held");
    let r_reader = r.member("reader");
    r.grant_by_hand(&cinder, "reader");
    let run = Run::new(Backend::Mysql);
    let (p1, p2) = (run.volume(&p.id, None), run.volume(&p.id, None));
    let r1 = run.volume(&r.id, None);

    // Paused after its last unit, before the revokes: what the journal holds then.
    let gate = run.w.path("gate");
    let spec = format!("finished@3=wait:{}", gate.display());
    let child = run.spawn(&["-f", "json", "--workers", "1"], &[("KEYMIGRATE_FAULT", &spec)]);
    let reached = run.w.path("gate.reached");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !reached.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let journalled = tenancy::grant_files(&run.state);
    let (p_roles, r_roles) = (p.direct_roles_of(&cinder), r.direct_roles_of(&cinder));
    std::fs::write(&gate, "go").expect("open the gate");
    let out = run.finish(child);
    assert!(reached.exists(), "the run never reached its last unit:\n{}", out.stderr);
    let names: Vec<String> = journalled.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec![format!("{}.json", hex::encode(&r.id))], "only R's grant is journalled");
    assert_eq!(p_roles, vec!["member".to_string()], "P: the role held before, nothing added");
    assert_eq!(r_roles, vec!["member".to_string(), "reader".to_string()], "R: the role held before and the grant");

    out.assert_code(0);
    let json = out.json();
    assert_eq!(json["report"]["keystone"]["projects"], 2, "{}", out.stdout);
    assert_eq!(json["report"]["keystone"]["grants_made"], 1, "{}", out.stdout);
    assert_eq!(json["report"]["keystone"]["grants_revoked"], 1, "{}", out.stdout);
    let mut litter = Secrets::new();
    litter.of_rows(&run.db);
    assert_eq!(p.direct_roles_of(&cinder), vec!["member".to_string()], "P: the role held before is kept");
    assert_eq!(r.direct_roles_of(&cinder), vec!["reader".to_string()], "R: the grant is revoked, the role held before kept");
    assert_eq!(tenancy::grant_files(&run.state), Vec::<PathBuf>::new());
    for (project, reader, rows) in [(&p, &p_reader, vec![("volumes", p1.as_str()), ("volumes", p2.as_str())]), (&r, &r_reader, vec![("volumes", r1.as_str())])] {
        let token = reader.token();
        for (table, id) in rows {
            let payload = cloud.payload(&token, &run.key_of(table, id));
            assert!(payload.status == 200 && payload.body == run.fixed_key(), "{table} {id} in {}: read by a member", project.id);
        }
    }
}

#[test]
fn a_project_keystone_lacks_or_refuses_is_blocked_and_the_others_migrate() {
    let cloud = Cloud::new();
    let keystone = Proxy::start(&env("KEYMIGRATE_TEST_KEYSTONE_URL"));
    let mut open = Project::new("open");
    let reader = open.member("reader");
    let refused = Project::new("refused");
    let gone = tenancy::missing_project_id();
    // Keystone refuses the identity a role in `refused` (its policy, or a domain it may not
    // administer): 403 to the grant's PUT.
    keystone.rule("PUT", &format!("/projects/{}/", refused.id), 0, Fault::Status(403));
    let run = Run::new(Backend::Mysql);
    run.through(&keystone);
    let o1 = run.volume(&open.id, Some(&reader.id));
    let os = run.snapshot(&o1, &open.id, Some(&reader.id));
    let ob = run.backup(&o1, &open.id, None);
    let g1 = run.volume(&gone, None);
    let r1 = run.volume(&refused.id, None);
    let rb = run.backup(&r1, &refused.id, None);
    let blocked = [("volumes", &g1), ("volumes", &r1), ("backups", &rb)];

    let out = run.migrate(&["-f", "json"]);
    out.assert_code(1);
    let mut litter = Secrets::new();
    litter.of_rows(&run.db);
    let json = out.json();
    let report = &json["report"];
    assert_eq!(report["migrated"], 2, "the open project's volume (with its snapshot) and backup: {}", out.stdout);
    assert_eq!(report["blocked_units"], 3, "{}", out.stdout);
    let reasons = report["blocked_projects"].as_object().unwrap_or_else(|| panic!("blocked_projects: {}", out.stdout));
    assert_eq!(reasons.len(), 2, "{}", out.stdout);
    let gone_reason = reasons[&gone].as_str().unwrap_or_default();
    assert!(gone_reason.contains("no longer exists"), "{gone}: {gone_reason}");
    let refused_reason = reasons[&refused.id].as_str().unwrap_or_default();
    assert!(refused_reason.contains("may not grant roles"), "{}: {refused_reason}", refused.id);
    for p in [&gone, &refused.id] {
        assert!(out.stderr.contains(&format!("Not migrating the rows of project {p}: ")), "{p}:\n{}", out.stderr);
    }
    assert_eq!(report["keystone"]["grants_made"], 1, "{}", out.stdout);
    assert_eq!(report["keystone"]["grants_revoked"], 1, "{}", out.stdout);
    for (table, id) in blocked {
        assert_eq!(run.key_of(table, id), ZERO, "{table} {id} of a blocked project was written");
    }
    assert_eq!(refused.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new());
    assert_project_done(&run, &cloud, &open, &reader, &[("volumes", &o1), ("snapshots", &os), ("backups", &ob)]);

    // Only blocked projects are left: an operator must act.
    let before = run.db.fingerprint();
    let out = run.migrate(&["-f", "json"]);
    out.assert_code(2);
    assert_eq!(out.json()["report"]["blocked_units"], 3, "{}", out.stdout);
    assert_eq!(run.db.fingerprint(), before, "nothing is written");
    assert_eq!(tenancy::grant_files(&run.state), Vec::<PathBuf>::new());
}

#[test]
fn lost_failed_and_late_keystone_answers_leave_no_role_behind() {
    let cloud = Cloud::new();
    let keystone = Proxy::start(&env("KEYMIGRATE_TEST_KEYSTONE_URL"));
    let mut p = Project::new("keystone-faults");
    let reader = p.member("reader");
    let run = Run::new(Backend::Sqlite);
    run.through(&keystone);
    let v1 = run.volume(&p.id, Some(&reader.id));
    let v2 = run.volume(&p.id, Some(&reader.id));
    let b1 = run.backup(&v1, &p.id, Some(&reader.id));
    // The grant is made but its answer lost; the retry meets a 503; the next one succeeds.
    keystone.rule("PUT", "/roles/", 1, Fault::DropAnswer);
    keystone.rule("PUT", "/roles/", 1, Fault::Status(503));
    // The revoke is made but its answer lost: the retry finds nothing left to revoke.
    keystone.rule("DELETE", "/roles/", 1, Fault::DropAnswer);
    // The roles of the identity in the project, answered after the run stopped waiting.
    keystone.rule("GET", "/role_assignments", 1, Fault::Stall(Duration::from_secs(7)));
    let out = run.migrate(&["--timeout", "5", "-f", "json"]);
    out.assert_code(0);
    assert_eq!(keystone.injected(), 4, "{}", out.stderr);
    // The late answer is waited for until --timeout, then asked again; so is the 503.
    assert!(out.stderr.lines().any(|l| l.contains("/role_assignments") && l.contains("timed out")), "{}", out.stderr);
    assert!(out.stderr.lines().any(|l| l.contains("PUT ") && l.contains("HTTP 503")), "{}", out.stderr);
    let mut litter = Secrets::new();
    litter.of_rows(&run.db);
    assert_eq!(out.json()["report"]["migrated"], 3, "{}", out.stdout);
    assert_project_done(&run, &cloud, &p, &reader, &[("volumes", &v1), ("volumes", &v2), ("backups", &b1)]);
}

/// clouds.yaml in `dir` with cloud `name`: Keystone's admin, password auth, project admin.
fn write_admin_cloud(dir: &Path, name: &str, password: &str) {
    let root = env("KEYMIGRATE_TEST_KEYSTONE_URL").trim_end_matches('/').trim_end_matches("/v3").to_string();
    // JSON is YAML, and keeps any character of the password intact.
    let clouds = format!(
        "clouds:\n  {name}:\n    auth:\n      auth_url: {root}\n      username: admin\n      password: {}\n      \
         project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n    \
         region_name: RegionOne\n    interface: public\n",
        serde_json::to_string(password).expect("JSON")
    );
    std::fs::write(dir.join("clouds.yaml"), clouds).expect("write clouds.yaml");
}

#[test]
fn an_admin_cloud_from_clouds_yaml_acts_in_the_projects_and_its_password_shows_nowhere() {
    let cloud = Cloud::new();
    let mut p = Project::new("os-cloud");
    let reader = p.member("reader");
    let mut run = Run::new(Backend::Sqlite);
    let password = env("KEYMIGRATE_TEST_ADMIN_PASSWORD");
    run.w.secrets.push(password.clone());
    let name = format!("km-admin-{}", &uuid()[..8]);
    write_admin_cloud(run.w.dir.path(), &name, &password);
    let v1 = run.volume(&p.id, Some(&reader.id));
    let b1 = run.backup(&v1, &p.id, Some(&reader.id));

    let out = run.migrate(&["--os-cloud", &name, "-f", "json"]);
    out.assert_code(0);
    let mut litter = Secrets::new();
    litter.of_rows(&run.db);
    assert!(out.stderr.contains(&format!("cloud '{name}'")), "the log names the identity's cloud:\n{}", out.stderr);
    assert_eq!(out.json()["report"]["keystone"]["grants_made"], 1, "{}", out.stdout);
    // The grant went to the cloud's user, not to Cinder's: neither keeps a role.
    let (status, users) = tenancy::admin_call("GET", "/users?name=admin", None);
    assert_eq!(status, 200, "{users}");
    let admin_id = users["users"][0]["id"].as_str().expect("admin's id").to_string();
    assert!(out.stderr.contains(&format!("as user {admin_id} ")), "the cloud's user acts:\n{}", out.stderr);
    assert_eq!(p.roles_of(&admin_id), Vec::<String>::new(), "the admin keeps a role");
    // The run's stdout and stderr were checked for the password (it is among the workdir's
    // secrets); the state directory's files are, by assert_project_done.
    assert_project_done(&run, &cloud, &p, &reader, &[("volumes", &v1), ("backups", &b1)]);
    assert!(!walk(&run.state).is_empty(), "the state directory was written");
}

/// Three hosts' runs at once, every row in one project (a fleet rollout runs `migrate` on each
/// cinder-volume host): each run grants itself the role when it finds none, and the first to
/// finish revokes its grant while the others still work there, so Keystone refuses their tokens.
/// They ask again, grant again and finish, at worst on a second round as a cron job would run
/// them; no role, grant or unused secret is left.
#[test]
fn runs_on_several_hosts_in_one_project_at_once_finish_and_leave_no_role() {
    let cloud = Cloud::new();
    let mut p = Project::new("hosts");
    let owner = p.member("owner");
    let run = Run::new(Backend::Mysql);
    let hosts: Vec<String> = (1..=3).map(|i| format!("{}-{i}", run.host)).collect();
    let mut rows = Vec::new();
    for h in &hosts {
        for _ in 0..8 {
            let id = uuid();
            run.db.volume(&id, Some(&format!("{h}@lvm#pool")), Some(&owner.id), Some(ZERO));
            tenancy::set_project(&run.db, "volumes", &id, &p.id);
            rows.push(id);
        }
    }
    let states: Vec<PathBuf> = (1..=3).map(|i| run.w.path(&format!("state-{i}"))).collect();
    let mut rounds = 0;
    while rows.iter().any(|id| run.key_of("volumes", id) == ZERO) {
        rounds += 1;
        assert!(rounds <= 3, "rows still on the all-zeros ID after {} rounds", rounds - 1);
        let children: Vec<Child> = hosts
            .iter()
            .zip(&states)
            .map(|(h, state)| {
                let args = ["--config-file", arg(&run.conf), "migrate", "--secret-owner", "project", "--workers", "2", "--state-dir", arg(state), "--host", h];
                run.w.spawn_env(&args, &[])
            })
            .collect();
        for child in children {
            let out = run.finish(child);
            // 1: a unit failed when another run's revoke killed this run's token; the next
            // round finishes it.
            assert!(out.code == 0 || out.code == 1, "round {rounds}: exit {}:\n{}", out.code, out.stderr);
        }
    }
    eprintln!("three hosts in one project: done in {rounds} round(s)");
    let token = owner.token();
    let key = run.fixed_key();
    for id in &rows {
        let secret = run.key_of("volumes", id);
        let payload = cloud.payload(&token, &secret);
        assert_eq!(payload.status, 200, "volume {id}: the owner cannot read secret {secret}");
        assert!(payload.body == key, "volume {id}: secret {secret} does not hold the fixed key");
    }
    let used = run.all_keys();
    for secret in tenancy::keymigrate_secrets(&cloud, &token) {
        assert!(used.contains(&secret), "secret {secret} in project {} is used by no row", p.id);
    }
    assert_eq!(p.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "Cinder's user keeps a role in {}", p.id);
    for state in &states {
        assert_eq!(tenancy::grant_files(state), Vec::<PathBuf>::new(), "grants left in {}", state.display());
        run.w.assert_state_clean(state);
    }
}


/// Barbican's own per-project secret quota (`PUT /v1/project-quotas/{id}`), not a proxy: project
/// Q may hold 2 secrets and has 5 units (4 volumes, a backup); project O has one. The first run
/// migrates 2 of Q's and O's, then Barbican refuses Q's third: Q is blocked with one line naming
/// Barbican's quota answer, its units left are not tried, and the run exits 1 (it moved rows).
/// The next run, quota unchanged, moves nothing and exits 2 naming the quota. Neither leaves a
/// secret no row uses, a row on a missing secret, a role or a journal entry. Once the quota is
/// raised, the next run finishes.
#[test]
fn a_project_at_barbicans_secret_quota_is_blocked_and_finished_once_the_quota_is_raised() {
    let cloud = Cloud::new();
    let mut q = Project::new("quota");
    let qowner = q.member("owner");
    let mut o = Project::new("roomy");
    let oowner = o.member("owner");
    let run = Run::new(Backend::Mysql);
    let qv: Vec<String> = (0..4).map(|_| run.volume(&q.id, Some(&qowner.id))).collect();
    let qb = run.backup(&qv[0], &q.id, Some(&qowner.id));
    let ov = run.volume(&o.id, Some(&oowner.id));
    let mut qrows: Vec<(&str, &str)> = qv.iter().map(|v| ("volumes", v.as_str())).collect();
    qrows.push(("backups", &qb));
    q.set_secret_quota(2);
    let mut litter = Secrets::new();

    // What must hold after every run: Q's secrets are exactly those its rows use (at most the
    // quota), each holding the key for a member; every other row of Q still on the all-zeros ID.
    let assert_consistent = |run: &Run, migrated: usize| {
        let listed: BTreeSet<String> = tenancy::keymigrate_secrets(&cloud, &qowner.token()).into_iter().collect();
        let used: BTreeSet<String> = qrows.iter().map(|(t, id)| run.key_of(t, id)).filter(|k| k != ZERO).collect();
        assert_eq!(listed, used, "project Q's secrets are exactly those its rows use");
        assert_eq!(used.len(), migrated, "{used:?}");
        for secret in &used {
            let payload = cloud.payload(&qowner.token(), secret);
            assert!(payload.status == 200 && payload.body == run.fixed_key(), "secret {secret} does not give the member the key");
        }
        assert_eq!(q.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "Cinder's user keeps a role in Q");
        assert_eq!(tenancy::grant_files(&run.state), Vec::<PathBuf>::new(), "grants left in the journal");
        let pending: Vec<PathBuf> = walk(&run.state).into_iter().filter(|f| f.components().any(|c| c.as_os_str() == "pending")).collect();
        assert_eq!(pending, Vec::<PathBuf>::new(), "units left in the journal");
        run.w.assert_state_clean(&run.state);
    };
    let quota_lines = |out: &Output| -> Vec<String> {
        out.stderr.lines().filter(|l| l.contains("a quota has been reached")).map(String::from).collect()
    };

    let out = run.migrate(&["--workers", "1", "-f", "json"]);
    litter.of_rows(&run.db);
    out.assert_code(1);
    let report = &out.json()["report"];
    assert_eq!((report["migrated"].as_u64(), report["failed"].as_u64()), (Some(3), Some(0)), "2 of Q's, O's: {}", out.stdout);
    assert_eq!(report["blocked_units"], 3, "{}", out.stdout);
    let reason = report["blocked_projects"][&q.id].as_str().unwrap_or_default();
    assert!(reason.starts_with("Barbican's secret quota of the project is reached (POST "), "{reason}");
    assert!(reason.contains("Creation not allowed because a quota has been reached"), "Barbican's own words: {reason}");
    let lines = quota_lines(&out);
    assert_eq!(lines.len(), 2, "one line when Q is blocked, one in the summary:\n{}", out.stderr);
    assert!(lines[0].contains(&format!("Not migrating the rows of project {}: Barbican's secret quota", q.id)), "{}", lines[0]);
    assert!(lines[1].contains(&format!("Project {} is blocked: Barbican's secret quota", q.id)), "{}", lines[1]);
    assert!(!out.stderr.contains("Error migrating"), "{}", out.stderr);
    // Q's units after the refused one were never sent to Barbican.
    assert_eq!(out.stderr.matches("encryption key to Barbican\n").count(), 4, "2 + 1 refused of Q's, 1 of O's:\n{}", out.stderr);
    assert_consistent(&run, 2);
    assert_project_done(&run, &cloud, &o, &oowner, &[("volumes", &ov)]);

    // The quota unchanged: nothing moves, and the run says why.
    let before = run.db.fingerprint();
    let out = run.migrate(&["--workers", "3", "-f", "json"]);
    out.assert_code(2);
    let report = &out.json()["report"];
    assert_eq!((report["migrated"].as_u64(), report["failed"].as_u64(), report["blocked_units"].as_u64()), (Some(0), Some(0), Some(3)), "{}", out.stdout);
    assert_eq!(quota_lines(&out).len(), 2, "{}", out.stderr);
    assert_eq!(run.db.fingerprint(), before, "nothing is written");
    assert_consistent(&run, 2);

    // Raised: the next run finishes.
    q.set_secret_quota(10);
    let out = run.migrate(&[]);
    litter.of_rows(&run.db);
    out.assert_code(0);
    assert_project_done(&run, &cloud, &q, &qowner, &qrows);
    assert_consistent(&run, 5);
}
