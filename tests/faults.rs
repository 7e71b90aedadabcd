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

/// What every fault must leave: no migrated row points at a secret that does not hold the fixed
/// key (rows still on the all-zeros ID are fine), and nothing else in the database moved.
fn assert_nothing_wrong_written(f: &Fixture, cloud: &Cloud) {
    let cinder = f.service_token(cloud);
    let key = hex::decode(&f.key).expect("hex");
    for (table, id) in f.migrated.keys() {
        let secret = f.db.key_of(table, id).unwrap_or_else(|| panic!("{table} {id} has no key"));
        if secret != ZERO {
            assert_eq!(cloud.payload(&cinder, &secret).body, key, "{table} {id} points at {secret}, which does not hold the key");
        }
    }
}

/// The run wrote nothing and left no secret of its own behind.
fn assert_nothing_written(f: &Fixture, before: &str) {
    assert_eq!(f.db.fingerprint(), before, "the database was written");
    let cloud = Cloud::new();
    f.check_no_litter(&cloud, &cloud.cinder());
    f.w.assert_state_clean(&f.state);
}

/// Units still waiting in the journal.
fn journal_entries(f: &Fixture) -> usize {
    crate::support::journal_entries(&f.state).len()
}

#[test]
fn connection_resets_before_and_during_an_answer_are_retried() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    // Reset before Barbican sees the request.
    proxy.rule("POST", "/v1/secrets", 1, Fault::ResetBeforeForward);
    proxy.rule("PUT", "/acl", 1, Fault::ResetBeforeForward);
    proxy.rule("GET", "/payload", 1, Fault::ResetBeforeForward);
    // Reset halfway through Barbican's answer: the POST's secret exists, its reference is lost.
    proxy.rule("POST", "/v1/secrets", 3, Fault::HalfAnswer);
    proxy.rule("GET", "/payload", 3, Fault::HalfAnswer);
    proxy.rule("PUT", "/acl", 3, Fault::HalfAnswer);
    let mut f = Fixture::new(Backend::Postgres, "password");
    f.seed_host("hostV");
    let out = f.migrate(&["--host", "hostV", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_code(0);
    assert_eq!(proxy.injected(), 6);
    assert!(out.stderr.contains("connection error") || out.stderr.contains("retrying in"), "{}", out.stderr);
    assert!(out.stderr.contains("left by an interrupted run"), "the half-answered POST's secret was not swept:\n{}", out.stderr);
    f.check(&Cloud::new());
}

#[test]
fn a_stalled_answer_times_out_and_the_retry_leaves_no_orphan() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    // Barbican stores the secret; its answer arrives after keymigrate gave up waiting.
    proxy.rule("POST", "/v1/secrets", 2, Fault::Stall(std::time::Duration::from_secs(4)));
    proxy.rule("GET", "/payload", 1, Fault::Stall(std::time::Duration::from_secs(4)));
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostW");
    let out = f.migrate(&["--host", "hostW", "--barbican-endpoint", &proxy.url, "--workers", "1", "--timeout", "2"]);
    out.assert_code(0);
    assert_eq!(proxy.injected(), 2);
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    assert!(out.stderr.contains("left by an interrupted run"), "the stalled POST's secret was not swept:\n{}", out.stderr);
    f.check(&Cloud::new());
}

#[test]
fn a_trickled_answer_works_within_the_timeout_and_times_out_cleanly_beyond_it() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    // A few hundred bytes, 2 ms apart: slow but inside a 3 s timeout.
    proxy.rule("GET", "/payload", 1, Fault::Trickle(std::time::Duration::from_millis(2)));
    proxy.rule("PUT", "/acl", 1, Fault::Trickle(std::time::Duration::from_millis(2)));
    // 30 ms apart: far beyond it, after Barbican stored the secret.
    proxy.rule("POST", "/v1/secrets", 2, Fault::Trickle(std::time::Duration::from_millis(30)));
    let mut f = Fixture::new(Backend::Mysql, "password");
    f.seed_host("hostX");
    let out = f.migrate(&["--host", "hostX", "--barbican-endpoint", &proxy.url, "--workers", "1", "--timeout", "3"]);
    out.assert_code(0);
    assert_eq!(proxy.injected(), 3);
    assert_eq!(out.stderr.matches("timed out").count(), 1, "only the slowest answer times out:\n{}", out.stderr);
    f.check(&Cloud::new());
}

