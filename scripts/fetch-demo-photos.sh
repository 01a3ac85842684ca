#!/usr/bin/env bash
# Fetches the six group photos shipped in npm @vladmandic/face-api (MIT),
# pinned by SHA-256, into DIR (default: $XDG_CACHE_HOME/facenet/demo).
# Photos are never committed; tests find them through FACENET_DEMO_DIR.
set -euo pipefail
dir=${1:-${FACENET_DEMO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/facenet/demo}}
package="@vladmandic/face-api@1.7.15"
declare -A pins=(
  [sample1.jpg]=8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51
  [sample2.jpg]=7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691
  [sample3.jpg]=8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936
  [sample4.jpg]=729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc
  [sample5.jpg]=6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938
  [sample6.jpg]=9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87
)

ok() { [ -f "$dir/$1" ] && [ "$(sha256sum "$dir/$1" | cut -d' ' -f1)" = "${pins[$1]}" ]; }

missing=0
for f in "${!pins[@]}"; do ok "$f" || missing=1; done
if [ $missing -eq 0 ]; then
  echo "demo photos: present in $dir"
  exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$package" >/dev/null)
tarball=$(ls "$tmp"/*.tgz)
paths=()
for f in "${!pins[@]}"; do paths+=("package/demo/$f"); done
tar -xzf "$tarball" -C "$tmp" -- "${paths[@]}"
for f in "${!pins[@]}"; do
  got=$(sha256sum "$tmp/package/demo/$f" | cut -d' ' -f1)
  if [ "$got" != "${pins[$f]}" ]; then
    echo "demo photos: $f: SHA-256 mismatch: expected ${pins[$f]}, got $got" >&2
    exit 1
  fi
  mv "$tmp/package/demo/$f" "$dir/$f"
done
echo "demo photos: fetched into $dir"
