//! Reading a Barbican secret the way cinder-api and nova-compute do: through castellan's
//! `BarbicanKeyManager` in the Cinder venv's Python (cinder==29.0.0), with an oslo.context
//! `RequestContext` carrying a user's project-scoped token, plus os-brick's LUKS passphrase
//! derived from the key. Asking Barbican's REST API directly would prove less: what matters to an
//! operator is whether Cinder and Nova, with their own libraries and configuration, still get the
//! key after a migration. The Python side is `castellan_get.py` beside this file.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::env;

/// A Keystone user of the Default domain and the project its token is scoped to.
#[derive(Clone)]
pub struct TestUser {
    pub name: String,
    password: String,
    pub project: String,
}

impl std::fmt::Debug for TestUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {}", self.name, self.project)
    }
}

impl TestUser {
    pub fn new(name: &str, password: &str, project: &str) -> TestUser {
        TestUser { name: name.into(), password: password.into(), project: project.into() }
    }

    /// alice, member of `demo`: the owner of the tests' volumes.
    pub fn alice() -> TestUser {
        TestUser::new("alice", &env("KEYMIGRATE_TEST_ALICE_PASSWORD"), &env("KEYMIGRATE_TEST_DEMO_PROJECT"))
    }

    /// bob, another member of `demo`: alice's teammate.
    pub fn bob() -> TestUser {
        TestUser::new("bob", &env("KEYMIGRATE_TEST_BOB_PASSWORD"), &env("KEYMIGRATE_TEST_DEMO_PROJECT"))
    }

    /// Cinder's service user, as `[keystone_authtoken]` names it.
    pub fn cinder() -> TestUser {
        TestUser::new(
            &env("KEYMIGRATE_TEST_CINDER_USER"),
            &env("KEYMIGRATE_TEST_CINDER_PASSWORD"),
            &env("KEYMIGRATE_TEST_CINDER_PROJECT"),
        )
    }
}

/// What castellan's `get` gave a user.
#[derive(Clone, PartialEq, Eq)]
pub enum CastellanRead {
    /// The key, and the passphrase os-brick's LUKS encryptor would hand cryptsetup.
    Key { bytes: Vec<u8>, passphrase: String, managed_type: String },
    /// castellan raised `error` (e.g. `KeyManagerError`); `status` is Barbican's HTTP status
    /// behind it when there was one (403 Forbidden, 404 Not Found).
    Refused { error: String, status: Option<u16> },
}

impl CastellanRead {
    /// The HTTP status as a table shows it: 200 for a key.
    pub fn status(&self) -> String {
        match self {
            CastellanRead::Key { .. } => "200".into(),
            CastellanRead::Refused { error, status: Some(s) } => format!("{s} ({error})"),
            CastellanRead::Refused { error, status: None } => error.clone(),
        }
    }

    #[track_caller]
    pub fn key(&self) -> (&[u8], &str) {
        match self {
            CastellanRead::Key { bytes, passphrase, .. } => (bytes, passphrase),
            other => panic!("castellan gave no key: {other:?}"),
        }
    }
}

// The key's bytes stay out of assertion messages, as keymigrate keeps them out of its output.
impl std::fmt::Debug for CastellanRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CastellanRead::Key { bytes, managed_type, .. } => write!(f, "Key({} bytes, {managed_type})", bytes.len()),
            CastellanRead::Refused { error, status } => write!(f, "Refused({error}, HTTP {status:?})"),
        }
    }
}

/// What cinder 29's `volume_utils.delete_encryption_key` did with a user's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CinderDelete {
    /// It returned without an error (the secret is gone, or was already).
    pub ok: bool,
    /// The first attempt, with the user's context, failed and Cinder retried with its service
    /// credentials (`[keystone_authtoken]`).
    pub fell_back_to_service: bool,
    /// Barbican's HTTP status for each attempt that failed, in order.
    pub failed_statuses: Vec<u16>,
    /// castellan's error and Barbican's status when the whole call failed.
    pub error: Option<String>,
    pub status: Option<u16>,
}

fn python() -> PathBuf {
    // The venv whose cinder-manage built the test databases: cinder 29 and its castellan.
    PathBuf::from(env("KEYMIGRATE_TEST_CINDER_MANAGE")).with_file_name("python")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/castellan_get.py")
}

