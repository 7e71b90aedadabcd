//! One validated settings value, built before any command runs, from the command line, the
//! `OS_<GROUP>__<OPT>` environment and cinder.conf. Commands never read files or the
//! environment themselves.

use std::path::PathBuf;
use std::time::Duration;

use crate::barbican::BarbicanSettings;
use crate::cli::{self, Cli, Command, ServiceOpts};
use crate::http::RetryPolicy;
use crate::keystone::KeystoneSettings;
use crate::conditions::Conditions;
use crate::conf::{self, Conf};
use crate::db::{self, DbUrl};
use crate::error::{Error, Result};
use crate::scope::{Scope, ScopeArgs};

pub struct Settings {
    pub conf: Conf,
    pub conditions: Conditions,
    pub database: DbUrl,
    pub scope: Scope,
    /// Keystone, Barbican and the state directory: only for a `migrate` that will write.
    pub services: Option<Services>,
}

pub struct Services {
    pub keystone: KeystoneSettings,
    pub barbican: BarbicanSettings,
    pub state_dir: PathBuf,
    pub retry: RetryPolicy,
}

impl Services {
    fn load(conf: &Conf, args: &ServiceOpts, state_dir: Option<&PathBuf>) -> Result<Services> {
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
        Ok(Services { keystone, barbican, state_dir, retry })
    }
}

impl Settings {
    pub fn load(cli: &Cli, env: impl IntoIterator<Item = (String, String)>) -> Result<Settings> {
        let conf = Conf::load(&cli.global.config, env)?;
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
        let scope = Scope::resolve(&scope_args, &conf)?;
        let services = match &cli.command {
            Command::Migrate(args) if !args.dry_run && conditions.is_ready() => {
                Some(Services::load(&conf, &args.service, args.state.state_dir.as_ref())?)
            }
            Command::Verify(args) if conditions.is_ready() => Some(Services::load(&conf, &args.service, None)?),
            Command::Rollback(args) if conditions.is_ready() => {
                Some(Services::load(&conf, &args.service, args.state.state_dir.as_ref())?)
            }
            _ => None,
        };
        Ok(Settings { conf, conditions, database, scope, services })
    }
}

/// `[database] connection`, translated from SQLAlchemy's URL form.
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
    Ok(url)
}
