//! `keymigrate verify`: before fixed_key is removed, prove that every row keymigrate migrated
//! points at a secret that holds exactly the fixed key and that the row's users may read: the
//! owner on the ACL of a secret in Cinder's service project, every member of the project for a
//! secret in the row's own project.
//! Rows keymigrate migrated are known by their secret's name (`keymigrate-…`); rows on any other
//! key are counted, not judged. Exit 0 when every checked row holds, 2 otherwise.

use std::io::Write;

use crate::cinder::SecretOwner;
use crate::cli::VerifyArgs;
use crate::db::{Access, Cursor, Db};
use crate::error::{Error, Outcome, Result};
use crate::cinder::Table;
use crate::output::{Format, Listing};
use crate::plan;
use crate::inspect::{connect, judge, Inspector, Place, SecretState};
use crate::settings::Settings;

const HEADERS: [&str; 4] = ["Table", "ID", "Key ID", "Result"];

pub fn run(settings: &Settings, args: &VerifyArgs, out: &mut dyn Write) -> Result<Outcome> {
    super::log_conditions(&settings.conditions);
    let (key, services, barbican) = connect(settings, "verify")?;
    let mut db = Db::connect(&settings.database, Access::ReadOnly)?;
    // Nova's instances are judged against nova.conf's key, which their disks were made with.
    let nova_key = super::nova_key(settings)?;
    let mut nova_inspector = nova_key.map(|k| Inspector::new(barbican.clone(), k, Some(services), &settings.scope, None, true));
    let mut inspector = Inspector::new(barbican, key, Some(services), &settings.scope, None, settings.owner == SecretOwner::Project);
    let result = check(settings, args, &mut db, (&mut inspector, nova_inspector.as_mut()), out);
    // Revoke the role grants made to look into the rows' projects, whatever happened.
    let closed = inspector.close().and(nova_inspector.as_mut().map_or(Ok(()), Inspector::close));
    let outcome = result?;
    closed?;
    Ok(outcome)
}

/// The verdict on an instance's secret: keymigrate made it in the instance's project, it holds
/// exactly nova.conf's key, and the project's members may read it.
fn judge_instance(instance: &crate::nova::Instance, facts: &SecretState) -> Option<&'static str> {
    match facts {
        SecretState::NotOurs => None,
        SecretState::Missing => Some("secret missing"),
        SecretState::Ours { place: Place::Unreadable, .. } => Some("secret unreadable in the service project and in the instance's project"),
        SecretState::Ours { holds_key: false, .. } => Some("secret does not hold nova.conf's fixed key"),
        SecretState::Ours { place: Place::Service { .. }, .. } => Some("secret is in Cinder's service project, not the instance's"),
        SecretState::Ours { place: Place::Project { project, project_access, .. }, .. } => {
            if instance.project_id.as_deref() != Some(project.as_str()) {
                Some("secret is not in the instance's project")
            } else if !project_access {
                Some("project members cannot read the secret (its ACL turns project access off)")
            } else {
                Some("ok")
            }
        }
    }
}

/// For a shared image whose secret's ACL names users (a `--shared-images acl` migration): the
/// users of its member projects now whom the ACL does not name. Empty otherwise. `grants`: the
/// admin identity's role-assignment API and its own user ID, made on first use.
fn members_missing(
    glance: &crate::glance::Glance,
    grants: &mut Option<(crate::grants::Grants, String)>,
    image: &crate::glance::Image,
    facts: &SecretState,
) -> Result<Vec<String>> {
    let SecretState::Ours { place: Place::Project { readers, .. }, .. } = facts else { return Ok(Vec::new()) };
    if readers.is_empty() || image.visibility != "shared" {
        return Ok(Vec::new());
    }
    let (grants, me) = match grants {
        Some(g) => g,
        None => {
            let g = crate::grants::Grants::new(glance.keystone().clone());
            let me = g.whoami()?.user_id;
            grants.insert((g, me))
        }
    };
    let mut missing = Vec::new();
    for member in glance.members(&image.id)? {
        let users = match grants.users_in(&member) {
            Ok(users) => users,
            Err(crate::grants::GrantError::ProjectGone { .. }) => continue,
            Err(e) => return Err(Error::Service(e.to_string())),
        };
        missing.extend(users.into_iter().filter(|u| u != me && !readers.contains(u)));
    }
    missing.sort();
    missing.dedup();
    Ok(missing)
}

/// The verdict on an image's secret: keymigrate made it (`keymigrate-image-…`) in the image's
/// owner project, it holds exactly the key, and the project's members may read it.
/// `missing`: users of the image's member projects whom the secret's ACL does not name, when it
/// names any (a `--shared-images acl` migration).
fn judge_image(image: &crate::glance::Image, facts: &SecretState, missing: &[String]) -> Option<&'static str> {
    match facts {
        SecretState::NotOurs => None,
        SecretState::Missing => Some("secret missing"),
        SecretState::Ours { place: Place::Unreadable, .. } => Some("secret unreadable in the service project and in the image owner's project"),
        SecretState::Ours { holds_key: false, .. } => Some("secret does not hold the fixed key"),
        SecretState::Ours { place: Place::Service { .. }, .. } => Some("secret is in Cinder's service project, not the image owner's"),
        SecretState::Ours { place: Place::Project { project, project_access, .. }, .. } => {
            if image.owner.as_deref() != Some(project.as_str()) {
                Some("secret is not in the image owner's project")
            } else if !project_access {
                Some("project members cannot read the secret (its ACL turns project access off)")
            } else if !missing.is_empty() {
                Some("users of a member project are not on the secret's read ACL (they joined after the migration)")
            } else {
                Some("ok")
            }
        }
    }
}

