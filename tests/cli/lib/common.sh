# common.sh - the set-up the CLI tests share. Source it first:
#   . "$(dirname "$0")/lib/common.sh"
# It gives: $bin (the facenet binary), $tmp (a scratch directory removed on
# exit, after killing $pid when a test sets it), the counters passed and
# failed with `expect NAME COMMAND...` and `check NAME WANT GOT`, and
# `skip REASON` with the require_* guards. A test whose data is missing
# exits 77 (skipped), or fails under FACENET_REQUIRE_MODELS=1.
# (tests/cli/lib/ is not globbed into the test list: only tests/cli/*.sh.)
set -uo pipefail
bin=${FACENET_BIN:?FACENET_BIN is not set}

skip() {
  if [ "${FACENET_REQUIRE_MODELS:-}" = 1 ]; then echo "FAIL: $1"; exit 1; fi
  echo "SKIP: $1"; exit 77
}
# Sets $demo to the face-api demo photos.
require_demo() {
  demo=${FACENET_DEMO_DIR:-}
  [ -n "$demo" ] && [ -f "$demo/sample1.jpg" ] || skip "FACENET_DEMO_DIR has no demo photos"
}
require_models() { "$bin" models verify >/dev/null 2>&1 || skip "models not fetched"; }
require_command() { command -v "$1" >/dev/null || skip "$1 is not installed"; }

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
passed=0 failed=0
expect() { # expect NAME COMMAND...: passes when COMMAND succeeds
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}
check() { # check NAME WANT GOT: passes when the two are equal
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: $1: got $3, expected $2"; fi
}
