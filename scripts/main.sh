#!/usr/bin/env bash
# The main job, end to end on built-in defaults: install, build, fetch data, train the toy LM.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/install_deps.sh"
bash "$root/scripts/build.sh" "$root/build"
bash "$root/scripts/fetch_data.sh" kjv  # the toy job reads data/kjv.txt only
cd "$root"
./build/metalm toy-lm --data data/kjv.txt --log runs/toy-lm.jsonl --threads "$(nproc)" "$@"
