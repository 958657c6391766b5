#!/usr/bin/env bash
# Issue 15's design probes (docs/sql-design.md): builds both with the system's SQLite and runs
# them in a temporary directory. Run on an idle machine: the figures are CPU time per turn.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
g++ -O2 -std=c++20 capture_size.cc -lsqlite3 -o "$out/capture_size"
g++ -O2 -std=c++20 capture_cost.cc -lsqlite3 -o "$out/capture_cost"
"$out/capture_size" 4096 "$out/size"
"$out/capture_size" 1024 "$out/size"
"$out/capture_cost" "$out/cost"
