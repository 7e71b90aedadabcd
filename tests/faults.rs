//! Faults between keymigrate and the real Barbican, injected by a proxy: what a busy or broken
//! cloud does. After each, the invariant must hold: no row points at a secret that does not hold
//! the fixed key, and a finished run leaves no secret of its own behind.

use crate::migrate::{k, Fixture};
use crate::support::cloud::Cloud;
use crate::support::proxy::{Fault, Proxy};
use crate::support::*;

#[test]
fn barbican_5xx_answers_are_retried() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    proxy.rule("POST", "/v1/secrets", 1, Fault::Status(500));
    proxy.rule("POST", "/v1/secrets", 2, Fault::Status(503));
    proxy.rule("PUT", "/acl", 1, Fault::Status(502));
    proxy.rule("GET", "/payload", 1, Fault::Status(500));
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostS");
    let out = f.migrate(&["--host", "hostS", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_code(0);
    assert_eq!(proxy.injected(), 4);
    assert!(out.stderr.contains("retrying in"), "{}", out.stderr);
    f.check(&Cloud::new());
}

#[test]
fn a_payload_altered_on_read_back_is_never_written() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    proxy.rule("GET", "/payload", 1, Fault::CorruptBody);
    let mut f = Fixture::new(Backend::Mysql, "password");
    f.seed_host("hostT");
    let out = f.migrate(&["--host", "hostT", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_code(1);
    assert_eq!(proxy.injected(), 1);
    assert!(out.stderr.contains("that are not the fixed key"), "{}", out.stderr);
    // The unit whose read-back was altered is still on the all-zeros ID; everything else moved.
    let zero: Vec<(String, String)> = f
        .migrated
        .keys()
        .filter(|(t, id)| f.db.key_of(t, id).as_deref() == Some(ZERO))
        .cloned()
        .collect();
    assert!(!zero.is_empty(), "the altered unit was written");
    assert!(zero.iter().all(|r| r.0 == "volumes" || r.0 == "snapshots" || r.0 == "volume_glance_metadata"), "{zero:?}");
    // The next run finishes it; its secret from the first run was deleted, never used.
    f.migrate(&["--host", "hostT"]).assert_code(0);
    f.check(&Cloud::new());
    assert!(f.migrated.contains_key(&k(&zero[0].0, &zero[0].1)));
}

#[test]
fn an_answer_lost_after_barbican_stored_the_secret_leaves_no_orphan() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    // Barbican stores the secret, the answer never arrives; the retry stores another.
    proxy.rule("POST", "/v1/secrets", 1, Fault::DropAnswer);
    proxy.rule("POST", "/v1/secrets", 3, Fault::DropAnswer);
    let mut f = Fixture::new(Backend::Postgres, "password");
    f.seed_host("hostU");
    let out = f.migrate(&["--host", "hostU", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_code(0);
    assert_eq!(proxy.injected(), 2);
    assert!(out.stderr.contains("left by an interrupted run"), "the orphan was not swept:\n{}", out.stderr);
    // check() proves at most one secret per row name remains, and it is the one in use.
    f.check(&Cloud::new());
}
