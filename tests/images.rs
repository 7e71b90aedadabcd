//! `scan`, `status` and `migrate` with `--images` against the real Keystone, Barbican and Glance:
//! the Glance images whose `cinder_encryption_key_id` is the ConfKeyManager's all-zeros ID are
//! listed with what `migrate` is to do with each; a private image gets a secret of its own in its
//! owner's project, which every member of that project reads as the fixed key, and nothing else
//! of the image changes; a run killed at any step of an image is finished by the next; Glance's
//! lost, failed and refused answers, a property changed under the run, and two runs at once
//! leave each image on exactly one secret holding the key and no unused secret behind.
//!
//! Glance is shared by every test running at the same time, and `--images` takes every
//! project's images: the runs here reach Glance through a proxy that shows them the test's own
//! images only (`Fault::OnlyImages`), so no test migrates another's. The scan test reads Glance
//! directly and looks at its own rows among whatever else is there.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::castellan;
use crate::support::cloud::Cloud;
use crate::support::glance::{Glance, ImageSpec, DELETION_POLICY, KEY_ID};
use crate::support::proxy::{Fault, Proxy};
use crate::support::tenancy::{self, Member, Project, Secrets};
use crate::support::*;

/// Not the all-zeros ID: one digit short. Glance's filter and keymigrate both leave it alone.
const LOOK_ALIKE: &str = "00000000-0000-0000-0000-00000000000";

/// A Cinder database with no rows (`--images` alone scopes none), its cinder.conf with a fixed
/// key, a state directory, and a proxy in front of Glance that lists only the test's images.
struct Stage {
    /// Held for the runs: its file goes with it.
    _db: CinderDb,
    w: Workdir,
    key: String,
    conf: PathBuf,
    state: PathBuf,
    glance: Proxy,
}

impl Stage {
    fn new() -> Stage {
        let db = CinderDb::new(Backend::Sqlite);
        let mut w = Workdir::new();
        let key = random_key();
        let conf = w.conf(&db, Some(&key), &service_sections("password"));
        let state = w.path("state");
        Stage { _db: db, w, key, conf, state, glance: Proxy::start(&env("KEYMIGRATE_TEST_GLANCE_URL")) }
    }

    /// From now on, the runs see these images only. Added before any fault rule, so a listing
    /// is always filtered.
    fn only(&self, ids: &[&str]) {
        self.glance.rule("GET", "/v2/images?", 0, Fault::OnlyImages(ids.iter().map(|s| s.to_string()).collect()));
    }

    /// `<command> --images` through the proxy, with `extra`.
    fn args<'a>(&'a self, command: &'a str, state: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--config-file", arg(&self.conf), command, "--images", "--glance-endpoint", &self.glance.url];
        if ["migrate", "verify", "rollback"].contains(&command) {
            args.extend(["--state-dir", arg(state)]);
        }
        args.extend(extra);
        args
    }

    fn migrate(&self, vars: &[(&str, &str)]) -> Output {
        self.migrate_with(&[], vars)
    }

    fn migrate_with(&self, extra: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut extra = extra.to_vec();
        extra.extend(["-f", "json"]);
        self.w.run_env(&self.args("migrate", &self.state, &extra), vars)
    }

    fn status(&self) -> Output {
        self.w.run(&self.args("status", &self.state, &["-f", "json"]))
    }

    /// A run in the background, with its own state directory.
    fn spawn(&self, state: &Path, vars: &[(&str, &str)]) -> Child {
        self.w.spawn_env(&self.args("migrate", state, &["-f", "json"]), vars)
    }

    /// Waits for a background run; its output is checked for leaks like every other run's.
    fn finish(&self, child: Child) -> Output {
        self.w.finish(child)
    }

    fn fixed_key(&self) -> Vec<u8> {
        hex::decode(&self.key).expect("hex")
    }
}

/// The image entries keymigrate journalled in a state directory: `<state>/images/pending/*.json`.
fn image_files(state: &Path) -> Vec<PathBuf> {
    walk(state)
        .into_iter()
        .filter(|p| {
            // `<state>/images/pending/<image>.json`: the images' own journal (src/journal.rs).
            let pending = p.parent();
            pending.and_then(|d| d.file_name()).is_some_and(|n| n == "pending")
                && pending.and_then(|d| d.parent()).and_then(|d| d.file_name()).is_some_and(|n| n == "images")
                && p.extension().is_some_and(|x| x == "json")
        })
        .collect()
}

fn id(image: &Value) -> String {
    image["id"].as_str().expect("image id").to_string()
}

/// A private image of `owner`'s project on the all-zeros ID with `on_image_deletion`, a few
/// bytes of data (so it is `active`, with a checksum) and a property of its own.
fn private_image(glance: &Glance, owner: &Member) -> String {
    let spec = ImageSpec::new("private").encrypted(ZERO).property("kmtest_marker", "keep-me").data(b"volume bytes");
    id(&glance.create(&owner.token(), &spec))
}

/// The image's key ID, as the admin sees it now.
fn key_of(glance: &Glance, image: &str) -> String {
    glance.get_as_admin(image)[KEY_ID].as_str().unwrap_or_default().to_string()
}

/// What a finished run leaves: each of `images` names a secret of `project` named after it,
/// which `reader` (a member, not keymigrate's identity) reads as exactly the fixed key; no
/// `keymigrate-*` secret in the project that no image names; no role of Cinder's user left there;
/// no grant or image entry in the journal; no key material in the state directory.
#[track_caller]
fn assert_images_done(stage: &Stage, state: &Path, cloud: &Cloud, glance: &Glance, project: &Project, reader: &Member, images: &[&str]) {
    let token = reader.token();
    let key = stage.fixed_key();
    let listed = tenancy::keymigrate_secrets(cloud, &token);
    let mut named = Vec::new();
    for image in images {
        let secret = key_of(glance, image);
        assert_ne!(secret, ZERO, "image {image} was not migrated");
        assert!(listed.contains(&secret), "image {image}: secret {secret} is not among project {}'s keymigrate-* secrets", project.id);
        let name = cloud.metadata(&token, &secret)["name"].as_str().unwrap_or_default().to_string();
        assert!(name.starts_with(&format!("keymigrate-image-{image}-")), "image {image}: secret {secret} is named {name:?}");
        let payload = cloud.payload(&token, &secret);
        assert_eq!(payload.status, 200, "image {image}: {reader:?} cannot read secret {secret}");
        // Compared without printing: a failing test shows no key material.
        assert!(payload.body == key, "image {image}: secret {secret} does not hold the fixed key");
        named.push(secret);
    }
    for secret in listed {
        assert!(named.contains(&secret), "secret {secret} in project {} is named by no image", project.id);
    }
    assert_eq!(project.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "Cinder's user keeps a role in {}", project.id);
    assert_eq!(tenancy::grant_files(state), Vec::<PathBuf>::new(), "grants left in the journal");
    assert_eq!(image_files(state), Vec::<PathBuf>::new(), "images left in the journal");
    stage.w.assert_state_clean(state);
}

