#!/usr/bin/env bash
# `metalm tokenizer`, end to end: train / encode / import work and stay quiet (a few progress
# lines, nothing from SentencePiece unless --verbose); every bad input gives one line on stderr,
# a non-zero exit below 128 (not a signal) and no tokenizer directory.
# Usage: test_tokenizer_cli.sh METALM_BINARY
set -u
bin="$1"
source "$(dirname "$0")/lib.sh"

# expect_train_error NAME PATTERN ARGS...: as expect_error for `tokenizer train --out X ARGS`,
# and X must not exist afterwards.
expect_train_error() {
  local name="$1" pattern="$2"; shift 2
  rm -rf "$work/failed"
  expect_error "$name" "$pattern" "$bin" tokenizer train --out "$work/failed" "$@"
  [ ! -e "$work/failed" ] && ok || bad "$name: left $work/failed behind"
}

for sub in "" train encode import; do
  "$bin" tokenizer $sub --help | grep -q "Example:" && ok || bad "tokenizer $sub --help has no example"
done

# A corpus of made-up words (syllables), accents and CJK: a few hundred pieces to find.
awk 'BEGIN { srand(3); split("ka to ri men sa lo vin de tra po ul ne ga shi ber mo", s, " ");
  split("the dog café naïve über 東京 日本語 river stone", w, " ");
  for (i = 0; i < 3000; i++) { line = "";
    for (j = 0; j < 3 + int(rand() * 10); j++) {
      word = ""; if (rand() < 0.4) word = w[1 + int(rand() * 9)];
      else for (k = 0; k <= int(rand() * 3); k++) word = word s[1 + int(rand() * 16)];
      line = line (j ? " " : "") word }
    print line } }' > "$work/corpus.txt"

# Training: a few lines on stdout, nothing on stderr.
if "$bin" tokenizer train --input "$work/corpus.txt" --vocab-size 300 --out "$work/tok" --seed 5 \
    --threads 2 >"$work/out" 2>"$work/err"; then ok; else bad "train: $(cat "$work/err")"; fi
[ -f "$work/tok/tokenizer.model" ] && [ -f "$work/tok/tokenizer.json" ] && ok || bad "train wrote no files"
[ "$(ls "$work/tok" | wc -l)" -eq 2 ] && ok || bad "train left other files: $(ls "$work/tok")"
[ ! -s "$work/err" ] && ok || bad "train wrote to stderr: $(head -c 300 "$work/err")"
[ "$(wc -l < "$work/out")" -le 4 ] && ok || bad "train printed $(wc -l < "$work/out") lines"
grep -q "^read 1 file(s) in .* s: 3000 lines, 3000 sentences kept" "$work/out" && ok || bad "no read line: $(cat "$work/out")"
grep -q "^training a unigram tokenizer of 300 ids on 2 threads" "$work/out" && ok || bad "no training line"
grep -q "^wrote $work/tok: unigram, 300 ids, vocab_hash [0-9a-f]\{16\}; trained in" "$work/out" && ok || bad "no wrote line"
grep -q '"line_end_id": 8' "$work/tok/tokenizer.json" && ok || bad "tokenizer.json lacks line_end_id 8"
# --verbose lets SentencePiece's log through (to stderr).
"$bin" tokenizer train --input "$work/corpus.txt" --vocab-size 300 --out "$work/verbose" --verbose \
  >/dev/null 2>"$work/err" && [ "$(wc -l < "$work/err")" -gt 20 ] && ok || bad "--verbose shows no log"
# Same seed, same bytes (D7), also with a sample.
for d in s1 s2; do
  "$bin" tokenizer train --input "$work/corpus.txt" --vocab-size 300 --out "$work/$d" --seed 5 \
    --threads 2 --input-sentence-size 1000 --model-type bpe >/dev/null || bad "train $d"
done
cmp -s "$work/s1/tokenizer.model" "$work/s2/tokenizer.model" && ok || bad "train not deterministic"

# Encoding: one line of ids per --text; a literal </line> is id 8.
"$bin" tokenizer encode --model "$work/tok" --text "the dog</line>東京" --text "river" >"$work/ids" \
  && ok || bad "encode"
[ "$(wc -l < "$work/ids")" -eq 2 ] && ok || bad "encode printed $(wc -l < "$work/ids") lines"
head -1 "$work/ids" | grep -Eq "^([0-9]+ )*8( [0-9]+)*$" && ok || bad "no id 8 for </line>: $(head -1 "$work/ids")"
"$bin" tokenizer encode --model "$work/tok" --text "the dog</line>" --pieces | grep -q "</line>$" \
  && ok || bad "encode --pieces"