#[test]
fn barbican_going_away_mid_run_exits_2_and_the_next_run_finishes() {
    let cloud = Cloud::new();
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    // The second unit's secret is stored, then Barbican's port closes before its ACL is set.
    proxy.rule("PUT", "/acl", 2, Fault::Stop);
    let mut f = Fixture::new(Backend::Mysql, "password");
    f.seed_host("hostY");
    let out = f.migrate(&["--host", "hostY", "--barbican-endpoint", &proxy.url, "--workers", "1", "--retries", "1"]);
    out.assert_error(2, "aborted after 4 failed unit(s)");
    assert_nothing_wrong_written(&f, &cloud);
    // The stored secret could not be deleted (nothing listens): the journal keeps it.
    assert!(journal_entries(&f) >= 1, "{}", out.stderr);
    let out = f.migrate(&["--host", "hostY"]);
    out.assert_code(0);
    assert!(out.stderr.contains("Resuming"), "{}", out.stderr);
    f.check(&cloud);
}

#[test]
fn a_revoked_token_is_renewed_once_and_the_run_goes_on() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    // The token worked for two requests, then Keystone revoked it.
    proxy.rule("*", "/v1/secrets", 3, Fault::Revoke);
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostZ");
    let out = f.migrate(&["--host", "hostZ", "--barbican-endpoint", &proxy.url, "--workers", "2"]);
    out.assert_code(0);
    assert!(proxy.injected() >= 1);
    assert!(out.stderr.contains("Barbican answered 401; authenticating again"), "{}", out.stderr);
    f.check(&Cloud::new());
}

#[test]
fn a_token_barbican_never_accepts_stops_the_run_with_exit_2() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    proxy.rule("*", "/v1/", 0, Fault::Status(401));
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostAA");
    let before = f.db.fingerprint();
    let out = f.migrate(&["--host", "hostAA", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_error(2, "after authenticating again");
    assert_eq!(out.stderr.matches("authenticating again").count(), 2, "one renewal, then stop:\n{}", out.stderr);
    assert_nothing_written(&f, &before);
    assert_eq!(journal_entries(&f), 0);
}

#[test]
fn keystone_failures_are_one_clear_line_and_nothing_is_written() {
    let keystone = Proxy::start(&env("KEYMIGRATE_TEST_KEYSTONE_URL"));
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostAB");
    let real = env("KEYMIGRATE_TEST_KEYSTONE_URL");
    let real_host = real.trim_start_matches("http://").split('/').next().expect("host").to_string();
    let text = std::fs::read_to_string(&f.conf).expect("conf");
    std::fs::write(&f.conf, text.replace(&real_host, keystone.url.trim_start_matches("http://"))).expect("write");
    let before = f.db.fingerprint();
    let barbican = env("KEYMIGRATE_TEST_BARBICAN_URL");
    let args = ["--host", "hostAB", "--barbican-endpoint", barbican.as_str(), "--retries", "1"];

    keystone.rule("POST", "/auth/tokens", 0, Fault::Status(503));
    f.migrate(&args).assert_error(2, "refused to authenticate: HTTP 503");
    assert_nothing_written(&f, &before);

    keystone.clear();
    keystone.rule("POST", "/auth/tokens", 0, Fault::ReplaceBody("<html><body>Service Unavailable</body></html>".into()));
    f.migrate(&args).assert_error(2, "not the expected JSON");
    assert_nothing_written(&f, &before);

    // One 500 is retried like any 5xx.
    keystone.clear();
    keystone.rule("POST", "/auth/tokens", 1, Fault::Status(500));
    f.migrate(&args).assert_code(0);
    f.check(&Cloud::new());
}

#[test]
fn a_quota_403_on_store_stops_the_run_and_a_403_on_the_acl_deletes_the_stored_secret() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    // Barbican's answer when a project's secret quota is reached.
    let quota = r#"{"code": 403, "title": "Forbidden", "description": "Creation not allowed because a quota has been reached"}"#;
    proxy.rule("POST", "/v1/secrets", 1, Fault::Answer(403, quota.into()));
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostAC");
    let before = f.db.fingerprint();
    let args = ["--host", "hostAC", "--barbican-endpoint", proxy.url.as_str(), "--workers", "1"];
    let out = f.migrate(&args);
    out.assert_error(2, "Barbican's secret quota of the [keystone_authtoken] identity's project is reached (POST ");
    out.assert_error(2, "a quota has been reached");
    assert_nothing_written(&f, &before);

    // Stored, then refused the ACL: the secret is deleted, the row never written.
    proxy.rule("PUT", "/acl", 1, Fault::Status(403));
    let out = f.migrate(&args);
    out.assert_error(2, "Barbican refused (quota or policy)");
    assert_eq!(proxy.injected(), 2);
    assert_nothing_written(&f, &before);
    assert_eq!(journal_entries(&f), 0);

    f.migrate(&args).assert_code(0);
    f.check(&Cloud::new());
}

