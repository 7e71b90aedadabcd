//! keymigrate: move Cinder volumes encrypted with the ConfKeyManager's `fixed_key` into Barbican.
//!
//! `main.rs` only calls [`run`]: parse the command line, start logging, build the [`Settings`]
//! once, dispatch to `cmd::<name>::run`, and turn the result into an exit code. The logic lives
//! in this library so tests can call it directly.
//!
//! The layout, bottom up (each module imports only modules below it):
//! * `cinder`: Cinder's vocabulary (its tables, the all-zeros key ID, the owner rule);
//!   `error`, `secret`, `state`, `fault`, `progress`: leaves every layer may use.
//! * `conf` reads cinder.conf as oslo.config does; `conditions` decides whether migrating makes
//!   sense and holds the fixed key's bytes (`FixedKey`); `scope` says whose rows a run may touch.
//! * `db`: Cinder's database (`db/url` translates `[database] connection`, `db/connect` opens it,
//!   `db/pages` reads keyset pages into `db/rows`, `db/swap` is the only writer).
//! * `plan`: what happens to each row (`plan/rules`), applied to a whole database in one pass by
//!   `plan/census`, counted by `plan/tally`.
//! * `http`, `keystone`, `barbican`: the services; `journal`: the state directory (units in
//!   flight and role grants). `clouds` (an identity from clouds.yaml), `grants` (Keystone role
//!   grants) and `projects` (a Barbican client per row project, with the grant it needed) let
//!   `--secret-owner project` store each secret in its row's own project.
//! * `engine`: one unit at a time, store, read back, compare-and-swap (`engine/rehome`: rows
//!   moved off service-project secrets); `inspect`: what `verify` and `rollback` learn about a
//!   migrated row's secret, wherever it lives.
//! * `cli`, `settings`, `output`, `logging`, `cmd/<command>`: the command line and its results.
//!
//! A row travels `db::pages` → `plan::rules` → `engine` → `db::swap`; the fixed key travels
//! `conf` → `conditions::FixedKey` → `engine` → `barbican` (the POST) and back for the compare.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod barbican;
pub mod cinder;
pub mod cli;
pub mod clouds;
pub mod cmd;
pub mod conditions;
pub mod conf;
pub mod db;
pub mod engine;
pub mod error;
pub mod fault;
pub mod glance;
pub mod grants;
pub mod http;
pub mod inspect;
pub mod journal;
pub mod keystone;
pub mod logging;
pub mod nova;
pub mod output;
pub mod plan;
pub mod progress;
pub mod projects;
pub mod scope;
pub mod secret;
pub mod settings;
pub mod state;

use std::ffi::OsString;
use std::io::Write;


use error::{exit, Error};
pub use settings::Settings;

/// Runs keymigrate with these arguments and returns the process exit code.
pub fn run(argv: Vec<OsString>) -> u8 {
    let cli = match cli::Cli::parse_args(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                // Help and version go to stdout as clap formats them.
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    return exit::DONE;
                }
                // No subcommand at all: the help, on stderr, says what there is to run.
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                }
                _ => eprintln!("keymigrate: error: {}", cli::error_line(&e)),
            }
            return exit::USAGE;
        }
    };
    // Completions and the man page need no configuration.
    let mut stdout = std::io::stdout().lock();
    match cli::generate(&cli.command, &mut stdout) {
        Ok(true) => return exit::DONE,
        Ok(false) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return exit::DONE,
        Err(e) => return report(&Error::Output(e), false),
    }
    drop(stdout);
    if let Err(e) = logging::init(cli.global.debug, cli.global.log_file.as_deref()) {
        eprintln!("keymigrate: error: {e}");
        return e.exit_code();
    }
    let to_file = cli.global.log_file.is_some();
    let db_timeout = cli.global.db_timeout.unwrap_or(db::watch::DEFAULT_SECS);
    db::watch::arm(std::time::Duration::from_secs(db_timeout), to_file);
    let settings = match Settings::load(&cli, std::env::vars()) {
        Ok(s) => s,
        Err(e) => return report(&e, to_file),
    };
    let mut out: Box<dyn Write> = match stdout_file() {
        Some(file) => Box::new(std::io::BufWriter::new(file)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let result = cmd::dispatch(&settings, &cli.command, &mut out).and_then(|o| {
        out.flush().map_err(Error::Output)?;
        Ok(o)
    });
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::DONE,
        Err(e) => report(&e, to_file),
    }
}

/// Stdout as a file of its own (a duplicate of its descriptor) when it is not a terminal. The
/// standard library's stdout is line-buffered: it searches every write for its last newline,
/// which for a report's pages of rows (hundreds of KB without one) costs as much as writing
/// them. A terminal keeps the standard stdout, lines appearing as they are written.
fn stdout_file() -> Option<std::fs::File> {
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    if std::io::IsTerminal::is_terminal(&stdout) {
        return None;
    }
    stdout.as_fd().try_clone_to_owned().ok().map(std::fs::File::from)
}

/// One line on stderr (also in the log file when there is one), and the error's exit code.
fn report(e: &Error, log_to_file: bool) -> u8 {
    if log_to_file {
        log::error!("{e}");
    }
    eprintln!("keymigrate: error: {e}");
    e.exit_code()
}
