#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the demo need, and nothing
# that is already there. Called by `make deps`, which every other target depends on.
set -euo pipefail

# `make run` needs only what builds the server; the tests and benchmarks add theirs.
packages=(
  build-essential cmake pkg-config
  libboost1.81-all-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev sqlite3 libssl-dev openssl libtomlplusplus-dev
  libmimalloc-dev  # the server's allocator (CMakeLists.txt, DURABLE_MIMALLOC)
  prometheus-cpp-dev  # the text format of GET /metrics on the admin listener (src/admin/metrics_text.cc)
  libarchive-dev  # durable backup / restore: one tar file of the state's databases (src/admin/backup.cc)
  libpq-dev  # cluster mode: PostgreSQL as store and ownership authority (src/storage/postgres_engine.h)
)
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
  packages+=(googletest libgtest-dev libgmock-dev
             postgresql-15  # the tests' PostgreSQL server (tests/support/postgres_server.h)
             iproute2  # the cluster tests' network namespaces (tests/integration/cluster_test.cc)
             chromium)  # the browser test of the chat page (tests/browser)
fi
# `make cluster`: a PostgreSQL server to run the nodes on (scripts/cluster.sh).
if [ "${1:-}" = "--cluster" ]; then
  packages+=(postgresql-15)
fi
if [ "${1:-}" = "--bench" ]; then
  packages+=(libbenchmark-dev wrk)
fi
# `make fuzz`: clang and its runtime libraries; libclang_rt.fuzzer-x86_64.a (libFuzzer, for
# -fsanitize=fuzzer) and the sanitizer runtimes are in libclang-rt-14-dev, which clang only
# recommends.
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