/// Barbican's own per-project secret quota (`PUT /v1/project-quotas/{id}`), not a proxy, under
/// `--secret-owner service`: the `[keystone_authtoken]` identity is a member of a project made
/// for the test (Cinder's own service project is shared by every test), whose quota allows 2
/// secrets for 5 units. The run stops at Barbican's refusal with one line naming the quota; the
/// 2 units done are on secrets that hold the key, no other secret is left, nothing is left in
/// the journal. Once the quota is raised, the next run finishes.
#[test]
fn barbicans_own_secret_quota_stops_a_service_run_until_it_is_raised() {
    use crate::support::tenancy::{Project, Secrets};
    let cloud = Cloud::new();
    let mut p = Project::new("svcquota");
    let svc = p.member("svc");
    let mut f = Fixture::new(Backend::Postgres, "password");
    f.seed_host("hostAI");
    f.act_as(&svc.name, svc.password(), &p.name);
    p.set_secret_quota(2);
    let mut litter = Secrets::new();
    let args = ["--host", "hostAI", "--workers", "1"];
    let out = f.migrate(&args);
    litter.of_rows(&f.db);
    out.assert_error(2, "Barbican's secret quota of the [keystone_authtoken] identity's project is reached (POST ");
    out.assert_error(2, "Creation not allowed because a quota has been reached");
    assert_eq!(out.stderr.matches("a quota has been reached").count(), 1, "{}", out.stderr);
    assert!(!out.stderr.contains("check the [keystone_authtoken] user's roles"), "a quota is not a policy:\n{}", out.stderr);
    // Two units done (a volume's secret may also serve its snapshot and glance row), every
    // secret of the project in use, the rest still on the all-zeros ID.
    let token = f.service_token(&cloud);
    let used: std::collections::BTreeSet<String> =
        f.migrated.keys().filter_map(|(t, id)| f.db.key_of(t, id)).filter(|k| k != ZERO).collect();
    assert_eq!(used.len(), 2, "{used:?}");
    let listed: std::collections::BTreeSet<String> = cloud.named_like(&token, "keymigrate-").into_iter().collect();
    assert_eq!(listed, used, "the project's keymigrate secrets are exactly those the rows use");
    assert_nothing_wrong_written(&f, &cloud);
    assert_eq!(journal_entries(&f), 0);
    f.check_no_litter(&cloud, &token);

    p.set_secret_quota(20);
    let out = f.migrate(&["--host", "hostAI", "--workers", "1", "-f", "json"]);
    litter.of_rows(&f.db);
    out.assert_code(0);
    assert_eq!(out.json()["report"]["secrets_created"], 3, "the 3 units left: {}", out.stdout);
    f.check(&cloud);
}

