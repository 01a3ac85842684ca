#!/usr/bin/env bash
# `facenet validate`: usage and bad-input errors (no models needed: every
# error below is found before a model is loaded), then, when the models
# and LFW are present, a small end-to-end run on 16 LFW pairs that checks
# the report, the ROC plot, calibration and the cache.
set -uo pipefail
bin=${FACENET_BIN:?FACENET_BIN is not set}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
out=$tmp/out

# run EXPECTED_RC ARGS...: run validate, keep stdout+stderr in $out
run() {
  local want=$1; shift
  "$bin" validate "$@" >"$out" 2>&1
  local got=$?
  if [ "$got" = "$want" ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: validate $*: exit $got, expected $want"; sed 's/^/  | /' "$out"; fi
}
has() { # has TEXT: the last output contains TEXT
  if grep -qF -- "$1" "$out"; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: output lacks '$1'"; sed 's/^/  | /' "$out"; fi
}

# ---- usage ------------------------------------------------------------------
run 0 --help
has "--lfw-dir"
run 2
has "--lfw-dir is required"
run 2 --lfw-dir "$tmp" --metric manhattan
run 2 --lfw-dir "$tmp" --folds 1
run 2 --lfw-dir "$tmp" --model mtcnn-pnet
has "not an embedding model"
run 2 --lfw-dir "$tmp" --threads 0
run 2 --lfw-dir "$tmp" --calibrate --subtract-mean
run 2 --lfw-dir "$tmp" --ensemble-weight 1
has "--ensemble-weight and --fusion need --model ensemble"
run 2 --lfw-dir "$tmp" --fusion logistic
has "--ensemble-weight and --fusion need --model ensemble"
run 2 --lfw-dir "$tmp" --model ensemble --fusion average
has "--fusion is logistic, separation, threshold or search"
run 2 --lfw-dir "$tmp" --model ensemble --fusion search --ensemble-weight 1
has "give one"
for j in 0 101 -3 x; do
  run 2 --lfw-dir "$tmp" --model dlib-resnet --jitter "$j"
  has "--jitter must be 1..100"
done
run 2 --lfw-dir "$tmp" --jitter 3
has "--jitter applies to the dlib ResNet models and the ensemble, not to mobilefacenet"
for w in -1 11 abc 1x nan; do
  run 2 --lfw-dir "$tmp" --model ensemble --ensemble-weight "$w"
  has "--ensemble-weight must be a number in 0..10"
done
run 2 --lfw-dir "$tmp" --model ensemble --subtract-mean
has "needs a fixed --ensemble-weight"
run 4 --lfw-dir "$tmp/nowhere"
has "is not a directory"

# ---- a fake LFW folder --------------------------------------------------------
lfw=$tmp/lfw
mkdir -p "$lfw/Ann_Able" "$lfw/Bob_Baker"
for f in Ann_Able/Ann_Able_0001 Ann_Able/Ann_Able_0002 Bob_Baker/Bob_Baker_0001; do
  printf 'not really a jpeg' >"$lfw/$f.jpg"
done

# malformed pairs files: the error names the file and the line
printf 'Ann_Able 1 2\nBob_Baker 1 Ann_Able\n' >"$tmp/bad1.txt"
run 4 --lfw-dir "$lfw" --pairs "$tmp/bad1.txt"
has "bad1.txt line 2"
printf '1 1\nAnn_Able 1 2\n' >"$tmp/bad2.txt"
run 4 --lfw-dir "$lfw" --pairs "$tmp/bad2.txt"
has "bad2.txt line 1"
printf 'Ann_Able 1 2\n../../etc 1 2\n' >"$tmp/bad3.txt"
run 4 --lfw-dir "$lfw" --pairs "$tmp/bad3.txt"
has "line 2"
run 4 --lfw-dir "$lfw" --pairs "$tmp/no_such_pairs.txt"
has "no_such_pairs.txt"
run 4 --lfw-dir "$lfw" # no pairs.txt in the folder
has "$lfw/pairs.txt"

# missing images: each named with its pairs line
printf 'Ann_Able 1 2\nAnn_Able 1 3\nAnn_Able 2 Bob_Baker 1\nAnn_Able 1 Bob_Baker 7\n' >"$tmp/p.txt"
run 4 --lfw-dir "$lfw" --pairs "$tmp/p.txt" --folds 2 --no-cache
has "p.txt line 2: image $lfw/Ann_Able/Ann_Able_0003.jpg not found"
has "p.txt line 4: image $lfw/Bob_Baker/Bob_Baker_0007.jpg not found"

# the wrong folder: none of the people's folders exists
mkdir -p "$tmp/empty"
run 4 --lfw-dir "$tmp/empty" --pairs "$tmp/p.txt" --folds 2 --no-cache
has "does not look like an LFW folder"
has "$tmp/empty/Ann_Able/"

# unreadable images: named, no figures
printf 'Ann_Able 1 2\nAnn_Able 1 2\nAnn_Able 2 Bob_Baker 1\nAnn_Able 1 Bob_Baker 1\n' >"$tmp/p2.txt"
run 4 --lfw-dir "$lfw" --pairs "$tmp/p2.txt" --folds 2 --no-cache --threads 2
has "Ann_Able_0001.jpg"
has "no figures"

# ---- end to end on 16 LFW pairs (models and LFW needed) ----------------------
real=${FACENET_LFW_DIR:-}
if [ -n "$real" ] && [ -f "$real/pairs.txt" ] && "$bin" models verify >/dev/null 2>&1; then
  # 2 folds of 8: the first 4 same and 4 different pairs of sets 1 and 2
  # (small, so that the sanitizer build gets through it in a minute or two)
  { sed -n 2,5p "$real/pairs.txt"; sed -n 302,305p "$real/pairs.txt"
    sed -n 602,605p "$real/pairs.txt"; sed -n 902,905p "$real/pairs.txt"; } >"$tmp/p16.txt"
  cache=$tmp/cache
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" \
    --out "$tmp/r.json" --roc "$tmp/roc.png" --calibrate --thresholds "$tmp/thr.json"
  has "accuracy:"
  has "VAL@FAR=0.001"
  has "calibration: wrote mobilefacenet thresholds"
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --flip \
    --calibrate --thresholds "$tmp/thr.json"
  has "calibration: wrote mobilefacenet+flip thresholds"
  [ -s "$tmp/roc.png" ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: no ROC png"; }
  [ -f "$cache/mtcnn.bin" ] && [ -f "$cache/mobilefacenet.bin" ] && passed=$((passed + 1)) ||
    { failed=$((failed + 1)); echo "FAIL: cache files missing"; }
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$tmp/r.json" "$tmp/thr.json" <<'PY' && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: report check"; }
import json, sys
r = json.load(open(sys.argv[1]))
assert r["n_pairs"] == 16 and r["folds"] == 2 and len(r["per_fold"]) == 2, r
assert r["accuracy_mean"] >= 0.9, r["accuracy_mean"]
assert r["faces"]["not_found"] == 0
assert len(r["roc"]["tpr"]) == 400 and 0.9 <= r["auc"] <= 1.0
for f in r["per_fold"]:
    assert abs(f["threshold_cosine_similarity"] - (1 - f["threshold"] / 2)) < 1e-6
m = json.load(open(sys.argv[2]))["models"]
t = m["mobilefacenet"]
assert -1 <= t["threshold"] <= 1 and t["n_pairs"] == 16 and not t["flip"], t
assert m["mobilefacenet+flip"]["flip"], m
PY
  fi
  # the second run (another metric) comes from the cache
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --metric cosine
  has "from the cache"
  has "metric cosine"
  # int8 results never touch the fp32 cache
  before=$(sha256sum "$cache/mtcnn.bin" "$cache/mobilefacenet.bin")
  FACENET_PRECISION=mobilefacenet:int8 run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 \
    --cache "$cache"
  has "running without the embedding cache"
  [ "$(sha256sum "$cache/mtcnn.bin" "$cache/mobilefacenet.bin")" = "$before" ] &&
    passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: an int8 run changed the cache"; }
  # the ensemble: its dlib weight chosen per fold on the training folds
  # (by default from the separation of each model's distances), reported
  # per fold; a fixed weight is used as given
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --model ensemble \
    --out "$tmp/e.json"
  has "dlib weight:"
  has "(separation fusion, chosen on each fold's training folds)"
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --model ensemble \
    --fusion search --out "$tmp/es.json"
  has "(search fusion, chosen on each fold's training folds)"
  for f in logistic threshold; do
    run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --model ensemble \
      --fusion $f --out "$tmp/e-$f.json"
    has "($f fusion, chosen on each fold's training folds)"
  done
  # dlib's num_jitters: its own cache file, the same figures from it
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --model dlib-resnet \
    --jitter 2 --out "$tmp/j1.json"
  has "model dlib-resnet + 2 jitters (dlib)"
  [ -f "$cache/dlib-resnet-jitter2.bin" ] && passed=$((passed + 1)) ||
    { failed=$((failed + 1)); echo "FAIL: no jitter cache file"; }
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --model dlib-resnet \
    --jitter 2 --out "$tmp/j2.json"
  has "from the cache"
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --model dlib-resnet \
    --out "$tmp/j0.json"
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --model ensemble \
    --ensemble-weight 0.5 --out "$tmp/e05.json"
  has "dlib weight:    0.50 0.50  (fixed)"
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache" --model ensemble \
    --ensemble-weight 0.5 --calibrate --thresholds "$tmp/thr.json"
  has "calibration: wrote ensemble thresholds"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$tmp/e.json" "$tmp/e05.json" "$tmp/thr.json" "$tmp/es.json" "$tmp/j1.json" \
      "$tmp/j2.json" "$tmp/j0.json" <<'PY' && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: ensemble report check"; }
