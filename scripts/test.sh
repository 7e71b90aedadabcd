#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need on a fresh Debian
# machine, starts the real servers on loopback (MariaDB, PostgreSQL, Keystone, Barbican) and
# runs every test: unit tests, integration tests against all three Cinder databases, clippy, and
# the Debian package (built, installed, run and removed).
#
# The tests' build of keymigrate has fault points (the `fault-injection` feature, which only the
# tests turn on); the release binary must not. It is built here exactly as operators build it,
# and tests/release.rs runs it with KEYMIGRATE_FAULT set.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/testenv.sh up
# shellcheck disable=SC1091
source "${KEYMIGRATE_TESTENV:-$ROOT/.cache/testenv}/env.sh"

cargo build --all-targets --locked
cargo build --release --locked
export KEYMIGRATE_RELEASE_BIN="$ROOT/target/release/keymigrate"
# The Debian package of that binary; tests/package.rs installs it with dpkg and removes it.
KEYMIGRATE_DEB=$(scripts/package.sh --no-build | tail -n1)
export KEYMIGRATE_DEB
cargo clippy --all-targets --locked -- -D warnings
# The library and binary without the tests' features, as released.
cargo clippy --locked -- -D warnings
# Servers are shared; a few parallel tests keep the 2-core machine responsive.
cargo test --locked -- --test-threads "${KEYMIGRATE_TEST_THREADS:-4}" "$@"
