#!/usr/bin/env bash
# Installs the pinned workerd, esbuild and hono (package-lock.json) into bench/compare/node_modules
# (ignored) from the npm registry, and bundles workerd-app/src/index.ts to workerd-app/dist/index.js.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.installed-lock
if [ ! -x node_modules/workerd/bin/workerd ] || ! cmp -s package-lock.json "$stamp"; then
  echo "compare: npm ci (workerd, esbuild, hono)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json "$stamp"
fi
node_modules/.bin/esbuild workerd-app/src/index.ts --bundle --format=esm --platform=neutral \
  --target=es2022 --log-level=warning --outfile=workerd-app/dist/index.js
