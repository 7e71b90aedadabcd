//! A progress bar with rate and ETA for long runs, drawn only when stderr is a terminal (so a
//! cron job or a pipe sees nothing of it). Log lines are printed above the bar, not through it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Whether a bar would be shown at all (lets callers skip the work of counting).
pub fn wanted() -> bool {
    std::io::stderr().is_terminal()
}

/// Starts a bar over `total` units, or a spinner when the total is unknown.
pub fn start(total: Option<u64>, what: &str) {
    if !wanted() {
        return;
    }
    let bar = match total {
        Some(n) => {
            let bar = ProgressBar::new(n);
            if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} rows {per_sec}") {
                bar.set_style(style);
            }
            bar
        }
    };
    bar.set_message(what.to_string());
    if let Ok(mut slot) = BAR.lock() {
        *slot = Some(bar);
    }
}

pub fn inc(n: u64) {
    if let Ok(slot) = BAR.lock() {
        if let Some(bar) = slot.as_ref() {
            bar.inc(n);
        }
    }
}

pub fn finish() {
    if let Ok(mut slot) = BAR.lock() {
        if let Some(bar) = slot.take() {
            bar.finish_and_clear();
        }
    }
}

/// stderr for the logger: writes above the bar while one is shown.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().ok().and_then(|slot| slot.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
