#!/bin/sh
# run-sanitized.sh — the integration tests again, with every binary built with
# AddressSanitizer + UndefinedBehaviorSanitizer (TIER_SANITIZE=ON).
#
#   tests/run-sanitized.sh [BUILD_DIR]      (default: build-sanitize)
#   TIER_SANITIZE_LABELS='^(tier|fault)$' tests/run-sanitized.sh
#                                           (the fault suite's smoke run too)
#
# A second build directory, so the ordinary build is untouched. Any sanitizer
# report fails the run, also one from a daemon (tierd, tier-worker) whose test
# passed anyway: reports go to files under BUILD_DIR/sanitizer/ (log_path),
# which are printed at the end. Leaks are checked in processes that exit
# normally (tierctl; daemons stopped with SIGTERM); the tests SIGKILL their
# daemons at teardown, which skips the leak check there.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build-sanitize}
REPORTS=$BUILD/sanitizer
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S "$SRC" -B "$BUILD" -DTIER_SANITIZE=ON -DTIER_WERROR=ON >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target tierd tier-worker tierctl

rm -rf "$REPORTS"
mkdir -p "$REPORTS"
# abort_on_error: a finding kills the process at once, so the test fails at
# the faulty step; log_path: reports survive the harness removing its logs.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$REPORTS/ubsan"
# By default the behaviour tests; the fault suite (label fault) on request.
LABELS=${TIER_SANITIZE_LABELS:-^tier\$}
status=0
ctest --test-dir "$BUILD" -L "$LABELS" --output-on-failure || status=$?

if [ -n "$(ls -A "$REPORTS")" ]; then
  echo "run-sanitized: sanitizer reports:" >&2
  for f in "$REPORTS"/*; do
    echo "===== $f" >&2
    cat "$f" >&2
  done
  status=1
fi
if [ "$status" -eq 0 ]; then
  echo "run-sanitized: integration tests pass under ASan+UBSan, no reports"
fi
exit "$status"
