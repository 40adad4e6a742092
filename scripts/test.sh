#!/usr/bin/env bash
# The test job: install, build, fetch the KJV text (the learning test trains on it), run every
# test (unit, PyTorch reference, learning), then the unit tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/install_deps.sh"
bash "$root/scripts/build.sh" "$root/build"
bash "$root/scripts/fetch_data.sh" kjv
ctest --test-dir "$root/build" --output-on-failure -j2
bash "$root/scripts/build.sh" "$root/build-asan" -DMETALM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMETALM_BUILD_BENCH=OFF
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions="$root/tests/lsan.supp":print_suppressions=0 ctest --test-dir "$root/build-asan" --output-on-failure -L unit -j2
