//! `scan --nova` and `status --nova` against real Nova 34 databases (an API database, cell0,
//! cell1 and cell2, built by Nova's own migrations, on SQLite, MariaDB and PostgreSQL): every
//! cell's live instances whose `ephemeral_key_uuid` is exactly the all-zeros ID are found and
//! reported by cell and host, nothing else is, nothing is written; nova.conf's key manager and
//! `fixed_key` are checked; a cell that cannot be read is named and keeps status from done.

use serde_json::Value;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::support::castellan;
use crate::support::cloud::Cloud;
use crate::support::nova::{InstanceSpec, NovaCloud, CONF_KEY_MANAGER};
use crate::support::tenancy::{self, Member, Project};
use crate::support::*;

/// One digit short: not the all-zeros ID (and short enough that MariaDB keeps it whole).
const LOOK_ALIKE: &str = "00000000-0000-0000-0000-00000000000";

/// An empty Cinder database and its cinder.conf (fixed key `key`), and a nova.conf for `nova`.
struct Stage {
    _db: CinderDb,
    w: Workdir,
    conf: PathBuf,
    nova_conf: PathBuf,
}

impl Stage {
    fn new(nova: &NovaCloud, cinder_key: &str, nova_key: Option<&str>, nova_backend: &str) -> Stage {
        let db = CinderDb::new(Backend::Sqlite);
        let mut w = Workdir::new();
        let conf = w.conf(&db, Some(cinder_key), &service_sections("password"));
        let nova_conf = w.write("nova.conf", &nova.nova_conf(nova_key, nova_backend));
        Stage { _db: db, w, conf, nova_conf }
    }

    fn migrate(&self, state: &Path, vars: &[(&str, &str)]) -> Output {
        let mut args = vec!["--config-file", arg(&self.conf), "migrate", "--nova", "--nova-config-file", arg(&self.nova_conf)];
        args.extend(["--state-dir", arg(state), "-f", "json"]);
        let out = self.w.run_env(&args, vars);
        assert!(!out.stdout.contains("kmtest-pw") && !out.stderr.contains("kmtest-pw"), "a database password is shown:\n{}", out.stderr);
        out
    }

    fn run(&self, command: &str, extra: &[&str]) -> Output {
        let mut args = vec!["--config-file", arg(&self.conf), command, "--nova", "--nova-config-file", arg(&self.nova_conf), "-f", "json"];
        args.extend(extra);
        let out = self.w.run(&args);
        // Database passwords never appear.
        assert!(!out.stdout.contains("kmtest-pw") && !out.stderr.contains("kmtest-pw"), "a database password is shown:\n{}\n{}", out.stdout, out.stderr);
        out
    }
}

/// Every instance of every cell, for "nothing changed" checks.
fn everything(nova: &NovaCloud) -> Vec<Vec<Value>> {
    nova.cells.iter().map(|c| nova.instances(&c.name)).collect()
}

fn uuids(cell: &Value) -> Vec<String> {
    let mut u: Vec<String> = cell["instances"].as_array().into_iter().flatten().map(|i| i["uuid"].as_str().unwrap_or_default().to_string()).collect();
    u.sort();
    u
}

fn cell<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["cells"].as_array().and_then(|c| c.iter().find(|c| c["name"] == name)).unwrap_or_else(|| panic!("no cell {name}: {report}"))
}

