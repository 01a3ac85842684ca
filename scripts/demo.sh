#!/usr/bin/env bash
# The main job, end to end: verified models, the demo photos, then
# detection with a drawing, and `facenet compare` with its verdicts.
set -euo pipefail
bin=${1:-build/facenet}
demo=${FACENET_DEMO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/facenet/demo}
"$(dirname "$0")/fetch-demo-photos.sh" "$demo"

echo
echo "== facenet detect $demo/sample1.jpg --draw detected.png"
"$bin" detect "$demo/sample1.jpg" --draw detected.png
echo "(boxes and landmarks drawn into detected.png)"

echo
echo "== facenet compare: the main face of each demo photo"
"$bin" compare "$demo"/sample*.jpg

# With LFW at hand (FACENET_LFW_DIR), one same-person and one
# different-person pair from its pairs list.
lfw=${FACENET_LFW_DIR:-}
if [ -n "$lfw" ] && [ -f "$lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg" ]; then
  echo
  echo "== facenet compare: two LFW photos of Aaron Peirsol and one of Abel Pacheco"
  "$bin" compare "$lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg" \
    "$lfw/Aaron_Peirsol/Aaron_Peirsol_0002.jpg" "$lfw/Abel_Pacheco/Abel_Pacheco_0001.jpg"
fi
