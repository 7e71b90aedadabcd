//! The command line: every flag, the rules its values follow (stated to clap, so a bad value is
//! refused before anything runs), its `--help` text, the exit-code table, and how a
//! command-line error reads. Options come in groups declared once and flattened into the
//! commands that use them. Nothing here reads files or the environment; `settings` adds what
//! needs cinder.conf.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cinder::SecretOwner;
use crate::conf::ConfigArg;
use crate::glance::SharedImages;
use crate::output::Format;

pub const EXIT_CODES: &str = "\
Exit codes (the same for every command):
  0    nothing is left to migrate in the scope (or the command succeeded)
  1    rows still use the all-zeros key ID: run `keymigrate migrate` again;
       also: another keymigrate run holds this scope's lock
  2    an operator must act: rows remain but fixed_key is gone, the backend is still
       the ConfKeyManager or not Barbican, a row has no owner, the database or Barbican
       cannot be used, or too many units failed
  127  bad command line or configuration; nothing was written
  255  a bug in keymigrate";

/// `--version`: one line, with the commit and the database backends built in (see build.rs), e.g.
/// `keymigrate 0.1.0 (commit 0123456789ab; backends sqlite, mysql, postgres)`.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KEYMIGRATE_COMMIT"), "; backends ", env!("KEYMIGRATE_BACKENDS"), ")");

/// Move Cinder volumes off the ConfKeyManager's fixed_key and into Barbican.
///
/// Every volume, snapshot, backup and glance-metadata row that still uses the all-zeros key ID
/// `00000000-0000-0000-0000-000000000000` gets a Barbican secret holding exactly the fixed
/// key's bytes, in the row's own project (or, with --secret-owner service, in Cinder's service
/// project, readable by the row's owner), and is then rewritten to the new key ID. keymigrate
/// reads cinder.conf the way Cinder does ([key_manager], [database], [keystone_authtoken],
/// [barbican]).
#[derive(Debug, Parser)]
#[command(name = "keymigrate", version = VERSION, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,

    #[command(subcommand)]
    pub command: Command,
}

/// Configuration files and logging. Accepted before the subcommand and after it: the group is
/// flattened into the top level and into every command that reads cinder.conf (not clap's
/// `global`, which keeps only the values given after the subcommand when both places are used).
/// [`Cli::parse_args`] merges the two places, so commands read only `Cli::global`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Configuration and logging")]
pub struct GlobalOpts {
    /// Read this configuration file (repeatable; a later file wins). Without --config-file or
    /// --config-dir, keymigrate looks for cinder.conf and keymigrate.conf in ~/.cinder/, ~/,
    /// /etc/cinder/ and /etc/, then in cinder.conf.d/, like cinder-volume.
    #[arg(long = "config-file", value_name = "PATH")]
    config_file: Vec<PathBuf>,

    /// Read every *.conf file in this directory, in sorted order (repeatable).
    #[arg(long = "config-dir", value_name = "DIR")]
    config_dir: Vec<PathBuf>,

    /// Log debug messages too. RUST_LOG, when set, takes precedence.
    #[arg(long, short = 'd')]
    pub debug: bool,

    /// Append log lines to this file instead of standard error.
    #[arg(long = "log-file", value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Seconds the database may take to accept a connection or answer one query before
    /// keymigrate stops with exit 2, 1 to 86400 [default: 120].
    #[arg(long = "db-timeout", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT), allow_negative_numbers = true)]
    pub db_timeout: Option<u64>,

