#!/usr/bin/env bash
# The full LFW benchmark of docs/ACCURACY.md: every configuration of the
# reference table through `facenet validate`, one JSON report and one ROC
# plot each, and a summary table at the end.
#
#   scripts/bench-lfw.sh FACENET_BIN LFW_DIR OUT_DIR [CONFIG...]
#
# CONFIG is one of mobilefacenet, mobilefacenet+flip, dlib-resnet,
# dlib-resnet+flip, ensemble, ensemble+flip (default: all, in that order).
# Embeddings are cached ($FACENET_CACHE_DIR, default OUT_DIR/cache), so a
# rerun, or the ensembles after their two models, costs only the protocol.
set -euo pipefail
bin=${1:?usage: bench-lfw.sh FACENET_BIN LFW_DIR OUT_DIR [CONFIG...]}
lfw=${2:?LFW_DIR is required (set FACENET_LFW_DIR)}
out=${3:?OUT_DIR is required}
shift 3
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(mobilefacenet mobilefacenet+flip dlib-resnet dlib-resnet+flip ensemble ensemble+flip)
cache=${FACENET_CACHE_DIR:-$out/cache}
mkdir -p "$out"

for config in "${configs[@]}"; do
  model=${config%+flip}
  flip=()
  [ "$model" = "$config" ] || flip=(--flip)
  name=${config/+/-}
  echo "== $config"
  start=$(date +%s)
  "$bin" validate --lfw-dir "$lfw" --pairs "$lfw/pairs.txt" --model "$model" "${flip[@]}" \
    --cache "$cache" --out "$out/$name.json" --roc "$out/$name.png" | tee "$out/$name.txt"
  echo "wall time: $(( $(date +%s) - start )) s" | tee -a "$out/$name.txt"
done

echo
echo "configuration            accuracy          VAL@FAR=1e-3      AUC     EER"
for config in "${configs[@]}"; do
  name=${config/+/-}
  awk -v c="$config" '
    /^accuracy:/ { acc = $2 " +- " $4 }
    /^VAL@FAR/   { val = $2 " +- " $4 }
    /^AUC:/      { auc = $2 }
    /^EER:/      { eer = $2 }
    END { printf "%-24s %-17s %-17s %-7s %s\n", c, acc, val, auc, eer }' "$out/$name.txt"
done
