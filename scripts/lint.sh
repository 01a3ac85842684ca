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
# The AVX2 files must also compile where they define no kernels (other
# architectures): include them with __x86_64__ undefined, after the system
# headers they use, and check the fallback branch.
echo "lint: non-x86 fallbacks"
for f in $(find src -name '*avx2*.c' | sort); do
  printf '#include <math.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <stdlib.h>\n#include <string.h>\n#include "nn/backend.h"\n#undef __x86_64__\n#include "%s"\n' "${f#src/}" |
    cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I include -I src -x c -
done
echo "lint: clean"