    /// `--config-file` and `--config-dir` from both places, in the order given: oslo.config
    /// reads each when it meets it, so the order decides which value wins.
    #[arg(skip)]
    pub config: Vec<ConfigArg>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report, without changing anything, every row on the all-zeros key ID in the scope and
    /// what `migrate` will do with it.
    Scan(ScanArgs),
    /// Migrate every row in the scope: store the fixed key in Barbican once per volume (shared
    /// by its snapshots and glance metadata) or per backup, verify it, and rewrite the rows.
    /// Safe to interrupt and to run again; run it until it exits 0.
    Migrate(MigrateArgs),
    /// Report how many rows are left, for the scope and for the whole database.
    Status(StatusArgs),
    /// Check every row keymigrate migrated: its secret holds exactly the fixed key and its
    /// owner can read it. Run this before removing fixed_key; exit 0 when every row holds.
    Verify(VerifyArgs),
    /// Put the all-zeros key ID back on rows keymigrate migrated, then delete those secrets.
    /// Only while fixed_key is configured, and only for secrets that still hold it.
    Rollback(RollbackArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout, e.g.
    /// `keymigrate completions bash > /etc/bash_completion.d/keymigrate`.
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the keymigrate(1) man page (roff) on stdout, e.g.
    /// `keymigrate man > /usr/local/share/man/man1/keymigrate.1`.
    Man,
}

/// Whose rows: Cinder's host strings (`host`, `host@backend`, `host@backend#pool`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Scope")]
pub struct ScopeOpts {
    /// Only volumes on this host, backend (`host@backend`) or pool (`host@backend#pool`),
    /// matched like Cinder but case-sensitively and with `_` and `%` taken literally
    /// (repeatable). Backups of the host part are included.
    #[arg(long, value_name = "HOST", conflicts_with = "all_hosts", value_parser = non_empty)]
    pub host: Vec<String>,

    /// Only volumes of this cluster (`cluster@backend`), matched on `cluster_name` by the same
    /// rule (repeatable).
    #[arg(long, value_name = "CLUSTER", conflicts_with = "all_hosts", value_parser = non_empty)]
    pub cluster: Vec<String>,

    /// Backups of this cinder-backup host instead of the host part of --host (repeatable).
    #[arg(long = "backup-host", value_name = "HOST", conflicts_with = "all_hosts", value_parser = non_empty)]
    pub backup_host: Vec<String>,

    /// Every row in the database, including volumes whose host is NULL.
    #[arg(long = "all-hosts")]
    pub all_hosts: bool,
}

/// Output of the commands that list rows in columns: scan, status, verify and rollback.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Output")]
pub struct ListingOpts {
    /// Output format: a table (the default), the bare cells (value), or JSON.
    #[arg(long, short = 'f', value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Show only this column (repeatable), by its header, for table and value output.
    #[arg(long, short = 'c', value_name = "COLUMN")]
    pub column: Vec<String>,
}

/// Output of `migrate`: one summary line, or a JSON report. It has no columns to choose.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Output")]
pub struct SummaryOpts {
    /// Output format: json for a JSON report; without it (or with table or value), one summary
    /// line.
    #[arg(long, short = 'f', value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
}

/// How Keystone and Barbican are reached: only for the commands that talk to them.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Keystone and Barbican")]
pub struct ServiceOpts {
    /// Barbican's URL (http:// or https://), instead of [barbican] barbican_endpoint or
    /// Keystone's catalog.
    #[arg(long = "barbican-endpoint", value_name = "URL", value_parser = http_url)]
    pub barbican_endpoint: Option<String>,

    /// Seconds before a Keystone or Barbican request times out, 1 to 86400.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT), allow_negative_numbers = true)]
    pub timeout: u64,

    /// Retries of a request that failed on a connection error, a timeout or a 5xx answer, with
    /// exponential backoff and jitter.
    #[arg(long, value_name = "N", default_value_t = 6, allow_negative_numbers = true)]
    pub retries: u32,
}

/// Glance images that carry the all-zeros key ID (`cinder_encryption_key_id`): they belong to
/// no host, so they are a scope of their own, alone or next to a database scope.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Glance images")]
pub struct ImagesOpts {
    /// Also the Glance images whose cinder_encryption_key_id is the all-zeros ID, of every
    /// project, listed with the identity of --os-cloud (or [keystone_authtoken]), which must be
    /// an admin. Without a database scope flag, only the images.
    #[arg(long)]
    pub images: bool,

    /// Glance's URL (http:// or https://), instead of [DEFAULT] glance_api_servers or Keystone's
    /// catalog ([DEFAULT] glance_catalog_info, in the region of [barbican] barbican_region_name).
    #[arg(long = "glance-endpoint", value_name = "URL", value_parser = http_url, requires = "images")]
    pub glance_endpoint: Option<String>,