/// The rows of `report` (a `scan`/`status` JSON document's `images`) for `ids`, by ID.
fn rows_of(report: &Value, ids: &[&str]) -> std::collections::BTreeMap<String, Value> {
    report["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no image rows: {report}"))
        .iter()
        .filter(|r| r["id"].as_str().is_some_and(|i| ids.contains(&i)))
        .map(|r| (r["id"].as_str().unwrap_or_default().to_string(), r.clone()))
        .collect()
}

/// The image as the admin sees it, without what Glance changes on every write.
fn unchanging(glance: &Glance, image: &str) -> Value {
    let mut v = glance.get_as_admin(image);
    if let Some(o) = v.as_object_mut() {
        for k in ["updated_at", KEY_ID] {
            o.remove(k);
        }
    }
    v
}

#[test]
fn scan_and_status_list_each_all_zeros_image_with_what_migrate_does_and_leave_others_out() {
    let cloud = Cloud::new();
    let mut p = Project::new("img-scan");
    let owner = p.member("owner");
    let mut q = Project::new("img-scan-q");
    let quser = q.member("quser");
    let glance = Glance::new();
    let token = owner.token();
    let spec = |v: &str| ImageSpec::new(v).encrypted(ZERO).data(b"x");

    let private = id(&glance.create(&token, &spec("private")));
    let hidden = id(&glance.create(&token, &spec("private").hidden(true)));
    let unshared = id(&glance.create(&token, &spec("shared")));
    let shared = id(&glance.create(&token, &spec("shared")));
    glance.add_member(&token, &shared, &q.id);
    glance.accept(&quser.token(), &shared, &q.id);
    // Public and community as the owner's images: made private, then opened by the admin
    // (a member may not publicize an image).
    let public = id(&glance.create(&token, &spec("private")));
    let community = id(&glance.create(&token, &spec("private")));
    for (image, visibility) in [(&public, "public"), (&community, "community")] {
        let r = glance.patch_as_admin(image, &json!([{"op": "replace", "path": "/visibility", "value": visibility}]));
        assert_eq!(r.status, 200, "{visibility}: {}", String::from_utf8_lossy(&r.body));
    }
    let snapshot = id(&glance.create(&token, &spec("private").property("bdm_v2", "True")));
    let real = cloud.store(&token, &format!("kmtest-img-{}", &uuid()[..8]), "AAAAAAAAAAAAAAAAAAAAAA==", 128);
    let _litter = Secrets { ids: vec![real.clone()] };
    let on_real = id(&glance.create(&token, &ImageSpec::new("private").encrypted(&real)));
    // Without the deletion policy: Glance cannot delete an image whose key ID Barbican rejects.
    let look_alike = id(&glance.create(&token, &ImageSpec::new("private").property(KEY_ID, LOOK_ALIKE)));

    let expected: Vec<(&str, &str, bool)> = vec![
        (&private, "new secret", false),
        (&hidden, "new secret", true),
        (&unshared, "new secret", false),
        (&shared, "reported: visibility is shared", false),
        (&public, "reported: visibility is public", false),
        (&community, "reported: visibility is community", false),
        (&snapshot, "reported: it carries block device mapping properties", false),
    ];
    let mine: Vec<&str> = expected.iter().map(|e| e.0).chain([on_real.as_str(), look_alike.as_str()]).collect();

    // Straight to Glance: every project's images, this test's among them.
    let stage = Stage::new();
    let out = stage.w.run(&["--config-file", arg(&stage.conf), "scan", "--images", "--glance-endpoint", &glance.url, "-f", "json"]);
    // This test's images alone need a migrate, whatever else Glance holds.
    out.assert_code(1);
    let json = out.json();
    let rows = rows_of(&json["images"], &mine);
    assert_eq!(rows.len(), expected.len(), "exactly the all-zeros images are listed: {rows:#?}");
    for (image, action, is_hidden) in &expected {
        let row = &rows[*image];
        let got = row["action"].as_str().unwrap_or_default();
        assert!(got.starts_with(action), "image {image}: {got:?}, expected {action:?}");
        assert_eq!(row["migrate"], json!(*action == "new secret"), "{row}");
        assert_eq!(row["hidden"], json!(is_hidden), "{row}");
        assert_eq!(row["owner"], json!(p.id), "{row}");
        assert_eq!(row["deletion_policy"], "on_image_deletion", "{row}");
    }
    assert_eq!(rows[&shared]["members"], 1, "{}", rows[&shared]);
    assert_eq!(rows[&unshared]["members"], 0, "{}", rows[&unshared]);
    assert_eq!(rows[&unshared]["visibility"], "shared");
    assert_eq!(rows[&private]["members"], Value::Null);
    assert!(json["images"]["to_migrate"].as_u64().unwrap_or(0) >= 3, "{}", json["images"]);
    assert!(json["images"]["reported"].as_u64().unwrap_or(0) >= 4, "{}", json["images"]);

    // The table: one line per image, with its action (and reason).
    let out = stage.w.run(&["--config-file", arg(&stage.conf), "scan", "--images", "--glance-endpoint", &glance.url, "-f", "table"]);
    out.assert_code(1);
    for (image, action, is_hidden) in &expected {
        let line = out.stdout.lines().find(|l| l.contains(*image)).unwrap_or_else(|| panic!("image {image} not in the table:\n{}", out.stdout));
        assert!(line.contains(action), "image {image}: {line}");
        assert_eq!(line.contains("(hidden)"), *is_hidden, "image {image}: {line}");
    }
    for image in [&on_real, &look_alike] {
        assert!(!out.stdout.contains(image.as_str()), "image {image} is listed:\n{}", out.stdout);
    }

    // status through the proxy that shows this test's images only: its exit code is this
    // test's alone. 1 while some are to migrate.
    stage.only(&mine);
    let out = stage.status();
    out.assert_code(1);
    let json = out.json();
    assert_eq!((json["images"]["to_migrate"].as_u64(), json["images"]["reported"].as_u64()), (Some(3), Some(4)), "{}", out.stdout);
    assert_eq!(rows_of(&json["images"], &mine).len(), 7, "{}", out.stdout);

    let out = stage.migrate(&[]);
    out.assert_code(2);
    assert_eq!(out.json()["report"]["images"]["migrated"], 3, "{}", out.stdout);
    assert_eq!(out.json()["remaining"]["images"], json!({"to_migrate": 0, "reported": 4}), "{}", out.stdout);
    assert_images_done(&stage, &stage.state, &cloud, &glance, &p, &owner, &[&private, &hidden, &unshared]);

    // Only reported images left: an operator must act.
    let out = stage.status();
    out.assert_code(2);
    let json = out.json();
    assert_eq!((json["images"]["to_migrate"].as_u64(), json["images"]["reported"].as_u64()), (Some(0), Some(4)), "{}", out.stdout);
    assert_eq!(key_of(&glance, &on_real), real, "the image on a real key was changed");
    assert_eq!(key_of(&glance, &look_alike), LOOK_ALIKE, "the look-alike image was changed");
}