#[test]
fn scan_and_status_find_every_cells_all_zeros_instances_on_every_backend() {
    for backend in [Backend::Sqlite, Backend::Mysql, Backend::Postgres] {
        let nova = NovaCloud::new(backend);
        let zero = |host: Option<&str>| InstanceSpec::new().key(Some(ZERO)).host(host).owner("proj-a", "user-a");
        let failed = zero(None).unscheduled();
        let (c1a, c1b) = (zero(Some("compute-1")), zero(Some("compute-2")));
        let busy = zero(Some("compute-1")).task_state(Some("rebuilding"));
        let c2 = zero(Some("compute-3")).owner("proj-b", "user-b");
        nova.insert_instance("cell0", &failed);
        for spec in [&c1a, &c1b, &busy] {
            nova.insert_instance("cell1", spec);
        }
        nova.insert_instance("cell2", &c2);
        // Not found: a real key, deleted, a look-alike, no key.
        nova.insert_instance("cell1", &InstanceSpec::new().key(Some(&uuid())));
        nova.insert_instance("cell1", &InstanceSpec::new().key(Some(ZERO)).deleted());
        nova.insert_instance("cell2", &InstanceSpec::new().key(Some(LOOK_ALIKE)));
        nova.insert_instance("cell2", &InstanceSpec::new().key(None));
        let key = random_key();
        let stage = Stage::new(&nova, &key, Some(&key), "barbican");
        let before = everything(&nova);

        let out = stage.run("scan", &[]);
        // Instances migrate --nova can take: more to do.
        out.assert_code(1);
        let report = &out.json()["nova"];
        assert_eq!(report["instances"], 5, "{backend:?}: {report}");
        assert_eq!(report["cells"].as_array().map(Vec::len), Some(3), "{backend:?}: {report}");
        let mut want0 = vec![failed.uuid.clone()];
        want0.sort();
        assert_eq!(uuids(cell(report, "cell0")), want0, "{backend:?}: cell0");
        let mut want1 = vec![c1a.uuid.clone(), c1b.uuid.clone(), busy.uuid.clone()];
        want1.sort();
        assert_eq!(uuids(cell(report, "cell1")), want1, "{backend:?}: cell1");
        assert_eq!(uuids(cell(report, "cell2")), vec![c2.uuid.clone()], "{backend:?}: cell2");
        // cell0's own mapping UUID is the all-zeros ID: it is a cell, not an instance.
        assert_eq!(cell(report, "cell0")["uuid"], ZERO);
        let busy_row = cell(report, "cell1")["instances"].as_array().and_then(|i| i.iter().find(|i| i["uuid"] == busy.uuid.as_str())).cloned().unwrap_or_default();
        assert_eq!((busy_row["task_state"].as_str(), busy_row["migrate"].as_bool()), (Some("rebuilding"), Some(false)), "{busy_row}");
        assert!(busy_row["action"].as_str().unwrap_or_default().starts_with("wait"), "{busy_row}");
        let hosts: Vec<(Option<String>, u64)> = report["by_host"].as_array().into_iter().flatten()
            .map(|h| (h["host"].as_str().map(String::from), h["instances"].as_u64().unwrap_or(0))).collect();
        assert_eq!(hosts, vec![(None, 1), (Some("compute-1".into()), 2), (Some("compute-2".into()), 1), (Some("compute-3".into()), 1)], "{backend:?}");
        assert_eq!((report["same_key_as_cinder"].as_bool(), report["conf_key_manager"].as_bool(), report["done"].as_bool()), (Some(true), Some(false), Some(false)));
        assert!(out.stderr.contains("There are still 5 Nova instance(s) whose ephemeral_key_uuid is the ConfKeyManager's all-zeros key ID: keep fixed_key in nova.conf"), "{}", out.stderr);
        assert!(out.stderr.contains("nova.conf's fixed_key is the same as cinder.conf's"), "{}", out.stderr);

        let out = stage.run("status", &[]);
        out.assert_code(1);
        let json = out.json();
        assert_eq!((json["done"].as_bool(), json["nova"]["instances"].as_u64()), (Some(false), Some(5)), "{backend:?}");
        // One compute host at a time.
        let out = stage.run("status", &["--nova-host", "compute-2"]);
        out.assert_code(1);
        assert_eq!(out.json()["nova"]["instances"], 1, "{backend:?}");
        // The table form names every instance with its cell.
        let out = stage.w.run(&["--config-file", arg(&stage.conf), "scan", "--nova", "--nova-config-file", arg(&stage.nova_conf)]);
        out.assert_code(1);
        for id in [&failed.uuid, &c1a.uuid, &c2.uuid] {
            assert!(out.stdout.contains(id.as_str()), "{backend:?}: {id} not in the table:\n{}", out.stdout);
        }
        assert_eq!(everything(&nova), before, "{backend:?}: a Nova database changed");
        eprintln!("{backend:?}: 5 instances found in 3 cells, none written");
    }
}

