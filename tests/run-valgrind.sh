#!/bin/sh
# run-valgrind.sh — some integration tests again, with tierd under valgrind
# memcheck (the ordinary build: no sanitizer in the way).
#
#   tests/run-valgrind.sh [BUILD_DIR [CTEST_REGEX]]   (default: build, and
#                                                      the tests below)
#
# The harness starts tierd under TIER_TIERD_WRAPPER. Memcheck's reports go to
# files under BUILD_DIR/valgrind/ (the harness removes its own logs). The
# tests SIGKILL tierd at teardown, which skips the leak summary; what counts
# is every error memcheck reports while tierd runs (invalid reads and writes,
# uninitialised values, bad frees): any fails the run. tierd is ~20x slower
# under memcheck, so the default set is tests that do not time it closely.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
# Absolute: the tests run in the build directory, and memcheck's log path
# must hold from there.
BUILD=$(cd "$BUILD" && pwd) || exit 2
TESTS=${2:-'^(ticket_flows_|functional_escalation|resubmitted_external_id|cancel_while|undecodable_frames|oversized_message|unknown_|a_window_never_splits|data_of_an_earlier_format|offers_of_a_lost_batch|redis_over_a_unix_socket|report_equals)'}
REPORTS=$BUILD/valgrind

command -v valgrind >/dev/null || { echo "run-valgrind: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
cmake --build "$BUILD" --target tierd tier-worker tierctl >/dev/null || exit 1
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
export TIER_TIERD_WRAPPER="valgrind --tool=memcheck --leak-check=no --track-origins=yes --log-file=$REPORTS/tierd-%p.log"
status=0
ctest --test-dir "$BUILD" -R "$TESTS" --output-on-failure || status=$?

runs=$(ls "$REPORTS" | wc -l)
errors=$(grep -lE '^==[0-9]+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched|Source and destination overlap|Argument)' "$REPORTS"/* 2>/dev/null)
if [ -n "$errors" ]; then
  echo "run-valgrind: memcheck reports:" >&2
  for f in $errors; do
    echo "===== $f" >&2
    cat "$f" >&2
  done
  status=1
fi
if [ "$runs" -eq 0 ]; then
  echo "run-valgrind: tierd never ran under valgrind" >&2
  status=1
fi
if [ "$status" -eq 0 ]; then
  echo "run-valgrind: $runs tierd runs under memcheck, no errors"
fi
exit "$status"
