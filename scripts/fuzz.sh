#!/usr/bin/env bash
# Runs every libFuzzer target for a while: `scripts/fuzz.sh BUILD_DIR SECONDS`.
# New inputs go to BUILD_DIR/fuzz-corpus/<name>/ (seeded from tests/fuzz/corpus/<name>/);
# a crash leaves its input in BUILD_DIR/fuzz-artifacts/ and fails the run. Copy an
# interesting input into tests/fuzz/corpus/<name>/ to keep it in the replayed corpus.
set -euo pipefail
build=${1:-build/sanitize}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for fuzzer in "$build"/tests/fuzz/fuzz_*; do
  [[ -x $fuzzer ]] || continue
  name=$(basename "$fuzzer"); name=${name#fuzz_}
  work="$build/fuzz-corpus/$name"; artifacts="$build/fuzz-artifacts/"
  mkdir -p "$work" "$artifacts"
  echo "fuzz: $name for ${seconds}s"
  if ! "$fuzzer" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts" \
       "$work" "$root/tests/fuzz/corpus/$name" 2>"$build/fuzz-$name.log"; then
    echo "fuzz: $name FAILED; see $build/fuzz-$name.log and $artifacts" >&2
    status=1
  fi
  grep -E 'stat::number_of_executed_runs|stat::peak_rss' "$build/fuzz-$name.log" | sed "s/^/fuzz: $name /" || true
done
exit $status
