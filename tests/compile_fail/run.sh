#!/usr/bin/env bash
# Code that must not compile (tests/compile_fail/*.cc): each file names on its first line the
# message its static_assert gives ("// expect: ..."), and the compiler must fail with it;
# rpc_compiles.cc must compile. Usage: run.sh CXX INCLUDE_DIR [extra compiler flags...]
set -u
cxx=$1; include=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
failed=0
for f in "$here"/*.cc; do
  expect=$(head -1 "$f" | sed -n 's|^// expect: ||p')
  out=$("$cxx" -std=c++20 -fsyntax-only -I"$include" -I"$here" "$@" "$f" 2>&1)
  status=$?
  name=$(basename "$f")
  if [ "$name" = rpc_compiles.cc ]; then
    if [ $status -ne 0 ]; then echo "FAIL $name does not compile:"; echo "$out" | head -20; failed=1; else echo "ok   $name compiles"; fi
    continue
  fi
  if [ $status -eq 0 ]; then
    echo "FAIL $name compiled, but should not: $expect"; failed=1
  elif ! grep -qF -- "$expect" <<<"$out"; then
    echo "FAIL $name failed without saying: $expect"; echo "$out" | grep -m5 "error" ; failed=1
  else
    echo "ok   $name: $expect"
  fi
done
exit $failed
