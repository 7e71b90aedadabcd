//! The Debian package as an operator gets it: `scripts/package.sh` builds it (scripts/test.sh
//! names it in `KEYMIGRATE_DEB`); its `Depends` name exactly the packages of the libraries the
//! binary links; `dpkg -i` installs it; the installed binary, man page, completions and systemd
//! units work from their installed paths; `dpkg -r` removes it again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::migrate::Fixture;
use crate::support::cloud::Cloud;
use crate::support::*;

const INSTALLED: &str = "/usr/bin/keymigrate";

/// The package to check, or `None` outside CI when none was named.
fn deb(test: &str) -> Option<PathBuf> {
    built_by_test_script("KEYMIGRATE_DEB", &format!("package::{test}"), "scripts/package.sh")
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout.
#[track_caller]
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package names of a `Depends` field, without versions (`libc6 (>= 2.34), libpq5` →
/// {libc6, libpq5}); alternatives are not expected and fail the test.
fn depends_names(field: &str) -> BTreeSet<String> {
    field
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            assert!(!d.contains('|'), "unexpected alternative in Depends: {d}");
            d.split_whitespace().next().unwrap_or_default().to_string()
        })
        .collect()
}

/// The Debian package that ships each shared library `binary` names in its dynamic section
/// (`NEEDED`), found by resolving the name as the dynamic loader does (`ldd`) and asking dpkg.
fn packages_of_needed_libraries(binary: &Path) -> BTreeSet<String> {
    let dynamic = sh("readelf", &["-d", arg(binary)]);
    let needed: Vec<String> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect();
    assert!(needed.iter().any(|n| n.starts_with("libc.so")), "no NEEDED entries read from readelf:\n{dynamic}");
    let resolved = sh("ldd", &[arg(binary)]);
    let mut packages = BTreeSet::new();
    for soname in &needed {
        let path = resolved
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                if let Some((name, rest)) = l.split_once(" => ") {
                    (name == soname).then(|| rest.split_whitespace().next().unwrap_or_default().to_string())
                } else {
                    // The loader itself: "/lib64/ld-linux-x86-64.so.2 (0x…)".
                    let path = l.split_whitespace().next().unwrap_or_default();
                    path.ends_with(&format!("/{soname}")).then(|| path.to_string())
                }
            })
            .next()
            .unwrap_or_else(|| panic!("ldd does not resolve {soname}:\n{resolved}"));
        packages.insert(package_owning(&path));
    }
    packages
}

/// `dpkg -S` for a library path, trying the other side of the /usr merge when dpkg lists the
/// file under the other name (`/lib/…` vs `/usr/lib/…`).
fn package_owning(path: &str) -> String {
    let mut candidates = vec![path.to_string()];
    if let Some(rest) = path.strip_prefix("/usr") {
        candidates.push(rest.to_string());
    } else {
        candidates.push(format!("/usr{path}"));
    }
    for candidate in &candidates {
        let out = Command::new("dpkg").args(["-S", candidate]).output().expect("run dpkg -S");
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let package = text.split(':').next().unwrap_or_default().trim().to_string();
            assert!(!package.is_empty(), "dpkg -S {candidate}: {text}");
            return package;
        }
    }
    panic!("no Debian package ships {path} (tried {candidates:?})");
}