    /// Only the images owned by this project (ID; repeatable): one tenant's images at a time.
    /// Default: every project's.
    #[arg(long = "image-owner", value_name = "PROJECT_ID", value_parser = non_empty, requires = "images")]
    pub image_owner: Vec<String>,

    /// Glance's configuration file, read only to check that its [key_manager] backend is
    /// Barbican (otherwise deleting a migrated image cannot delete its secret). Not found or
    /// unreadable: a warning says what to check.
    #[arg(long = "glance-config", value_name = "PATH", default_value = "/etc/glance/glance-api.conf", requires = "images")]
    pub glance_config: PathBuf,

    /// Images shared with other projects (visibility shared, with members). report: listed
    /// with the reason, never changed. acl: migrated, and the secret's read ACL names every
    /// user who holds a role in a member project at the time of the run (users who join a
    /// member project later cannot read the key).
    #[arg(long = "shared-images", value_enum, value_name = "report|acl", hide_possible_values = true, default_value_t = SharedImages::Report, requires = "images")]
    pub shared_images: SharedImages,
}

/// Nova's encrypted ephemeral disks (`--nova`): where Nova's configuration is, and which
/// compute hosts.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Nova instances")]
pub struct NovaOpts {
    /// Also Nova's instances whose ephemeral_key_uuid is the all-zeros ID (encrypted LVM
    /// ephemeral disks made under Nova's ConfKeyManager), in every cell the API database maps.
    /// Without a database scope flag, only the instances.
    #[arg(long)]
    pub nova: bool,

    /// nova.conf (repeatable, read in order like nova's --config-file): its [api_database]
    /// connection leads to the cells, its [key_manager] says which key those disks need.
    #[arg(long = "nova-config-file", value_name = "PATH", default_value = "/etc/nova/nova.conf", requires = "nova")]
    pub nova_config_file: Vec<PathBuf>,

