#!/usr/bin/env bash
# Starts the server locally on workerd (wrangler dev) with R2 persisted on disk.
# Installs what is missing first. Extra arguments go to `wrangler dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ ! -f .dev.vars ] || ! grep -q '^ADMIN_TOKEN=' .dev.vars; then
  token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "ADMIN_TOKEN=$token" >> .dev.vars
  echo "[dev] created .dev.vars with a random ADMIN_TOKEN (git-ignored)" >&2
fi
token=$(grep '^ADMIN_TOKEN=' .dev.vars | head -1 | cut -d= -f2-)

ip=127.0.0.1 port=8787
defaults=(--ip "$ip" --port "$port")
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --port) port="${args[$((i + 1))]}" ;;
    --port=*) port="${args[$i]#--port=}" ;;
    --ip) ip="${args[$((i + 1))]}" ;;
    --ip=*) ip="${args[$i]#--ip=}" ;;
  esac
done
# Defaults only for what the caller did not pass: wrangler refuses a repeated --port.
[[ " $* " == *" --ip"* ]] && defaults=("${defaults[@]:2}")
[[ " $* " == *" --port"* ]] && defaults=("${defaults[@]:0:${#defaults[@]}-2}")
base="http://$ip:$port"

cat >&2 <<MSG

  expo-ota local server: $base   (R2 data in .wrangler/state)
  ADMIN_TOKEN (from .dev.vars): $token

  app.json:
    "updates": { "url": "$base/api/manifest?slug=<your-slug>" },
    "runtimeVersion": { "policy": "appVersion" }

  publish:  npx expo export && cargo run -p publish-cli -- publish \\
              --server $base --slug <your-slug> --export-dir dist --auth-token $token

MSG
exec npx --no-install wrangler dev "${defaults[@]}" --persist-to .wrangler/state "$@"
