//! The database backends are cargo features: a build without `mysql` and `postgres`
//! (`cargo build --release --locked --no-default-features`, which `scripts/test.sh` does and
//! names in `KEYMIGRATE_SQLITE_ONLY_BIN`) links neither client library, scans an SQLite Cinder
//! database like the full build, and refuses a MySQL or PostgreSQL URL in one line naming the
//! missing feature, exit 2, before it reads anything else or talks to any service.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::migrate::Fixture;
use crate::support::cloud::Cloud;
use crate::support::*;

/// The SQLite-only binary to check, or `None` outside CI when none was named.
fn sqlite_only_binary(test: &str) -> Option<PathBuf> {
    built_by_test_script(
        "KEYMIGRATE_SQLITE_ONLY_BIN",
        &format!("features::{test}"),
        "`cargo build --release --locked --no-default-features`",
    )
}

/// The shared libraries `binary` needs, as `readelf -d` lists them (direct) and as `ldd`
/// resolves them (everything the loader would map).
fn linked_libraries(binary: &Path) -> (String, String) {
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).arg(binary).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(out.status.success(), "{program} {}: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let needed = run("readelf", &["-d"]).lines().filter(|l| l.contains("(NEEDED)")).collect::<Vec<_>>().join("\n");
    (needed, run("ldd", &[]))
}

const CLIENT_LIBRARIES: [&str; 3] = ["libmariadb", "libmysqlclient", "libpq"];

#[test]
fn an_sqlite_only_build_links_no_client_library_and_scans_sqlite() {
    let Some(bin) = sqlite_only_binary("an_sqlite_only_build_links_no_client_library_and_scans_sqlite") else { return };

    // The tests' own build has both client libraries: what the check below must not find.
    let (needed, _) = linked_libraries(Path::new(env!("CARGO_BIN_EXE_keymigrate")));
    assert!(needed.contains("libpq") && (needed.contains("libmariadb") || needed.contains("libmysqlclient")), "{needed}");
    let (needed, ldd) = linked_libraries(&bin);
    for lib in CLIENT_LIBRARIES {
        assert!(!needed.contains(lib), "{} needs {lib}:\n{needed}", bin.display());
        assert!(!ldd.contains(lib), "{} loads {lib}:\n{ldd}", bin.display());
    }

    let mut f = Fixture::new(Backend::Sqlite, "password");
    let out = f.w.run_binary(&bin, &["--version"], &[]);
    out.assert_code(0);
    assert!(out.stdout.trim().ends_with("; backends sqlite)"), "{}", out.stdout);

    // The same report as the full build's, row for row.
    let v1 = f.seed_host("hostFS");
    let args = ["--config-file", f.conf(), "scan", "--host", "hostFS", "-f", "json"];
    let full = f.w.run(&args);
    full.assert_code(1);
    let out = f.w.run_binary(&bin, &args, &[]);
    out.assert_code(1);
    assert_eq!(out.json(), full.json());
    assert!(out.stdout.contains(&v1), "{}", out.stdout);
}

#[test]
fn an_sqlite_only_build_refuses_mysql_and_postgres_before_doing_anything() {
    let Some(bin) = sqlite_only_binary("an_sqlite_only_build_refuses_mysql_and_postgres_before_doing_anything") else { return };
    let cloud = Cloud::new();
    // Where a second configuration sends Keystone and Barbican: nothing may connect to it.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    silent.set_nonblocking(true).expect("nonblocking");
    let port = silent.local_addr().expect("address").port();
    for (backend, expected) in [
        (Backend::Mysql, "this keymigrate was built without MySQL/MariaDB support (cargo feature `mysql`); install a build with it"),
        (Backend::Postgres, "this keymigrate was built without PostgreSQL support (cargo feature `postgres`); install a build with it"),
    ] {
        let mut f = Fixture::new(backend, "password");
        let v1 = f.seed_host("hostFR");
        let before = f.db.fingerprint();
        // The URL as other database errors name it: the password replaced.
        let named = format!("database {}: {expected}", f.db.url.replace("kmtest-pw", "***"));
        let silent_conf = f.w.write(
            "silent.conf",
            &format!(
                "[database]\nconnection = {}\n\n[key_manager]\nbackend = barbican\nfixed_key = {}\n\n\
                 [keystone_authtoken]\nauth_type = password\nauth_url = http://127.0.0.1:{port}\nusername = cinder\n\
                 password = kmtest-pw\nuser_domain_name = Default\nproject_name = service\nproject_domain_name = Default\n\n\
                 [barbican]\nbarbican_endpoint = http://127.0.0.1:{port}\n",
                f.db.url, f.key
            ),
        );

        let state = f.state.to_str().expect("path").to_string();
        for args in [
            vec!["--config-file", f.conf(), "migrate", "--state-dir", &state, "--host", "hostFR"],
            vec!["--config-file", arg(&silent_conf), "migrate", "--state-dir", &state, "--host", "hostFR"],
            vec!["--config-file", f.conf(), "scan", "--host", "hostFR"],
            vec!["--config-file", f.conf(), "status", "--all-hosts"],
        ] {
            let out = f.w.run_binary(&bin, &args, &[]);
            out.assert_error(2, &named);
            assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
            assert!(out.stdout.is_empty(), "{}", out.stdout);
        }
        assert!(!f.state.exists(), "{} was created", f.state.display());
        assert_eq!(f.db.fingerprint(), before, "{backend:?}: a row changed");
        assert!(cloud.named_like(&cloud.cinder(), &format!("keymigrate-volume-{v1}")).is_empty(), "{backend:?}: a secret was stored");
        assert!(silent.accept().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "{backend:?}: something connected to Keystone or Barbican");
    }

    // Nova's API database, read from nova.conf before any command runs.
    let f = Fixture::new(Backend::Sqlite, "password");
    let nova_conf = f.w.write("nova.conf", "[api_database]\nconnection = postgresql://nova:kmtest-pw@127.0.0.1:15432/nova_api\n");
    let out = f.w.run_binary(&bin, &["--config-file", f.conf(), "scan", "--nova", "--nova-config-file", arg(&nova_conf)], &[]);
    out.assert_error(2, "database postgresql://nova:***@127.0.0.1:15432/nova_api: this keymigrate was built without PostgreSQL support (cargo feature `postgres`)");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}
