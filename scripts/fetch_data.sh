#!/usr/bin/env bash
# Writes the main job's text into data/ (ignored by git): the King James Bible (public domain),
# dumped by Debian's bible-kjv program. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/data"
if [ ! -s "$root/data/kjv.txt" ]; then
  bible -l100000 gen1:1-rev22:21 > "$root/data/kjv.txt.tmp" 2>/dev/null
  mv "$root/data/kjv.txt.tmp" "$root/data/kjv.txt"
fi
echo "data/kjv.txt: $(wc -c < "$root/data/kjv.txt") bytes"
