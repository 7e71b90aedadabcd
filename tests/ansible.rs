//! The fleet examples of `docs/examples/`: the Ansible playbook run by ansible-core (the test
//! stack's `ansible` venv) against three cinder-volume "hosts" that are all this machine
//! (`ansible_connection=local`), each with its own cinder.conf and state directory, on one
//! MariaDB Cinder database; and the Kubernetes manifests checked against Kubernetes' schemas.
//!
//! The playbook installs the package `scripts/package.sh` built (`KEYMIGRATE_DEB`) and runs
//! `/usr/bin/keymigrate`. Outside CI, `KEYMIGRATE_TEST_ANSIBLE_NO_INSTALL=1` runs it with the
//! tests' own build and installs nothing; with neither variable the playbook test is not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::migrate::Owners;
use crate::support::cloud::Cloud;
use crate::support::*;

const HOSTS: [&str; 3] = ["cinder-volume-1", "cinder-volume-2", "cinder-volume-3"];

fn example(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples").join(relative)
}

/// How the playbook gets keymigrate onto the hosts.
enum Install {
    /// The .deb of `scripts/package.sh`: copied, installed with apt, `/usr/bin/keymigrate`.
    Deb(PathBuf),
    /// Nothing installed: the tests' own build.
    Nothing,
}

fn install() -> Option<Install> {
    const TEST: &str = "ansible::the_playbook_migrates_every_host_and_stops_at_exit_2";
    let no_install = std::env::var("KEYMIGRATE_TEST_ANSIBLE_NO_INSTALL").is_ok_and(|v| v == "1");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if no_install && !ci && std::env::var_os("KEYMIGRATE_DEB").is_none() {
        return Some(Install::Nothing);
    }
    // An absolute path: the playbook runs in the test's own directory.
    built_by_test_script("KEYMIGRATE_DEB", TEST, "scripts/package.sh; or KEYMIGRATE_TEST_ANSIBLE_NO_INSTALL=1 to run the playbook with the tests' build and install nothing")
        .map(Install::Deb)
}

/// One MariaDB Cinder database served by three hosts, and what each row must become.
struct Fleet {
    db: CinderDb,
    w: Workdir,
    key: String,
    /// (table, id, owner user ID, the host whose scope has it; None: only --all-hosts)
    rows: Vec<(&'static str, String, String, Option<&'static str>)>,
}

impl Fleet {
    fn new() -> Fleet {
        let db = CinderDb::new(Backend::Mysql);
        let mut w = Workdir::new();
        let key = random_key();
        w.guard_key(&key);
        let (alice, bob) = (env("KEYMIGRATE_TEST_ALICE_ID"), env("KEYMIGRATE_TEST_BOB_ID"));
        let z = Some(ZERO);
        let mut rows = Vec::new();
        // Per host: a volume with its snapshot (one secret), a volume of its backend without a
        // pool, a backup: three units, so that --max-count 1 makes migrate exit 1 twice.
        for host in HOSTS {
            let (v1, s1, v2, b1) = (uuid(), uuid(), uuid(), uuid());
            db.volume(&v1, Some(&format!("{host}@lvm#pool")), Some(&alice), z)
                .snapshot(&s1, &v1, Some(&alice), z, false)
                .volume(&v2, Some(&format!("{host}@lvm")), Some(&bob), z)
                .backup(&b1, &v1, Some(host), Some(&bob), z, false);
            for (table, id, owner) in [("volumes", v1, &alice), ("snapshots", s1, &alice), ("volumes", v2, &bob), ("backups", b1, &bob)] {
                rows.push((table, id, owner.clone(), Some(host)));
            }
        }
        // In no host's scope: migrated by the last play's migrate --all-hosts.
        let unscheduled = uuid();
        db.volume(&unscheduled, None, Some(&alice), z);
        rows.push(("volumes", unscheduled, alice, None));
        Fleet { db, w, key, rows }
    }

    /// Host `n`'s cinder.conf. cinder-volume-1 has no backends (its scope: the host),
    /// cinder-volume-2 the backend lvm (its scope: cinder-volume-2@lvm), and cinder-volume-3
    /// names another host, as a container may: the inventory gives its scope with --host.
    fn conf(&self, host: &str, backend: &str) -> PathBuf {
        let dir = self.w.path(host);
        std::fs::create_dir_all(&dir).expect("host directory");
        let (name, backends) = match host {
            "cinder-volume-2" => (host, "enabled_backends = lvm\n\n[lvm]\nvolume_backend_name = lvm\n"),
            "cinder-volume-3" => ("cinder-volume-3-pod-x7f2q", ""),
            _ => (host, ""),
        };
        self.w.write(
            &format!("{host}/cinder.conf"),
            &format!(
                "[DEFAULT]\nhost = {name}\nstate_path = {}\n{backends}\n[database]\nconnection = {}\n\n\
                 [key_manager]\nbackend = {backend}\nfixed_key = {}\n\n{}",
                dir.display(),
                self.db.url,
                self.key,
                service_sections("password")
            ),
        )
    }

