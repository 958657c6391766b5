#!/usr/bin/env bash
# What one durable write costs on this disk right now: 4 KiB writes with O_DSYNC (a write
# plus a flush each, like a WAL append and its fdatasync) over a preallocated file, so no
# size change is journaled. Prints the mean microseconds per synced write.
#
#   bash bench/disk-probe.sh [DIR] [WRITES]
#
# DIR is where the file goes (default: a temporary directory on the repository's disk, where
# the benchmarks keep their state). The durable figures of bench/run.sh and bench/ab.sh depend
# on this: ../shared/reference measured 52 us for a 4 KiB pwrite + fdatasync here on
# 2026-11-26; this probe gave 98-162 us on 2026-11-27, when the hot-object rate fell with it.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-}
WRITES=${2:-2000}
if [ -z "$DIR" ]; then
  DIR=$(mktemp -d -p .)
  trap 'rm -rf "$DIR"' EXIT
fi
FILE="$DIR/disk-probe.tmp"
dd if=/dev/zero of="$FILE" bs=4k count="$WRITES" conv=fsync status=none
secs=$(LC_ALL=C dd if=/dev/zero of="$FILE" bs=4k count="$WRITES" oflag=dsync conv=notrunc 2>&1 |
  awk '/copied/ {for (i = 1; i <= NF; i++) if ($i == "s," || $i ~ /^s,/) print $(i - 1)}')
rm -f "$FILE"
awk -v s="$secs" -v n="$WRITES" 'BEGIN {printf "%.0f\n", s * 1e6 / n}'
