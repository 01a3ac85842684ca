#!/usr/bin/env bash
# Static analysis: cppcheck and clang-tidy over the library and CLI.
# Both must report nothing; their configs are .cppcheck-suppressions and
# .clang-tidy at the top of the repo.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mapfile -t sources < <(find src -name '*.c' | sort)

echo "lint: cppcheck"
cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
  --std=c11 --inline-suppr --suppressions-list=.cppcheck-suppressions \
  -I include -I src -D__GNUC__ "${sources[@]}"

echo "lint: clang-tidy"
clang-tidy --quiet -p "$build" --extra-arg=-Wno-unknown-warning-option --warnings-as-errors='*' "${sources[@]}" 2>/dev/null
echo "lint: clean"