#[test]
fn nova_conf_is_checked_and_a_clean_cloud_is_done() {
    let nova = NovaCloud::new(Backend::Sqlite);
    nova.insert_instance("cell1", &InstanceSpec::new().key(Some(&uuid())));
    let key = random_key();

    // Nothing on the all-zeros ID, Nova on Barbican, the same key: done.
    let stage = Stage::new(&nova, &key, Some(&key), "barbican");
    let out = stage.run("status", &[]);
    out.assert_code(0);
    assert_eq!(out.json()["nova"]["done"], true);
    assert!(out.stderr.contains("No Nova instances are using the ConfKeyManager's all-zeros ephemeral key ID."), "{}", out.stderr);

    // Nova still on its ConfKeyManager: never done, and said so.
    let stage = Stage::new(&nova, &key, Some(&key), CONF_KEY_MANAGER);
    let out = stage.run("status", &[]);
    out.assert_code(2);
    assert!(out.stderr.contains("Nova's [key_manager] backend is still the ConfKeyManager"), "{}", out.stderr);

    // nova.conf's key is not cinder.conf's: said, without showing either.
    let other = random_key();
    let stage = Stage::new(&nova, &key, Some(&other), "barbican");
    let out = stage.run("scan", &[]);
    assert!(out.stderr.contains("nova.conf's fixed_key differs from cinder.conf's"), "{}", out.stderr);
    assert_eq!(out.json()["nova"]["same_key_as_cinder"], false);
    assert!(!out.stderr.contains(&other) && !out.stdout.contains(&other), "nova.conf's key is shown");

    // No [api_database] connection, a nova.conf that does not exist: one line, exit 127.
    let stage = Stage::new(&nova, &key, Some(&key), "barbican");
    let bare = stage.w.write("nova-bare.conf", "[key_manager]\nbackend = barbican\n");
    let out = stage.w.run(&["--config-file", arg(&stage.conf), "status", "--nova", "--nova-config-file", arg(&bare)]);
    out.assert_error(127, "[api_database] connection");
    let missing = stage.w.path("no-nova.conf");
    let out = stage.w.run(&["--config-file", arg(&stage.conf), "status", "--nova", "--nova-config-file", arg(&missing)]);
    out.assert_error(127, "no-nova.conf");
}

/// A cell whose database cannot be reached is named; the other cells are still read and
/// counted, and status is not done. A cell mapping written as a template is filled from
/// nova.conf's `[database] connection`, as Nova fills it.
#[test]
fn an_unreachable_cell_is_named_and_a_templated_cell_url_is_filled() {
    let nova = NovaCloud::new(Backend::Mysql);
    let spec = InstanceSpec::new().key(Some(ZERO));
    nova.insert_instance("cell1", &spec);
    let other = InstanceSpec::new().key(Some(ZERO));
    nova.insert_instance("cell2", &other);
    let key = random_key();
    let stage = Stage::new(&nova, &key, Some(&key), "barbican");

    // cell2's URL as a template on nova.conf's [database] connection (cell1's URL): only its
    // database name differs.
    let cell2 = nova.cell("cell2");
    let db_name = cell2.url.rsplit('/').next().and_then(|s| s.split('?').next()).unwrap_or_default().to_string();
    let template = format!("{{scheme}}://{{username}}:{{password}}@{{hostname}}:{{port}}/{db_name}?{{query}}");
    nova.api.exec(&format!("UPDATE cell_mappings SET database_connection = '{template}' WHERE uuid = '{}'", cell2.uuid));
    let out = stage.run("status", &[]);
    out.assert_code(1);
    let json = out.json();
    assert_eq!((json["nova"]["instances"].as_u64(), json["nova"]["unreadable_cells"].as_u64()), (Some(2), Some(0)), "{}", out.stderr);

    // Nothing listens on port 1.
    nova.api.exec(&format!(
        "UPDATE cell_mappings SET database_connection = 'mysql+pymysql://kmtest:kmtest-pw@127.0.0.1:1/{db_name}' WHERE uuid = '{}'",
        cell2.uuid
    ));
    let out = stage.run("status", &[]);
    // cell1's instance can still be migrated.
    out.assert_code(1);
    let json = out.json();
    assert_eq!((json["nova"]["instances"].as_u64(), json["nova"]["unreadable_cells"].as_u64()), (Some(1), Some(1)), "{}", out.stderr);
    assert!(cell(&json["nova"], "cell2")["error"].is_string());
    assert!(out.stderr.lines().any(|l| l.contains("Cannot read Nova cell cell2(")), "{}", out.stderr);
    // migrate takes cell1's instance and leaves cell2 to an operator: exit 2 once nothing else
    // is left.
    let mut p = Project::new("nova-unreachable");
    let owner = p.member("owner");
    nova.cell("cell1").db.exec(&format!("UPDATE instances SET project_id = '{}', user_id = '{}' WHERE uuid = '{}'", p.id, owner.id, spec.uuid));
    let state = stage.w.path("state");
    let out = stage.migrate(&state, &[]);
    out.assert_code(2);
    let report = &out.json()["report"]["nova"];
    assert_eq!((report["migrated"].as_u64(), report["unreadable_cells"].as_u64()), (Some(1), Some(1)), "{}", out.stdout);
    assert_ne!(nova.ephemeral_key("cell1", &spec.uuid).as_deref(), Some(ZERO));
    // With no instance anywhere else, an unreadable cell keeps status from done.
    let out = stage.run("status", &[]);
    out.assert_code(2);
    assert_eq!(out.json()["nova"]["done"], false);
}

