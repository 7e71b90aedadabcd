//! The admin identity from clouds.yaml against the real Keystone: an operator's clouds.yaml (the
//! password kept in secure.yaml beside it) is found from the current directory, read by
//! `keymigrate::clouds`, and authenticates through `keymigrate::keystone` to a token scoped to
//! the admin project; a wrong password is refused without being repeated.

use std::path::Path;

use keymigrate::clouds;
use keymigrate::error::{exit, Error};
use keymigrate::http::RetryPolicy;
use keymigrate::keystone::Keystone;
use keymigrate::secret::Sensitive;

use crate::support::env;

/// Keystone's root, without `/v3`: clouds.yaml usually names it so, and keystoneauth (and
/// keymigrate) add the version.
fn keystone_root() -> String {
    env("KEYMIGRATE_TEST_KEYSTONE_URL").trim_end_matches('/').trim_end_matches("/v3").to_string()
}

fn retry() -> RetryPolicy {
    RetryPolicy { retries: 2, ..RetryPolicy::default() }
}

/// What Keystone says of `token`: `GET /v3/auth/tokens`, the token validating itself.
fn token_info(token: &Sensitive) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut answer = agent
        .get(format!("{}/auth/tokens", env("KEYMIGRATE_TEST_KEYSTONE_URL")))
        .header("X-Auth-Token", token.expose())
        .header("X-Subject-Token", token.expose())
        .call()
        .expect("GET /v3/auth/tokens");
    assert_eq!(answer.status(), 200, "Keystone does not accept the token");
    let body = answer.body_mut().read_to_vec().expect("token answer");
    serde_json::from_slice(&body).expect("token JSON")
}

/// clouds.yaml and secure.yaml in `dir`, for cloud `name`, with the given password.
fn write_admin_cloud(dir: &Path, name: &str, password: &str) {
    let clouds = format!(
        "clouds:\n  {name}:\n    auth:\n      auth_url: {}\n      username: admin\n      project_name: admin\n      \
         user_domain_name: Default\n      project_domain_name: Default\n    interface: public\n",
        keystone_root()
    );
    std::fs::write(dir.join("clouds.yaml"), clouds).expect("write clouds.yaml");
    // JSON is YAML, and keeps any character of the password intact.
    let secure = format!("clouds:\n  {name}:\n    auth:\n      password: {}\n", serde_json::to_string(password).expect("JSON"));
    std::fs::write(dir.join("secure.yaml"), secure).expect("write secure.yaml");
}

fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[test]
fn the_admin_cloud_gets_a_token_scoped_to_the_admin_project() {
    let password = env("KEYMIGRATE_TEST_ADMIN_PASSWORD");
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("km-admin-{}", suffix());
    write_admin_cloud(dir.path(), &name, &password);
    // The environment names the cloud; the home has no clouds.yaml.
    let vars = vec![("OS_CLOUD".to_string(), name.clone())];
    let cloud = clouds::cloud_name(None, vars.clone()).expect("OS_CLOUD");
    let identity = clouds::load(&cloud, vars, dir.path(), Some(&dir.path().join("home"))).expect("load the cloud");
    assert!(identity.origin.contains("secure.yaml"), "{}", identity.origin);
    assert!(!format!("{identity:?}").contains(&password), "Debug shows the password");

    let settings = identity.keystone_settings(std::time::Duration::from_secs(30)).expect("Keystone settings");
    assert_eq!(settings.auth_url, env("KEYMIGRATE_TEST_KEYSTONE_URL").trim_end_matches('/'));
    let keystone = Keystone::new(settings, retry()).expect("Keystone client");
    let token = keystone.token().expect("a token for the admin cloud");
    let info = token_info(&token);
    assert_eq!(info["token"]["user"]["name"], "admin");
    assert_eq!(info["token"]["project"]["name"], "admin");
    let roles: Vec<&str> =
        info["token"]["roles"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
    assert!(roles.contains(&"admin"), "the admin cloud's token carries the admin role: {roles:?}");
    // A project-scoped token comes with the catalog, where Barbican is found.
    let barbican = keystone.endpoint("key-manager", &identity.interface, identity.region_name.as_deref(), "").expect("catalog");
    assert!(barbican.starts_with("http"), "{barbican}");
}

#[test]
fn a_wrong_password_in_secure_yaml_is_refused_and_not_repeated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("km-admin-{}", suffix());
    let wrong = format!("not-the-password-{}", suffix());
    write_admin_cloud(dir.path(), &name, &wrong);
    let identity = clouds::load(&name, Vec::new(), dir.path(), None).expect("load the cloud");
    let keystone =
        Keystone::new(identity.keystone_settings(std::time::Duration::from_secs(30)).expect("settings"), retry()).expect("client");
    let e = keystone.token().expect_err("a wrong password");
    assert!(matches!(e, Error::Credentials(_)), "{e:?}");
    assert_eq!(e.exit_code(), exit::INTERVENTION);
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains(&wrong), "the password is repeated: {shown}");
    }
}

#[test]
fn an_application_credential_cloud_gets_a_token() {
    let secret = env("KEYMIGRATE_TEST_APPCRED_SECRET");
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("km-appcred-{}", suffix());
    let yaml = format!(
        "clouds:\n  {name}:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: {}\n      \
         application_credential_id: {}\n      application_credential_secret: {}\n",
        keystone_root(),
        env("KEYMIGRATE_TEST_APPCRED_ID"),
        serde_json::to_string(&secret).expect("JSON"),
    );
    let file = dir.path().join("elsewhere.yaml");
    std::fs::write(&file, yaml).expect("write");
    let vars = vec![("OS_CLIENT_CONFIG_FILE".to_string(), file.display().to_string())];
    let identity = clouds::load(&name, vars, &dir.path().join("cwd"), None).expect("load the cloud");
    assert!(!format!("{identity:?}").contains(&secret), "Debug shows the secret");
    let keystone =
        Keystone::new(identity.keystone_settings(std::time::Duration::from_secs(30)).expect("settings"), retry()).expect("client");
    let info = token_info(&keystone.token().expect("a token for the application credential"));
    assert_eq!(info["token"]["application_credential"]["id"], env("KEYMIGRATE_TEST_APPCRED_ID"));
}
