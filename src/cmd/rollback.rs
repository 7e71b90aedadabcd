//! `keymigrate rollback`: back out a migration while fixed_key is still configured. Rows whose
//! secret keymigrate made and which still holds exactly the fixed key get the all-zeros key ID
//! back (compare-and-swap from that secret); a secret no row uses any more is then deleted.
//! Rows on a secret that no longer holds the fixed key are refused: the all-zeros ID would
//! point them at the wrong key.

use std::io::Write;

use crate::cinder::SecretOwner;
use crate::cli::RollbackArgs;
use crate::db::{Access, Cursor, Db};
use crate::error::{Error, Outcome, Result};
use crate::journal::Journal;
use crate::cinder::Table;
use crate::output::{Format, Listing};
use crate::plan;
use crate::settings::Settings;

use crate::cinder::ZERO_KEY_ID;
use crate::inspect::{connect, Inspector, Place, SecretState};
use std::sync::Arc;

const HEADERS: [&str; 4] = ["Table", "ID", "Key ID", "Result"];

pub fn run(settings: &Settings, args: &RollbackArgs, out: &mut dyn Write) -> Result<Outcome> {
    super::log_conditions(&settings.conditions);
    let (key, services, barbican) = connect(settings, "rollback")?;
    let access = if args.dry_run { Access::ReadOnly } else { Access::ReadWrite };
    let mut db = Db::connect(&settings.database, access)?;
    // The same lock as migrate: the two never run on one scope at once.
    let journal = if args.dry_run { None } else { Some(Arc::new(Journal::open(&services.state_dir, &settings.scope)?)) };
    // Nova's instances: nova.conf's key, and migrate --nova's lock held for the run.
    let nova_key = super::nova_key(settings)?;
    let _nova_lock = match (&settings.nova, args.dry_run) {
        (Some(_), false) => {
            let lock = crate::journal::NovaJournal::open(&services.state_dir)?;
            let pending = lock.pending_entries()?.len();
            if pending > 0 {
                return Err(Error::Aborted(format!("{pending} Nova instance(s) are still in migrate --nova's journal: run migrate --nova to finish them first")));
            }
            Some(lock)
        }
        _ => None,
    };
    let mut nova_inspector = nova_key.map(|k| Inspector::new(barbican.clone(), k, Some(services), &settings.scope, journal.clone(), true));
    let mut inspector = Inspector::new(barbican, key, Some(services), &settings.scope, journal, settings.owner == SecretOwner::Project);
    let result = roll_back(settings, args, &mut db, (&mut inspector, nova_inspector.as_mut()), out);
    // Revoke the role grants made to act in the rows' projects, whatever happened.
    let closed = inspector.close().and(nova_inspector.as_mut().map_or(Ok(()), Inspector::close));
    let outcome = result?;
    closed?;
    Ok(outcome)
}

/// Whether the secret's name is one keymigrate gives an image's secret (`keymigrate-image-…`).
fn is_image_secret_name(inspector: &mut Inspector<'_>, secret: &str, owner: Option<&str>) -> Result<bool> {
    is_secret_named(inspector, secret, owner, "keymigrate-image-")
}

/// Whether the secret's name starts with `prefix`, read as the service user or in `owner`'s
/// project.
fn is_secret_named(inspector: &mut Inspector<'_>, secret: &str, owner: Option<&str>, prefix: &str) -> Result<bool> {
    let service = inspector.barbican.clone();
    if let Ok(Some(name)) = service.name_of(secret) {
        return Ok(name.starts_with(prefix));
    }
    let Some(owner) = owner else { return Ok(false) };
    match inspector.barbican_for(&Place::Project { project: owner.to_string(), project_access: true, readers: Vec::new() })? {
        Some(b) => Ok(b.name_of(secret).ok().flatten().is_some_and(|n| n.starts_with(prefix))),
        None => Ok(false),
    }
}

