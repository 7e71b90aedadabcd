//! The release binary has no fault points: built exactly as operators build it
//! (`cargo build --release --locked`, which `scripts/test.sh` does and names in
//! `KEYMIGRATE_RELEASE_BIN`), it ignores `KEYMIGRATE_FAULT` and migrates as if it were unset.

use crate::migrate::Fixture;
use crate::support::cloud::Cloud;
use crate::support::*;

#[test]
fn a_release_binary_ignores_keymigrate_fault() {
    let Some(release) = built_by_test_script(
        "KEYMIGRATE_RELEASE_BIN",
        "release::a_release_binary_ignores_keymigrate_fault",
        "`cargo build --release --locked`",
    ) else {
        return;
    };
    let bytes = std::fs::read(&release).expect("read the release binary");
    assert!(
        !bytes.windows(b"KEYMIGRATE_FAULT".len()).any(|w| w == b"KEYMIGRATE_FAULT"),
        "{} still reads KEYMIGRATE_FAULT: it was built with the fault-injection feature",
        release.display()
    );

    // The default features: every backend (scripts/test.sh builds an SQLite-only binary just
    // before this one, in the same target directory).
    let version = Workdir::new().run_binary(&release, &["--version"], &[]);
    assert!(version.stdout.trim().ends_with("; backends sqlite, mysql, postgres)"), "{}", version.stdout);

    let cloud = Cloud::new();
    let kill = [("KEYMIGRATE_FAULT", "stored=kill")];
    // The tests' own build dies at the point: the fault spec below is a live one.
    let mut armed = Fixture::new(Backend::Sqlite, "password");
    armed.seed_host("hostRA");
    let out = armed.migrate_env(&["--host", "hostRA", "--workers", "1"], &kill);
    assert_eq!(out.code, -1, "the tests' build should have been killed at `stored`: {}", out.stderr);

    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostRB");
    let state = f.state.to_str().expect("path").to_string();
    let args = ["--config-file", f.conf(), "migrate", "--state-dir", &state, "--host", "hostRB", "--workers", "1"];
    let out = f.w.run_binary(&release, &args, &kill);
    out.assert_code(0);
    assert!(!out.stderr.contains("fault injection"), "{}", out.stderr);
    f.check(&cloud);

    // Leave no litter of the killed run behind: the tests' build finishes it.
    armed.migrate(&["--host", "hostRA"]).assert_code(0);
    armed.check(&cloud);
}
