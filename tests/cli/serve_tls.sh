#!/usr/bin/env bash
# `facenet serve --tls-cert --tls-key`: a self-signed certificate made
# here with the openssl CLI; HTTPS answers with it, plain HTTP and an
# untrusted client do not, and bad TLS set-ups are refused at start (a key
# file others can read, one file without the other, a missing or non-PEM
# file, a certificate that does not match the key).
. "$(dirname "$0")/lib/common.sh"
require_command openssl
require_command curl

# A P-256 self-signed certificate for 127.0.0.1, valid one day, and a
# second one whose key does not match the first certificate.
umask 077
mkcert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$tmp/$1.key" -out "$tmp/$1.crt" 2>/dev/null
}
if ! mkcert server || ! mkcert other; then
  echo "FAIL: openssl could not make a certificate"; exit 1
fi
chmod 644 "$tmp/server.crt"
expect "key file is 0600" [ "$(stat -c %a "$tmp/server.key")" = 600 ]

# --- refused at start (before any model is loaded) ---------------------------
run() { "$bin" serve --dev --port 0 "$@" >/dev/null 2>"$tmp/err"; echo $?; }
says() { grep -qF -- "$1" "$tmp/err"; }
cp "$tmp/server.key" "$tmp/open.key"
chmod 644 "$tmp/open.key"
expect "world-readable key refused" [ "$(run --tls-cert "$tmp/server.crt" --tls-key "$tmp/open.key")" != 0 ]
expect "  ... saying why" says "mode 644 gives its group or others access"
chmod 640 "$tmp/open.key"
expect "group-readable key refused" [ "$(run --tls-cert "$tmp/server.crt" --tls-key "$tmp/open.key")" != 0 ]
expect "cert without key refused" [ "$(run --tls-cert "$tmp/server.crt")" != 0 ]
expect "  ... saying why" says "--tls-cert and --tls-key go together"
expect "key without cert refused" [ "$(run --tls-key "$tmp/server.key")" != 0 ]
expect "missing cert file refused" [ "$(run --tls-cert "$tmp/none.crt" --tls-key "$tmp/server.key")" != 0 ]
expect "  ... naming it" says "none.crt"
echo "not a certificate" >"$tmp/junk.crt"
expect "non-PEM cert refused" [ "$(run --tls-cert "$tmp/junk.crt" --tls-key "$tmp/server.key")" != 0 ]
expect "  ... as not PEM" says "not a PEM file"
expect "no private key text in the errors" bash -c "! grep -q 'PRIVATE' '$tmp/err'"

# --- the server over HTTPS --------------------------------------------------------
"$bin" models verify >/dev/null 2>&1 || skip "models not fetched"
# A certificate that does not match its key: GnuTLS refuses it at start.
code=$(run --tls-cert "$tmp/other.crt" --tls-key "$tmp/server.key")
expect "mismatched certificate and key refused (rc $code)" [ "$code" != 0 ]

# Port 0: the server picks a free port and logs it (a port derived from
# $$ once collided with a port in use, in a fresh CI run).
"$bin" serve --dev --port 0 --threads 2 --pipelines 1 \
  --tls-cert "$tmp/server.crt" --tls-key "$tmp/server.key" 2>"$tmp/log" &
pid=$!
port=
for _ in $(seq 300); do
  port=$(grep -m1 'listening on' "$tmp/log" 2>/dev/null | sed 's/.*:\([0-9]*\)\/$/\1/')
  [ -n "$port" ] &&
    curl -s -o /dev/null --cacert "$tmp/server.crt" "https://127.0.0.1:$port/healthz" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
expect "log says https" grep -q "listening on https://127.0.0.1:$port/" "$tmp/log"
expect "healthz over https with the CA" \
  [ "$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$tmp/server.crt" "https://127.0.0.1:$port/healthz")" = 200 ]
expect "healthz body" grep -q '"status":"ok"' "$tmp/body"
expect "an untrusted client fails verification" \
  bash -c "! curl -s -o /dev/null --cacert '$tmp/other.crt' 'https://127.0.0.1:$port/healthz'"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/healthz")
expect "plain http gets no HTTP answer (got '$code')" [ "$code" = 000 ]
expect "server still up after the plain request" \
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tmp/server.crt" "https://127.0.0.1:$port/readyz")" = 200 ]
kill -TERM "$pid"
wait "$pid"
expect "SIGTERM exits 0" [ $? = 0 ]
pid=

echo "serve_tls: $passed passed, $failed failed"
[ "$failed" = 0 ]