#[test]
fn migrate_gives_each_private_image_a_secret_its_project_reads_and_changes_nothing_else() {
    let cloud = Cloud::new();
    let mut p = Project::new("img-migrate");
    let (owner, teammate) = (p.member("owner"), p.member("teammate"));
    let mut q = Project::new("img-migrate-q");
    let quser = q.member("quser");
    let glance = Glance::new();
    let token = owner.token();

    let private = private_image(&glance, &owner);
    let hidden = id(&glance.create(&token, &ImageSpec::new("private").encrypted(ZERO).hidden(true).data(b"y")));
    let unshared = id(&glance.create(&token, &ImageSpec::new("shared").encrypted(ZERO).data(b"z")));
    let shared = id(&glance.create(&token, &ImageSpec::new("shared").encrypted(ZERO).data(b"s")));
    glance.add_member(&token, &shared, &q.id);
    glance.accept(&quser.token(), &shared, &q.id);
    let snapshot = id(&glance.create(&token, &ImageSpec::new("private").encrypted(ZERO).property("block_device_mapping", "[]")));
    let migrated = [private.as_str(), hidden.as_str(), unshared.as_str()];
    let reported = [shared.as_str(), snapshot.as_str()];

    let stage = Stage::new();
    stage.only(&[&private, &hidden, &unshared, &shared, &snapshot]);
    let before: Vec<Value> = migrated.iter().map(|i| unchanging(&glance, i)).collect();
    let reported_before: Vec<Value> = reported.iter().map(|i| glance.get_as_admin(i)).collect();

    let out = stage.migrate(&[]);
    // Reported images are left: an operator must look at them.
    out.assert_code(2);
    let json = out.json();
    assert_eq!(json["report"]["images"]["migrated"], 3, "{}", out.stdout);
    assert_eq!(json["report"]["images"]["reported"], 2, "{}", out.stdout);
    assert_eq!(json["report"]["images"]["failed"], 0, "{}", out.stdout);
    assert_images_done(&stage, &stage.state, &cloud, &glance, &p, &teammate, &migrated);
    assert_images_done(&stage, &stage.state, &cloud, &glance, &p, &owner, &migrated);
    let secrets: Vec<String> = migrated.iter().map(|i| key_of(&glance, i)).collect();
    let distinct: std::collections::BTreeSet<&String> = secrets.iter().collect();
    assert_eq!(distinct.len(), 3, "one secret per image");

    // Everything but the key ID is as before: name, visibility, owner, hidden, the deletion
    // policy, the image's own property, its data's checksum and status.
    for (image, was) in migrated.iter().zip(&before) {
        assert_eq!(&unchanging(&glance, image), was, "image {image} changed beyond its key ID");
    }
    assert_eq!(glance.get_as_admin(&private)["kmtest_marker"], "keep-me");
    assert_eq!(glance.get_as_admin(&private)[DELETION_POLICY], "on_image_deletion");
    for (image, was) in reported.iter().zip(&reported_before) {
        assert_eq!(&glance.get_as_admin(image), was, "reported image {image} was touched");
    }

    // What Cinder does with the key when it makes a volume from the image: castellan, as a
    // teammate of the owner.
    let read = castellan::read_as(&teammate.castellan(), &secrets[0]);
    let (bytes, _) = read.key();
    assert!(bytes == stage.fixed_key().as_slice(), "castellan reads another key");

    // Again: nothing to do, nothing changes.
    let out = stage.migrate(&[]);
    out.assert_code(2);
    assert_eq!(out.json()["report"]["images"]["migrated"], 0, "{}", out.stdout);
    assert_eq!(out.json()["report"]["secrets_created"], 0, "{}", out.stdout);
    let again: Vec<String> = migrated.iter().map(|i| key_of(&glance, i)).collect();
    assert_eq!(again, secrets, "a second run changed an image");
    assert_images_done(&stage, &stage.state, &cloud, &glance, &p, &owner, &migrated);

    // The owner deletes the image: Glance deletes its secret with her token.
    assert_eq!(glance.delete(&token, &private), 204);
    assert_eq!(cloud.payload(&token, &secrets[0]).status, 404, "the image's secret outlived it");
}

/// Where an image's migration is killed: its own steps, and the role grant around them.
const KILL_POINTS: [&str; 6] = ["image-journal", "image-recorded", "image-verified", "image-patched", "granted", "revoked"];

/// Two private images of a fresh project; a run killed at `point` (the first image's pass); the
/// next run finishes both and leaves nothing behind.
fn killed_at(point: &str, cloud: &Cloud) {
    let started = Instant::now();
    let mut p = Project::new("img-kill");
    let reader = p.member("reader");
    let glance = Glance::new();
    let images = [private_image(&glance, &reader), private_image(&glance, &reader)];
    let ids: Vec<&str> = images.iter().map(String::as_str).collect();
    let stage = Stage::new();
    stage.only(&ids);
    let out = stage.migrate(&[("KEYMIGRATE_FAULT", &format!("{point}=kill"))]);
    assert_eq!(out.code, -1, "{point}: the run should have been killed:\n{}", out.stderr);
    let journalled = image_files(&stage.state).len();
    let expected = usize::from(point.starts_with("image-"));
    assert_eq!(journalled, expected, "{point}: images in the journal");

    let out = stage.migrate(&[]);
    out.assert_code(0);
    assert_images_done(&stage, &stage.state, cloud, &glance, &p, &reader, &ids);
    eprintln!("killed at {point}: finished by the next run, nothing left behind ({:.1} s)", started.elapsed().as_secs_f64());
}

