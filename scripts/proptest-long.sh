#!/usr/bin/env bash
# Runs the parser property tests (tests/proptest_parsers.rs) far longer than the default run.
# CI runs the bounded default (256 cases per property, a few seconds) as part of `cargo test`;
# this is for a soak before touching a parser, or after a property failed once:
#   bash scripts/proptest-long.sh                        # 20000 cases per property, release build
#   PROPTEST_CASES=100000 bash scripts/proptest-long.sh  # longer still
#   bash scripts/proptest-long.sh multipart              # only properties whose name matches
#   bash scripts/proptest-long.sh --include-ignored      # also the properties marked as known bugs
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export PROPTEST_CASES="${PROPTEST_CASES:-20000}"
exec cargo test --release --test proptest_parsers -- --test-threads "${TEST_THREADS:-2}" "$@"
