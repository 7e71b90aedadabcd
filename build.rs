//! Embeds, for `--version`, the git commit keymigrate is built from (`KEYMIGRATE_COMMIT`;
//! `unknown` when the source is not a git checkout, a release tarball, or git is missing) and the
//! database backends built in (`KEYMIGRATE_BACKENDS`: sqlite and the enabled features among
//! `mysql` and `postgres`, which cargo tells a build script as `CARGO_FEATURE_<NAME>`).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KEYMIGRATE_COMMIT={commit}");
    let mut backends = vec!["sqlite"];
    for feature in ["mysql", "postgres"] {
        if std::env::var_os(format!("CARGO_FEATURE_{}", feature.to_uppercase())).is_some() {
            backends.push(feature);
        }
    }
    println!("cargo:rustc-env=KEYMIGRATE_BACKENDS={}", backends.join(", "));
    // Built again when the checkout moves to another commit: HEAD, and the refs it may name.
    if let (Some(dir), Some(common)) = (git(&["rev-parse", "--git-dir"]), git(&["rev-parse", "--git-common-dir"])) {
        for path in [PathBuf::from(&dir).join("HEAD"), PathBuf::from(&common).join("refs").join("heads"), PathBuf::from(&common).join("packed-refs")] {
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
