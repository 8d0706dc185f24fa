#!/usr/bin/env bash
# Installs what is missing, then builds the Worker bundle and the CLI: what tests and the
# benchmark need before they start wrangler dev.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/build-worker.sh >/dev/null
cargo build -q -p publish-cli