fn check(
    settings: &Settings,
    args: &VerifyArgs,
    db: &mut Db,
    (inspector, nova_inspector): (&mut Inspector<'_>, Option<&mut Inspector<'_>>),
    out: &mut dyn Write,
) -> Result<Outcome> {
    let format = args.output.format.unwrap_or(Format::Table);
    let (mut ok, mut bad, mut others) = (0u64, 0u64, 0u64);
    let mut rows_json = Vec::new();
    {
        let mut table = (format != Format::Json).then(|| Listing::new(out, format, &HEADERS, &args.output.column)).transpose()?;
        for t in Table::ALL {
            let mut cursor = Cursor::Start;
            while cursor != Cursor::End {
                for row in plan::keyed_page(db, &settings.scope, t, &mut cursor)? {
                    let facts = inspector.state(&row.key, row.project.as_deref())?;
                    let Some(verdict) = judge(&row, &facts) else {
                        others += 1;
                        continue;
                    };
                    if verdict == "ok" {
                        ok += 1;
                    } else {
                        bad += 1;
                        log::error!("{} {}: {verdict} (key ID {})", row.table.noun(), row.id, row.key);
                    }
                    match table.as_mut() {
                        Some(table) => table.row(vec![row.table.name().into(), row.id.clone(), row.key.clone(), verdict.into()])?,
                        None => rows_json.push(serde_json::json!({"table": row.table, "id": row.id, "key_id": row.key,
                            "result": verdict, "ok": verdict == "ok"})),
                    }
                }
            }
        }
        if let Some(images) = &settings.images {
            let glance = super::images::admin_glance(images, images.retry)?;
            let mut grants = None;
            for image in glance.keyed_images(&images.owners)? {
                let Some(key_id) = image.key.clone() else { continue };
                let facts = inspector.state(&key_id, image.owner.as_deref())?;
                let missing = members_missing(&glance, &mut grants, &image, &facts)?;
                if !missing.is_empty() {
                    log::error!(
                        "image {}: user(s) {} of its member projects cannot read secret {key_id}; add them with `openstack acl user add --user USER_ID --operation-type read SECRET_HREF`",
                        image.id,
                        missing.join(", ")
                    );
                }
                let Some(verdict) = judge_image(&image, &facts, &missing) else {
                    others += 1;
                    continue;
                };
                if verdict == "ok" {
                    ok += 1;
                } else {
                    bad += 1;
                    log::error!("image {}: {verdict} (key ID {key_id})", image.id);
                }
                match table.as_mut() {
                    Some(table) => table.row(vec!["images".into(), image.id.clone(), key_id, verdict.into()])?,
                    None => rows_json.push(serde_json::json!({"table": "images", "id": image.id, "key_id": key_id,
                        "result": verdict, "ok": verdict == "ok"})),
                }
            }
        }
        if let (Some(nova), Some(ni)) = (&settings.nova, nova_inspector) {
            for (cell, _db, keyed) in crate::nova::keyed_instances(&nova.conf, &nova.hosts, &nova.cwd, Access::ReadOnly)? {
                for (instance, key_id) in keyed {
                    let facts = ni.state(&key_id, instance.project_id.as_deref())?;
                    let Some(verdict) = judge_instance(&instance, &facts) else {
                        others += 1;
                        continue;
                    };
                    if verdict == "ok" {
                        ok += 1;
                    } else {
                        bad += 1;
                        log::error!("instance {} (cell {}): {verdict} (key ID {key_id})", instance.uuid, cell.label());
                    }
                    match table.as_mut() {
                        Some(table) => table.row(vec!["instances".into(), instance.uuid.clone(), key_id, verdict.into()])?,
                        None => rows_json.push(serde_json::json!({"table": "instances", "id": instance.uuid, "key_id": key_id,
                            "result": verdict, "ok": verdict == "ok"})),
                    }
                }
            }
        }
        if let Some(table) = table {
            table.finish()?;
        }
    }
    // Rows still on the all-zeros ID are not verify's to judge, but fixed_key cannot go yet.
    let (left, _) = plan::tally(db, &settings.scope, settings.owner, plan::Lookup::BOUNDED)?;
    if left.units() > 0 {
        log::warn!(
            "{} row(s) in scope still use the all-zeros key ID: run `keymigrate migrate` before removing fixed_key",
            left.units()
        );
    }
    if format == Format::Json {
        let doc = serde_json::json!({"scope": super::scope_json(&settings.scope), "rows": rows_json, "ok": ok, "problems": bad,
            "not_made_by_keymigrate": others, "still_on_all_zeros": left.units()});
        serde_json::to_writer_pretty(&mut *out, &doc).map_err(|e| Error::Output(e.into()))?;
        writeln!(out).map_err(Error::Output)?;
    }
    log::info!(
        "Verified {} row(s) migrated by keymigrate in scope [{}]: {ok} hold the fixed key and are readable by their users, {bad} do not; {others} row(s) on keys keymigrate did not make",
        ok + bad,
        settings.scope.describe()
    );
    Ok(if bad == 0 { Outcome::Done } else { Outcome::NeedsOperator })
}
