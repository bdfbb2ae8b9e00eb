#!/usr/bin/env bash
# make bench-core: the ledger core alone (bench/bench_core.c), then, when ../shared/baselines
# is beside the checkout, the machine's reference in the same run: core_probe, a bare
# open-addressing table of (account, currency) -> int128 balances with no checks, over 1M
# accounts, run right before and right after the core's figures.
#
# Prints exactly the five "core ..." lines of bench_core, then
#   ref core-probe ops/s=<N> ops/s-after=<N>
# The core's speed moves with the machine's (a shared 2-core guest read 15M and 18.7M for the
# same binary hours apart); its ratio to the probe measured in the same run moves far less.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
baselines=$root/../shared/baselines
work=$(mktemp -d /tmp/balanced-bench-core.XXXXXX)
trap 'rm -rf "$work"' EXIT

probe=""
if [[ -f $baselines/core_probe.c ]] && cc -O2 -o "$work/core_probe" "$baselines/core_probe.c" 2>/dev/null; then
  probe=$work/core_probe
fi
rate() { "$probe" 1000000 | awk '{ printf "%.0f", $(NF - 2) * 1e6 }'; }
[[ -n $probe ]] && before=$(rate)
"$build/bench/bench_core"
[[ -n $probe ]] && echo "ref core-probe ops/s=$before ops/s-after=$(rate)"
exit 0
