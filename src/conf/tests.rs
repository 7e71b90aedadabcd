//! Tests of option lookup, precedence and interpolation.

use super::*;

fn conf(text: &str) -> Conf {
    Conf::from_text("cinder.conf", text).expect("parses")
}

fn get(c: &Conf, opt: &Opt) -> Option<String> {
    c.get(opt).expect("resolves").map(|v| v.value.expose().to_string())
}

#[test]
fn defaults_follow_cinder() {
    let c = conf("[DEFAULT]\n");
    assert_eq!(get(&c, &STATE_PATH).as_deref(), Some("/var/lib/cinder"));
    assert_eq!(get(&c, &DB_CONNECTION).as_deref(), Some("sqlite:////var/lib/cinder/cinder.sqlite"));
    assert_eq!(get(&c, &KEY_MANAGER_BACKEND).as_deref(), Some("barbican"));
    assert_eq!(get(&c, &FIXED_KEY), None);
    assert_eq!(get(&c.with_hostname("node7"), &HOST).as_deref(), Some("node7"));
}

#[test]
fn interpolates_bare_braced_and_dotted_names() {
    let c = conf(
        "[DEFAULT]\nstate_path = /srv/cinder\nhost = h1\n\
         [database]\nconnection = sqlite:///${state_path}/x-${host}.db\n\
         [barbican]\nbarbican_endpoint = http://${DEFAULT.host}:9311\n",
    );
    assert_eq!(get(&c, &DB_CONNECTION).as_deref(), Some("sqlite:////srv/cinder/x-h1.db"));
    assert_eq!(get(&c, &barbican::ENDPOINT).as_deref(), Some("http://h1:9311"));
    // Python's Template takes dots into the name: `$host.db` means option `db` of group `host`.
    let c = conf("[database]\nconnection = sqlite:///$host.db\n");
    assert!(c.get(&DB_CONNECTION).is_err());
}

#[test]
fn dollar_escapes_and_non_placeholders_are_literal() {
    let c = conf("[keystone_authtoken]\npassword = a$$b\\$c$ d$1\n");
    assert_eq!(get(&c, &keystone::PASSWORD).as_deref(), Some("a$b$c$ d$1"));
}

#[test]
fn unknown_reference_is_an_error_that_names_the_option_not_the_value() {
    let c = conf("[DEFAULT]\nhost = node-$nosuch\n");
    let err = c.get(&HOST).expect_err("unknown name").to_string();
    assert!(err.contains("[DEFAULT] host") && err.contains("$nosuch"), "{err}");
    // In a secret, the name after `$` is part of the secret: `s3cr3t$nosuch` is a password.
    let c = conf("[keystone_authtoken]\npassword = s3cr3t$nosuch\n");
    let err = c.get(&keystone::PASSWORD).expect_err("unknown name").to_string();
    assert!(err.contains("[keystone_authtoken] password"), "{err}");
    assert!(!err.contains("s3cr3t") && !err.contains("nosuch"), "{err}");
    let c = conf("[database]\nconnection = mysql://u:pa$word@h/c\n");
    let err = c.get(&DB_CONNECTION).expect_err("unknown name").to_string();
    assert!(err.contains("[database] connection") && !err.contains("word"), "{err}");
    // Also when the secret is reached through another option.
    let c = conf("[DEFAULT]\nhost = $keystone_authtoken.password\n[keystone_authtoken]\npassword = s3cr3t$nosuch\n");
    let err = c.get(&HOST).expect_err("unknown name").to_string();
    assert!(err.contains("[DEFAULT] host") && !err.contains("nosuch"), "{err}");
}

#[test]
fn interpolation_loop_is_an_error() {
    let c = conf("[DEFAULT]\nstate_path = $host\nhost = $state_path\n");
    let err = c.get(&STATE_PATH).expect_err("loop").to_string();
    assert!(err.contains("loop"), "{err}");
}

#[test]
fn deprecated_names_lose_to_current_names_in_the_same_file_only() {
    let c = conf("[keymgr]\nfixed_key = aa\n[key_manager]\nfixed_key = bb\n");
    assert_eq!(get(&c, &FIXED_KEY).as_deref(), Some("bb"));
    let c = conf("[keymgr]\nfixed_key = aa\n");
    assert_eq!(get(&c, &FIXED_KEY).as_deref(), Some("aa"));
    let c = conf("[key_manager]\napi_class = cinder.keymgr.conf_key_mgr.ConfKeyManager\n");
    assert_eq!(get(&c, &KEY_MANAGER_BACKEND).as_deref(), Some("cinder.keymgr.conf_key_mgr.ConfKeyManager"));
}

