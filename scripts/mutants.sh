#!/usr/bin/env bash
# Mutation testing of the core's access, deploy and check modules with cargo-mutants: each
# mutant (an operator flipped, a function body replaced by a default…) must make a host test
# fail. Slow (a rebuild per mutant), so not part of `npm test`:
#   bash scripts/mutants.sh                      # access/, deploy/, check/
#   bash scripts/mutants.sh -f src/deploy/dispatch.rs   # one file (extra args go to cargo mutants)
# Results land in mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-mutants >/dev/null 2>&1; then
  echo "[mutants] installing cargo-mutants (once, a few minutes)" >&2
  cargo install cargo-mutants --locked
fi
files=()
if [ "$#" -eq 0 ]; then
  files=(-f 'src/access/*.rs' -f 'src/deploy/*.rs' -f 'src/check/*.rs' -e 'src/deploy/testing.rs')
fi
# Only the host unit tests judge a mutant: the end-to-end suites need a Worker build per mutant.
exec cargo mutants --package expo-ota "${files[@]}" "$@" --timeout 120 -- --lib