    /// Only the instances on this compute host (repeatable). Default: every host.
    #[arg(long = "nova-host", value_name = "HOST", value_parser = non_empty, requires = "nova")]
    pub nova_host: Vec<String>,
}

/// Whose project a migrated key's secret belongs to: `scan` and `status` report for it (which
/// rows are blocked depends on it), `migrate` acts on it, `verify` checks by it.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Secret ownership")]
pub struct OwnerOpts {
    /// Whose project each new secret belongs to. project: the row's own project, as Cinder
    /// creates keys under Barbican, so every member of the project can read it (needs an
    /// identity that may grant itself a role there, see --os-cloud). service: Cinder's service
    /// project with a read ACL for the row's user_id only, as Cinder's own migrator does.
    /// Default: KEYMIGRATE_SECRET_OWNER, else project.
    #[arg(long = "secret-owner", value_enum, value_name = "OWNER")]
    pub secret_owner: Option<SecretOwner>,
}

/// The identity that acts in the rows' own projects (grants itself a role there, gets a token
/// scoped to each): `migrate`, `verify` and `rollback`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Secret ownership")]
pub struct AdminOpts {
    /// Act in the rows' projects as this clouds.yaml cloud (searched in OS_CLIENT_CONFIG_FILE,
    /// ./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml; OS_CLOUD
    /// when not given). Without it: the [keystone_authtoken] identity.
    #[arg(long = "os-cloud", value_name = "NAME", value_parser = non_empty)]
    pub os_cloud: Option<String>,
}

/// The role keymigrate grants itself where it must act in a project: the commands that act there.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Secret ownership")]
pub struct GrantOpts {
    /// The role granted to the identity in a project where it holds none that lets it create
    /// and read secrets (admin, member or creator, directly or implied), and revoked when that
    /// project is done.
    #[arg(long = "grant-role", value_name = "ROLE", default_value = "member", value_parser = non_empty)]
    pub grant_role: String,
}

/// Where the scope's lock and the journal of in-flight work live: `migrate` and `rollback`
/// share the lock, so the two never run on one scope at once.
#[derive(Debug, Clone, Args)]
pub struct StateOpts {
    /// Where the scope's lock and the journal of in-flight work live (created 0700; shared by
    /// migrate and rollback). Default: [DEFAULT] state_path/keymigrate, i.e.
    /// /var/lib/cinder/keymigrate.
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct ScanArgs {
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub images: ImagesOpts,
    #[command(flatten)]
    pub nova: NovaOpts,
    #[command(flatten)]
    pub admin: AdminOpts,
    #[command(flatten)]
    pub owner: OwnerOpts,
    #[command(flatten)]
    pub output: ListingOpts,
    #[command(flatten)]
    pub global: GlobalOpts,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
#[command(mut_arg("format", |a| a.help(
    "Output format: table or value list the counts per table, json the whole report. Without \
     it, one summary line"
)))]
pub struct StatusArgs {
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub images: ImagesOpts,
    #[command(flatten)]
    pub nova: NovaOpts,
    #[command(flatten)]
    pub admin: AdminOpts,
    #[command(flatten)]
    pub owner: OwnerOpts,
    #[command(flatten)]
    pub output: ListingOpts,
    #[command(flatten)]
    pub global: GlobalOpts,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct MigrateArgs {
    /// Stop after this many units (volumes, backups, ...) and exit 1 if more remain, like
    /// `nova-manage db online_data_migrations --max-count` (at least 1). Default: run until
    /// nothing is left.
    #[arg(long = "max-count", alias = "max_count", value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub max_count: Option<u64>,

    /// Abort, exit 2, once more than this many units have failed (Cinder stops after 3; 0 stops
    /// at the first failure).
    #[arg(long = "max-errors", value_name = "N", default_value_t = 3, allow_negative_numbers = true)]
    pub max_errors: u64,

    /// Walk the same plan and log what would be migrated; write nothing, contact no service.
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// Units whose Barbican steps (store, grant, read back) run at once, 1 to 64. Database
    /// writes stay one short transaction at a time. Barbican, not keymigrate, is usually the
    /// limit.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), allow_negative_numbers = true)]
    pub workers: u16,

    /// Store at most this many secrets per second (at least 0.001), to spare a busy Barbican.
    /// Default: no limit.
    #[arg(long = "max-rate", value_name = "KEYS_PER_SECOND", value_parser = keys_per_second, allow_negative_numbers = true)]
    pub max_rate: Option<f64>,

    /// With --secret-owner project: also move rows whose secret an earlier service-mode run
    /// of keymigrate created into a new secret in the row's project (compare-and-swap from the
    /// old key ID; the old secret is deleted once no row uses it).
    #[arg(long)]
    pub rehome: bool,

    #[command(flatten)]
    pub images: ImagesOpts,
    #[command(flatten)]
    pub nova: NovaOpts,

    #[command(flatten)]
    pub owner: OwnerOpts,
    #[command(flatten)]
    pub admin: AdminOpts,
    #[command(flatten)]
    pub grant: GrantOpts,
    #[command(flatten)]
    pub state: StateOpts,
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub output: SummaryOpts,
    #[command(flatten)]
    pub service: ServiceOpts,
    #[command(flatten)]
    pub global: GlobalOpts,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub state: StateOpts,
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub images: ImagesOpts,
    #[command(flatten)]
    pub nova: NovaOpts,
    #[command(flatten)]
    pub owner: OwnerOpts,
    #[command(flatten)]
    pub admin: AdminOpts,
    #[command(flatten)]
    pub grant: GrantOpts,
    #[command(flatten)]
    pub output: ListingOpts,
    #[command(flatten)]
    pub service: ServiceOpts,
    #[command(flatten)]
    pub global: GlobalOpts,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct RollbackArgs {
    /// List what would be rolled back; write nothing, delete nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    #[command(flatten)]
    pub admin: AdminOpts,
    #[command(flatten)]
    pub grant: GrantOpts,
    #[command(flatten)]
    pub state: StateOpts,
    #[command(flatten)]
    pub images: ImagesOpts,
    #[command(flatten)]
    pub nova: NovaOpts,
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub output: ListingOpts,
    #[command(flatten)]
    pub service: ServiceOpts,
    #[command(flatten)]
    pub global: GlobalOpts,
}

/// The longest `--timeout`: a request deadline is the current instant plus the timeout, which
/// must not overflow; a day is far past any useful wait.
const MAX_TIMEOUT: u64 = 86_400;

/// The slowest `--max-rate`: secret creations are spaced `1 / rate` seconds apart, which must
/// stay a duration the clock can add (about 17 minutes here).
const MIN_RATE: f64 = 0.001;

/// A host, cluster or backup host: an empty one would match nothing (or, as a prefix, too much).
fn non_empty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(value.to_string())
}

/// `--max-count`: a whole number of units, at least 1 (0 would stop before the first, as
/// nova-manage also refuses).
fn at_least_one(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number, at least 1".into()),
    }
}

