//! Unit tests of clouds.yaml: where it is found, how secure.yaml is merged, each auth type, the
//! TLS options, every error (one line, exit 127, no secret), and arbitrary YAML never panicking.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::error::exit;

const SECRET: &str = "s3cr3t-Pa55";
const CRED_SECRET: &str = "appcred-SECRET-value";

/// A current directory, a home and a site directory, each empty until a test writes a file.
struct Dirs {
    _tmp: tempfile::TempDir,
    cwd: PathBuf,
    home: PathBuf,
    site: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = tempfile::tempdir().expect("tempdir");
        let [cwd, home, site] = ["cwd", "home", "site"].map(|d| tmp.path().join(d));
        for d in [&cwd, &home.join(".config/openstack"), &site] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        Dirs { _tmp: tmp, cwd, home, site }
    }

    fn user_dir(&self) -> PathBuf {
        self.home.join(".config/openstack")
    }

    fn write(&self, dir: &Path, file: &str, text: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// openstacksdk's order with the site directory in a temporary place (not /etc).
    fn search(&self) -> SearchPath {
        SearchPath { config_file: None, secure_file: None, dirs: vec![self.cwd.clone(), self.user_dir(), self.site.clone()] }
    }

    fn load(&self, name: &str) -> Result<CloudIdentity> {
        load_from(name, &self.search())
    }
}

fn admin_yaml(url: &str) -> String {
    format!(
        "clouds:\n  admin:\n    auth:\n      auth_url: {url}\n      username: admin\n      password: {SECRET}\n      \
         project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n"
    )
}

/// The identity of a one-cloud file written in the current directory.
fn parse(yaml: &str) -> Result<CloudIdentity> {
    let dirs = Dirs::new();
    dirs.write(&dirs.cwd, "clouds.yaml", yaml);
    dirs.load("c")
}

/// The error of a one-cloud file, checked for the rules every error follows.
fn parse_err(yaml: &str) -> String {
    let e = parse(yaml).expect_err("an error");
    check_error(&e)
}

fn check_error(e: &Error) -> String {
    let text = e.to_string();
    assert_eq!(e.exit_code(), exit::USAGE, "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    for secret in [SECRET, CRED_SECRET] {
        assert!(!text.contains(secret), "leaks a secret: {text}");
        assert!(!format!("{e:?}").contains(secret), "Debug leaks a secret: {e:?}");
    }
    text
}

fn password_parts(id: &CloudIdentity) -> (&Ident, &Sensitive, Option<&Ident>) {
    match &id.method {
        AuthMethod::Password { user, password, project } => (user, password, project.as_ref()),
        other => panic!("not a password identity: {other:?}"),
    }
}

fn named(name: &str, domain: Domain) -> Ident {
    Ident::Name { name: name.into(), domain }
}

#[test]
fn the_current_directory_comes_before_the_users_and_the_sites() {
    let dirs = Dirs::new();
    dirs.write(&dirs.site, "clouds.yaml", &admin_yaml("http://site:5000"));
    assert_eq!(dirs.load("admin").expect("site").auth_url, "http://site:5000");
    dirs.write(&dirs.user_dir(), "clouds.yaml", &admin_yaml("http://user:5000"));
    assert_eq!(dirs.load("admin").expect("user").auth_url, "http://user:5000");
    let cwd_file = dirs.write(&dirs.cwd, "clouds.yaml", &admin_yaml("http://cwd:5000"));
    let id = dirs.load("admin").expect("cwd");
    assert_eq!(id.auth_url, "http://cwd:5000");
    assert_eq!(id.origin, cwd_file.display().to_string());
    assert!(id.describe().contains("cloud 'admin' in "), "{}", id.describe());
}