#[test]
fn a_run_killed_at_any_step_of_an_image_is_finished_by_the_next() {
    let cloud = Cloud::new();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(point) = KILL_POINTS.get(i) else { return };
                killed_at(point, &cloud);
            });
        }
    });
}

#[test]
fn a_lost_or_failed_patch_is_retried_and_a_refused_one_leaves_the_image_as_it_was() {
    let cloud = Cloud::new();
    let mut p = Project::new("img-patch");
    let reader = p.member("reader");
    let glance = Glance::new();
    let stage = Stage::new();

    // The PATCH is made but its answer lost (waited for until --timeout); then a 503 before
    // Glance sees it. Each case shows the run its own image only.
    let mut done = Vec::new();
    for fault in [Fault::DropAnswer, Fault::Status(503)] {
        let image = private_image(&glance, &reader);
        done.push(image.clone());
        stage.glance.clear();
        stage.only(&[&image]);
        stage.glance.rule("PATCH", "/v2/images/", 1, fault.clone());
        let t = Instant::now();
        let mut out = stage.migrate_with(&["--timeout", "5"], &[]);
        // The lost answer is waited for --timeout seconds, not Glance's default 30.
        assert!(t.elapsed() < Duration::from_secs(25), "{fault:?}: --timeout does not reach Glance:\n{}", out.stderr);
        assert!(out.stderr.lines().any(|l| l.contains("PATCH ") && l.contains("retrying")), "{fault:?}: not retried:\n{}", out.stderr);
        if out.code != 0 {
            // An unknown outcome may stop the run with the image in the journal: the next run
            // finishes it.
            assert!(!image_files(&stage.state).is_empty(), "{fault:?}: exit {} and nothing journalled:\n{}", out.code, out.stderr);
            out = stage.migrate(&[]);
        }
        out.assert_code(0);
        let ids: Vec<&str> = done.iter().map(String::as_str).collect();
        assert_images_done(&stage, &stage.state, &cloud, &glance, &p, &reader, &ids);
    }
    let kept: Vec<String> = done.iter().map(|i| key_of(&glance, i)).collect();

    // Glance refuses the PATCH: a conflict (409), an image over its property quota (413),
    // property protections (403). Each time the image is counted failed, left as it was, and
    // the secret made for it deleted.
    for status in [409, 413, 403] {
        let image = private_image(&glance, &reader);
        stage.glance.clear();
        stage.only(&[&image]);
        stage.glance.rule("PATCH", "/v2/images/", 0, Fault::Status(status));
        let before = glance.get_as_admin(&image);
        let out = stage.migrate(&[]);
        assert_ne!(out.code, 0, "{status}: a refused image is not done:\n{}", out.stderr);
        let json = out.json();
        assert_eq!(json["report"]["images"]["failed"], 1, "{status}: {}", out.stdout);
        assert_eq!(json["report"]["images"]["migrated"], 0, "{status}: {}", out.stdout);
        assert_eq!(json["report"]["secrets_created"], 1, "{status}: {}", out.stdout);
        assert_eq!(json["report"]["secrets_deleted"], 1, "{status}: {}", out.stdout);
        assert_eq!(glance.get_as_admin(&image), before, "{status}: the refused image changed");
        let mut left = tenancy::keymigrate_secrets(&cloud, &reader.token());
        left.sort();
        let mut expected = kept.clone();
        expected.sort();
        assert_eq!(left, expected, "{status}: the refused image's secret is left (or another went)");
        assert_eq!(p.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new());
        assert_eq!(image_files(&stage.state), Vec::<PathBuf>::new());
    }
}

#[test]
fn a_key_id_changed_before_the_patch_is_never_overwritten() {
    let cloud = Cloud::new();
    let mut p = Project::new("img-race");
    let reader = p.member("reader");
    let glance = Glance::new();
    let image = private_image(&glance, &reader);
    let stage = Stage::new();
    stage.only(&[&image]);

    // Paused after its secret is read back, before the last read and the PATCH.
    let gate = stage.w.path("gate");
    let child = stage.spawn(&stage.state, &[("KEYMIGRATE_FAULT", &format!("image-verified=wait:{}", gate.display()))]);
    let reached = stage.w.path("gate.reached");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reached.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Someone else points the image at another key meanwhile.
    let theirs = uuid();
    let r = glance.patch_as_admin(&image, &json!([{"op": "replace", "path": format!("/{KEY_ID}"), "value": theirs}]));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    std::fs::write(&gate, "go").expect("open the gate");
    let out = stage.finish(child);
    assert!(reached.exists(), "the run never reached image-verified:\n{}", out.stderr);
    assert_eq!(key_of(&glance, &image), theirs, "the run overwrote a key ID it did not set:\n{}", out.stderr);
    assert_eq!(out.json()["report"]["images"]["migrated"], 0, "{}", out.stdout);
    assert_eq!(tenancy::keymigrate_secrets(&cloud, &reader.token()), Vec::<String>::new(), "the run's unused secret is left");
    assert_eq!(p.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new());
    assert_eq!(image_files(&stage.state), Vec::<PathBuf>::new());
    out.assert_code(0);
}

#[test]
fn two_runs_at_once_leave_each_image_on_one_secret_and_none_unused() {
    let cloud = Cloud::new();
    let mut p = Project::new("img-twice");
    let reader = p.member("reader");
    let glance = Glance::new();
    let images: Vec<String> = (0..4).map(|_| private_image(&glance, &reader)).collect();
    let ids: Vec<&str> = images.iter().map(String::as_str).collect();
    let stage = Stage::new();
    stage.only(&ids);
    let states = [stage.w.path("state-a"), stage.w.path("state-b")];
    let children: Vec<Child> = states.iter().map(|s| stage.spawn(s, &[])).collect();
    for child in children {
        let out = stage.finish(child);
        // 1: an image the other run patched first is counted failed by this one.
        assert!(out.code == 0 || out.code == 1, "exit {}:\n{}", out.code, out.stderr);
    }
    for state in &states {
        assert_images_done(&stage, state, &cloud, &glance, &p, &reader, &ids);
    }
}