/// `--max-rate`: a positive, finite number of keys per second.
fn keys_per_second(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= MIN_RATE => Ok(rate),
        _ => Err(format!("must be a positive number of keys per second, at least {MIN_RATE}")),
    }
}

/// `--barbican-endpoint`: the same rule as `[barbican] barbican_endpoint`.
fn http_url(value: &str) -> Result<String, String> {
    if crate::http::is_http_url(value) {
        Ok(value.to_string())
    } else {
        Err("must be an http:// or https:// URL".into())
    }
}

impl Cli {
    /// Parses the command line, merging the configuration and logging options given before
    /// the subcommand with those given after it.
    pub fn parse_args<I, T>(argv: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().try_get_matches_from(argv)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let mut config = config_args_in_order(&matches);
        if let Some((_, after)) = matches.subcommand() {
            config.extend(config_args_in_order(after));
        }
        if let Some(after) = cli.command.global() {
            cli.global.debug |= after.debug;
            // Like any repeated option, the last one given wins.
            if after.log_file.is_some() {
                cli.global.log_file.clone_from(&after.log_file);
            }
            if after.db_timeout.is_some() {
                cli.global.db_timeout = after.db_timeout;
            }
        }
        cli.global.config = config;
        Ok(cli)
    }
}

impl Command {
    /// `--images`, for the commands that take it.
    pub fn images(&self) -> Option<&ImagesOpts> {
        match self {
            Command::Scan(a) => Some(&a.images),
            Command::Status(a) => Some(&a.images),
            Command::Migrate(a) => Some(&a.images),
            Command::Verify(a) => Some(&a.images),
            Command::Rollback(a) => Some(&a.images),
            _ => None,
        }
    }

    /// `--nova`, for the commands that take it.
    pub fn nova(&self) -> Option<&NovaOpts> {
        match self {
            Command::Scan(a) => Some(&a.nova),
            Command::Status(a) => Some(&a.nova),
            Command::Migrate(a) => Some(&a.nova),
            Command::Verify(a) => Some(&a.nova),
            Command::Rollback(a) => Some(&a.nova),
            _ => None,
        }
    }

    /// `--secret-owner`, for the commands that take it.
    pub fn owner(&self) -> Option<&OwnerOpts> {
        match self {
            Command::Scan(a) => Some(&a.owner),
            Command::Status(a) => Some(&a.owner),
            Command::Migrate(a) => Some(&a.owner),
            Command::Verify(a) => Some(&a.owner),
            _ => None,
        }
    }

    /// The scope flags, for commands that read Cinder's database.
    pub fn scope(&self) -> Option<&ScopeOpts> {
        match self {
            Command::Scan(a) => Some(&a.scope),
            Command::Status(a) => Some(&a.scope),
            Command::Migrate(a) => Some(&a.scope),
            Command::Verify(a) => Some(&a.scope),
            Command::Rollback(a) => Some(&a.scope),
            Command::Completions { .. } | Command::Man => None,
        }
    }

    /// The configuration and logging options given after the subcommand.
    fn global(&self) -> Option<&GlobalOpts> {
        match self {
            Command::Scan(a) => Some(&a.global),
            Command::Status(a) => Some(&a.global),
            Command::Migrate(a) => Some(&a.global),
            Command::Verify(a) => Some(&a.global),
            Command::Rollback(a) => Some(&a.global),
            Command::Completions { .. } | Command::Man => None,
        }
    }
}

