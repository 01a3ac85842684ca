#!/usr/bin/env bash
# `facenet enroll`, `facenet identify` and `facenet gallery ...` end to end:
# enrollment from files and from a class-per-folder tree, identification
# with "unknown", keys, removal, export/import, rekey, and the bad-input
# contract (wrong key, other model, hostile names, junk files). Uses the
# demo photos (FACENET_DEMO_DIR) and, when present, a few LFW people
# (FACENET_LFW_DIR).
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
unset FACENET_GALLERY_KEY
passed=0 failed=0
check() { # check NAME EXPECTED_RC ACTUAL_RC
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: $1: exit $3, expected $2"; sed 's/^/  | /' "$tmp/out" 2>/dev/null | head -20; fi
}
expect() { # expect NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}
run() { "$@" >"$tmp/out" 2>&1; }
G=$tmp/g.gallery
K=$tmp/k.key

# ---- keys -------------------------------------------------------------------
run "$bin" gallery keygen "$K"; check "keygen" 0 $?
expect "key file is 0600" test "$(stat -c %a "$K")" = 600
run "$bin" gallery keygen "$K"; check "keygen refuses to overwrite" 2 $?
run "$bin" enroll --gallery "$G" --subject x "$demo/sample1.jpg"; check "no key at all" 2 $?
expect "no-key message" grep -q "FACENET_GALLERY_KEY" "$tmp/out"
cp "$K" "$tmp/loose.key"; chmod 644 "$tmp/loose.key"
run "$bin" enroll --gallery "$G" --key-file "$tmp/loose.key" --subject x "$demo/sample1.jpg"
check "world-readable key refused" 2 $?
expect "chmod advice" grep -q "chmod 600" "$tmp/out"
expect "no gallery created without a key" test ! -e "$G"

# ---- enroll from files; identify ----------------------------------------------
for s in 1 2 3; do
  run "$bin" enroll --gallery "$G" --key-file "$K" --subject "person$s" "$demo/sample$s.jpg"
  check "enroll sample$s" 0 $?
done
expect "gallery file is private" test "$(stat -c %a "$G")" = 600
run "$bin" enroll --gallery "$G" --key-file "$K" --subject person1 "$demo/sample1.jpg"
check "re-enroll is a no-op" 0 $?
expect "re-enroll skipped" grep -q "enrolled 0 templates .*1 already enrolled" "$tmp/out"
"$bin" identify --gallery "$G" --key-file "$K" -k 3 "$demo/sample2.jpg" >"$tmp/out" 2>&1
check "identify" 0 $?
expect "sample2 is person2" grep -q "sample2.jpg: face [0-9]* .*: person2 (1.0000)" "$tmp/out"
"$bin" identify --gallery "$G" --key-file "$K" --all-faces --json "$demo/sample1.jpg" >"$tmp/id.json" 2>"$tmp/out"
check "identify --all-faces --json" 0 $?
expect "three faces identified" test "$(grep -c '"face":' "$tmp/id.json")" = 3
expect "one is person1" test "$(grep -c '"identity": "person1"' "$tmp/id.json")" = 1
# (the demo photos share cast members, so the other faces may match too)
expect "the main face scores 1" grep -q '"score": 1.0' "$tmp/id.json"
run "$bin" identify --gallery "$G" --key-file "$K" "$demo/sample4.jpg"; check "a stranger" 0 $?
expect "stranger is unknown" grep -q "sample4.jpg: face .*: unknown (best" "$tmp/out"
FACENET_GALLERY_KEY=$(cat "$K") run "$bin" gallery list "$G"; check "key from the environment" 0 $?
expect "list shows 3 subjects" grep -q "^3 subjects" "$tmp/out"

# ---- a class-per-folder tree --------------------------------------------------
people=()
if [ -n "$lfw" ] && [ -d "$lfw/George_W_Bush" ]; then
  for p in George_W_Bush Colin_Powell Tony_Blair; do
    mkdir -p "$tmp/tree/$p"
    ls "$lfw/$p"/*.jpg | head -2 | while read -r f; do ln -s "$f" "$tmp/tree/$p/"; done
    people+=("$p")
  done
  run "$bin" enroll --gallery "$G" --key-file "$K" --collection lfw --threads 2 "$tmp/tree"
  check "enroll a tree" 0 $?
  expect "six templates for three subjects" grep -q "enrolled 6 templates for 3 subjects" "$tmp/out"
  for p in "${people[@]}"; do
    third=$(ls "$lfw/$p"/*.jpg | sed -n 3p)
    run "$bin" identify --gallery "$G" --key-file "$K" --collection lfw "$third"
    check "identify $p" 0 $?
    expect "$p found" grep -q ": $p (" "$tmp/out"
  done
else
  echo "note: FACENET_LFW_DIR not set; tree enrollment checked on demo photos only"
  mkdir -p "$tmp/tree/alpha" "$tmp/tree/beta"
  ln -s "$demo/sample5.jpg" "$tmp/tree/alpha/"; ln -s "$demo/sample6.jpg" "$tmp/tree/beta/"
  run "$bin" enroll --gallery "$G" --key-file "$K" --collection lfw "$tmp/tree"
  check "enroll a tree" 0 $?
fi

# ---- show, stats, check ----------------------------------------------------------
run "$bin" gallery show "$G" person1 --key-file "$K"; check "show" 0 $?
expect "show lists the image digest" grep -q "$(sha256sum "$demo/sample1.jpg" | cut -c1-64)" "$tmp/out"
run "$bin" gallery show "$G" nobody --key-file "$K"; check "show a missing subject" 1 $?
run "$bin" gallery stats "$G" --key-file "$K" --json; check "stats" 0 $?
expect "stats names the model" grep -q '"model": "mobilefacenet@' "$tmp/out"
run "$bin" gallery check "$G" --key-file "$K"; check "check" 0 $?

# ---- refusals: wrong key, other model, hostile names, junk -------------------------
"$bin" gallery keygen "$tmp/other.key" >/dev/null
sum_before=$(sha256sum "$G" | cut -c1-64)
run "$bin" gallery list "$G" --key-file "$tmp/other.key"; check "wrong key" 4 $?
expect "wrong key is named" grep -q "wrong key" "$tmp/out"
run "$bin" identify --gallery "$G" --key-file "$tmp/other.key" "$demo/sample1.jpg"
check "identify with the wrong key" 4 $?
run "$bin" enroll --gallery "$G" --key-file "$K" --model dlib-resnet --subject y "$demo/sample1.jpg"
check "another model" 4 $?
expect "other model refused" grep -q "cannot be compared" "$tmp/out"
run "$bin" enroll --gallery "$G" --key-file "$K" --subject $'bad\x1b[31mname' "$demo/sample1.jpg"
check "control characters in a name" 2 $?
run "$bin" enroll --gallery "$G" --key-file "$K" --subject "$(printf 'n%.0s' $(seq 1 10240))" "$demo/sample1.jpg"
check "10 kB name" 2 $?
run "$bin" enroll --gallery "$G" --key-file "$K" --subject $'caf\xe9' "$demo/sample1.jpg"
check "non-UTF-8 name" 2 $?
run "$bin" enroll --gallery "$G" --key-file "$K" --metadata '[1]' --subject z "$demo/sample1.jpg"
check "metadata not an object" 2 $?
sum_after=$(sha256sum "$G" | cut -c1-64)
expect "refusals wrote nothing" test "$sum_before" = "$sum_after"
run "$bin" enroll --gallery "$G" --key-file "$K" --subject "Robert'); DROP TABLE subjects;--" "$demo/sample5.jpg"
check "SQL metacharacters are just characters" 0 $?
run "$bin" gallery list "$G" --key-file "$K"; check "list after" 0 $?
expect "that name is stored verbatim" grep -qF "Robert'); DROP TABLE subjects;--" "$tmp/out"
head -c 65536 /dev/urandom > "$tmp/junk.gallery"
cp "$tmp/junk.gallery" "$tmp/junk.copy"
run "$bin" gallery list "$tmp/junk.gallery" --key-file "$K"; check "junk gallery" 4 $?
expect "junk untouched" cmp -s "$tmp/junk.gallery" "$tmp/junk.copy"
head -c 3000 "$G" > "$tmp/cut.gallery"
run "$bin" gallery check "$tmp/cut.gallery" --key-file "$K"; check "truncated gallery" 4 $?
run "$bin" gallery list "$tmp/none.gallery" --key-file "$K"; check "missing gallery" 4 $?

# ---- export, import, rekey ---------------------------------------------------------
run "$bin" gallery export "$G" "$tmp/e.sealed" --key-file "$K"; check "export" 0 $?
expect "sealed export has no names" test "$(grep -c person1 "$tmp/e.sealed")" = 0
run "$bin" gallery create "$tmp/copy.gallery" --key-file "$tmp/other.key"; check "create" 0 $?
run "$bin" gallery import "$tmp/copy.gallery" "$tmp/e.sealed" --key-file "$tmp/other.key" --import-key-file "$K"
check "import" 0 $?
run "$bin" identify --gallery "$tmp/copy.gallery" --key-file "$tmp/other.key" "$demo/sample3.jpg"
check "identify in the copy" 0 $?
expect "copy knows person3" grep -q ": person3 (1.0000)" "$tmp/out"
"$bin" gallery keygen "$tmp/new.key" >/dev/null
run "$bin" gallery rekey "$G" --key-file "$K" --new-key-file "$tmp/new.key"; check "rekey" 0 $?
run "$bin" gallery list "$G" --key-file "$K"; check "old key after rekey" 4 $?
run "$bin" gallery check "$G" --key-file "$tmp/new.key"; check "new key after rekey" 0 $?
K=$tmp/new.key

# ---- removal is real ------------------------------------------------------------------
expect "name present before removal" grep -q "person2" "$G"
run "$bin" gallery remove "$G" person2 --key-file "$K"; check "remove" 0 $?
expect "removed 1 template" grep -q "removed subject 'person2' and 1 template" "$tmp/out"
expect "name gone from the file" test "$(cat "$G" "$G-wal" 2>/dev/null | grep -c person2)" = 0
run "$bin" identify --gallery "$G" --key-file "$K" "$demo/sample2.jpg"; check "identify after removal" 0 $?
expect "person2 is unknown now" grep -q "sample2.jpg: face .*: unknown" "$tmp/out"
run "$bin" gallery remove "$G" person2 --key-file "$K"; check "remove twice" 1 $?

# ---- collections: list, rename, remove ---------------------------------------------------
run "$bin" gallery collections "$G" --key-file "$K"; check "collections" 0 $?
expect "collections lists lfw" grep -qE "^ +[0-9]+  lfw " "$tmp/out"
expect "collections counts them" grep -q "^2 collections" "$tmp/out"
run "$bin" gallery rename-collection "$G" lfw famous --key-file "$K"; check "rename-collection" 0 $?
run "$bin" gallery collections "$G" --key-file "$K" --json; check "collections --json" 0 $?
expect "renamed in the listing" grep -q '"name": "famous"' "$tmp/out"
expect "old name gone" test "$(grep -c '"name": "lfw"' "$tmp/out")" = 0
sum_before=$(sha256sum "$G" | cut -c1-64)
run "$bin" gallery rename-collection "$G" famous default --key-file "$K"; check "rename onto an existing collection" 2 $?
expect "says it exists" grep -q "already has a collection 'default'" "$tmp/out"
run "$bin" gallery rename-collection "$G" nowhere x --key-file "$K"; check "rename a missing collection" 1 $?
run "$bin" gallery rename-collection "$G" famous $'bad\x1b[31m' --key-file "$K"; check "rename to a hostile name" 2 $?
run "$bin" gallery rename-collection "$G" famous --key-file "$K"; check "rename needs two names" 2 $?
run "$bin" gallery rename-collection "$G" famous x --key-file "$tmp/other.key"; check "rename with the wrong key" 4 $?
expect "refused renames wrote nothing" test "$sum_before" = "$(sha256sum "$G" | cut -c1-64)"
run "$bin" gallery check "$G" --key-file "$K"; check "check after rename" 0 $?
run "$bin" gallery remove-collection "$G" famous --key-file "$K"; check "remove-collection" 0 $?
expect "remove-collection counts" grep -qE "removed collection 'famous' with [0-9]+ subjects? and [0-9]+ templates?" "$tmp/out"
run "$bin" gallery remove-collection "$G" famous --key-file "$K"; check "remove-collection twice" 1 $?
run "$bin" gallery collections "$G" --key-file "$K"; check "collections after removal" 0 $?
expect "one collection left" grep -q "^1 collection$" "$tmp/out"
run "$bin" gallery check "$G" --key-file "$K"; check "check after remove-collection" 0 $?

# ---- threshold, bench ----------------------------------------------------------------------
run "$bin" gallery threshold "$G" 0.55 --key-file "$K"; check "set threshold" 0 $?
expect "threshold recorded" grep -q "^0.5500" "$tmp/out"
run "$bin" gallery threshold "$G" 1.5 --key-file "$K"; check "bad threshold" 2 $?
# thresholds parse strictly: an empty or padded value is refused, never read as 0
for t in "" " 0.3" "nan" "0.3x"; do
  run "$bin" gallery threshold "$G" "$t" --key-file "$K"; check "threshold '$t' is a usage error" 2 $?
done
run "$bin" gallery threshold "$G" --key-file "$K"; check "read threshold" 0 $?
expect "bad values changed nothing" grep -q "^0.5500" "$tmp/out"
run "$bin" gallery bench --sizes 3000 --queries 20 --store 300 --dir "$tmp"; check "bench" 0 $?
expect "bench reports agreement" grep -q "100.000%" "$tmp/out"
expect "bench cleans up" test -z "$(ls "$tmp"/facenet-bench-* 2>/dev/null)"

# ---- templates record how they were made, precision included ------------------------
P=$tmp/p.gallery
run "$bin" enroll --gallery "$P" --key-file "$K" --subject fp32 "$demo/sample1.jpg"; check "enroll fp32" 0 $?
FACENET_PRECISION=int8 run "$bin" enroll --gallery "$P" --key-file "$K" --subject allint8 "$demo/sample2.jpg"
check "enroll all int8" 0 $?
FACENET_PRECISION=mobilefacenet:int8 run "$bin" enroll --gallery "$P" --key-file "$K" --flip \
  --subject embedint8 "$demo/sample3.jpg"
check "enroll embedder int8, flipped" 0 $?
for s in "fp32 mtcnn/arcface112 " "allint8 mtcnn-int8/arcface112+int8 " \
         "embedint8 mtcnn/arcface112+flip+int8 "; do
  set -- $s
  run "$bin" gallery show "$P" "$1" --key-file "$K"; check "show $1" 0 $?
  expect "$1 template labelled $2" grep -qF "Z  $2  image" "$tmp/out"
done

echo "gallery CLI: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