/// The window the engine's design leaves (Glance has no compare-and-swap), made certain: run B
/// reads the image (still on the all-zeros ID) right before its PATCH, the answer is held back
/// while run A migrates the image from start to end, then B patches over A's secret. What must
/// hold even then: the image ends on a secret that a member of the owner project reads as exactly
/// the fixed key, and both journals are empty. What the window costs, recorded: A's secret, which
/// A counted migrated and forgot, stays in the project unused (holding the key); the operator
/// guide says to run `--images` from one machine.
#[test]
fn a_run_whose_last_read_is_stale_still_leaves_the_image_on_a_secret_holding_the_key() {
    let cloud = Cloud::new();
    let mut p = Project::new("img-stale");
    let reader = p.member("reader");
    let glance = Glance::new();
    let image = private_image(&glance, &reader);
    let stage = Stage::new();
    stage.only(&[&image]);
    // B's own way to Glance: the first read of the image (the one before the PATCH) is answered
    // 10 s late.
    let b_glance = Proxy::start(&env("KEYMIGRATE_TEST_GLANCE_URL"));
    b_glance.rule("GET", "/v2/images?", 0, Fault::OnlyImages(vec![image.clone()]));
    // keymigrate escapes every non-alphanumeric character of the ID in the path.
    b_glance.rule("GET", &format!("/v2/images/{image}"), 1, Fault::Stall(Duration::from_secs(10)));
    let b_state = stage.w.path("state-b");
    let gate = stage.w.path("gate");
    let b_args = ["--config-file", arg(&stage.conf), "migrate", "--images", "--glance-endpoint", &b_glance.url, "--state-dir", arg(&b_state), "-f", "json"];
    let b = stage.w.spawn_env(&b_args, &[("KEYMIGRATE_FAULT", &format!("image-verified=wait:{}", gate.display()))]);
    let reached = stage.w.path("gate.reached");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reached.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&gate, "go").expect("open the gate");
    // B's read has reached Glance; A migrates the image meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    let a = stage.migrate(&[]);
    a.assert_code(0);
    let a_secret = key_of(&glance, &image);
    let out = stage.finish(b);
    let final_secret = key_of(&glance, &image);
    eprintln!("A's secret {a_secret}; B exits {}, the image names {final_secret}", out.code);
    assert!(out.code == 0 || out.code == 1, "B: exit {}:\n{}", out.code, out.stderr);
    let payload = cloud.payload(&reader.token(), &final_secret);
    assert_eq!(payload.status, 200, "a member cannot read the image's secret {final_secret}");
    assert!(payload.body == stage.fixed_key(), "the image's secret {final_secret} does not hold the fixed key");
    for state in [&stage.state, &b_state] {
        assert_eq!(image_files(state), Vec::<PathBuf>::new(), "images left in {}", state.display());
    }
    if final_secret != a_secret {
        let left = cloud.payload(&reader.token(), &a_secret);
        assert!(left.status == 200 && left.body == stage.fixed_key(), "A's unused secret does not hold the key either");
        eprintln!("the window's cost: A's secret {a_secret} is left unused in the project, holding the key");
    }
}

/// `verify --images` judges each image whose key keymigrate made, and catches one whose secret
/// no longer holds the key; `rollback --images` puts the images back on the all-zeros ID and
/// deletes their secrets.
#[test]
fn verify_and_rollback_handle_migrated_images() {
    let cloud = Cloud::new();
    let mut p = Project::new("img-verify");
    let owner = p.member("owner");
    let glance = Glance::new();
    let images = [private_image(&glance, &owner), private_image(&glance, &owner)];
    let ids: Vec<&str> = images.iter().map(String::as_str).collect();
    let stage = Stage::new();
    stage.only(&ids);
    stage.migrate(&[]).assert_code(0);
    let secrets: Vec<String> = images.iter().map(|i| key_of(&glance, i)).collect();
    // Nothing left in the database or the images: status says fixed_key may go after verify.
    let out = stage.status();
    out.assert_code(0);
    assert!(
        out.stderr.contains("remain in the database or in Glance's images: [key_manager] fixed_key can be removed once `keymigrate verify --all-hosts --images` passes"),
        "{}",
        out.stderr
    );

    let verify = |expect: i32| {
        let out = stage.w.run(&stage.args("verify", &stage.state, &["-f", "json"]));
        out.assert_code(expect);
        out.json()["rows"].as_array().cloned().unwrap_or_default()
    };
    let rows = verify(0);
    for (image, secret) in images.iter().zip(&secrets) {
        let row = rows.iter().find(|r| r["id"] == image.as_str()).unwrap_or_else(|| panic!("image {image} not verified: {rows:?}"));
        assert_eq!((row["table"].as_str(), row["key_id"].as_str(), row["result"].as_str()), (Some("images"), Some(secret.as_str()), Some("ok")));
    }
    // A second keymigrate-named secret of the project that holds other bytes, put on the
    // second image behind keymigrate's back.
    let wrong = cloud.store(&owner.token(), &format!("keymigrate-image-{}-ffffffff", images[1]), &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hex::decode(random_key()).expect("hex")), 256);
    assert_eq!(glance.set_property(&owner.token(), &images[1], KEY_ID, &wrong).status, 200);
    let rows = verify(2);
    let bad = rows.iter().find(|r| r["id"] == images[1].as_str()).expect("the altered image");
    assert_eq!(bad["result"], "secret does not hold the fixed key");
    // Rollback refuses the altered image and puts the other back.
    let out = stage.w.run(&stage.args("rollback", &stage.state, &["-f", "json"]));
    out.assert_code(2);
    assert_eq!(key_of(&glance, &images[0]), ZERO, "the first image is back on the all-zeros ID");
    assert_eq!(cloud.payload(&owner.token(), &secrets[0]).status, 404, "its secret is deleted");
    assert_eq!(key_of(&glance, &images[1]), wrong, "the altered image is left alone");
    // Its old secret, unused now, holds the key; the project's cleanup deletes both.
    assert_eq!(cloud.payload(&owner.token(), &secrets[1]).status, 200);
}

/// `--images` with an identity that is no admin: Glance would list only its own project's
/// images, so keymigrate refuses (exit 2) before listing or writing anything.
#[test]
fn images_need_an_admin_identity() {
    let stage = Stage::new();
    let cloud_yaml = format!(
        "clouds:\n  member:\n    auth_type: password\n    auth:\n      auth_url: {}\n      username: alice\n      password: \"{}\"\n      project_id: {}\n      user_domain_name: Default\n",
        env("KEYMIGRATE_TEST_KEYSTONE_URL"),
        env("KEYMIGRATE_TEST_ALICE_PASSWORD"),
        env("KEYMIGRATE_TEST_DEMO_PROJECT_ID")
    );
    stage.w.write("clouds.yaml", &cloud_yaml);
    for command in ["scan", "status", "migrate"] {
        let out = stage.w.run(&stage.args(command, &stage.state, &["--os-cloud", "member"]));
        out.assert_error(2, "holds no admin role");
        assert!(!out.stderr.contains(&env("KEYMIGRATE_TEST_ALICE_PASSWORD")), "the password leaked");
    }
    assert!(image_files(&stage.state).is_empty());
}

