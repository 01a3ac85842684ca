#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then build the example against
# the installed library twice: with pkg-config and with find_package.
set -euo pipefail
src=${FACENET_SOURCE_DIR:?}
build=$(dirname "${FACENET_BIN:?}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/facenet/facenet.h"
test -x "$tmp/prefix/bin/facenet"
libdir=$(ls -d "$tmp/prefix"/lib*/ | head -1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# A sanitizer build's library needs the sanitizer runtime in the consumer.
san=""
grep -q '^FACENET_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" && san="-fsanitize=address,undefined"

# pkg-config, static linking (the shared library works the same way)
cc -std=c11 -Wall -Wextra -Werror $san "$src/examples/verify_pair.c" \
  $(pkg-config --cflags facenet) "$libdir/libfacenet.a" $(pkg-config --libs --static facenet | sed 's/-lfacenet//') \
  -o "$tmp/verify_pair_pc"
"$tmp/verify_pair_pc" 2>/dev/null && exit 1 || test $? -eq 2   # usage error without args

# CMake package
mkdir -p "$tmp/consumer"
cat > "$tmp/consumer/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(facenet REQUIRED)
add_executable(verify_pair "$src/examples/verify_pair.c")
target_link_libraries(verify_pair PRIVATE facenet::facenet_shared)
CM
cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build "$tmp/consumer/build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/consumer/build/verify_pair" 2>/dev/null && exit 1 || test $? -eq 2

# With models and demo photos present, the example answers for real.
if "$tmp/prefix/bin/facenet" models verify >/dev/null 2>&1 && [ -f "${FACENET_DEMO_DIR:-/nonexistent}/sample1.jpg" ]; then
  "$tmp/verify_pair_pc" "$FACENET_DEMO_DIR/sample1.jpg" "$FACENET_DEMO_DIR/sample1.jpg" | grep -q "same person"
fi
echo "1 passed, 0 failed"
