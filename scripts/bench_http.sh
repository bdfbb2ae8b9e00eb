#!/usr/bin/env bash
# make bench-http: a fresh embedded node, loaded by bench/loadgen over loopback, plus the
# reference points measured in the same run when ../shared/baselines is beside the checkout
# (Redis with a balance Lua script; a bare epoll HTTP responder).
#
# Prints exactly:
#   http single ops/s=<N> p99_ms=<X>          one operation per request, 64 connections x 16 pipelined
#   http single-nopipe ops/s=<N> p99_ms=<X>   one operation per request, 64 connections, 1 in flight
#   http batch ops/s=<N> p99_ms=<X>           batches of 1000 operations
#   http open-loop rate=<R> p50_ms=<X> p95_ms=<X> p99_ms=<X>   at half the single maximum
#   http single-signed ops/s=<N> p99_ms=<X> auth_cost=<P>%   as "single", every request signed
# then the reference lines (ref ...). Every operation is fsynced before its response; the
# load spreads over 1M accounts. Settings: BENCH_SECONDS (10), BENCH_SHARDS (cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
seconds=${BENCH_SECONDS:-10}
shards=${BENCH_SHARDS:-$(nproc)}
loadgen=$build/bench/loadgen/bal_loadgen
work=$(mktemp -d /tmp/balanced-bench.XXXXXX)
node_pid=""
cleanup() {
  [[ -n $node_pid ]] && kill -TERM "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true
  [[ -n ${probe_pid:-} ]] && kill "$probe_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Runs the load generator; prints its one-line report (key=value pairs).
load() { "$loadgen" --format line --run-id "r$RANDOM$RANDOM" "$@"; }
field() { grep -o "$1=[0-9.]*" <<<"$2" | head -1 | cut -d= -f2; }

start_node() {
  "$build/balanced" --listen 127.0.0.1:0 --data-dir "$work/data${1:+-$1}" --shards "$shards" \
      --snapshot-every 0 ${1:+--keys-file "$work/keys"} 2>"$work/node.log" &
  node_pid=$!
  for _ in $(seq 1 300); do
    port=$(grep -o '"event":"listening".*"port":[0-9]*' "$work/node.log" 2>/dev/null | grep -o '[0-9]*$' || true)
    [[ -n $port ]] && return 0
    sleep 0.1
  done
  echo "bench-http: the node did not start; its log:" >&2; cat "$work/node.log" >&2; exit 1
}

start_node
url="http://127.0.0.1:$port"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), shards=$shards, ${seconds}s each" >&2

single=$(load -c 64 -p 16 -d "$seconds" -w 2 -a 1000000 --op deposit "$url/v1/transactions")
echo "http single ops/s=$(field ops/s "$single") p99_ms=$(field p99_ms "$single")"
nopipe=$(load -c 64 -p 1 -d "$seconds" -w 2 -a 1000000 --op deposit "$url/v1/transactions")
echo "http single-nopipe ops/s=$(field ops/s "$nopipe") p99_ms=$(field p99_ms "$nopipe")"
batch=$(load -c 8 -p 1 -b 1000 -d "$seconds" -w 2 -a 1000000 --op deposit "$url/v1/transactions/batch")
echo "http batch ops/s=$(field ops/s "$batch") p99_ms=$(field p99_ms "$batch")"
rate=$(awk -v r="$(field ops/s "$single")" 'BEGIN { printf "%d", r / 2 }')
open=$(load -c 64 -p 16 -R "$rate" -d "$seconds" -w 2 -a 1000000 --op deposit "$url/v1/transactions")
echo "http open-loop rate=$rate p50_ms=$(field p50_ms "$open") p95_ms=$(field p95_ms "$open") p99_ms=$(field p99_ms "$open")"

kill -TERM "$node_pid"; wait "$node_pid" || true; node_pid=""

# The same load, signed (HMAC-SHA256 per request, replay and rate checks), on a fresh node.
secret=bench-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf 'bench %s read,write 1000000000 1000000000 1000000000 1000000000\n' "$secret" > "$work/keys"
chmod 600 "$work/keys"
: > "$work/node.log"
start_node signed
url="http://127.0.0.1:$port"
signed=$(load -c 64 -p 16 -d "$seconds" -w 2 -a 1000000 --op deposit --sign "bench:$secret" "$url/v1/transactions")
cost=$(awk -v a="$(field ops/s "$single")" -v b="$(field ops/s "$signed")" 'BEGIN { printf "%.1f", (a - b) * 100 / a }')
echo "http single-signed ops/s=$(field ops/s "$signed") p99_ms=$(field p99_ms "$signed") auth_cost=$cost%"
kill -TERM "$node_pid"; wait "$node_pid" || true; node_pid=""

baselines=$root/../shared/baselines
if [[ -d $baselines ]]; then
  if [[ -x $(command -v redis-benchmark) ]] && redis-cli ping >/dev/null 2>&1; then
    redis=$(bash "$baselines/redis_lua.sh" 1000000 yes 2>/dev/null | grep -o 'rps=[0-9.]*' | cut -d= -f2)
    echo "ref redis-lua-aof ops/s=${redis%.*}   (50 connections x 16 pipelined; fsync once a second)"
  fi
  if cc -O2 -o "$work/http_probe" "$baselines/http_probe.c" 2>/dev/null; then
    "$work/http_probe" 18999 >/dev/null 2>&1 & probe_pid=$!
    sleep 0.5
    bare=$(load -c 64 -p 1 -d "$seconds" -w 1 --op none "http://127.0.0.1:18999/")
    echo "ref bare-http-nopipe req/s=$(field ops/s "$bare")"
    kill "$probe_pid"; probe_pid=""
  fi
fi