/// The state of an instance row without its key ID, for "nothing else changed".
fn without_key(nova: &NovaCloud, cell: &str, uuid: &str) -> Value {
    let mut v = nova.instance(cell, uuid);
    if let Some(o) = v.as_object_mut() {
        o.remove("ephemeral_key_uuid");
    }
    v
}

/// What a finished run leaves for `instances` (cell, uuid): each row names a secret of
/// `project` named after it that `reader`, a member, reads as exactly nova.conf's key; no
/// `keymigrate-*` secret of the project that no row names; no role of Cinder's user left there;
/// no grant or instance entry in the journal.
#[track_caller]
fn assert_instances_done(nova: &NovaCloud, cloud: &Cloud, state: &Path, project: &Project, reader: &Member, nova_key: &[u8], instances: &[(&str, &str)]) -> Vec<String> {
    let token = reader.token();
    let listed = tenancy::keymigrate_secrets(cloud, &token);
    let mut named = Vec::new();
    for (cell, uuid) in instances {
        let secret = nova.ephemeral_key(cell, uuid).unwrap_or_default();
        assert_ne!(secret, ZERO, "instance {uuid} was not migrated");
        assert!(listed.contains(&secret), "instance {uuid}: secret {secret} is not among project {}'s keymigrate-* secrets", project.id);
        let name = cloud.metadata(&token, &secret)["name"].as_str().unwrap_or_default().to_string();
        assert!(name.starts_with(&format!("keymigrate-nova-{uuid}-")), "instance {uuid}: secret {secret} is named {name:?}");
        let payload = cloud.payload(&token, &secret);
        assert_eq!(payload.status, 200, "instance {uuid}: {reader:?} cannot read secret {secret}");
        assert!(payload.body == nova_key, "instance {uuid}: secret {secret} does not hold nova.conf's fixed key");
        named.push(secret);
    }
    for secret in listed {
        assert!(named.contains(&secret), "secret {secret} in project {} is named by no instance", project.id);
    }
    assert_eq!(project.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "Cinder's user keeps a role in {}", project.id);
    assert_eq!(tenancy::grant_files(state), Vec::<PathBuf>::new(), "grants left in the journal");
    assert_eq!(nova_files(state), Vec::<PathBuf>::new(), "instances left in the journal");
    named
}

/// The instance entries keymigrate journalled: `<state>/nova/pending/*.json`.
fn nova_files(state: &Path) -> Vec<PathBuf> {
    let dir = state.join("nova").join("pending");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect()).unwrap_or_default();
    files.sort();
    files
}

