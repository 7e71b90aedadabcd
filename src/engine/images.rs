//! `migrate --images`: a Glance image whose `cinder_encryption_key_id` is the all-zeros ID gets
//! a secret of its own in its owner's project, holding exactly the fixed key, and the property is
//! replaced with the secret's ID. One secret per image, never shared with a volume: Glance deletes
//! it with the image (`cinder_encryption_key_deletion_policy = on_image_deletion`, left as it is),
//! with the deleting owner's token, which reaches secrets of the owner's project only.
//!
//! The steps of one image, each journalled before the next can matter: entry written → secret
//! stored → its ID recorded → read back and compared → the image read again (skipped unless the
//! property is still the all-zeros ID) → JSON-patch `replace` → the image read once more to
//! confirm it now names the secret → entry removed. Glance has no compare-and-swap: between the
//! last read and the patch, someone else's change of the property would be overwritten (a window
//! of one request). A run killed anywhere leaves the entry, and the next run finishes the image
//! or deletes the secret the image does not use.
//!
//! Images belong to no host, so the images' journal has a lock of its own (`images.lock` in the
//! state directory): two runs on one machine never work on images at once. Two machines that
//! both run `--images` can still race on one image: both read the all-zeros ID, both patch, the
//! later patch wins. Each run confirms its own patch afterwards and deletes its secret when the
//! image names another, so no image is left on a secret that does not hold the key; at worst the
//! earlier run's secret stays unused in the owner's project, holding the key. Run `--images`
//! from one machine.

use crate::barbican::Barbican;
use crate::error::{Error, Result};
use crate::fault;
use crate::glance::{Glance, Image, ImageAction, SharedImages};
use crate::journal::{ImageEntry, ImageJournal};

use super::{Engine, Target, LOG};

/// Glance and the images' journal, for one run.
struct Images<'a> {
    glance: &'a Glance,
    journal: &'a ImageJournal,
}

/// What the image runs did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImagesReport {
    /// Images whose property now names a verified secret in the owner's project.
    pub migrated: u64,
    /// Images reported, never changed (shared, public, …; see `scan --images`).
    pub reported: u64,
    /// Images whose owner project is blocked (gone from Keystone, grant refused).
    pub blocked: u64,
    /// Images Glance would not patch, or that changed under the run; left for the next run.
    pub failed: u64,
    /// Images finished from an interrupted run.
    pub recovered: u64,
}

