#!/usr/bin/env bash
# Prints the performance figures (see examples/bench.rs). Not a test: nothing here fails on a
# slow machine; compare the numbers with the targets printed beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/build-worker.sh >/dev/null
cargo build -q -p publish-cli
cargo run -q --release --example bench
