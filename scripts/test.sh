#!/usr/bin/env bash
# Runs every test: host unit and property tests of the core and the CLI, and the end-to-end
# suites that start the real Worker on workerd (wrangler dev) and drive it with the real CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
export PATH="$HOME/.cargo/bin:$PATH"
# House rules first: formatting and lints, on the host and on the Worker's target.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo clippy --target wasm32-unknown-unknown --lib -q -- -D warnings
# The end-to-end suites are one binary (tests/e2e) sharing a few wrangler dev servers, started
# once per run. Two test threads suit a 2-core machine. --no-fail-fast runs every binary even
# after a failure, so all failures are reported together (assert_eq! prints left and right).
cargo test --workspace --no-fail-fast -- --test-threads "${TEST_THREADS:-2}"
