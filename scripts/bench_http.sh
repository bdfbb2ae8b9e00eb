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
#   http single-signed-sustained ops/s=<N> p99_ms=<X> auth_cost=<P>%   the same, runs 5x longer
# then the reference lines (ref ...). Every operation is fsynced before its response; the
# load spreads over 1M accounts. Settings: BENCH_SECONDS (10), BENCH_SHARDS (half the cores,
# at least 1: the load generator runs on the same machine and takes about a core; on 2
# cores one shard measured 1.4x the pipelined and 1.2x the unpipelined throughput of two,
# docs/benchmarks.md),
# BENCH_AUTH_PAIRS (7) and BENCH_AUTH_REQUESTS (600000) for the signed comparison,
# BENCH_AUTH_SUSTAINED_PAIRS (5; 0 skips it) and BENCH_AUTH_SUSTAINED_REQUESTS (3000000) for
# the sustained one.
#
# single-signed is not compared with "single" above: it comes from its own comparison of
# runs on fresh nodes, without and with a keys file, in alternation (unsigned, signed, then
# signed, unsigned, ...) with the same number of requests each, rendered -- and signed --
# before each run's clock starts (bal_loadgen --pregenerate), so the generator does the
# same work per request in both and its signing is not charged to the server. ops/s and
# p99_ms are the signed runs' medians; auth_cost compares the medians of ops/s. Every run
# and the node's CPU per request (utime+stime from /proc) go to stderr as "# single-signed
# ..." lines. The first comparison's runs are bursts that the journal's lag bound
# (--journal-lag-max, 1M ids) absorbs: the journal's work falls mostly after them, so they
# compare the front end (HTTP, shard) alone. The sustained runs send 5x as many, so the
# journal is the limit for most of each run, as it is in "single".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
seconds=${BENCH_SECONDS:-10}
cores=$(nproc)
shards=${BENCH_SHARDS:-$(( cores / 2 > 0 ? cores / 2 : 1 ))}
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

# start_node [NAME [KEYS_FILE [FLAGS...]]]: a fresh node with its own data directory and log;
# sets node_pid and port.
start_node() {
  local log="$work/node${1:+-$1}.log"
  : > "$log" # here, not in the background: a log left by an earlier node must not be read
  "$build/balanced" --listen 127.0.0.1:0 --data-dir "$work/data${1:+-$1}" --shards "$shards" \
      --snapshot-every 0 ${2:+--keys-file "$2"} "${@:3}" 2>"$log" &
  node_pid=$!
  for _ in $(seq 1 300); do
    port=$(grep -o '"event":"listening".*"port":[0-9]*' "$log" 2>/dev/null | grep -o '[0-9]*$' || true)
    [[ -n $port ]] && return 0
    sleep 0.1
  done
  echo "bench-http: the node did not start; its log:" >&2; cat "$log" >&2; exit 1
}

# Each figure runs on a fresh node (empty ledger, empty journal), so one phase's journal
# backlog never slows the next. The node is killed afterwards (its data is thrown away).
# phase ARGS...: starts a node, runs the load generator with ARGS against it, prints its line.
phase() {
  start_node phase
  local path=/v1/transactions
  [[ " $* " == *" -b "* ]] && path=/v1/transactions/batch
  load "$@" -a 1000000 --op deposit "http://127.0.0.1:$port$path"
  kill -KILL "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=""
  rm -rf "$work/data-phase"
}
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), shards=$shards, ${seconds}s each" >&2

single=$(phase -c 64 -p 16 -d "$seconds" -w 2)
echo "http single ops/s=$(field ops/s "$single") p99_ms=$(field p99_ms "$single")"
nopipe=$(phase -c 64 -p 1 -d "$seconds" -w 2)
echo "http single-nopipe ops/s=$(field ops/s "$nopipe") p99_ms=$(field p99_ms "$nopipe")"
batch=$(phase -c 8 -p 1 -b 1000 -d "$seconds" -w 2)
echo "http batch ops/s=$(field ops/s "$batch") p99_ms=$(field p99_ms "$batch")"
rate=$(awk -v r="$(field ops/s "$single")" 'BEGIN { printf "%d", r / 2 }')
open=$(phase -c 64 -p 16 -R "$rate" -d "$seconds" -w 2)
echo "http open-loop rate=$rate p50_ms=$(field p50_ms "$open") p95_ms=$(field p95_ms "$open") p99_ms=$(field p99_ms "$open")"

# The same load, signed (HMAC-SHA256 per request, replay and rate checks). See the header:
# alternating runs, each on a fresh node (so every run starts from the same empty ledger),
# pre-generated requests, medians. Two lengths of run: a burst that the journal's lag bound
# absorbs (the journal's work mostly falls after it), and a sustained load several times
# that bound, like "http single", where the journal's work is part of every request.
pairs=${BENCH_AUTH_PAIRS:-7}
requests=${BENCH_AUTH_REQUESTS:-600000}
sustained_pairs=${BENCH_AUTH_SUSTAINED_PAIRS:-5}
sustained_requests=${BENCH_AUTH_SUSTAINED_REQUESTS:-3000000}
if (( pairs < 1 || requests < 1000 || requests > 900000 )); then
  echo "bench-http: BENCH_AUTH_PAIRS must be at least 1, BENCH_AUTH_REQUESTS 1000 to 900000" >&2; exit 1
