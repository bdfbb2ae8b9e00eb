#!/bin/sh
# Runs promtool with the given arguments; fails with a clear message when it is missing.
# (CTest would otherwise report only "could not find executable".)
if ! command -v promtool >/dev/null 2>&1; then
  echo "observability: promtool is not installed: the observability tests need the Debian package 'prometheus' (run scripts/deps.sh, or apt-get install prometheus)" >&2
  exit 1
fi
exec promtool "$@"
