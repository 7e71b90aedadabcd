//! Role grants against the real Keystone, as its admin: a throwaway project per test (random
//! name, deleted at the end even when the test fails), the admin's roles there before and after
//! a grant, a token scoped to it, the revoke; a role held before, directly or through a group; a
//! deleted project; a non-admin identity; an application credential; lost answers, 5xx,
//! timeouts and a revoked token through the fault proxy.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};

use keymigrate::grants::{Grant, GrantError, Grants, Revoked};
use keymigrate::http::{RetryPolicy, Tls};
use keymigrate::keystone::{AuthMethod, Domain, Ident, Keystone, KeystoneSettings};
use keymigrate::secret::Sensitive;

use crate::support::env;
use crate::support::proxy::{Fault, Proxy};

fn default_domain(name: &str) -> Ident {
    Ident::Name { name: name.to_string(), domain: Domain::Id("default".into()) }
}

/// A password identity of the Default domain, scoped to `project`, as keymigrate would load it.
fn keystone(user: &str, password: &str, project: &str) -> Arc<Keystone> {
    keystone_at(&env("KEYMIGRATE_TEST_KEYSTONE_URL"), Duration::from_secs(30), user, password, project)
}

/// The same, through `auth_url` (a fault proxy) with this request timeout.
fn keystone_at(auth_url: &str, timeout: Duration, user: &str, password: &str, project: &str) -> Arc<Keystone> {
    let settings = KeystoneSettings {
        auth_url: auth_url.to_string(),
        method: AuthMethod::Password {
            user: default_domain(user),
            password: Sensitive::new(password),
            project: Some(default_domain(project)),
        },
        tls: Tls::default(),
        timeout,
    };
    let retry = RetryPolicy { retries: 2, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
    Arc::new(Keystone::new(settings, retry).expect("Keystone client"))
}

fn admin() -> Grants {
    Grants::new(keystone("admin", &env("KEYMIGRATE_TEST_ADMIN_PASSWORD"), "admin"))
}

/// Keystone's REST API as its admin, for what the tests set up by hand (retried after a 5xx,
/// as the test Keystone's SQLite sometimes answers "database is locked"); status 0 when no
/// answer came.
use crate::support::tenancy::keystone_call;

/// The admin's token, for the hand-made requests.
fn admin_token() -> String {
    let ks = keystone("admin", &env("KEYMIGRATE_TEST_ADMIN_PASSWORD"), "admin");
    ks.token().expect("admin token").expose().to_string()
}

/// A project of the Default domain with a random name, deleted (with its role assignments) on drop.
struct Throwaway {
    id: String,
    admin: String,
}

impl Throwaway {
    fn new() -> Throwaway {
        let admin = admin_token();
        let name = scratch_name();
        let body = json!({"project": {"name": name, "domain_id": "default", "description": "keymigrate grants test"}});
        let (status, answer) = keystone_call("POST", "/projects", &admin, Some(body));
        assert_eq!(status, 201, "create project {name}: {answer}");
        let id = answer["project"]["id"].as_str().expect("project id").to_string();
        Throwaway { id, admin }
    }

    /// Grants `role` to `user` here by hand, as an operator would have before keymigrate ran.
    fn grant_by_hand(&self, user: &str, role: &str) {
        let (status, answer) = keystone_call("PUT", &format!("/projects/{}/users/{user}/roles/{role}", self.id), &self.admin, None);
        assert_eq!(status, 204, "grant by hand: {answer}");
    }

    /// What Keystone itself says about `token` (`GET /v3/auth/tokens`).
    fn token_body(&self, token: &str) -> Value {
        let config = ureq::Agent::config_builder().http_status_as_error(false).build();
        let url = format!("{}/auth/tokens?nocatalog", env("KEYMIGRATE_TEST_KEYSTONE_URL"));
        let req = ureq::http::Request::builder()
            .method("GET")
            .uri(&url)
            .header("X-Auth-Token", &self.admin)
            .header("X-Subject-Token", token)
            .body(())
            .expect("request");
        let mut resp = ureq::Agent::new_with_config(config).run(req).expect("validate token");
        assert_eq!(resp.status().as_u16(), 200);
        serde_json::from_slice(&resp.body_mut().read_to_vec().expect("body")).expect("JSON")
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        delete(&format!("/projects/{}", self.id), &self.admin);
    }
}

/// Deletes what a test created. Once more with a new token after a 401: the admin's tokens
/// are revoked when something else revokes them (a group the admin is in, deleted), and a
/// failing test should still leave nothing behind.
fn delete(path: &str, admin: &str) {
    let (mut status, mut answer) = keystone_call("DELETE", path, admin, None);
    if status == 401 {
        // Keystone's revocations count whole seconds: a token from the same second is revoked too.
        std::thread::sleep(Duration::from_millis(1100));
        (status, answer) = keystone_call("DELETE", path, &admin_token(), None);
    }
    if status != 204 && !std::thread::panicking() {
        panic!("delete {path}: {status} {answer}");
    }
}

/// No error or Debug text carries a password or token.
fn assert_no_secret(text: &str) {
    for var in ["KEYMIGRATE_TEST_ADMIN_PASSWORD", "KEYMIGRATE_TEST_ALICE_PASSWORD", "KEYMIGRATE_TEST_APPCRED_SECRET"] {
        assert!(!text.contains(&env(var)), "{var} in: {text}");
    }
}

#[test]
fn grant_gives_a_scoped_token_and_revoke_removes_exactly_it() {
    let project = Throwaway::new();
    let grants = admin();
    let me = grants.whoami().expect("whoami");
    assert!(!me.application_credential);
    let member = grants.role_id("member").expect("member role");
    assert!(grants.project_exists(&project.id).expect("exists"));

    assert_eq!(grants.roles_in(&me.user_id, &project.id).expect("roles"), Vec::<String>::new());
    let grant = grants
        .needed(&me.user_id, &project.id, std::slice::from_ref(&member), &member)
        .expect("needed")
        .expect("a new project needs a grant");
    assert_eq!(grant, Grant { project: project.id.clone(), user: me.user_id.clone(), role: member.clone() });

    grants.grant(&grant).expect("grant");
    let held = grants.roles_in(&me.user_id, &project.id).expect("roles");
    let reader = grants.role_id("reader").expect("reader role");
    assert_eq!(held, [member.clone(), reader], "the role granted and the one it implies");
    assert!(grants.needed(&me.user_id, &project.id, std::slice::from_ref(&member), &member).expect("needed").is_none());
    // Granting again (an answer lost, the request sent again) changes nothing.
    grants.grant(&grant).expect("grant again");

    let scoped = grants.scoped(&project.id).expect("scoped token");
    let token = scoped.token().expect("token");
    let body = project.token_body(token.expose());
    assert_eq!(body["token"]["project"]["id"], project.id.as_str());
    assert_eq!(body["token"]["user"]["id"], me.user_id.as_str());
    assert_eq!(scoped.token().expect("token again"), token, "a fresh token is reused, not fetched again");
    // Renewed (here after a 401), the token keeps the project's scope.
    scoped.invalidate(&token);
    let renewed = scoped.token().expect("renewed token");
    assert_ne!(renewed, token);
    assert_eq!(project.token_body(renewed.expose())["token"]["project"]["id"], project.id.as_str());
    assert_eq!(Grants::new(scoped.clone()).whoami().expect("whoami").project_id.as_deref(), Some(project.id.as_str()));

    assert_eq!(grants.revoke(&grant).expect("revoke"), Revoked::Revoked);
    assert_eq!(grants.roles_in(&me.user_id, &project.id).expect("roles"), Vec::<String>::new());
    assert_eq!(grants.revoke(&grant).expect("revoke again"), Revoked::AlreadyGone);
    // Without the role, Keystone scopes no token there.
    let e = grants.scoped(&project.id).err().expect("no token without a role");
    assert!(matches!(&e, GrantError::NotScoped { project: p } if *p == project.id), "{e:?}");
    assert_eq!(e.blocked_project(), Some(project.id.as_str()));
    assert_no_secret(&format!("{e} {e:?}"));
}

#[test]
fn lost_answers_5xx_timeouts_and_revoked_tokens_are_retried() {
    let project = Throwaway::new();
    let proxy = Proxy::start(&env("KEYMIGRATE_TEST_KEYSTONE_URL"));
    // Long enough for the shared Keystone's answers, shorter than the stall below.
    let ks = keystone_at(&format!("{}/v3", proxy.url), Duration::from_secs(6), "admin", &env("KEYMIGRATE_TEST_ADMIN_PASSWORD"), "admin");
    let grants = Grants::new(ks);
    let me = grants.whoami().expect("whoami");
    let member = grants.role_id("member").expect("member role");
    let grant = Grant { project: project.id.clone(), user: me.user_id.clone(), role: member.clone() };

    // The grant is made but its answer lost, the retry meets a 503, the next one succeeds:
    // granting what is held already is no error.
    proxy.rule("PUT", "/roles/", 1, Fault::DropAnswer);
    // (Each rule counts the requests no earlier rule took: this is the second PUT.)
    proxy.rule("PUT", "/roles/", 1, Fault::Status(503));
    grants.grant(&grant).expect("grant through lost answers");
    assert_eq!(proxy.injected(), 2);
    // The admin's token refused once (revoked): authenticate again and carry on.
    proxy.rule("GET", "/role_assignments", 1, Fault::Revoke);
    // An answer later than the timeout: asked again.
    proxy.rule("GET", "/role_assignments", 1, Fault::Stall(Duration::from_secs(7)));
    let held = grants.roles_in(&me.user_id, &project.id).expect("roles through a revoked token and a timeout");
    assert!(held.contains(&member), "{held:?}");
    assert_eq!(proxy.injected(), 4);

    // The revoke is made but its answer lost: the retry finds nothing left to revoke.
    proxy.rule("DELETE", "/roles/", 1, Fault::DropAnswer);
    assert_eq!(grants.revoke(&grant).expect("revoke through a lost answer"), Revoked::AlreadyGone);
    assert_eq!(grants.roles_in(&me.user_id, &project.id).expect("roles"), Vec::<String>::new());

    // 5xx on every attempt: the retries give up with an error that blocks no single project.
    proxy.rule("PUT", "/roles/", 0, Fault::Status(500));
    let e = grants.grant(&grant).expect_err("Keystone failing");
    assert!(matches!(&e, GrantError::Other(_)) && e.blocked_project().is_none(), "{e:?}");
    assert!(e.to_string().contains("gave up after 3 attempts"), "{e}");
    assert_eq!(grants.roles_in(&me.user_id, &project.id).expect("roles"), Vec::<String>::new());
}

#[test]
fn a_role_held_before_is_reported_and_needs_no_grant() {
    let project = Throwaway::new();
    let grants = admin();
    let me = grants.whoami().expect("whoami");
    let member = grants.role_id("member").expect("member role");
    let reader = grants.role_id("reader").expect("reader role");
    // `reader` alone is not enough to create secrets: a grant is needed.
    project.grant_by_hand(&me.user_id, &reader);
    assert_eq!(grants.roles_in(&me.user_id, &project.id).expect("roles"), vec![reader.clone()]);
    assert!(grants.needed(&me.user_id, &project.id, std::slice::from_ref(&member), &member).expect("needed").is_some());
    // `member`, granted by hand, is held and reported, with the role it implies.
    project.grant_by_hand(&me.user_id, &member);
    let held = grants.roles_in(&me.user_id, &project.id).expect("roles");
    assert!(held.contains(&member) && held.contains(&reader), "{held:?}");
    assert_eq!(grants.needed(&me.user_id, &project.id, std::slice::from_ref(&member), &member).expect("needed"), None);
    let scoped = grants.scoped(&project.id).expect("scoped through the role held before");
    assert!(!scoped.token().expect("token").is_empty());
}

#[test]
fn a_role_held_through_a_group_counts() {
    // A user of its own: removing a user from a group, or deleting the group, revokes every
    // token of that user, which would break any other test running as the admin meanwhile.
    let project = Throwaway::new();
    let grants = admin();
    let member = grants.role_id("member").expect("member role");
    let user = Scratch::new(&project.admin, "users", json!({"user": {"name": scratch_name(), "domain_id": "default"}}));
    let group = Scratch::new(&project.admin, "groups", json!({"group": {"name": scratch_name(), "domain_id": "default"}}));
    let (status, answer) = keystone_call("PUT", &format!("/groups/{}/users/{}", group.id, user.id), &project.admin, None);
    assert_eq!(status, 204, "add to group: {answer}");
    assert!(grants.needed(&user.id, &project.id, std::slice::from_ref(&member), &member).expect("needed").is_some());
    let path = format!("/projects/{}/groups/{}/roles/{member}", project.id, group.id);
    let (status, answer) = keystone_call("PUT", &path, &project.admin, None);
    assert_eq!(status, 204, "grant to group: {answer}");
    let held = grants.roles_in(&user.id, &project.id).expect("roles");
    assert!(held.contains(&member), "{held:?}");
    assert_eq!(grants.needed(&user.id, &project.id, std::slice::from_ref(&member), &member).expect("needed"), None);
}

fn scratch_name() -> String {
    format!("kmtest-grants-{:012x}", rand::rng().random_range(0..u64::MAX) % (1 << 48))
}

/// A Keystone user or group created for one test, deleted on drop.
struct Scratch {
    id: String,
    path: String,
    admin: String,
}

impl Scratch {
    /// `POST /v3/{kind}` with `body`; `kind` is `users` or `groups`.
    fn new(admin: &str, kind: &str, body: Value) -> Scratch {
        let (status, answer) = keystone_call("POST", &format!("/{kind}"), admin, Some(body));
        assert_eq!(status, 201, "create {kind}: {answer}");
        let one = kind.trim_end_matches('s');
        let id = answer[one]["id"].as_str().expect("id").to_string();
        Scratch { path: format!("/{kind}/{id}"), id, admin: admin.to_string() }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        delete(&self.path, &self.admin);
    }
}

#[test]
fn a_missing_project_is_the_typed_not_found_error() {
    let grants = admin();
    let me = grants.whoami().expect("whoami");
    let member = grants.role_id("member").expect("member role");
    let gone = format!("{:032x}", rand::rng().random_range(0..u128::MAX));
    assert!(!grants.project_exists(&gone).expect("exists"));
    let is_gone = |e: &GrantError| matches!(e, GrantError::ProjectGone { project } if *project == gone);
    let grant = Grant { project: gone.clone(), user: me.user_id.clone(), role: member.clone() };
    let e = grants.grant(&grant).expect_err("grant in a missing project");
    assert!(is_gone(&e), "{e:?}");
    assert_eq!(e.to_string(), format!("project {gone} no longer exists in Keystone"));
    assert_eq!(e.blocked_project(), Some(gone.as_str()));
    let e = grants.roles_in(&me.user_id, &gone).expect_err("roles in a missing project");
    assert!(is_gone(&e), "{e:?}");
    let e = grants.scoped(&gone).err().expect("token for a missing project");
    assert!(is_gone(&e), "{e:?}");
    // Deleting a project deletes its assignments: nothing left to revoke.
    assert_eq!(grants.revoke(&grant).expect("revoke"), Revoked::AlreadyGone);
    // A missing role is not a missing project.
    let project = Throwaway::new();
    let no_role = Grant { project: project.id.clone(), user: me.user_id, role: "no-such-role".into() };
    let e = grants.grant(&no_role).expect_err("grant of a missing role");
    assert!(matches!(&e, GrantError::Other(_)) && e.to_string().contains("Could not find role"), "{e:?}");
    assert!(grants.role_id("no-such-role").is_err());
}

#[test]
fn a_non_admin_identity_may_not_grant() {
    let project = Throwaway::new();
    let alice = Grants::new(keystone("alice", &env("KEYMIGRATE_TEST_ALICE_PASSWORD"), "demo"));
    let me = alice.whoami().expect("whoami");
    assert_eq!(me.user_id, env("KEYMIGRATE_TEST_ALICE_ID"));
    let member = admin().role_id("member").expect("member role");
    let grant = Grant { project: project.id.clone(), user: me.user_id.clone(), role: member };
    let e = alice.grant(&grant).expect_err("alice may not grant");
    assert!(matches!(&e, GrantError::Forbidden { project: p, action: "grant", .. } if *p == project.id), "{e:?}");
    assert!(e.to_string().starts_with(&format!("the identity may not grant roles in project {}", project.id)), "{e}");
    assert_eq!(e.blocked_project(), Some(project.id.as_str()));
    assert_no_secret(&format!("{e} {e:?}"));
    let e = alice.revoke(&grant).expect_err("alice may not revoke");
    assert!(matches!(&e, GrantError::Forbidden { action: "revoke", .. }), "{e:?}");
    // Listing assignments needs an admin too: that stops the run, it blocks no single project.
    let e = alice.roles_in(&me.user_id, &project.id).expect_err("alice may not list assignments");
    assert!(matches!(&e, GrantError::Other(_)) && e.blocked_project().is_none(), "{e:?}");
}

#[test]
fn an_application_credential_serves_its_own_project_only() {
    let settings = KeystoneSettings {
        auth_url: env("KEYMIGRATE_TEST_KEYSTONE_URL"),
        method: AuthMethod::ApplicationCredential {
            credential: Ident::Id(env("KEYMIGRATE_TEST_APPCRED_ID")),
            user: None,
            secret: Sensitive::new(env("KEYMIGRATE_TEST_APPCRED_SECRET")),
        },
        tls: Tls::default(),
        timeout: Duration::from_secs(30),
    };
    let grants = Grants::new(Arc::new(Keystone::new(settings, RetryPolicy::default()).expect("Keystone client")));
    let me = grants.whoami().expect("whoami");
    assert!(me.application_credential);
    let own = me.project_id.clone().expect("an application credential's token has a project");
    let scoped = grants.scoped(&own).expect("its own project");
    assert!(!scoped.token().expect("token").is_empty());
    let e = grants.scoped(&env("KEYMIGRATE_TEST_DEMO_PROJECT_ID")).err().expect("another project");
    assert!(matches!(&e, GrantError::NeedsPassword { .. }), "{e:?}");
    assert!(e.to_string().contains("needs a password identity"), "{e}");
    assert_no_secret(&format!("{e} {e:?}"));
}
