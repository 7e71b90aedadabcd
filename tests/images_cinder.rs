//! A migrated Glance image used the way Cinder uses it: cinder 29's own
//! `volume_utils.clone_encryption_key`, which cinder-api calls with the requesting user's
//! context to give a volume created from an encrypted image a key of its own
//! (`ExtractVolumeRequestTask._get_encryption_key_id`). Before `migrate --images` that path needs
//! the ConfKeyManager; after it, a member of the image's owner project (not only the user who
//! uploaded it) gets a copy holding exactly the fixed key, and os-brick's passphrase from it is
//! the one the volume's LUKS header was made with.

use crate::support::castellan;
use crate::support::glance::{Glance, ImageSpec};
use crate::support::tenancy::Project;
use crate::support::*;

#[test]
fn a_volume_created_from_a_migrated_image_gets_a_copy_of_the_fixed_key() {
    let mut project = Project::new("imgclone");
    let owner = project.member("owner");
    let teammate = project.member("teammate");
    let glance = Glance::new();
    let image = glance.create(&owner.token(), &ImageSpec::new("private").encrypted(ZERO));
    let image_id = image["id"].as_str().expect("image id").to_string();

    let db = CinderDb::new(Backend::Sqlite);
    let mut w = Workdir::new();
    let fixed_key = random_key();
    let conf = w.conf(&db, Some(&fixed_key), &service_sections("password"));
    let state = w.path("state");
    // Only this test's project: Glance is shared with tests that use other fixed keys.
    let out = w.run(&["--config-file", arg(&conf), "migrate", "--images", "--image-owner", &project.id, "--state-dir", arg(&state), "-f", "json"]);
    out.assert_code(0);
    assert_eq!(out.json()["report"]["images"]["migrated"], 1, "{}", out.stdout);
    let after = glance.get_as_admin(&image_id);
    let key_id = after["cinder_encryption_key_id"].as_str().expect("key id").to_string();
    assert_ne!(key_id, ZERO, "the image was not migrated:\n{}", out.stderr);
    assert_eq!(after["owner"], image["owner"], "the owner changed");
    assert_eq!(after["cinder_encryption_key_deletion_policy"], "on_image_deletion", "the deletion policy changed");

    let before = castellan::conf_key_manager(&fixed_key);
    let (_, before_passphrase) = before.key();
    for user in [&owner, &teammate] {
        let (read, clone_id) = castellan::cinder_clone_as(&user.castellan(), &key_id);
        let (bytes, passphrase) = read.key();
        // Compared without printing: a failing test shows no key material.
        assert!(bytes == hex::decode(&fixed_key).expect("hex").as_slice(), "{user:?}: the clone does not hold the fixed key");
        assert_eq!(passphrase, before_passphrase, "{user:?}: os-brick's passphrase changed");
        let clone_id = clone_id.expect("a clone ID");
        assert_ne!(clone_id, key_id, "{user:?}: Cinder stored a copy, not the image's key itself");
        eprintln!("{user:?}: clone_encryption_key gave {clone_id}, holding the fixed key");
    }
    assert_eq!(glance.delete(&owner.token(), &image_id), 204, "the owner deletes the image");
}
