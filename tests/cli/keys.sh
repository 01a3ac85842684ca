#!/usr/bin/env bash
# `facenet keys`: create, list, revoke and rotate (with and without a grace
# period) from the command line, their refusals, and that a running server
# honours a rotation: the new key works, the old one works until its grace
# period ends and is refused after. The server part needs the models.
. "$(dirname "$0")/lib/common.sh"
key_re='^fnk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$'
keys=$tmp/keys.json
state_of() { "$bin" keys list --keys "$keys" | awk -v id="$1" '$1 == id { print $2 }'; }
line_of() { "$bin" keys list --keys "$keys" | awk -v id="$1" '$1 == id'; }

# --- rotate without a grace period ------------------------------------------
old=$("$bin" keys create --keys "$keys" --scope detect,enroll --rate 3 --burst 4 2>/dev/null)
old_id=${old:4:12}
new=$("$bin" keys rotate --keys "$keys" "$old_id" 2>"$tmp/err")
expect "rotate exits 0" [ $? = 0 ]
expect "rotate prints a key" grep -Eq "$key_re" <<<"$new"
new_id=${new:4:12}
expect "rotate names both ids" grep -q "$new_id replaces $old_id, which is revoked" "$tmp/err"
expect "the new key has a new id" [ "$new_id" != "$old_id" ]
expect "old key revoked" [ "$(state_of "$old_id")" = revoked ]
expect "new key active" [ "$(state_of "$new_id")" = active ]
expect "same scopes, rate and burst" \
  grep -q "rate=3 burst=4 .*scopes=detect,enroll$" <<<"$(line_of "$new_id")"
expect "keys file stays 0600" [ "$(stat -c %a "$keys")" = 600 ]
expect "keys file holds no key" bash -c "! grep -q -- '${new:17}' '$keys'"

# --- refusals leave the file unchanged --------------------------------------
before=$(sha256sum <"$keys")
"$bin" keys rotate --keys "$keys" "$old_id" >"$tmp/out" 2>"$tmp/err"
expect "rotating a revoked key fails (1)" [ $? = 1 ]
expect "rotating a revoked key: message" grep -q "already revoked" "$tmp/err"
expect "rotating a revoked key prints no key" [ ! -s "$tmp/out" ]
"$bin" keys rotate --keys "$keys" 000000000000 >/dev/null 2>&1
expect "rotating an unknown id fails (1)" [ $? = 1 ]
for v in '' ' 3' 0 nan inf 1e7; do
  "$bin" keys create --keys "$keys" --scope detect --rate "$v" >/dev/null 2>&1
  expect "--rate '$v' is a usage error" [ $? = 2 ]
done
for v in '' 0.5 ' 2' 2x; do
  "$bin" keys create --keys "$keys" --scope detect --burst "$v" >/dev/null 2>&1
  expect "--burst '$v' is a usage error" [ $? = 2 ]
done
for grace in -1 2592001 1e3 abc ''; do
  "$bin" keys rotate --keys "$keys" "$new_id" --grace "$grace" >/dev/null 2>&1
  expect "--grace '$grace' is a usage error" [ $? = 2 ]
done
"$bin" keys rotate --keys "$keys" "$new_id" --scope admin >/dev/null 2>&1
expect "rotate does not take --scope" [ $? = 2 ]
"$bin" keys rotate --keys "$keys" "$new_id" --rate 50 >/dev/null 2>&1
expect "rotate does not take --rate" [ $? = 2 ]
"$bin" keys revoke --keys "$keys" "$new_id" --grace 5 >/dev/null 2>&1
expect "--grace belongs to rotate only" [ $? = 2 ]
"$bin" keys rotate --keys "$keys" >/dev/null 2>&1
expect "rotate needs an id" [ $? = 2 ]
expect "refusals changed nothing" [ "$(sha256sum <"$keys")" = "$before" ]
echo '{"keys": [' >"$tmp/broken.json"
"$bin" keys rotate --keys "$tmp/broken.json" "$new_id" >/dev/null 2>"$tmp/err"
expect "malformed keys file: input error (4)" [ $? = 4 ]
expect "malformed keys file: names the file" grep -q "broken.json" "$tmp/err"

# --- rotate with a grace period ----------------------------------------------
grace_start=$(date +%s)
graced=$("$bin" keys rotate --keys "$keys" "$new_id" --grace 12 2>"$tmp/err")
expect "rotate --grace exits 0" [ $? = 0 ]
expect "old key is expiring" [ "$(state_of "$new_id")" = expiring ]
expect "list shows the expiry" grep -Eq 'expires=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' <<<"$(line_of "$new_id")"
expires=$(python3 -c 'import json,sys; print([k for k in json.load(open(sys.argv[1]))["keys"] if k["id"] == sys.argv[2]][0]["expires"])' "$keys" "$new_id")
expect "expiry is now + 12 s" [ $((expires - grace_start)) -ge 12 -a $((expires - grace_start)) -le 13 ]
"$bin" keys rotate --keys "$keys" "$new_id" --grace 5 >/dev/null 2>"$tmp/err"
expect "a key in its grace period cannot be rotated again" [ $? = 1 ]
expect "  ... and the message says why" grep -q "grace period" "$tmp/err"

# --- a server with only expired keys refuses to start -------------------------
other=$tmp/other.json
o1=$("$bin" keys create --keys "$other" --scope detect 2>/dev/null)
o2=$("$bin" keys rotate --keys "$other" "${o1:4:12}" --grace 1 2>/dev/null)
"$bin" keys revoke --keys "$other" "${o2:4:12}"
sleep 1.1
"$bin" serve --keys "$other" --port 0 >/dev/null 2>"$tmp/err"
expect "only expired keys: serve refuses to start" [ $? != 0 ]
expect "  ... saying there are no keys" grep -q "no API keys" "$tmp/err"

# --- a running server honours the rotation ------------------------------------
server_part() {
  if ! "$bin" models verify >/dev/null 2>&1 || ! command -v curl >/dev/null; then
    if [ "${FACENET_REQUIRE_MODELS:-}" = 1 ]; then
      failed=$((failed + 1)); echo "FAIL: models or curl missing"; fi
    echo "SKIP: server part (models or curl missing)"
    return
  fi
  local port=$((20000 + ($$ + 7) % 20000)) url
  url=http://127.0.0.1:$port
  "$bin" serve --keys "$keys" --port "$port" --threads 2 --pipelines 1 2>"$tmp/log" &
  pid=$!
  for _ in $(seq 300); do
    curl -s -o /dev/null "$url/healthz" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # An authorised request with an empty body gets 400; a refused key 401.
  try() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" \
    -H 'Content-Type: application/json' -d '{}' "$url/v1/detect"; }
  local early
  early=$(try "$new")
  if [ "$(date +%s)" -lt "$expires" ]; then
    expect "old key works during its grace period (got $early)" [ "$early" = 400 ]
  else
    echo "FAIL: the server took longer than the grace period to start"; failed=$((failed + 1))
  fi
  expect "new key works" [ "$(try "$graced")" = 400 ]
  expect "key revoked by rotation is refused" [ "$(try "$old")" = 401 ]
  while [ "$(date +%s)" -le "$expires" ]; do sleep 0.5; done
  expect "old key refused once its grace period is over" [ "$(try "$new")" = 401 ]
  expect "new key still works" [ "$(try "$graced")" = 400 ]
  kill -TERM "$pid"; wait "$pid"; pid=
  expect "the log never holds a key" bash -c "! grep -q -- '${new:17}' '$tmp/log'"
}
server_part

echo "keys: $passed passed, $failed failed"
[ "$failed" = 0 ]