/// `--shared-images acl`: an image shared with two projects (one member accepted, one not yet)
/// gets a secret in its owner's project whose read ACL names every user of the member projects;
/// each of them reads it through castellan as the fixed key, as does the owner's teammate, while
/// a user of an unrelated project gets 403. A kill between the ACL and the patch is finished by
/// the next run. `verify --images` names users who joined a member project afterwards.
#[test]
fn shared_images_opt_in_gives_the_member_projects_users_a_read_acl() {
    let cloud = Cloud::new();
    let mut p = Project::new("img-shared");
    let (owner, teammate) = (p.member("owner"), p.member("teammate"));
    let mut q = Project::new("img-shared-q");
    let (q1, q2) = (q.member("q1"), q.member("q2"));
    let mut r = Project::new("img-shared-r");
    let r1 = r.member("r1");
    let mut s = Project::new("img-shared-s");
    let stranger = s.member("stranger");
    let glance = Glance::new();
    let token = owner.token();
    let mut shared = Vec::new();
    for data in [b"s1", b"s2"] {
        let image = id(&glance.create(&token, &ImageSpec::new("shared").encrypted(ZERO).data(data)));
        glance.add_member(&token, &image, &q.id);
        glance.accept(&q1.token(), &image, &q.id);
        // R's membership stays pending: its users reach the image by ID all the same.
        glance.add_member(&token, &image, &r.id);
        shared.push(image);
    }
    let public = id(&glance.create(&tenancy::admin_token(), &ImageSpec::new("public").encrypted(ZERO).data(b"p")));
    let ids: Vec<&str> = shared.iter().map(String::as_str).chain([public.as_str()]).collect();
    let stage = Stage::new();
    stage.only(&ids);

    // Without the opt-in the shared images are reported; with it, scan says what migrate does.
    let scan = |extra: &[&str], expect: i32| {
        let mut args = vec!["-f", "json"];
        args.extend(extra);
        let out = stage.w.run(&stage.args("scan", &stage.state, &args));
        out.assert_code(expect);
        rows_of(&out.json()["images"], &ids)
    };
    // Nothing to migrate, only images to report: 2.
    let rows = scan(&[], 2);
    assert_eq!(rows[&shared[0]]["migrate"], false, "{rows:?}");
    assert!(rows[&shared[0]]["action"].as_str().unwrap_or_default().contains("--shared-images acl"), "{rows:?}");
    let rows = scan(&["--shared-images", "acl"], 1);
    for image in &shared {
        assert_eq!((rows[image]["migrate"].as_bool(), rows[image]["members_acl"].as_bool(), rows[image]["members"].as_u64()), (Some(true), Some(true), Some(2)), "{rows:?}");
    }
    assert_eq!(rows[&public]["migrate"], false, "a public image is never migrated: {rows:?}");

    // The first run is killed once the first image's ACL is set, before its patch.
    let out = stage.migrate_with(&["--shared-images", "acl"], &[("KEYMIGRATE_FAULT", "image-acl=kill")]);
    assert_eq!(out.code, -1, "the run should have been killed:\n{}", out.stderr);
    assert_eq!(image_files(&stage.state).len(), 1, "the image in the journal");
    let out = stage.migrate_with(&["--shared-images", "acl"], &[]);
    // The public image is left: an operator must look at it.
    out.assert_code(2);
    let json = out.json();
    assert_eq!((json["report"]["images"]["migrated"].as_u64(), json["report"]["images"]["recovered"].as_u64()), (Some(2), Some(1)), "{}", out.stdout);
    assert_eq!(json["report"]["images"]["reported"], 1, "{}", out.stdout);
    assert_eq!(key_of(&glance, &public), ZERO, "the public image was changed");

    let key = stage.fixed_key();
    for image in &shared {
        let secret = key_of(&glance, image);
        assert_ne!(secret, ZERO, "image {image} was not migrated");
        for reader in [&owner, &teammate, &q1, &q2, &r1] {
            let payload = cloud.payload(&reader.token(), &secret);
            assert_eq!(payload.status, 200, "image {image}: {reader:?} cannot read secret {secret}");
            assert!(payload.body == key, "image {image}: secret {secret} does not hold the fixed key");
        }
        assert_eq!(cloud.payload(&stranger.token(), &secret).status, 403, "image {image}: a user of an unrelated project reads its key");
        // What Cinder does with the key when a member project's user makes a volume from it.
        let read = castellan::read_as(&q2.castellan(), &secret);
        let (bytes, _) = read.key();
        assert!(bytes == key.as_slice(), "castellan reads another key");
    }
    assert_images_done(&stage, &stage.state, &cloud, &glance, &p, &teammate, &shared.iter().map(String::as_str).collect::<Vec<_>>());

    // verify: ok while the ACL names every member project's user; a user who joins Q later is
    // named as a problem.
    let verify = |expect: i32| {
        let out = stage.w.run(&stage.args("verify", &stage.state, &["-f", "json"]));
        out.assert_code(expect);
        out
    };
    let out = verify(0);
    let rows = out.json()["rows"].as_array().cloned().unwrap_or_default();
    for image in &shared {
        let row = rows.iter().find(|r| r["id"] == image.as_str()).unwrap_or_else(|| panic!("image {image} not verified: {rows:?}"));
        assert_eq!(row["result"], "ok", "{row}");
    }
    let late = q.member("late");
    let out = verify(2);
    let rows = out.json()["rows"].as_array().cloned().unwrap_or_default();
    let row = rows.iter().find(|r| r["id"] == shared[0].as_str()).expect("the shared image");
    assert!(row["result"].as_str().unwrap_or_default().contains("member project"), "{row}");
    assert!(out.stderr.contains(&late.id), "verify does not name the late user:\n{}", out.stderr);
}

