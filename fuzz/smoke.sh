#!/usr/bin/env bash
# smoke.sh TARGET CORPUS SECONDS — fuzzes for a few seconds, starting from the committed corpus
# (copied, so that the run adds nothing to the repository), with the target's dictionary if it
# has one (fuzz/dict/TARGET.dict). Any finding fails the run.
set -euo pipefail
target=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus"/. "$work"/
dict="$(cd "$(dirname "$0")" && pwd)/dict/$(basename "$target").dict"
args=()
[ -f "$dict" ] && args+=("-dict=$dict")
cd "$work"
"$target" -max_total_time="$seconds" -print_final_stats=1 "${args[@]}" "$work" 2>&1 | tail -n 12
