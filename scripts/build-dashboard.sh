#!/usr/bin/env bash
# Builds the dashboard (dashboard/src, TypeScript) into public/app.js with the pinned esbuild. The
# Worker serves public/ as static assets (wrangler.toml [assets]); no CDN is involved at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node_modules/.bin/esbuild dashboard/src/main.ts --bundle --format=esm --target=es2022 \
  --minify --sourcemap=external --outfile=public/app.js --log-level=warning
