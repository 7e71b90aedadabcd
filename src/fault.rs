//! Crash and pause points for the reliability tests: `KEYMIGRATE_FAULT=<point>[@n]=<action>`
//! makes the n-th pass (default the first) through a point either SIGKILL the process (`kill`)
//! or wait until a file exists (`wait:<path>`). Unset, as in production, a point costs one
//! relaxed atomic load. Points are the steps of a unit: `journal`, `stored`, `recorded`, `acl`,
//! `verified`, `in-transaction`, `committed`, `finished`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Fault {
    point: String,
    nth: u64,
    action: String,
}

static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
static PASSES: AtomicU64 = AtomicU64::new(0);

fn parse(spec: &str) -> Option<Fault> {
    let (target, action) = spec.split_once('=')?;
    let (point, nth) = match target.split_once('@') {
        Some((p, n)) => (p, n.parse().ok()?),
        None => (target, 1),
    };
    Some(Fault { point: point.to_string(), nth, action: action.to_string() })
}

/// Marks that the current unit has reached `point`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let f = parse("stored@3=kill").expect("spec");
        assert_eq!((f.point.as_str(), f.nth, f.action.as_str()), ("stored", 3, "kill"));
        let f = parse("acl=wait:/tmp/x").expect("spec");
        assert_eq!((f.nth, f.action.as_str()), (1, "wait:/tmp/x"));
        assert!(parse("nonsense").is_none());
    }
}