/// Runs `castellan_get.py` with `request` on stdin (passwords stay off the command line).
fn call(request: Value) -> Value {
    let mut child = Command::new(python())
        .arg(script())
        .env("PYTHONWARNINGS", "ignore")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Cinder venv's Python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&serde_json::to_vec(&request).expect("json"))
        .expect("write the request");
    let out = child.wait_with_output().expect("castellan_get.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "castellan_get.py failed ({}):\n{stderr}", out.status);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("castellan_get.py answered no JSON ({e}):\n{stderr}"))
}

fn request(op: &str, user: &TestUser, key_id: &str) -> Value {
    json!({
        "op": op,
        "keystone": env("KEYMIGRATE_TEST_KEYSTONE_URL"),
        "region": "RegionOne",
        "user": user.name,
        "password": user.password,
        "project": user.project,
        "key_id": key_id,
    })
}

fn read(answer: &Value) -> CastellanRead {
    if answer["ok"] == true {
        CastellanRead::Key {
            bytes: hex::decode(answer["hex"].as_str().expect("hex")).expect("hex"),
            passphrase: answer["passphrase"].as_str().expect("passphrase").to_string(),
            managed_type: answer["managed_type"].as_str().unwrap_or_default().to_string(),
        }
    } else {
        CastellanRead::Refused {
            error: answer["error"].as_str().unwrap_or("?").to_string(),
            status: answer["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
        }
    }
}

/// `BarbicanKeyManager.get(context, key_id)` as `user`, the way cinder-api and nova-compute
/// call it: castellan configured like cinder.conf's `[key_manager] backend = barbican` and
/// `[barbican] auth_endpoint` (Barbican's endpoint from the token's catalog, public, RegionOne).
pub fn read_as(user: &TestUser, key_id: &str) -> CastellanRead {
    read(&call(request("get", user, key_id)))
}

/// [`read_as`] for each (user, key ID), answers in the same order: one Python process per user
/// (importing castellan takes a CPU second or two), reading that user's keys in turn with one
/// token, the users' processes side by side.
pub fn read_many(reads: &[(TestUser, String)]) -> Vec<CastellanRead> {
    let mut users: Vec<&TestUser> = Vec::new();
    for (user, _) in reads {
        if !users.iter().any(|u| u.name == user.name && u.project == user.project) {
            users.push(user);
        }
    }
    let answers: Vec<(&TestUser, Vec<CastellanRead>)> = std::thread::scope(|s| {
        let handles: Vec<_> = users
            .iter()
            .map(|user| {
                let ids: Vec<&str> = reads
                    .iter()
                    .filter(|(u, _)| u.name == user.name && u.project == user.project)
                    .map(|(_, id)| id.as_str())
                    .collect();
                s.spawn(move || {
                    let mut r = request("get", user, "");
                    r["key_ids"] = json!(ids);
                    let a = call(r);
                    let list = a["reads"].as_array().cloned().unwrap_or_default();
                    assert_eq!(list.len(), ids.len(), "castellan_get.py answered {} reads for {} keys", list.len(), ids.len());
                    (*user, list.iter().map(read).collect())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("castellan read thread")).collect()
    });
    // Back in the order asked: each user's answers come in the order of that user's keys.
    let mut next: Vec<std::vec::IntoIter<CastellanRead>> = answers.into_iter().map(|(_, a)| a.into_iter()).collect();
    reads
        .iter()
        .map(|(user, _)| {
            let i = users.iter().position(|u| u.name == user.name && u.project == user.project).expect("user");
            next[i].next().expect("an answer per read")
        })
        .collect()
}

/// What the volume's key was before migration: Cinder's own ConfKeyManager with `fixed_key`
/// (hex) asked for the all-zeros ID, and os-brick's passphrase from it.
pub fn conf_key_manager(fixed_key: &str) -> CastellanRead {
    let mut r = request("fixed", &TestUser::new("-", "-", "-"), super::ZERO);
    r["fixed_key"] = json!(fixed_key);
    read(&call(r))
}

/// cinder 29's `cinder.volume.volume_utils.delete_encryption_key` with `user`'s context, as
/// cinder-volume calls it when the volume is deleted; `[keystone_authtoken]` is the Cinder
/// service user, which Cinder falls back to when the user may not delete the secret.
pub fn cinder_delete_as(user: &TestUser, key_id: &str) -> CinderDelete {
    let service = TestUser::cinder();
    let mut r = request("delete", user, key_id);
    r["service"] = json!({"user": service.name, "password": service.password, "project": service.project});
    let a = call(r);
    CinderDelete {
        ok: a["ok"] == true,
        fell_back_to_service: a["first_attempt_failed"] == true,
        failed_statuses: a["failed_statuses"]
            .as_array()
            .map(|v| v.iter().filter_map(|s| s.as_u64().and_then(|s| u16::try_from(s).ok())).collect())
            .unwrap_or_default(),
        error: a["error"].as_str().map(String::from),
        status: a["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
    }
}

/// cinder 29's `cinder.volume.volume_utils.clone_encryption_key` with `user`'s context, as
/// cinder-api calls it to give a volume created from an encrypted image its own key: the copy
/// read back (as by [`read_as`]), with its ID; the copy is deleted again afterwards.
pub fn cinder_clone_as(user: &TestUser, key_id: &str) -> (CastellanRead, Option<String>) {
    let answer = call(request("clone", user, key_id));
    (read(&answer), answer["new_key_id"].as_str().map(String::from))
}