#[test]
fn os_client_config_file_comes_first() {
    let dirs = Dirs::new();
    dirs.write(&dirs.cwd, "clouds.yaml", &admin_yaml("http://cwd:5000"));
    let other = dirs.write(&dirs.site, "elsewhere.yaml", &admin_yaml("http://env:5000"));
    let env = vec![("OS_CLIENT_CONFIG_FILE".to_string(), other.display().to_string())];
    let id = load("admin", env, &dirs.cwd, Some(&dirs.home)).expect("load");
    assert_eq!(id.auth_url, "http://env:5000");
    // Relative to the current directory, as Python opens it.
    let env = vec![("OS_CLIENT_CONFIG_FILE".to_string(), "../site/elsewhere.yaml".to_string())];
    assert_eq!(load("admin", env, &dirs.cwd, Some(&dirs.home)).expect("load").auth_url, "http://env:5000");
}

#[test]
fn only_the_first_file_found_is_read_and_yaml_comes_before_yml_and_json() {
    let dirs = Dirs::new();
    dirs.write(&dirs.user_dir(), "clouds.yaml", &admin_yaml("http://user:5000"));
    let first = dirs.write(&dirs.cwd, "clouds.json", r#"{"clouds": {"other": {"auth": {"auth_url": "http://x"}}}}"#);
    // openstacksdk reads the first file that exists, whether or not it has the cloud.
    let e = check_error(&dirs.load("admin").expect_err("not in the first file"));
    assert!(e.contains(&first.display().to_string()) && e.contains("clouds.admin") && e.contains("defines other"), "{e}");
    dirs.write(&dirs.cwd, "clouds.yml", &admin_yaml("http://yml:5000"));
    assert_eq!(dirs.load("admin").expect("yml").auth_url, "http://yml:5000");
    dirs.write(&dirs.cwd, "clouds.yaml", &admin_yaml("http://yaml:5000"));
    assert_eq!(dirs.load("admin").expect("yaml").auth_url, "http://yaml:5000");
}

#[test]
fn the_search_path_follows_openstacksdk_on_linux() {
    let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let s = SearchPath::new(env(&[]), Path::new("/w"), Some(Path::new("/h")));
    let dirs: Vec<&str> = s.dirs.iter().filter_map(|d| d.to_str()).collect();
    assert_eq!(dirs, ["/w", "/h/.config/openstack", "/etc/xdg/openstack", "/etc/openstack"]);
    assert_eq!(s.candidates("secure")[..3], [
        PathBuf::from("/w/secure.yaml"),
        PathBuf::from("/w/secure.yml"),
        PathBuf::from("/w/secure.json")
    ]);
    let s = SearchPath::new(
        env(&[("XDG_CONFIG_HOME", "/x"), ("XDG_CONFIG_DIRS", "/a:/b"), ("OS_CLIENT_SECURE_FILE", "s.yaml")]),
        Path::new("/w"),
        Some(Path::new("/h")),
    );
    let dirs: Vec<&str> = s.dirs.iter().filter_map(|d| d.to_str()).collect();
    assert_eq!(dirs, ["/w", "/x/openstack", "/h/.config/openstack", "/a/openstack", "/b/openstack", "/etc/openstack"]);
    assert_eq!(s.secure_file, Some(PathBuf::from("/w/s.yaml")));
    assert_eq!(s.config_file, None);
}

#[test]
fn secure_yaml_is_merged_over_clouds_yaml_from_any_directory_of_the_search() {
    let dirs = Dirs::new();
    dirs.write(
        &dirs.cwd,
        "clouds.yaml",
        "clouds:\n  admin:\n    auth:\n      auth_url: http://k:5000\n      username: admin\n      password: placeholder\n      \
         user_domain_name: Default\n    region_name: One\n",
    );
    let secure = dirs.write(
        &dirs.user_dir(),
        "secure.yaml",
        &format!("clouds:\n  admin:\n    auth:\n      password: {SECRET}\n      project_id: p-1\n    region_name: Two\n"),
    );
    let id = dirs.load("admin").expect("merged");
    let (user, password, project) = password_parts(&id);
    assert_eq!(user, &named("admin", Domain::Name("Default".into())));
    assert_eq!(password.expose(), SECRET, "the secure file's password wins");
    assert_eq!(project, Some(&Ident::Id("p-1".into())), "auth is merged key by key");
    assert_eq!(id.region_name.as_deref(), Some("Two"));
    assert!(id.origin.contains(&secure.display().to_string()), "{}", id.origin);
    assert!(!format!("{id:?}").contains(SECRET));
}

#[test]
fn a_secure_file_alone_is_enough_and_os_client_secure_file_comes_first() {
    let dirs = Dirs::new();
    dirs.write(&dirs.cwd, "secure.yaml", &admin_yaml("http://cwd-secure:5000"));
    assert_eq!(dirs.load("admin").expect("secure only").auth_url, "http://cwd-secure:5000");
    let mut search = dirs.search();
    search.secure_file = Some(dirs.write(&dirs.site, "mine.yaml", &admin_yaml("http://mine")));
    assert_eq!(load_from("admin", &search).expect("explicit secure file").auth_url, "http://mine");
}

#[test]
fn password_by_names_with_openstacksdk_defaults() {
    let id = parse(&admin_yaml("http://k:5000").replace("admin:", "c:")).expect("load");
    let (user, password, project) = password_parts(&id);
    assert_eq!(user, &named("admin", Domain::Name("Default".into())));
    assert_eq!(password.expose(), SECRET);
    assert_eq!(project, Some(&named("admin", Domain::Name("Default".into()))));
    assert_eq!(id.interface, "public");
    assert_eq!(id.region_name.as_deref(), Some("RegionOne"));
    assert_eq!(id.tls, CloudTls::default());
    let s = id.keystone_settings(Duration::from_secs(7)).expect("settings");
    assert_eq!(s.auth_url, "http://k:5000/v3");
    assert_eq!(s.timeout, Duration::from_secs(7));
    assert!(!s.tls.insecure && s.tls.ca_file.is_none());
    assert!(!format!("{id:?} {s:?}").contains(SECRET));
}

#[test]
fn password_by_ids_and_v3password() {
    let id = parse(&format!(
        "clouds:\n  c:\n    auth_type: v3password\n    auth:\n      auth_url: https://k/identity/v3\n      user_id: u-1\n      \
         password: {SECRET}\n      project_id: p-1\n"
    ))
    .expect("load");
    let (user, _, project) = password_parts(&id);
    assert_eq!((user, project), (&Ident::Id("u-1".into()), Some(&Ident::Id("p-1".into()))));
    assert_eq!(id.keystone_settings(Duration::from_secs(1)).expect("settings").auth_url, "https://k/identity/v3");
}

#[test]
fn domain_fallbacks_top_level_options_and_old_spellings() {
    // domain_name fills both user and project domains when a project is named.
    let id = parse(&format!(
        "clouds:\n  c:\n    auth:\n      auth-url: http://k\n      user-name: admin\n      password: {SECRET}\n      \
         tenant_name: admin\n      domain_name: Dom\n"
    ))
    .expect("load");
    let (user, _, project) = password_parts(&id);
    assert_eq!(user, &named("admin", Domain::Name("Dom".into())));
    assert_eq!(project, Some(&named("admin", Domain::Name("Dom".into()))));
    // Options outside auth: are auth options too; a project's at the top level wins.
    let id = parse(&format!(
        "clouds:\n  c:\n    auth_url: http://k\n    username: u\n    password: {SECRET}\n    project_name: top\n    \
         auth:\n      project_name: inner\n      default_domain_id: default\n"
    ))
    .expect("load");
    let (user, _, project) = password_parts(&id);
    assert_eq!(user, &named("u", Domain::Id("default".into())));
    assert_eq!(project, Some(&named("top", Domain::Id("default".into()))));
    // A specific domain beats the shared one; an ID beats a name; numbers are text.
    let id = parse(&format!(
        "clouds:\n  c:\n    auth:\n      auth_url: http://k\n      username: u\n      password: {SECRET}\n      \
         project_id: 12345\n      domain_id: shared\n      user_domain_id: mine\n      user_domain_name: ignored\n"
    ))
    .expect("load");
    let (user, _, project) = password_parts(&id);
    assert_eq!(user, &named("u", Domain::Id("mine".into())));
    assert_eq!(project, Some(&Ident::Id("12345".into())));
    let id = parse(&format!(
        "clouds:\n  c:\n    domain_id: shared\n    auth:\n      auth_url: http://k\n      username: u\n      \
         password: {SECRET}\n      project_name: p\n"
    ))
    .expect("load");
    let (user, _, project) = password_parts(&id);
    assert_eq!(user, &named("u", Domain::Id("shared".into())));
    assert_eq!(project, Some(&named("p", Domain::Id("shared".into()))));
}

#[test]
fn a_password_identity_without_a_project_is_unscoped() {
    let id = parse(&format!(
        "clouds:\n  c:\n    auth:\n      auth_url: http://k\n      user_id: u\n      password: {SECRET}\n"
    ))
    .expect("load");
    assert_eq!(password_parts(&id).2, None);
}

#[test]
fn application_credentials_by_id_and_by_name() {
    let id = parse(&format!(
        "clouds:\n  c:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: http://k:5000/v3\n      \
         application_credential_id: ac-1\n      application_credential_secret: {CRED_SECRET}\n      project_name: ignored\n"
    ))
    .expect("load");
    match &id.method {
        AuthMethod::ApplicationCredential { credential, user, secret } => {
            assert_eq!(credential, &Ident::Id("ac-1".into()));
            assert_eq!(user, &None);
            assert_eq!(secret.expose(), CRED_SECRET);
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{id:?}").contains(CRED_SECRET));
    let e = check_error(&id.keystone_settings_in_project("p-2", Duration::from_secs(1)).expect_err("bound to its project"));
    assert!(e.contains("own project") && e.contains("p-2"), "{e}");
    let id = parse(&format!(
        "clouds:\n  c:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: http://k\n      \
         application_credential_name: ac\n      application_credential_secret: {CRED_SECRET}\n      username: admin\n      \
         user_domain_name: Default\n"
    ))
    .expect("load");
    match &id.method {
        AuthMethod::ApplicationCredential { credential: Ident::Name { name, .. }, user, .. } => {
            assert_eq!(name, "ac");
            assert_eq!(user, &Some(named("admin", Domain::Name("Default".into()))));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_password_identity_can_be_scoped_to_another_project() {
    let id = parse(&admin_yaml("http://k").replace("admin:", "c:")).expect("load");
    let s = id.keystone_settings_in_project("p-9", Duration::from_secs(1)).expect("settings");
    assert!(matches!(s.method, AuthMethod::Password { project: Some(Ident::Id(ref p)), .. } if p == "p-9"));
}

#[test]
fn region_and_interface() {
    let base = format!("clouds:\n  c:\n    auth:\n      auth_url: http://k\n      user_id: u\n      password: {SECRET}\n");
    let id = parse(&format!("{base}    regions:\n      - name: R1\n      - R2\n    region_name: R3\n    interface: internalURL\n"))
        .expect("load");
    assert_eq!((id.region_name.as_deref(), id.interface.as_str()), (Some("R1"), "internal"));
    let id = parse(&format!("{base}    region_name: R4,R5\n    endpoint_type: admin\n")).expect("load");
    assert_eq!((id.region_name.as_deref(), id.interface.as_str()), (Some("R4"), "admin"));
    let e = parse_err(&format!("{base}    interface: sideways\n"));
    assert!(e.contains("clouds.c.interface") && e.contains("sideways"), "{e}");
}

#[test]
fn tls_options() {
    let dirs = Dirs::new();
    let ca = dirs.write(&dirs.site, "ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let base = format!("clouds:\n  c:\n    auth:\n      auth_url: https://k\n      user_id: u\n      password: {SECRET}\n");
    let tls = |extra: &str| -> CloudTls {
        dirs.write(&dirs.cwd, "clouds.yaml", &format!("{base}{extra}"));
        dirs.load("c").expect("load").tls
    };
    let ca_str = ca.display().to_string();
    assert_eq!(tls(&format!("    cacert: {ca_str}\n")), CloudTls { ca_file: Some(ca.clone()), ..CloudTls::default() });
    // verify: false turns verification off, and the CA file is then unused.
    assert_eq!(tls(&format!("    cacert: {ca_str}\n    verify: false\n")), CloudTls { insecure: true, ..CloudTls::default() });
    assert_eq!(tls("    insecure: 'True'\n"), CloudTls { insecure: true, ..CloudTls::default() });
    assert_eq!(tls("    insecure: yes\n"), CloudTls { insecure: true, ..CloudTls::default() });
    assert_eq!(tls("    verify: no\n"), CloudTls { insecure: true, ..CloudTls::default() });
    assert_eq!(tls("    insecure: 'nope'\n"), CloudTls::default());
    assert_eq!(tls("    insecure: false\n    verify: true\n"), CloudTls::default());
    // verify may name the CA file itself.
    assert_eq!(tls(&format!("    verify: {ca_str}\n")), CloudTls { ca_file: Some(ca.clone()), ..CloudTls::default() });
    let settings = dirs.load("c").expect("load").keystone_settings(Duration::from_secs(1)).expect("settings");
    assert_eq!(settings.tls.ca_file.as_deref(), Some(ca.as_path()));
    // A client certificate is read and handed to the HTTP client; its key may follow the
    // certificate in `cert`; a key alone is refused.
    let t = tls("    cert: /c.pem\n    key: /k.pem\n");
    assert_eq!((t.client_cert, t.client_key), (Some(PathBuf::from("/c.pem")), Some(PathBuf::from("/k.pem"))));
    let files = dirs.load("c").expect("load").keystone_settings(Duration::from_secs(1)).expect("cert").tls.client_cert;
    let files = files.expect("client certificate");
    assert_eq!((files.cert.as_path(), files.key.as_path()), (Path::new("/c.pem"), Path::new("/k.pem")));
    assert!(files.key_option.ends_with("clouds.c.key"), "{}", files.key_option);
    tls("    cert: /both.pem\n");
    let files = dirs.load("c").expect("load").keystone_settings(Duration::from_secs(1)).expect("cert").tls.client_cert;
    assert_eq!(files.expect("client certificate").key, PathBuf::from("/both.pem"));
    tls("    key: /k.pem\n");
    let e = check_error(&dirs.load("c").expect("load").keystone_settings(Duration::from_secs(1)).expect_err("key alone"));
    assert!(e.contains("clouds.c.key") && e.contains("without cert"), "{e}");
    // A CA file that is not there is named with the cloud, not as a cinder.conf option, when
    // the HTTP client is made from the settings.
    let client_error = |identity: CloudIdentity| {
        let settings = identity.keystone_settings(Duration::from_secs(1)).expect("settings");
        match crate::keystone::Keystone::new(settings, crate::http::RetryPolicy::default()) {
            Ok(_) => panic!("a client with an unusable CA file"),
            Err(e) => e,
        }
    };
    tls("    cacert: /nonexistent/ca.pem\n");
    let e = check_error(&client_error(dirs.load("c").expect("load")));
    assert!(e.contains("clouds.c.cacert") && e.contains("/nonexistent/ca.pem"), "{e}");
    let not_pem = dirs.write(&dirs.site, "not.pem", "text");
    tls(&format!("    cacert: {}\n", not_pem.display()));
    let e = check_error(&client_error(dirs.load("c").expect("load")));
    assert!(e.contains("clouds.c.cacert") && e.contains("holds no PEM certificate"), "{e}");
}

#[test]
fn no_file_anywhere_lists_where_it_looked() {
    let dirs = Dirs::new();
    let e = check_error(&dirs.load("admin").expect_err("no file"));
    assert!(e.contains("cloud 'admin'") && e.contains("no clouds.yaml found"), "{e}");
    assert!(e.contains(&dirs.cwd.join("clouds.yaml").display().to_string()), "{e}");
    assert!(e.contains(&dirs.site.join("clouds.yaml").display().to_string()), "{e}");
}

#[test]
fn an_os_client_config_file_that_is_not_there_is_an_error() {
    let dirs = Dirs::new();
    dirs.write(&dirs.cwd, "clouds.yaml", &admin_yaml("http://k"));
    let mut search = dirs.search();
    search.config_file = Some(dirs.site.join("missing.yaml"));
    let e = check_error(&load_from("admin", &search).expect_err("missing"));
    assert!(e.contains("missing.yaml") && e.contains("OS_CLIENT_CONFIG_FILE"), "{e}");
}

#[test]
fn a_missing_cloud_names_the_file_and_the_clouds_it_has() {
    let e = parse_err(&admin_yaml("http://k"));
    assert!(e.contains("clouds.yaml: clouds.c: no such cloud; it defines admin"), "{e}");
    let e = parse_err("other: 1\n");
    assert!(e.contains("no `clouds:` mapping"), "{e}");
    let e = parse_err("clouds: {}\n");
    assert!(e.contains("defines no cloud"), "{e}");
}

#[test]
fn bad_yaml_names_the_file_and_the_line_without_its_content() {
    let e = parse_err(&format!("clouds:\n  c:\n    auth:\n      password: {SECRET}\n     bad: [indent\n"));
    assert!(e.contains("clouds.yaml") && e.contains("not valid YAML at line 5"), "{e}");
    let e = parse_err(&format!("clouds:\n  c:\n    auth: {{password: \"{SECRET}\n"));
    assert!(e.contains("not valid YAML at line"), "{e}");
    let e = parse_err("- a list\n");
    assert!(e.contains("not a mapping"), "{e}");
    let e = parse_err("");
    assert!(e.contains("is empty"), "{e}");
}

#[test]
fn unsupported_auth_types_are_named() {
    let e = parse_err(&format!("clouds:\n  c:\n    auth_type: ''\n    auth:\n      auth_url: http://k\n      password: {SECRET}\n"));
    assert!(e.contains("clouds.c.auth_type: 'none' is not supported"), "{e}");
    for t in ["token", "v3oidcpassword", "admin_token"] {
        let e = parse_err(&format!("clouds:\n  c:\n    auth_type: {t}\n    auth:\n      auth_url: http://k\n      password: {SECRET}\n"));
        assert!(e.contains("clouds.c.auth_type") && e.contains(&format!("'{t}' is not supported")), "{e}");
    }
}

#[test]
fn missing_settings_name_their_key() {
    let cases = [
        (format!("clouds:\n  c:\n    auth:\n      username: u\n      password: {SECRET}\n"), "clouds.c.auth.auth_url: is not set"),
        ("clouds:\n  c:\n    region_name: R\n".to_string(), "clouds.c.auth.auth_url: is not set"),
        ("clouds:\n  c:\n    auth:\n      auth_url: http://k\n      user_id: u\n".to_string(), "clouds.c.auth.password: is not set"),
        (format!("clouds:\n  c:\n    auth:\n      auth_url: http://k\n      password: {SECRET}\n"), "clouds.c.auth.username: is not set"),
        (
            format!("clouds:\n  c:\n    auth:\n      auth_url: http://k\n      username: u\n      password: {SECRET}\n"),
            "clouds.c.auth.username: needs user_domain_name",
        ),
        (
            format!("clouds:\n  c:\n    auth:\n      auth_url: http://k\n      user_id: u\n      password: {SECRET}\n      project_name: p\n"),
            "clouds.c.auth.project_name: needs project_domain_name",
        ),
        (
            format!("clouds:\n  c:\n    auth:\n      auth_url: http://k\n      user_id: u\n      password: {SECRET}\n      domain_id: d\n"),
            "clouds.c.auth.domain_id: asks for a domain or system scope",
        ),
        (
            "clouds:\n  c:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: http://k\n      application_credential_id: a\n"
                .to_string(),
            "clouds.c.auth.application_credential_secret: is not set",
        ),
        (
            format!("clouds:\n  c:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: http://k\n      application_credential_secret: {CRED_SECRET}\n"),
            "clouds.c.auth.application_credential_id: is not set",
        ),
        (
            format!("clouds:\n  c:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: http://k\n      application_credential_name: a\n      application_credential_secret: {CRED_SECRET}\n"),
            "clouds.c.auth.application_credential_name: needs auth.user_id",
        ),
        (format!("clouds:\n  c:\n    auth:\n      auth_url: k:5000\n      password: {SECRET}\n"), "clouds.c.auth.auth_url: must be an http"),
        (format!("clouds:\n  c:\n    auth:\n      auth_url: http://k\n      user_id: u\n      password: [{SECRET}]\n"), "clouds.c.auth.password: must be a single value"),
        (format!("clouds:\n  c:\n    auth:\n      auth_url: http://k\n      user_id: true\n      password: {SECRET}\n"), "clouds.c.auth.user_id: must be text"),
        ("clouds:\n  c: just text\n".to_string(), "clouds.c.: must be a mapping"),
        ("clouds:\n  c:\n    auth: [1]\n".to_string(), "clouds.c.auth: must be a mapping"),
        ("clouds:\n  c:\n    profile: vexxhost\n".to_string(), "clouds.c.profile: vendor profiles ('vexxhost')"),
    ];
    for (yaml, expected) in cases {
        let e = parse_err(&yaml);
        assert!(e.contains(expected), "expected {expected:?} in {e:?}");
    }
}

#[test]
fn merge_keys_and_anchors_are_followed() {
    let id = parse(&format!(
        "base: &base\n  auth_url: http://anchored\n  user_id: u\n  password: {SECRET}\nclouds:\n  c:\n    auth:\n      <<: *base\n      user_id: mine\n"
    ))
    .expect("load");
    assert_eq!(id.auth_url, "http://anchored");
    assert_eq!(password_parts(&id).0, &Ident::Id("mine".into()));
}

#[test]
fn cloud_names_from_the_command_line_or_os_cloud() {
    let env = |v: &str| vec![("OS_CLOUD".to_string(), v.to_string())];
    assert_eq!(cloud_name(Some("given"), env("env")).as_deref(), Some("given"));
    assert_eq!(cloud_name(None, env("env")).as_deref(), Some("env"));
    assert_eq!(cloud_name(Some(""), env("")), None);
    assert_eq!(cloud_name(None, Vec::new()), None);
}

#[test]
fn dashes_in_cloud_names_are_kept() {
    let dirs = Dirs::new();
    dirs.write(&dirs.cwd, "clouds.yaml", &admin_yaml("http://k").replace("admin:", "my-cloud:"));
    assert_eq!(dirs.load("my-cloud").expect("load").name, "my-cloud");
    assert!(dirs.load("my_cloud").is_err());
}

#[test]
fn wiping_zeroes_every_string_of_the_tree() {
    let mut v = files::parse_text(&format!("a: {SECRET}\nb: [{SECRET}]\nc: {{d: !t {SECRET}}}\n")).expect("parse");
    files::wipe(&mut v);
    let shown = format!("{v:?}");
    assert!(!shown.contains(SECRET), "{shown}");
}

/// Text that looks like a clouds.yaml more often than random text does: keys keymigrate reads,
/// nested, with scalars of every kind.
fn yamlish() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "clouds", "c", "auth", "auth_url", "auth_type", "password", "username", "user_id", "project_name",
        "domain_name", "regions", "region_name", "verify", "cacert", "insecure", "<<", "interface", "cert", "name",
    ]);
    let scalar = prop::sample::select(vec![
        "http://k", "v3applicationcredential", "true", "no", "~", "12", "[a, b]", "{x: 1}", "*a", "&a v", "!t x", "'q",
        "\"", "-", "",
    ]);
    prop::collection::vec((0usize..4, key, scalar, any::<bool>()), 0..24).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(depth, k, v, nest)| format!("{}{k}:{}\n", "  ".repeat(depth), if nest { String::new() } else { format!(" {v}") }))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        if let Ok(root) = files::parse_text(&text) {
            let _ = read_cloud(&root, "c", "t.yaml");
        }
    }

    #[test]
    fn arbitrary_clouds_yaml_never_panics_nor_leaks(text in yamlish()) {
        let text = text.replace("password: ", &format!("password: {SECRET}"));
        match files::parse_text(&text) {
            Ok(root) => {
                if let Err(e) = read_cloud(&root, "c", "t.yaml") {
                    check_error(&e);
                }
            }
            Err(message) => prop_assert!(!message.contains(SECRET)),
        }
    }
}