    fn state_dir(&self, host: &str) -> PathBuf {
        self.w.path(host).join("keymigrate-state")
    }

    fn inventory(&self, install: &Install) -> PathBuf {
        let hosts: serde_json::Map<String, serde_json::Value> = HOSTS
            .iter()
            .map(|&h| {
                let mut vars = serde_json::json!({
                    "keymigrate_config_files": [self.w.path(h).join("cinder.conf")],
                    "keymigrate_state_dir": self.state_dir(h),
                });
                if h == "cinder-volume-3" {
                    vars["keymigrate_scope"] = serde_json::json!(["--host", h]);
                }
                (h.to_string(), vars)
            })
            .collect();
        let mut vars = serde_json::json!({
            "ansible_connection": "local",
            // Debian's Python, which has python3-apt for the apt module.
            "ansible_python_interpreter": "/usr/bin/python3",
            // The tests run as root already; there is no sudo to become anyone.
            "ansible_become": false,
            "keymigrate_environment": {"KEYMIGRATE_SECRET_OWNER": "service"},
            // One unit per run, so that every host's migrate exits 1 and is run again.
            "keymigrate_max_count": 1,
            "keymigrate_migrate_delay": 0,
        });
        match install {
            Install::Deb(_) => vars["keymigrate_deb_dir"] = serde_json::json!(self.w.path("deb-cache")),
            Install::Nothing => {
                vars["keymigrate_install"] = serde_json::json!(false);
                vars["keymigrate_bin"] = serde_json::json!(env!("CARGO_BIN_EXE_keymigrate"));
            }
        }
        let inventory = serde_json::json!({"all": {"children": {"cinder_volume": {"hosts": hosts, "vars": vars}}}});
        // JSON is YAML: Ansible's yaml inventory plugin reads it.
        self.w.write("inventory.yml", &inventory.to_string())
    }

    /// `ansible-playbook -i inventory keymigrate.yml`, two hosts per batch; its output is
    /// checked for secrets like every keymigrate run's.
    fn play(&self, inventory: &Path, install: &Install) -> Output {
        let mut extra = serde_json::json!({"keymigrate_hosts": "cinder_volume", "keymigrate_serial": 2});
        if let Install::Deb(deb) = install {
            extra["keymigrate_deb"] = serde_json::json!(deb);
        }
        let mut cmd = Command::new(env("KEYMIGRATE_TEST_ANSIBLE_PLAYBOOK"));
        cmd.arg("-i").arg(inventory).arg(example("ansible/keymigrate.yml")).arg("-e").arg(extra.to_string());
        for (k, _) in std::env::vars() {
            if k.starts_with("OS_") || k.starts_with("ANSIBLE_") {
                cmd.env_remove(k);
            }
        }
        let home = self.w.dir.path();
        cmd.current_dir(home).env("HOME", home).env("ANSIBLE_NOCOLOR", "1").env("ANSIBLE_LOCAL_TEMP", home.join("ansible-tmp"));
        let out = cmd.output().expect("run ansible-playbook");
        self.w.assert_no_raw_leak(&out.stdout, "ansible-playbook's stdout");
        self.w.assert_no_raw_leak(&out.stderr, "ansible-playbook's stderr");
        let out = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.w.assert_no_leak(&out.stdout, "ansible-playbook's stdout");
        self.w.assert_no_leak(&out.stderr, "ansible-playbook's stderr");
        assert!(!out.stdout.contains("panicked"), "keymigrate panicked:\n{}", out.stdout);
        out
    }

    fn migrated(&self, table: &str, id: &str) -> bool {
        self.db.key_of(table, id).is_some_and(|k| k != ZERO)
    }
}

/// The lines of the default callback's output under the role's task(s) named `name`.
fn task<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("TASK [keymigrate : {name}] ");
    let mut lines = Vec::new();
    let mut inside = false;
    for line in out.lines() {
        if line.starts_with("TASK [") || line.starts_with("PLAY [") || line.starts_with("PLAY RECAP") {
            inside = line.starts_with(&header);
        } else if inside {
            lines.push(line);
        }
    }
    lines
}

