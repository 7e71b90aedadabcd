//! One validated settings value, built before any command runs, from the command line, the
//! `OS_<GROUP>__<OPT>` environment and cinder.conf. Commands never read files or the
//! environment themselves.

use std::path::PathBuf;
use std::time::Duration;

use crate::barbican::BarbicanSettings;
use crate::cinder::SecretOwner;
use crate::cli::{self, AdminOpts, Cli, Command, GrantOpts, ImagesOpts, ServiceOpts};
use crate::clouds;
use crate::http::RetryPolicy;
use crate::keystone::KeystoneSettings;
use crate::conditions::Conditions;
use crate::conf::{self, Conf};
use crate::db::{self, DbUrl};
use crate::error::{Error, Result};
use crate::glance::{CatalogLookup, GlanceEndpoint};
use crate::scope::{Scope, ScopeArgs};

pub struct Settings {
    pub conf: Conf,
    pub conditions: Conditions,
    pub database: DbUrl,
    pub scope: Scope,
    /// Whose project new secrets belong to (`--secret-owner`, else `KEYMIGRATE_SECRET_OWNER`).
    pub owner: SecretOwner,
    /// Keystone, Barbican and the state directory: only for a `migrate` that will write.
    pub services: Option<Services>,
    /// Glance and the identity that lists every project's images: only with `--images`.
    pub images: Option<Images>,
    /// nova.conf and the compute hosts: only with `--nova`.
    pub nova: Option<Nova>,
}

/// `--nova`: what nova.conf says, and the hosts to look at.
pub struct Nova {
    pub conf: crate::nova::NovaConf,
    /// `--nova-host`; empty: every host.
    pub hosts: Vec<String>,
    /// Resolves a relative SQLite path in a cell mapping.
    pub cwd: PathBuf,
}

/// Where the images are and who may see them all (`--images`).
pub struct Images {
    pub admin: Admin,
    /// `--glance-endpoint`, else `[DEFAULT] glance_api_servers`' first entry, else the catalog.
    pub endpoint: GlanceEndpoint,
    /// `--image-owner`: only these projects' images; empty: every project's.
    pub owners: Vec<String>,
    /// `--shared-images`: what happens to images shared with other projects.
    pub shared: crate::glance::SharedImages,
    /// `--glance-config`: glance-api.conf, for its key manager.
    pub glance_config: std::path::PathBuf,
    pub retry: RetryPolicy,
}

impl Images {
    /// `timeout`: migrate's `--timeout`; scan and status, which have none, wait 30 seconds.
    fn load(conf: &Conf, args: &ImagesOpts, admin: &AdminOpts, timeout: Duration, env: &[(String, String)]) -> Result<Option<Images>> {
        if !args.images {
            return Ok(None);
        }
        let mut authtoken = KeystoneSettings::from_conf(conf);
        if let Ok(k) = &mut authtoken {
            k.timeout = k.timeout.min(timeout);
        }
        // Without --os-cloud the [keystone_authtoken] identity lists the images; with it,
        // cinder.conf's identity need not even be complete.
        let admin = Admin::load(authtoken, admin, "", timeout, env)?;
        let servers = conf.get(&conf::GLANCE_API_SERVERS)?.and_then(|v| {
            let first = v.value.expose().split(',').map(str::trim).find(|s| !s.is_empty())?.to_string();
            // Cinder's rule for an entry without a scheme: plain HTTP.
            Some(if first.contains("://") { first } else { format!("http://{first}") })
        });
        let endpoint = match args.glance_endpoint.clone().or(servers) {
            Some(url) => GlanceEndpoint::Url(url),
            None => GlanceEndpoint::Catalog(catalog_lookup(conf)?),
        };
        Ok(Some(Images { admin, endpoint, owners: args.image_owner.clone(), shared: args.shared_images, glance_config: args.glance_config.clone(), retry: RetryPolicy::default() }))
    }
}