#[test]
fn later_files_win_even_with_a_deprecated_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.conf");
    let b = dir.path().join("b.conf");
    std::fs::write(&a, "[key_manager]\nfixed_key = aa\n").expect("write");
    std::fs::write(&b, "[keymgr]\nfixed_key = bb\n").expect("write");
    let c = Conf::load(&[ConfigArg::File(a.clone()), ConfigArg::File(b.clone())], Vec::new()).expect("load");
    assert_eq!(get(&c, &FIXED_KEY).as_deref(), Some("bb"));
    let c = Conf::load(&[ConfigArg::File(b), ConfigArg::File(a)], Vec::new()).expect("load");
    assert_eq!(get(&c, &FIXED_KEY).as_deref(), Some("aa"));
}

#[test]
fn config_dir_reads_sorted_conf_files_after_earlier_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("cinder.conf.d");
    std::fs::create_dir(&d).expect("mkdir");
    std::fs::write(d.join("20-b.conf"), "[DEFAULT]\nhost = b\n").expect("write");
    std::fs::write(d.join("10-a.conf"), "[DEFAULT]\nhost = a\n").expect("write");
    std::fs::write(d.join("30-c.conf.bak"), "[DEFAULT]\nhost = c\n").expect("write");
    let f = dir.path().join("cinder.conf");
    std::fs::write(&f, "[DEFAULT]\nhost = f\n").expect("write");
    let c = Conf::load(&[ConfigArg::File(f.clone()), ConfigArg::Dir(d.clone())], Vec::new()).expect("load");
    assert_eq!(get(&c, &HOST).as_deref(), Some("b"));
    let c = Conf::load(&[ConfigArg::Dir(d), ConfigArg::File(f)], Vec::new()).expect("load");
    assert_eq!(get(&c, &HOST).as_deref(), Some("f"));
}

#[test]
fn missing_config_dir_and_file_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Conf::load(&[ConfigArg::Dir(dir.path().join("nope"))], Vec::new()).err().expect("error");
    assert!(matches!(err, Error::ConfigRead { .. }));
    let err = Conf::load(&[ConfigArg::File(dir.path().join("nope.conf"))], Vec::new()).err().expect("error");
    assert!(matches!(err, Error::ConfigRead { .. }));
}

#[test]
fn environment_beats_files() {
    let c = conf("[database]\nconnection = sqlite:////a.db\n")
        .with_env([("OS_DATABASE__CONNECTION".to_string(), "sqlite:///$state_path/b.db".to_string())]);
    assert_eq!(get(&c, &DB_CONNECTION).as_deref(), Some("sqlite:////var/lib/cinder/b.db"));
    let v = c.get(&DB_CONNECTION).expect("ok").expect("set");
    assert_eq!(v.origin, Origin::Env("OS_DATABASE__CONNECTION".into()));
}

#[test]
fn section_names_are_case_insensitive_except_default() {
    let c = conf("[DATABASE]\nconnection = sqlite:////x.db\n[default]\nhost = nothere\n");
    assert_eq!(get(&c, &DB_CONNECTION).as_deref(), Some("sqlite:////x.db"));
    assert_eq!(get(&c.with_hostname("real"), &HOST).as_deref(), Some("real"));
}

#[test]
fn backend_sections_are_read_by_name() {
    let c = conf("[DEFAULT]\nenabled_backends = lvm, ceph\n[LVM]\nbackend_host = shared\n");
    assert_eq!(parse_list(&get(&c, &ENABLED_BACKENDS).expect("set")), vec!["lvm", "ceph"]);
    let v = c.get_backend_opt("LVM", "backend_host").expect("ok").expect("set");
    assert_eq!(v.value.expose(), "shared");
    assert!(c.get_backend_opt("ceph", "backend_host").expect("ok").is_none());
}

#[test]
fn default_search_order_prefers_home_then_etc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(home.join(".cinder")).expect("mkdir");
    std::fs::create_dir_all(etc.join("cinder/cinder.conf.d")).expect("mkdir");
    std::fs::write(etc.join("cinder/cinder.conf"), "").expect("write");
    std::fs::write(etc.join("cinder/cinder.conf.d/x.conf"), "").expect("write");
    assert_eq!(
        default_config_files(Some(&home), &etc),
        vec![etc.join("cinder/cinder.conf"), etc.join("cinder/cinder.conf.d/x.conf")]
    );
    std::fs::write(home.join(".cinder/cinder.conf"), "").expect("write");
    assert_eq!(default_config_files(Some(&home), &etc)[0], home.join(".cinder/cinder.conf"));
}

#[test]
fn booleans_parse_like_oslo() {
    let c = conf("[barbican]\nverify_ssl = False\n[keystone_authtoken]\ninsecure = maybe\n");
    assert!(!c.get_bool(&barbican::VERIFY_SSL).expect("bool"));
    assert!(c.get_bool(&keystone::INSECURE).is_err());
}
