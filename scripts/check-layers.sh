#!/usr/bin/env bash
# The one direction of the house (README, "Layout"): a folder of src/ includes only folders
# below it, src/ includes nothing from examples/, and the public headers include nothing
# from src/. Run by `make test` (ctest: layers); exits 1 with each include that runs back up.
set -euo pipefail
cd "$(dirname "$0")/.."

# Bottom first. A folder may include its own headers and those of any folder before it.
layers=(base metrics ids config gates storage cluster net runtime worker admin cli)

# Includes allowed to run back up: none since issue 13 (net reaches the runtime through the
# interfaces net/http_host.h and SocketShard, which the runtime implements). An include that
# is not on the list fails, and so does an entry that no longer occurs.
known=()

rank() {
  local i
  for i in "${!layers[@]}"; do
    if [ "${layers[$i]}" = "$1" ]; then echo "$i"; return; fi
  done
  echo -1
}

failed=0
declare -A seen=()
while IFS= read -r file; do
  dir=${file#src/}
  dir=${dir%%/*}
  own=$(rank "$dir")
  if [ "$own" -lt 0 ]; then
    echo "$file: src/$dir/ is not a layer; add it to scripts/check-layers.sh in its place" >&2
    failed=1
    continue
  fi
  while IFS= read -r target; do
    top=${target%%/*}
    if [ "$top" = "$target" ]; then continue; fi  # a sibling header in the same folder
    if [ "$top" = "seed" ] || [ "$top" = "examples" ]; then
      echo "$file includes \"$target\": src/ must not depend on examples/" >&2
      failed=1
      continue
    fi
    their=$(rank "$top")
    if [ "$their" -lt 0 ]; then
      echo "$file includes \"$target\": no layer $top" >&2
      failed=1
    elif [ "$their" -gt "$own" ]; then
      entry="$file $target"
      allowed=0
      for k in "${known[@]}"; do
        if [ "$k" = "$entry" ]; then allowed=1; fi
      done
      if [ "$allowed" = 1 ]; then
        seen[$entry]=1
      else
        echo "$file includes \"$target\": $dir/ is below $top/ (order: ${layers[*]})" >&2
        failed=1
      fi
    fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$file")
done < <(find src -name '*.h' -o -name '*.cc' | sort)

for k in "${known[@]}"; do
  if [ -z "${seen[$k]:-}" ]; then
    echo "scripts/check-layers.sh: \"$k\" no longer runs back up; remove it from the known list" >&2
    failed=1
  fi
done

while IFS= read -r line; do
  echo "public header includes from src/: $line" >&2
  failed=1
done < <(grep -Hn '^#include "' include/durable/*.h || true)

if [ "$failed" = 0 ]; then echo "layers: every include points down (${layers[*]})"; fi
exit "$failed"