fn roll_back(
    settings: &Settings,
    args: &RollbackArgs,
    db: &mut Db,
    (inspector, nova_inspector): (&mut Inspector<'_>, Option<&mut Inspector<'_>>),
    out: &mut dyn Write,
) -> Result<Outcome> {
    let format = args.output.format.unwrap_or(Format::Table);
    let (mut done, mut refused, mut deleted, mut changed, mut missing) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut rows_json = Vec::new();
    let mut table = (format != Format::Json).then(|| Listing::new(&mut *out, format, &HEADERS, &args.output.column)).transpose()?;
    for t in Table::ALL {
        let mut cursor = Cursor::Start;
        while cursor != Cursor::End {
            let page = plan::keyed_page(db, &settings.scope, t, &mut cursor)?;
            for row in page {
                let result = match inspector.state(&row.key, row.project.as_deref())? {
                    SecretState::NotOurs => continue,
                    SecretState::Missing => {
                        missing += 1;
                        log::warn!("{} {} points at secret {}, which does not exist: left alone", row.table.noun(), row.id, row.key);
                        "left alone: secret missing"
                    }
                    SecretState::Ours { place: Place::Unreadable, .. } => {
                        refused += 1;
                        log::error!(
                            "Not rolling back {} {}: secret {} cannot be read to check it holds the fixed key",
                            row.table.noun(),
                            row.id,
                            row.key
                        );
                        "refused: secret unreadable"
                    }
                    SecretState::Ours { holds_key: false, .. } => {
                        refused += 1;
                        log::error!(
                            "Not rolling back {} {}: secret {} does not hold the fixed key",
                            row.table.noun(),
                            row.id,
                            row.key
                        );
                        "refused: secret does not hold the fixed key"
                    }
                    SecretState::Ours { holds_key: true, .. } if args.dry_run => {
                        done += 1;
                        "would roll back"
                    }
                    SecretState::Ours { holds_key: true, place } => {
                        if db.unswap(row.table, &row.id, &row.key)? {
                            done += 1;
                            log::info!("Rolled back {} {} from Barbican key ID {} to the all-zeros key ID", row.table.noun(), row.id, row.key);
                            let barbican = inspector.barbican_for(&place)?;
                            let delete = |b: &crate::barbican::Barbican| b.delete(&row.key).map_err(|e| Error::Service(e.to_string()));
                            if !db.is_referenced(&row.key)? && barbican.as_deref().map(delete).transpose()?.unwrap_or(false) {
                                deleted += 1;
                                log::info!("Deleted secret {}", row.key);
                            }
                            "rolled back"
                        } else {
                            changed += 1;
                            "changed meanwhile; left alone"
                        }
                    }
                };
                match table.as_mut() {
                    Some(table) => table.row(vec![row.table.name().into(), row.id.clone(), row.key.clone(), result.into()])?,
                    None => rows_json.push(serde_json::json!({"table": row.table, "id": row.id, "key_id": row.key, "result": result})),
                }
            }
        }
    }
    if let Some(images) = &settings.images {
        let glance = super::images::admin_glance(images, images.retry)?;
        for image in glance.keyed_images(&images.owners)? {
            let Some(key_id) = image.key.clone() else { continue };
            let result = match inspector.state(&key_id, image.owner.as_deref())? {
                // Only the secrets keymigrate made for images: a volume's key is never an image's.
                SecretState::Ours { .. } if !is_image_secret_name(inspector, &key_id, image.owner.as_deref())? => continue,
                SecretState::NotOurs => continue,
                SecretState::Missing => {
                    missing += 1;
                    log::warn!("image {} points at secret {key_id}, which does not exist: left alone", image.id);
                    "left alone: secret missing"
                }
                SecretState::Ours { holds_key: false, .. } | SecretState::Ours { place: Place::Unreadable, .. } => {
                    refused += 1;
                    log::error!("Not rolling back image {}: secret {key_id} does not hold the fixed key, or cannot be read", image.id);
                    "refused: secret does not hold the fixed key"
                }
                SecretState::Ours { .. } if args.dry_run => {
                    done += 1;
                    "would roll back"
                }
                SecretState::Ours { place, .. } => {
                    // Glance has no compare-and-swap: read again right before the patch.
                    match glance.image(&image.id)? {
                        Some(now) if now.key.as_deref() == Some(key_id.as_str()) => {}
                        _ => {
                            changed += 1;
                            continue;
                        }
                    }
                    match glance.replace_key(&image.id, ZERO_KEY_ID)? {
                        Ok(now) if now.is_zero() => {
                            done += 1;
                            log::info!("Rolled back image {} from Barbican key ID {key_id} to the all-zeros key ID", image.id);
                            let barbican = inspector.barbican_for(&place)?;
                            let delete = |b: &crate::barbican::Barbican| b.delete(&key_id).map_err(|e| Error::Service(e.to_string()));
                            if !db.is_referenced(&key_id)? && barbican.as_deref().map(delete).transpose()?.unwrap_or(false) {
                                deleted += 1;
                                log::info!("Deleted secret {key_id}");
                            }
                            "rolled back"
                        }
                        Ok(_) => {
                            changed += 1;
                            "changed meanwhile; left alone"
                        }
                        Err(refused_patch) => {
                            refused += 1;
                            log::error!("Not rolling back image {}: {}", image.id, refused_patch.0);
                            "refused: Glance refused the change"
                        }
                    }
                }
            };
            match table.as_mut() {
                Some(table) => table.row(vec!["images".into(), image.id.clone(), key_id.clone(), result.into()])?,
                None => rows_json.push(serde_json::json!({"table": "images", "id": image.id, "key_id": key_id, "result": result})),
            }
        }
    }
    if let (Some(nova), Some(ni)) = (&settings.nova, nova_inspector) {
        let access = if args.dry_run { Access::ReadOnly } else { Access::ReadWrite };
        for (cell, mut cell_db, keyed) in crate::nova::keyed_instances(&nova.conf, &nova.hosts, &nova.cwd, access)? {
            for (instance, key_id) in keyed {
                let project = instance.project_id.as_deref();
                let result = match ni.state(&key_id, project)? {
                    // Only the secrets keymigrate made for instances.
                    SecretState::Ours { .. } if !is_secret_named(ni, &key_id, project, "keymigrate-nova-")? => continue,
                    SecretState::NotOurs => continue,
                    SecretState::Missing => {
                        missing += 1;
                        log::warn!("instance {} points at secret {key_id}, which does not exist: left alone", instance.uuid);
                        "left alone: secret missing"
                    }
                    SecretState::Ours { holds_key: false, .. } | SecretState::Ours { place: Place::Unreadable, .. } => {
                        refused += 1;
                        log::error!("Not rolling back instance {}: secret {key_id} does not hold nova.conf's fixed key, or cannot be read", instance.uuid);
                        "refused: secret does not hold nova.conf's fixed key"
                    }
                    SecretState::Ours { .. } if args.dry_run => {
                        done += 1;
                        "would roll back"
                    }
                    SecretState::Ours { place, .. } => {
                        if cell_db.unswap(&instance.uuid, &key_id)? {
                            done += 1;
                            log::info!("Rolled back instance {} (cell {}) from Barbican key ID {key_id} to the all-zeros key ID", instance.uuid, cell.label());
                            let barbican = ni.barbican_for(&place)?;
                            let delete = |b: &crate::barbican::Barbican| b.delete(&key_id).map_err(|e| Error::Service(e.to_string()));
                            if barbican.as_deref().map(delete).transpose()?.unwrap_or(false) {
                                deleted += 1;
                                log::info!("Deleted secret {key_id}");
                            }
                            "rolled back"
                        } else {
                            changed += 1;
                            "changed meanwhile; left alone"
                        }
                    }
                };
                match table.as_mut() {
                    Some(table) => table.row(vec!["instances".into(), instance.uuid.clone(), key_id.clone(), result.into()])?,
                    None => rows_json.push(serde_json::json!({"table": "instances", "id": instance.uuid, "key_id": key_id, "result": result})),
                }
            }
        }
    }
    if let Some(table) = table {
        table.finish()?;
    }
    if format == Format::Json {
        let doc = serde_json::json!({"dry_run": args.dry_run, "scope": super::scope_json(&settings.scope), "rows": rows_json,
            "rolled_back": done, "secrets_deleted": deleted, "refused": refused, "changed_meanwhile": changed,
            "secret_missing": missing});
        serde_json::to_writer_pretty(&mut *out, &doc).map_err(|e| Error::Output(e.into()))?;
        writeln!(out).map_err(Error::Output)?;
    }
    let verb = if args.dry_run { "would roll back" } else { "rolled back" };
    log::info!("Rollback: {verb} {done} row(s), deleted {deleted} secret(s), refused {refused} row(s)");
    Ok(if refused == 0 { Outcome::Done } else { Outcome::NeedsOperator })
}
