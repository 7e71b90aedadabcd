//! The command line: every flag, its `--help` text, and the exit-code table. Nothing here reads
//! files or the environment; `settings` turns these into validated settings.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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

/// Move Cinder volumes off the ConfKeyManager's fixed_key and into Barbican.
///
/// Every volume, snapshot, backup and glance-metadata row that still uses the all-zeros key ID
/// `00000000-0000-0000-0000-000000000000` gets a Barbican secret holding exactly the fixed
/// key's bytes, readable by the row's owner, and is then rewritten to the new key ID. keymigrate
/// reads cinder.conf the way Cinder does ([key_manager], [database], [keystone_authtoken],
/// [barbican]).
#[derive(Debug, Parser)]
#[command(name = "keymigrate", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Read this configuration file (repeatable; a later file wins). Without --config-file or
    /// --config-dir, keymigrate looks for cinder.conf and keymigrate.conf in ~/.cinder/, ~/,
    /// /etc/cinder/ and /etc/, then in cinder.conf.d/, like cinder-volume.
    #[arg(long = "config-file", value_name = "PATH", global = true)]
    pub config_file: Vec<PathBuf>,

    /// Read every *.conf file in this directory, in sorted order (repeatable).
    #[arg(long = "config-dir", value_name = "DIR", global = true)]
    pub config_dir: Vec<PathBuf>,

    /// Log debug messages too. RUST_LOG, when set, takes precedence.
    #[arg(long, short = 'd', global = true)]
    pub debug: bool,

    /// Append log lines to this file instead of standard error.
    #[arg(long = "log-file", value_name = "PATH", global = true)]
    pub log_file: Option<PathBuf>,
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
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the keymigrate(1) man page (roff) on stdout, e.g.
    /// `keymigrate man > /usr/local/share/man/man1/keymigrate.1`.
    Man,
}

/// Whose rows: Cinder's host strings (`host`, `host@backend`, `host@backend#pool`).
#[derive(Debug, Clone, Default, Args)]
pub struct ScopeOpts {
    /// Only volumes on this host, backend (`host@backend`) or pool (`host@backend#pool`),
    /// matched like Cinder but case-sensitively and with `_` and `%` taken literally
    /// (repeatable). Backups of the host part are included.
    #[arg(long, value_name = "HOST", conflicts_with = "all_hosts")]
    pub host: Vec<String>,

    /// Only volumes of this cluster (`cluster@backend`), matched on `cluster_name` by the same
    /// rule (repeatable).
    #[arg(long, value_name = "CLUSTER", conflicts_with = "all_hosts")]
    pub cluster: Vec<String>,

    /// Backups of this cinder-backup host instead of the host part of --host (repeatable).
    #[arg(long = "backup-host", value_name = "HOST", conflicts_with = "all_hosts")]
    pub backup_host: Vec<String>,

    /// Every row in the database, including volumes whose host is NULL.
    #[arg(long = "all-hosts")]
    pub all_hosts: bool,
}

/// How results are printed on standard output.
#[derive(Debug, Clone, Args)]
pub struct OutputOpts {
    /// Output format (scan: table by default; status: one line by default).
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<Format>,

