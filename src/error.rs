//! keymigrate's error type and its exit codes, decided in one place.
//!
//! Exit codes follow `nova-manage`/`cinder-manage`, which operators already script against:
//! 0 nothing left, 1 rows remain (run again), 2 an operator must act, 127 bad usage or
//! configuration, 255 a bug. Messages carry their context (file and line, database URL with the
//! password removed, volume id) and never a key, password or token.

use std::path::PathBuf;

/// Process exit codes; documented in `--help`, the README and `docs/`.
pub mod exit {
    /// Nothing is left to migrate in the scope (or the command succeeded).
    pub const DONE: u8 = 0;
    /// Rows still use the all-zeros key ID: run `migrate` again.
    pub const MORE: u8 = 1;
    /// An operator must act: the configuration forbids migrating while rows remain, the database
    /// or Barbican cannot be used, or too many units failed.
    pub const INTERVENTION: u8 = 2;
    /// Bad command line or configuration. Nothing was written.
    pub const USAGE: u8 = 127;
    /// A bug in keymigrate.
    pub const BUG: u8 = 255;
}

/// What a command concluded, when it ran to the end without an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing left to do in the scope.
    Done,
    /// Rows remain; running again will make progress.
    MoreToDo,
    /// Rows remain but keymigrate cannot make progress without an operator.
    NeedsOperator,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => exit::DONE,
            Outcome::MoreToDo => exit::MORE,
            Outcome::NeedsOperator => exit::INTERVENTION,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line itself is wrong.
    #[error("{0}")]
    Usage(String),

    /// A configuration file could not be found or read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    ConfigRead { path: PathBuf, source: std::io::Error },

    /// A configuration file is not valid oslo.config INI.
    #[error("configuration file {}: {message}", path.display())]
    ConfigSyntax { path: PathBuf, message: String },

    /// An option has a value keymigrate cannot use. `option` names it as `[group] name`;
    /// the value itself is never repeated (it may be a secret).
    #[error("{option}: {message}")]
    ConfigValue { option: String, message: String },

    /// The database could not be reached or read. `url` has its password removed.
    #[error("database {url}: {message}")]
    Database { url: String, message: String },

    /// Keystone or Barbican refused or failed in a way retrying will not fix.
    #[error("{0}")]
    Service(String),

    /// Keystone rejected the configured credentials: never retried, so that a timer cannot
    /// lock the service account out.
    #[error("{0}")]
    Credentials(String),

    /// The state directory (journal and lock) cannot be used.
    #[error("state directory {}: {message}", path.display())]
    State { path: PathBuf, message: String },

    /// Another keymigrate run holds the lock for this scope.
    #[error("another keymigrate run holds the lock {}; run again later", path.display())]
    Locked { path: PathBuf },

    /// Too many units failed; the run stopped.
    #[error("{0}")]
    Aborted(String),

    /// Writing results failed (other than a closed pipe, which is not an error).
    #[error("cannot write output: {0}")]
    Output(std::io::Error),

    /// Something keymigrate does not expect: a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_)
            | Error::ConfigRead { .. }
            | Error::ConfigSyntax { .. }
            | Error::ConfigValue { .. } => exit::USAGE,
            Error::Locked { .. } => exit::MORE,
            Error::Database { .. }
            | Error::Service(_)
            | Error::Credentials(_)
            | Error::State { .. }
            | Error::Aborted(_)
            | Error::Output(_) => exit::INTERVENTION,
            Error::Internal(_) => exit::BUG,
        }
    }

    pub fn config_value(option: impl Into<String>, message: impl Into<String>) -> Error {
        Error::ConfigValue { option: option.into(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
