#!/usr/bin/env bash
# `facenet serve --gallery`: the gallery endpoints on the real server, with
# curl. Enroll a face from a demo photo, identify it from a rescaled,
# re-encoded copy made here, a stranger is "unknown", verify against a
# subject, the collections/subjects/faces resources with their scopes and
# bad input, JSON and multipart bodies, other processes' writes picked up, and SIGTERM while enroll
# requests are in flight: every enrollment answered 2xx is in the gallery.
. "$(dirname "$0")/lib/common.sh"
require_demo
require_models
require_command curl

keys=$tmp/keys.json
G=$tmp/people.gallery
K=$tmp/gallery.key
"$bin" gallery keygen "$K" >/dev/null
newkey() { "$bin" keys create --keys "$keys" --rate 1000 --burst 1000 "$@" 2>/dev/null; }
enroller=$(newkey --scope enroll)
identifier=$(newkey --scope identify)
verifier=$(newkey --scope verify)
admin=$(newkey --scope admin)
detector=$(newkey --scope detect)

# Port 0: the server picks a free port and logs it.
url=
start_server() {
  local before port
  touch "$tmp/log"
  before=$(grep -c 'listening on' "$tmp/log")
  "$bin" serve --keys "$keys" --port 0 --threads 4 --pipelines 2 --max-body 4000000 \
    --timeout 5 --gallery "$G" --gallery-key-file "$K" --gallery-refresh 1 "$@" 2>>"$tmp/log" &
  pid=$!
  for _ in $(seq 300); do
    if [ "$(grep -c 'listening on' "$tmp/log")" -gt "$before" ]; then
      port=$(grep 'listening on' "$tmp/log" | tail -1 | sed 's/.*:\([0-9]*\)\/$/\1/')
      url=http://127.0.0.1:$port
      curl -s -o /dev/null "$url/healthz" && return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop_server() { kill -TERM "$pid"; wait "$pid"; local rc=$?; pid=; return $rc; }

status() { curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' "$@"; }
# call KEY METHOD PATH [curl args...]
call() { local key=$1 method=$2 path=$3; shift 3
  status -X "$method" -H "Authorization: Bearer $key" "$@" "$url$path"; }
json() { call "$1" "$2" "$3" -H 'Content-Type: application/json' --data-binary "@$4"; }
code_is() { grep -q "\"code\":\"$1\"" "$tmp/body"; }
body_has() { grep -q -- "$1" "$tmp/body"; }
b64() { base64 -w0 "$1"; }

# Request bodies. The probe is sample1's main face cropped with a wide
# margin, scaled to 240x240 and re-encoded as PNG (by `facenet align`), so
# identify never sees the enrolled bytes or size.
mkdir -p "$tmp/in/p"
cp "$demo/sample1.jpg" "$tmp/in/p/"
"$bin" align --template margin --image-size 240 --margin 120 "$tmp/in" "$tmp/aligned" >/dev/null 2>&1
cp "$tmp/aligned/p/sample1.png" "$tmp/probe.png" 2>/dev/null
expect "probe made" test -s "$tmp/probe.png"
expect "probe differs from the enrolled photo" bash -c "! cmp -s '$demo/sample1.jpg' '$tmp/probe.png'"
printf '{"image":"%s","metadata":{"team":"blue"}}' "$(b64 "$demo/sample1.jpg")" >"$tmp/enroll1.json"
printf '{"image":"%s"}' "$(b64 "$tmp/probe.png")" >"$tmp/probe.json"
printf '{"image":"%s"}' "$(b64 "$demo/sample4.jpg")" >"$tmp/stranger.json"
printf '{"image":"%s","subject":"Ada Lovelace","collection":"staff"}' "$(b64 "$tmp/probe.png")" >"$tmp/verify_ada.json"
printf '{"image":"%s","subject":"Ada Lovelace","collection":"staff"}' "$(b64 "$demo/sample4.jpg")" >"$tmp/verify_stranger.json"
printf '{"image":"%s","subject":"Nobody","collection":"staff"}' "$(b64 "$tmp/probe.png")" >"$tmp/verify_nobody.json"

"$bin" serve --keys "$keys" --port 0 --gallery "$G" >/dev/null 2>"$tmp/nokey" </dev/null
expect "no gallery key: refuses to start" [ $? != 0 ]
expect "no gallery key: says where a key comes from" grep -q FACENET_GALLERY_KEY "$tmp/nokey"
expect "no gallery key: no gallery created" test ! -e "$G"

expect "server starts" start_server
expect "readyz 200" [ "$(status "$url/readyz")" = 200 ]
expect "readyz: gallery open" body_has '"gallery":{"open":true'
expect "openapi lists identify" bash -c "curl -s '$url/openapi.json' | grep -q '/v1/identify'"

ada=/v1/collections/staff/subjects/Ada%20Lovelace
# --- scopes and bad input --------------------------------------------------
expect "enroll without a key 401" [ "$(status -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/enroll1.json" "$url$ada/faces")" = 401 ]
expect "enroll with an identify key 403" [ "$(json "$identifier" POST "$ada/faces" "$tmp/enroll1.json")" = 403 ]
expect "list with a detect key 403" [ "$(call "$detector" GET /v1/collections)" = 403 ]
expect "identify with a verify key 403" [ "$(json "$verifier" POST /v1/identify "$tmp/probe.json")" = 403 ]
expect "delete with an identify key 403" [ "$(call "$identifier" DELETE "$ada")" = 403 ]
expect "PUT on faces 405" [ "$(call "$enroller" PUT "$ada/faces")" = 405 ]
expect "bad escape 400" [ "$(call "$admin" GET /v1/collections/staff/subjects/a%2/faces)" = 400 ]
expect "bad escape: stable code" code_is invalid_path
expect "encoded NUL 400" [ "$(call "$admin" GET /v1/collections/staff/subjects/a%00b/faces)" = 400 ]
expect "empty subject segment 404" [ "$(call "$admin" GET /v1/collections/staff/subjects//faces)" = 404 ]
printf '{"image":"%s"}' "$(b64 "$demo/sample1.jpg")" >"$tmp/plain1.json"
expect "control character in a name 400" [ "$(json "$enroller" POST "/v1/collections/staff/subjects/bad%1Bname/faces" "$tmp/plain1.json")" = 400 ]
expect "bad name: stable code" code_is invalid_argument
expect "bad name: not echoed" bash -c "! grep -q 'bad' '$tmp/body'"
printf '{"image":"%s","metadata":[1]}' "$(b64 "$demo/sample1.jpg")" >"$tmp/badmeta.json"
expect "metadata not an object 400" [ "$(json "$enroller" POST "$ada/faces" "$tmp/badmeta.json")" = 400 ]
echo '{"image":[]}' >"$tmp/noimages.json"
expect "empty image array 400" [ "$(json "$enroller" POST "$ada/faces" "$tmp/noimages.json")" = 400 ]
printf '{"image":["QUFBQQ=="%s]}' "$(printf ',"QUFBQQ=="%.0s' $(seq 8))" >"$tmp/nine.json"
expect "nine images 400" [ "$(json "$enroller" POST "$ada/faces" "$tmp/nine.json")" = 400 ]
expect "nine images: stable code" code_is too_many_images
printf '{"image":"%s"}' "$(head -c 3000 "$demo/sample1.jpg" | b64 /dev/stdin)" >"$tmp/trunc.json"
expect "truncated JPEG 422" [ "$(json "$enroller" POST "$ada/faces" "$tmp/trunc.json")" = 422 ]
{ printf 'P5\n200 200\n255\n'; head -c 40000 /dev/zero | tr '\0' '\200'; } >"$tmp/blank.png"
printf '{"image":"%s"}' "$(b64 "$tmp/blank.png")" >"$tmp/blank.json"
expect "no face 422" [ "$(json "$enroller" POST "$ada/faces" "$tmp/blank.json")" = 422 ]
expect "no face: stable code" code_is no_face
expect "nothing was enrolled by bad requests" [ "$(call "$admin" GET "$ada/faces")" = 404 ]

# --- enroll, list, identify --------------------------------------------------
expect "enroll 201" [ "$(json "$enroller" POST "$ada/faces" "$tmp/enroll1.json")" = 201 ]
expect "enroll: face id returned" body_has '"id":[0-9]'
face1=$(grep -o '"id":[0-9]*' "$tmp/body" | head -1 | cut -d: -f2)
expect "enroll again (same image) 201" [ "$(json "$enroller" POST "$ada/faces" "$tmp/enroll1.json")" = 201 ]
expect "same image: same face id, not a second one" body_has "\"id\":$face1[,}]"
printf '{"image":["%s","%s"]}' "$(b64 "$demo/sample6.jpg")" "$(b64 "$demo/sample2.jpg")" >"$tmp/enroll2.json"
expect "enroll two images for bob 201" [ "$(json "$enroller" POST /v1/collections/staff/subjects/bob/faces "$tmp/enroll2.json")" = 201 ]
printf '{"image":"%s"}' "$(b64 "$demo/sample3.jpg")" >"$tmp/enroll3.json"
expect "enroll into another collection 201" [ "$(json "$enroller" POST /v1/collections/guests/subjects/carol/faces "$tmp/enroll3.json")" = 201 ]

# The same through multipart/form-data.
mp() { local key=$1 method=$2 path=$3; shift 3
  status -X "$method" -H "Authorization: Bearer $key" "$@" "$url$path"; }
expect "multipart enroll 201" [ "$(mp "$enroller" POST /v1/collections/guests/subjects/erin/faces -F "image=@$demo/sample6.jpg" -F 'metadata={"badge":7}')" = 201 ]
expect "multipart enroll: bad metadata 400" [ "$(mp "$enroller" POST /v1/collections/guests/subjects/fay/faces -F "image=@$demo/sample6.jpg" -F 'metadata=not json')" = 400 ]
expect "multipart enroll: malformed body 400" [ "$(mp "$enroller" POST /v1/collections/guests/subjects/fay/faces -H 'Content-Type: multipart/form-data; boundary=q' --data-binary $'--q\r\nContent-Disposition: form-data; name="image"\r\n\r\nxx')" = 400 ]
expect "multipart enroll: malformed: stable code" code_is invalid_multipart
expect "fay was never created" [ "$(call "$admin" GET /v1/collections/guests/subjects/fay/faces)" = 404 ]
expect "multipart identify 200" [ "$(mp "$identifier" POST /v1/identify -F "image=@$tmp/probe.png" -F k=2 -F collection=staff)" = 200 ]
expect "multipart identify: Ada" body_has '"identity":{"collection":"staff","subject":"Ada Lovelace"'
expect "multipart identify: bad k 400" [ "$(mp "$identifier" POST /v1/identify -F "image=@$tmp/probe.png" -F k=x)" = 400 ]
expect "multipart verify against a subject 200" [ "$(mp "$verifier" POST /v1/verify -F "image=@$tmp/probe.png" -F 'subject=Ada Lovelace' -F collection=staff)" = 200 ]
expect "multipart verify: same" body_has '"same":true'

expect "list collections 200" [ "$(call "$identifier" GET /v1/collections)" = 200 ]
expect "collections: staff with 2 subjects, 3 faces" body_has '{"name":"staff","subjects":2,"faces":3}'
expect "collections: guests" body_has '{"name":"guests","subjects":2,"faces":2}'
expect "admin may list too" [ "$(call "$admin" GET /v1/collections)" = 200 ]
expect "list subjects 200" [ "$(call "$identifier" GET /v1/collections/staff/subjects)" = 200 ]
expect "subjects: Ada with metadata" body_has '"name":"Ada Lovelace","faces":1,.*"metadata":{"team":"blue"}'
expect "subjects: no more pages" body_has '"next_after":null'
expect "subjects page of 1 200" [ "$(call "$identifier" GET '/v1/collections/staff/subjects?limit=1')" = 200 ]
expect "page of 1: one subject and a cursor" bash -c "[ \$(grep -o '\"name\"' '$tmp/body' | wc -l) = 1 ] && grep -q '\"next_after\":[0-9]' '$tmp/body'"
after=$(grep -o '"next_after":[0-9]*' "$tmp/body" | cut -d: -f2)
call "$identifier" GET "/v1/collections/staff/subjects?limit=1&after=$after" >/dev/null
expect "second page has the other subject" body_has '"name":"bob"'
expect "bad limit 400" [ "$(call "$identifier" GET '/v1/collections/staff/subjects?limit=0')" = 400 ]
expect "unknown collection 404" [ "$(call "$identifier" GET /v1/collections/nope/subjects)" = 404 ]
expect "list faces 200" [ "$(call "$identifier" GET "$ada/faces")" = 200 ]
expect "faces: the image digest" body_has "\"image_sha256\":\"$(sha256sum "$demo/sample1.jpg" | cut -c1-64)\""
expect "faces: never an embedding" bash -c "! grep -q embedding '$tmp/body'"

expect "identify 200" [ "$(json "$identifier" POST /v1/identify "$tmp/probe.json")" = 200 ]
expect "identify: the rescaled copy is Ada" body_has '"unknown":false,"identity":{"collection":"staff","subject":"Ada Lovelace"'
printf '{"image":"%s","collection":"guests","k":1}' "$(b64 "$tmp/probe.png")" >"$tmp/probe_guests.json"
expect "identify in guests 200" [ "$(json "$identifier" POST /v1/identify "$tmp/probe_guests.json")" = 200 ]
expect "identify in guests: not Ada" bash -c "! grep -q 'Ada' '$tmp/body'"
expect "identify stranger 200" [ "$(json "$identifier" POST /v1/identify "$tmp/stranger.json")" = 200 ]
expect "stranger is unknown" body_has '"unknown":true,"identity":null'
printf '{"image":"%s","k":0}' "$(b64 "$tmp/probe.png")" >"$tmp/k0.json"
expect "k=0 400" [ "$(json "$identifier" POST /v1/identify "$tmp/k0.json")" = 400 ]

expect "verify against a subject 200" [ "$(json "$verifier" POST /v1/verify "$tmp/verify_ada.json")" = 200 ]
expect "verify: the copy is Ada" body_has '"same":true'
expect "verify stranger against Ada 200" [ "$(json "$verifier" POST /v1/verify "$tmp/verify_stranger.json")" = 200 ]
expect "verify: the stranger is not Ada" body_has '"same":false'
# scored exactly against Ada's templates (facenet_gallery_score_subject), so
# the similarity is a number even far below the threshold
expect "verify stranger: similarity is a number" grep -Eq '"similarity":-?[0-9]' "$tmp/body"
expect "verify unknown subject 404" [ "$(json "$verifier" POST /v1/verify "$tmp/verify_nobody.json")" = 404 ]
expect "verify unknown subject: stable code" code_is subject_not_found
printf '{"image":"%s","image1":"%s","subject":"bob"}' "$(b64 "$tmp/probe.png")" "$(b64 "$tmp/probe.png")" >"$tmp/verify_mixed.json"
expect "verify with both forms 400" [ "$(json "$verifier" POST /v1/verify "$tmp/verify_mixed.json")" = 400 ]

# --- another process writes; the server picks it up ---------------------------
expect "CLI enroll while the server runs" "$bin" enroll --gallery "$G" --key-file "$K" --collection staff --subject dave "$demo/sample5.jpg" >/dev/null 2>&1
sleep 2.5
call "$identifier" GET /v1/collections/staff/subjects >/dev/null
expect "the CLI's subject is listed after the refresh" body_has '"name":"dave"'
printf '{"image":"%s","collection":"staff"}' "$(b64 "$demo/sample5.jpg")" >"$tmp/dave.json"
json "$identifier" POST /v1/identify "$tmp/dave.json" >/dev/null
expect "the CLI's subject is identified" body_has '"identity":{"collection":"staff","subject":"dave"'

# --- deletes -------------------------------------------------------------------
expect "delete a face of another subject 404" [ "$(call "$enroller" DELETE "/v1/collections/staff/subjects/bob/faces/$face1")" = 404 ]
expect "delete a face: stable code" code_is face_not_found
expect "delete a face id that is not a number 404" [ "$(call "$enroller" DELETE "$ada/faces/x1")" = 404 ]
expect "delete Ada's face 200" [ "$(call "$enroller" DELETE "$ada/faces/$face1")" = 200 ]
expect "face is gone" [ "$(call "$identifier" GET "$ada/faces")" = 200 ] 
expect "Ada has no faces left" body_has '"faces":\[\]'
expect "delete bob 200" [ "$(call "$enroller" DELETE /v1/collections/staff/subjects/bob)" = 200 ]
expect "bob had 2 faces" body_has '"deleted_faces":2'
expect "delete bob again 404" [ "$(call "$enroller" DELETE /v1/collections/staff/subjects/bob)" = 404 ]
json "$identifier" POST /v1/identify "$tmp/probe.json" >/dev/null
expect "the deleted faces are no longer identified" bash -c "! grep -q '\"identity\":{\"collection\":\"staff\",\"subject\":\"Ada Lovelace\"' '$tmp/body' && ! grep -q '\"identity\":{[^}]*\"bob\"' '$tmp/body'"

expect "delete a collection with an enroll key 403" [ "$(call "$enroller" DELETE /v1/collections/guests)" = 403 ]
expect "delete the guests collection 200" [ "$(call "$admin" DELETE /v1/collections/guests)" = 200 ]
expect "guests had 2 subjects, 2 faces" body_has '"deleted_subjects":2,"deleted_faces":2'
expect "delete guests again 404" [ "$(call "$admin" DELETE /v1/collections/guests)" = 404 ]
expect "delete guests again: stable code" code_is collection_not_found
call "$identifier" GET /v1/collections >/dev/null
expect "guests is no longer listed" bash -c "! grep -q '\"name\":\"guests\"' '$tmp/body'"
expect "staff is still listed" body_has '"name":"staff"'

expect "SIGTERM exits 0" stop_server

# --- SIGTERM while enroll requests are in flight ---------------------------------
# Four clients enroll subjects drain-1-*, drain-2-*, ... back to back; the
# server is stopped in the middle. Every 2xx must be in the gallery after.
expect "server restarts on the same gallery" start_server
for i in 1 2 3 4 5 6; do
  printf '{"image":"%s"}' "$(b64 "$demo/sample$i.jpg")" >"$tmp/drain$i.json"
done
client() { local c=$1
  for n in $(seq 1 40); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $enroller" \
      -H 'Content-Type: application/json' --data-binary "@$tmp/drain$(( (n + c) % 6 + 1 )).json" \
      "$url/v1/collections/drain/subjects/drain-$c-$n/faces")
    echo "drain-$c-$n $code" >>"$tmp/drain.log"
    [ "$code" = 000 ] && break
  done
}
: >"$tmp/drain.log"
clients=
for c in 1 2 3 4; do client "$c" & clients="$clients $!"; done
for _ in $(seq 100); do
  [ "$(grep -c ' 201$' "$tmp/drain.log")" -ge 3 ] && break
  sleep 0.1
done
# Signal while a pipeline is running an enrollment.
for _ in $(seq 200); do
  curl -s "$url/metrics" | grep -q '^facenet_pipelines_busy [1-9]' && break
  sleep 0.01
done
kill -TERM "$pid"
wait $clients
wait "$pid"
expect "SIGTERM during enroll exits 0" [ $? = 0 ]
pid=
ok=$(grep ' 201$' "$tmp/drain.log" | cut -d' ' -f1)
expect "some enrollments succeeded ($(echo "$ok" | wc -w))" [ -n "$ok" ]
# (the access log lines after the last "draining" line: this server's drain)
awk '/SIGTERM, draining/ {tail = ""; next} {tail = tail $0 "\n"} END {printf "%s", tail}' \
  "$tmp/log" >"$tmp/drained"
expect "an enrollment in flight at SIGTERM completed with 201 ($(grep -c '"status":201' "$tmp/drained"))" \
  grep -q '"status":201' "$tmp/drained"
expect "only 201, 503 or refused during the drain" bash -c "! grep -Ev ' (201|503|000)$' '$tmp/drain.log'"
"$bin" gallery list "$G" --key-file "$K" --collection drain >"$tmp/list" 2>&1
expect "gallery list after the stop" [ $? = 0 ]
missing=0
for s in $ok; do grep -qw -- "$s" "$tmp/list" || { missing=$((missing + 1)); echo "missing: $s"; }; done
expect "every 2xx enrollment is in the gallery" [ "$missing" = 0 ]
expect "gallery check passes" "$bin" gallery check "$G" --key-file "$K"

expect "access log never holds a key" bash -c "! grep -q -- '${enroller:17}' '$tmp/log'"
expect "access log never holds image data" bash -c "! grep -q '/9j/' '$tmp/log'"
expect "access log has the gallery routes" grep -q '"route":"/v1/collections/{collection}/subjects/{subject}/faces","status":201' "$tmp/log"

echo "serve_gallery: $passed passed, $failed failed"
[ "$failed" = 0 ]