/// Cinder's way to Glance without `glance_api_servers`: `[DEFAULT] glance_catalog_info`, and
/// the region of the Barbican keymigrate writes to (`[barbican] barbican_region_name`), or
/// Cinder's own `[glance] region_name`; two different regions are refused.
fn catalog_lookup(conf: &Conf) -> Result<CatalogLookup> {
    let text = |opt| -> Result<Option<String>> {
        Ok(conf.get(opt)?.map(|v| v.value.expose().trim().to_string()).filter(|s| !s.is_empty()))
    };
    let info = conf.get(&conf::GLANCE_CATALOG_INFO)?;
    let info_text = info.as_ref().map(|v| v.value.expose().to_string()).unwrap_or_default();
    let (service_type, interface) = crate::glance::parse_catalog_info(&info_text).map_err(|message| {
        let origin = info.as_ref().map(|v| format!(" ({})", v.origin)).unwrap_or_default();
        Error::config_value("[DEFAULT] glance_catalog_info", format!("{message}{origin}"))
    })?;
    let region = match (text(&conf::barbican::REGION_NAME)?, text(&conf::GLANCE_REGION_NAME)?) {
        (Some(b), Some(g)) if b != g => {
            return Err(Error::config_value(
                "[glance] region_name",
                format!(
                    "is {g}, but [barbican] barbican_region_name is {b}: the images' new keys would be in region {b}'s Barbican, \
                     which the services of Glance's region do not read; make them the same, or name Glance with --glance-endpoint"
                ),
            ))
        }
        (Some(b), _) => Some((b, "[barbican] barbican_region_name")),
        (None, Some(g)) => Some((g, "[glance] region_name")),
        (None, None) => None,
    };
    Ok(CatalogLookup { service_type, interface, region })
}

pub struct Services {
    pub keystone: KeystoneSettings,
    pub barbican: BarbicanSettings,
    pub state_dir: PathBuf,
    pub retry: RetryPolicy,
    /// The identity that acts in the rows' own projects, and where it comes from.
    pub admin: Admin,
}

/// The identity that grants itself a role in a row's project and creates the secret there:
/// a clouds.yaml cloud (`--os-cloud`, `OS_CLOUD`), else the `[keystone_authtoken]` identity.
#[derive(Debug, Clone)]
pub struct Admin {
    pub keystone: KeystoneSettings,
    /// For messages: `cloud 'admin' in /etc/openstack/clouds.yaml` or `[keystone_authtoken]`.
    pub source: String,
    /// The role granted where the identity holds none that Barbican accepts.
    pub grant_role: String,
}

impl Services {
    fn load(
        conf: &Conf,
        args: &ServiceOpts,
        (admin, grant): (&AdminOpts, &GrantOpts),
        state_dir: Option<&PathBuf>,
        env: &[(String, String)],
    ) -> Result<Services> {
        // clap has checked the range (1 s to a day).
        let timeout = Duration::from_secs(args.timeout);
        let mut keystone = KeystoneSettings::from_conf(conf)?;
        keystone.timeout = keystone.timeout.min(timeout);
        let barbican = BarbicanSettings::from_conf(conf, args.barbican_endpoint.as_deref(), timeout)?;
        let state_dir = match state_dir {
            Some(d) => d.clone(),
            None => {
                let state_path = conf.get(&conf::STATE_PATH)?.map(|v| v.value.expose().to_string()).unwrap_or_default();
                PathBuf::from(state_path).join("keymigrate")
            }
        };
        let retry = RetryPolicy { retries: args.retries, ..RetryPolicy::default() };
        let admin = Admin::load(Ok(keystone.clone()), admin, &grant.grant_role, timeout, env)?;
        Ok(Services { keystone, barbican, state_dir, retry, admin })
    }
}

