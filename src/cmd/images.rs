//! `--images` for `scan` and `status`: the Glance images whose `cinder_encryption_key_id` is
//! the all-zeros ID, of every project, and what `migrate` is to do with each ([`glance::rule`]).
//! Listed with the identity that acts in the rows' projects, which must be an admin: Glance
//! shows other projects' private images to admins only.

use std::sync::Arc;

use crate::error::Result;
use crate::glance::{self, Glance, Image, ImageAction};
use crate::keystone::Keystone;
use crate::settings::Images;

/// One image and its fate.
pub struct Row {
    pub image: Image,
    pub action: ImageAction,
    /// How many projects a shared image is shared with; `None` for other visibilities.
    pub members: Option<usize>,
}

/// The images on the all-zeros ID.
pub struct ImageReport {
    pub rows: Vec<Row>,
}

/// Glance, as the identity that lists every project's images, refused unless it is an admin.
pub(super) fn admin_glance(images: &Images, retry: crate::http::RetryPolicy) -> Result<Glance> {
    let keystone = Arc::new(Keystone::new(images.admin.keystone.clone(), retry)?);
    let glance = Glance::connect(keystone, &images.endpoint)?;
    glance.require_admin(&images.admin.source)?;
    Ok(glance)
}

impl ImageReport {
    /// Lists the images: one Keystone authentication, two listings (visible and hidden
    /// images), and one members request per shared image.
    pub fn look(images: &Images) -> Result<ImageReport> {
        glance::check_key_manager(&images.glance_config);
        let glance = admin_glance(images, images.retry)?;
        let mut rows = Vec::new();
        for image in glance.zero_images(&images.owners)? {
            let members = image.members.as_ref().map(Vec::len);
            let action = glance::rule(&image, images.shared);
            rows.push(Row { image, action, members });
        }
        log::info!(
            "Found {} Glance image(s) on the all-zeros key ID, as {}: {} to migrate, {} reported",
            rows.len(),
            images.admin.source,
            rows.iter().filter(|r| r.action.migrates()).count(),
            rows.iter().filter(|r| !r.action.migrates()).count()
        );
        Ok(ImageReport { rows })
    }

    pub fn to_migrate(&self) -> usize {
        self.rows.iter().filter(|r| r.action.migrates()).count()
    }

    pub fn reported(&self) -> usize {
        self.rows.len() - self.to_migrate()
    }

    /// The cells of the image table.
    pub const HEADERS: [&'static str; 7] = ["Image", "Name", "Owner", "Visibility", "Members", "Deletion Policy", "Action"];

    pub fn cells(row: &Row) -> Vec<String> {
        let i = &row.image;
        let visibility = if i.hidden { format!("{} (hidden)", i.visibility) } else { i.visibility.clone() };
        vec![
            i.id.clone(),
            i.name.clone().unwrap_or_default(),
            i.owner.clone().unwrap_or_default(),
            visibility,
            row.members.map(|m| m.to_string()).unwrap_or_default(),
            i.deletion_policy.clone().unwrap_or_default(),
            row.action.to_string(),
        ]
    }

    pub fn json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let i = &r.image;
                serde_json::json!({
                    "id": i.id, "name": i.name, "owner": i.owner, "visibility": i.visibility, "hidden": i.hidden,
                    "members": r.members, "member_projects": i.members, "deletion_policy": i.deletion_policy, "status": i.status,
                    "action": r.action.to_string(), "migrate": r.action.migrates(),
                    "members_acl": r.action == ImageAction::NewSecretForMembers,
                })
            })
            .collect();
        serde_json::json!({"rows": rows, "to_migrate": self.to_migrate(), "reported": self.reported()})
    }
}
