#!/usr/bin/env bash
# Prints the performance figures (see examples/bench.rs). Not a test: nothing here fails on a
# slow machine; compare the numbers with the targets printed beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo run -q --release --example bench
cargo run -q --release --example bytes
