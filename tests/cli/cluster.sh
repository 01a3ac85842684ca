#!/usr/bin/env bash
# `facenet cluster`: photos of a few people (LFW when FACENET_LFW_DIR is set,
# else the demo photos, each twice) come back one folder per person, with
# both methods; bad options and a non-empty output directory are refused.
set -uo pipefail
bin=${FACENET_BIN:?FACENET_BIN is not set}
demo=${FACENET_DEMO_DIR:-}
lfw=${FACENET_LFW_DIR:-}
if [ -z "$demo" ] || [ ! -f "$demo/sample1.jpg" ]; then
  if [ "${FACENET_REQUIRE_MODELS:-}" = 1 ]; then echo "FAIL: demo photos missing"; exit 1; fi
  echo "SKIP: FACENET_DEMO_DIR has no demo photos"; exit 77
fi
if ! "$bin" models verify >/dev/null 2>&1; then
  if [ "${FACENET_REQUIRE_MODELS:-}" = 1 ]; then echo "FAIL: models missing"; exit 1; fi
  echo "SKIP: models not fetched"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() { if [ "$2" = "$3" ]; then passed=$((passed + 1)); else
  failed=$((failed + 1)); echo "FAIL: $1: exit $3, expected $2"; sed 's/^/  | /' "$tmp/out" | head; fi; }
expect() { local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi; }

mkdir "$tmp/in"
if [ -n "$lfw" ] && [ -d "$lfw/George_W_Bush" ]; then
  people="George_W_Bush Colin_Powell Tony_Blair Donald_Rumsfeld Gerhard_Schroeder"
  for p in $people; do ls "$lfw/$p"/*.jpg | head -3 | while read -r f; do ln -s "$f" "$tmp/in/"; done; done
  want=5
else
  for s in 1 2 3; do ln -s "$demo/sample$s.jpg" "$tmp/in/a$s.jpg"; ln -s "$demo/sample$s.jpg" "$tmp/in/b$s.jpg"; done
  want=3
fi
person() { basename "$1" | sed -E 's/_[0-9]+\.jpg$//; s/^[ab]([0-9])\.jpg$/\1/'; }

for method in chinese-whispers dbscan; do
  out=$tmp/out-$method
  "$bin" cluster --method "$method" --min-samples 2 "$tmp/in" "$out" >"$tmp/out" 2>&1
  check "cluster $method" 0 $?
  expect "$method: $want clusters" grep -q " $want clusters" "$tmp/out"
  expect "$method: one folder per cluster" test "$(ls -d "$out"/cluster_* | wc -l)" = "$want"
  # every folder holds one person, and each person is in one folder
  for d in "$out"/cluster_*; do
    expect "$method: $(basename "$d") is one person" test "$(for f in "$d"/*; do person "$f"; done | sort -u | wc -l)" = 1
  done
  expect "$method: tsv lists every image" test "$(tail -n +2 "$out/clusters.tsv" | wc -l)" = "$(ls "$tmp/in" | wc -l)"
done

: >"$tmp/out"
"$bin" cluster "$tmp/in" "$tmp/out-chinese-whispers" >"$tmp/out" 2>&1; check "non-empty OUT_DIR" 2 $?
"$bin" cluster --method kmeans "$tmp/in" "$tmp/x" >"$tmp/out" 2>&1; check "unknown method" 2 $?
"$bin" cluster --threshold 3 "$tmp/in" "$tmp/x" >"$tmp/out" 2>&1; check "bad threshold" 2 $?
# (every pinned embedder has a calibrated threshold now, dlib-resnet-tfjs
# included, so the "no calibrated threshold" refusal cannot be reached here)
"$bin" cluster --model no-such-model "$tmp/in" "$tmp/x" >"$tmp/out" 2>&1; check "unknown model" 2 $?
# The default threshold is resolved like compare's: MODEL_DIR/thresholds.json
# over the manifest (a copy of the model directory made of links).
mdir=$tmp/models
mkdir -p "$mdir"
for f in "$("$bin" models path)"/*; do ln -s "$f" "$mdir/"; done
rm -f "$mdir/thresholds.json"
printf '{"schema": 1, "models": {"mobilefacenet": {"threshold": 0.05, "threshold_far": 0.999, "pairs": "mine.txt", "n_pairs": 42}}}\n' > "$mdir/thresholds.json"
"$bin" cluster --model-dir "$mdir" --list "$tmp/in" "$tmp/cal" >"$tmp/out" 2>&1; check "cluster, calibrated file" 0 $?
expect "the file's threshold is used" grep -q "threshold 0.050" "$tmp/out"
printf '{"schema": 1, "models": {' > "$mdir/thresholds.json"
"$bin" cluster --model-dir "$mdir" --list "$tmp/in" "$tmp/cal2" >"$tmp/out" 2>&1; check "cluster, broken thresholds file" 4 $?
expect "the broken file is named" grep -q "$mdir/thresholds.json" "$tmp/out"
"$bin" cluster --list "$tmp/in" "$tmp/listed" >"$tmp/out" 2>&1; check "--list" 0 $?
expect "--list writes only the tsv" test "$(ls "$tmp/listed")" = clusters.tsv

echo "cluster CLI: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
