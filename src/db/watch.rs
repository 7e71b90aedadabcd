//! A deadline on every database round trip (`--db-timeout`).
//!
//! Neither libmariadb nor libpq, as diesel drives them, bound how long a connection waits for a
//! server that accepted it and then went silent (a hung server, a stalled proxy or load
//! balancer, a half-open network path): keymigrate would wait for ever, holding its scope's lock,
//! and a cron job would never run again. Each connection carries a [`Watch`], told by diesel's
//! instrumentation when a query starts and finishes (and by [`super::open`] around connecting);
//! one watchdog thread checks them, and when a round trip has lasted longer than the limit it
//! ends the process with one line naming the database and exit 2.
//!
//! Ending the process there is safe for the same reason a `kill -9` is: every change to the
//! database is one compare-and-swap committed alone or not at all (the server rolls back an
//! open transaction when the connection goes), and every secret and role grant is journalled
//! before it is made, so the next run finishes or deletes whatever this one left.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};

use crate::error::Error;

/// The default `--db-timeout`, in seconds: longer than any wait a healthy database imposes
/// (SQLite's busy timeout is 30 s, InnoDB's lock wait 50 s by default, a page of rows takes
/// well under a second).
pub const DEFAULT_SECS: u64 = 120;

/// The limit in milliseconds; 0 until [`arm`] is called (tests of the library run unwatched).
static LIMIT_MS: AtomicU64 = AtomicU64::new(0);
/// Whether the error line also goes to `--log-file`.
static LOG_TO_FILE: AtomicBool = AtomicBool::new(false);
static EPOCH: OnceLock<Instant> = OnceLock::new();
static WATCHED: Mutex<Vec<Weak<Slot>>> = Mutex::new(Vec::new());
static WATCHDOG: OnceLock<()> = OnceLock::new();

/// Sets the limit for every connection opened from now on, and whether the message is logged to
/// `--log-file` as well as printed.
pub fn arm(limit: Duration, log_to_file: bool) {
    LOG_TO_FILE.store(log_to_file, Ordering::Relaxed);
    LIMIT_MS.store(limit.as_millis().try_into().unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
}

fn now_ms() -> u64 {
    // +1: 0 means "no round trip in progress".
    EPOCH.get_or_init(Instant::now).elapsed().as_millis().try_into().unwrap_or(u64::MAX - 1) + 1
}

struct Slot {
    /// When the round trip in progress started ([`now_ms`]), or 0.
    since: AtomicU64,
    /// The database, its URL without the password.
    url: String,
}

/// One connection's deadline: [`Watch::begin`] before a round trip, [`Watch::end`] after.
pub struct Watch {
    slot: Arc<Slot>,
}

impl Watch {
    pub fn new(url: &str) -> Watch {
        let slot = Arc::new(Slot { since: AtomicU64::new(0), url: url.to_string() });
        if LIMIT_MS.load(Ordering::Relaxed) > 0 {
            if let Ok(mut watched) = WATCHED.lock() {
                watched.retain(|w| w.strong_count() > 0);
                watched.push(Arc::downgrade(&slot));
            }
            WATCHDOG.get_or_init(|| {
                let _ = std::thread::Builder::new().name("db-watchdog".into()).spawn(watchdog);
            });
        }
        Watch { slot }
    }

    pub fn begin(&self) {
        self.slot.since.store(now_ms(), Ordering::Relaxed);
    }

    pub fn end(&self) {
        self.slot.since.store(0, Ordering::Relaxed);
    }
}

impl Instrumentation for Watch {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } | InstrumentationEvent::StartEstablishConnection { .. } => self.begin(),
            InstrumentationEvent::FinishQuery { .. } | InstrumentationEvent::FinishEstablishConnection { .. } => self.end(),
            _ => {}
        }
    }
}

/// The message for a round trip that lasted longer than `limit_ms`.
fn stalled(url: &str, limit_ms: u64) -> Error {
    let secs = limit_ms.div_ceil(1000);
    Error::Database {
        url: url.to_string(),
        message: format!(
            "no answer within {secs} s (--db-timeout): the server, or something between it and \
             keymigrate, stopped answering; nothing more was written, and the next run finishes \
             or undoes what this one started"
        ),
    }
}

fn watchdog() {
    loop {
        let limit = LIMIT_MS.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis((limit / 4).clamp(50, 1000)));
        let now = now_ms();
        let expired = WATCHED.lock().ok().and_then(|watched| {
            watched.iter().filter_map(Weak::upgrade).find_map(|slot| {
                let since = slot.since.load(Ordering::Relaxed);
                (since != 0 && now.saturating_sub(since) > limit).then(|| slot.url.clone())
            })
        });
        if let Some(url) = expired {
            let e = stalled(&url, limit);
            if LOG_TO_FILE.load(Ordering::Relaxed) {
                log::error!("{e}");
                log::logger().flush();
            }
            eprintln!("keymigrate: error: {e}");
            std::process::exit(i32::from(e.exit_code()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_database_and_the_option() {
        let e = stalled("mysql://cinder@db.example.net/cinder", 120_000);
        let line = e.to_string();
        assert!(line.contains("mysql://cinder@db.example.net/cinder"), "{line}");
        assert!(line.contains("no answer within 120 s (--db-timeout)"), "{line}");
        assert_eq!(e.exit_code(), 2);
        assert!(stalled("x", 1_500).to_string().contains("within 2 s"), "a partial second rounds up");
    }

    #[test]
    fn a_watch_is_idle_until_a_round_trip_begins() {
        let w = Watch::new("sqlite:///x");
        assert_eq!(w.slot.since.load(Ordering::Relaxed), 0);
        w.begin();
        assert!(w.slot.since.load(Ordering::Relaxed) > 0);
        w.end();
        assert_eq!(w.slot.since.load(Ordering::Relaxed), 0);
    }
}
