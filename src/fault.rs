//! Crash and pause points for the reliability tests: `KEYMIGRATE_FAULT=<point>[@n]=<action>`
//! makes the n-th pass (default the first) through a point either SIGKILL the process (`kill`)
//! or wait until a file exists (`wait:<path>`). Points are the steps of a unit: `journal`,
//! `stored`, `recorded`, `acl`, `verified`, `in-transaction`, `committed`, `finished`, and those
//! of a project's role grant: `grant-journalled`, `granted`, `scoped`, `revoked`.
//!
//! Only a build with the `fault-injection` feature has them, and only the tests enable it (the
//! package's dev-dependency on itself in Cargo.toml): in any other build, a release binary
//! included, [`point`] is an empty inline function, the environment variable is never read and
//! its name is not even in the binary. `tests/release.rs` checks this on the release binary.

/// Marks that the current unit has reached `point`: nothing at all without `fault-injection`.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_point: &str) {}

#[cfg(feature = "fault-injection")]
pub use armed::point;

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    pub(super) struct Fault {
        pub(super) point: String,
        pub(super) nth: u64,
        pub(super) action: String,
    }

    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    static PASSES: AtomicU64 = AtomicU64::new(0);

    pub(super) fn parse(spec: &str) -> Option<Fault> {
        let (target, action) = spec.split_once('=')?;
        let (point, nth) = match target.split_once('@') {
            Some((p, n)) => (p, n.parse().ok()?),
            None => (target, 1),
        };
        Some(Fault { point: point.to_string(), nth, action: action.to_string() })
    }

    /// Marks that the current unit has reached `point`. Unset, a point costs one relaxed load.
    pub fn point(point: &str) {
        let fault = FAULT.get_or_init(|| std::env::var("KEYMIGRATE_FAULT").ok().as_deref().and_then(parse));
        let Some(f) = fault else { return };
        if f.point != point || PASSES.fetch_add(1, Ordering::SeqCst) + 1 != f.nth {
            return;
        }
        if f.action == "kill" {
            log::warn!("fault injection: SIGKILL at {point}");
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        } else if let Some(path) = f.action.strip_prefix("wait:") {
            log::warn!("fault injection: waiting at {point} for {path}");
            let _ = std::fs::write(format!("{path}.reached"), point);
            while !std::path::Path::new(path).exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::armed::parse;

    #[test]
    fn parses_specs() {
        let f = parse("stored@3=kill").expect("spec");
        assert_eq!((f.point.as_str(), f.nth, f.action.as_str()), ("stored", 3, "kill"));
        let f = parse("acl=wait:/tmp/x").expect("spec");
        assert_eq!((f.nth, f.action.as_str()), (1, "wait:/tmp/x"));
        assert!(parse("nonsense").is_none());
    }
}
