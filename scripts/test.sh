#!/usr/bin/env bash
# The test job: install, build, run every test (unit + PyTorch reference), then the unit tests
# again under AddressSanitizer and UndefinedBehaviorSanitizer.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/install_deps.sh"
bash "$root/scripts/build.sh" "$root/build"
ctest --test-dir "$root/build" --output-on-failure -j2
bash "$root/scripts/build.sh" "$root/build-asan" -DMETALM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMETALM_BUILD_BENCH=OFF
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$root/build-asan" --output-on-failure -L unit -j2