/// Writes the completion script or man page generated from these same definitions.
pub fn generate(command: &Command, out: &mut dyn std::io::Write) -> std::io::Result<bool> {
    use clap::CommandFactory;
    match command {
        Command::Completions { shell } => {
            // Generated into memory: clap_complete panics on a write error such as a closed pipe.
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "keymigrate", &mut buf);
            out.write_all(&buf)?;
            Ok(true)
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command().after_help(EXIT_CODES)).render(&mut buf)?;
            out.write_all(&buf)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A command-line error as one line, like every other error: clap's message and its hints
/// (possible values, a similar option) without the usage block, then which help to read.
pub fn error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let mut message = String::new();
    let mut help = "--help".to_string();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(usage) = line.strip_prefix("Usage: ") {
            // `keymigrate migrate [OPTIONS]`: the command's words, before any option or placeholder.
            let words: Vec<&str> = usage.split(' ').take_while(|w| !w.starts_with(['[', '<', '-'])).collect();
            if !words.is_empty() {
                help = format!("`{} --help`", words.join(" "));
            }
        } else if !line.starts_with("For more information") {
            let line = line.strip_prefix("error: ").unwrap_or(line);
            if !message.is_empty() {
                message.push_str(if line.starts_with('[') { " " } else { "; " });
            }
            message.push_str(line);
        }
    }
    format!("{message} (see {help})")
}