    /// Show only this column (repeatable), by its header.
    #[arg(long, short = 'c', value_name = "COLUMN")]
    pub column: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct ScanArgs {
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub output: OutputOpts,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct StatusArgs {
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub output: OutputOpts,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub output: OutputOpts,

    /// Stop after this many units (volumes, backups, ...) and exit 1 if more remain, like
    /// `nova-manage db online_data_migrations --max-count`. Default: run until nothing is left.
    #[arg(long = "max-count", alias = "max_count", value_name = "N")]
    pub max_count: Option<u64>,

    /// Abort, exit 2, once more than this many units have failed (Cinder stops after 3).
    #[arg(long = "max-errors", value_name = "N", default_value_t = 3)]
    pub max_errors: u64,

    /// Walk the same plan and log what would be migrated; write nothing, contact no service.
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// Units whose Barbican steps (store, grant, read back) run at once. Database writes stay
    /// one short transaction at a time. Barbican, not keymigrate, is usually the limit.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,

    /// Store at most this many secrets per second, to spare a busy Barbican. Default: no limit.
    #[arg(long = "max-rate", value_name = "KEYS_PER_SECOND")]
    pub max_rate: Option<f64>,

    /// Where the lock and the journal of in-flight work live (created 0700).
    /// Default: [DEFAULT] state_path/keymigrate, i.e. /var/lib/cinder/keymigrate.
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(flatten)]
    pub service: ServiceOpts,
}

/// How Keystone and Barbican are reached.
#[derive(Debug, Clone, Args)]
pub struct ServiceOpts {
    /// Barbican's URL, instead of [barbican] barbican_endpoint or Keystone's catalog.
    #[arg(long = "barbican-endpoint", value_name = "URL")]
    pub barbican_endpoint: Option<String>,

    /// Seconds before a Keystone or Barbican request times out.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,

    /// Retries of a request that failed on a connection error, a timeout or a 5xx answer, with
    /// exponential backoff and jitter.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub retries: u32,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub output: OutputOpts,
    #[command(flatten)]
    pub service: ServiceOpts,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub scope: ScopeOpts,
    #[command(flatten)]
    pub output: OutputOpts,
    #[command(flatten)]
    pub service: ServiceOpts,

    /// List what would be rolled back; write nothing, delete nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// Where the scope's lock lives (shared with `migrate`, so the two never run at once).
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl Command {
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

/// `--config-file` and `--config-dir` in the order given: oslo.config parses each when it meets
/// it, so the order decides which value wins. clap keeps each flag's values but not their
/// interleaving, so recover it from the arguments clap already validated.
pub fn config_args_in_order(argv: &[OsString]) -> Vec<crate::conf::ConfigArg> {
    use crate::conf::ConfigArg;
    let mut out = Vec::new();
    let mut iter = argv.iter().skip(1);
    while let Some(arg) = iter.next() {
        let Some(s) = arg.to_str() else { continue };
        if s == "--" {
            break;
        }
        for (flag, make) in [
            ("--config-file", ConfigArg::File as fn(PathBuf) -> ConfigArg),
            ("--config-dir", ConfigArg::Dir as fn(PathBuf) -> ConfigArg),
        ] {
            if s == flag {
                if let Some(v) = iter.next() {
                    out.push(make(PathBuf::from(v)));
                }
            } else if let Some(v) = s.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                out.push(make(PathBuf::from(v)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::ConfigArg;

    #[test]
    fn global_options_are_accepted_before_and_after_the_subcommand() {
        let argv = ["keymigrate", "--debug", "--config-file", "a", "scan", "--config-file=b"];
        let a = Cli::try_parse_from(argv).expect("parse");
        assert!(a.global.debug);
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        assert_eq!(config_args_in_order(&argv), vec![ConfigArg::File("a".into()), ConfigArg::File("b".into())]);
        let b = Cli::try_parse_from(["keymigrate", "status", "-d", "--log-file", "l"]).expect("parse");
        assert!(b.global.debug);
    }

    #[test]
    fn all_hosts_conflicts_with_host() {
        assert!(Cli::try_parse_from(["keymigrate", "scan", "--all-hosts", "--host", "h"]).is_err());
    }

    #[test]
    fn config_order_is_kept() {
        let argv: Vec<OsString> =
            ["keymigrate", "--config-dir", "d1", "scan", "--config-file=f1", "--config-dir=d2"].iter().map(OsString::from).collect();
        assert_eq!(
            config_args_in_order(&argv),
            vec![ConfigArg::Dir("d1".into()), ConfigArg::File("f1".into()), ConfigArg::Dir("d2".into())]
        );
    }
}