#[test]
fn the_playbook_migrates_every_host_and_stops_at_exit_2() {
    let Some(install) = install() else { return };
    let package = matches!(install, Install::Deb(_)).then(InstalledPackage::hold);
    let cloud = Cloud::new();
    let fleet = Fleet::new();
    for host in HOSTS {
        let backend = if host == "cinder-volume-2" { "cinder.keymgr.conf_key_mgr.ConfKeyManager" } else { "barbican" };
        fleet.conf(host, backend);
    }
    let inventory = fleet.inventory(&install);

    // cinder-volume-2 still has the ConfKeyManager: its migrate exits 2, and the rollout stops
    // there, before the second batch (cinder-volume-3) and the last play.
    let started = std::time::Instant::now();
    let out = fleet.play(&inventory, &install);
    let first = started.elapsed();
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, 2, "ansible-playbook should fail the host:\n{all}");
    assert!(all.contains("keymigrate migrate exited 2 on cinder-volume-2: an operator must act"), "{all}");
    assert!(all.contains("Not migrating encryption keys because the ConfKeyManager is still in use."), "{all}");
    for (table, id, _, host) in &fleet.rows {
        let expected = *host == Some("cinder-volume-1");
        assert_eq!(fleet.migrated(table, id), expected, "{table} {id} of {host:?} after the stopped rollout:\n{all}");
    }
    assert!(!all.contains("cinder-volume-3]"), "cinder-volume-3 must not have been reached:\n{all}");
    assert!(!all.contains("status --all-hosts"), "the last play must not have run:\n{all}");
    if let Install::Deb(_) = install {
        assert!(InstalledPackage::status().starts_with("install ok installed"), "{}", InstalledPackage::status());
        assert!(Path::new("/usr/bin/keymigrate").is_file());
    }

    // The operator fixes cinder-volume-2's cinder.conf and runs the play again: every host's
    // scope is migrated, then the rest, and the whole database is done.
    fleet.conf("cinder-volume-2", "barbican");
    let started = std::time::Instant::now();
    let out = fleet.play(&inventory, &install);
    let second = started.elapsed();
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0, "ansible-playbook:\n{all}");
    for (host, scope) in [
        ("cinder-volume-1", "Scope: host cinder-volume-1; backups of cinder-volume-1 (from cinder.conf"),
        ("cinder-volume-2", "Scope: host cinder-volume-2@lvm; backups of cinder-volume-2 (from cinder.conf"),
        ("cinder-volume-3", "Scope: host cinder-volume-3; backups of cinder-volume-3 (from command line)"),
    ] {
        let shown = task(&out.stdout, "What keymigrate migrate did");
        let at = shown.iter().position(|l| l.starts_with(&format!("ok: [{host}]"))).unwrap_or_else(|| panic!("{host}:\n{all}"));
        assert!(shown[at..].iter().take(4).any(|l| l.contains(scope)), "{host} should have migrated {scope:?}:\n{all}");
        if host != "cinder-volume-1" {
            // Three units, one per run: migrate exited 1 and ran again.
            assert!(all.contains(&format!("FAILED - RETRYING: [{host}]: keymigrate migrate")), "{host}:\n{all}");
        }
    }
    // Only the unscheduled volume was left for migrate --all-hosts.
    let rest = task(&out.stdout, "What keymigrate migrate did").join("\n");
    assert!(rest.contains("Scope: all hosts (from --all-hosts)"), "{all}");
    let status = task(&out.stdout, "What keymigrate status --all-hosts says").join("\n");
    assert!(status.contains("done: 0 row(s) left in scope [all hosts]"), "{all}");
    assert!(task(&out.stdout, "keymigrate verify --all-hosts").iter().any(|l| l.starts_with("ok: [cinder-volume-1]")), "{all}");
    assert_eq!(task(&out.stdout, "keymigrate status --all-hosts").iter().filter(|l| l.starts_with("ok: [")).count(), 1, "one host: {all}");

    let owners = Owners::new(&cloud);
    let key = hex::decode(&fleet.key).expect("hex");
    for (table, id, owner, _) in &fleet.rows {
        owners.assert_migrated(&cloud, &fleet.db, table, id, owner, &key);
    }
    for host in HOSTS {
        let state = fleet.state_dir(host);
        assert!(state.is_dir(), "{host}'s state directory {}", state.display());
        let pending: Vec<PathBuf> = walk(&state).into_iter().filter(|p| p.to_string_lossy().contains("/pending/")).collect();
        assert!(pending.is_empty(), "{host}: journal entries left: {pending:?}");
        fleet.w.assert_state_clean(&state);
    }

    if let Install::Deb(_) = install {
        // Installed once: the second play found the package in place on every host.
        let installs = task(&out.stdout, "Install the .deb");
        assert!(installs.iter().filter(|l| l.starts_with("ok: [")).count() == 3, "{all}");
        assert!(!installs.iter().any(|l| l.starts_with("changed:")), "the second play installed again:\n{all}");
        if let Some(package) = &package {
            package.purge();
        }
        assert!(!InstalledPackage::status().starts_with("install ok"), "dpkg --purge keymigrate left the package: {}", InstalledPackage::status());
        assert!(!Path::new("/usr/bin/keymigrate").exists());
    }
    eprintln!("ansible: the stopped play took {first:?}, the full play {second:?}");
}

/// The Kubernetes example (openstack-helm) is valid against Kubernetes' own schemas, strictly
/// (no field Kubernetes does not know), with the schemas kubernetes-validate carries: offline.
#[test]
fn the_kubernetes_manifests_are_valid() {
    let dir = example("kubernetes");
    let manifests: Vec<PathBuf> = walk(&dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    assert!(!manifests.is_empty(), "no manifests in {}", dir.display());
    let out = Command::new(env("KEYMIGRATE_TEST_KUBERNETES_VALIDATE"))
        .arg("--strict")
        .args(&manifests)
        .output()
        .expect("run kubernetes-validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate --strict:\n{text}");
    // One "passed" line per resource: nothing was skipped as an unknown kind.
    assert!(text.matches(" passed for resource ").count() >= manifests.len(), "{text}");
}
