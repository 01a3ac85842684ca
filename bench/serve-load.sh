#!/usr/bin/env bash
# serve-load.sh - load benchmark of `facenet serve` with wrk (not a CI test).
#
# Builds a gallery of N templates (default 100,000): one real subject
# enrolled from a demo photo plus N-1 synthetic ones (random unit vectors,
# imported through `facenet gallery import` in chunks), starts the server on
# loopback and runs wrk with a small Lua script (bench/serve-load.lua):
#
#   1. /v1/verify (an image against the enrolled subject), C connections
#   2. /v1/identify (top-5 over the whole gallery), C connections
#   3. overload: /v1/identify with 2*C connections against a server with a
#      short deadline and queue, recording its peak RSS (VmHWM)
#
# The probe is the demo subject's face cropped and scaled to 240x240 by
# `facenet align`, so that the server does real detection and embedding on
# a small image. Needs: wrk (scripts/install-deps.sh --bench), the models,
# FACENET_DEMO_DIR with sample1.jpg. Prints RESULT lines; nothing is kept.
#
#   bench/serve-load.sh [--templates N] [--connections C] [--duration S]
#                       [--pipelines P] [--threads T] [--dir DIR]
#
# --dir keeps the gallery (and its key) in DIR and reuses it next time.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${FACENET_BIN:-$here/../build/facenet}
demo=${FACENET_DEMO_DIR:-}
templates=100000 connections=50 duration=20 pipelines=2 threads=8 keep=
while [ $# -gt 0 ]; do
  case $1 in
  --templates) templates=$2; shift 2 ;;
  --connections) connections=$2; shift 2 ;;
  --duration) duration=$2; shift 2 ;;
  --pipelines) pipelines=$2; shift 2 ;;
  --threads) threads=$2; shift 2 ;;
  --dir) keep=$2; shift 2 ;;
  *) sed -n '2,22p' "$0"; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "serve-load: wrk is not installed (scripts/install-deps.sh --bench)"; exit 2; }
[ -x "$bin" ] || { echo "serve-load: no facenet binary at $bin (set FACENET_BIN)"; exit 2; }
[ -n "$demo" ] && [ -f "$demo/sample1.jpg" ] || { echo "serve-load: set FACENET_DEMO_DIR"; exit 2; }

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
store=${keep:-$work}
mkdir -p "$store"
G=$store/bench-$templates.gallery K=$store/bench-$templates.key keys=$work/keys.json

# --- the gallery -------------------------------------------------------------
t0=$(date +%s)
if [ ! -f "$G" ]; then
rm -f "$K"
"$bin" gallery keygen "$K" >/dev/null
"$bin" enroll --gallery "$G" --key-file "$K" --subject probe-person "$demo/sample1.jpg" >/dev/null 2>&1
"$bin" gallery export "$G" "$work/one.json" --plaintext --key-file "$K" >/dev/null 2>&1
model_id=$(grep -o '"model_id": *"[^"]*"' "$work/one.json" | sed 's/.*: *"\(.*\)"/\1/')
dim=$(grep -o '"dim": *[0-9]*' "$work/one.json" | grep -o '[0-9]*$')
rm -f "$work/one.json"
chunk=20000
for ((start = 1; start < templates; start += chunk)); do
  end=$((start + chunk - 1 < templates - 1 ? start + chunk - 1 : templates - 1))
  # Random unit vectors: Box-Muller normals, normalised by the import.
  awk -v first="$start" -v last="$end" -v dim="$dim" -v model="$model_id" -v seed="$start" '
    BEGIN {
      srand(seed)
      printf "{\"format\":\"facenet-gallery-export\",\"version\":1,\"model_id\":\"%s\",", model
      printf "\"dim\":%d,\"threshold\":0.616,\"subjects\":[", dim
      for (i = first; i <= last; i++) {
        printf "%s{\"collection\":\"default\",\"name\":\"synthetic-%d\",", (i > first ? "," : ""), i
        printf "\"created_at\":\"2026-01-01T00:00:00Z\",\"templates\":[{\"preprocess\":\"synthetic\","
        printf "\"image_sha256\":\"\",\"created_at\":\"2026-01-01T00:00:00Z\",\"embedding\":["
        for (d = 0; d < dim; d++) {
          u = rand(); if (u < 1e-12) u = 1e-12
          printf "%s%.5f", (d ? "," : ""), sqrt(-2 * log(u)) * cos(6.283185307 * rand())
        }
        printf "]}]}"
      }
      printf "]}\n"
    }' >"$work/chunk.json"
  "$bin" gallery import "$G" "$work/chunk.json" --key-file "$K" >/dev/null
done
rm -f "$work/chunk.json"
fi
echo "gallery: $("$bin" gallery stats "$G" --key-file "$K" 2>&1 | grep -m1 -i 'templates' || true)" \
  "(ready in $(( $(date +%s) - t0 )) s)"

# --- bodies and a key ----------------------------------------------------------
mkdir -p "$work/in/p"
cp "$demo/sample1.jpg" "$work/in/p/"
"$bin" align --template margin --image-size 240 --margin 120 "$work/in" "$work/aligned" >/dev/null 2>&1
probe=$(base64 -w0 "$work/aligned/p/sample1.png")
printf '{"image":"%s","subject":"probe-person"}' "$probe" >"$work/verify.json"
printf '{"image":"%s","k":5}' "$probe" >"$work/identify.json"
key=$("$bin" keys create --keys "$keys" --scope verify,identify --rate 1000000 --burst 1000000 2>/dev/null)

port=$((30000 + $$ % 20000))
url=http://127.0.0.1:$port
start_server() {
  "$bin" serve --keys "$keys" --port "$port" --pipelines "$pipelines" --threads "$threads" \
    --gallery "$G" --gallery-key-file "$K" --max-inflight-per-key 0 "$@" 2>/dev/null &
  pid=$!
  for _ in $(seq 600); do curl -s -o /dev/null "$url/readyz" && return 0; sleep 0.1; done
  echo "serve-load: the server did not start"; exit 1
}
stop_server() {
  local hwm
  # Why requests were refused, from the server's own counters (cumulative
  # since start_server): each 503/504 of wrk's tally has one of these causes.
  echo "  refusals: $(curl -s "$url/metrics" | grep -E '^facenet_(overloaded|queue_timeouts|abandoned|body_memory_refused|inflight_limited|rate_limited)_total' | sed 's/^facenet_//; s/_total / /' | tr '\n' ' ')"
  hwm=$(grep VmHWM "/proc/$pid/status" | awk '{print $2}')
  kill -TERM "$pid"; wait "$pid" || true; pid=
  echo "  server peak RSS (VmHWM): $((hwm / 1024)) MiB"
}
run() { local name=$1 route=$2 body=$3 conns=$4
  echo "$name: wrk -t2 -c$conns -d${duration}s POST $route"
  BODY_FILE=$body FACENET_KEY=$key wrk -t2 -c"$conns" -d"${duration}s" --timeout 30s \
    -s "$here/serve-load.lua" "$url$route" | grep '^RESULT' | sed 's/^/  /'
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: --pipelines $pipelines --threads $threads --deadline-ms 10000 --max-queue 64"
start_server --deadline-ms 10000 --max-queue 64
curl -s -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  --data-binary @"$work/identify.json" "$url/v1/identify" # warm-up
run verify /v1/verify "$work/verify.json" "$connections"
run identify /v1/identify "$work/identify.json" "$connections"
stop_server

echo "overload server: --deadline-ms 1000 --max-queue 4"
start_server --deadline-ms 1000 --max-queue 4
run overload /v1/identify "$work/identify.json" $((2 * connections))
stop_server
