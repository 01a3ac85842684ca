#!/usr/bin/env bash
# The pipeline subcommands end to end on the face-api demo photos, plus the
# bad-input contract: junk gets a clear per-file error and a documented
# exit code, never a crash.
set -uo pipefail
bin=${FACENET_BIN:?FACENET_BIN is not set}
demo=${FACENET_DEMO_DIR:-}
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
check() { # check NAME EXPECTED_RC ACTUAL_RC
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: $1: exit $3, expected $2"; fi
}
expect() { # expect NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}

# --help and usage errors
"$bin" detect --help >/dev/null; check "detect --help" 0 $?
"$bin" compare --help >/dev/null; check "compare --help" 0 $?
"$bin" embed --help >/dev/null; check "embed --help" 0 $?
"$bin" align --help >/dev/null; check "align --help" 0 $?
"$bin" detect --no-such-flag x 2>/dev/null; check "unknown flag" 2 $?
"$bin" compare 2>/dev/null; check "compare without images" 2 $?
"$bin" detect "$tmp/missing.jpg" 2>/dev/null; check "missing file" 4 $?
"$bin" nosuchcommand 2>/dev/null; check "unknown subcommand" 2 $?
# every count option goes through one parser: whole decimal integers in
# range, nothing else (no spaces, signs, suffixes or overflow)
for v in "" " 40" "+40" "40x" "0x28" "11" "100001" "99999999999999999999"; do
  "$bin" detect --min-size "$v" "$tmp/missing.jpg" 2>/dev/null
  check "detect --min-size '$v' is a usage error" 2 $?
done
"$bin" detect --min-size 40 "$tmp/missing.jpg" 2>/dev/null; check "--min-size 40 is taken" 4 $?
"$bin" embed --jitter " 2" "$tmp/missing.jpg" 2>/dev/null; check "embed --jitter ' 2'" 2 $?
"$bin" align --threads 0 "$tmp" "$tmp/out" 2>/dev/null; check "align --threads 0" 2 $?
for v in "" " 0.5" nan 0.5x 2; do
  "$bin" compare --threshold "$v" "$tmp/missing.jpg" "$tmp/missing.jpg" 2>/dev/null
  check "compare --threshold '$v' is a usage error" 2 $?
done
"$bin" identify -k -1 --gallery "$tmp/g" "$tmp/missing.jpg" 2>/dev/null; check "identify -k -1" 2 $?

# detect: three faces in sample1, as the reference finds; a drawn PNG
"$bin" detect --json "$demo/sample1.jpg" > "$tmp/d.json"; check "detect --json" 0 $?
expect "sample1 has 3 faces" test "$(grep -c '"score"' "$tmp/d.json")" = 3
"$bin" detect "$demo/sample4.jpg" --draw "$tmp/drawn.png" > "$tmp/d4.txt"; check "detect --draw" 0 $?
expect "sample4 has 5 faces" grep -q "sample4.jpg: 5 faces" "$tmp/d4.txt"
expect "drawn file is a PNG" test "$(head -c 4 "$tmp/drawn.png" | od -An -c | tr -d ' ')" = "211PNG"

# compare: a photo against itself is the same person; two groups differ
"$bin" compare "$demo/sample1.jpg" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/c.txt"
check "compare" 0 $?
expect "self-comparison is SAME" grep -q "sample1.jpg vs .*sample1.jpg: 1.0000 SAME" "$tmp/c.txt"
expect "different people differ" grep -q "sample1.jpg vs .*sample3.jpg: .* different" "$tmp/c.txt"
"$bin" compare --json "$demo/sample1.jpg" "$demo/sample2.jpg" > "$tmp/c.json"; check "compare --json" 0 $?
expect "json states the metric" grep -q '"metric": "cosine"' "$tmp/c.json"

# compare with calibrated thresholds: MODEL_DIR/thresholds.json overrides
# the manifest's default and the output names it; a broken file is an
# error naming it (exit 4) and is left as it was. The model directory is a
# copy made of links, so the real one is never touched.
mdir=$tmp/models
mkdir -p "$mdir"
for f in "$("$bin" models path)"/*; do ln -s "$f" "$mdir/"; done
rm -f "$mdir/thresholds.json"
"$bin" compare --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/c0.txt"
check "compare, manifest threshold" 0 $?
expect "manifest source named" grep -q "threshold from: manifest (strict: FAR 1e-3)" "$tmp/c0.txt"
expect "strict by default" grep -q "match when >= 0.4435" "$tmp/c0.txt"
"$bin" compare --best-accuracy --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/c0b.txt"
check "compare --best-accuracy" 0 $?
expect "--best-accuracy uses 0.40" grep -q "match when >= 0.4000" "$tmp/c0b.txt"
expect "--best-accuracy source named" grep -q "threshold from: manifest (best accuracy)" "$tmp/c0b.txt"
expect "manifest verdict: different" grep -q "sample3.jpg: .* different" "$tmp/c0.txt"
printf '{"schema": 1, "models": {"mobilefacenet": {"threshold": 0.05, "threshold_far": 0.999, "pairs": "mine.txt", "n_pairs": 42}}}\n' > "$mdir/thresholds.json"
"$bin" compare --best-accuracy --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/c1.txt"
check "compare, calibrated threshold" 0 $?
expect "file source named" grep -q "threshold from: $mdir/thresholds.json, entry 'mobilefacenet' (42 pairs from mine.txt)" "$tmp/c1.txt"
expect "calibrated verdict: SAME at 0.05" grep -q "sample3.jpg: .* SAME" "$tmp/c1.txt"
"$bin" compare --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/c2.txt"
check "compare (strict), calibrated" 0 $?
expect "strict threshold from the file" grep -q "match when >= 0.9990" "$tmp/c2.txt"
expect "strict verdict: different" grep -q "sample3.jpg: .* different" "$tmp/c2.txt"
"$bin" compare --strict --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/c2s.txt"
expect "--strict is the default" cmp -s "$tmp/c2.txt" "$tmp/c2s.txt"
# an entry without a strict threshold: no strict verdicts, fail closed
printf '{"schema": 1, "models": {"mobilefacenet": {"threshold": 0.4, "threshold_far": -1}}}\n' > "$mdir/thresholds.json"
"$bin" compare --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/c2n.txt" 2> "$tmp/c2n.err"
check "compare without a strict threshold" 2 $?
expect "says how to proceed" grep -q "no calibrated strict threshold; pass --threshold or --best-accuracy" "$tmp/c2n.err"
printf '{"schema": 1, "models": {"mobilefacenet": {"threshold": 0.05, "threshold_far": 0.999, "pairs": "mine.txt", "n_pairs": 42}}}\n' > "$mdir/thresholds.json"
"$bin" models list --dir "$mdir" > "$tmp/ml.txt"; check "models list --dir" 0 $?
expect "models list shows the source" grep -q "from         $mdir/thresholds.json, entry 'mobilefacenet'" "$tmp/ml.txt"
# --jitter N: only a '+jitterN' entry for the same N counts (no fallback to
# the plain entry, which was fitted without jitter): fail closed without one.
"$bin" compare --jitter 0 "$demo/sample1.jpg" "$demo/sample3.jpg" > /dev/null 2>&1
check "compare --jitter 0 is a usage error" 2 $?
"$bin" compare --jitter 2 --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/cj0.txt" 2> "$tmp/cj0.err"
check "compare --jitter without its calibration" 2 $?
expect "says how to calibrate for --jitter" grep -q "for --jitter (run 'facenet validate --calibrate --jitter N')" "$tmp/cj0.err"
printf '{"schema": 1, "models": {"mobilefacenet": {"threshold": 0.05, "threshold_far": 0.999}, "mobilefacenet+jitter3": {"threshold": 0.05, "threshold_far": 0.05, "pairs": "j.txt", "n_pairs": 7}}}\n' > "$mdir/thresholds.json"
"$bin" compare --jitter 2 --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > /dev/null 2>&1
check "compare --jitter 2 ignores the +jitter3 entry" 2 $?
"$bin" compare --jitter 3 --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/cj3.txt"
check "compare --jitter 3 with its calibration" 0 $?
expect "the +jitter3 entry is named" grep -q "entry 'mobilefacenet+jitter3' (7 pairs from j.txt)" "$tmp/cj3.txt"
expect "the +jitter3 threshold is used" grep -q "match when >= 0.0500" "$tmp/cj3.txt"
"$bin" compare --jitter 3 --threshold 0.99 "$demo/sample1.jpg" "$demo/sample1.jpg" > "$tmp/cj4.txt"
check "compare --jitter with --threshold" 0 $?
expect "a photo against itself under jitter: SAME" grep -q "sample1.jpg: .* SAME" "$tmp/cj4.txt"
printf '{"schema": 1, "models": {"mobilefacenet": {"threshold": 7}}}' > "$mdir/thresholds.json"
cp "$mdir/thresholds.json" "$tmp/broken.json"
"$bin" compare --model-dir "$mdir" "$demo/sample1.jpg" "$demo/sample3.jpg" > "$tmp/c3.txt" 2> "$tmp/c3.err"
check "compare, broken thresholds file" 4 $?
expect "broken file named" grep -q "$mdir/thresholds.json" "$tmp/c3.err"
expect "no verdicts from a broken file" test ! -s "$tmp/c3.txt"
expect "broken file unchanged" cmp -s "$mdir/thresholds.json" "$tmp/broken.json"
"$bin" models list --dir "$mdir" > /dev/null 2> "$tmp/ml.err"; check "models list, broken file" 4 $?
expect "models list names the broken file" grep -q "$mdir/thresholds.json" "$tmp/ml.err"
# the TF.js dlib ResNet has a calibrated threshold of its own now
"$bin" compare --model dlib-resnet-tfjs "$demo/sample1.jpg" "$demo/sample1.jpg" > "$tmp/c4.txt"
check "compare --model dlib-resnet-tfjs" 0 $?
expect "tfjs self-comparison is SAME" grep -q "sample1.jpg vs .*sample1.jpg: 1.0000 SAME" "$tmp/c4.txt"

# embed: csv header + one row per face; npy + index
"$bin" embed --all-faces --format csv "$demo/sample1.jpg" > "$tmp/e.csv"; check "embed csv" 0 $?
expect "csv has 3 rows and a header" test "$(wc -l < "$tmp/e.csv")" = 4
"$bin" embed --format npy -o "$tmp/e.npy" "$demo/sample1.jpg" "$demo/sample2.jpg"; check "embed npy" 0 $?
expect "npy magic" test "$(head -c 6 "$tmp/e.npy" | tail -c 5)" = "NUMPY"
expect "npy index has 2 rows" test "$(wc -l < "$tmp/e.npy.index.csv")" = 3
"$bin" embed --format yaml "$demo/sample1.jpg" 2>/dev/null; check "embed bad format" 2 $?

# align: one real photo among 1,000 junk files of every kind
mkdir -p "$tmp/in/alice" "$tmp/in/junk"
cp "$demo/sample1.jpg" "$tmp/in/alice/alice_0001.jpg"
head -c 5000 "$demo/sample2.jpg" > "$tmp/in/junk/truncated.jpg"
: > "$tmp/in/junk/empty.jpg"
printf 'not an image' > "$tmp/in/junk/text.png"
printf '\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\1\x86\xa0\0\1\x86\xa0\x08\x02\0\0\0' > "$tmp/in/junk/bomb.png"
for i in $(seq 1 996); do head -c $((i % 300)) /dev/urandom > "$tmp/in/junk/random_$i.jpg"; done
"$bin" align --threads 2 "$tmp/in" "$tmp/out" > "$tmp/a.txt" 2> "$tmp/a.err"
check "align with junk exits 1" 1 $?
expect "aligned 1 of 1001" grep -q "aligned 1, already done 0, failed 1000, of 1001 files" "$tmp/a.txt"
expect "per-file errors" test "$(grep -c '^  .*junk/' "$tmp/a.err")" = 1000
expect "bomb named" grep -q "bomb.png" "$tmp/a.err"
expect "aligned crop written" test -f "$tmp/out/alice/alice_0001.png"
expect "box list" grep -q "alice_0001.png" "$tmp/out/bounding_boxes.txt"
# resume: the done image is skipped
"$bin" align --threads 2 "$tmp/in" "$tmp/out" > "$tmp/a2.txt" 2>/dev/null
check "align resume exits 1" 1 $?
expect "resume skips done" grep -q "aligned 0, already done 1, failed 1000" "$tmp/a2.txt"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
