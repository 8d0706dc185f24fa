#!/usr/bin/env bash
# Starts the server locally on workerd (wrangler dev) with R2 persisted on disk.
# Installs what is missing first. Extra arguments go to `wrangler dev`; --ip, --port and
# --persist-to given there replace this script's defaults (wrangler refuses a repeated option),
# and the banner shows the address, state directory and ADMIN_TOKEN actually in effect
# (`--var ADMIN_TOKEN:<token>` wins over .dev.vars, as it does in wrangler).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

ip=127.0.0.1 port=8787 persist=.wrangler/state
given_ip="" given_port="" given_persist="" var_token=""
take_var() { # one KEY:VALUE of --var; wrangler splits at the first colon
  if [[ "$1" == ADMIN_TOKEN:* ]]; then var_token="${1#ADMIN_TOKEN:}"; fi
}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  a="${args[$i]}" next="${args[$((i + 1))]:-}"
  case "$a" in
    --port) port="$next" given_port=1 ;;
    --port=*) port="${a#--port=}" given_port=1 ;;
    --ip) ip="$next" given_ip=1 ;;
    --ip=*) ip="${a#--ip=}" given_ip=1 ;;
    --persist-to) persist="$next" given_persist=1 ;;
    --persist-to=*) persist="${a#--persist-to=}" given_persist=1 ;;
    --var=*) take_var "${a#--var=}" ;;
    --var)
      # An array option: every following word up to the next option is a KEY:VALUE.
      while ((i + 1 < ${#args[@]})) && [[ "${args[$((i + 1))]}" != -* ]]; do
        i=$((i + 1))
        take_var "${args[$i]}"
      done
      ;;
  esac
done
defaults=()
[ -z "$given_ip" ] && defaults+=(--ip "$ip")
[ -z "$given_port" ] && defaults+=(--port "$port")
[ -z "$given_persist" ] && defaults+=(--persist-to "$persist")
base="http://$ip:$port"

if [ -n "$var_token" ]; then
  token=$var_token source="--var"
else
  if [ ! -f .dev.vars ] || ! grep -q '^ADMIN_TOKEN=' .dev.vars; then
    new=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "ADMIN_TOKEN=$new" >>.dev.vars
    echo "[dev] created .dev.vars with a random ADMIN_TOKEN (git-ignored)" >&2
  fi
  token=$(grep '^ADMIN_TOKEN=' .dev.vars | head -1 | cut -d= -f2-) source=".dev.vars"
fi

cat >&2 <<MSG

  expo-ota local server: $base   (R2 data in $persist)
  ADMIN_TOKEN (from $source): $token

  app.json:
    "updates": { "url": "$base/api/manifest?slug=<your-slug>" },
    "runtimeVersion": { "policy": "appVersion" }

  publish:  npx expo export && cargo run -p publish-cli -- publish \\
              --server $base --slug <your-slug> --export-dir dist --auth-token $token

MSG
# wrangler dev does not apply D1 migrations; apply them to the same state directory (idempotent:
# only migrations not yet applied run).
CI=true npx --no-install wrangler d1 migrations apply DB --local --persist-to "$persist" >&2
exec npx --no-install wrangler dev "${defaults[@]}" "$@"
