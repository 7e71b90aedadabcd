#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need on a fresh Debian
# machine, starts the real servers on loopback (MariaDB, PostgreSQL, Keystone, Barbican) and
# runs every test: unit tests, integration tests against all three Cinder databases, clippy.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/testenv.sh up
# shellcheck disable=SC1091
source "${KEYMIGRATE_TESTENV:-$ROOT/.cache/testenv}/env.sh"

cargo build --all-targets --locked
cargo clippy --all-targets --locked -- -D warnings
# Servers are shared; a few parallel tests keep the 2-core machine responsive.
cargo test --locked -- --test-threads "${KEYMIGRATE_TEST_THREADS:-4}" "$@"