#[test]
fn a_secret_ref_naming_another_secret_is_never_written() {
    let cloud = Cloud::new();
    let cinder = cloud.cinder();
    let mut f = Fixture::new(Backend::Postgres, "password");
    f.seed_host("hostAD");
    // The worst case: another secret that holds the very same bytes, so a read-back passes.
    let decoy = cloud.store(&cinder, &format!("decoy-{}", uuid()), &base64_of(&f.key), 256);
    let barbican = env("KEYMIGRATE_TEST_BARBICAN_URL");
    let proxy = Proxy::start(&barbican);
    proxy.rule("POST", "/v1/secrets", 1, Fault::SecretRef(format!("{barbican}/v1/secrets/{decoy}")));
    proxy.rule("POST", "/v1/secrets", 2, Fault::SecretRef(format!("http://203.0.113.9:9311/v1/secrets/{}", uuid())));
    // Another host but the right ID (Barbican's host_href differing from the endpoint used):
    // the secret behind the ID is the one just stored, so it is used.
    proxy.rule("POST", "/v1/secrets", 3, Fault::SecretRefHost("http://barbican.internal.example:9311".into()));
    let out = f.migrate(&["--host", "hostAD", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_code(1);
    assert_eq!(proxy.injected(), 3);
    assert_eq!(out.stderr.matches("which is not the secret just stored").count(), 2, "{}", out.stderr);
    assert_nothing_wrong_written(&f, &cloud);
    for table in ["volumes", "snapshots", "backups", "volume_glance_metadata"] {
        assert!(f.db.keys(table).iter().all(|(_, k)| k.as_deref() != Some(decoy.as_str())), "a row points at the decoy");
    }
    // The decoy is untouched: still there, no reader added.
    assert_eq!(cloud.payload(&cinder, &decoy).status, 200);
    assert!(cloud.acl_users(&cinder, &decoy).is_empty());
    // The secrets Barbican really created are found by name and deleted by the next run.
    assert_eq!(journal_entries(&f), 2);
    f.migrate(&["--host", "hostAD"]).assert_code(0);
    f.check(&cloud);
    assert_eq!(cloud.payload(&cinder, &decoy).status, 200, "the decoy was deleted");
    cloud.delete(&cinder, &decoy);
}

#[test]
fn a_lying_listing_confirms_nothing_and_a_crowded_project_is_confirmed_one_by_one() {
    let cloud = Cloud::new();
    let cinder = cloud.cinder();
    let barbican = env("KEYMIGRATE_TEST_BARBICAN_URL");
    // A listing whose every entry names the decoy: no ID is confirmed by it, each is asked
    // alone, and no row or ACL ever names the decoy.
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostAQ");
    f.seed_host("hostAQ");
    let decoy = cloud.store(&cinder, &format!("decoy-{}", uuid()), &base64_of(&f.key), 256);
    let proxy = Proxy::start(&barbican);
    proxy.rule("GET", "sort=created", 0, Fault::ListRef(format!("{barbican}/v1/secrets/{decoy}")));
    let out = f.migrate(&["--host", "hostAQ", "--barbican-endpoint", &proxy.url, "--workers", "4"]);
    out.assert_code(0);
    assert!(proxy.injected() >= 1);
    f.check(&cloud);
    for table in ["volumes", "snapshots", "backups", "volume_glance_metadata"] {
        assert!(f.db.keys(table).iter().all(|(_, k)| k.as_deref() != Some(decoy.as_str())), "a row points at the decoy");
    }
    assert!(cloud.acl_users(&cinder, &decoy).is_empty());
    cloud.delete(&cinder, &decoy);

    // A project whose listing says it holds 5,000 keymigrate secrets (and shows none): one
    // listing, then every name is confirmed on its own (a listing there would cost more).
    let mut f = Fixture::new(Backend::Sqlite, "password");
    for _ in 0..3 {
        f.seed_host("hostAR");
    }
    let proxy = Proxy::start(&barbican);
    proxy.rule("GET", "sort=created", 0, Fault::ReplaceBody(r#"{"secrets": [], "total": 5000}"#.into()));
    let out = f.migrate(&["--host", "hostAR", "--barbican-endpoint", &proxy.url, "--workers", "4", "-f", "json"]);
    out.assert_code(0);
    f.check(&cloud);
    let created = out.json()["report"]["secrets_created"].as_u64().expect("secrets_created") as usize;
    let (listings, alone) = proxy.name_requests();
    assert_eq!(listings, 1, "listings in a crowded project");
    assert_eq!(alone, created, "each of {created} names confirmed on its own");
}

#[test]
fn a_listing_naming_another_secret_never_gets_it_deleted() {
    let cloud = Cloud::new();
    let cinder = cloud.cinder();
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostAH");
    let decoy = cloud.store(&cinder, &format!("decoy-{}", uuid()), &base64_of(&f.key), 256);
    let barbican = env("KEYMIGRATE_TEST_BARBICAN_URL");
    let proxy = Proxy::start(&barbican);
    // An orphan to sweep, and a listing by name that points at the decoy instead (the sweep's
    // listing of one name, paged by offset; not the listing that confirms new secrets' names).
    proxy.rule("POST", "/v1/secrets", 1, Fault::DropAnswer);
    proxy.rule("GET", "&offset=0", 1, Fault::ListRef(format!("{barbican}/v1/secrets/{decoy}")));
    let out = f.migrate(&["--host", "hostAH", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_code(1);
    assert_eq!(proxy.injected(), 2);
    assert!(out.stderr.contains("but it is not named so"), "{}", out.stderr);
    assert_eq!(cloud.payload(&cinder, &decoy).status, 200, "the decoy was deleted");
    assert_nothing_wrong_written(&f, &cloud);
    // The unit stays in the journal; the next run's listing is honest and the orphan goes.
    assert_eq!(journal_entries(&f), 1);
    f.migrate(&["--host", "hostAH"]).assert_code(0);
    f.check(&cloud);
    assert_eq!(cloud.payload(&cinder, &decoy).status, 200, "the decoy was deleted");
    cloud.delete(&cinder, &decoy);
}

#[test]
fn a_barbican_answer_without_a_usable_secret_ref_is_an_error_and_leaves_no_orphan() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    // Every POST is stored by Barbican, but the answer is an HTML page.
    proxy.rule("POST", "/v1/secrets", 0, Fault::ReplaceBody("<html><body>502 Bad Gateway</body></html>".into()));
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostAE");
    let before = f.db.fingerprint();
    let out = f.migrate(&["--host", "hostAE", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_error(2, "aborted after 4 failed unit(s)");
    assert!(out.stderr.contains("answer is not the expected JSON"), "{}", out.stderr);
    assert_eq!(f.db.fingerprint(), before);
    assert_eq!(journal_entries(&f), 4, "each unit waits for the name-based sweep");
    f.migrate(&["--host", "hostAE"]).assert_code(0);
    f.check(&Cloud::new());

    // JSON, but without a secret_ref.
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    proxy.rule("POST", "/v1/secrets", 1, Fault::ReplaceBody(r#"{"status": "ACTIVE"}"#.into()));
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostAE");
    let out = f.migrate(&["--host", "hostAE", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_code(1);
    assert!(out.stderr.contains("the answer has no secret_ref"), "{}", out.stderr);
    assert_nothing_wrong_written(&f, &Cloud::new());
    f.migrate(&["--host", "hostAE"]).assert_code(0);
    f.check(&Cloud::new());
}

#[test]
fn a_truncated_payload_on_read_back_is_never_written() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    proxy.rule("GET", "/payload", 1, Fault::TruncateBody);
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostAF");
    let out = f.migrate(&["--host", "hostAF", "--barbican-endpoint", &proxy.url, "--workers", "1"]);
    out.assert_code(1);
    assert!(out.stderr.contains("read back 16 byte(s) that are not the fixed key (32 bytes)"), "{}", out.stderr);
    assert_nothing_wrong_written(&f, &Cloud::new());
    assert_eq!(journal_entries(&f), 0, "its secret was deleted at once");
    f.migrate(&["--host", "hostAF"]).assert_code(0);
    f.check(&Cloud::new());
}

#[test]
fn a_failed_clean_up_exits_1_and_the_next_run_finishes_it() {
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_BARBICAN_URL"));
    // The first POST's answer is lost (an orphan to sweep), and Barbican refuses every DELETE.
    proxy.rule("POST", "/v1/secrets", 1, Fault::DropAnswer);
    proxy.rule("DELETE", "/v1/secrets/", 0, Fault::Status(500));
    let mut f = Fixture::new(Backend::Mysql, "password");
    f.seed_host("hostAG");
    let out = f.migrate(&["--host", "hostAG", "--barbican-endpoint", &proxy.url, "--workers", "1", "--retries", "1"]);
    // Every row moved, but the orphan is still there: not done.
    out.assert_code(1);
    assert!(out.stderr.contains("still in the journal"), "{}", out.stderr);
    assert_nothing_wrong_written(&f, &Cloud::new());
    assert_eq!(journal_entries(&f), 1);
    let out = f.migrate(&["--host", "hostAG"]);
    out.assert_code(0);
    assert!(out.stderr.contains("left by an interrupted run"), "{}", out.stderr);
    f.check(&Cloud::new());
}

fn base64_of(hex_key: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_key).expect("hex"))
}
