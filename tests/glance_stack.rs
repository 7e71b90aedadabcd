//! The test Glance behaves as the images work relies on: an admin's two-pass property query finds
//! every project's images carrying the ConfKeyManager's all-zeros `cinder_encryption_key_id`,
//! hidden and shared ones included; an admin's JSON patch of another project's image changes that
//! property only; and deleting an image with `on_image_deletion` deletes the secret it names in
//! the owner's project. Real Keystone, Barbican and Glance; projects and users made per test.

use serde_json::{json, Value};

use crate::support::cloud::Cloud;
use crate::support::glance::{ids, Glance, ImageSpec, DELETION_POLICY, KEY_ID};
use crate::support::tenancy::{Project, Secrets};
use crate::support::*;

#[test]
fn the_admins_two_pass_property_query_lists_every_projects_all_zeros_images_hidden_ones_included() {
    let mut p1 = Project::new("glance-a");
    let owner1 = p1.member("owner");
    let mut p2 = Project::new("glance-b");
    let owner2 = p2.member("owner");
    let glance = Glance::new();

    // p1's private, active image; p2's hidden image shared with p1; and a p2 image whose key ID
    // is some other value, which the filter must leave out.
    let private = glance.create(&owner1.token(), &ImageSpec::new("private").encrypted(ZERO).data(b"volume bytes"));
    assert_eq!(private["status"], "active", "{private}");
    let hidden = glance.create(&owner2.token(), &ImageSpec::new("shared").encrypted(ZERO).hidden(true));
    glance.add_member(&owner2.token(), id(&hidden), &p1.id);
    glance.accept(&owner1.token(), id(&hidden), &p1.id);
    let other = glance.create(&owner2.token(), &ImageSpec::new("private").encrypted(&uuid()));

    let listed = glance.list_by_property(KEY_ID, ZERO);
    let found = ids(&listed);
    assert!(found.contains(&id(&private).to_string()), "p1's private image missing: {found:?}");
    assert!(found.contains(&id(&hidden).to_string()), "p2's hidden image missing: {found:?}");
    assert!(!found.contains(&id(&other).to_string()), "an image with another key ID was listed");
    let owner_of = |image: &Value| {
        listed.iter().find(|i| i["id"] == image["id"]).map(|i| i["owner"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(owner_of(&private).as_deref(), Some(p1.id.as_str()));
    assert_eq!(owner_of(&hidden).as_deref(), Some(p2.id.as_str()));

    // One pass alone is not enough: the hidden image only comes with os_hidden=true.
    let visible = ids(&glance.list_pass(KEY_ID, ZERO, false, 1000));
    assert!(!visible.contains(&id(&hidden).to_string()), "os_hidden=false listed a hidden image");
    assert!(visible.contains(&id(&private).to_string()));

    // Pages of one image each: `next` is followed to the same result.
    let mut paged = ids(&glance.list_by_property_paged(KEY_ID, ZERO, 1));
    let mut whole = found.clone();
    paged.retain(|i| [id(&private), id(&hidden)].contains(&i.as_str()));
    whole.retain(|i| [id(&private), id(&hidden)].contains(&i.as_str()));
    paged.sort();
    whole.sort();
    assert_eq!(paged, whole, "paging by one lost or repeated an image");

    // The owner's own user, not an admin, does not see the other project's private image.
    assert_eq!(glance.get(&owner1.token(), id(&other)).status, 404);
}

#[test]
fn an_admins_patch_keeps_the_owner_and_deleting_on_image_deletion_deletes_the_owners_secret() {
    let mut project = Project::new("glance-own");
    let owner = project.member("owner");
    let cloud = Cloud::new();
    let key_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hex::decode(random_key()).expect("hex"));
    let secret = cloud.store(&owner.token(), &format!("kmtest-glance-{}", &uuid()[..8]), &key_b64, 256);
    let _secrets = Secrets { ids: vec![secret.clone()] };
    let glance = Glance::new();

    let image =
        glance.create(&owner.token(), &ImageSpec::new("private").encrypted(ZERO).property("kmtest_marker", "keep-me").data(b"x"));
    let image_id = id(&image).to_string();

    // Keystone's admin (another project) points the image at the secret in the owner's project.
    let r = glance.patch_as_admin(&image_id, &json!([{"op": "replace", "path": format!("/{KEY_ID}"), "value": secret}]));
    assert_eq!(r.status, 200, "admin PATCH: {}", String::from_utf8_lossy(&r.body));
    let after = glance.get(&owner.token(), &image_id);
    assert_eq!(after.status, 200);
    let after = after.json();
    assert_eq!(after[KEY_ID], json!(secret));
    assert_eq!(after["owner"], json!(project.id), "the PATCH changed the owner");
    assert_eq!(after[DELETION_POLICY], "on_image_deletion");
    assert_eq!(after["kmtest_marker"], "keep-me");
    assert_eq!(after["visibility"], "private");
    assert_eq!(after["status"], "active");
    assert_eq!(after["checksum"], image["checksum"], "the PATCH touched the data");

    // Deleting the image as its owner deletes the secret too, with the owner's token.
    assert_eq!(cloud.payload(&owner.token(), &secret).status, 200, "the secret is readable before");
    assert_eq!(glance.delete(&owner.token(), &image_id), 204);
    assert_eq!(glance.get(&owner.token(), &image_id).status, 404);
    assert_eq!(cloud.payload(&owner.token(), &secret).status, 404, "Glance left the image's secret behind");
}

fn id(image: &Value) -> &str {
    image["id"].as_str().expect("image id")
}
