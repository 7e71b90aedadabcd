#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need on a fresh Debian
# machine, starts the real servers on loopback (MariaDB, PostgreSQL, Keystone, Barbican) and
# runs every test: unit tests, integration tests against all three Cinder databases, clippy, and
# the Debian package (built, installed, run and removed).
#
# The tests' build of keymigrate has fault points (the `fault-injection` feature, which only the
# tests turn on); the release binary must not. It is built here exactly as operators build it,
# and tests/release.rs runs it with KEYMIGRATE_FAULT set.
#
# The database backends are cargo features (`mysql`, `postgres`, both on by default; SQLite is
# always built in). Each combination is built and linted: the SQLite-only release binary is also
# run (tests/features.rs), the two with one server backend are debug builds, made first so that
# the default build after them puts the tests' binary back.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/testenv.sh up
# shellcheck disable=SC1091
source "${KEYMIGRATE_TESTENV:-$ROOT/.cache/testenv}/env.sh"

cargo build --locked --no-default-features --features mysql
cargo build --locked --no-default-features --features postgres
cargo build --all-targets --locked
# Without the default features first, copied aside: the default build below puts its own binary
# back at target/release/keymigrate.
cargo build --release --locked --no-default-features
cp target/release/keymigrate target/release/keymigrate-sqlite-only
export KEYMIGRATE_SQLITE_ONLY_BIN="$ROOT/target/release/keymigrate-sqlite-only"
cargo build --release --locked
export KEYMIGRATE_RELEASE_BIN="$ROOT/target/release/keymigrate"
# The Debian package of that binary; tests/package.rs installs it with dpkg and removes it.
KEYMIGRATE_DEB=$(scripts/package.sh --no-build | tail -n1)
export KEYMIGRATE_DEB
cargo clippy --all-targets --locked -- -D warnings
# The library and binary without the tests' features, as released.
cargo clippy --locked -- -D warnings
cargo clippy --locked --no-default-features -- -D warnings
cargo clippy --locked --no-default-features --features mysql -- -D warnings
cargo clippy --locked --no-default-features --features postgres -- -D warnings
# Servers are shared; a few parallel tests keep the 2-core machine responsive.
cargo test --locked -- --test-threads "${KEYMIGRATE_TEST_THREADS:-4}" "$@"