fi
if (( sustained_pairs < 0 || sustained_requests < 1000 || sustained_requests > 8000000 )); then
  echo "bench-http: BENCH_AUTH_SUSTAINED_PAIRS must be at least 0, BENCH_AUTH_SUSTAINED_REQUESTS 1000 to 8000000" >&2
  exit 1
fi
secret=bench-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf 'bench %s read,write 1000000000 1000000000 1000000000 1000000000\n' "$secret" > "$work/keys"
chmod 600 "$work/keys"
ticks_per_s=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# auth_run plain|signed COUNT: one run of COUNT requests on a fresh node; appends "ops/s
# p99_ms cpu_us_per_request" to $work/<kind>, the CPU being the node's user+system time over
# the run. Every signed nonce stays remembered for 5 minutes: the node gets room for all of
# them (--nonce-memory; docs/auth.md), or it would refuse with 503, which is not measured here.
auth_run() {
  local count=$2 sign=() before after result refused
  local nonces=$(( count + count / 8 > 1048576 ? count + count / 8 : 1048576 ))
  if [[ $1 == signed ]]; then
    start_node "$1" "$work/keys" --nonce-memory "$nonces"; sign=(--sign "bench:$secret")
  else
    start_node "$1"
  fi
  before=$(cpu_ticks "$node_pid")
  result=$(load -c 64 -p 16 -n "$count" --pregenerate -w 0.25 -d 200 -a 1000000 --op deposit "${sign[@]}" \
      "http://127.0.0.1:$port/v1/transactions")
  # The journal's rows still to be written belong to this run: the CPU is read once the
  # persister has caught up (a faster run leaves more of them behind at its last response).
  persisted_wait
  after=$(cpu_ticks "$node_pid")
  kill -TERM "$node_pid"; wait "$node_pid" || true; node_pid=""
  refused=$(grep -c '"request_refused"' "$work/node-$1.log" || true)
  (( refused == 0 )) || echo "bench-http: the $1 node refused $refused requests; see its log" >&2
  rm -rf "$work/data-$1"
  if [[ $(field ops/s "$result") == 0 || -z $(field ops/s "$result") ]]; then
    echo "bench-http: the $1 run measured nothing (all $count requests fit in the warm-up?): $result" >&2; exit 1
  fi
  echo "$(field ops/s "$result") $(field p99_ms "$result") $(awk -v t=$((after - before)) -v hz="$ticks_per_s" \
      -v n="$count" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')" >> "$work/$1"
}
# Waits (up to 300 s) until the node's journal holds every applied command.
persisted_wait() {
  local lag
  for _ in $(seq 1 3000); do
    lag=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^balanced_persister_lag_records/ { s += $2 } END { print s + 0 }')
    [[ $lag == 0 ]] && return 0
    sleep 0.1
  done
  echo "bench-http: the journal did not catch up within 300 s (lag $lag)" >&2; exit 1
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column() { awk -v c="$1" '{ print $c }' "$work/$2"; }
change() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", (b - a) * 100 / a }'; }
# The median over pairs of each pair's own change: a pair ran minutes apart at most.
pair_change() { paste <(column "$1" plain) <(column "$1" signed) | awk '{ print ($2 - $1) * 100 / $1 }' | median; }
# auth_compare NAME PAIRS COUNT: the alternating pairs; prints the "http NAME" line and the
# "# auth" lines of every run to stderr.
auth_compare() {
  local name=$1 pair_count=$2 count=$3 plain_ops signed_ops plain_cpu signed_cpu cost
  rm -f "$work/plain" "$work/signed"
  for pair in $(seq 1 "$pair_count"); do
    if (( pair % 2 )); then auth_run plain "$count"; auth_run signed "$count"
    else auth_run signed "$count"; auth_run plain "$count"; fi
  done
  plain_ops=$(column 1 plain | median); signed_ops=$(column 1 signed | median)
  plain_cpu=$(column 3 plain | median); signed_cpu=$(column 3 signed | median)
  cost=$(awk -v a="$plain_ops" -v b="$signed_ops" 'BEGIN { printf "%.1f", (a - b) * 100 / a }')
  echo "http $name ops/s=$(printf '%.0f' "$signed_ops") p99_ms=$(column 2 signed | median) auth_cost=$cost%"
  {
    echo "# $name: $pair_count pairs of runs (unsigned, signed; then signed, unsigned; ...), each on a fresh node," \
         "$count pre-generated requests each"
    echo "# $name ops/s: unsigned $(column 1 plain | xargs) | signed $(column 1 signed | xargs)"
    echo "# $name node CPU us/request: unsigned $(column 3 plain | xargs) | signed $(column 3 signed | xargs)"
    echo "# $name medians: ops/s $(printf '%.0f' "$plain_ops") -> $(printf '%.0f' "$signed_ops")" \
         "($(change "$plain_ops" "$signed_ops")%), node CPU us/request $plain_cpu -> $signed_cpu" \
         "($(change "$plain_cpu" "$signed_cpu")%); median of the pairs' changes: ops/s" \
         "$(printf '%+.1f' "$(pair_change 1)")%, CPU $(printf '%+.1f' "$(pair_change 3)")%"
  } >&2
}
auth_compare single-signed "$pairs" "$requests"
(( sustained_pairs == 0 )) || auth_compare single-signed-sustained "$sustained_pairs" "$sustained_requests"

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
