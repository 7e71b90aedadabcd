//! Who can use a migrated volume's key, measured the way Cinder and Nova read it: castellan's
//! `BarbicanKeyManager.get` with a user's token (tests/support/castellan.rs), by the volume's
//! owner and by a teammate in the same project, next to a key Cinder would have created natively
//! under Barbican. Under the ConfKeyManager every member of the project could attach the volume;
//! this file records which of them still can after `migrate`, and what Cinder's own key deletion
//! does with a migrated key when the volume is deleted. The database backend plays no part in who
//! may read a secret, so one SQLite database serves.

use base64::Engine as _;

use crate::support::castellan::{self, CastellanRead, TestUser};
use crate::support::cloud::Cloud;
use crate::support::*;

/// Secrets a test made, deleted however the test ends (a run that fails halfway leaves no
/// litter in the shared Barbican).
struct Cleanup<'a> {
    cloud: &'a Cloud,
    secrets: Vec<(String, String)>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for (token, id) in &self.secrets {
            self.cloud.delete(token, id);
        }
    }
}

#[test]
fn a_migrated_key_is_read_through_castellan_by_its_owner_and_today_not_by_her_teammate() {
    let cloud = Cloud::new();
    let db = CinderDb::new(Backend::Sqlite);
    let mut w = Workdir::new();
    let fixed_key = random_key();
    let conf = w.conf(&db, Some(&fixed_key), &service_sections("password"));
    let state = w.path("state");
    let host = format!("owners-{}", &uuid()[..8]);

    // alice's volume in project demo, on the ConfKeyManager's all-zeros key.
    let volume = uuid();
    db.volume(&volume, Some(&format!("{host}@lvm#pool")), Some(&env("KEYMIGRATE_TEST_ALICE_ID")), Some(ZERO));
    db.exec(&format!("UPDATE volumes SET project_id = {} WHERE id = {}", q(Some(&env("KEYMIGRATE_TEST_DEMO_PROJECT_ID"))), q(Some(&volume))));

    // Before: what Cinder's ConfKeyManager hands os-brick for this volume.
    let before = castellan::conf_key_manager(&fixed_key);
    let (before_bytes, before_passphrase) = before.key();
    // Keys are compared without printing them: a failing run shows no key material.
    assert!(before_bytes == hex::decode(&fixed_key).expect("hex").as_slice(), "the ConfKeyManager's key is not fixed_key");
    let before_passphrase = before_passphrase.to_string();

    w.run(&["--config-file", arg(&conf), "migrate", "--state-dir", arg(&state), "--host", &host]).assert_code(0);
    let migrated = db.key_of("volumes", &volume).expect("the volume has a key");
    assert_ne!(migrated, ZERO, "the volume was migrated");
    let cinder_token = cloud.cinder();
    let mut cleanup = Cleanup { cloud: &cloud, secrets: vec![(cinder_token.clone(), migrated.clone())] };

    // The control: a key as Cinder creates it natively under Barbican, with the volume owner's
    // token in her own project (POST /v1/secrets as alice), holding the same bytes.
    let alice_token = cloud.alice();
    let payload = base64::engine::general_purpose::STANDARD.encode(hex::decode(&fixed_key).expect("hex"));
    let native = cloud.store(&alice_token, &format!("owners-native-{}", uuid()), &payload, 256);
    cleanup.secrets.push((alice_token.clone(), native.clone()));

    let (alice, bob) = (TestUser::alice(), TestUser::bob());
    let cases = [
        ("created natively (alice's token, project demo)", &native, &alice),
        ("created natively (alice's token, project demo)", &native, &bob),
        ("migrated, service model (Cinder's project, read ACL for alice)", &migrated, &alice),
        ("migrated, service model (Cinder's project, read ACL for alice)", &migrated, &bob),
    ];
    // Each read is a Python process importing castellan: run them side by side.
    let reads: Vec<CastellanRead> = std::thread::scope(|s| {
        let handles: Vec<_> = cases.iter().map(|(_, id, user)| s.spawn(move || castellan::read_as(user, id))).collect();
        handles.into_iter().map(|h| h.join().expect("read thread")).collect()
    });

    let mut table = vec![("key".to_string(), "user".to_string(), "result (castellan get unless said)".to_string())];
    for ((kind, _, user), read) in cases.iter().zip(&reads) {
        table.push((kind.to_string(), format!("{} (member of demo)", user.name), read.status()));
    }

    // Native keys: Barbican's policy lets every member of the project read them.
    for ((_, _, user), read) in cases.iter().zip(&reads).take(2) {
        let (bytes, passphrase) = read.key();
        assert!(bytes == before_bytes, "the native key {} read is not fixed_key", user.name);
        assert!(passphrase == before_passphrase, "os-brick's passphrase from the native key {} read differs", user.name);
    }
    // The owner reads the migrated key, and os-brick unlocks the volume with the same
    // passphrase as under the ConfKeyManager.
    let (bytes, passphrase) = reads[2].key();
    assert!(bytes == before_bytes, "the migrated secret alice read is not fixed_key");
    assert!(passphrase == before_passphrase, "os-brick's passphrase changed with the migration");
    // Today's `service` model: the secret lives in Cinder's service project with a read ACL for
    // the row's user only, so alice's teammate is refused. Under the project-owned mode
    // (`--secret-owner project`) this read must become 200, like the native key's.
    assert_eq!(
        reads[3],
        CastellanRead::Refused { error: "KeyManagerError".into(), status: Some(403) },
        "bob, another member of demo, reading the service-owned migrated key"
    );

    // Deleting the volume: cinder-volume calls volume_utils.delete_encryption_key with alice's
    // context. Her read ACL does not allow a delete (403), so Cinder retries with its own
    // service credentials, whose project holds the secret: it goes away, as a native key does.
    let deleted = castellan::cinder_delete_as(&alice, &migrated);
    assert!(deleted.ok, "Cinder's delete of the migrated key: {deleted:?}");
    assert!(deleted.fell_back_to_service, "alice's own attempt fails and Cinder falls back: {deleted:?}");
    assert_eq!(deleted.failed_statuses, vec![403], "{deleted:?}");
    assert_eq!(cloud.payload(&cinder_token, &migrated).status, 404, "the migrated secret is gone");
    table.push((
        "migrated, service model: Cinder's delete_encryption_key".into(),
        "alice".into(),
        format!("alice {:?}, then Cinder's service user: deleted", deleted.failed_statuses),
    ));
    // The native key is deleted by alice's own context, with no fallback.
    let deleted = castellan::cinder_delete_as(&alice, &native);
    assert_eq!((deleted.ok, deleted.fell_back_to_service, deleted.failed_statuses.len()), (true, false, 0), "{deleted:?}");
    assert_eq!(cloud.payload(&alice_token, &native).status, 404, "the native secret is gone");
    table.push(("created natively: Cinder's delete_encryption_key".into(), "alice".into(), "alice: deleted".into()));

    // Why Cinder's fallback would also remove a key in the volume's own project: its service
    // user holds the `admin` role (in project service), and Barbican lets an admin delete any
    // project's secret, though not read its payload.
    let other = cloud.store(&alice_token, &format!("owners-native-{}", uuid()), &payload, 256);
    cleanup.secrets.push((alice_token.clone(), other.clone()));
    let (read, delete) = (cloud.payload(&cinder_token, &other).status, cloud.delete(&cinder_token, &other));
    assert_eq!((read, delete), (403, 204), "Cinder's service user on a native key of demo: payload, DELETE");
    assert_eq!(cloud.payload(&alice_token, &other).status, 404, "the native secret is gone");
    table.push((
        "created natively: Cinder's service user (admin in service)".into(),
        "cinder".into(),
        format!("payload {read}, DELETE {delete}"),
    ));

    let width = table.iter().map(|r| r.0.len()).max().unwrap_or(0);
    println!("Who reads alice's volume key through castellan (measured):");
    for (kind, user, status) in &table {
        println!("| {kind:width$} | {user:22} | {status} |");
    }
}