import json, sys
r, f, s = (json.load(open(sys.argv[i])) for i in (1, 2, 4))
for fold in s["per_fold"]:
    w = fold["ensemble_weight"]
    assert 0 <= w <= 3 and abs(w * 10 - round(w * 10)) < 1e-9, fold
    assert 0 <= fold["ensemble_weight_train_accuracy"] <= 1, fold
assert s["ensemble_weight"]["fusion"] == "search", s["ensemble_weight"]
for fold in r["per_fold"]:
    assert 0 < fold["ensemble_weight"] < 20, fold
assert r["ensemble_weight"]["mode"].startswith("per fold"), r["ensemble_weight"]
assert r["ensemble_weight"]["fusion"] == "separation", r["ensemble_weight"]
assert all(fold["ensemble_weight"] == 0.5 for fold in f["per_fold"]), f["per_fold"]
assert f["ensemble_weight"] == {"mode": "fixed", "fusion": "fixed", "calibration": 0.5}, f["ensemble_weight"]
j1, j2, j0 = (json.load(open(sys.argv[i])) for i in (5, 6, 7))
assert j1["jitter"] == 2 and j0["jitter"] == 0, (j1["jitter"], j0["jitter"])
assert j1["roc"] == j2["roc"] and j1["auc"] == j2["auc"], "jitter is not reproducible from the cache"
assert j1["roc"]["tpr"] != j0["roc"]["tpr"] or j1["roc"]["fpr"] != j0["roc"]["fpr"] or \
    j1["per_fold"] != j0["per_fold"], "jitter changed nothing"
m = json.load(open(sys.argv[3]))["models"]
assert m["ensemble"]["ensemble_weight"] == 0.5, m["ensemble"]
assert "ensemble_weight" not in m["mobilefacenet"], m["mobilefacenet"]
PY
  fi
  # a damaged cache file is set aside, said so, and rewritten
  printf 'garbage' >"$cache/mobilefacenet.bin"
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache"
  has "mobilefacenet.bin is from another version or damaged"
  run 0 --lfw-dir "$real" --pairs "$tmp/p16.txt" --folds 2 --cache "$cache"
  has "from the cache"
else
  echo "note: end-to-end part skipped (needs FACENET_LFW_DIR and the models)"
fi

echo "validate.sh: $passed passed, $failed failed"
[ "$failed" = 0 ]
