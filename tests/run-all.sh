#!/bin/bash
# run-all.sh — install the dependencies, build tierd, run every test.
#
#   sudo tests/run-all.sh            (or as root without sudo; as a normal user
#                                     when the packages are installed already)
#
# Builds with -DTIER_WERROR=ON into build/ at the top of the source tree and runs
# ctest there. Extra arguments go to ctest, e.g. `tests/run-all.sh -R capacity`.
# TIER_BUILD_DIR overrides the build directory; CTEST_PARALLEL_LEVEL runs tests
# in parallel (each uses its own redis-server and free ports).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${TIER_BUILD_DIR:-$root/build}

"$root/tests/install-deps.sh"
cmake -S "$root" -B "$build" -DTIER_WERROR=ON
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure "$@"
