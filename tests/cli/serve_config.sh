#!/usr/bin/env bash
# `facenet serve --config FILE` and FACENET_SERVE_* variables: strict
# errors that name the line or variable, precedence (file < environment <
# command line), and a real server configured by a file and the
# environment (that part needs the models).
. "$(dirname "$0")/lib/common.sh"
conf=$tmp/serve.conf
# serve_err EXPECTED_RC: run `facenet serve` with the given arguments
# (stderr into $tmp/err) and check its exit code.
run() { "$bin" serve "$@" >/dev/null 2>"$tmp/err"; echo $?; }
says() { grep -qF -- "$1" "$tmp/err"; }

# --- errors name the line or the variable -------------------------------------
printf '# comment\nport = 8080\nprot = 1\n' >"$conf"
expect "unknown name: usage error" [ "$(run --config "$conf")" = 2 ]
expect "unknown name: names the line" says "serve.conf:3: unknown option 'prot'"
printf 'port = 8080\nport = 8081\n' >"$conf"
expect "duplicate: usage error" [ "$(run --config "$conf")" = 2 ]
expect "duplicate: names both lines" says "serve.conf:2: 'port' is already set at $conf:1"
printf 'dev = true\n\nport = 70000\n' >"$conf"
expect "bad value: usage error" [ "$(run --config "$conf")" = 2 ]
expect "bad value: the check's message" says "--port must be an integer in [0, 65535]"
expect "bad value: names the line" says "(that option came from $conf:3)"
printf 'dev = true\nthreads = many\n' >"$conf"
expect "bad value: threads" [ "$(run --config "$conf")" = 2 ]
expect "bad value: threads line" says "$conf:2)"
printf 'dev = maybe\n' >"$conf"
expect "bad flag" [ "$(run --config "$conf")" = 2 ]
printf 'keys = fnk_0123456789ab_AAAA\n' >"$conf"
expect "an API key in the file is refused" [ "$(run --config "$conf")" = 2 ]
expect "  ... and not echoed" bash -c "! grep -q AAAA '$tmp/err'"
printf 'config = /etc/other.conf\n' >"$conf"
expect "no nested config" [ "$(run --config "$conf")" = 2 ]
expect "missing config file: input error" [ "$(run --config "$tmp/nope.conf")" = 4 ]
expect "missing config file: named" says "nope.conf"
expect "bad env value: usage error" [ "$(FACENET_SERVE_PORT=x run --dev)" = 2 ]
expect "bad env value: names the variable" says "(that option came from FACENET_SERVE_PORT)"
expect "unknown env variable" [ "$(FACENET_SERVE_PROT=1 run --dev)" = 2 ]
expect "unknown env variable: named" says "FACENET_SERVE_PROT: unknown option 'prot'"
expect "bad command-line value: no origin" [ "$(run --dev --port x)" = 2 ]
expect "  ... (nothing blamed on a config)" bash -c "! grep -q 'came from' '$tmp/err'"

# --- precedence: file < environment < command line ----------------------------
# A model directory that does not exist makes serve stop right after its
# checks with a message naming the directory it was given.
printf 'dev = yes\nmodel-dir = /nonexistent/from-file\nport = 0\n' >"$conf"
run --config "$conf" >/dev/null
expect "file value used" says "/nonexistent/from-file/"
FACENET_SERVE_MODEL_DIR=/nonexistent/from-env run --config "$conf" >/dev/null
expect "environment beats file" says "/nonexistent/from-env/"
FACENET_SERVE_MODEL_DIR=/nonexistent/from-env run --config "$conf" --model-dir /nonexistent/from-cli >/dev/null
expect "command line beats environment" says "/nonexistent/from-cli/"
FACENET_SERVE_CONFIG=$conf run >/dev/null
expect "FACENET_SERVE_CONFIG names the file" says "/nonexistent/from-file/"
FACENET_SERVE_CONFIG=$tmp/nope.conf run --config "$conf" >/dev/null
expect "--config beats FACENET_SERVE_CONFIG" says "/nonexistent/from-file/"
# A flag: bind 0.0.0.0 with dev is refused at start; the environment can
# switch dev off (then the keys are missing: usage) or move bind back.
printf 'dev = true\nbind = 0.0.0.0\nmodel-dir = /nonexistent/m\n' >"$conf"
expect "dev off loopback refused" [ "$(run --config "$conf")" = 2 ]
expect "  ... for want of keys" says "no API keys"
expect "environment switches a flag off" [ "$(FACENET_SERVE_DEV=false run --config "$conf")" = 2 ]
expect "  ... and then --keys is missing" says "usage: facenet serve"
FACENET_SERVE_BIND=127.0.0.1 run --config "$conf" >/dev/null
expect "environment moves bind back to loopback" says "/nonexistent/m/"

# --- a real server from a file and the environment -----------------------------
server_part() {
  if ! "$bin" models verify >/dev/null 2>&1 || ! command -v curl >/dev/null; then
    if [ "${FACENET_REQUIRE_MODELS:-}" = 1 ]; then
      failed=$((failed + 1)); echo "FAIL: models or curl missing"; fi
    echo "SKIP: server part (models or curl missing)"
    return
  fi
  local key file_port env_port
  key=$("$bin" keys create --keys "$tmp/keys.json" --scope detect 2>/dev/null)
  # Fixed ports (the test is about which one wins), below Linux's
  # ephemeral range (32768+) so that no port-0 server or client socket of a
  # test running alongside can hold them.
  file_port=$((20000 + ($$ + 11) % 12000))
  env_port=$((20000 + ($$ + 13) % 12000))
  printf '# written by the test\nkeys = %s\nbind = 127.0.0.1\nport = %s\nthreads = 2\npipelines = 1\nmax_body = 4096\n' \
    "$tmp/keys.json" "$file_port" >"$conf"
  FACENET_SERVE_PORT=$env_port "$bin" serve --config "$conf" 2>"$tmp/log" &
  pid=$!
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$env_port/healthz" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  expect "listens on the environment's port" \
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$env_port/healthz")" = 200 ]
  expect "not on the file's" bash -c "! curl -s -o /dev/null 'http://127.0.0.1:$file_port/healthz'"
  expect "keys file from the config" [ "$(curl -s -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d '{}' \
    "http://127.0.0.1:$env_port/v1/detect")" = 400 ]
  head -c 5000 /dev/zero | tr '\0' 'A' >"$tmp/big"
  expect "max_body from the config (413)" [ "$(curl -s -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    --data-binary @"$tmp/big" "http://127.0.0.1:$env_port/v1/detect")" = 413 ]
  kill -TERM "$pid"; wait "$pid"; pid=
}
server_part

echo "serve_config: $passed passed, $failed failed"
[ "$failed" = 0 ]