#[test]
fn migrate_gives_each_instance_a_secret_of_novas_key_its_project_reads_and_changes_nothing_else() {
    let cloud = Cloud::new();
    let mut p = Project::new("nova-migrate");
    let (owner, teammate) = (p.member("owner"), p.member("teammate"));
    let nova = NovaCloud::new(Backend::Sqlite);
    let mine = |host: Option<&str>| InstanceSpec::new().key(Some(ZERO)).host(host).owner(&p.id, &owner.id);
    let (c0, c1, c2) = (mine(None).unscheduled(), mine(Some("compute-1")), mine(Some("compute-2")));
    let busy = mine(Some("compute-1")).task_state(Some("rebuilding"));
    let real = InstanceSpec::new().key(Some(&uuid())).owner(&p.id, &owner.id);
    let deleted = mine(Some("compute-1")).deleted();
    nova.insert_instance("cell0", &c0);
    for spec in [&c1, &busy, &real, &deleted] {
        nova.insert_instance("cell1", spec);
    }
    nova.insert_instance("cell2", &c2);
    // Nova's key is not Cinder's: the instances get Nova's.
    let (cinder_key, nova_key) = (random_key(), random_key());
    let mut stage = Stage::new(&nova, &cinder_key, Some(&nova_key), "barbican");
    stage.w.guard_key(&nova_key);
    let state = stage.w.path("state");
    let migrated = [("cell0", c0.uuid.as_str()), ("cell1", c1.uuid.as_str()), ("cell2", c2.uuid.as_str())];
    let before: Vec<Value> = migrated.iter().map(|(c, u)| without_key(&nova, c, u)).collect();
    let untouched = [("cell1", busy.uuid.as_str()), ("cell1", real.uuid.as_str()), ("cell1", deleted.uuid.as_str())];
    let untouched_before: Vec<Value> = untouched.iter().map(|(c, u)| nova.instance(c, u)).collect();

    let out = stage.migrate(&state, &[]);
    // The instance with a task in progress waits: more to do.
    out.assert_code(1);
    let report = &out.json()["report"]["nova"];
    assert_eq!((report["migrated"].as_u64(), report["waiting"].as_u64(), report["failed"].as_u64()), (Some(3), Some(1), Some(0)), "{}", out.stdout);
    let key = hex::decode(&nova_key).expect("hex");
    let secrets = assert_instances_done(&nova, &cloud, &state, &p, &teammate, &key, &migrated);
    for ((c, u), was) in migrated.iter().zip(&before) {
        assert_eq!(&without_key(&nova, c, u), was, "instance {u} changed beyond its key ID");
    }
    for ((c, u), was) in untouched.iter().zip(&untouched_before) {
        assert_eq!(&nova.instance(c, u), was, "instance {u} was touched");
    }
    // What nova-compute does when it recreates the disk: castellan, as a member of the project.
    let read = castellan::read_as(&teammate.castellan(), &secrets[1]);
    let (bytes, _) = read.key();
    assert!(bytes == key.as_slice(), "castellan reads another key");

    // The task ends; the next run takes the instance, then nothing is left.
    nova.cell("cell1").db.exec(&format!("UPDATE instances SET task_state = NULL WHERE uuid = '{}'", busy.uuid));
    let out = stage.migrate(&state, &[]);
    out.assert_code(0);
    assert_eq!(out.json()["report"]["nova"]["migrated"], 1, "{}", out.stdout);
    let all = [migrated.as_slice(), &[("cell1", busy.uuid.as_str())]].concat();
    assert_instances_done(&nova, &cloud, &state, &p, &owner, &key, &all);
    let out = stage.run("status", &[]);
    out.assert_code(0);
    assert_eq!(out.json()["nova"]["done"], true);
    // Again: nothing to do, nothing changes.
    let out = stage.migrate(&state, &[]);
    out.assert_code(0);
    assert_eq!(out.json()["report"]["secrets_created"], 0, "{}", out.stdout);
    stage.w.assert_state_clean(&state);
}

/// Where an instance's migration is killed: its own steps, and the role grant around them.
const KILL_POINTS: [&str; 6] = ["nova-journal", "nova-recorded", "nova-verified", "nova-swapped", "granted", "revoked"];

#[test]
fn a_run_killed_at_any_step_of_an_instance_is_finished_by_the_next() {
    let cloud = Cloud::new();
    for point in KILL_POINTS {
        let started = Instant::now();
        let mut p = Project::new("nova-kill");
        let reader = p.member("reader");
        let nova = NovaCloud::new(Backend::Mysql);
        let specs: Vec<InstanceSpec> = (0..2).map(|_| InstanceSpec::new().key(Some(ZERO)).owner(&p.id, &reader.id)).collect();
        for s in &specs {
            nova.insert_instance("cell1", s);
        }
        let key = random_key();
        let stage = Stage::new(&nova, &key, Some(&key), "barbican");
        let state = stage.w.path("state");
        let out = stage.migrate(&state, &[("KEYMIGRATE_FAULT", &format!("{point}=kill"))]);
        assert_eq!(out.code, -1, "{point}: the run should have been killed:\n{}", out.stderr);
        // Killed at an instance's step: it (and the rest of its batch) is in the journal; at the
        // grant's: nothing is.
        assert_eq!(!nova_files(&state).is_empty(), point.starts_with("nova-"), "{point}: instances in the journal");
        let out = stage.migrate(&state, &[]);
        out.assert_code(0);
        let ids: Vec<(&str, &str)> = specs.iter().map(|s| ("cell1", s.uuid.as_str())).collect();
        assert_instances_done(&nova, &cloud, &state, &p, &reader, &hex::decode(&key).expect("hex"), &ids);
        eprintln!("killed at {point}: finished by the next run, nothing left behind ({:.1} s)", started.elapsed().as_secs_f64());
    }
}

