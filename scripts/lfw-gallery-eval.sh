#!/usr/bin/env bash
# Open-set identification on LFW with a gallery (docs/ACCURACY.md, section
# "Galleries: 1:N identification on LFW").
#
#   scripts/lfw-gallery-eval.sh LFW_DIR WORK_DIR [FACENET_BIN [MODEL]]
#
# MODEL is the embedder's manifest name (default: facenet's default,
# mobilefacenet); identify follows the gallery's model.
#
# Protocol:
#   - every person with at least 2 images is enrolled with one image (the
#     first in name order); all their other images are genuine probes;
#   - every person with exactly one image is never enrolled: their images
#     are impostor probes;
#   - the open-set threshold is calibrated on half of the impostors (people
#     in even positions of the sorted name list) as the lowest threshold
#     with a false-accept rate <= 1%, and reported on the other half;
#   - rank-1 = the best subject is the right one, whatever its score;
#     DIR (detection and identification rate) = right and above threshold;
#     FAR = impostor probes whose best score is above threshold.
# An image where no face is found counts as a miss (genuine) or a reject
# (impostor), and is reported.
set -euo pipefail
lfw=${1:?usage: lfw-gallery-eval.sh LFW_DIR WORK_DIR [FACENET_BIN [MODEL]]}
work=${2:?usage: lfw-gallery-eval.sh LFW_DIR WORK_DIR [FACENET_BIN [MODEL]]}
bin=${3:-facenet}
model=${4:-}
threads=$(nproc)
mkdir -p "$work"
key=$work/eval.key
gallery=$work/lfw.gallery
[ -f "$key" ] || "$bin" gallery keygen "$key" >/dev/null

# Enrollment tree and probe lists.
rm -rf "$work/tree"
mkdir -p "$work/tree"
: >"$work/genuine.txt"
: >"$work/impostor.txt"
for dir in "$lfw"/*/; do
  person=$(basename "$dir")
  mapfile -t imgs < <(ls "$dir" | grep -i '\.jpg$' | sort)
  [ ${#imgs[@]} -ge 1 ] || continue
  if [ ${#imgs[@]} -ge 2 ]; then
    mkdir -p "$work/tree/$person"
    ln -s "$dir${imgs[0]}" "$work/tree/$person/"
    for ((i = 1; i < ${#imgs[@]}; i++)); do echo "$dir${imgs[$i]}" >>"$work/genuine.txt"; done
  else
    echo "$dir${imgs[0]}" >>"$work/impostor.txt"
  fi
done
echo "enrolling $(ls "$work/tree" | wc -l) people; $(wc -l <"$work/genuine.txt") genuine and" \
     "$(wc -l <"$work/impostor.txt") impostor probes"
t0=$(date +%s)
"$bin" enroll --gallery "$gallery" --key-file "$key" --threads "$threads" \
  ${model:+--model "$model"} "$work/tree" || true
t1=$(date +%s)

# Identify every probe (top-1, no threshold), one process per core.
cat "$work/genuine.txt" "$work/impostor.txt" >"$work/probes.txt"
split -n "l/$threads" -d "$work/probes.txt" "$work/probes.part."
pids=()
for part in "$work"/probes.part.*; do
  [ -f "$part.json" ] && continue
  xargs -a "$part" -d '\n' "$bin" identify --gallery "$gallery" --key-file "$key" -k 1 \
    --threshold -1 --json >"$part.tmp" 2>"$part.err" && mv "$part.tmp" "$part.json" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
t2=$(date +%s)
echo "enroll $((t1 - t0)) s, identify $((t2 - t1)) s"

python3 - "$work" <<'PY'
import glob, json, os, sys
work = sys.argv[1]
genuine = set(open(os.path.join(work, "genuine.txt")).read().split("\n")) - {""}
impostor = open(os.path.join(work, "impostor.txt")).read().split("\n")
impostor = [p for p in impostor if p]
results = {}
def documents(path):
    # xargs may have run identify several times: one JSON document each.
    text, at, dec = open(path).read(), 0, json.JSONDecoder()
    while text[at:].strip():
        doc, end = dec.raw_decode(text, at)
        yield doc
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
for f in sorted(glob.glob(os.path.join(work, "probes.part.*.json"))):
    for r in (r for doc in documents(f) for r in doc["results"]):
        faces = r.get("faces") or []
        m = faces[0]["matches"][0] if faces and faces[0]["matches"] else None
        results[r["image"]] = (m["subject"], m["score"]) if m else None
def person(path):
    return os.path.basename(os.path.dirname(path))
gen = [(p, results.get(p)) for p in sorted(genuine)]
no_face_gen = sum(1 for _, r in gen if r is None)
rank1 = sum(1 for p, r in gen if r and r[0] == person(p))
# Calibration half / test half of the never-enrolled people.
names = sorted(set(person(p) for p in impostor))
calib_names = set(names[0::2])
calib = [results.get(p) for p in impostor if person(p) in calib_names]
test = [results.get(p) for p in impostor if person(p) not in calib_names]
def far(rows, t):
    return sum(1 for r in rows if r and r[1] >= t) / len(rows)
def dir_(t):
    return sum(1 for p, r in gen if r and r[0] == person(p) and r[1] >= t) / len(gen)
ts = [i / 1000 for i in range(-1000, 1001)]
calibrated = next(t for t in ts if far(calib, t) <= 0.01)
no_face_imp = sum(1 for p in impostor if results.get(p) is None)
print(f"gallery: {len(set(person(p) for p in genuine))} people, one image each")
print(f"genuine probes: {len(gen)} ({no_face_gen} without a detected face)")
print(f"impostor probes: {len(impostor)} ({no_face_imp} without a detected face); "
      f"calibration {len(calib)}, test {len(test)}")
print(f"rank-1 accuracy: {rank1 / len(gen):.4f} ({rank1}/{len(gen)})")
print("threshold   FAR(test)  FAR(calib)  DIR")
for t in sorted({calibrated, 0.40, 0.45, 0.50, 0.55, 0.60}):
    mark = "  <- calibrated (FAR <= 1% on the calibration half)" if t == calibrated else ""
    print(f"  {t:6.3f}    {far(test, t):.4f}     {far(calib, t):.4f}    {dir_(t):.4f}{mark}")
json.dump({"rank1": rank1 / len(gen), "calibrated_threshold": calibrated,
           "far_test": far(test, calibrated), "dir": dir_(calibrated),
           "genuine": len(gen), "impostor": len(impostor), "no_face_genuine": no_face_gen,
           "no_face_impostor": no_face_imp},
          open(os.path.join(work, "summary.json"), "w"), indent=1)
PY
