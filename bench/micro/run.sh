#!/usr/bin/env bash
# Microbenchmarks (bench/micro, Google Benchmark): storage, dispatch and the value codec, each
# against its ceiling (bench/README.md, "Microbenchmarks"). Not part of `make test`.
#
#   bash bench/micro/run.sh [google-benchmark flags]     # e.g. --benchmark_filter=codec
#
# Configures a Release build in $BUILD (default build-bench) with -DDURABLE_BUILD_BENCH=ON,
# builds the `micro` target, runs it with $REPS repetitions (default 5, randomly interleaved
# with the other benchmarks' so that ours and its ceiling see the same machine; the table uses
# the medians), and prints: benchmark, ours/s, ceiling/s, fraction. The full Google Benchmark
# output goes to $BUILD/micro.log and $BUILD/micro.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-bench}
REPS=${REPS:-5}
JOBS=${JOBS:-$(nproc)}

bash scripts/deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDURABLE_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target micro >/dev/null

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
if ! "$BUILD/bench/micro/micro" --benchmark_repetitions="$REPS" --benchmark_report_aggregates_only=true \
  --benchmark_enable_random_interleaving=true \
  --benchmark_out="$BUILD/micro.json" --benchmark_out_format=json "$@" >"$BUILD/micro.log" 2>&1; then
  tail -30 "$BUILD/micro.log"
  exit 1
fi
# The table is the end of the binary's output, after Google Benchmark's own.
sed -n '/^benchmark  /,$p' "$BUILD/micro.log"
