#!/usr/bin/env bash
# Measures the HTTP server candidates of ../HTTP_CHOICE.md in one interleaved run.
#
#   bench/loadgen/candidates/run_candidates.sh BUILD_DIR [ROUNDS] [SECONDS]
#
# BUILD_DIR is a Release build tree holding bench/loadgen/bal_loadgen and
# bench/loadgen/bal_http_responder. Every round starts each server in turn and loads it
# with wrk and with bal_loadgen, unpipelined (64 connections) and 16-deep pipelined, with
# answers given at once; then with answers deferred through a shard thread that waits
# COMMIT_US (300 us, one fdatasync) per batch. Prints one TSV line per measurement and
# the median of the rounds per (server, test) at the end. Needs wrk, gcc, pkg-config and
# the candidates' -dev packages (libh2o-evloop-dev libevent-dev libmicrohttpd-dev).
# Environment: SERVERS (default "probe own h2o evhttp mhd"), TESTS (default: all of
# wrk-c64 wrk-c64-p16 loadgen-c64 loadgen-c64-p16 deferred-c64 deferred-c64-p16),
# COMMIT_US (300), PORT (18181), PIN=1 to pin the server to CPU 1 and the client to CPU 0.
set -euo pipefail
# Servers inherit an ignored SIGPIPE: the baseline probe writes with write(2), and a client
# that closes with responses in flight must not kill the server being measured.
trap '' PIPE
build=${1:?usage: run_candidates.sh BUILD_DIR [ROUNDS] [SECONDS]}
rounds=${2:-3}
seconds=${3:-5}
commit_us=${COMMIT_US:-300}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/bal_candidates.XXXXXX)
port=${PORT:-18181}
loadgen=$build/bench/loadgen/bal_loadgen
responder=$build/bench/loadgen/bal_http_responder
url=http://127.0.0.1:$port/v1/transactions
servers=${SERVERS:-probe own h2o evhttp mhd}
tests=${TESTS:-wrk-c64 wrk-c64-p16 loadgen-c64 loadgen-c64-p16 deferred-c64 deferred-c64-p16}
server_cpu=(); client_cpu=()
if [[ ${PIN:-0} == 1 ]]; then server_cpu=(taskset -c 1); client_cpu=(taskset -c 0); fi
wants() { [[ " $tests " == *" $1 "* ]]; }

gcc -O2 -o "$work/http_probe" /work/shared/baselines/http_probe.c 2>/dev/null || gcc -O2 -o "$work/http_probe" "$here/../../../baselines/http_probe.c"
gcc -O2 -DH2O_USE_LIBUV=0 -o "$work/cand_h2o" "$here/cand_h2o.c" $(pkg-config --cflags --libs libh2o-evloop) -lpthread
gcc -O2 -o "$work/cand_evhttp" "$here/cand_evhttp.c" -levent -levent_pthreads -lpthread
gcc -O2 -o "$work/cand_mhd" "$here/cand_mhd.c" -lmicrohttpd -lpthread

server_pid=""
start_server() { # name deferred(0/1)
  local name=$1 deferred=$2
  local commit=()
  ((deferred)) && commit=("$commit_us")
  case $name in
    probe)  "${server_cpu[@]}" "$work/http_probe" "$port" & ;;
    own)    if ((deferred)); then "${server_cpu[@]}" "$responder" --port "$port" --deferred --commit-us "$commit_us" 2>/dev/null &
            else "${server_cpu[@]}" "$responder" --port "$port" 2>/dev/null & fi ;;
    *)      "${server_cpu[@]}" "$work/cand_$name" "$port" "${commit[@]}" & ;;
  esac
  server_pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0; sleep 0.1; done
  echo "server $name did not start" >&2; return 1
}
stop_server() {
  kill -INT "$server_pid" 2>/dev/null || true
  sleep 0.2
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
# CPU time (user + system, clock ticks) of the server process so far: requests per second
# swing with whatever else runs on the machine, CPU microseconds per request much less.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
ticks_per_s=$(getconf CLK_TCK)
# Prints "<requests/s> <server CPU us per request>" for a run of wrk.
wrk_rps() {
  local before after out
  before=$(cpu_ticks)
  out=$("${client_cpu[@]}" wrk "$@")
  after=$(cpu_ticks)
  awk -v ticks=$((after - before)) -v hz="$ticks_per_s" '
    / requests in / {requests = $1}
    /Requests\/sec/ {rps = $2}
    END {printf "%.0f %.2f", rps, (requests > 0 ? ticks / hz * 1e6 / requests : 0)}' <<< "$out"
}
# The same body as wrk's, fixed, so that the client spends the same CPU on every server.
body='{"transaction_id":"tx-1","type":"DEPOSIT","account_id":42,"currency":"USDT","amount":"1"}'
# Prints "<requests/s> <server CPU us per request> <p50 ms> <p99 ms>" for a run of bal_loadgen.
lg_rps() {
  local before after out
  before=$(cpu_ticks)
  out=$("${client_cpu[@]}" "$loadgen" --format line -d "$seconds" -T "$body" "$@" "$url")
  after=$(cpu_ticks)
  sed -E 's/ops\/s=([0-9]+).*p50_ms=([0-9.]+).*p99_ms=([0-9.]+).*/\1 \2 \3/' <<< "$out" |
    awk -v ticks=$((after - before)) -v hz="$ticks_per_s" -v s="$seconds" '
      {printf "%s %.2f %s %s", $1, ($1 > 0 ? ticks / hz * 1e6 / ($1 * s) : 0), $2, $3}'
}

results=$work/results.tsv
: > "$results"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" | tee -a "$results"; }

for round in $(seq "$rounds"); do
  for name in $servers; do
    if wants wrk-c64 || wants wrk-c64-p16 || wants loadgen-c64 || wants loadgen-c64-p16; then
      start_server "$name" 0
      wants wrk-c64 && record "$round" "$name" "wrk-c64" "$(wrk_rps -t1 -c64 -d${seconds}s -s "$here/post.lua" "$url")"
      wants wrk-c64-p16 && record "$round" "$name" "wrk-c64-p16" "$(wrk_rps -t1 -c64 -d${seconds}s -s "$here/pipeline.lua" "$url" -- 16)"
      wants loadgen-c64 && record "$round" "$name" "loadgen-c64" "$(lg_rps -c 64 -p 1)"
      wants loadgen-c64-p16 && record "$round" "$name" "loadgen-c64-p16" "$(lg_rps -c 64 -p 16)"
      stop_server
    fi
    [[ $name == probe ]] && continue
    if wants deferred-c64 || wants deferred-c64-p16; then
      start_server "$name" 1
      wants deferred-c64 && record "$round" "$name" "deferred-c64" "$(lg_rps -c 64 -p 1)"
      wants deferred-c64-p16 && record "$round" "$name" "deferred-c64-p16" "$(lg_rps -c 64 -p 16)"
      stop_server
    fi
  done
done

echo
echo "median of $rounds rounds: requests/s, server CPU us/request[, p50 ms, p99 ms]"
python3 - "$results" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    _, server, test, value = line.rstrip("\n").split("\t")
    rows[(server, test)].append(value.split())
for (server, test), values in rows.items():
    columns = list(zip(*values))
    medians = [statistics.median(float(x) for x in column) for column in columns]
    print(f"{server}\t{test}\t" + "\t".join(f"{m:.0f}" if i == 0 else f"{m:.2f}" if i == 1 else f"{m:.3f}"
                                             for i, m in enumerate(medians)))
PY
rm -rf "$work"