/// `--config-file` and `--config-dir` of one command level (the top level or the subcommand),
/// in the order given, from the positions clap recorded for their values.
fn config_args_in_order(matches: &clap::ArgMatches) -> Vec<ConfigArg> {
    let mut found: Vec<(usize, ConfigArg)> = Vec::new();
    for (id, make) in [("config_file", ConfigArg::File as fn(PathBuf) -> ConfigArg), ("config_dir", ConfigArg::Dir)] {
        // `try_`: completions and man have no such option (and asking for its indices would
        // panic in a debug build).
        let Ok(Some(values)) = matches.try_get_many::<PathBuf>(id) else { continue };
        let indices = matches.indices_of(id).into_iter().flatten();
        found.extend(indices.zip(values).map(|(at, path)| (at, make(path.clone()))));
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, arg)| arg).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Cli {
        Cli::parse_args(argv).expect("parse")
    }

    fn usage_error(argv: &[&str]) -> String {
        match Cli::parse_args(argv) {
            Ok(cli) => panic!("{argv:?} was accepted: {cli:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_before_and_after_the_subcommand() {
        let a = parse(&["keymigrate", "--debug", "--config-file", "a", "scan", "--config-file=b"]);
        assert!(a.global.debug);
        assert_eq!(a.global.config, vec![ConfigArg::File("a".into()), ConfigArg::File("b".into())]);
        let b = parse(&["keymigrate", "status", "-d", "--log-file", "l"]);
        assert!(b.global.debug);
        assert_eq!(b.global.log_file, Some(PathBuf::from("l")));
        let c = parse(&["keymigrate", "--log-file", "first", "verify", "--log-file", "second"]);
        assert_eq!(c.global.log_file, Some(PathBuf::from("second")));
        assert!(!c.global.debug);
    }

    #[test]
    fn all_hosts_conflicts_with_host() {
        assert!(Cli::parse_args(["keymigrate", "scan", "--all-hosts", "--host", "h"]).is_err());
    }

    #[test]
    fn config_order_is_kept() {
        let a = parse(&["keymigrate", "--config-dir", "d1", "scan", "--config-file=f1", "--config-dir=d2"]);
        assert_eq!(
            a.global.config,
            vec![ConfigArg::Dir("d1".into()), ConfigArg::File("f1".into()), ConfigArg::Dir("d2".into())]
        );
        let argv = [
            "keymigrate", "--config-file", "f1", "--config-dir", "d1", "--config-file=f2", "migrate", "--host", "h",
            "--config-dir", "d2", "--config-file", "f3", "--config-dir=d3",
        ];
        let names: Vec<String> = parse(&argv)
            .global
            .config
            .iter()
            .map(|c| match c {
                ConfigArg::File(p) | ConfigArg::Dir(p) => p.display().to_string(),
            })
            .collect();
        assert_eq!(names, ["f1", "d1", "f2", "d2", "f3", "d3"]);
        assert!(parse(&["keymigrate", "man"]).global.config.is_empty());
    }

    #[test]
    fn each_command_takes_only_the_options_it_uses() {
        // Columns only where there are columns.
        for cmd in ["scan", "status", "verify", "rollback"] {
            parse(&["keymigrate", cmd, "-c", "ID", "-f", "value"]);
        }
        assert!(usage_error(&["keymigrate", "migrate", "-c", "ID"]).contains("'-c'"));
        parse(&["keymigrate", "migrate", "-f", "json"]);
        // Keystone and Barbican only where a command talks to them.
        for cmd in ["scan", "status"] {
            for flag in ["--timeout=5", "--retries=1", "--barbican-endpoint=http://b", "--state-dir=s", "--dry-run"] {
                usage_error(&["keymigrate", cmd, flag]);
            }
        }
        // verify journals the role grants it makes to look into the rows' projects.
        parse(&["keymigrate", "verify", "--state-dir=s"]);
        usage_error(&["keymigrate", "verify", "--dry-run"]);
        parse(&["keymigrate", "rollback", "--timeout=5", "--state-dir=s", "--dry-run"]);
        // Completions and man read no configuration.
        usage_error(&["keymigrate", "man", "--config-file", "c"]);
        usage_error(&["keymigrate", "completions", "bash", "--debug"]);
        usage_error(&["keymigrate", "man", "--host", "h"]);
    }

    #[test]
    fn errors_are_one_line_with_their_hints_and_the_help_to_read() {
        let line = |argv: &[&str]| match Cli::parse_args(argv) {
            Ok(cli) => panic!("{argv:?} was accepted: {cli:?}"),
            Err(e) => error_line(&e),
        };
        assert_eq!(
            line(&["keymigrate", "scan", "--hots", "h"]),
            "unexpected argument '--hots' found; tip: a similar argument exists: '--host' (see `keymigrate scan --help`)"
        );
        assert_eq!(
            line(&["keymigrate", "completions", "tcsh"]),
            "invalid value 'tcsh' for '<SHELL>' [possible values: bash, elvish, fish, powershell, zsh]; \
             tip: a similar value exists: 'zsh' (see --help)"
        );
        assert_eq!(
            line(&["keymigrate", "migrate", "--workers", "0"]),
            "invalid value '0' for '--workers <N>': 0 is not in 1..=64 (see --help)"
        );
        assert_eq!(line(&["keymigrate", "migrate", "-c", "x"]), "unexpected argument '-c' found (see `keymigrate migrate --help`)");
    }

    #[test]
    fn ranges_and_rules_are_checked_while_parsing() {
        let cases: [(&[&str], &str); 12] = [
            (&["migrate", "--timeout", "0"], "--timeout"),
            (&["verify", "--timeout", "86401"], "--timeout"),
            (&["migrate", "--workers", "0"], "--workers"),
            (&["migrate", "--workers", "65"], "--workers"),
            (&["migrate", "--max-rate", "0"], "--max-rate"),
            (&["migrate", "--max-rate", "-2"], "--max-rate"),
            (&["migrate", "--max-rate", "NaN"], "--max-rate"),
            (&["migrate", "--max-count", "0"], "--max-count"),
            (&["scan", "--host", ""], "--host"),
            (&["status", "--cluster", ""], "--cluster"),
            (&["rollback", "--backup-host", ""], "--backup-host"),
            (&["migrate", "--barbican-endpoint", "barbican:9311"], "--barbican-endpoint"),
        ];
        for (args, option) in cases {
            let argv: Vec<&str> = std::iter::once("keymigrate").chain(args.iter().copied()).collect();
            let message = usage_error(&argv);
            assert!(message.contains(option), "{args:?}: {message}");
        }
        let ok = parse(&["keymigrate", "migrate", "--timeout", "1", "--workers", "64", "--max-rate", "0.5", "--max-count", "1"]);
        let Command::Migrate(m) = ok.command else { panic!("not migrate") };
        assert_eq!((m.service.timeout, m.workers, m.max_rate, m.max_count), (1, 64, Some(0.5), Some(1)));
    }
}