/// migrate --nova refuses, writing nothing, while Nova is still on its ConfKeyManager, or when
/// nova.conf has no fixed_key for the instances that need one.
#[test]
fn migrate_refuses_when_nova_is_not_ready() {
    let mut p = Project::new("nova-refuse");
    let owner = p.member("owner");
    let nova = NovaCloud::new(Backend::Sqlite);
    let spec = InstanceSpec::new().key(Some(ZERO)).owner(&p.id, &owner.id);
    nova.insert_instance("cell1", &spec);
    let key = random_key();
    for (nova_key, backend, needle) in [
        (Some(key.as_str()), CONF_KEY_MANAGER, "still the ConfKeyManager"),
        (None, "barbican", "nova.conf has no fixed_key"),
    ] {
        let stage = Stage::new(&nova, &key, nova_key, backend);
        let state = stage.w.path("state");
        let out = stage.migrate(&state, &[]);
        out.assert_error(2, needle);
        assert_eq!(nova.ephemeral_key("cell1", &spec.uuid).as_deref(), Some(ZERO));
        assert!(nova_files(&state).is_empty());
    }
    let cloud = Cloud::new();
    assert!(tenancy::keymigrate_secrets(&cloud, &owner.token()).is_empty(), "a secret was made");
}

/// verify --nova judges every instance whose key keymigrate made (in its project, exactly
/// nova.conf's key, readable by the project) and catches a secret altered behind keymigrate's
/// back; rollback --nova puts the others back on the all-zeros ID and deletes their secrets,
/// refusing the altered one.
#[test]
fn verify_and_rollback_handle_migrated_instances() {
    let cloud = Cloud::new();
    let mut p = Project::new("nova-verify");
    let owner = p.member("owner");
    let nova = NovaCloud::new(Backend::Postgres);
    let specs: Vec<InstanceSpec> = (0..2).map(|_| InstanceSpec::new().key(Some(ZERO)).owner(&p.id, &owner.id)).collect();
    for s in &specs {
        nova.insert_instance("cell1", s);
    }
    let key = random_key();
    let stage = Stage::new(&nova, &key, Some(&key), "barbican");
    let state = stage.w.path("state");
    stage.migrate(&state, &[]).assert_code(0);
    let secrets: Vec<String> = specs.iter().map(|s| nova.ephemeral_key("cell1", &s.uuid).unwrap_or_default()).collect();

    let verify = |expect: i32| {
        let out = stage.w.run(&["--config-file", arg(&stage.conf), "verify", "--nova", "--nova-config-file", arg(&stage.nova_conf), "--state-dir", arg(&state), "-f", "json"]);
        out.assert_code(expect);
        out.json()["rows"].as_array().cloned().unwrap_or_default()
    };
    let rows = verify(0);
    for (s, secret) in specs.iter().zip(&secrets) {
        let row = rows.iter().find(|r| r["id"] == s.uuid.as_str()).unwrap_or_else(|| panic!("instance {} not verified: {rows:?}", s.uuid));
        assert_eq!((row["table"].as_str(), row["key_id"].as_str(), row["result"].as_str()), (Some("instances"), Some(secret.as_str()), Some("ok")));
    }
    // A keymigrate-named secret of the project holding other bytes, put on the second instance
    // behind keymigrate's back.
    let other = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hex::decode(random_key()).expect("hex"));
    let wrong = cloud.store(&owner.token(), &format!("keymigrate-nova-{}-ffffffff", specs[1].uuid), &other, 256);
    nova.cell("cell1").db.exec(&format!("UPDATE instances SET ephemeral_key_uuid = '{wrong}' WHERE uuid = '{}'", specs[1].uuid));
    let rows = verify(2);
    let bad = rows.iter().find(|r| r["id"] == specs[1].uuid.as_str()).expect("the altered instance");
    assert_eq!(bad["result"], "secret does not hold nova.conf's fixed key");

    let out = stage.w.run(&["--config-file", arg(&stage.conf), "rollback", "--nova", "--nova-config-file", arg(&stage.nova_conf), "--state-dir", arg(&state), "-f", "json"]);
    out.assert_code(2);
    assert_eq!(nova.ephemeral_key("cell1", &specs[0].uuid).as_deref(), Some(ZERO), "the first instance is back on the all-zeros ID");
    assert_eq!(cloud.payload(&owner.token(), &secrets[0]).status, 404, "its secret is deleted");
    assert_eq!(nova.ephemeral_key("cell1", &specs[1].uuid), Some(wrong.clone()), "the altered instance is left alone");
    assert_eq!(p.roles_of(&tenancy::cinder_user_id()), Vec::<String>::new(), "Cinder's user keeps a role");
    // What is left for migrate: the rolled-back instance.
    let out = stage.run("status", &[]);
    out.assert_code(1);
    assert_eq!(out.json()["nova"]["instances"], 1);
}