/// `--images` reads glance-api.conf's `[key_manager] backend`, and only that: the test Glance's
/// own file (Barbican) is confirmed; another backend or an unreadable file gets a warning that
/// says what to set; nothing of the file's other values (its passwords) is shown.
#[test]
fn glance_api_conf_is_checked_for_its_key_manager() {
    let stage = Stage::new();
    let real = env("KEYMIGRATE_TEST_GLANCE_CONF");
    let vault = stage.w.write("glance-vault.conf", "[key_manager]\nbackend = vault\n[keystone_authtoken]\npassword = glance-secret-pw\n");
    let missing = stage.w.path("no-such-glance-api.conf");
    let glance_pw = std::fs::read_to_string(&real).expect("the test Glance's glance-api.conf").lines()
        .filter_map(|l| l.split_once('=')).filter(|(k, _)| k.trim() == "password").map(|(_, v)| v.trim().to_string()).next().expect("a password in glance-api.conf");
    for (file, expected) in [
        (real.as_str(), "Glance's key manager is Barbican"),
        (arg(&vault), "is 'vault', not barbican: deleting a migrated image will not delete its secret"),
        (arg(&missing), "Could not check Glance's key manager"),
    ] {
        let out = stage.w.run(&stage.args("scan", &stage.state, &["--glance-config", file, "-f", "json"]));
        assert!(out.stderr.lines().any(|l| l.contains(expected)), "{file}: no {expected:?}:\n{}", out.stderr);
        for secret in ["glance-secret-pw", glance_pw.as_str()] {
            assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret), "{file}: a password of glance-api.conf is shown");
        }
    }
}

/// An image whose owner project Keystone no longer has: `scan` reports it with the reason,
/// `migrate` leaves it (no secret made, no grant tried) and exits 2.
#[test]
fn an_image_whose_owner_project_is_gone_is_reported_and_left() {
    let mut gone = Project::new("img-gone");
    let owner = gone.member("owner");
    let glance = Glance::new();
    let image = private_image(&glance, &owner);
    let (status, answer) = tenancy::admin_call("DELETE", &format!("/projects/{}", gone.id), None);
    assert_eq!(status, 204, "delete project: {answer}");
    let stage = Stage::new();
    stage.only(&[&image]);
    let before = glance.get_as_admin(&image);

    let out = stage.w.run(&stage.args("scan", &stage.state, &["-f", "json"]));
    out.assert_code(2);
    let rows = rows_of(&out.json()["images"], &[&image]);
    assert_eq!(rows[&image]["action"], "reported: its owner project no longer exists in Keystone, so no secret can belong to it", "{rows:?}");
    let out = stage.migrate(&[]);
    out.assert_code(2);
    let json = out.json();
    assert_eq!((json["report"]["images"]["reported"].as_u64(), json["report"]["secrets_created"].as_u64()), (Some(1), Some(0)), "{}", out.stdout);
    assert_eq!(json["report"]["keystone"]["grants_made"], 0, "{}", out.stdout);
    assert_eq!(glance.get_as_admin(&image), before, "the image changed");
    assert!(image_files(&stage.state).is_empty());
    let out = stage.status();
    out.assert_code(2);
    assert!(out.stderr.contains("but Glance's images still use it: keep fixed_key"), "{}", out.stderr);
    assert_eq!(glance.delete_as_admin(&image), 204);
}

// ---------------------------------------------------------------------------------------------
// Glance from Keystone's catalog, as Cinder finds it: [DEFAULT] glance_catalog_info, in the
// region of the Barbican keymigrate writes to. The testenv's catalog has Glance in RegionOne
// (http) and RegionTLS (https through stunnel; its internal endpoint as https://localhost:…).

/// `<command> --images` with no Glance URL: Glance comes from the catalog. `--image-owner`
/// keeps the run to `owner`'s images (Glance is shared by the tests running at the same time).
fn catalog_args<'a>(conf: &'a Path, state: &'a Path, command: &'a str, owner: &'a str) -> Vec<&'a str> {
    let mut args = vec!["--config-file", arg(conf), command, "--images", "--image-owner", owner];
    if ["migrate", "verify", "rollback"].contains(&command) {
        args.extend(["--state-dir", arg(state)]);
    }
    args.extend(["-f", "json"]);
    args
}

/// `scan` and `migrate --images` through the catalog's RegionTLS Glance over HTTPS: with
/// `[barbican] barbican_region_name = RegionTLS` Barbican and Glance are both that region's,
/// trusted through the testenv's CA; the image gets its secret as through `--glance-endpoint`.
#[test]
fn images_are_migrated_through_the_catalogs_glance_of_the_barbicans_region_over_https() {
    let cloud = Cloud::new();
    let mut p = Project::new("img-catalog");
    let owner = p.member("owner");
    let glance = Glance::new();
    let image = private_image(&glance, &owner);
    let mut stage = Stage::new();
    let key = stage.key.clone();
    stage.conf = stage.w.conf(&stage._db, Some(&key), &crate::tls::trusting_sections());
    let using = format!(
        "Using Glance at {}/v2 (Keystone's catalog: 'image', interface public, region RegionTLS)",
        env("KEYMIGRATE_TEST_GLANCE_TLS_URL")
    );

    let out = stage.w.run(&catalog_args(&stage.conf, &stage.state, "scan", &p.id));
    out.assert_code(1);
    assert!(out.stderr.contains(&using), "{}", out.stderr);
    let rows = rows_of(&out.json()["images"], &[&image]);
    assert_eq!(rows[&image]["action"], "new secret", "{rows:?}");

    let out = stage.w.run(&catalog_args(&stage.conf, &stage.state, "migrate", &p.id));
    out.assert_code(0);
    assert!(out.stderr.contains(&using), "{}", out.stderr);
    let barbican = format!("Using Barbican at {}/v1", env("KEYMIGRATE_TEST_BARBICAN_TLS_URL"));
    assert!(out.stderr.contains(&barbican), "{}", out.stderr);
    assert_eq!(out.json()["report"]["images"]["migrated"], 1, "{}", out.stdout);
    assert_images_done(&stage, &stage.state, &cloud, &glance, &p, &owner, &[&image]);
}

/// `glance_catalog_info = image:glance:internalURL` takes the region's internal endpoint:
/// RegionTLS's is https://localhost:…, its public one https://127.0.0.1:…; RegionOne's, plain
/// HTTP. The images are listed through it.
#[test]
fn glance_catalog_info_internal_url_takes_the_regions_internal_endpoint() {
    let mut p = Project::new("img-internal");
    let owner = p.member("owner");
    let glance = Glance::new();
    let image = private_image(&glance, &owner);
    let mut stage = Stage::new();
    let key = stage.key.clone();
    let internal = "\n[DEFAULT]\nglance_catalog_info = image:glance:internalURL\n";
    for (sections, using) in [
        (
            crate::tls::trusting_sections(),
            format!("Using Glance at {}/v2 (Keystone's catalog: 'image', interface internal, region RegionTLS)", env("KEYMIGRATE_TEST_GLANCE_TLS_INTERNAL_URL")),
        ),
        (
            service_sections("password"),
            format!("Using Glance at {}/v2 (Keystone's catalog: 'image', interface internal, region RegionOne)", env("KEYMIGRATE_TEST_GLANCE_URL")),
        ),
    ] {
        stage.conf = stage.w.conf(&stage._db, Some(&key), &format!("{sections}{internal}"));
        let out = stage.w.run(&catalog_args(&stage.conf, &stage.state, "scan", &p.id));
        out.assert_code(1);
        assert!(out.stderr.contains(&using), "no {using:?}:\n{}", out.stderr);
        assert_eq!(rows_of(&out.json()["images"], &[&image]).len(), 1, "{}", out.stdout);
    }
}