impl Admin {
    /// `authtoken`: the `[keystone_authtoken]` identity, needed only when no cloud is named.
    fn load(authtoken: Result<KeystoneSettings>, args: &AdminOpts, grant_role: &str, timeout: Duration, env: &[(String, String)]) -> Result<Admin> {
        let grant_role = grant_role.to_string();
        let Some(name) = clouds::cloud_name(args.os_cloud.as_deref(), env.iter().cloned()) else {
            return Ok(Admin { keystone: authtoken?, source: "[keystone_authtoken]".into(), grant_role });
        };
        let cwd = std::env::current_dir().unwrap_or_default();
        let home = env.iter().rfind(|(k, _)| k == "HOME").map(|(_, v)| PathBuf::from(v));
        let cloud = clouds::load(&name, env.iter().cloned(), &cwd, home.as_deref())?;
        let keystone = cloud.keystone_settings(timeout)?;
        Ok(Admin { keystone, source: cloud.describe(), grant_role })
    }
}

impl Settings {
    pub fn load(cli: &Cli, env: impl IntoIterator<Item = (String, String)>) -> Result<Settings> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let conf = Conf::load(&cli.global.config, env.iter().cloned())?;
        let files: Vec<String> = conf.files().map(|p| p.display().to_string()).collect();
        if files.is_empty() {
            log::warn!("no configuration file found; using Cinder's defaults and OS_* environment variables");
        } else {
            log::debug!("configuration files: {}", files.join(", "));
        }
        let conditions = Conditions::from_conf(&conf)?;
        let database = database_url(&conf)?;
        let default_scope = cli::ScopeOpts::default();
        let s = cli.command.scope().unwrap_or(&default_scope);
        let scope_args = ScopeArgs {
            hosts: s.host.clone(),
            clusters: s.cluster.clone(),
            backup_hosts: s.backup_host.clone(),
            all_hosts: s.all_hosts,
        };
        let no_db_flags =
            scope_args.hosts.is_empty() && scope_args.clusters.is_empty() && scope_args.backup_hosts.is_empty() && !scope_args.all_hosts;
        let with_images = cli.command.images().is_some_and(|i| i.images);
        let with_nova = cli.command.nova().is_some_and(|n| n.nova);
        let scope = match (no_db_flags, with_images, with_nova) {
            (true, true, true) => Scope::no_rows("--images and --nova alone"),
            (true, true, false) => Scope::images_only(),
            (true, false, true) => Scope::no_rows("--nova alone"),
            _ => Scope::resolve(&scope_args, &conf)?,
        };
        let owner = secret_owner(cli.command.owner().and_then(|o| o.secret_owner), &env)?;
        let services = match &cli.command {
            Command::Migrate(args) if !args.dry_run && conditions.is_ready() => {
                Some(Services::load(&conf, &args.service, (&args.admin, &args.grant), args.state.state_dir.as_ref(), &env)?)
            }
            Command::Verify(args) if conditions.is_ready() => {
                Some(Services::load(&conf, &args.service, (&args.admin, &args.grant), args.state.state_dir.as_ref(), &env)?)
            }
            Command::Rollback(args) if conditions.is_ready() => {
                Some(Services::load(&conf, &args.service, (&args.admin, &args.grant), args.state.state_dir.as_ref(), &env)?)
            }
            _ => None,
        };
        let images = match &cli.command {
            Command::Scan(args) => Images::load(&conf, &args.images, &args.admin, Duration::from_secs(30), &env)?,
            Command::Status(args) => Images::load(&conf, &args.images, &args.admin, Duration::from_secs(30), &env)?,
            Command::Migrate(args) => Images::load(&conf, &args.images, &args.admin, Duration::from_secs(args.service.timeout), &env)?,
            Command::Verify(args) => Images::load(&conf, &args.images, &args.admin, Duration::from_secs(args.service.timeout), &env)?,
            Command::Rollback(args) => Images::load(&conf, &args.images, &args.admin, Duration::from_secs(args.service.timeout), &env)?,
            _ => None,
        };
        let nova = match cli.command.nova().filter(|n| n.nova) {
            Some(n) => {
                let cwd = std::env::current_dir().map_err(|e| Error::config_value("--nova-config-file", format!("the working directory: {e}")))?;
                Some(Nova { conf: crate::nova::NovaConf::load(&n.nova_config_file, &cwd)?, hosts: n.nova_host.clone(), cwd })
            }
            None => None,
        };
        Ok(Settings { conf, conditions, database, scope, owner, services, images, nova })
    }
}

