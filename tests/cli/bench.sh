#!/usr/bin/env bash
# CLI tests of `facenet bench`: usage errors, and (when FACENET_MODEL_DIR
# holds the models) a short run of one small model on every backend whose
# JSON must carry the machine line and sane rows. Not a timing test: no
# figure is compared with a target.
set -uo pipefail
bin=${FACENET_BIN:?FACENET_BIN must name the facenet binary}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect() {
  local want=$1; shift
  "$@" >"$work/out" 2>&1
  local got=$?
  [ "$got" -eq "$want" ] || { fail "'$*' exited $got, expected $want"; sed 's/^/  | /' "$work/out"; }
}
contains() { grep -qF -- "$1" "$work/out" || fail "output lacks '$1'"; }

expect 0 "$bin" bench --help
contains "--peers DIR"
contains "--mtcnn"
expect 2 "$bin" bench --runs 0
expect 2 "$bin" bench --batch 300
expect 2 "$bin" bench --threads 0
expect 2 "$bin" bench --model no-such-model
contains "no model named 'no-such-model'"
expect 2 "$bin" bench --backend no-such-backend
contains "backend 'no-such-backend' is not available"

dir=${FACENET_MODEL_DIR:-}
if [ -z "$dir" ] || [ ! -f "$dir/rnet.tflite" ]; then
  echo "SKIP: the models are not in FACENET_MODEL_DIR"
  [ "$failures" -eq 0 ] || exit 1
  exit 77
fi

expect 0 "$bin" bench --model mtcnn-rnet --runs 2 --threads 1
contains "fp32 peak"
contains "mtcnn-rnet"
contains "reference"
# The reference backend is single-threaded: no 2-thread row for it.
expect 0 "$bin" bench --model mtcnn-rnet --runs 2 --threads 2 --backend reference
if grep -q "^mtcnn-rnet *reference *2 " "$work/out"; then fail "reference ran on 2 threads"; fi
expect 0 "$bin" bench --model mtcnn-rnet --runs 2 --batch 3 --json
if command -v python3 >/dev/null 2>&1; then
  python3 - "$work/out" <<'PY' || fail "bench --json is not the expected JSON"
import json, sys
doc = json.load(open(sys.argv[1]))
rows = doc["results"]
machine = [r for r in rows if r["kind"] == "machine"]
assert len(machine) == 1 and machine[0]["cpus"] >= 1, machine
models = [r for r in rows if r["kind"] == "model"]
assert {r["engine"] for r in models} >= {"reference"}, models
for r in models:
    assert r["model"] == "mtcnn-rnet" and r["batch"] == 3, r
    assert r["median_ms"] > 0 and r["best_ms"] <= r["median_ms"], r
    assert abs(r["ms_per_face"] * 3 - r["median_ms"]) <= 1e-4 * r["median_ms"], r
    assert abs(r["mmac_per_face"] - 1.5) < 0.1, r
PY
fi

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "bench CLI: all checks passed"