/// A run refused before it wrote anything: one error line with `needle` and exit `code`, the
/// rows as they were, no secret made for them, nothing in the state directory's journals.
#[track_caller]
fn assert_refused_before_writing(f: &crate::migrate::Fixture, before: &str, out: &Output, code: i32, needle: &str, cloud: &Cloud) {
    out.assert_error(code, needle);
    assert_eq!(f.db.fingerprint(), before, "a row was written");
    f.check_no_litter(cloud, &cloud.cinder());
    f.w.assert_state_clean(&f.state);
    for p in walk(&f.state).into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        assert!(!text.contains("secret"), "the journal holds {}: {text}", p.display());
    }
    assert_eq!(tenancy::grant_files(&f.state), Vec::<PathBuf>::new(), "grants in the journal");
    assert_eq!(image_files(&f.state), Vec::<PathBuf>::new(), "images in the journal");
}

/// A host's rows and a cinder.conf as the tests' usual one, but without a region for Barbican
/// (and so for Glance), with `extra` appended.
fn regionless_fixture(host: &str, extra: &str) -> crate::migrate::Fixture {
    let mut f = crate::migrate::Fixture::new(Backend::Sqlite, "password");
    f.seed_host(host);
    let usual = service_sections("password");
    let regionless = usual.replace("barbican_region_name = RegionOne\n", "");
    assert_ne!(regionless, usual, "service_sections names no region any more");
    let key = f.key.clone();
    f.conf = f.w.conf(&f.db, Some(&key), &format!("{regionless}{extra}"));
    f
}

/// No region named (neither `[barbican] barbican_region_name` nor `[glance] region_name`) and
/// Glance in two regions of the catalog: `migrate --images` (with a host's rows) and `scan`
/// refuse in one line naming both regions and what to set, exit 2, nothing written. A region
/// named where the catalog has no Glance: one line naming region and interface.
#[test]
fn glance_in_several_regions_and_none_named_is_refused_before_anything_is_written() {
    let cloud = Cloud::new();
    // No project owns images under this ID, should a run ever reach Glance's listing.
    let nobody = uuid();
    for command in ["migrate", "scan"] {
        let f = regionless_fixture("hostGR", "");
        let before = f.db.fingerprint();
        let mut args = catalog_args(&f.conf, &f.state, command, &nobody);
        args.extend(["--host", "hostGR"]);
        let out = f.w.run(&args);
        assert_refused_before_writing(&f, &before, &out, 2, "Keystone's catalog lists 'image' endpoints for interface public in several regions (", &cloud);
        let line = out.stderr.lines().find(|l| l.starts_with("keymigrate: error:")).unwrap_or_default();
        for word in ["RegionOne", "RegionTLS", "set [barbican] barbican_region_name", "[DEFAULT] glance_api_servers", "--glance-endpoint"] {
            assert!(line.contains(word), "{command}: the line lacks {word:?}: {line}");
        }
    }
    // RegionTwo has a Barbican in the catalog but no Glance.
    let f = regionless_fixture("hostGR2", "barbican_region_name = RegionTwo\n");
    let before = f.db.fingerprint();
    let mut args = catalog_args(&f.conf, &f.state, "scan", &nobody);
    args.extend(["--host", "hostGR2"]);
    let out = f.w.run(&args);
    let needle = "Keystone's catalog has no 'image' endpoint for interface public in region RegionTwo ([barbican] barbican_region_name), only in ";
    assert_refused_before_writing(&f, &before, &out, 2, needle, &cloud);
}

/// A `glance_catalog_info` Cinder could not parse, or `[glance] region_name` naming another
/// region than `[barbican] barbican_region_name`: one line naming the option, exit 127, nothing
/// written. With a Glance URL given, Cinder does not read glance_catalog_info, nor keymigrate.
#[test]
fn a_malformed_glance_catalog_info_or_two_regions_are_refused() {
    let cloud = Cloud::new();
    let nobody = uuid();
    for (extra, needle) in [
        ("[DEFAULT]\nglance_catalog_info = image:glance\n", "[DEFAULT] glance_catalog_info: has 2 field(s), not the 3 of <service_type>:<service_name>:<endpoint_type>"),
        ("[DEFAULT]\nglance_catalog_info = image:glance:publicURL:x\n", "[DEFAULT] glance_catalog_info: has 4 field(s)"),
        ("[DEFAULT]\nglance_catalog_info = :glance:publicURL\n", "[DEFAULT] glance_catalog_info: has no service type"),
        ("[DEFAULT]\nglance_catalog_info = image:glance:public_url\n", "[DEFAULT] glance_catalog_info: endpoint type 'public_url' is not one of publicURL, internalURL, adminURL"),
        ("barbican_region_name = RegionOne\n[glance]\nregion_name = RegionTLS\n", "[glance] region_name: is RegionTLS, but [barbican] barbican_region_name is RegionOne"),
    ] {
        let f = regionless_fixture("hostGC", extra);
        let before = f.db.fingerprint();
        let mut args = catalog_args(&f.conf, &f.state, "migrate", &nobody);
        args.extend(["--host", "hostGC"]);
        let out = f.w.run(&args);
        assert_refused_before_writing(&f, &before, &out, 127, needle, &cloud);
        assert!(out.stderr.lines().any(|l| l.contains("cinder.conf line") || needle.starts_with("[glance]")), "no file and line:\n{}", out.stderr);
    }
    let f = regionless_fixture("hostGC", "[DEFAULT]\nglance_catalog_info = image:glance\n");
    let glance = env("KEYMIGRATE_TEST_GLANCE_URL");
    let out = f.w.run(&["--config-file", f.conf(), "scan", "--images", "--image-owner", &nobody, "--glance-endpoint", &glance]);
    out.assert_code(0);
}