/// `--secret-owner`, else `KEYMIGRATE_SECRET_OWNER` (what a cron job's environment file can
/// set once), else the default: the row's own project.
fn secret_owner(given: Option<SecretOwner>, env: &[(String, String)]) -> Result<SecretOwner> {
    if let Some(owner) = given {
        return Ok(owner);
    }
    match env.iter().rfind(|(k, _)| k == "KEYMIGRATE_SECRET_OWNER") {
        None => Ok(SecretOwner::default()),
        Some((_, v)) => <SecretOwner as clap::ValueEnum>::from_str(v.trim(), true)
            .map_err(|_| Error::config_value("KEYMIGRATE_SECRET_OWNER", format!("is '{v}'; expected project or service"))),
    }
}

/// `[database] connection`, translated from SQLAlchemy's URL form, for a backend this build has.
fn database_url(conf: &Conf) -> Result<DbUrl> {
    let Some(value) = conf.get(&conf::DB_CONNECTION)? else {
        return Err(Error::config_value("[database] connection", "is not set"));
    };
    if value.value.is_empty() {
        return Err(Error::config_value("[database] connection", format!("is empty ({})", value.origin)));
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let url = db::url::translate(value.value.expose(), &cwd)
        .map_err(|e| Error::config_value("[database] connection", format!("{e} ({})", value.origin)))?;
    for key in &url.ignored {
        log::debug!("[database] connection: ignoring SQLAlchemy-only query option '{key}'");
    }
    // A backend this build lacks is refused here, before any command does anything.
    db::require_built_in(&url)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(text: &str) -> Result<CatalogLookup> {
        catalog_lookup(&Conf::from_text("cinder.conf", text)?)
    }

    #[test]
    fn glance_in_the_catalog_is_looked_up_in_the_barbican_region() {
        let l = lookup("").expect("defaults");
        assert_eq!((l.service_type.as_str(), l.interface.as_str(), l.region), ("image", "public", None));
        let l = lookup("[DEFAULT]\nglance_catalog_info = image:glance:internalURL\n[barbican]\nbarbican_region_name = R1\n").expect("R1");
        assert_eq!((l.interface.as_str(), l.region), ("internal", Some(("R1".to_string(), "[barbican] barbican_region_name"))));
        let l = lookup("[glance]\nregion_name = R2\n").expect("Cinder's own");
        assert_eq!(l.region, Some(("R2".to_string(), "[glance] region_name")));
        let l = lookup("[glance]\nregion_name = R2\n[barbican]\nbarbican_region_name = R2\n").expect("the same");
        assert_eq!(l.region.map(|r| r.0).as_deref(), Some("R2"));

        let e = lookup("[glance]\nregion_name = R2\n[barbican]\nbarbican_region_name = R1\n").expect_err("two regions");
        assert_eq!(e.exit_code(), crate::error::exit::USAGE);
        assert!(e.to_string().starts_with("[glance] region_name: is R2, but [barbican] barbican_region_name is R1"), "{e}");
        let e = lookup("[DEFAULT]\nglance_catalog_info = image:publicURL\n").expect_err("malformed");
        assert_eq!(e.exit_code(), crate::error::exit::USAGE);
        let shown = e.to_string();
        assert!(shown.starts_with("[DEFAULT] glance_catalog_info: has 2 field(s)") && shown.contains("cinder.conf line 2"), "{shown}");
    }
}
