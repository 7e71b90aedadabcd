//! Log lines in oslo.log's format, which operators' log tooling already parses:
//! `2026-11-28 06:32:09.123 4242 INFO keymigrate.migrate [-] message`.
//! stderr by default, `--log-file` to append to a file; `--debug` adds DEBUG; `RUST_LOG`, when
//! set, wins. Nothing logged may contain a key, password or token: callers log IDs only.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

pub fn init(debug: bool, log_file: Option<&Path>) -> Result<()> {
    let mut builder = env_logger::Builder::new();
    match std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty()) {
        Some(spec) => {
            builder.parse_filters(&spec);
            // Their debug and trace output includes request bodies and headers: the fixed key
            // and tokens. No RUST_LOG may turn it on.
            for quiet in ["ureq", "ureq_proto", "rustls", "rustls_platform_verifier"] {
                builder.filter_module(quiet, log::LevelFilter::Warn);
            }
        }
        None => {
            let level = if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info };
            builder.filter_level(log::LevelFilter::Warn).filter_module("keymigrate", level);
        }
    }
    builder.format(|buf, record| {
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f");
        let module = record.target().replace("::", ".");
        let level = match record.level() {
            log::Level::Warn => "WARNING",
            other => other.as_str(),
        };
        writeln!(buf, "{now} {} {level} {module} [-] {}", std::process::id(), record.args())
    });
    builder.write_style(env_logger::WriteStyle::Never);
    if let Some(path) = log_file {
        let file = crate::state::open_private_append(path).map_err(|e| Error::Usage(format!(
            "cannot open log file {}: {e}",
            path.display()
        )))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    } else {
        builder.target(env_logger::Target::Pipe(Box::new(crate::progress::Stderr)));
    }
    builder.try_init().map_err(|e| Error::Internal(format!("logger: {e}")))
}