#[test]
fn the_package_declares_exactly_the_libraries_its_binary_links() {
    let Some(deb) = deb("the_package_declares_exactly_the_libraries_its_binary_links") else { return };
    let w = Workdir::new();
    let root = w.path("root");
    sh("dpkg-deb", &["-x", arg(&deb), arg(&root)]);
    let binary = root.join("usr/bin/keymigrate");
    let depends = depends_names(&sh("dpkg-deb", &["-f", arg(&deb), "Depends"]));
    let linked = packages_of_needed_libraries(&binary);
    assert_eq!(depends, linked, "Depends (left) must name the package of every library the binary links (right), and nothing else");

    // What an operator finds where Debian puts it.
    for path in [
        "usr/bin/keymigrate",
        "usr/share/man/man1/keymigrate.1.gz",
        "usr/share/bash-completion/completions/keymigrate",
        "usr/share/zsh/vendor-completions/_keymigrate",
        "usr/share/fish/vendor_completions.d/keymigrate.fish",
        "usr/lib/systemd/system/keymigrate.service",
        "usr/lib/systemd/system/keymigrate.timer",
        "usr/share/doc/keymigrate/cinder.conf.sample",
        "usr/share/doc/keymigrate/copyright",
        "usr/share/doc/keymigrate/operator-guide.md",
    ] {
        assert!(root.join(path).is_file(), "the package lacks /{path}");
    }
    // The packaged binary is the release build: no fault points.
    let bytes = std::fs::read(&binary).expect("read the packaged binary");
    assert!(!bytes.windows(b"KEYMIGRATE_FAULT".len()).any(|w| w == b"KEYMIGRATE_FAULT"), "the packaged binary has fault points");
    // The systemd units are the documented examples, and systemd accepts them.
    for unit in ["keymigrate.service", "keymigrate.timer"] {
        let packaged = std::fs::read_to_string(root.join("usr/lib/systemd/system").join(unit)).expect("read unit");
        let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples").join(unit)).expect("read example");
        assert_eq!(packaged, example, "the packaged {unit} differs from docs/examples/{unit}");
    }
}

#[test]
fn the_installed_package_runs_from_its_installed_paths() {
    let Some(deb) = deb("the_installed_package_runs_from_its_installed_paths") else { return };
    let installed = InstalledPackage::hold();
    sh("dpkg", &["-i", arg(&deb)]);

    let version = sh(INSTALLED, &["--version"]);
    assert!(
        version.starts_with(&format!("keymigrate {} (commit ", env!("CARGO_PKG_VERSION"))),
        "--version of the installed binary: {version}"
    );
    let man = Command::new("man").arg("keymigrate").env("MANPAGER", "cat").env("MANWIDTH", "100").output().expect("run man");
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(man.status.success(), "man keymigrate failed: {}", String::from_utf8_lossy(&man.stderr));
    for needle in ["keymigrate", "migrate", "rollback", "--config-file"] {
        assert!(page.contains(needle), "man keymigrate lacks {needle:?}:\n{page}");
    }
    let bash = sh("bash", &["-c", "source /usr/share/bash-completion/completions/keymigrate && complete -p keymigrate"]);
    assert!(bash.contains("keymigrate"), "bash completion not registered: {bash}");
    // Installed disabled: nothing starts keymigrate until an operator enables the timer; and
    // systemd accepts both units as installed (ExecStart= finds the binary).
    // (The service has no [Install] section: only the timer starts it.)
    for (unit, expected) in [("keymigrate.timer", "disabled"), ("keymigrate.service", "static")] {
        let state = Command::new("systemctl").args(["is-enabled", unit]).output().expect("run systemctl");
        assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), expected, "{unit} after installing");
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", "/usr/lib/systemd/system/keymigrate.service", "/usr/lib/systemd/system/keymigrate.timer"])
        .output()
        .expect("run systemd-analyze");
    assert!(verify.status.success(), "systemd-analyze verify objects to the units:\n{}", String::from_utf8_lossy(&verify.stderr));

    // The installed binary does the main job on an SQLite Cinder database: scan reports what the
    // tests' own build reports, and migrate moves every row.
    let cloud = Cloud::new();
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostPKG");
    let scan = ["--config-file", f.conf(), "scan", "--host", "hostPKG", "-f", "json"];
    let ours = f.w.run(&scan);
    ours.assert_code(1);
    let theirs = f.w.run_binary(Path::new(INSTALLED), &scan, &[]);
    theirs.assert_code(1);
    assert_eq!(theirs.json(), ours.json(), "the installed binary's scan differs from the tests' build");
    let state = f.state.to_str().expect("path").to_string();
    let migrate = ["--config-file", f.conf(), "migrate", "--state-dir", &state, "--host", "hostPKG"];
    f.w.run_binary(Path::new(INSTALLED), &migrate, &[]).assert_code(0);
    f.check(&cloud);

    installed.purge();
    assert!(!Path::new(INSTALLED).exists(), "dpkg --purge left {INSTALLED}");
    assert!(!Path::new("/usr/lib/systemd/system/keymigrate.timer").exists(), "dpkg --purge left the timer");
}