/// Two runs at once from two machines (separate state directories) on the same instances: the
/// compare-and-swap lets one secret win per instance; the other run deletes its own. Every
/// instance ends on one secret holding the key, and no secret is left unused.
#[test]
fn two_runs_at_once_leave_each_instance_on_one_secret_and_none_unused() {
    let cloud = Cloud::new();
    let mut p = Project::new("nova-race");
    let reader = p.member("reader");
    let nova = NovaCloud::new(Backend::Mysql);
    let specs: Vec<InstanceSpec> = (0..6).map(|_| InstanceSpec::new().key(Some(ZERO)).owner(&p.id, &reader.id)).collect();
    for s in &specs {
        nova.insert_instance("cell1", s);
    }
    let key = random_key();
    let stage = Stage::new(&nova, &key, Some(&key), "barbican");
    let states = [stage.w.path("state-a"), stage.w.path("state-b")];
    let spawn = |state: &Path| {
        let args = ["--config-file", arg(&stage.conf), "migrate", "--nova", "--nova-config-file", arg(&stage.nova_conf), "--state-dir", arg(state), "-f", "json"];
        stage.w.spawn_env(&args, &[])
    };
    let children: Vec<_> = states.iter().map(|s| spawn(s)).collect();
    for child in children {
        // Checked for leaks and panics like every other run's.
        let out = stage.w.finish(child);
        // Done, or done by the other run.
        assert!(matches!(out.code, 0 | 1), "exit {}:\n{}", out.code, out.stderr);
    }
    // A second pass finishes whatever a run left for later.
    for state in &states {
        stage.migrate(state, &[]).assert_code(0);
    }
    let ids: Vec<(&str, &str)> = specs.iter().map(|s| ("cell1", s.uuid.as_str())).collect();
    for state in &states {
        assert_instances_done(&nova, &cloud, state, &p, &reader, &hex::decode(&key).expect("hex"), &ids);
    }
}

/// Figures, not a test: `cargo test --test integration nova::throughput -- --ignored --nocapture`
/// migrates 200 instances of one project on SQLite with --workers 1 and 4 and prints the times.
#[test]
#[ignore]
fn throughput_with_workers() {
    let mut p = Project::new("nova-bench");
    let reader = p.member("reader");
    for workers in ["1", "4"] {
        let nova = NovaCloud::new(Backend::Sqlite);
        for _ in 0..200 {
            nova.insert_instance("cell1", &InstanceSpec::new().key(Some(ZERO)).owner(&p.id, &reader.id));
        }
        let key = random_key();
        let stage = Stage::new(&nova, &key, Some(&key), "barbican");
        let state = stage.w.path("state");
        let mut args = vec!["--config-file", arg(&stage.conf), "migrate", "--nova", "--nova-config-file", arg(&stage.nova_conf)];
        args.extend(["--state-dir", arg(&state), "--workers", workers, "-f", "json"]);
        let t = Instant::now();
        let out = stage.w.run(&args);
        let secs = t.elapsed().as_secs_f64();
        out.assert_code(0);
        assert_eq!(out.json()["report"]["nova"]["migrated"], 200);
        eprintln!("--workers {workers}: 200 instances in {secs:.2} s ({:.1} instances/s)", 200.0 / secs);
    }
}
