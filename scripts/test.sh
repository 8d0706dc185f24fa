#!/usr/bin/env bash
# Runs every test: host unit and property tests of the core and the CLI, and the end-to-end
# suites that start the real Worker on workerd (wrangler dev) and drive it with the real CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
export PATH="$HOME/.cargo/bin:$PATH"
# Each end-to-end test runs its own wrangler dev; two at a time suits a 2-core machine.
cargo test --workspace -- --test-threads "${TEST_THREADS:-2}"