# Importing a SentencePiece model: by default every special keeps its piece here; the fairseq
# layout does not fit a model that already has the specials (id 4 would be nothing).
"$bin" tokenizer import --sentencepiece "$work/tok/tokenizer.model" --out "$work/imported" >/dev/null \
  && cmp -s "$work/tok/tokenizer.json" "$work/imported/tokenizer.json" && ok || bad "import"
expect_error "fairseq layout on a model with specials" "gaps" "$bin" tokenizer import \
  --sentencepiece "$work/tok/tokenizer.model" --fairseq --out "$work/fs"
[ ! -e "$work/fs" ] && ok || bad "failed import left a directory"
expect_error "import of a missing model" "cannot open" "$bin" tokenizer import \
  --sentencepiece "$work/none.model" --out "$work/fs"

# Bad training input.
expect_train_error "missing input file" "nope.txt: cannot open" --input "$work/corpus.txt" "$work/nope.txt" --vocab-size 300
: > "$work/empty.txt"
expect_train_error "empty corpus" "no text to train on" --input "$work/empty.txt" --vocab-size 300
printf 'the dog\ncaf\xe9\n' > "$work/latin1.txt"
expect_train_error "non-UTF-8 bytes" "latin1.txt:2: not UTF-8" --input "$work/latin1.txt" --vocab-size 300
head -c 10000000 /dev/zero | tr '\0' 'a' > "$work/long.txt"
expect_train_error "a 10 MB single line" "1 longer than max_sentence_length" --input "$work/long.txt" --vocab-size 300
expect_train_error "vocab size too large for the corpus" "Vocabulary size too high" --input "$work/corpus.txt" --vocab-size 100000
expect_train_error "vocab size too large (bpe)" "Vocabulary size too high" --input "$work/corpus.txt" --vocab-size 100000 --model-type bpe
expect_train_error "vocab size below the alphabet" "smaller than required_chars" --input "$work/corpus.txt" --vocab-size 12
expect_train_error "vocab size of only specials" "more than the 9 special tokens" --input "$work/corpus.txt" --vocab-size 9
expect_train_error "character coverage" "character_coverage must be in" --input "$work/corpus.txt" --vocab-size 300 --character-coverage 0.5
expect_train_error "model type" "model-type" --input "$work/corpus.txt" --vocab-size 300 --model-type wordpiece
expect_train_error "directory as input" "is a directory" --input "$work" --vocab-size 300
expect_train_error "no --vocab-size" "vocab-size" --input "$work/corpus.txt"

# Bad tokenizer directories.
broken() { rm -rf "$work/$1"; cp -r "$work/tok" "$work/$1"; echo "$work/$1"; }
enc() { "$bin" tokenizer encode --model "$1" --text "the dog"; }
d=$(broken cut); head -c 100 "$work/tok/tokenizer.model" > "$d/tokenizer.model"
expect_error "truncated tokenizer.model" "not a SentencePiece model" enc "$d"
d=$(broken garbage); head -c 5000 /dev/urandom > "$d/tokenizer.model"
expect_error "random tokenizer.model" "tokenizer.model" enc "$d"
d=$(broken other); cp "$work/s1/tokenizer.model" "$d/tokenizer.model"
expect_error "tokenizer.model of another tokenizer" "different tokenizers" enc "$d"
d=$(broken typo); sed -i 's/"mask_id"/"mask_idd"/' "$d/tokenizer.json"
expect_error "tokenizer.json field typo" "mask_idd: unknown field (did you mean mask_id?)" enc "$d"
d=$(broken type); sed -i 's/"pad_id": 1/"pad_id": "1"/' "$d/tokenizer.json"
expect_error "tokenizer.json wrong type" "pad_id: expected an integer" enc "$d"
d=$(broken value); sed -i 's/"pad_id": 1/"pad_id": 7/' "$d/tokenizer.json"
expect_error "tokenizer.json wrong id" "id 7 is both" enc "$d"
d=$(broken missing); sed -i '/"eos_id"/d' "$d/tokenizer.json"
expect_error "tokenizer.json missing field" "eos_id: missing" enc "$d"
d=$(broken nojson); rm "$d/tokenizer.json"
expect_error "no tokenizer.json" "no tokenizer.json" enc "$d"
expect_error "encode non-UTF-8 text" "not valid UTF-8" "$bin" tokenizer encode --model "$work/tok" --text $'caf\xe9'
expect_error "tokenizer without a subcommand" "" "$bin" tokenizer

finish
