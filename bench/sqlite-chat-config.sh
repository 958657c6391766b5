#!/usr/bin/env bash
# Prints the seed's wrangler.toml with ChatRoom created by new_sqlite_classes instead of
# new_classes, for the benchmarks (bench/ws.sh, bench/compare/run.sh).
#
# Why: the seed declares its classes with new_classes, key-value backed on Cloudflare, where a
# value holds at most 128 KiB; the ChatRoom keeps its whole history in one value, which passes
# that after about a thousand messages, and from then on (as on Cloudflare) every message is
# refused. workerd's on-disk storage is SQLite-backed (2 MB per key and value), so a fan-out
# run compares like with like only with ChatRoom SQLite-backed on our side too.
#
#   bash bench/sqlite-chat-config.sh > wrangler.toml
set -euo pipefail
seed="$(dirname "$0")/../examples/seed/wrangler.toml"
out=$(sed 's/^new_classes = \["ChatRoom", "HibernatingRoom"\]$/new_classes = ["HibernatingRoom"]\nnew_sqlite_classes = ["ChatRoom"]/' "$seed")
if ! grep -q '^new_sqlite_classes = \["ChatRoom"\]$' <<<"$out"; then
  echo "sqlite-chat-config: the seed's migrations changed; update this script" >&2
  exit 1
fi
printf '%s\n' "$out"
