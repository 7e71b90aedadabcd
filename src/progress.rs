//! A progress bar with rate and ETA for long runs, drawn only when stderr is a terminal (so a
//! cron job or a pipe sees nothing of it). Log lines are printed above the bar, not through it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

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
            if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {rate} ETA {eta}") {
                bar.set_style(style.progress_chars("=> ").with_key("rate", rate_key("keys")));
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} rows {rate}") {
                bar.set_style(style.with_key("rate", rate_key("rows")));
            }
            bar
        }
    };
    bar.set_message(what.to_string());
    if let Ok(mut slot) = BAR.lock() {
        *slot = Some(bar);
    }
}

/// The `{rate}` template key: indicatif's own `{per_sec}` prints fractions (`9.9031/s`) and
/// does not say what it counts.
fn rate_key(unit: &'static str) -> impl Fn(&ProgressState, &mut dyn std::fmt::Write) + Clone + Send + Sync + 'static {
    move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = w.write_str(&rate(state.per_sec(), unit));
    }
}

/// A rate as whole units per second: `12 keys/s`. Under one a second but not stopped reads
/// `<1 keys/s`, so a slow `--max-rate` does not look stalled; no rate yet reads `0 keys/s`.
fn rate(per_sec: f64, unit: &str) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        format!("0 {unit}/s")
    } else if per_sec < 0.5 {
        format!("<1 {unit}/s")
    } else {
        format!("{:.0} {unit}/s", per_sec.round())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_units_per_second() {
        assert_eq!(rate(9.9031, "keys"), "10 keys/s");
        assert_eq!(rate(12.0, "keys"), "12 keys/s");
        assert_eq!(rate(12.49, "keys"), "12 keys/s");
        assert_eq!(rate(1_234_567.8, "rows"), "1234568 rows/s");
        assert_eq!(rate(0.5, "keys"), "1 keys/s");
        assert_eq!(rate(0.2, "keys"), "<1 keys/s");
        for none in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(rate(none, "rows"), "0 rows/s", "{none}");
        }
    }
}