impl Engine<'_> {
    /// Finishes the images an interrupted run left, then migrates `images` (those the rule
    /// migrates; the others are counted as reported).
    pub fn run_images(&mut self, glance: &Glance, images: &[Image], journal: &ImageJournal, shared: SharedImages) -> Result<()> {
        let result = self.images_inner(&Images { glance, journal }, images, shared);
        let closed = self.projects.as_mut().map_or(Ok(()), |p| p.close_all());
        if let Some(p) = &self.projects {
            self.report.keystone = p.stats.clone();
        }
        result.and(closed)
    }

    fn images_inner(&mut self, glance: &Images<'_>, images: &[Image], shared: SharedImages) -> Result<()> {
        for entry in glance.journal.pending_entries()? {
            if self.recover_image(glance, &entry)? {
                self.report.images.recovered += 1;
            }
        }
        for image in images {
            match crate::glance::rule(image, shared) {
                ImageAction::Reported(reason) => {
                    self.report.images.reported += 1;
                    log::warn!(target: LOG, "Not migrating image {}: {reason}", image.id);
                }
                action @ (ImageAction::NewSecret | ImageAction::NewSecretForMembers) => {
                    if self.opts.max_count.is_some_and(|m| self.report.migrated + self.report.images.migrated >= m) {
                        self.report.stopped_early = true;
                        return Ok(());
                    }
                    self.migrate_image(glance, image, action == ImageAction::NewSecretForMembers)?;
                    self.budget(self.report.images.failed, "image(s)")?;
                }
            }
        }
        Ok(())
    }

    /// The owner project's Barbican, or `None` when the project is blocked.
    fn image_barbican(&mut self, project: &str) -> Result<Option<std::sync::Arc<Barbican>>> {
        match self.in_project(project)? {
            Target::Job(t) => Ok(Some(t.barbican)),
            _ => Ok(None),
        }
    }

    fn migrate_image(&mut self, glance: &Images<'_>, image: &Image, members_acl: bool) -> Result<()> {
        let Some(project) = image.owner.clone() else { return Ok(()) };
        let Some(barbican) = self.image_barbican(&project)? else {
            self.report.images.blocked += 1;
            return Ok(());
        };
        let tag: u32 = rand::random();
        let mut entry = ImageEntry { image: image.id.clone(), project, name: format!("keymigrate-image-{}-{tag:08x}", image.id), secret: None, members_acl };
        log::info!(target: LOG, "Migrating image {} encryption key to Barbican", image.id);
        glance.journal.write_entry(&entry)?;
        fault::point("image-journal");
        let stored = match barbican.store(&entry.name, self.key) {
            Ok(s) => s,
            Err(f) => {
                if !f.maybe_created {
                    glance.journal.finish_entry(&image.id)?;
                }
                return self.image_failed(image, &f.error.to_string());
            }
        };
        self.report.secrets_created += 1;
        entry.secret = Some(stored.id.clone());
        glance.journal.write_entry(&entry)?;
        fault::point("image-recorded");
        self.finish_image(glance, &barbican, &entry, &stored.id, stored.maybe_orphaned)
    }

    /// From a recorded secret to a patched image: read back, re-read, patch, confirm.
    fn finish_image(&mut self, glance: &Images<'_>, barbican: &Barbican, entry: &ImageEntry, secret: &str, sweep: bool) -> Result<()> {
        let id = &entry.image;
        match barbican.payload(secret) {
            Ok(p) if p.as_slice() == self.key.bytes() => {}
            Ok(p) => {
                let m = format!("secret {secret} read back {} byte(s) that are not the fixed key; not using it", p.len());
                self.drop_image_secret(glance, barbican, entry, secret)?;
                return self.image_failed_named(id, &m);
            }
            Err(e) => return self.image_failed_named(id, &e.to_string()),
        }
        fault::point("image-verified");
        // Glance has no compare-and-swap: read right before the patch.
        match glance.glance.image(id)? {
            Some(now) if now.is_zero() => {
                if entry.members_acl {
                    if let Err(m) = self.share_with_members(glance, barbican, &now, secret)? {
                        self.drop_image_secret(glance, barbican, entry, secret)?;
                        return self.image_failed_named(id, &m);
                    }
                }
            }
            Some(now) if now.key.as_deref() == Some(secret) => {
                return self.image_done(glance, barbican, entry, secret, sweep);
            }
            _ => {
                log::info!(target: LOG, "image {id} no longer uses the all-zeros key ID (or is gone); deleting secret {secret}");
                self.drop_image_secret(glance, barbican, entry, secret)?;
                return Ok(());
            }
        }
        match glance.glance.replace_key(id, secret)? {
            Ok(_) => {}
            Err(refused) => {
                // Unchanged: the secret is ours and unused.
                self.drop_image_secret(glance, barbican, entry, secret)?;
                return self.image_failed_named(id, &refused.0);
            }
        }
        fault::point("image-patched");
        self.image_done(glance, barbican, entry, secret, sweep)
    }

    /// `--shared-images acl`: the secret's read ACL names every user who holds a role in one of
    /// the image's member projects now (listed afresh, from `image`, read right before), its
    /// project access left on; read back to confirm. `Ok(Err(reason))`: the image must not be
    /// patched (Barbican refused the ACL, or it does not read back as set).
    fn share_with_members(&mut self, glance: &Images<'_>, barbican: &Barbican, image: &Image, secret: &str) -> Result<std::result::Result<(), String>> {
        let members = if image.visibility == "shared" { glance.glance.members(&image.id)? } else { Vec::new() };
        let Some(projects) = &self.projects else {
            return Err(Error::Internal("--shared-images acl without the identity that acts in projects".into()));
        };
        let mut users = Vec::new();
        for member in &members {
            users.extend(projects.users_in(member)?);
        }
        users.sort();
        users.dedup();
        if let Err(e) = barbican.grant_read(secret, &users) {
            return Ok(Err(e.to_string()));
        }
        match barbican.read_acl(secret) {
            Ok((read, true)) if users.iter().all(|u| read.contains(u)) => {}
            Ok(_) => return Ok(Err(format!("the ACL of secret {secret} does not read back as set; not using it"))),
            Err(e) => return Ok(Err(e.to_string())),
        }
        log::info!(
            target: LOG,
            "Secret {secret} of image {}: read ACL for {} user(s) of {} member project(s)",
            image.id,
            users.len(),
            members.len()
        );
        fault::point("image-acl");
        Ok(Ok(()))
    }

    /// Confirms the image names the secret, sweeps what an interrupted attempt made, forgets
    /// the entry.
    fn image_done(&mut self, glance: &Images<'_>, barbican: &Barbican, entry: &ImageEntry, secret: &str, sweep: bool) -> Result<()> {
        let id = &entry.image;
        match glance.glance.image(id)? {
            Some(now) if now.key.as_deref() == Some(secret) => {
                log::info!(target: LOG, "Migrated image {id} to Barbican key ID {secret}");
                self.report.images.migrated += 1;
            }
            // Changed right after the patch by someone else, or deleted: leave the secret if
            // the image still names it; otherwise it is unused.
            _ => {
                log::warn!(target: LOG, "image {id} does not name secret {secret} after the patch; deleting the secret");
                self.drop_image_secret(glance, barbican, entry, secret)?;
                return self.image_failed_named(id, "the image changed while it was migrated");
            }
        }
        if sweep {
            self.sweep_image(barbican, entry, Some(secret))?;
        }
        glance.journal.finish_entry(id)?;
        Ok(())
    }

    /// Deletes the image's unused secret and forgets the entry.
    fn drop_image_secret(&mut self, glance: &Images<'_>, barbican: &Barbican, entry: &ImageEntry, secret: &str) -> Result<()> {
        if self.db.is_referenced(secret)? {
            log::error!(target: LOG, "not deleting secret {secret}: a row uses it");
        } else if barbican.delete(secret).map_err(|e| Error::Service(e.to_string()))? {
            self.report.secrets_deleted += 1;
        }
        self.sweep_image(barbican, entry, None)?;
        glance.journal.finish_entry(&entry.image)
    }

    /// Deletes the secrets named for this attempt that the image does not use (`keep`).
    fn sweep_image(&mut self, barbican: &Barbican, entry: &ImageEntry, keep: Option<&str>) -> Result<()> {
        for found in barbican.find_by_name(&entry.name).map_err(|e| Error::Service(e.to_string()))? {
            if Some(found.as_str()) == keep || self.db.is_referenced(&found)? {
                continue;
            }
            if barbican.name_of(&found).map_err(|e| Error::Service(e.to_string()))?.as_deref() != Some(entry.name.as_str()) {
                continue;
            }
            log::info!(target: LOG, "Deleting secret {found} left by an interrupted run for image {}", entry.image);
            if barbican.delete(&found).map_err(|e| Error::Service(e.to_string()))? {
                self.report.secrets_deleted += 1;
            }
        }
        Ok(())
    }

    /// `Ok(false)`: left for a later run (its project is blocked).
    fn recover_image(&mut self, glance: &Images<'_>, entry: &ImageEntry) -> Result<bool> {
        let Some(barbican) = self.image_barbican(&entry.project)? else {
            log::warn!(target: LOG, "Leaving image {} in the journal: its project {} is blocked", entry.image, entry.project);
            return Ok(false);
        };
        log::info!(target: LOG, "Resuming image {} left by an interrupted run", entry.image);
        let image = glance.glance.image(&entry.image)?;
        match (&entry.secret, image) {
            (Some(secret), Some(image)) if image.key.as_deref() == Some(secret.as_str()) => {
                self.image_done(glance, &barbican, entry, secret, true)?;
            }
            (Some(secret), Some(image)) if image.is_zero() => {
                self.finish_image(glance, &barbican, entry, secret, true)?;
            }
            (Some(secret), _) => self.drop_image_secret(glance, &barbican, entry, secret)?,
            (None, _) => {
                // Killed while storing: nothing names what Barbican may have made.
                self.sweep_image(&barbican, entry, None)?;
                glance.journal.finish_entry(&entry.image)?;
            }
        }
        Ok(true)
    }

    fn image_failed(&mut self, image: &Image, message: &str) -> Result<()> {
        self.image_failed_named(&image.id, message)
    }

    fn image_failed_named(&mut self, id: &str, message: &str) -> Result<()> {
        self.report.images.failed += 1;
        log::error!(target: LOG, "Error migrating encryption key of image {id}: {message}");
        self.report.last_failure = Some(message.to_string());
        Ok(())
    }
}
