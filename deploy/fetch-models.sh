#!/bin/sh
# The models image's entry point (the Kubernetes Job facenet-models-fetch):
# fetch the pinned model files into $FACENET_MODEL_DIR, the volume that the
# server later mounts read-only, then verify every one against its pinned
# SHA-256. Files already present and verified are not fetched again, so a
# rerun is cheap. $FACENET_MODELS limits it to some models (names as in
# `facenet models list`); empty means all. Any failure exits non-zero.
set -eu
dir=${FACENET_MODEL_DIR:?FACENET_MODEL_DIR must name the models volume}
if [ ! -d "$dir" ] || [ ! -w "$dir" ]; then
  echo "facenet-fetch-models: $dir is not a writable directory" >&2
  exit 2
fi
# shellcheck disable=SC2086 # FACENET_MODELS is a list of names
facenet models fetch --dir "$dir" ${FACENET_MODELS:-}
# shellcheck disable=SC2086
facenet models verify --dir "$dir" ${FACENET_MODELS:-}
echo "facenet-fetch-models: models in $dir are present and verified" >&2
