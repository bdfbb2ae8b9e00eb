#!/usr/bin/env bash
# Installs the Debian packages that balanced needs to build and test, when they are missing.
# Idempotent and quiet when everything is present. Runs as root (or through sudo when available).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  clang llvm libclang-rt-14-dev        # libFuzzer and the sanitizer runtimes
  libssl-dev libsqlite3-dev             # the tests' SHA-256/HMAC oracle; the embedded journal store
  librdkafka-dev libmariadb-dev libhiredis-dev   # cluster adapters (Kafka, MariaDB, Redis)
  python3 curl sqlite3                  # black-box tests and their tools
  libjansson-dev libcjson-dev           # benchmark comparison only
  prometheus                            # promtool and a Prometheus server: observability tests
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
