#!/usr/bin/env bash
# Builds the Worker bundle (build/worker/shim.mjs + wasm) with the pinned toolchain.
# wrangler runs this as its [build] command; tests set OTA_PREBUILT=1 after building once.
set -euo pipefail
cd "$(dirname "$0")/.."
# The dashboard's static assets (public/app.js), whatever happens to the wasm.
bash scripts/build-dashboard.sh
if [ "${OTA_PREBUILT:-}" = "1" ] && [ -f build/worker/shim.mjs ]; then
  exit 0
fi
export PATH="$HOME/.cargo/bin:$PATH"
# worker-build would download these from GitHub, which is not reachable: use the pinned installs.
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
if [ -x node_modules/.bin/esbuild ] && [ -z "${ESBUILD_BIN:-}" ]; then
  export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
fi
exec worker-build --release
